"""Pretraining data from text: streams the corpus in chunks of documents, turns each chunk into masked
SOP instances (in worker processes), and writes them round-robin to the output TFRecords.

Input: one sentence per line, a blank line between documents (docs/compatibility.md §7.1); each input
file also ends a document. Documents are processed in chunks of `max_documents_in_memory`: documents are
shuffled, random-document segments chosen and instances shuffled *within a chunk*, and chunks are written
in input order. Each chunk's randomness depends only on the seed and the chunk's index, so the output
does not depend on the number of workers; with at most one chunk the draws are the original's.

Every output file gets a sidecar (`albert.io.feature_cache`) recording the settings, the tokenizer and
the input files it was made from, and its record count.
"""

import dataclasses
import os
from typing import NamedTuple

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError
from albert.core.progress import ProgressLog
from albert.core.streams import WorkerPool
from albert.io import feature_cache, tfrecord
from albert.io.files import open_binary
from albert.tasks.pretraining.instances import (InstanceBuilder, chunk_rngs, create_training_instances,
                                                describe_instance, instance_features)
from albert.tasks.pretraining.masking import Masker, is_start_piece_sentencepiece, is_start_piece_wordpiece
from albert.text.sentencepiece import preprocess_text
from albert.text.tokenizer import FullTokenizer

NUM_PREVIEW_INSTANCES = 20
INPUT_FILE_MODES = ("r", "rb")
BYTES_PER_MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a worker needs to turn a chunk of lines into examples; picklable."""
  vocab_file: str | None
  spm_model_file: str | None
  do_lower_case: bool = True
  max_seq_length: int = 512
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  dupe_factor: int = 40
  ngram: int = 3
  favor_shorter_ngram: bool = True
  do_whole_word_mask: bool = True
  do_permutation: bool = False
  random_next_sentence: bool = False
  random_seed: int = 12345

  @property
  def num_prediction_slots(self):
    return self.max_predictions_per_seq * (1 + int(self.do_permutation))


class Chunk(NamedTuple):
  index: int
  lines: list
  num_bytes: int


class ChunkResult(NamedTuple):
  index: int
  examples: list
  num_documents: int
  num_bytes: int
  preview: list


class ChunkProcessor:
  """Tokenizes a chunk's documents and turns them into serialized, shuffled training examples."""

  def __init__(self, settings):
    self.settings = settings
    self.tokenizer = FullTokenizer(settings.vocab_file, settings.do_lower_case,
                                                settings.spm_model_file)
    # Looking the ids up raises a UserError naming the model when it lacks a special piece.
    _ = (self.tokenizer.cls_id, self.tokenizer.sep_id, self.tokenizer.mask_id)
    use_spm = self.tokenizer.sp_model is not None
    is_start_piece = is_start_piece_sentencepiece if use_spm else is_start_piece_wordpiece
    masker = Masker(list(self.tokenizer.vocab), is_start_piece, settings.masked_lm_prob,
                    settings.max_predictions_per_seq, settings.ngram,
                    settings.favor_shorter_ngram, settings.do_whole_word_mask, settings.do_permutation)
    self.builder = InstanceBuilder(masker, settings.max_seq_length, settings.short_seq_prob,
                                   settings.random_next_sentence)

  def documents(self, lines):
    """Tokenized documents: a line that is empty after normalization ends a document."""
    use_spm = self.tokenizer.sp_model is not None
    documents = [[]]
    for raw in lines:
      if use_spm:
        line = preprocess_text(raw, lower=self.settings.do_lower_case)
      else:
        line = raw.strip()
      if not line:
        documents.append([])
        continue
      tokens = self.tokenizer.tokenize(line)
      if tokens:
        documents[-1].append(tokens)
    return [document for document in documents if document]

  def process(self, chunk):
    settings = self.settings
    documents = self.documents(chunk.lines)
    rng, ngram_rng = chunk_rngs(settings.random_seed, chunk.index)
    instances = create_training_instances(documents, self.builder, settings.dupe_factor, rng, ngram_rng)
    examples = [tfrecord.encode_example(instance_features(instance, self.tokenizer, settings.max_seq_length,
                                                 settings.num_prediction_slots))
                for instance in instances]
    previewed = instances[:NUM_PREVIEW_INSTANCES] if chunk.index == 0 else []
    preview = [describe_instance(instance) for instance in previewed]
    return ChunkResult(chunk.index, examples, len(documents), chunk.num_bytes, preview)


