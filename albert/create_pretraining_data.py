"""Create ALBERT pretraining data: text -> SOP sentence pairs with n-gram masking -> TFRecords.

`python -m albert.create_pretraining_data --input_file=corpus.txt --output_file=train.tfrecord
--spm_model_file=30k-clean.model` takes the original flags (§10.2) and writes the original TFRecord keys
(§5.1). Input: one sentence per line, a blank line between documents (see `albert.prepare_corpus`).

What follows the original exactly (it shapes released data): segment construction and SOP labels
(§7.2-7.3, including the random-document B with label 1 for single-sentence chunks, quirk 4), pair
truncation, whole-word grouping with the original start-piece rule (quirks 2 and 17: "€"/"£" never
match, a group may continue across [SEP]), n-gram masking with p(n) ∝ 1/n, 80/10/10 replacement drawn
from every vocabulary entry, and the order of every draw from `random.Random(random_seed)`.

Differences:
- The n-gram length is drawn from a second seeded `random.Random`, not NumPy's unseeded global RNG
  (quirk 3), so the same flags give byte-identical files.
- `--vocab_file` is not required with `--spm_model_file` (quirk 18).
- Documents are processed in chunks of `--max_documents_in_memory` documents, streamed from the input:
  documents are shuffled, random-document segments chosen and instances shuffled *within a chunk*,
  and chunks are written in input order. With at most that many documents (one chunk) the draws are
  the original's. Memory holds a few chunks and their instances (about `dupe_factor` per document).
- `--num_workers` processes chunks in parallel; each chunk's randomness depends only on the seed and
  the chunk's index, so the output does not depend on the number of workers.
- Each input file ends a document (the original let a document continue into the next file).
- With `--do_permutation` the prediction features have 2 × `max_predictions_per_seq` slots, as in the
  original (quirk 5); `run_pretraining` must then be given the doubled `--max_predictions_per_seq`.
"""

import bisect
import collections
import dataclasses
import functools
import itertools
import multiprocessing
import os
import random
import struct
import time
from typing import NamedTuple

from absl import flags, logging

from albert import tokenization
from albert.errors import UserError, run_main
from albert.train_spm import expand_inputs

FLAGS = flags.FLAGS

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"
NUM_PREVIEW_INSTANCES = 20
INPUT_FILE_MODES = ("r", "rb")

# The original's start-piece punctuation: string.punctuation without ', <, = and >. Its intended "€" and
# "£" were added as bytes and never match under Python 3 (quirk 2), so they are not here.
_START_PUNCTUATION = frozenset('!"#$%&()*+,-./:;?@[\\]^_`{|}~')
_WORD_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") | _START_PUNCTUATION


def define_flags():
  """The original create_pretraining_data.py flags (§10.2) plus the streaming/parallel additions."""
  flags.DEFINE_string("input_file", None, "Input raw text file (or comma-separated list of files or globs).")
  flags.DEFINE_string("output_file", None, "Output TF example file (or comma-separated list of files).")
  flags.DEFINE_string("vocab_file", None, "The vocabulary file (WordPiece; not needed with --spm_model_file).")
  flags.DEFINE_string("spm_model_file", None, "The model file for sentence piece tokenization.")
  flags.DEFINE_string("input_file_mode", "r",
                      "The data format of the input file: 'r' (UTF-8) or 'rb' (bytes; non-UTF-8 lines are "
                      "read as latin-1).")
  flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text.")
  flags.DEFINE_bool("do_whole_word_mask", True, "Whether to use whole word masking rather than per-piece masking.")
  flags.DEFINE_bool("do_permutation", False,
                    "Whether to add permutation predictions (doubles the prediction slots: quirk 5).")
  flags.DEFINE_bool("favor_shorter_ngram", True, "Whether to favor shorter n-grams for selecting spans to mask.")
  flags.DEFINE_bool("random_next_sentence", False, "Use random-document negatives (NSP) instead of swaps (SOP).")
  flags.DEFINE_integer("max_seq_length", 512, "Maximum sequence length.")
  flags.DEFINE_integer("ngram", 3, "Maximum number of n-grams to mask.")
  flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions per sequence.")
  flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
  flags.DEFINE_integer("dupe_factor", 40, "Number of times to duplicate the input data (with different masks).")
  flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
  flags.DEFINE_float("short_seq_prob", 0.1,
                     "Probability of creating sequences which are shorter than the maximum length.")
  flags.DEFINE_integer("num_workers", 1, "Processes creating instances in parallel; the output does not "
                       "depend on it (new).")
  flags.DEFINE_integer("max_documents_in_memory", 100000,
                       "Documents per chunk: documents and instances are shuffled, and random-document "
                       "segments drawn, within a chunk; 0 = the whole input at once like the original (new).")
  flags.DEFINE_integer("log_every_seconds", 30, "Seconds between progress reports (new).")


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------

