"""SQuAD 1.1/2.0 input side: JSON -> examples -> windowed features -> TFRecord caches -> tf.data.

Window rule, feature layout, max-context rule, training labels and TFRecord keys follow the original
release (spec §5.2, §6.1, §6.3). Where the original aligned pieces to the raw context with a banded LCS
and dropped examples it could not align (§6.2, quirk 12), this module uses the tokenizer's exact raw
character offsets, so every example is converted and answer text is recovered from the raw context.

TensorFlow is imported only where TFRecords are written or read: reading and conversion (which run
in spawned worker processes) stay light.
"""

import collections
import dataclasses
import json
import multiprocessing
import os
import random
import tempfile
import time
from typing import NamedTuple

import numpy as np
from absl import logging

from albert import fileio
from albert.errors import UserError, require_file
from albert.tokenization import preprocess_text

FIRST_UNIQUE_ID = 1000000000
TRAIN_SHUFFLE_SEED = 12345
DEFAULT_TRAIN_FEATURE_FILE = "train.tf_record"
DEFAULT_PREDICT_FEATURE_FILE = "predict.tf_record"
DEFAULT_PREDICT_FEATURE_LEFT_FILE = "predict_left.jsonl"
ANSWER_EXACT = "exact"
_SKIP_LOG_LINES_PER_REASON = 5
_TASKS_PER_CHUNK = 32
_CHUNKS_IN_FLIGHT_PER_WORKER = 4


# ---------------------------------------------------------------------------------------------------
# Reading examples


@dataclasses.dataclass
class SquadExample:
  """One question about one paragraph; `start_position` is a character offset in `paragraph_text`."""
  qas_id: str
  question_text: str
  paragraph_text: str
  orig_answer_text: str | None = None
  start_position: int | None = None
  is_impossible: bool = False
  title: str = ""
  answers: list = dataclasses.field(default_factory=list)


class SquadReadResult(NamedTuple):
  examples: list
  skipped: collections.Counter
  repaired: int = 0


class _SkipQuestion(Exception):
  """A question that cannot be used; the message is the reason it is counted under."""


def read_squad_examples(input_file, is_training):
  """Reads a SQuAD 1.1/2.0 JSON file; unusable questions are counted and logged, never fatal.

  Training examples carry the first answer (text and character start, repaired when `answer_start`
  does not point at the text) or, for impossible questions, start -1 and text "" like the original.
  Evaluation examples keep the answer fields None; `answers` and `is_impossible` keep the file's
  values for evaluation and analysis.
  """
  data = fileio.read_json(input_file, what="SQuAD file")
  examples, skipped, seen_ids, repaired = [], collections.Counter(), set(), 0
  for location, title, context, qa in _questions(data, input_file):
    try:
      example, was_repaired = _read_question(qa, title, context, is_training, seen_ids)
    except _SkipQuestion as skip:
      reason = str(skip)
      skipped[reason] += 1
      if skipped[reason] <= _SKIP_LOG_LINES_PER_REASON:
        logging.warning("%s: skipping %s: %s", input_file, location, reason)
      continue
    if was_repaired:
      repaired += 1
      if repaired <= _SKIP_LOG_LINES_PER_REASON:
        logging.warning("%s: %s (id %s): answer_start repaired to %d", input_file, location,
                        example.qas_id, example.start_position)
    seen_ids.add(example.qas_id)
    examples.append(example)
  logging.info("%s: %s", input_file, _read_summary(len(examples), skipped, repaired))
  return SquadReadResult(examples, skipped, repaired)


def _read_summary(num_examples, skipped, repaired):
  reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items()))
  summary = f"read {num_examples} examples, skipped {sum(skipped.values())} questions"
  summary += f" ({reasons})" if reasons else ""
  return summary + f", answer_start repaired for {repaired}"


def _questions(data, input_file):
  """Yields (location, title, context, qa) for every qa; a broken article/paragraph layout is fatal."""
  articles = data.get("data") if isinstance(data, dict) else None
  if not isinstance(articles, list):
    raise UserError(f"SQuAD file {input_file} is not in SQuAD layout: no 'data' list of articles")
  for article_index, article in enumerate(articles):
    paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
      raise UserError(f"SQuAD file {input_file} is not in SQuAD layout: data[{article_index}] has no "
                      "'paragraphs' list")
    title = article.get("title")
    title = title if isinstance(title, str) else ""
    for paragraph_index, paragraph in enumerate(paragraphs):
      where = f"data[{article_index}].paragraphs[{paragraph_index}]"
      qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
      if not isinstance(qas, list):
        raise UserError(f"SQuAD file {input_file} is not in SQuAD layout: {where} has no 'qas' list")
      for qa_index, qa in enumerate(qas):
        yield f"{where}.qas[{qa_index}]", title, paragraph.get("context"), qa


