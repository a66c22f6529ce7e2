"""The compute precisions the suite offers (`--precision`), in one table.

Weights always stay float32; a precision is the dtype activations are computed in. The model, the
trainer, the inference tools and the flag definitions all read this table.
"""

PRECISIONS = ("float32", "bfloat16", "float16")


def compute_dtype(precision):
  """The TensorFlow dtype of `precision` (a name from PRECISIONS, or a dtype of one of them)."""
  import tensorflow as tf

  from albert.core.errors import UserError
  name = precision if isinstance(precision, str) else tf.as_dtype(precision).name
  if name not in PRECISIONS:
    raise UserError(f"--precision: compute dtype {name} is not one of {', '.join(PRECISIONS)}")
  return tf.as_dtype(name)
