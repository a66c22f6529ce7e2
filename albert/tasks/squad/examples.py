"""SQuAD 1.1/2.0 JSON -> examples (docs/compatibility.md §6.1), with unusable questions counted, not fatal.

Where the original aligned answers by a banded LCS and silently dropped examples it could not align
(quirk 12), a wrong `answer_start` here is repaired to the nearest occurrence of the answer text, and
malformed questions are skipped and counted with their location in the file.
"""

import collections
import dataclasses
from typing import NamedTuple

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError

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


def has_answers(dataset):
  """Whether a parsed SQuAD file carries references to evaluate against (a dev set, not a test set)."""
  try:
    return any(qa.get("answers") or "is_impossible" in qa
               for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"])
  except (KeyError, TypeError, AttributeError):
    return False