def _read_question(qa, title, context, is_training, seen_ids):
  """Returns (SquadExample, answer_start_was_repaired) or raises _SkipQuestion."""
  if not isinstance(qa, dict):
    raise _SkipQuestion("malformed question entry")
  qas_id = qa.get("id")
  if isinstance(qas_id, int) and not isinstance(qas_id, bool):
    qas_id = str(qas_id)
  if not isinstance(qas_id, str) or not qas_id:
    raise _SkipQuestion("missing id")
  if qas_id in seen_ids:
    raise _SkipQuestion("duplicate id")
  question = qa.get("question")
  if not isinstance(question, str) or not question.strip():
    raise _SkipQuestion("missing question")
  if not isinstance(context, str):
    raise _SkipQuestion("missing context")
  if not context.strip():
    raise _SkipQuestion("empty context")
  is_impossible = qa.get("is_impossible", False)
  if not isinstance(is_impossible, bool):
    if is_training:
      raise _SkipQuestion("malformed is_impossible (training)")
    is_impossible = False  # prediction does not depend on it
  answers = qa.get("answers", [])
  answers = [a for a in answers if isinstance(a, dict)] if isinstance(answers, list) else []
  example = SquadExample(qas_id=qas_id, question_text=question, paragraph_text=context,
                         is_impossible=is_impossible, title=title, answers=answers)
  if not is_training:
    return example, False
  if is_impossible:
    example.orig_answer_text, example.start_position = "", -1
    return example, False
  if not answers:
    raise _SkipQuestion("no answer for a possible question (training)")
  text, answer_start = answers[0].get("text"), answers[0].get("answer_start")
  if not isinstance(text, str) or not text.strip():
    raise _SkipQuestion("empty answer text (training)")
  if not isinstance(answer_start, int) or isinstance(answer_start, bool):
    raise _SkipQuestion("malformed answer_start (training)")
  example.orig_answer_text = text
  example.start_position = _locate_answer(context, text, answer_start)
  return example, example.start_position != answer_start


def _locate_answer(context, text, answer_start):
  """The answer's character start: `answer_start` if the text is there, else its nearest occurrence."""
  if answer_start >= 0 and context.startswith(text, answer_start):
    return answer_start
  occurrences, position = [], context.find(text)
  while position >= 0:
    occurrences.append(position)
    position = context.find(text, position + 1)
  if not occurrences:
    raise _SkipQuestion("answer_start does not match answer text")
  return min(occurrences, key=lambda p: (abs(p - answer_start), p))


# ---------------------------------------------------------------------------------------------------
# Features


@dataclasses.dataclass
class FeatureMeta:
  """What post-processing needs of a window; one JSON line per window in the predict "left" file."""
  unique_id: int
  example_index: int
  doc_span_index: int
  doc_offset: int
  doc_char_spans: list
  token_is_max_context: list


@dataclasses.dataclass
class SquadFeature:
  """One window of one example: the model inputs (§6.3.4), training labels and its FeatureMeta.

  Arrays are numpy (int32 [max_seq_length] inputs, [window tokens, 2] char spans, [window tokens]
  bool max-context flags): compact to pass between processes; lists only in the "left" file.
  """
  unique_id: int | None
  example_index: int
  doc_span_index: int
  input_ids: np.ndarray
  input_mask: np.ndarray
  segment_ids: np.ndarray
  p_mask: np.ndarray
  doc_offset: int
  doc_char_spans: np.ndarray
  token_is_max_context: np.ndarray
  start_position: int | None = None
  end_position: int | None = None
  is_impossible: bool | None = None

  def meta(self):
    return FeatureMeta(self.unique_id, self.example_index, self.doc_span_index, self.doc_offset,
                       self.doc_char_spans.tolist(), self.token_is_max_context.tolist())


