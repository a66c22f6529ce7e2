"""Reading inputs: file lists from flags (comma-separated paths or globs, local or on any TensorFlow
filesystem), UTF-8 text (whole, or streamed by line) with one-line errors naming the file, line and
byte, and JSON records that must be objects (checked further with `albert.io.structure`)."""

import glob
import os

from albert.core.errors import UserError
from albert.io.feature_cache import SIDECAR_SUFFIX
from albert.io.structure import parse


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


def open_binary(path):
  """A file from local disk or any filesystem TensorFlow knows, opened for reading bytes."""
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "rb")
  return open(path, "rb")


def _not_utf8(path, error, offset=0, line_number=None):
  where = f"{path} line {line_number}" if line_number else path
  return UserError(f"{where} is not UTF-8 text: {error.reason} at byte {offset + error.start}")


def read_text(path):
  """A whole UTF-8 text file; bytes that are not UTF-8 are a UserError naming the file and the byte."""
  with open_binary(path) as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise _not_utf8(path, e) from None


def text_lines(path):
  """The lines of a UTF-8 text file as `open(path, newline="")` gives them (ends kept; \n, \r\n and \r
  end lines), streamed. A line that is not UTF-8, or holds a NUL byte (binary data), is a UserError
  naming the file, the line and the byte."""
  line_number, offset = 0, 0
  with open_binary(path) as f:
    for raw in f:
      for piece in raw.splitlines(keepends=True):
        line_number += 1
        try:
          line = piece.decode("utf-8")
        except UnicodeDecodeError as e:
          raise _not_utf8(path, e, offset, line_number) from None
        if "\0" in line:
          raise UserError(f"{path} line {line_number} holds a NUL byte at byte {offset + piece.index(0)}: binary "
                          "data, not text")
        offset += len(piece)
        yield line


def json_lines(path, what, kind=dict, expected=None):
  """(where, line number, Node) per non-blank line of a JSON-lines file, streamed; `what` names the file in
  messages (e.g. "--input_file x.jsonl"), and a line that is not JSON of `kind` is a one-line UserError."""
  for line_number, line in enumerate(text_lines(path), 1):
    if line.strip():
      where = f"{what} line {line_number}"
      yield where, line_number, parse(line, where, kind, expected)


def parse_json_object(text, where, expected="a JSON object"):
  """The JSON object in `text`; anything else is a UserError naming `where` (file and line)."""
  return parse(text, where, dict, expected).value
