"""`.npy` files written row by row, so a collection's features or embeddings never sit in memory whole.

The header has a fixed size and is rewritten with the final row count when the file is finished.
"""

import contextlib
import struct

import numpy as np

from albert.core.fileio import atomic_open

_NPY_HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + a space-padded dict ending in "\n"


def _npy_header(shape, dtype):
  """A version 1.0 .npy header of a fixed size, so it can be rewritten once the row count is known."""
  text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str, tuple(shape))
  room = _NPY_HEADER_BYTES - 10 - 1
  if len(text) > room:
    raise ValueError(f"shape {shape} does not fit a {_NPY_HEADER_BYTES}-byte .npy header")
  body = (text.ljust(room) + "\n").encode("latin1")
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


class NpyRowWriter:
  """Appends rows of a fixed shape to an open binary file holding an .npy array."""

  def __init__(self, file, row_shape, dtype=np.float32):
    self.file, self.row_shape, self.dtype = file, tuple(row_shape), np.dtype(dtype)
    self.count = 0
    file.write(_npy_header((0,) + self.row_shape, self.dtype))

  def append(self, rows):
    rows = np.ascontiguousarray(rows, dtype=self.dtype)
    if rows.shape[1:] != self.row_shape:
      raise ValueError(f"rows of shape {rows.shape[1:]} appended to an array of rows {self.row_shape}")
    self.file.write(rows.tobytes())
    self.count += rows.shape[0]

  def finish(self):
    self.file.seek(0)
    self.file.write(_npy_header((self.count,) + self.row_shape, self.dtype))
    self.file.seek(0, 2)


@contextlib.contextmanager
def npy_row_writer(path, row_shape, dtype=np.float32):
  """Writes `path` (.npy) atomically from rows appended one batch at a time; memory stays one batch."""
  with atomic_open(path, "wb") as f:
    writer = NpyRowWriter(f, row_shape, dtype)
    yield writer
    writer.finish()