def is_start_piece_sentencepiece(piece):
  """The original start-piece rule for SentencePiece pieces (§7.4), quirks included."""
  return (piece.startswith("\u2581") or piece.startswith("<") or piece in _START_PUNCTUATION
          or not all(char.lower() in _WORD_CHARACTERS for char in piece))


def is_start_piece_wordpiece(piece):
  return not piece.startswith("##")


def ngram_cumulative_probabilities(ngram, favor_shorter_ngram):
  """Cumulative p(n) ∝ 1/n for n = 1..ngram, reversed when longer n-grams are favoured."""
  weights = [1.0 / n for n in range(1, ngram + 1)]
  if not favor_shorter_ngram:
    weights.reverse()
  total = sum(weights)
  return list(itertools.accumulate(weight / total for weight in weights))


class MaskedTokens(NamedTuple):
  tokens: list
  positions: list
  labels: list
  token_boundary: list


class Masker:
  """Whole-word n-gram masking of one [CLS] A [SEP] B [SEP] sequence (§7.4)."""

  def __init__(self, vocab_words, is_start_piece, masked_lm_prob, max_predictions_per_seq, ngram=3,
               favor_shorter_ngram=True, do_whole_word_mask=True, do_permutation=False):
    self.vocab_words = vocab_words
    self.is_start_piece = functools.lru_cache(maxsize=1 << 16)(is_start_piece)
    self.masked_lm_prob = masked_lm_prob
    self.max_predictions_per_seq = max_predictions_per_seq
    self.ngram = ngram
    self.do_whole_word_mask = do_whole_word_mask
    self.do_permutation = do_permutation
    self._cumulative = ngram_cumulative_probabilities(ngram, favor_shorter_ngram)

  def word_groups(self, tokens):
    """Groups of token indices that are masked together, and the token_boundary feature.

    A non-start piece joins the previous group even across [SEP] (quirk 17), as in the original.
    """
    groups, boundary = [], [0] * len(tokens)
    for index, token in enumerate(tokens):
      if token in (CLS, SEP):
        boundary[index] = 1
        continue
      starts_word = self.is_start_piece(token)
      if self.do_whole_word_mask and groups and not starts_word:
        groups[-1].append(index)
      else:
        groups.append([index])
        boundary[index] = int(starts_word)
    return groups, boundary

  def num_to_predict(self, num_tokens):
    return min(self.max_predictions_per_seq, max(1, int(round(num_tokens * self.masked_lm_prob))))

  def mask(self, tokens, rng, ngram_rng):
    """Masks `tokens`; `rng` makes every draw the original made with its seeded RNG, `ngram_rng` draws
    the n-gram lengths (the original used NumPy's unseeded RNG there)."""
    groups, boundary = self.word_groups(tokens)
    budget = self.num_to_predict(len(tokens))
    candidate_sets = [[groups[start:start + n] for n in range(1, self.ngram + 1)] for start in range(len(groups))]
    rng.shuffle(candidate_sets)
    output = list(tokens)
    masked = self.select_positions(candidate_sets, budget, set(), ngram_rng)
    for index in masked:
      output[index] = self._replacement(tokens[index], rng)
    predictions = [(index, tokens[index]) for index in masked]
    rng.shuffle(candidate_sets)
    if self.do_permutation:
      predictions.extend(self._permute(output, candidate_sets, budget, set(masked), rng, ngram_rng))
    predictions.sort()
    return MaskedTokens(output, [index for index, _ in predictions], [label for _, label in predictions],
                        boundary)

  def _replacement(self, token, rng):
    if rng.random() < 0.8:
      return MASK
    if rng.random() < 0.5:
      return token
    return self.vocab_words[rng.randint(0, len(self.vocab_words) - 1)]

  def select_positions(self, candidate_sets, budget, covered, ngram_rng):
    """Token indices chosen from the shuffled n-gram candidate sets, in the order they were taken."""
    chosen = []
    for candidates in candidate_sets:
      if len(chosen) >= budget:
        break
      n = bisect.bisect_right(self._cumulative, ngram_rng.random() * self._cumulative[-1]) + 1
      indices = _flatten(candidates[n - 1])
      while len(chosen) + len(indices) > budget and n > 1:
        n -= 1
        indices = _flatten(candidates[n - 1])
      if len(chosen) + len(indices) > budget or any(index in covered for index in indices):
        continue
      chosen.extend(indices)
      covered.update(indices)
    return chosen

  def _permute(self, output, candidate_sets, budget, covered, rng, ngram_rng):
    """The do_permutation pass: shuffles the tokens among a second set of positions; returns their
    (position, token before permutation) predictions."""
    selected = sorted(self.select_positions(candidate_sets, budget, covered, ngram_rng))
    sources = list(selected)
    rng.shuffle(sources)
    before = list(output)
    for position, source in zip(selected, sources):
      output[position] = before[source]
    return [(position, before[position]) for position in selected]