@dataclasses.dataclass
class ConversionStats:
  """Counts of one conversion run; answer counts cover possible training examples."""
  examples: int = 0
  features: int = 0
  truncated_questions: int = 0
  windows_without_answer: int = 0
  answers_exact: int = 0
  answers_inexact: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples_without_features: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)

  @property
  def exact_answer_rate(self):
    """Share of labelled answers whose token span gives back exactly the answer text."""
    total = self.answers_exact + sum(self.answers_inexact.values())
    return self.answers_exact / total if total else 1.0

  def as_dict(self):
    values = dataclasses.asdict(self)
    values["answers_inexact"] = dict(self.answers_inexact)
    values["examples_without_features"] = dict(self.examples_without_features)
    values["exact_answer_rate"] = self.exact_answer_rate
    return values

  def record(self, outcome, num_features):
    self.examples += 1
    self.features += num_features
    self.truncated_questions += outcome.truncated_question
    self.windows_without_answer += outcome.windows_without_answer
    if outcome.answer == ANSWER_EXACT:
      self.answers_exact += 1
    elif outcome.answer:
      self.answers_inexact[outcome.answer] += 1
    if outcome.dropped:
      self.examples_without_features[outcome.dropped] += 1

  def log_summary(self):
    inexact = ", ".join(f"{r}: {n}" for r, n in sorted(self.answers_inexact.items())) or "none"
    dropped = ", ".join(f"{r}: {n}" for r, n in sorted(self.examples_without_features.items()))
    logging.info("converted %d examples into %d features; %d questions truncated; %d examples without "
                 "features%s", self.examples, self.features, self.truncated_questions,
                 sum(self.examples_without_features.values()), f" ({dropped})" if dropped else "")
    if self.answers_exact or self.answers_inexact:
      logging.info("answers recovered exactly: %d (%.2f%%); inexactly: %s; training windows without "
                   "the answer: %d", self.answers_exact, 100 * self.exact_answer_rate, inexact,
                   self.windows_without_answer)


class _Document(NamedTuple):
  """A tokenized context, compact so thousands can be cached: piece ids and raw [start, end) spans."""
  ids: np.ndarray
  starts: np.ndarray
  ends: np.ndarray


class _Outcome(NamedTuple):
  truncated_question: bool
  answer: str | None  # ANSWER_EXACT, an inexactness reason, or None (no answer to label)
  dropped: str | None  # why the example produced no features
  windows_without_answer: int


def check_window_flags(max_seq_length, doc_stride, max_query_length):
  """UserError unless the window flags leave room for at least one document token."""
  if max_query_length < 1:
    raise UserError(f"--max_query_length must be positive, got {max_query_length}")
  if doc_stride < 1:
    raise UserError(f"--doc_stride must be positive, got {doc_stride}")
  if max_seq_length <= max_query_length + 3:
    raise UserError(f"--max_seq_length ({max_seq_length}) must be greater than --max_query_length + 3 "
                    f"({max_query_length + 3})")


def doc_spans(num_tokens, max_tokens_for_doc, doc_stride):
  """The (start, length) windows over a document (§6.3.3)."""
  spans, start = [], 0
  while start < num_tokens:
    length = min(num_tokens - start, max_tokens_for_doc)
    spans.append((start, length))
    if start + length == num_tokens:
      break
    start += min(length, doc_stride)
  return spans


def max_context_flags(spans, num_tokens):
  """Per span, per token: is this span the token's max-context span (§6.3.5; ties: earliest)."""
  if len(spans) == 1:  # the common case at max_seq_length 384: every token has only this span
    return [np.ones(spans[0][1], bool)]
  best_score = np.full(num_tokens, -np.inf)
  best_span = np.full(num_tokens, -1)
  for span_index, (start, length) in enumerate(spans):
    positions = np.arange(start, start + length)
    score = np.minimum(positions - start, start + length - 1 - positions) + 0.01 * length
    better = score > best_score[positions]
    best_score[positions[better]] = score[better]
    best_span[positions[better]] = span_index
  return [best_span[start:start + length] == span_index
          for span_index, (start, length) in enumerate(spans)]


