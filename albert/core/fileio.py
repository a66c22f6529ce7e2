"""Atomic file writes: a reader never sees a half-written output, and a crash never loses the old one.

Every output of the suite goes through here: text and JSON files (`atomic_open`, `write_text`,
`write_json`), files written by another library under a name we choose (`atomic_path`: TFRecords),
and whole directories (`atomic_directory`: SavedModels). Paths with a scheme (`gs://...`) go through
`tf.io.gfile`; local paths use `os` only, so worker processes that write nothing never import TensorFlow.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid

from albert.core.errors import UserError


class DiskFull(UserError):
  """A write failed for want of space; the partial output is already removed and older files are intact."""

  def __init__(self, path):
    super().__init__(f"no space left on device writing {path}")
    self.path = path


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def is_disk_full(error):
  """Whether `error` (an OSError, or a TensorFlow error that only says so in its text) means no space."""
  if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
    return True
  return not isinstance(error, DiskFull) and any(text in str(error) for text in _DISK_FULL_TEXTS)


def disk_full_message(error):
  """The one line for a DiskFull-like error raised where no path was at hand (the file, when known)."""
  path = getattr(error, "filename", None)
  if not path:
    import re
    found = re.search(r"(\S+); (?:" + "|".join(_DISK_FULL_TEXTS) + ")", str(error))
    path = found.group(1) if found else None
  return f"no space left on device writing {path}" if path else "no space left on device"


@contextlib.contextmanager
def reporting_disk_full(path):
  """Turns running out of space inside the block into DiskFull(path); the block cleans up after itself."""
  try:
    yield
  except Exception as error:
    if is_disk_full(error):
      raise DiskFull(path) from None
    raise


def _is_remote(path):
  return "://" in str(path)


def _gfile():
  import tensorflow as tf
  return tf.io.gfile


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def temporary_name(path):
  """A hidden name beside `path` (same filesystem, so the final rename is cheap); scans skip it."""
  directory, basename = os.path.split(str(path))
  return os.path.join(directory, f".{basename}.tmp-{uuid.uuid4().hex}")


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
  """Opens a temporary file beside `path`; on success it is renamed over `path`, on error removed (and
  running out of space is a DiskFull naming `path`)."""
  with reporting_disk_full(path), _atomic_open(path, mode, encoding) as f:
    yield f


@contextlib.contextmanager
def _atomic_open(path, mode, encoding):
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


def temporary_beside(path):
  """A temporary name beside `path`, with `path`'s directory created (local or remote)."""
  path = str(path)
  directory = os.path.dirname(path) or "."
  if _is_remote(path):
    _gfile().makedirs(directory)
  else:
    os.makedirs(directory, exist_ok=True)
  return temporary_name(path)


def publish(temporary, path):
  """Renames a finished temporary file over `path`."""
  if _is_remote(path):
    _gfile().rename(temporary, str(path), overwrite=True)
  else:
    os.replace(temporary, path)


def discard(temporary):
  """Removes a temporary file if it exists."""
  if _is_remote(temporary):
    if _gfile().exists(temporary):
      _gfile().remove(temporary)
  else:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary file name beside `path` for a writer that opens files by name (a TFRecord
  writer); the file replaces `path` when the block ends without an error and is removed otherwise."""
  temporary = temporary_beside(path)
  try:
    with reporting_disk_full(path):
      yield temporary
      publish(temporary, path)
  finally:
    discard(temporary)


@contextlib.contextmanager
def atomic_directory(path):
  """Yields a temporary directory beside `path` to fill; it replaces `path` (a directory) on success.

  An earlier directory at `path` is moved aside first and deleted last, so a crash never leaves a
  half-written directory under the final name.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"{path} exists and is not a directory")
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  staging = temporary_name(os.path.join(parent, os.path.basename(os.path.abspath(path))))
  try:
    with reporting_disk_full(path):
      yield staging
    if os.path.isdir(path):
      retired = staging + ".old"
      os.replace(path, retired)
      os.replace(staging, path)
      shutil.rmtree(retired, ignore_errors=True)
    else:
      os.replace(staging, path)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


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
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"{what} not found: {path}") from None
  except json.JSONDecodeError as e:  # some messages end in "at" ("Unterminated string starting at")
    raise UserError(f"{what} {path} is not valid JSON: {e.msg.removesuffix(' at')} at line {e.lineno} "
                    f"column {e.colno}") from None
  except UnicodeDecodeError as e:
    raise UserError(f"{what} {path} is not UTF-8 text: {e.reason} at byte {e.start}") from None
  except RecursionError:
    raise UserError(f"{what} {path} is not valid JSON: nested too deeply") from None


def copy_file(source, target):
  """Copies `source` to `target` atomically."""
  with open(source, "rb") as f, atomic_open(target, "wb") as out:
    shutil.copyfileobj(f, out)


def remove_files(*paths):
  """Removes the files that exist among `paths`."""
  for path in paths:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