def _flatten(groups):
  return [index for group in groups for index in group]


# --------------------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------------------

class TrainingInstance(NamedTuple):
  tokens: list
  segment_ids: list
  token_boundary: list
  masked_lm_positions: list
  masked_lm_labels: list
  is_random_next: bool


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """Trims the longer segment (B on ties) one token at a time, from the front or back at random (§7.5)."""
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


class InstanceBuilder:
  """SOP (or NSP) sentence pairs from tokenized documents (§7.2-7.3), masked by a `Masker`."""

  def __init__(self, masker, max_seq_length, short_seq_prob, random_next_sentence=False):
    self.masker = masker
    self.max_num_tokens = max_seq_length - 3
    self.short_seq_prob = short_seq_prob
    self.random_next_sentence = random_next_sentence

  def from_document(self, documents, document_index, rng, ngram_rng):
    """Instances from `documents[document_index]`; other documents supply random B segments."""
    document = documents[document_index]
    target_length = self.max_num_tokens
    if rng.random() < self.short_seq_prob:
      target_length = rng.randint(2, self.max_num_tokens)
    instances, chunk, chunk_length, i = [], [], 0, 0
    while i < len(document):
      chunk.append(document[i])
      chunk_length += len(document[i])
      if i == len(document) - 1 or chunk_length >= target_length:
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a = _concat(chunk[:a_end])
        if len(chunk) == 1 or (self.random_next_sentence and rng.random() < 0.5):
          is_random_next = True
          tokens_b = self._random_segment(documents, document_index, target_length - len(tokens_a), rng)
          i -= len(chunk) - a_end
        elif not self.random_next_sentence and rng.random() < 0.5:
          is_random_next = True
          tokens_a, tokens_b = _concat(chunk[a_end:]), tokens_a
        else:
          is_random_next = False
          tokens_b = _concat(chunk[a_end:])
        truncate_seq_pair(tokens_a, tokens_b, self.max_num_tokens, rng)
        instances.append(self._instance(tokens_a, tokens_b, is_random_next, rng, ngram_rng))
        chunk, chunk_length = [], 0
      i += 1
    return instances

  @staticmethod
  def _random_segment(documents, document_index, target_length, rng):
    """Sentences from a random other document (10 tries to avoid this one), from a random start."""
    for _ in range(10):
      other_index = rng.randint(0, len(documents) - 1)
      if other_index != document_index:
        break
    other = documents[other_index]
    segment = []
    for sentence in other[rng.randint(0, len(other) - 1):]:
      segment.extend(sentence)
      if len(segment) >= target_length:
        break
    return segment

  def _instance(self, tokens_a, tokens_b, is_random_next, rng, ngram_rng):
    tokens = [CLS, *tokens_a, SEP, *tokens_b, SEP]
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    masked = self.masker.mask(tokens, rng, ngram_rng)
    return TrainingInstance(masked.tokens, segment_ids, masked.token_boundary, masked.positions,
                            masked.labels, is_random_next)