class _FeatureBuilder:
  """Tokenizes contexts and questions and builds the windows of one example; runs in workers too."""

  def __init__(self, tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
    self.tokenizer = tokenizer
    self.max_seq_length = max_seq_length
    self.doc_stride = doc_stride
    self.max_query_length = max_query_length
    self.is_training = is_training

  def tokenize_document(self, text):
    tokens = self.tokenizer.tokenize_with_offsets(text)
    ids = self.tokenizer.convert_tokens_to_ids([token.piece for token in tokens])
    return _Document(np.asarray(ids, np.int32), np.asarray([t.start for t in tokens], np.int32),
                     np.asarray([t.end for t in tokens], np.int32))

  def query_ids(self, question):
    """All ids of the question, preprocessed like the original in SentencePiece mode."""
    if self.tokenizer.sp_model is not None:
      question = preprocess_text(question, lower=self.tokenizer.do_lower_case)
    return self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(question))

  def build(self, example_index, example, document):
    """Returns (features without unique_ids, _Outcome) for one example."""
    query = self.query_ids(example.question_text)
    truncated = len(query) > self.max_query_length
    query = query[:self.max_query_length]
    answer_span, answer = None, None
    if self.is_training and not example.is_impossible:
      answer_span = answer_token_span(document, example.start_position, example.orig_answer_text)
      if answer_span is None:
        return [], _Outcome(truncated, None, "answer covers no token (training)", 0)
      answer = answer_recovery(example.paragraph_text, document, answer_span,
                               example.start_position, example.orig_answer_text)
    num_tokens = len(document.ids)
    if num_tokens == 0:
      return [], _Outcome(truncated, answer, "context has no tokens", 0)
    spans = doc_spans(num_tokens, self.max_seq_length - len(query) - 3, self.doc_stride)
    max_context = max_context_flags(spans, num_tokens)
    char_spans = np.stack([document.starts, document.ends], axis=1)
    features = [self._window(example_index, span_index, query, document.ids, char_spans, span,
                             max_context[span_index])
                for span_index, span in enumerate(spans)]
    if self.is_training:
      for feature, span in zip(features, spans):
        self._label(feature, span, answer_span)
    windows_without_answer = 0 if answer_span is None else sum(f.is_impossible for f in features)
    return features, _Outcome(truncated, answer, None, windows_without_answer)

  def _window(self, example_index, span_index, query, doc_ids, char_spans, span, max_context):
    """[CLS] query [SEP] window [SEP] + padding, with the masks of §6.3.4."""
    start, length = span
    doc_offset = len(query) + 2
    doc_end = doc_offset + length  # position of the final [SEP]
    input_ids = np.zeros(self.max_seq_length, np.int32)
    input_ids[0] = self.tokenizer.cls_id
    input_ids[1:doc_offset - 1] = query
    input_ids[doc_offset - 1] = input_ids[doc_end] = self.tokenizer.sep_id
    input_ids[doc_offset:doc_end] = doc_ids[start:start + length]
    input_mask = np.zeros(self.max_seq_length, np.int32)
    input_mask[:doc_end + 1] = 1
    segment_ids = np.zeros(self.max_seq_length, np.int32)
    segment_ids[doc_offset:doc_end + 1] = 1
    p_mask = np.ones(self.max_seq_length, np.int32)  # only [CLS] and the document can be answers
    p_mask[0] = 0
    p_mask[doc_offset:doc_end] = 0
    return SquadFeature(
        unique_id=None, example_index=example_index, doc_span_index=span_index, input_ids=input_ids,
        input_mask=input_mask, segment_ids=segment_ids, p_mask=p_mask, doc_offset=doc_offset,
        doc_char_spans=char_spans[start:start + length], token_is_max_context=max_context)

  @staticmethod
  def _label(feature, span, answer_span):
    """Answer positions in the feature, or [CLS] (0, 0) and impossible when not fully inside (§6.3.6)."""
    start, length = span
    inside = answer_span is not None and start <= answer_span[0] and answer_span[1] < start + length
    if inside:
      feature.start_position = answer_span[0] - start + feature.doc_offset
      feature.end_position = answer_span[1] - start + feature.doc_offset
    else:
      feature.start_position = feature.end_position = 0
    feature.is_impossible = not inside


def answer_token_span(document, char_start, answer_text):
  """(first, last) document token of an answer's characters, or None if no token covers them.

  First: the first non-empty token ending after the answer start (covering it or after it).
  Last: the last non-empty token starting before the answer end.
  """
  char_end = char_start + len(answer_text)
  non_empty = document.ends > document.starts
  firsts = np.flatnonzero(non_empty & (document.ends > char_start))
  lasts = np.flatnonzero(non_empty & (document.starts < char_end))
  if not len(firsts) or not len(lasts) or lasts[-1] < firsts[0]:
    return None
  return int(firsts[0]), int(lasts[-1])


def answer_recovery(paragraph_text, document, answer_span, char_start, answer_text):
  """ANSWER_EXACT if the span's raw text is the answer, else why it differs."""
  span_start = int(document.starts[answer_span[0]])
  span_end = int(document.ends[answer_span[1]])
  if paragraph_text[span_start:span_end].strip() == answer_text.strip():
    return ANSWER_EXACT
  char_end = char_start + len(answer_text)
  starts_inside = paragraph_text[span_start:char_start].strip() != ""
  ends_inside = paragraph_text[char_end:span_end].strip() != ""
  if starts_inside and ends_inside:
    return "answer starts and ends inside tokens"
  if starts_inside:
    return "answer starts inside a token"
  if ends_inside:
    return "answer ends inside a token"
  return "answer text contains characters the tokenizer dropped"


