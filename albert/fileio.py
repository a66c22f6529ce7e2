"""Atomic file writes: a reader never sees a half-written output, and a crash never loses the old one."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
  """Opens a temporary file beside `path`; on success it is renamed over `path`, on error removed."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
  try:
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    kwargs = {} if "b" in mode else {"encoding": encoding}
    with os.fdopen(fd, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text(path, text):
  with atomic_open(path) as f:
    f.write(text)


def write_json(path, obj, indent=4):
  """Writes JSON the way the original release did (indent 4, trailing newline), atomically."""
  with atomic_open(path) as f:
    json.dump(obj, f, indent=indent, ensure_ascii=False)
    f.write("\n")


def read_json(path, what="file"):
  """Reads a JSON file, turning a missing or malformed file into a one-line UserError."""
  from albert.errors import UserError
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"{what} not found: {path}") from None
  except json.JSONDecodeError as e:
    raise UserError(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
  except UnicodeDecodeError as e:
    raise UserError(f"{what} {path} is not UTF-8 text: {e.reason} at byte {e.start}") from None
