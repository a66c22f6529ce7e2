"""GLUE for ALBERT: the tasks' TSV layouts, labels and metrics, and reading their examples.

Reading follows the original processors (docs/compatibility.md §11.1), with the AX diagnostic task
registered (quirk 16) and clear errors for malformed rows.
"""

import csv
import dataclasses
import os
from typing import NamedTuple

import tensorflow as tf
from absl import logging

from albert.core.errors import UserError
from albert.io.files import text_lines

TRAIN, DEV, TEST = "train", "dev", "test"
_SKIPS_LOGGED_PER_FILE = 5

# ---------------------------------------------------------------------------------------------------
# The GLUE tasks


@dataclasses.dataclass(frozen=True)
class Columns:
  """Where a split's fields are in its TSV rows (0-based; -1 is the last column)."""
  text_a: int
  text_b: int | None = None
  label: int | None = None  # None: the split is unlabelled (test) and gets the task's placeholder label
  guid: int | None = None   # None: the guid is "<split>-<row index>" (the header counts as row 0)
  header: bool = True

  def width(self):
    """How many columns a row needs so that every field exists (a last-column label after the texts)."""
    width = 1 + max(c for c in (self.text_a, self.text_b, self.label, self.guid) if c is not None and c >= 0)
    return width + 1 if self.label == -1 else width


class LabelSpace:
  """What a task's `labels` tuple says: () means a regression (one output), else one output per label."""

  @property
  def is_regression(self):
    return not self.labels

  @property
  def num_labels(self):
    return len(self.labels) or 1


@dataclasses.dataclass(frozen=True)
class GlueTask(LabelSpace):
  """One `--task_name`: its folder, files, columns, labels and metrics."""
  name: str
  folder: str
  files: dict               # split -> file name
  labels: tuple             # () for the STS-B regression
  columns: Columns | None   # train and dev; None for a predict-only task
  test_columns: Columns
  test_label: str | float
  key_metric: str = "eval_accuracy"
  extra_metrics: tuple = ()  # "f1", "matthew_corr"
  skip_short_rows: bool = False

  @property
  def predict_only(self):
    return self.columns is None


def _glue_files(dev="dev.tsv", test="test.tsv"):
  return {TRAIN: "train.tsv", DEV: dev, TEST: test}


_MNLI_LABELS = ("contradiction", "entailment", "neutral")
_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
_SENTENCE_PAIR = Columns(guid=0, text_a=1, text_b=2, label=-1)
_SENTENCE_PAIR_TEST = Columns(guid=0, text_a=1, text_b=2)
_MNLI = Columns(guid=0, text_a=8, text_b=9, label=-1)
_MNLI_TEST = Columns(guid=0, text_a=8, text_b=9)

TASKS = {task.name: task for task in (
    GlueTask("cola", "CoLA", _glue_files(), _BINARY, Columns(text_a=3, label=1, header=False),
             Columns(guid=0, text_a=1), "0", key_metric="matthew_corr", extra_metrics=("matthew_corr",)),
    GlueTask("mnli", "MNLI", _glue_files("dev_matched.tsv", "test_matched.tsv"), _MNLI_LABELS, _MNLI,
             _MNLI_TEST, "contradiction"),
    GlueTask("mismnli", "MNLI", _glue_files("dev_mismatched.tsv", "test_mismatched.tsv"), _MNLI_LABELS,
             _MNLI, _MNLI_TEST, "contradiction"),
    GlueTask("mrpc", "MRPC", _glue_files(), _BINARY, Columns(text_a=3, text_b=4, label=0),
             Columns(guid=0, text_a=3, text_b=4), "0", extra_metrics=("f1",)),
    GlueTask("sst-2", "SST-2", _glue_files(), _BINARY, Columns(text_a=0, label=1), Columns(guid=0, text_a=1),
             "0"),
    GlueTask("sts-b", "STS-B", _glue_files(), (), Columns(guid=0, text_a=7, text_b=8, label=-1),
             Columns(guid=0, text_a=7, text_b=8), 0.0, key_metric="pearson"),
    GlueTask("qqp", "QQP", _glue_files(), _BINARY, Columns(guid=0, text_a=3, text_b=4, label=5),
             Columns(guid=0, text_a=1, text_b=2), "0", extra_metrics=("f1",), skip_short_rows=True),
    GlueTask("qnli", "QNLI", _glue_files(), _ENTAILMENT, _SENTENCE_PAIR, _SENTENCE_PAIR_TEST, "entailment"),
    GlueTask("rte", "RTE", _glue_files(), _ENTAILMENT, _SENTENCE_PAIR, _SENTENCE_PAIR_TEST, "entailment"),
    GlueTask("wnli", "WNLI", _glue_files(), _BINARY, _SENTENCE_PAIR, _SENTENCE_PAIR_TEST, "0"),
    # The diagnostic set: scored with an MNLI model, predictions only (registered here, unlike the original).
    GlueTask("ax", "diagnostic", {TEST: "diagnostic.tsv"}, _MNLI_LABELS, None, _SENTENCE_PAIR_TEST,
             "contradiction"),
)}


