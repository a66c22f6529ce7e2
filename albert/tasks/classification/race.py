"""RACE for ALBERT: reading the passages and turning each question into four-choice features.

Data layout (docs/compatibility.md §11.3): `<data_dir>/RACE/{train,dev,test}/{middle,high}/`, each
level directory holding `all.txt` (one JSON passage per line) or, when that is absent, the official
release's one-JSON-passage `*.txt` files. Feature files, the task, metrics and the runner are shared
with GLUE (`albert.tasks.classification`).
"""

import dataclasses
import os
import re

import tensorflow as tf
from absl import logging

from albert.core import bounds
from albert.core.errors import UserError
from albert.io.files import open_text, parse_json_object
from albert.tasks.classification.features import InputFeatures, pack_ids
from albert.tasks.classification.task import NUM_CHOICES

LEVELS = ("middle", "high")
ANSWER_LETTERS = "ABCD"
ALL_FILE = "all.txt"
_PASSAGE = "a JSON object with article, questions, options and answers"


@dataclasses.dataclass
class RaceExample:
  example_id: str
  level: str
  article: str
  choices: list  # the four question+option texts, in option order A-D
  label: int


def level_directories(data_dir, split, high_only=False, middle_only=False):
  """[(level, directory)] of a split, middle first (the original's order)."""
  if not data_dir:
    raise UserError("--data_dir is required")
  if high_only and middle_only:
    raise UserError("--high_only and --middle_only exclude each other")
  levels = ("high",) if high_only else ("middle",) if middle_only else LEVELS
  found = []
  for level in levels:
    directory = os.path.join(data_dir, "RACE", split, level)
    if not tf.io.gfile.isdir(directory):
      raise UserError(f"--data_dir: RACE {split} directory not found: {directory}")
    found.append((level, directory))
  return found


def _natural_key(path):
  """Orders 2.txt before 10.txt."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", os.path.basename(path))]


def level_files(directory):
  """`[all.txt]` when the directory has one (JSON lines), else its per-passage `*.txt` files in order."""
  all_file = os.path.join(directory, ALL_FILE)
  if tf.io.gfile.exists(all_file):
    return [all_file]
  files = sorted(tf.io.gfile.glob(os.path.join(directory, "*.txt")), key=_natural_key)
  if not files:
    raise UserError(f"--data_dir: {directory} holds neither {ALL_FILE} nor per-passage *.txt files")
  return files


def passages(directory):
  """Yields (where, passage dict) from `all.txt` lines, else from every per-passage `*.txt` file."""
  files = level_files(directory)
  if os.path.basename(files[0]) == ALL_FILE:
    with open_text(files[0]) as f:
      for line_number, line in enumerate(f, 1):
        if line.strip():
          where = f"{files[0]} line {line_number}"
          yield where, parse_json_object(line, where, _PASSAGE)
    return
  for path in files:
    with open_text(path) as f:
      yield path, parse_json_object(f.read(), path, _PASSAGE)


def examples_of_passage(passage, level, normalize, where):
  """One example per question; a "_" in the question is replaced by each option, else the option is
  appended after a space. Every text is normalized first."""
  try:
    article, questions, options, answers = (passage[k] for k in ("article", "questions", "options", "answers"))
  except KeyError as e:
    raise UserError(f"{where}: missing key {e.args[0]!r}") from None
  if not (isinstance(questions, list) and isinstance(options, list) and isinstance(answers, list)):
    raise UserError(f"{where}: questions, options and answers must be lists")
  if not len(questions) == len(options) == len(answers):
    raise UserError(f"{where}: {len(questions)} questions, {len(options)} option lists and {len(answers)} answers "
                    "must match")
  passage_id = str(passage.get("id", where))
  article = normalize(article)
  examples = []
  for index, (question, choices, answer) in enumerate(zip(questions, options, answers)):
    if not isinstance(choices, list) or len(choices) != NUM_CHOICES:
      raise UserError(f"{where}: question {index} needs {NUM_CHOICES} options")
    if answer not in tuple(ANSWER_LETTERS):
      raise UserError(f"{where}: question {index} has answer {answer!r}; expected one of A, B, C, D")
    question = normalize(question)
    texts = [question.replace("_", normalize(option)) if "_" in question else f"{question} {normalize(option)}"
             for option in choices]
    examples.append(RaceExample(f"{passage_id}-{index}", level, article, texts, ANSWER_LETTERS.index(answer)))
  return examples


def read_race_examples(data_dir, split, normalize, high_only=False, middle_only=False):
  """Every question of a split (train, dev or test), middle before high."""
  examples = []
  for level, directory in level_directories(data_dir, split, high_only, middle_only):
    try:
      for where, passage in passages(directory):
        examples.extend(examples_of_passage(passage, level, normalize, where))
    except UnicodeDecodeError as e:
      raise UserError(f"{directory}: a file is not UTF-8 text: {e.reason}") from None
  if not examples:
    raise UserError(f"--data_dir: no RACE {split} questions under {os.path.join(data_dir, 'RACE', split)}")
  logging.info("read %d RACE %s questions", len(examples), split)
  return examples


def check_lengths(max_seq_length, max_qa_length):
  """The question+option must leave room for the article: 1 <= max_qa_length <= max_seq_length - 3."""
  bounds.check("max_qa_length", max_qa_length, bounds.AT_LEAST_ONE)
  bounds.require(max_qa_length <= max_seq_length - 3, "max_qa_length", max_qa_length,
                 f"<= --max_seq_length - 3 = {max_seq_length - 3} (room for the article)")


def convert_example(example, tokenizer, max_seq_length, max_qa_length):
  """The four choices' [CLS] article [SEP] question+option [SEP] sequences, concatenated (4·S each).

  The question+option keeps its LAST max_qa_length tokens; the article is cut to what is left.
  """
  article_tokens = tokenizer.tokenize(example.article)
  input_ids, input_mask, segment_ids = [], [], []
  for text in example.choices:
    qa_tokens = tokenizer.tokenize(text)[-max_qa_length:]
    article = article_tokens[:max_seq_length - 3 - len(qa_tokens)]
    ids, mask, segments = pack_ids(tokenizer, article, qa_tokens, max_seq_length)
    input_ids += ids
    input_mask += mask
    segment_ids += segments
  return InputFeatures(input_ids, input_mask, segment_ids, example.label)


def source_files(data_dir, split, high_only=False, middle_only=False):
  """The files a split is read from (what a feature cache of the split depends on)."""
  return [path for _, directory in level_directories(data_dir, split, high_only, middle_only)
          for path in level_files(directory)]