def _concat(sentences):
  return [token for sentence in sentences for token in sentence]


def create_training_instances(documents, builder, dupe_factor, rng, ngram_rng):
  """Shuffles the documents, makes `dupe_factor` passes over them, and shuffles the instances (§7.1)."""
  documents = [document for document in documents if document]
  rng.shuffle(documents)
  instances = []
  for _ in range(dupe_factor):
    for document_index in range(len(documents)):
      instances.extend(builder.from_document(documents, document_index, rng, ngram_rng))
  rng.shuffle(instances)
  return instances


def chunk_rngs(random_seed, chunk_index):
  """The main and n-gram RNGs of a chunk; chunk 0's main RNG is the original's `Random(random_seed)`."""
  main_seed = random_seed if chunk_index == 0 else f"albert-chunk:{random_seed}:{chunk_index}"
  return random.Random(main_seed), random.Random(f"albert-ngram:{random_seed}:{chunk_index}")


# --------------------------------------------------------------------------------------------------
# tf.train.Example encoding (protobuf wire format, so workers need no TensorFlow)
# --------------------------------------------------------------------------------------------------

def _varint(value):
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


_SMALL_VARINTS = [_varint(value) for value in range(1 << 15)]


def _length_delimited(tag, payload):
  return tag + _varint(len(payload)) + payload


def _int64_feature(values):
  small = not values or (min(values) >= 0 and max(values) < len(_SMALL_VARINTS))
  packed = b"".join(map(_SMALL_VARINTS.__getitem__ if small else _varint, values))
  return _length_delimited(b"\x1a", _length_delimited(b"\x0a", packed))


def _float_feature(values):
  return _length_delimited(b"\x12", _length_delimited(b"\x0a", struct.pack(f"<{len(values)}f", *values)))


def encode_example(features):
  """Serializes {key: (kind, values)} as a tf.train.Example; kind is "int64" (non-negative) or "float"."""
  entries = []
  for key, (kind, values) in features.items():
    feature = _int64_feature(values) if kind == "int64" else _float_feature(values)
    entry = _length_delimited(b"\x0a", key.encode("utf-8")) + _length_delimited(b"\x12", feature)
    entries.append(_length_delimited(b"\x0a", entry))
  return _length_delimited(b"\x0a", b"".join(entries))


def instance_features(instance, tokenizer, max_seq_length, num_prediction_slots):
  """The original TFRecord features of an instance (§5.1, §7.6), zero-padded."""
  def padded(values, length, pad=0):
    return list(values) + [pad] * (length - len(values))

  num_tokens = len(instance.tokens)
  num_predictions = len(instance.masked_lm_positions)
  return {
      "input_ids": ("int64", padded(tokenizer.convert_tokens_to_ids(instance.tokens), max_seq_length)),
      "input_mask": ("int64", padded([1] * num_tokens, max_seq_length)),
      "segment_ids": ("int64", padded(instance.segment_ids, max_seq_length)),
      "token_boundary": ("int64", padded(instance.token_boundary, max_seq_length)),
      "masked_lm_positions": ("int64", padded(instance.masked_lm_positions, num_prediction_slots)),
      "masked_lm_ids": ("int64", padded(tokenizer.convert_tokens_to_ids(instance.masked_lm_labels),
                                        num_prediction_slots)),
      "masked_lm_weights": ("float", padded([1.0] * num_predictions, num_prediction_slots, 0.0)),
      "next_sentence_labels": ("int64", [int(instance.is_random_next)]),
  }


def describe_instance(instance):
  """A readable summary of an instance for the log, like the original's first-20 dump."""
  return (f"tokens: {' '.join(instance.tokens)}\n"
          f"segment_ids: {' '.join(map(str, instance.segment_ids))}\n"
          f"token_boundary: {' '.join(map(str, instance.token_boundary))}\n"
          f"is_random_next: {instance.is_random_next}\n"
          f"masked_lm_positions: {' '.join(map(str, instance.masked_lm_positions))}\n"
          f"masked_lm_labels: {' '.join(instance.masked_lm_labels)}")


