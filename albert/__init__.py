"""ALBERT (A Lite BERT) for TensorFlow 2.

A re-implementation of the original ALBERT release that keeps its interfaces (flags, checkpoint
variable names, TFRecord features, output files) and runs on current TensorFlow.
"""

import os
import platform

__version__ = "0.1.0"

# TensorFlow uses its oneDNN kernels by default only on some Intel CPUs. On the 2-core AMD EPYC this
# suite is measured on they make the training step ~20% faster (the attention batch matmuls run at
# ~2.5x the speed of the default kernels); see benchmarks/README.md. The variable is read when
# TensorFlow is first imported, so it is set here, before any module of the suite imports it; a value
# the user set (TF_ENABLE_ONEDNN_OPTS=0 turns them off) is kept.
if platform.machine().lower() in ("x86_64", "amd64"):
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
