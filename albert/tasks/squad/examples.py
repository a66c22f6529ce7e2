"""SQuAD 1.1/2.0 JSON -> examples (docs/compatibility.md §6.1), with unusable questions counted, not fatal.

Where the original aligned answers by a banded LCS and silently dropped examples it could not align
(quirk 12), a wrong `answer_start` here is repaired to the nearest occurrence of the answer text, and
malformed questions are skipped and counted with their location in the file. Fields are read through
`albert.io.structure`, so a field of the wrong type names its path instead of raising a TypeError.
"""

import collections
import contextlib
import dataclasses
from typing import NamedTuple

from absl import logging

from albert.core import fileio
from albert.io import structure

_SKIP_LOG_LINES_PER_REASON = 5


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
  """A question that cannot be used: `reason` is what it is counted under, `detail` the log line."""

  def __init__(self, reason, detail):
    super().__init__(reason)
    self.reason, self.detail = reason, detail


@contextlib.contextmanager
def _skipped_as(reason):
  """Turns a missing or mistyped field of the question into a counted skip with the checker's message."""
  try:
    yield
  except structure.StructureError as e:
    raise _SkipQuestion(reason, str(e)) from None


def _skip(qa, reason):
  raise _SkipQuestion(reason, f"{qa.where()}: {reason}")


def read_squad_examples(input_file, is_training):
  """Reads a SQuAD 1.1/2.0 JSON file; unusable questions are counted and logged, never fatal.

  The article/paragraph layout is checked as it is read: a missing or mistyped `data`, `paragraphs`,
  `qas` or `title` is a UserError naming its path in the file. Within a question, a missing or
  mistyped field skips the question (counted; the log line names the field and what was expected).
  Training examples carry the first answer (text and character start, repaired when `answer_start`
  does not point at the text) or, for impossible questions, start -1 and text "" like the original.
  Evaluation examples keep the answer fields None; `answers` and `is_impossible` keep the file's
  values for evaluation and analysis.
  """
  root = structure.root(fileio.read_json(input_file, what="SQuAD file"), input_file)
  examples, skipped, seen_ids, repaired = [], collections.Counter(), set(), 0
  for qa, title, paragraph in _questions(root):
    try:
      example, was_repaired = _read_question(qa, title, paragraph, is_training, seen_ids)
    except _SkipQuestion as skip:
      skipped[skip.reason] += 1
      if skipped[skip.reason] <= _SKIP_LOG_LINES_PER_REASON:
        logging.warning("skipping a question (%s): %s", skip.reason, skip.detail)
      continue
    if was_repaired:
      repaired += 1
      if repaired <= _SKIP_LOG_LINES_PER_REASON:
        logging.warning("%s: answer_start repaired to %d", qa.record(f"id {example.qas_id}").where(),
                        example.start_position)
    seen_ids.add(example.qas_id)
    examples.append(example)
  logging.info("%s: %s", input_file, _read_summary(len(examples), skipped, repaired))
  return SquadReadResult(examples, skipped, repaired)


def _read_summary(num_examples, skipped, repaired):
  reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items()))
  summary = f"read {num_examples} examples, skipped {sum(skipped.values())} questions"
  summary += f" ({reasons})" if reasons else ""
  return summary + f", answer_start repaired for {repaired}"


def _questions(root):
  """Yields (qa, title, paragraph) Nodes for every question; a broken article/paragraph layout is fatal."""
  for article in root.field("data", list).items(record=True):
    title = article.get("title", str, default="")
    for paragraph in article.field("paragraphs", list).items(record=True):
      for qa in paragraph.field("qas", list).items(record=True):
        yield qa, title, paragraph


def question_id(qa):
  """A question's id as text (numeric ids, which some tools write, become their decimal text)."""
  qas_id = qa.get("id", (str, int))
  return qas_id if isinstance(qas_id, str) else str(qas_id)


def reference_answers(qa):
  """The question's `answers` (absent: none), each an object with a string `text`."""
  answers = qa.field("answers", list, default=[])
  for answer in answers.items(dict):
    answer.get("text", str)
  return answers.value


def _read_question(qa, title, paragraph, is_training, seen_ids):
  """Returns (SquadExample, answer_start_was_repaired) or raises _SkipQuestion."""
  with _skipped_as("malformed question entry"):
    qa.require(dict)
  with _skipped_as("missing id"):
    qas_id = question_id(qa)
  if not qas_id:
    _skip(qa, "missing id")
  qa = qa.record(f"id {qas_id}")
  if qas_id in seen_ids:
    _skip(qa, "duplicate id")
  with _skipped_as("missing question"):
    question = qa.get("question", str)
  if not question.strip():
    _skip(qa, "missing question")
  with _skipped_as("missing context"):
    context = paragraph.get("context", str)
  if not context.strip():
    _skip(qa, "empty context")
  is_impossible = _is_impossible(qa, is_training)
  with _skipped_as("malformed answers"):
    answers = reference_answers(qa)
  example = SquadExample(qas_id=qas_id, question_text=question, paragraph_text=context,
                         is_impossible=is_impossible, title=title, answers=answers)
  if not is_training:
    return example, False
  if is_impossible:
    example.orig_answer_text, example.start_position = "", -1
    return example, False
  if not answers:
    _skip(qa, "no answer for a possible question (training)")
  text = answers[0]["text"]
  if not text.strip():
    _skip(qa, "empty answer text (training)")
  with _skipped_as("malformed answer_start (training)"):
    answer_start = qa.field("answers", list).item(0).get("answer_start", int)
  example.orig_answer_text = text
  example.start_position = _locate_answer(qa, context, text, answer_start)
  return example, example.start_position != answer_start


def _is_impossible(qa, is_training):
  """The `is_impossible` flag (absent: False); prediction does not depend on it, so there a malformed one
  counts as False, while training skips the question."""
  try:
    return qa.get("is_impossible", bool, default=False)
  except structure.StructureError as e:
    if is_training:
      raise _SkipQuestion("malformed is_impossible (training)", str(e)) from None
    return False


def _locate_answer(qa, context, text, answer_start):
  """The answer's character start: `answer_start` if the text is there, else its nearest occurrence."""
  if answer_start >= 0 and context.startswith(text, answer_start):
    return answer_start
  occurrences, position = [], context.find(text)
  while position >= 0:
    occurrences.append(position)
    position = context.find(text, position + 1)
  if not occurrences:
    _skip(qa, "answer_start does not match answer text")
  return min(occurrences, key=lambda p: (abs(p - answer_start), p))