class _EncodedFeature(NamedTuple):
  """A feature as written: record entries and meta JSON, both still without the unique_id."""
  record_body: bytes
  meta_json_tail: str | None  # the FeatureMeta JSON after "{" without unique_id; predict only


def _encode_features(builder, example_index, example, document):
  """`builder.build`, with every feature encoded for the files (done in the workers)."""
  features, outcome = builder.build(example_index, example, document)
  return [_EncodedFeature(encode_feature_body(f, builder.is_training),
                          None if builder.is_training else _meta_json_tail(f))
          for f in features], outcome


# Worker processes hold their own builder (the tokenizer is pickled once per worker).
_worker_builder = None


def _init_worker(builder):
  global _worker_builder
  _worker_builder = builder


def _run_in_worker(function, tasks):
  return [function(_worker_builder, *task) for task in tasks]


class _SerialRunner:
  def __init__(self, builder):
    self.builder = builder

  def map(self, function, tasks):
    return (function(self.builder, *task) for task in tasks)

  def close(self):
    pass


class _PoolRunner:
  """Ordered, bounded parallel map: at most a few chunks per worker are in flight or waiting."""

  def __init__(self, builder, num_workers):
    context = multiprocessing.get_context("spawn")
    self.pool = context.Pool(num_workers, initializer=_init_worker, initargs=(builder,))
    self.max_in_flight = _CHUNKS_IN_FLIGHT_PER_WORKER * num_workers

  def map(self, function, tasks):
    pending = collections.deque()
    for chunk in _chunks(tasks, _TASKS_PER_CHUNK):
      pending.append(self.pool.apply_async(_run_in_worker, (function, chunk)))
      if len(pending) >= self.max_in_flight:
        yield from pending.popleft().get()
    while pending:
      yield from pending.popleft().get()

  def close(self):
    self.pool.terminate()
    self.pool.join()


def _chunks(items, size):
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


class _Progress:
  """Logs done/total with rate and ETA at most every `every_seconds`."""

  def __init__(self, what, unit, total, every_seconds):
    self.what, self.unit, self.total, self.every_seconds = what, unit, total, every_seconds
    self.started = self.last_logged = time.monotonic()

  def update(self, done, extra=""):
    now = time.monotonic()
    if now - self.last_logged < self.every_seconds:
      return
    self.last_logged = now
    rate = done / max(now - self.started, 1e-9)
    eta = (self.total - done) / rate if rate > 0 else float("inf")
    logging.info("%s: %d/%d %s (%.1f %s/sec, ETA %s)%s", self.what, done, self.total, self.unit, rate,
                 self.unit, _format_seconds(eta), extra)


def _format_seconds(seconds):
  if seconds == float("inf"):
    return "unknown"
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                 is_training, num_workers=1, stats=None, log_every_seconds=5.0):
  """Yields the SquadFeatures of `examples` in order (examples, then windows), numbered from 1e9.

  Each distinct context is tokenized once. `num_workers` > 1 tokenizes and builds windows in spawned
  processes (the tokenizer must be picklable; as always with spawn, the main script needs an
  `if __name__ == "__main__"` guard); results, unique_ids included, are identical to one worker.
  `stats` (a ConversionStats) is filled in as features are yielded and logged at the end.
  """
  builder = _builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
  stats = ConversionStats() if stats is None else stats
  numbered = _numbered_features(_as_list(examples), builder, _FeatureBuilder.build, num_workers, stats,
                                log_every_seconds)
  return (dataclasses.replace(feature, unique_id=unique_id) for unique_id, feature in numbered)


def _builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
  check_window_flags(max_seq_length, doc_stride, max_query_length)
  return _FeatureBuilder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)


def _as_list(examples):
  return examples if isinstance(examples, list) else list(examples)


