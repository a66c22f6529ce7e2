"""Feature caches that know what built them: one scheme for SQuAD, GLUE/RACE and pretraining files.

A cache is a feature file (plus companion files, e.g. SQuAD's per-window "left" file) and a sidecar
`<file>.info.json` written after them. The sidecar records:
- `settings`: every flag that shapes the records (window lengths, task, ...);
- `tokenizer`: the tokenizer's fingerprint (hash of the SentencePiece model or vocabulary, casing);
- `sources`: the size and modification time of each input file the cache was built from;
- `count`: how many records the file holds, plus whatever the builder reports (e.g. example counts);
- `companion_sizes`: the byte size of each companion file, so a companion cut short is noticed;
- `digest`: the SHA-256 of the rest, so a sidecar edited or damaged in a way that still parses (a
  digit of `count` changed) is noticed too.

A cache is reused only when its sidecar matches the current settings and tokenizer, the sources the
user named (if any) are unchanged, and the record file reads back whole: every record's framing and
CRCs check out and there are as many as were written. Otherwise it is rebuilt when the sources are at hand (and the
log says why), or refused with one line naming the flag and the difference. A file without a sidecar
counts as unknown: it is rebuilt from its sources, never trusted.
"""

import dataclasses
import hashlib
import json
import os

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError

FORMAT = 2  # 2: the sidecar carries the digest of its own content (format-1 caches are rebuilt once)
SIDECAR_SUFFIX = ".info.json"


def sidecar_path(path):
  return path + SIDECAR_SUFFIX


_LISTED_SOURCES = 16


def source_identity(paths):
  """The size and modification time of the input files a cache is built from, in order: one entry per
  file, or for a large collection (RACE's per-passage files) their count and a digest of the entries."""
  entries = [_file_identity(path) for path in paths]
  if len(entries) <= _LISTED_SOURCES:
    return entries
  digest = hashlib.sha256()
  for entry in entries:
    digest.update(f"{os.path.basename(entry['path'])}\t{entry['size']}\t{entry['mtime_ns']}\n".encode("utf-8"))
  return {"files": len(entries), "sha256": digest.hexdigest()}


def _file_identity(path):
  if "://" in path:
    import tensorflow as tf
    stat = tf.io.gfile.stat(path)
    return {"path": path, "size": stat.length, "mtime_ns": stat.mtime_nsec}
  stat = os.stat(path)
  return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _comparable(identity):
  """What must match between two identities: sizes and times, not where the files sit now."""
  if isinstance(identity, dict):
    return identity
  return [(entry.get("size"), entry.get("mtime_ns")) for entry in identity or ()]


def _digest(info):
  """SHA-256 of a sidecar's content without its digest: any edit or damage that still parses shows."""
  content = {key: value for key, value in info.items() if key != "digest"}
  return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _describe(settings):
  return ", ".join(f"{key}={value}" for key, value in settings.items())


def check_record_file(path, written=None):
  """(record count, None) for a record file that reads back whole with `written` records (None: count
  unknown), else (None, what is wrong).

  Reads it whole (`tfrecord.scan_records`: framing, CRCs, no partial record at the end); what is wrong
  reads after the file's name: "is damaged: ..." or "holds N records but M were written (cut short?)".
  """
  from albert.io.tfrecord import DamagedRecords, scan_records
  try:
    count = scan_records(path)
  except DamagedRecords as damage:
    return None, f"is damaged: {damage}"
  if written is not None and count != written:
    return None, f"holds {count} records but {written} were written (cut short?)"
  return count, None


@dataclasses.dataclass
class FeatureCache:
  """A cache at `path` for the given settings, tokenizer fingerprint and source files.

  `sources` are the files a rebuild reads; None means the user named none, so the cache cannot be
  rebuilt and its sources are not compared. `source_flag` names the flag that gives them, for the
  message. `companions` are further files that belong to the cache.
  """
  path: str
  flag_name: str
  settings: dict
  tokenizer: dict | None = None
  sources: list | None = None
  companions: tuple = ()
  source_flag: str | None = None

  def _files(self):
    return (self.path, *self.companions)

  def _read_sidecar(self):
    path = sidecar_path(self.path)
    if not os.path.exists(path):
      return None, f"it has no sidecar {os.path.basename(path)} recording how it was built"
    try:
      with open(path, encoding="utf-8") as f:
        info = json.load(f)
    except (OSError, ValueError):
      return None, f"its sidecar {path} is unreadable"
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("count"), int):
      return None, f"its sidecar {path} is not one this version writes"
    if info.get("digest") != _digest(info):
      return None, f"its sidecar {path} was changed or damaged after it was written"
    return info, None

  def staleness(self):
    """(sidecar info, None) for a reusable cache, else (None, why it cannot be reused)."""
    missing = [path for path in self._files() if not os.path.exists(path)]
    if missing:
      return None, f"{missing[0]} does not exist"
    info, problem = self._read_sidecar()
    if problem:
      return None, problem
    if info.get("settings") != self.settings:
      return None, (f"it was built with {_describe(info.get('settings') or {})} but the flags say "
                    f"{_describe(self.settings)}")
    if self.tokenizer is not None and info.get("tokenizer") != self.tokenizer:
      return None, "it was built with another tokenizer (SentencePiece model, vocabulary or do_lower_case)"
    if self.sources is not None and _comparable(info.get("sources")) != _comparable(source_identity(self.sources)):
      return None, "its source files changed since it was built"
    if info.get("companion_sizes", {}) != self._companion_sizes():
      return None, f"its companion file(s) {', '.join(self.companions)} changed since it was built"
    return self._check_records(info)

  def _companion_sizes(self):
    return {os.path.basename(path): os.path.getsize(path) for path in self.companions}

  def _check_records(self, info):
    _, problem = check_record_file(self.path, info["count"])
    return (None, f"it {problem}") if problem else (info, None)

  def prepare(self, build):
    """Returns the sidecar info of a reusable cache, else rebuilds it with `build()`.

    `build()` writes the cache files (atomically) and returns a dict holding at least `count`.
    """
    exists = os.path.exists(self.path)
    info, problem = self.staleness() if exists else (None, None)
    if info is not None:
      logging.info("reusing cached features %s (%d records, checked)", self.path, info["count"])
      return info
    if problem:
      if self.sources is None:
        source = f"--{self.source_flag}" if self.source_flag else "its source file"
        raise UserError(f"--{self.flag_name}: cannot reuse {self.path}: {problem}; pass {source} to rebuild "
                        "it, or delete it")
      logging.warning("rebuilding %s: %s", self.path, problem)
    # The old sidecar goes first, so a half-replaced cache never looks reusable.
    fileio.remove_files(sidecar_path(self.path), *self._files())
    return self.write_sidecar(build())

  def write_sidecar(self, built):
    """Records what built the (complete) cache files; `built` holds at least `count`. Returns the info."""
    info = {"format": FORMAT, "settings": self.settings, "tokenizer": self.tokenizer,
            "sources": source_identity(self.sources or ()), "companion_sizes": self._companion_sizes(), **built}
    info = json.loads(json.dumps(info))  # as it reads back (e.g. integer keys become strings)
    info["digest"] = _digest(info)
    fileio.write_json(sidecar_path(self.path), info)
    return info
