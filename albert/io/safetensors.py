"""Reading and writing `.safetensors` files through the `safetensors` package (numpy API, no torch).

The package is the format's reference implementation: it checks the header length against the file,
the JSON, every dtype, shape and data offset (in range, no overlap, no gap, sizes that match) before
any tensor is touched, and memory-maps the file (a tensor is copied out of the map when read). This
module adds what the converter needs on top: one-line `UserError`s naming the file, bfloat16 through
`ml_dtypes`, and atomic writes.
"""

import os

import numpy as np
import safetensors
import safetensors.numpy

from albert.core import fileio
from albert.core.errors import UserError, abbreviate, first_line

# The dtypes read into numpy arrays; others (float8, complex, ...) are reported as unsupported.
SUPPORTED_DTYPES = frozenset(["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8",
                              "U64", "U32", "U16", "U8", "BOOL"])
_PACKAGE_PREFIX = "Error while deserializing header: "
_MAX_REASON_CHARS = 160


def _reason(error):
  """The package's message on one short line, without its boilerplate prefix."""
  text = first_line(error).removeprefix(_PACKAGE_PREFIX)
  return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS - 3] + "..."


def read_file(path):
  """`({name: read-only numpy array}, metadata)`; raises a one-line UserError for a missing or bad file.

  BF16 tensors come back as `ml_dtypes.bfloat16` arrays: the package builds them with
  `np.dtype("bfloat16")`, a name numpy knows once ml_dtypes (a TensorFlow dependency) is imported.
  """
  try:
    with safetensors.safe_open(path, framework="numpy") as f:
      metadata = dict(f.metadata() or {})
      names = f.keys()  # safe_open is not iterable
      codes = {name: f.get_slice(name).get_dtype() for name in names}
      for name, code in codes.items():
        if code not in SUPPORTED_DTYPES:
          raise UserError(f"{path}: tensor {name!r} has unsupported dtype {code!r}")
      if "BF16" in codes.values():
        import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16" dtype name)
      return {name: _get_tensor(f, path, name) for name in codes}, metadata
  except FileNotFoundError:
    raise UserError(f"safetensors file not found: {path}") from None
  except safetensors.SafetensorError as e:
    raise UserError(f"{path}: not a valid safetensors file: {_reason(e)}") from None
  except OSError as e:  # a directory, a device, no permission
    reason = "it is a directory" if os.path.isdir(path) else e.strerror or _reason(e)
    raise UserError(f"{path}: cannot be read: {reason}") from None


def _get_tensor(f, path, name):
  """One tensor; numpy refuses some shapes the format allows (over 64 dimensions, huge empty ones)."""
  try:
    return f.get_tensor(name)
  except (ValueError, OverflowError) as e:
    shape = abbreviate(f.get_slice(name).get_shape(), limit=6)
    raise UserError(f"{path}: tensor {name!r} of shape [{shape}] cannot be a numpy array: {_reason(e)}") from None


def write_file(path, tensors, metadata=None):
  """Writes `{name: array}` (numpy or array-like, bfloat16 from ml_dtypes included) and string
  `metadata` atomically: the file appears whole under `path` or not at all."""
  arrays = {name: np.asarray(value, order="C") for name, value in tensors.items()}  # the package needs C order
  metadata = {str(key): str(value) for key, value in metadata.items()} if metadata else None
  with fileio.atomic_path(path) as temporary:
    safetensors.numpy.save_file(arrays, temporary, metadata=metadata)
    _fsync(temporary)


def _fsync(path):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
