"""TFRecord files of `tf.train.Example`s: the one Example encoder and the atomic record writer.

Every feature file of the suite (SQuAD, GLUE/RACE, pretraining) is encoded here. The encoder writes
protobuf wire format directly, so worker processes encode records without importing TensorFlow, and
it produces exactly the bytes of `tf.train.Example.SerializeToString(deterministic=True)`: map entries
sorted by key (the order deterministic serialization gives whenever no key is a prefix of another, as
holds for every feature set of the suite; plain `SerializeToString()` uses the map's hash order), int64
lists packed as varints (negative values as 10-byte two's complement), float lists as packed
little-endian float32. A list counts as floats when it is a float numpy array or its
first value is a Python float; everything else is int64.

SQuAD encodes a feature's entries in the workers and adds its `unique_ids` entry in the parent
(`feature_entries` + `example_from_entries`): the caller then keeps the entries in key order.
"""

import functools

import numpy as np

from albert.core import fileio

_UINT64 = 1 << 64


def varint(value):
  """The protobuf base-128 varint of an int64 (a negative one as its unsigned 64-bit pattern)."""
  value = int(value)
  if value < 0:
    value += _UINT64
  out = bytearray()
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


_SMALL_VARINTS = [varint(value) for value in range(1 << 15)]  # covers the ids of a 30k vocabulary


def _length_delimited(tag, payload):
  return tag + varint(len(payload)) + payload


def packed_varints(values):
  """The packed varint encoding of a 1-D sequence of ints (fast paths for ids, masks and positions)."""
  if isinstance(values, np.ndarray):
    if not values.size:
      return b""
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < 0x80:
      return values.astype(np.uint8).tobytes()
    values = values.tolist()
  elif values:
    low, high = min(values), max(values)
  else:
    return b""
  if low >= 0 and high < len(_SMALL_VARINTS):
    return b"".join([_SMALL_VARINTS[value] for value in values])
  return b"".join([varint(value) for value in values])


def int64_feature(values):
  """A `tf.train.Feature` holding an Int64List of `values`."""
  packed = packed_varints(values)
  int64_list = _length_delimited(b"\x0a", packed) if packed else b""
  return _length_delimited(b"\x1a", int64_list)


def float_feature(values):
  """A `tf.train.Feature` holding a FloatList of `values` (stored as float32)."""
  packed = np.asarray(values, dtype="<f4").tobytes()
  float_list = _length_delimited(b"\x0a", packed) if packed else b""
  return _length_delimited(b"\x12", float_list)


def _is_float(values):
  if isinstance(values, np.ndarray):
    return values.dtype.kind == "f"
  return len(values) > 0 and isinstance(values[0], float)


@functools.lru_cache(maxsize=256)
def _key_field(key):
  return _length_delimited(b"\x0a", key.encode("utf-8"))


def feature_entry(key, values):
  """One entry of the `Features.feature` map: `key` -> an int64 or float list (see module doc)."""
  feature = float_feature(values) if _is_float(values) else int64_feature(values)
  return _length_delimited(b"\x0a", _key_field(key) + _length_delimited(b"\x12", feature))


def feature_entries(features):
  """The map entries of `{key: values}`, sorted by key as deterministic serialization orders them."""
  return b"".join(feature_entry(key, features[key]) for key in sorted(features))


def example_from_entries(entries):
  """A serialized `tf.train.Example` from map entries that are already in key order."""
  return _length_delimited(b"\x0a", entries)


def encode_example(features):
  """`{key: int or float values}` as a serialized `tf.train.Example` (deterministic bytes)."""
  return example_from_entries(feature_entries(features))


class TFRecordWriter:
  """Writes records to a TFRecord file that appears under its name only when the writer is closed
  without an error (`with` block or `close()`); an aborted file is removed, an older one kept."""

  def __init__(self, path):
    import tensorflow as tf
    self.path = path
    self.count = 0
    self._temporary = fileio.temporary_beside(path)
    self._writer = tf.io.TFRecordWriter(self._temporary)

  def write(self, record):
    with fileio.reporting_disk_full(self.path):
      self._writer.write(record)
    self.count += 1

  def close(self):
    """Publishes the file."""
    with fileio.reporting_disk_full(self.path):
      self._writer.close()
      fileio.publish(self._temporary, self.path)

  def abort(self):
    """Discards the file (even when closing it fails, as it does on a full disk)."""
    try:
      self._writer.close()
    except Exception:  # noqa: BLE001 - the file is being thrown away; the error that led here is raised
      pass
    finally:
      fileio.discard(self._temporary)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, traceback):
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_records(path, records):
  """Writes serialized records to `path` atomically; returns how many."""
  with TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
  return writer.count


_FRAMING_BYTES = 16  # per record: length (8), CRC of the length (4), CRC of the data (4)


class DamagedRecords(ValueError):
  """A TFRecord file whose records do not check out; the message says where and how."""


def scan_records(path):
  """Reads a whole TFRecord file, checking every record's framing and CRCs and that the records fill
  the file exactly; returns the record count or raises DamagedRecords.

  TensorFlow's reader stops silently at a record cut short at the end of a file, so the byte count is
  what catches a truncated file; a damaged record elsewhere fails its CRC.
  """
  import tensorflow as tf
  dataset = tf.data.TFRecordDataset(path, buffer_size=1 << 22).batch(1024)
  start = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
  try:
    count, payload = dataset.reduce(
        start, lambda totals, batch: (totals[0] + tf.size(batch, out_type=tf.int64),
                                      totals[1] + tf.reduce_sum(tf.cast(tf.strings.length(batch), tf.int64))))
  except tf.errors.OpError as error:
    raise DamagedRecords(_reader_message(error)) from None
  count, used = int(count), int(payload) + _FRAMING_BYTES * int(count)
  size = tf.io.gfile.stat(path).length
  if used != size:
    raise DamagedRecords(f"it ends with {size - used} bytes that are not a whole record (cut short?) after "
                         f"{count} good records")
  return count


def _reader_message(error):
  """TensorFlow's reason without the op and function names around it."""
  import re
  text = (getattr(error, "message", "") or str(error)).strip().splitlines()[0]
  found = re.search(r"(?:truncated|corrupted) record at \d+", text)
  if found:
    return found.group(0) + (" (not a TFRecord file?)" if "Is this even a TFRecord" in text else "")
  text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
  return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip() or type(error).__name__
