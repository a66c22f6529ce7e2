"""Your own classification data (`run_classifier --task_name=custom`): TSV, CSV or JSONL files.

- Files: `--train_file`, `--eval_file`, `--predict_file`, each needed only by its phase (`--do_train`,
  `--do_eval`, `--do_predict`). The format comes from the extension (`.tsv`, `.csv`, `.jsonl`) unless
  `--file_format` says. TSV and CSV files start with a header row and columns are named by it; JSONL
  files hold one JSON object per line and columns are its keys. TSV is read like GLUE's files (no
  quoting: a field holds no tab or line break); CSV is RFC 4180 (quoted fields may hold commas and
  line breaks). A UTF-8 byte order mark is ignored.
- Columns: `--text_a_column` (default `text`), `--text_b_column` (optional, for text pairs),
  `--label_column` (default `label`; not read from the predict file) and `--id_column` (optional: the
  `index` of submit_results.tsv, else the 0-based record number).
- Labels, first that applies: `--regression` (the label column is a number; one output, Pearson and
  Spearman); `--label_list=a,b,c` (in this order); with `--do_train`, the labels found in the training
  file (sorted, numerically when they are all integers); else the `labels.json` of the model the run
  uses: in `--output_dir` when it holds a checkpoint, else beside `--init_checkpoint`.
- `labels.json` (`{"labels": [...]}` or `{"regression": true}`) is written to `--output_dir`, so a
  model's outputs can be named later; an output directory holding checkpoints of other labels is refused.

Every malformed input is a one-line UserError naming the file and, for a record, its line.
"""

import csv
import dataclasses
import math
import os
import re

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError, abbreviate
from albert.io.files import parse_json_object, text_lines
from albert.io.structure import describe_value
from albert.tasks.classification.glue import DEV, TEST, TRAIN, InputExample, LabelSpace

CUSTOM = "custom"
FORMATS = ("tsv", "csv", "jsonl")
_EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl"}
LABELS_FILE = "labels.json"
SPLIT_FLAGS = {TRAIN: "train_file", DEV: "eval_file", TEST: "predict_file"}
PHASE_FLAGS = {"do_train": TRAIN, "do_eval": DEV, "do_predict": TEST}
# The flags only a custom task reads (a GLUE task given one of them is told so).
FLAGS = ("train_file", "eval_file", "predict_file", "file_format", "text_a_column", "text_b_column", "label_column",
         "id_column", "label_list", "regression")
_SKIPS_LOGGED_PER_FILE = 5
_INTEGER = re.compile(r"[+-]?\d+\Z")


def is_custom(task_name):
  return (task_name or "").strip().lower() == CUSTOM


# ---------------------------------------------------------------------------------------------------
# The task: labels (or a regression) and its metrics


@dataclasses.dataclass(frozen=True)
class CustomTask(LabelSpace):
  """What `features.convert_example` and `metrics.classifier_scores` need of a task, for custom data.

  `labels` is () for a regression; `source` says where the labels came from, for messages.
  """
  labels: tuple
  source: str = "--label_list"
  name: str = CUSTOM

  @property
  def key_metric(self):
    return "pearson" if self.is_regression else "eval_accuracy"

  @property
  def extra_metrics(self):
    """F1 of the second label for two labels (`f1`), the mean F1 over labels for more (`macro_f1`)."""
    if self.is_regression:
      return ()
    return ("f1",) if len(self.labels) == 2 else ("macro_f1",)


REGRESSION = CustomTask((), "--regression")


def parse_label_list(values):
  """`--label_list` (absl's list: already split on commas) as a tuple of distinct, non-empty labels."""
  labels = [value.strip() for value in values]
  if any(not label for label in labels):
    raise UserError("--label_list: a label is empty (expected a comma-separated list such as neg,pos)")
  for index, label in enumerate(labels):
    if label in labels[:index]:
      raise UserError(f"--label_list: label {label!r} is listed twice")
  if len(labels) < 2:
    raise UserError(f"--label_list: a classifier needs two or more labels, got {len(labels)} (for a score, use "
                    "--regression)")
  return tuple(labels)


