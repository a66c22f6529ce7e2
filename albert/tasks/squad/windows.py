"""SQuAD examples -> windowed features: the original's windows, layout, max-context rule and labels.

Window rule, feature layout, max-context rule and training labels follow the original release
(docs/compatibility.md §6.3). Where the original aligned pieces to the raw context with a banded LCS
(§6.2, quirk 12), this module uses the tokenizer's exact raw character offsets, so every example is
converted and answer text is recovered from the raw context.

TensorFlow is never imported here: conversion runs in spawned worker processes, which stay light.
"""

import collections
import dataclasses
from typing import NamedTuple

import numpy as np
from absl import logging

from albert.core import bounds
from albert.core.progress import ProgressLog
from albert.core.streams import WorkerPool
from albert.text.sentencepiece import preprocess_text

FIRST_UNIQUE_ID = 1000000000
ANSWER_EXACT = "exact"
_TASKS_PER_CHUNK = 32
_CHUNKS_IN_FLIGHT_PER_WORKER = 4


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
  """UserError unless the window flags leave room for at least one document token.

  A `doc_stride` beyond a window's document room is allowed here (windows then touch without overlap);
  the command-line flags refuse it (`albert.tasks.squad.runner.define_window_flags`).
  """
  bounds.check("max_query_length", max_query_length, bounds.AT_LEAST_ONE)
  bounds.check("doc_stride", doc_stride, bounds.AT_LEAST_ONE)
  bounds.require(max_seq_length > max_query_length + 3, "max_seq_length", max_seq_length,
                 f"> --max_query_length + 3 = {max_query_length + 3}")


def document_room(max_seq_length, max_query_length):
  """Document tokens a window holds next to the longest question: [CLS] query [SEP] document [SEP]."""
  return max_seq_length - max_query_length - 3


def doc_spans(num_tokens, max_tokens_for_doc, doc_stride):
  """The (start, length) windows over a document (docs/compatibility.md §6.3.3)."""
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


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                 is_training, num_workers=1, stats=None, log_every_seconds=5.0):
  """Yields the SquadFeatures of `examples` in order (examples, then windows), numbered from 1e9.

  Each distinct context is tokenized once. `num_workers` > 1 tokenizes and builds windows in spawned
  processes (the tokenizer must be picklable; as always with spawn, the main script needs an
  `if __name__ == "__main__"` guard); results, unique_ids included, are identical to one worker.
  `stats` (a ConversionStats) is filled in as features are yielded and logged at the end.
  """
  builder = make_builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
  stats = ConversionStats() if stats is None else stats
  numbered = numbered_features(as_list(examples), builder, build_features, num_workers, stats, log_every_seconds)
  return (dataclasses.replace(feature, unique_id=unique_id) for unique_id, feature in numbered)


def make_builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
  check_window_flags(max_seq_length, doc_stride, max_query_length)
  return _FeatureBuilder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)


def as_list(examples):
  return examples if isinstance(examples, list) else list(examples)


def build_features(builder, task):
  """`builder.build(index, example, document)` for a worker (a module-level function pickles by name)."""
  return builder.build(*task)


def _tokenize_document(builder, text):
  return builder.tokenize_document(text)


def _same_builder(builder):
  return builder


def numbered_features(examples, builder, build, num_workers, stats, log_every_seconds):
  """Yields (unique_id, item) for the items `build(builder, (index, example, document))` makes."""
  with WorkerPool(_same_builder, (builder,), num_workers, chunk_size=_TASKS_PER_CHUNK,
                  chunks_in_flight=_CHUNKS_IN_FLIGHT_PER_WORKER * num_workers) as pool:
    documents = _tokenize_contexts(pool, examples, log_every_seconds)
    tasks = ((index, example, documents[example.paragraph_text]) for index, example in enumerate(examples))
    progress = ProgressLog("converting", "questions", len(examples), log_every_seconds)
    unique_id = FIRST_UNIQUE_ID
    for items, outcome in pool.map(build, tasks):
      stats.record(outcome, len(items))
      for item in items:
        yield unique_id, item
        unique_id += 1
      progress.update(stats.examples, f", {stats.features} features")
  stats.log_summary()


def _tokenize_contexts(pool, examples, log_every_seconds):
  """{context text: _Document} for the distinct contexts, in order of first use."""
  contexts = list(dict.fromkeys(example.paragraph_text for example in examples))
  progress = ProgressLog("tokenizing contexts", "contexts", len(contexts), log_every_seconds)
  documents = {}
  for text, document in zip(contexts, pool.map(_tokenize_document, contexts)):
    documents[text] = document
    progress.update(len(documents))
  return documents
