"""Reading inputs: file lists from flags (comma-separated paths or globs, local or on any TensorFlow
filesystem), text files, and JSON records that must be objects."""

import glob
import json
import os

from albert.core.errors import UserError
from albert.io.feature_cache import SIDECAR_SUFFIX


def _matches(pattern):
  """Files matching one pattern, sorted; sidecars of feature files are never inputs."""
  if "://" in pattern:
    import tensorflow as tf
    found = tf.io.gfile.glob(pattern)
  else:
    found = [path for path in glob.glob(pattern) if os.path.isfile(path)]
  return sorted(path for path in found if not path.endswith(SIDECAR_SUFFIX))


def expand_globs(value, flag_name):
  """The files named by `--flag_name` (comma-separated paths or globs), in order, without duplicates.

  A pattern that matches nothing, or an empty flag, is a UserError naming the flag.
  """
  patterns = [pattern.strip() for pattern in (value or "").split(",") if pattern.strip()]
  if not patterns:
    raise UserError(f"--{flag_name} is required")
  files = []
  for pattern in patterns:
    matches = _matches(pattern)
    if not matches:
      raise UserError(f"--{flag_name}: no file matches {pattern}")
    files.extend(match for match in matches if match not in files)
  return files


def open_text(path):
  """A UTF-8 text file from local disk or any filesystem TensorFlow knows (gs://...), for csv readers."""
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "r")
  return open(path, encoding="utf-8", newline="")


def parse_json_object(text, where, expected="a JSON object"):
  """The JSON object in `text`; anything else is a UserError naming `where` (file and line)."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{where}: not valid JSON: {e.msg} at column {e.colno}") from None
  if not isinstance(value, dict):
    raise UserError(f"{where}: expected {expected}, got {type(value).__name__}")
  return value