def sorted_labels(found):
  """Labels in a stable order: numerically when they are all integers, else as strings."""
  found = set(found)
  if all(_INTEGER.match(label) for label in found):
    return tuple(sorted(found, key=lambda label: (int(label), label)))
  return tuple(sorted(found))


def labels_record(task):
  """What labels.json holds for a task (a GlueTask or a CustomTask)."""
  return {"regression": True} if task.is_regression else {"labels": list(task.labels)}


def describe_labels(task):
  return "a regression" if task.is_regression else f"labels {abbreviate(task.labels, 10)}"


def read_labels_file(path):
  """The CustomTask a labels.json describes; anything else is a one-line UserError naming the file."""
  record = fileio.read_json(path, what="labels file")
  expected = 'expected {"labels": [two or more distinct strings]} or {"regression": true}'
  if not isinstance(record, dict):
    raise UserError(f"{path}: {expected}")
  if record == {"regression": True}:
    return dataclasses.replace(REGRESSION, source=f"the model's labels in {path}")
  labels = record.get("labels")
  if (set(record) != {"labels"} or not isinstance(labels, list) or len(labels) < 2
      or not all(isinstance(label, str) and label for label in labels) or len(set(labels)) != len(labels)):
    raise UserError(f"{path}: {expected}")
  return CustomTask(tuple(labels), f"the model's labels in {path}")


def saved_labels(directories):
  """The CustomTask of the first labels.json found in `directories` (None entries skipped), or None."""
  for directory in directories:
    if directory and os.path.isfile(os.path.join(directory, LABELS_FILE)):
      return read_labels_file(os.path.join(directory, LABELS_FILE))
  return None


def choose_task(fv, training_labels, output_dir_has_checkpoint=False):
  """The CustomTask of the flags (see the module docstring for the order); `training_labels()` reads
  the labels of --train_file, only when they are needed. Without them, the labels.json of the model the
  run uses: --output_dir's if it holds a checkpoint, else --init_checkpoint's (its directory's)."""
  if fv.regression:
    if fv.label_list:
      raise UserError("--regression and --label_list exclude each other: a regression has no labels")
    return REGRESSION
  if fv.label_list:
    return CustomTask(parse_label_list(fv.label_list), "--label_list")
  if fv.do_train:
    return CustomTask(training_labels(), "the labels of --train_file")
  init_dir = None
  if fv.init_checkpoint:
    init_dir = fv.init_checkpoint if os.path.isdir(fv.init_checkpoint) else os.path.dirname(fv.init_checkpoint)
  task = saved_labels([fv.output_dir, init_dir] if output_dir_has_checkpoint else [init_dir, fv.output_dir])
  if task is None:
    raise UserError(f"--label_list is required without --do_train: no {LABELS_FILE} of a trained model in "
                    "--output_dir" + (" or beside --init_checkpoint" if init_dir else "")
                    + " (use --regression for a score)")
  return task


def check_and_save_labels(output_dir, task, has_checkpoint, write):
  """Refuses an `output_dir` whose checkpoints were trained with other labels (its labels.json says so);
  writes labels.json (atomically) when it is missing or describes no checkpoint here, if `write`."""
  path = os.path.join(output_dir, LABELS_FILE)
  record = labels_record(task)
  if os.path.isfile(path):
    saved = read_labels_file(path)
    if labels_record(saved) == record:
      return
    if has_checkpoint:
      raise UserError(f"--output_dir: its checkpoints were trained with {describe_labels(saved)} ({path}), but "
                      f"this run has {describe_labels(task)}; use another --output_dir")
    logging.warning("%s: replacing %s (no checkpoint here was trained with them) with %s", path,
                    describe_labels(saved), describe_labels(task))
  if write:
    fileio.write_json(path, record)


# ---------------------------------------------------------------------------------------------------
# Files and columns


def file_format(path, flag_name, override="auto"):
  """tsv, csv or jsonl: `--file_format` unless it is auto, else the file's extension."""
  if override and override != "auto":
    return override
  extension = os.path.splitext(path)[1].lower()
  if extension not in _EXTENSIONS:
    raise UserError(f"--{flag_name}: cannot tell the format of {path} from its extension "
                    f"({extension or 'none'}); name it .tsv, .csv or .jsonl, or pass --file_format")
  return _EXTENSIONS[extension]


