"""Quiet start for the command-line entry points: the first lines a user sees are the suite's.

Importing TensorFlow and creating its devices prints start-up notices to stderr: on a machine without a
GPU, CUDA probe failures (`E... cuda_platform.cc] failed call to cuInit ...`, which read like an error),
the CPU-feature banner and lines written before TensorFlow's own logging is set up, which
`TF_CPP_MIN_LOG_LEVEL` does not filter. Every entry point imports this module first; it acts only when
the program is an `albert` entry point (`python -m albert.<command>`), so importing an entry module from
a notebook or script changes nothing. Unless the user set
`TF_CPP_MIN_LOG_LEVEL` (then TensorFlow's logging is exactly what they asked for), it keeps TensorFlow's
C++ logging at warnings and above and drops the known start-up notices while TensorFlow is imported
and its devices are listed; any other line in that window is passed on unchanged.

It also gives TensorFlow's CPU tensors a pooled allocator (`TF_CPU_ALLOCATOR_USE_BFC`, unless the user
set it): with the C library's allocator, the large tensors a training step frees are kept in its heap
in fragments, and a step's peak resident memory measured 1.5-3x the tensors alive at once (so
`--recompute_grad` saved far less than it should); the pool reuses its blocks (docs/scaling.md).
"""

import os
import re
import sys
import threading

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
POOLED_ALLOCATOR_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"
_WARNINGS_AND_ABOVE = "1"

# Notices TensorFlow prints at start-up on machines where they say nothing about the user's run.
START_UP_NOISE = re.compile("|".join((
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"cuda_platform\.cc.*failed call to cuInit",
    r"cuda_(?:dnn|fft|blas)\.cc.*Unable to register",
    r"cpu_feature_guard\.cc",
    r"^To enable the following instructions:",
    r"oneDNN custom operations are on",
    r"TF-TRT Warning: Could not find TensorRT",
    r"computation placer already registered",
)))


def _forward_except_noise(read_fd, write_fd):
  with os.fdopen(read_fd, "rb") as pipe:
    for line in pipe:
      if not START_UP_NOISE.search(line.decode("utf-8", "replace")):
        os.write(write_fd, line)


def _running_an_entry_point():
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  return bool(spec and spec.name.startswith("albert."))


def use_pooled_cpu_allocator():
  """Asks TensorFlow (not yet imported) for its pooled CPU allocator, unless the user chose (see above)."""
  os.environ.setdefault(POOLED_ALLOCATOR_VARIABLE, "true")


def start_tensorflow_quietly():
  """Imports TensorFlow and lists its devices with the start-up notices filtered out (see above)."""
  if LOG_LEVEL_VARIABLE in os.environ:
    return
  os.environ[LOG_LEVEL_VARIABLE] = _WARNINGS_AND_ABOVE
  sys.stderr.flush()
  terminal = os.dup(2)
  read_fd, write_fd = os.pipe()
  os.dup2(write_fd, 2)
  os.close(write_fd)
  forwarder = threading.Thread(target=_forward_except_noise, args=(read_fd, terminal), daemon=True)
  forwarder.start()
  try:
    import tensorflow as tf
    tf.config.list_physical_devices()  # the CUDA probe runs here, not at import
  finally:
    sys.stderr.flush()
    os.dup2(terminal, 2)  # the pipe's last writer is gone: the forwarder reads to the end and stops
    forwarder.join(timeout=10)
    os.close(terminal)


def start():
  """What every entry point does first (see above); nothing when imported by other programs."""
  if "tensorflow" in sys.modules or not _running_an_entry_point():
    return
  use_pooled_cpu_allocator()
  start_tensorflow_quietly()


start()
