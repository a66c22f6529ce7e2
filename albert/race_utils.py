"""RACE for ALBERT: reading the passages, four-choice features, the multiple-choice task and its scores.

Data layout (spec §11.3): `<data_dir>/RACE/{train,dev,test}/{middle,high}/`, each level directory holding
`all.txt` (one JSON passage per line) or, when that is absent, the official release's one-JSON-passage
`*.txt` files. Feature files, pipelines and checkpoint evaluation come from `classifier_utils`.
"""

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from albert import classifier_utils as cu
from albert import heads, trainer
from albert.errors import UserError
from albert.modeling import AlbertModel

LEVELS = ("middle", "high")
NUM_CHOICES = 4
ANSWER_LETTERS = "ABCD"
ALL_FILE = "all.txt"


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


def passages(directory):
  """Yields (where, passage dict) from `all.txt` lines, else from every per-passage `*.txt` file."""
  all_file = os.path.join(directory, ALL_FILE)
  if tf.io.gfile.exists(all_file):
    with cu.open_text(all_file) as f:
      for line_number, line in enumerate(f, 1):
        if line.strip():
          where = f"{all_file} line {line_number}"
          yield where, _parse(line, where)
    return
  files = sorted(tf.io.gfile.glob(os.path.join(directory, "*.txt")), key=_natural_key)
  if not files:
    raise UserError(f"--data_dir: {directory} holds neither {ALL_FILE} nor per-passage *.txt files")
  for path in files:
    with cu.open_text(path) as f:
      yield path, _parse(f.read(), path)


def _parse(text, where):
  try:
    passage = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{where}: not valid JSON: {e.msg} at column {e.colno}") from None
  if not isinstance(passage, dict):
    raise UserError(f"{where}: expected a JSON object with article, questions, options and answers")
  return passage


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
  if max_qa_length <= 0:
    raise UserError(f"--max_qa_length must be positive, got {max_qa_length}")
  if max_qa_length > max_seq_length - 3:
    raise UserError(f"--max_qa_length={max_qa_length} leaves no room for the article in --max_seq_length="
                    f"{max_seq_length} (at most max_seq_length - 3)")


def convert_example(example, tokenizer, max_seq_length, max_qa_length):
  """The four choices' [CLS] article [SEP] question+option [SEP] sequences, concatenated (4·S each).

  The question+option keeps its LAST max_qa_length tokens; the article is cut to what is left.
  """
  article_tokens = tokenizer.tokenize(example.article)
  input_ids, input_mask, segment_ids = [], [], []
  for text in example.choices:
    qa_tokens = tokenizer.tokenize(text)[-max_qa_length:]
    article = article_tokens[:max_seq_length - 3 - len(qa_tokens)]
    ids, mask, segments = cu.pack_ids(tokenizer, article, qa_tokens, max_seq_length)
    input_ids += ids
    input_mask += mask
    segment_ids += segments
  return cu.InputFeatures(input_ids, input_mask, segment_ids, example.label)


class RaceTask(trainer.Task):
  """ALBERT over each (article, choice) pair + one score per choice; softmax over the four choices."""

  def __init__(self, config, dropout_prob=0.1, compute_dtype=tf.float32, trim_inference=True, trim_training=True,
               create_encoder=None):
    self.config, self.dropout_prob, self.compute_dtype = config, dropout_prob, compute_dtype
    self.trim_inference, self.trim_training = trim_inference, trim_training
    self.create_encoder = create_encoder or (lambda dtype: AlbertModel(config, dtype))

  def build(self):
    self.model = self.create_encoder(self.compute_dtype)
    self.head = heads.MultipleChoiceHead(self.config, NUM_CHOICES, self.dropout_prob)

  def named_variables(self):
    return {**self.model.named_variables(), **self.head.named_variables()}

  def logits(self, features, training):
    """[B, 4] from inputs [B, 4·S]: one encoder pass over the B·4 sequences."""
    inputs = [tf.reshape(features[key], [-1, features[key].shape[-1] // NUM_CHOICES])
              for key in ("input_ids", "input_mask", "segment_ids")]
    if self.trim_training if training else self.trim_inference:
      inputs = cu.trim_padding(*inputs)
    return self.head(self.model(*inputs, training=training).pooled_output, training)

  def compute_loss(self, features, training):
    return tf.reduce_mean(heads.classification_losses(self.logits(features, training), features["label_ids"]))

  def predict_step(self, features):
    logits = self.logits(features, training=False)
    return {**cu.prediction_outputs(logits, is_regression=False), "logits": logits,
            "label_ids": features["label_ids"], "is_real_example": features["is_real_example"]}


def race_scores(outputs, levels, batch_size):
  """eval_accuracy / eval_loss / loss over all questions, plus eval_accuracy_<level> per level present."""
  if len(levels) != len(outputs["predictions"]):
    raise UserError(f"the RACE feature file holds {len(outputs['predictions'])} questions but the data has "
                    f"{len(levels)}; delete the stale --eval_file/--predict_file cache")
  real = outputs["is_real_example"] > 0
  labels = outputs["label_ids"]
  scores = cu.loss_metrics(cu.per_example_losses(outputs["logits"], labels, False), real, batch_size)
  correct = outputs["predictions"] == labels
  scores["eval_accuracy"] = float(np.mean(correct[real]))
  levels = np.asarray(levels)
  for level in LEVELS:
    selected = real & (levels == level)
    if selected.any():
      scores[f"eval_accuracy_{level}"] = float(np.mean(correct[selected]))
  return scores
