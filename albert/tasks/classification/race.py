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
from albert.io import structure
from albert.io.files import json_lines, read_text
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
  """Yields (where, passage Node) from `all.txt` lines, else from every per-passage `*.txt` file."""
  files = level_files(directory)
  if os.path.basename(files[0]) == ALL_FILE:
    for where, _, passage in json_lines(files[0], files[0], dict, _PASSAGE):
      yield where, passage
    return
  for path in files:
    yield path, structure.parse(read_text(path), path, dict, _PASSAGE)


def examples_of_passage(passage, level, normalize, where):
  """One example per question; a "_" in the question is replaced by each option, else the option is
  appended after a space. Every text is normalized first. `passage` is a Node (`albert.io.structure`)
  or a parsed dict; a missing or mistyped field is a UserError naming `where` and the field."""
  if not isinstance(passage, structure.Node):
    passage = structure.root(passage, where)
  article = passage.get("article", str)
  questions, options, answers = (passage.field(key, list) for key in ("questions", "options", "answers"))
  counts = [len(node.value) for node in (questions, options, answers)]
  if not counts[0] == counts[1] == counts[2]:
    raise UserError(f"{where}: {counts[0]} questions, {counts[1]} option lists and {counts[2]} answers must match")
  passage_id = str(passage.get("id", (str, int), default=where))
  article = normalize(article)
  examples = []
  for index in range(counts[0]):
    question = normalize(questions.item(index, str).value)
    choices = options.item(index, list)
    if len(choices.value) != NUM_CHOICES:
      raise UserError(f"{where}: question {index} needs {NUM_CHOICES} options")
    answer = answers.item(index, str).value
    if answer not in ANSWER_LETTERS or len(answer) != 1:
      raise UserError(f"{where}: question {index} has answer {answer[:20]!r}; expected one of A, B, C, D")
    texts = [_choice_text(question, normalize(option.value)) for option in choices.items(str)]
    examples.append(RaceExample(f"{passage_id}-{index}", level, article, texts, ANSWER_LETTERS.index(answer)))
  return examples


def _choice_text(question, option):
  return question.replace("_", option) if "_" in question else f"{question} {option}"


def read_race_examples(data_dir, split, normalize, high_only=False, middle_only=False):
  """Every question of a split (train, dev or test), middle before high."""
  examples = []
  for level, directory in level_directories(data_dir, split, high_only, middle_only):
    for where, passage in passages(directory):
      examples.extend(examples_of_passage(passage, level, normalize, where))
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