def _exists(path):
  if "://" in path:
    import tensorflow as tf
    return tf.io.gfile.exists(path)
  return os.path.isfile(path)


@dataclasses.dataclass(frozen=True)
class Columns:
  """The column (TSV/CSV header name) or key (JSONL) of each field, and the flag that names it."""
  text_a: str
  text_b: str | None = None
  label: str | None = "label"
  id: str | None = None

  FLAG_NAMES = {"text_a": "text_a_column", "text_b": "text_b_column", "label": "label_column", "id": "id_column"}

  @classmethod
  def from_flags(cls, fv):
    for field, flag in cls.FLAG_NAMES.items():
      value = fv[flag].value
      if value is not None and not value.strip() and field in ("text_a", "label"):
        raise UserError(f"--{flag} must name a column")
    optional = lambda value: value if value and value.strip() else None
    return cls(fv.text_a_column, optional(fv.text_b_column), fv.label_column, optional(fv.id_column))

  def settings(self):
    """The columns as feature-cache settings (the records depend on them)."""
    return {"text_a_column": self.text_a, "text_b_column": self.text_b, "label_column": self.label}

  def wanted(self, split):
    """{field: column} read from a split's file: no label in the predict file."""
    wanted = {"text_a": self.text_a, "text_b": self.text_b, "label": None if split == TEST else self.label,
              "id": self.id}
    return {field: column for field, column in wanted.items() if column is not None}


class _Missing:
  pass