# --------------------------------------------------------------------------------------------------
# Chunks: raw lines -> documents -> serialized examples (runs in worker processes)
# --------------------------------------------------------------------------------------------------

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
    self.tokenizer = tokenization.FullTokenizer(settings.vocab_file, settings.do_lower_case,
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
    """Tokenized documents: a line that is empty after normalization ends a document (§7.1)."""
    use_spm = self.tokenizer.sp_model is not None
    documents = [[]]
    for raw in lines:
      if use_spm:
        line = tokenization.preprocess_text(raw, lower=self.settings.do_lower_case)
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
    examples = [encode_example(instance_features(instance, self.tokenizer, settings.max_seq_length,
                                                 settings.num_prediction_slots))
                for instance in instances]
    previewed = instances[:NUM_PREVIEW_INSTANCES] if chunk.index == 0 else []
    preview = [describe_instance(instance) for instance in previewed]
    return ChunkResult(chunk.index, examples, len(documents), chunk.num_bytes, preview)


_worker_processor = None


def _init_worker(settings):
  global _worker_processor
  _worker_processor = ChunkProcessor(settings)


def _process_in_worker(chunk):
  return _worker_processor.process(chunk)


class _InlineRunner:
  """Processes chunks in this process, one at a time."""

  def __init__(self, settings):
    self._processor = ChunkProcessor(settings)

  def results(self, chunks):
    return map(self._processor.process, chunks)

  def close(self):
    pass


class _PoolRunner:
  """Processes chunks in worker processes, yielding results in chunk order with a bounded backlog, so
  the input is read only a few chunks ahead (Pool.imap would read it all)."""

  def __init__(self, settings, num_workers):
    ChunkProcessor(settings)  # fail early, in this process, on a bad model or vocabulary
    self._num_workers = num_workers
    self._pool = multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (settings,))

  def results(self, chunks):
    pending = collections.deque()
    for chunk in chunks:
      pending.append(self._pool.apply_async(_process_in_worker, (chunk,)))
      if len(pending) > self._num_workers:
        yield pending.popleft().get()
    while pending:
      yield pending.popleft().get()

  def close(self):
    self._pool.terminate()
    self._pool.join()


# --------------------------------------------------------------------------------------------------
# Input and output files
# --------------------------------------------------------------------------------------------------

def _open_binary(path):
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "rb")
  return open(path, "rb")


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
    with _open_binary(path) as f:
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
  """Writes serialized examples to the output files in turn (§5.1); each file appears atomically."""

  def __init__(self, output_files):
    import tensorflow as tf
    self.paths = output_files
    self._tmp_paths = [f"{path}.tmp-{os.getpid()}" for path in output_files]
    for path in output_files:
      directory = os.path.dirname(path)
      if directory:
        tf.io.gfile.makedirs(directory)
    self._writers = [tf.io.TFRecordWriter(tmp) for tmp in self._tmp_paths]
    self._next = 0
    self.num_written = 0

  def write(self, serialized_example):
    self._writers[self._next].write(serialized_example)
    self._next = (self._next + 1) % len(self._writers)
    self.num_written += 1

  def close(self, commit):
    import tensorflow as tf
    for writer in self._writers:
      writer.close()
    for tmp, path in zip(self._tmp_paths, self.paths):
      if commit:
        tf.io.gfile.rename(tmp, path, overwrite=True)
      elif tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)