def get_task(task_name):
  """The GlueTask of `--task_name` (case-insensitive)."""
  if not task_name:
    raise UserError("--task_name is required (a GLUE task, or custom for your own files)")
  task = TASKS.get(task_name.lower())
  if task is None:
    raise UserError(f"--task_name: unknown task {task_name!r}; expected one of {', '.join(TASKS)}, or custom for "
                    "your own files")
  return task


# ---------------------------------------------------------------------------------------------------
# Reading examples


@dataclasses.dataclass
class InputExample:
  guid: str
  text_a: str
  text_b: str | None
  label: str | float


class ReadResult(NamedTuple):
  examples: list
  skipped: dict  # reason -> count


def data_file(data_dir, task, split):
  """`<data_dir>/<folder>/<file>` of a split; a UserError if it does not exist."""
  if not data_dir:
    raise UserError("--data_dir is required")
  path = os.path.join(data_dir, task.folder, task.files[split])
  if not tf.io.gfile.exists(path):
    raise UserError(f"--data_dir: {task.name} {split} file not found: {path}")
  return path


def read_examples(task, data_dir, split, normalize):
  """The examples of one split (train, dev or test), in file order.

  Rows with too few columns and unknown labels are errors naming the file and line (QQP's short
  train/dev rows are skipped, as in the original); so are bytes that are not UTF-8 and NUL bytes.
  Training rows with an empty text are skipped and counted; dev and test rows are all kept, so scores
  and submissions cover the whole set. Rows with more columns than the header are read as the original
  reads them (extra columns ignored; a last-column label is the last column) and logged in one warning,
  since two rows run together look like that.
  """
  if split != TEST and task.predict_only:
    raise UserError(f"--task_name={task.name} has only a test set: use it with --do_predict only")
  path = data_file(data_dir, task, split)
  columns = task.test_columns if split == TEST else task.columns
  examples, skipped, header_width = [], {}, None
  wide_rows, num_wide_rows = [], 0  # the first few line numbers, and the count

  def skip(reason, line_number):
    skipped[reason] = skipped.get(reason, 0) + 1
    if skipped[reason] <= _SKIPS_LOGGED_PER_FILE:
      logging.warning("%s line %d: skipped (%s)", path, line_number, reason)

  reader = csv.reader(text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
  try:
    for row_index, row in enumerate(reader):
      line_number = reader.line_num
      if row_index == 0 and columns.header:
        header_width = len(row)
        continue
      if not row:
        continue
      if len(row) < columns.width():
        if task.skip_short_rows and split != TEST:
          skip("too few columns", line_number)
          continue
        raise UserError(f"{path} line {line_number}: expected at least {columns.width()} tab-separated "
                        f"columns, found {len(row)}")
      if header_width and len(row) > header_width:
        num_wide_rows += 1
        wide_rows += [line_number][:_SKIPS_LOGGED_PER_FILE - len(wide_rows)]
      example = _example(task, split, columns, row, row_index, normalize, f"{path} line {line_number}")
      if split == TRAIN and (not example.text_a or (columns.text_b is not None and not example.text_b)):
        skip("empty text", line_number)
        continue
      examples.append(example)
  except csv.Error as e:
    raise UserError(f"{path} line {reader.line_num}: unreadable TSV row ({e})") from None
  if skipped:
    logging.warning("%s: skipped %s", path, ", ".join(f"{n} rows ({why})" for why, n in skipped.items()))
  if num_wide_rows:
    lines = ", ".join(map(str, wide_rows)) + (", ..." if num_wide_rows > len(wide_rows) else "")
    logging.warning("%s: %d rows have more columns than the header's %d (lines %s); read like the original, "
                    "extra columns ignored: are two rows run together?", path, num_wide_rows, header_width, lines)
  logging.info("read %d %s examples from %s", len(examples), split, path)
  return ReadResult(examples, skipped)


def _example(task, split, columns, row, row_index, normalize, where):
  guid = f"{split}-{row_index}" if columns.guid is None else normalize(row[columns.guid])
  text_b = None if columns.text_b is None else normalize(row[columns.text_b])
  if columns.label is None:
    label = task.test_label
  else:
    label = _label(task, row[columns.label].strip(), where)
  return InputExample(guid, normalize(row[columns.text_a]), text_b, label)


def _label(task, text, where):
  if task.is_regression:
    try:
      return float(text)
    except ValueError:
      raise UserError(f"{where}: the {task.name} score {text!r} is not a number") from None
  if text not in task.labels:
    raise UserError(f"{where}: unknown label {text!r}; {task.name} labels are {', '.join(task.labels)}")
  return text