def _numbered_features(examples, builder, build, num_workers, stats, log_every_seconds):
  """Yields (unique_id, item) for the items `build(builder, index, example, document)` makes."""
  runner = _PoolRunner(builder, num_workers) if num_workers > 1 else _SerialRunner(builder)
  try:
    documents = _tokenize_contexts(runner, examples, log_every_seconds)
    tasks = ((index, example, documents[example.paragraph_text])
             for index, example in enumerate(examples))
    progress = _Progress("converting", "questions", len(examples), log_every_seconds)
    unique_id = FIRST_UNIQUE_ID
    for items, outcome in runner.map(build, tasks):
      stats.record(outcome, len(items))
      for item in items:
        yield unique_id, item
        unique_id += 1
      progress.update(stats.examples, f", {stats.features} features")
  finally:
    runner.close()
  stats.log_summary()


def _tokenize_contexts(runner, examples, log_every_seconds):
  """{context text: _Document} for the distinct contexts, in order of first use."""
  contexts = list(dict.fromkeys(example.paragraph_text for example in examples))
  progress = _Progress("tokenizing contexts", "contexts", len(contexts), log_every_seconds)
  documents = {}
  for text, document in zip(contexts, runner.map(_FeatureBuilder.tokenize_document,
                                                 ((text,) for text in contexts))):
    documents[text] = document
    progress.update(len(documents))
  return documents


# ---------------------------------------------------------------------------------------------------
# Files: TFRecords, feature metas


# The TFRecord payload is a tf.train.Example of int64 lists, encoded here in protobuf wire format:
# workers encode features without TensorFlow, and the parent only prepends the unique_id entry (the
# ids are assigned in order there) before writing. Tests check the bytes against TensorFlow's parser.


def _varint(value):
  out = bytearray()
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


_SMALL_VARINTS = [_varint(value) for value in range(1 << 15)]  # covers the ids of a 30k vocab


def _packed_varints(values):
  """The packed encoding of a 1-D array of non-negative ints (ids, masks, positions)."""
  values = np.asarray(values)
  if values.size and values.min() < 0:
    raise ValueError(f"negative feature value {values.min()}")
  high = values.max(initial=0)
  if high < 0x80:  # masks and small positions: one byte each
    return values.astype(np.uint8).tobytes()
  if high < len(_SMALL_VARINTS):
    return b"".join([_SMALL_VARINTS[value] for value in values.tolist()])
  return b"".join([_varint(value) for value in values.tolist()])


def _length_delimited(tag, payload):
  return tag + _varint(len(payload)) + payload


def _int64_feature_entry(key, values):
  """One `Features.feature` map entry: key -> Feature{int64_list: Int64List{value (packed)}}."""
  int64_list = _length_delimited(b"\x0a", _packed_varints(values))
  feature = _length_delimited(b"\x1a", int64_list)
  entry = _length_delimited(b"\x0a", key.encode("utf-8")) + _length_delimited(b"\x12", feature)
  return _length_delimited(b"\x0a", entry)


def encode_feature_body(feature, is_training):
  """The Example map entries of a feature except `unique_ids`; labels only for the train file."""
  values = {"input_ids": feature.input_ids, "input_mask": feature.input_mask,
            "segment_ids": feature.segment_ids, "p_mask": feature.p_mask}
  if is_training:
    values.update(start_positions=[feature.start_position], end_positions=[feature.end_position],
                  is_impossible=[int(feature.is_impossible)])
  return b"".join(_int64_feature_entry(key, value) for key, value in values.items())


def encode_example(unique_id, body):
  """A serialized tf.train.Example: the `unique_ids` entry followed by the feature's other entries."""
  return _length_delimited(b"\x0a", _int64_feature_entry("unique_ids", [unique_id]) + body)


def _meta_json_tail(feature):
  meta = feature.meta()
  del meta.unique_id
  return json.dumps(vars(meta), separators=(",", ":"))[1:]  # vars(), not asdict(): no deep copy


def _meta_line(unique_id, json_tail):
  return f'{{"unique_id":{unique_id},{json_tail}\n'


class FeatureWriter:
  """Writes SquadFeatures to a TFRecord file with the original keys (§5.2), atomically.

  Records go to a temporary file beside `path` that replaces `path` on `close()` (or a clean exit
  from the `with` block); on an error the temporary file is removed and `path` is untouched.
  """

  def __init__(self, path, is_training):
    import tensorflow as tf
    self.path = path
    self.is_training = is_training
    self.num_features = 0
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, self._tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                          dir=directory)
    os.close(fd)
    self._writer = tf.io.TFRecordWriter(self._tmp_path)

  def process_feature(self, feature):
    self.write_encoded(feature.unique_id, encode_feature_body(feature, self.is_training))

  def write_encoded(self, unique_id, record_body):
    self._writer.write(encode_example(unique_id, record_body))
    self.num_features += 1

  def close(self):
    self._writer.close()
    os.replace(self._tmp_path, self.path)

  def abort(self):
    self._writer.close()
    if os.path.exists(self._tmp_path):
      os.remove(self._tmp_path)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, traceback):
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_feature_metas(path, metas):
  """Writes FeatureMetas one JSON object per line, atomically; returns how many."""
  count = 0
  with fileio.atomic_open(path) as f:
    for meta in metas:
      f.write(json.dumps(vars(meta), separators=(",", ":")))  # vars(), not asdict(): no deep copy
      f.write("\n")
      count += 1
  return count