def _file_size(path):
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.stat(path).length
  return os.path.getsize(path)


def _decode_line(raw, path, line_number, input_file_mode):
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    if input_file_mode == "rb":
      return raw.decode("latin-1")
    raise UserError(f"--input_file: {path} line {line_number} is not UTF-8 text "
                    "(use --input_file_mode=rb to read such lines as latin-1)") from None


def _input_lines(input_files, input_file_mode):
  """(line, size in bytes) of every input line, with a blank line after each file: files end documents."""
  for path in input_files:
    with open_binary(path) as f:
      for line_number, raw in enumerate(f, 1):
        yield _decode_line(raw, path, line_number, input_file_mode), len(raw)
    yield "", 0


def read_chunks(input_files, max_documents, input_file_mode="r"):
  """Streams the input as chunks of lines holding `max_documents` documents each (0: all in one).

  A chunk ends only at a blank line.
  """
  index, lines, num_bytes, num_documents = 0, [], 0, 0
  for line, size in _input_lines(input_files, input_file_mode):
    blank = not line.strip()
    if blank and lines and lines[-1].strip():
      num_documents += 1
    lines.append(line)
    num_bytes += size
    if blank and max_documents and num_documents >= max_documents:
      yield Chunk(index, lines, num_bytes)
      index, lines, num_bytes, num_documents = index + 1, [], 0, 0
  if any(line.strip() for line in lines):
    yield Chunk(index, lines, num_bytes)


class RoundRobinWriter:
  """Writes serialized examples to the output files in turn (docs/compatibility.md §5.1); each file
  appears atomically when the writer is closed with `commit`."""

  def __init__(self, output_files):
    self.paths = output_files
    self._writers = [tfrecord.TFRecordWriter(path) for path in output_files]
    self._next = 0
    self.num_written = 0

  def write(self, serialized_example):
    self._writers[self._next].write(serialized_example)
    self._next = (self._next + 1) % len(self._writers)
    self.num_written += 1

  @property
  def counts(self):
    return [writer.count for writer in self._writers]

  def close(self, commit):
    for writer in self._writers:
      writer.close() if commit else writer.abort()


def _process(processor, chunk):
  return processor.process(chunk)


def _write_sidecars(settings, tokenizer, input_files, output_files, counts):
  """What built each output file, so readers can check it (`run_pretraining`) and caches can compare."""
  for path, count in zip(output_files, counts):
    if "://" in path:
      continue
    cache = feature_cache.FeatureCache(path, "output_file", dataclasses.asdict(settings), tokenizer.fingerprint,
                                       input_files)
    cache.write_sidecar({"count": count, "num_prediction_slots": settings.num_prediction_slots})


def create_pretraining_data(settings, input_files, output_files, num_workers=1, max_documents_in_memory=0,
                            input_file_mode="r", log_every_seconds=30):
  """Writes the TFRecords; returns (documents, instances). Output files are replaced only on success."""
  total_mb = sum(map(_file_size, input_files)) / BYTES_PER_MB
  progress = ProgressLog("creating pretraining data", "MB", total_mb, log_every_seconds)
  done_mb = documents = instances = 0
  with WorkerPool(ChunkProcessor, (settings,), num_workers, chunks_in_flight=num_workers + 1) as pool:
    writer = RoundRobinWriter(output_files)
    try:
      for result in pool.map(_process, read_chunks(input_files, max_documents_in_memory, input_file_mode)):
        for description in result.preview:
          logging.info("*** Example ***\n%s", description)
        for example in result.examples:
          writer.write(example)
        done_mb += result.num_bytes / BYTES_PER_MB
        documents, instances = documents + result.num_documents, instances + len(result.examples)
        progress.update(done_mb, f", {documents} documents, {instances} instances")
      if not documents:
        raise UserError(f"--input_file: no text in {', '.join(input_files)}")
    except BaseException:
      writer.close(commit=False)
      raise
    fileio.remove_files(*map(feature_cache.sidecar_path, output_files))  # never an old sidecar on a new file
    writer.close(commit=True)
    progress.update(done_mb, f", {documents} documents, {instances} instances", force=True)
    _write_sidecars(settings, pool.state.tokenizer, input_files, output_files, writer.counts)
  return documents, instances