def _delimited_records(path, fmt, wanted):
  """(line number, {field: str}) per data row of a TSV/CSV file with a header row."""
  if fmt == "tsv":
    reader = csv.reader(text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
  else:
    reader = csv.reader(text_lines(path))
  kind = "tab-separated" if fmt == "tsv" else "comma-separated"
  header, indices, start = None, None, 1
  try:
    for row in reader:
      line_number, start = start, reader.line_num + 1
      if not row:
        continue
      if header is None:
        header = [name.strip() for name in row]
        header[0] = header[0].lstrip("\ufeff")
        indices = {field: _column_index(path, header, column, field) for field, column in wanted.items()}
        continue
      if len(row) != len(header):
        raise UserError(f"{path} line {line_number}: expected {len(header)} {kind} columns like the header, found "
                        f"{len(row)}" + (" (a tab inside a text? TSV fields cannot hold tabs: use CSV)"
                                         if fmt == "tsv" and len(row) > len(header) else ""))
      yield line_number, {field: row[index] for field, index in indices.items()}
  except csv.Error as e:
    raise UserError(f"{path} line {reader.line_num}: unreadable {fmt.upper()} row ({e})") from None
  if header is None:
    raise UserError(f"{path}: empty file (expected a header row naming the columns)")


def _column_index(path, header, column, field):
  flag = Columns.FLAG_NAMES[field]
  positions = [index for index, name in enumerate(header) if name == column]
  if not positions:
    raise UserError(f"{path}: no column {column!r} (--{flag}); the header has {abbreviate(header, 8)}")
  if len(positions) > 1:
    raise UserError(f"{path}: the header names column {column!r} (--{flag}) {len(positions)} times")
  return positions[0]


def _jsonl_records(path, wanted):
  """(line number, {field: JSON value}) per non-blank line of a JSONL file."""
  for line_number, line in enumerate(text_lines(path), 1):
    if line_number == 1:
      line = line.lstrip("\ufeff")
    if not line.strip():
      continue
    record = parse_json_object(line, f"{path} line {line_number}", "a JSON object (one record per line)")
    values = {}
    for field, key in wanted.items():
      if key not in record:
        raise UserError(f"{path} line {line_number}: no key {key!r} (--{Columns.FLAG_NAMES[field]})")
      values[field] = record[key]
    yield line_number, values


def _text(value, where, field, column):
  if isinstance(value, str):
    return value
  flag = Columns.FLAG_NAMES[field]
  raise UserError(f"{where}: {column!r} (--{flag}) must be a string, found {describe_value(value)}")


def _label(value, where, column, task):
  """The label of a record: a float for a regression, else a label string (checked against `task`'s
  labels unless `task` is None, when the training file's labels are being collected)."""
  flag = f"--label_column={column}"
  if task is not None and task.is_regression:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
      raise UserError(f"{where}: the regression target ({flag}) must be a number, found {describe_value(value)}")
    try:
      number = float(value)
    except ValueError:
      raise UserError(f"{where}: the regression target {value!r} ({flag}) is not a number") from None
    if not math.isfinite(number):
      raise UserError(f"{where}: the regression target {value!r} ({flag}) is not a finite number")
    return number
  if isinstance(value, bool) or not isinstance(value, (int, str)):
    raise UserError(f"{where}: the label ({flag}) must be a string or an integer, found {describe_value(value)}")
  label = str(value).strip()
  if not label:
    raise UserError(f"{where}: the label ({flag}) is empty")
  if task is not None and label not in task.labels:
    raise UserError(f"{where}: label {label!r} is not in {task.source} ({abbreviate(task.labels, 10)})")
  return label


def read_examples(path, fmt, columns, split, normalize, task):
  """The InputExamples of one file, in file order.

  `task` None collects a training file's labels as found (see `collect_labels`). Training records with
  an empty text are skipped and counted (as GLUE's are); dev and test records are all kept. The predict
  file's examples get a placeholder label (the first label, or 0.0).
  """
  wanted = columns.wanted(split)
  if fmt == "jsonl":
    records = _jsonl_records(path, wanted)
  else:
    records = _delimited_records(path, fmt, wanted)
  placeholder = 0.0 if task is not None and task.is_regression else (task.labels[0] if task is not None else "")
  examples, skipped = [], 0
  for index, (line_number, values) in enumerate(records):
    where = f"{path} line {line_number}"
    text_a = _text(values["text_a"], where, "text_a", columns.text_a)
    text_b = None if columns.text_b is None else _text(values["text_b"], where, "text_b", columns.text_b)
    label = placeholder if split == TEST else _label(values["label"], where, columns.label, task)
    if columns.id is None:
      guid = str(index)
    elif isinstance(values["id"], (str, int)) and not isinstance(values["id"], bool):
      guid = str(values["id"]).strip()
    else:
      raise UserError(f"{where}: {columns.id!r} (--id_column) must be a string or an integer, found "
                      f"{describe_value(values['id'])}")
    if split == TRAIN and (not text_a.strip() or (text_b is not None and not text_b.strip())):
      skipped += 1
      if skipped <= _SKIPS_LOGGED_PER_FILE:
        logging.warning("%s: skipped (empty text)", where)
      continue
    examples.append(InputExample(guid, normalize(text_a), None if text_b is None else normalize(text_b), label))
  if skipped:
    logging.warning("%s: skipped %d records with an empty text", path, skipped)
  logging.info("read %d %s examples from %s", len(examples), split, path)
  return examples


def collect_labels(examples, path):
  """The sorted labels of examples read with `task=None`: two or more, else a UserError."""
  labels = sorted_labels(example.label for example in examples)
  if len(labels) < 2:
    raise UserError(f"--train_file: {path} has only the label {labels[0]!r}; a classifier needs two or more (pass "
                    "--label_list to name the others, or --regression for a score)")
  return labels


# ---------------------------------------------------------------------------------------------------
# Flags


def check_flags(fv):
  """The custom-task flag checks that need no file reading beyond existence: before any work."""
  if fv.data_dir:
    raise UserError("--data_dir is for the GLUE tasks; --task_name=custom reads --train_file, --eval_file and "
                    "--predict_file")
  if fv.regression and fv.label_list:
    raise UserError("--regression and --label_list exclude each other: a regression has no labels")
  Columns.from_flags(fv)
  for phase, split in PHASE_FLAGS.items():
    if not fv[phase].value:
      continue
    flag = SPLIT_FLAGS[split]
    path = fv[flag].value
    if not path:
      raise UserError(f"--{phase} with --task_name=custom needs --{flag} (a .tsv, .csv or .jsonl file)")
    file_format(path, flag, fv.file_format)
    if not _exists(path):
      raise UserError(f"--{flag}: file not found: {path}")


def check_glue_flags(fv):
  """A GLUE task given a flag only custom data reads: one line saying so."""
  for name in FLAGS:
    if name in fv and fv[name].present:
      raise UserError(f"--{name} is for --task_name=custom (your own files); the GLUE tasks read --data_dir")