def read_feature_metas(path):
  """Yields the FeatureMetas of a predict "left" file; a malformed line is a UserError naming it."""
  if not os.path.isfile(path):
    raise UserError(f"--predict_feature_left_file: file not found: {path}")
  return _parse_feature_metas(path)


def _parse_feature_metas(path):
  fields = [field.name for field in dataclasses.fields(FeatureMeta)]
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, 1):
      try:
        values = json.loads(line)
        yield FeatureMeta(**{name: values[name] for name in fields})
      except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"feature meta file {path} line {line_number} is malformed: {e}") from None


def feature_spec(seq_length, is_training, use_p_mask=True):
  """tf.io parsing spec of the TFRecord keys (§5.2); v1 runs do not read `p_mask`."""
  import tensorflow as tf
  spec = {"unique_ids": tf.io.FixedLenFeature([], tf.int64)}
  names = ["input_ids", "input_mask", "segment_ids"] + (["p_mask"] if use_p_mask else [])
  spec.update({name: tf.io.FixedLenFeature([seq_length], tf.int64) for name in names})
  if is_training:
    for name in ("start_positions", "end_positions", "is_impossible"):
      spec[name] = tf.io.FixedLenFeature([], tf.int64)
  return spec


def input_fn_builder(input_file, seq_length, is_training, drop_remainder, batch_size, use_p_mask=True,
                     seed=None):
  """A `dataset_fn(input_context=None)` for `strategy.distribute_datasets_from_function`.

  `batch_size` is global; with an InputContext each input pipeline reads its own shard and batches
  per replica. Training repeats and shuffles (buffer 100) like the original; prediction keeps the
  file order. Integer features arrive as int32.
  """
  import tensorflow as tf
  from albert import input_pipeline  # imports TensorFlow: conversion workers never need it
  if not tf.io.gfile.exists(input_file):
    raise UserError(f"SQuAD feature file not found: {input_file}")
  spec = feature_spec(seq_length, is_training, use_p_mask)
  return input_pipeline.tfrecord_dataset_fn(input_file, spec, batch_size, is_training, drop_remainder, seed)


# ---------------------------------------------------------------------------------------------------
# Cached feature files


class PredictFeatures(NamedTuple):
  examples: list
  feature_file: str
  feature_left_file: str
  num_features: int


def prepare_train_features(train_file, train_feature_file, tokenizer, max_seq_length, doc_stride,
                           max_query_length, output_dir=None, num_workers=1):
  """Writes the train TFRecord unless it exists; returns the number of training EXAMPLES (§6.3.7).

  The count is kept in a sidecar JSON next to the TFRecord, so reusing a cache need not re-read the
  train file (without the sidecar, e.g. a cache from elsewhere, the train file is read to count).
  """
  check_window_flags(max_seq_length, doc_stride, max_query_length)
  feature_file = train_feature_path(train_feature_file, output_dir)
  settings = _window_settings(max_seq_length, doc_stride, max_query_length)
  if os.path.exists(feature_file):
    info = _cached_info(feature_file, "train_feature_file", settings)
    if info is None:
      num_examples = len(read_squad_examples(require_file(train_file, "train_file"), True).examples)
    else:
      num_examples = info["num_examples"]
    logging.info("reusing cached train features %s (%d examples)", feature_file, num_examples)
    return num_examples
  examples = read_squad_examples(require_file(train_file, "train_file"), is_training=True).examples
  random.Random(TRAIN_SHUFFLE_SEED).shuffle(examples)
  _remove_files(_info_path(feature_file))
  stats = write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, True,
                         feature_file, num_workers=num_workers)
  _write_info(feature_file, settings, train_file, stats)
  return len(examples)


def train_feature_path(train_feature_file, output_dir):
  """The train TFRecord that `prepare_train_features` writes or reuses (and training then reads)."""
  return _feature_path(train_feature_file, output_dir, DEFAULT_TRAIN_FEATURE_FILE, "train_feature_file")


