"""ALBERT (A Lite BERT) for TensorFlow 2.

A re-implementation of the original ALBERT release that keeps its interfaces (flags, checkpoint
variable names, TFRecord features, output files) and runs on current TensorFlow.
"""

__version__ = "0.1.0"