class Progress:
  """Logs documents, instances, instances/sec and an ETA from the share of input bytes processed."""

  def __init__(self, total_bytes, every_seconds):
    self.total_bytes = max(total_bytes, 1)
    self.every_seconds = every_seconds
    self.start = self._last = time.monotonic()
    self.documents = self.instances = self.bytes = 0

  def update(self, result):
    self.documents += result.num_documents
    self.instances += len(result.examples)
    self.bytes += result.num_bytes
    now = time.monotonic()
    if now - self._last >= self.every_seconds:
      self._last = now
      self.log("progress")

  def log(self, what):
    elapsed = max(time.monotonic() - self.start, 1e-9)
    share = min(self.bytes / self.total_bytes, 1.0)
    eta = elapsed * (1 - share) / share if share > 0 else float("nan")
    logging.info("%s: %d documents, %d instances (%.0f/s), %.1f%% of input, ETA %.0fs", what, self.documents,
                 self.instances, self.instances / elapsed, 100 * share, eta)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def _require(condition, flag_name, requirement):
  if not condition:
    raise UserError(f"--{flag_name} must be {requirement}, got {getattr(FLAGS, flag_name)!r}")


def settings_from_flags():
  """Settings from the flags, with every bad value reported as a one-line UserError."""
  _require(FLAGS.max_seq_length >= 5, "max_seq_length", "at least 5 ([CLS] A [SEP] B [SEP])")
  _require(FLAGS.max_predictions_per_seq >= 1, "max_predictions_per_seq", "at least 1")
  _require(0.0 < FLAGS.masked_lm_prob <= 1.0, "masked_lm_prob", "in (0, 1]")
  _require(0.0 <= FLAGS.short_seq_prob <= 1.0, "short_seq_prob", "in [0, 1]")
  _require(FLAGS.dupe_factor >= 1, "dupe_factor", "at least 1")
  _require(FLAGS.ngram >= 1, "ngram", "at least 1")
  _require(FLAGS.num_workers >= 1, "num_workers", "at least 1")
  _require(FLAGS.max_documents_in_memory >= 0, "max_documents_in_memory", "at least 0")
  _require(FLAGS.input_file_mode in INPUT_FILE_MODES, "input_file_mode", "'r' or 'rb'")
  return Settings(
      vocab_file=FLAGS.vocab_file, spm_model_file=FLAGS.spm_model_file, do_lower_case=FLAGS.do_lower_case,
      max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      masked_lm_prob=FLAGS.masked_lm_prob, short_seq_prob=FLAGS.short_seq_prob, dupe_factor=FLAGS.dupe_factor,
      ngram=FLAGS.ngram, favor_shorter_ngram=FLAGS.favor_shorter_ngram,
      do_whole_word_mask=FLAGS.do_whole_word_mask, do_permutation=FLAGS.do_permutation,
      random_next_sentence=FLAGS.random_next_sentence, random_seed=FLAGS.random_seed)


def output_paths(value):
  paths = [path.strip() for path in (value or "").split(",") if path.strip()]
  if not paths:
    raise UserError("--output_file is required")
  return paths


def create_pretraining_data(settings, input_files, output_files, num_workers=1, max_documents_in_memory=0,
                            input_file_mode="r", log_every_seconds=30):
  """Writes the TFRecords; returns (documents, instances). Output files are replaced only on success."""
  runner = _InlineRunner(settings) if num_workers == 1 else _PoolRunner(settings, num_workers)
  writer = None
  try:
    writer = RoundRobinWriter(output_files)
    progress = Progress(sum(map(_file_size, input_files)), log_every_seconds)
    for result in runner.results(read_chunks(input_files, max_documents_in_memory, input_file_mode)):
      for description in result.preview:
        logging.info("*** Example ***\n%s", description)
      for example in result.examples:
        writer.write(example)
      progress.update(result)
    if not progress.documents:
      raise UserError(f"--input_file: no text in {', '.join(input_files)}")
    progress.log("done")
    writer.close(commit=True)
    writer = None
    return progress.documents, progress.instances
  finally:
    runner.close()
    if writer is not None:
      writer.close(commit=False)


def main(argv):
  del argv
  settings = settings_from_flags()
  input_files = expand_inputs(FLAGS.input_file, "input_file")
  output_files = output_paths(FLAGS.output_file)
  documents, instances = create_pretraining_data(
      settings, input_files, output_files, FLAGS.num_workers, FLAGS.max_documents_in_memory,
      FLAGS.input_file_mode, FLAGS.log_every_seconds)
  logging.info("wrote %d instances from %d documents to %s", instances, documents, ", ".join(output_files))


if __name__ == "__main__":
  define_flags()
  run_main(main)
