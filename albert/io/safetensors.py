"""Reading and writing `.safetensors` files with numpy alone (no torch, no safetensors package).

The format: an 8-byte little-endian header length N, then N bytes of JSON mapping each tensor name to
`{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data after the header) plus
an optional `"__metadata__"` string map, then the raw little-endian tensor bytes. Reading memory-maps
the file, so large models are not copied until a tensor is used.
"""

import json
import os
import struct

import numpy as np

from albert.core import fileio
from albert.core.errors import UserError

METADATA_KEY = "__metadata__"
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_ALIGNMENT = 8

_NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}


def _bfloat16():
  """numpy's bfloat16 from ml_dtypes (a TensorFlow dependency), imported only when a file needs it."""
  import ml_dtypes
  return np.dtype(ml_dtypes.bfloat16)


def _numpy_dtype(code, path, name):
  if code == "BF16":
    return _bfloat16()
  if code not in _NUMPY_DTYPES:
    raise UserError(f"{path}: tensor {name} has unsupported dtype {code!r}")
  return np.dtype(_NUMPY_DTYPES[code])


def _dtype_code(dtype):
  dtype = np.dtype(dtype)
  if dtype.name == "bfloat16":
    return "BF16"
  for code, numpy_name in _NUMPY_DTYPES.items():
    if np.dtype(numpy_name) == dtype.newbyteorder("<"):
      return code
  raise ValueError(f"cannot store numpy dtype {dtype} in safetensors")


def read_header(path):
  """(header dict without metadata, metadata dict, byte offset of the data) after validating the frame."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      prefix = f.read(8)
      if len(prefix) < 8:
        raise UserError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
      (header_length,) = struct.unpack("<Q", prefix)
      if header_length > min(_MAX_HEADER_BYTES, size - 8):
        raise UserError(f"{path}: not a safetensors file (header length {header_length} exceeds the file)")
      raw_header = f.read(header_length)
  except FileNotFoundError:
    raise UserError(f"safetensors file not found: {path}") from None
  try:
    header = json.loads(raw_header.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError):
    raise UserError(f"{path}: not a safetensors file (its header is not JSON)") from None
  if not isinstance(header, dict):
    raise UserError(f"{path}: not a safetensors file (its header is not a JSON object)")
  metadata = header.pop(METADATA_KEY, None) or {}
  if not isinstance(metadata, dict):
    raise UserError(f"{path}: {METADATA_KEY} is not a JSON object")
  return header, metadata, 8 + header_length


def read_file(path):
  """`({name: read-only numpy array}, metadata)`; the arrays are views of a memory map of the file."""
  header, metadata, data_start = read_header(path)
  data_size = os.path.getsize(path) - data_start
  buffer = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start) if data_size else np.zeros(0, np.uint8)
  tensors = {}
  for name, entry in header.items():
    dtype, shape, begin, end = _parse_entry(path, name, entry, data_size)
    tensors[name] = buffer[begin:end].view(dtype).reshape(shape)
  _check_no_overlap(path, header)
  return tensors, metadata


def _parse_entry(path, name, entry, data_size):
  """Validated (dtype, shape, begin, end) of one header entry."""
  try:
    code, shape, (begin, end) = entry["dtype"], [int(d) for d in entry["shape"]], entry["data_offsets"]
  except (KeyError, TypeError, ValueError):
    raise UserError(f"{path}: malformed header entry for tensor {name}") from None
  dtype = _numpy_dtype(code, path, name)
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_size):
    raise UserError(f"{path}: tensor {name} has data offsets [{begin}, {end}] outside the {data_size} data bytes")
  if end - begin != expected:
    raise UserError(f"{path}: tensor {name} ({code} {shape}) needs {expected} bytes but its offsets span "
                    f"{end - begin}")
  return dtype, shape, begin, end


def _check_no_overlap(path, header):
  spans = sorted((entry["data_offsets"][0], entry["data_offsets"][1], name) for name, entry in header.items())
  for (_, previous_end, previous), (begin, _, name) in zip(spans, spans[1:]):
    if begin < previous_end:
      raise UserError(f"{path}: tensors {previous} and {name} overlap")


def write_file(path, tensors, metadata=None):
  """Writes `{name: array}` (numpy or array-like) and string `metadata` atomically, tensors sorted by name."""
  arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
  header, offset = {}, 0
  if metadata:
    header[METADATA_KEY] = {str(k): str(v) for k, v in metadata.items()}
  for name in sorted(arrays):
    array = arrays[name]
    header[name] = {"dtype": _dtype_code(array.dtype), "shape": list(array.shape),
                    "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
  encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
  encoded += b" " * (-len(encoded) % _ALIGNMENT)  # the data starts 8-byte aligned, as the reference writer does
  with fileio.atomic_open(path, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for name in sorted(arrays):
      array = arrays[name]
      if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
      f.write(array.tobytes())