def prepare_predict_features(predict_file, predict_feature_file, predict_feature_left_file, tokenizer,
                             max_seq_length, doc_stride, max_query_length, output_dir=None,
                             num_workers=1):
  """Reads the predict examples; reuses the TFRecord and the left file only if BOTH exist."""
  check_window_flags(max_seq_length, doc_stride, max_query_length)
  feature_file = _feature_path(predict_feature_file, output_dir, DEFAULT_PREDICT_FEATURE_FILE,
                               "predict_feature_file")
  left_file = _feature_path(predict_feature_left_file, output_dir, DEFAULT_PREDICT_FEATURE_LEFT_FILE,
                            "predict_feature_left_file")
  settings = _window_settings(max_seq_length, doc_stride, max_query_length)
  examples = read_squad_examples(require_file(predict_file, "predict_file"), is_training=False).examples
  if os.path.exists(feature_file) and os.path.exists(left_file):
    _cached_info(feature_file, "predict_feature_file", settings)
    with open(left_file, encoding="utf-8") as f:
      num_features = sum(1 for _ in f)
    logging.info("reusing cached predict features %s and %s (%d features)", feature_file, left_file,
                 num_features)
    return PredictFeatures(examples, feature_file, left_file, num_features)
  # A half-replaced pair must never look reusable, so the old files go before the new ones are written.
  _remove_files(feature_file, left_file, _info_path(feature_file))
  stats = write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, False,
                         feature_file, left_file, num_workers)
  _write_info(feature_file, settings, predict_file, stats)
  return PredictFeatures(examples, feature_file, left_file, stats.features)


def write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training,
                   feature_file, feature_left_file=None, num_workers=1, log_every_seconds=5.0):
  """Converts and writes in one streaming pass: the TFRecord, plus the left file when predicting.

  The files are the same as writing `convert_examples_to_features` through FeatureWriter and
  write_feature_metas, but the workers also encode the records, so more workers help. Returns
  the ConversionStats.
  """
  if is_training == (feature_left_file is not None):
    raise ValueError("a feature left file is written exactly when predicting")
  builder = _builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
  stats = ConversionStats()
  encoded = _numbered_features(_as_list(examples), builder, _encode_features, num_workers, stats,
                               log_every_seconds)
  with FeatureWriter(feature_file, is_training) as writer:
    if is_training:
      for unique_id, feature in encoded:
        writer.write_encoded(unique_id, feature.record_body)
    else:
      with fileio.atomic_open(feature_left_file) as left:
        for unique_id, feature in encoded:
          writer.write_encoded(unique_id, feature.record_body)
          left.write(_meta_line(unique_id, feature.meta_json_tail))
  logging.info("wrote %d features to %s%s", writer.num_features, feature_file,
               f" and {feature_left_file}" if feature_left_file else "")
  return stats


def _feature_path(path, output_dir, default_name, flag_name):
  if path:
    return path
  if not output_dir:
    raise UserError(f"--{flag_name} or --output_dir is required")
  return os.path.join(output_dir, default_name)


def _window_settings(max_seq_length, doc_stride, max_query_length):
  return {"max_seq_length": max_seq_length, "doc_stride": doc_stride,
          "max_query_length": max_query_length}


def _info_path(feature_file):
  return feature_file + ".info.json"


def _write_info(feature_file, settings, source_file, stats):
  fileio.write_json(_info_path(feature_file),
                    dict(settings, source_file=source_file, num_examples=stats.examples,
                         num_features=stats.features, conversion=stats.as_dict()))


def _cached_info(feature_file, flag_name, settings):
  """The cache's sidecar (None if absent); UserError if it was built with other window flags."""
  path = _info_path(feature_file)
  if not os.path.exists(path):
    return None
  info = fileio.read_json(path, what=f"--{flag_name} sidecar")
  if not isinstance(info, dict) or not isinstance(info.get("num_examples"), int):
    raise UserError(f"--{flag_name} sidecar {path} is malformed; delete it and the cached features")
  built = {key: info.get(key) for key in settings}
  if built != settings:
    raise UserError(f"--{flag_name} {feature_file} was built with {_describe(built)} but the flags say "
                    f"{_describe(settings)}; delete it or pass another --{flag_name}")
  return info


def _describe(settings):
  return ", ".join(f"{key}={value}" for key, value in settings.items())


def _remove_files(*paths):
  for path in paths:
    if os.path.exists(path):
      os.remove(path)
