"""GLUE for ALBERT: the tasks' TSV layouts, features, TFRecord caches, the classifier task and metrics.

Reading follows the original processors (spec §11.1) and adds clear errors for malformed rows. The
feature files, input pipelines, padding trimming and checkpoint evaluation here are also what
`race_utils` and `run_race` build on: RACE is a classifier over four (article, question+option) pairs.
"""

import csv
import dataclasses
import math
import os
import uuid
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from albert import checkpoint as checkpoints
from albert import eval_results, heads, input_pipeline, serving, trainer
from albert.errors import UserError
from albert.modeling import AlbertModel
from albert.tokenization import preprocess_text

TRAIN, DEV, TEST = "train", "dev", "test"
PREDICT_FEATURE_FILE = "predict.tf_record"
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


@dataclasses.dataclass(frozen=True)
class GlueTask:
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
  def is_regression(self):
    return not self.labels

  @property
  def num_labels(self):
    return len(self.labels) or 1

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
    raise UserError("--task_name is required")
  task = TASKS.get(task_name.lower())
  if task is None:
    raise UserError(f"--task_name: unknown task {task_name!r}; expected one of {', '.join(TASKS)}")
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


def text_normalizer(tokenizer):
  """The original `process_text`: SentencePiece input is preprocessed (and lowercased per
  do_lower_case) when read; WordPiece input is left to the tokenizer."""
  if tokenizer.sp_model is None:
    return lambda text: text
  return lambda text: preprocess_text(text, lower=tokenizer.do_lower_case)


def open_text(path):
  """A text file from local disk or any filesystem TensorFlow knows (gs://...)."""
  if "://" in path:
    return tf.io.gfile.GFile(path, "r")
  return open(path, encoding="utf-8", newline="")


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
  train/dev rows are skipped, as in the original). Training rows with an empty text are skipped and
  counted; dev and test rows are all kept, so scores and submissions cover the whole set.
  """
  if split != TEST and task.predict_only:
    raise UserError(f"--task_name={task.name} has only a test set: use it with --do_predict only")
  path = data_file(data_dir, task, split)
  columns = task.test_columns if split == TEST else task.columns
  examples, skipped = [], {}

  def skip(reason, line_number):
    skipped[reason] = skipped.get(reason, 0) + 1
    if skipped[reason] <= _SKIPS_LOGGED_PER_FILE:
      logging.warning("%s line %d: skipped (%s)", path, line_number, reason)

  try:
    with open_text(path) as f:
      reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
      for row_index, row in enumerate(reader):
        line_number = reader.line_num
        if (row_index == 0 and columns.header) or not row:
          continue
        if len(row) < columns.width():
          if task.skip_short_rows and split != TEST:
            skip("too few columns", line_number)
            continue
          raise UserError(f"{path} line {line_number}: expected at least {columns.width()} tab-separated "
                          f"columns, found {len(row)}")
        example = _example(task, split, columns, row, row_index, normalize, f"{path} line {line_number}")
        if split == TRAIN and (not example.text_a or (columns.text_b is not None and not example.text_b)):
          skip("empty text", line_number)
          continue
        examples.append(example)
  except UnicodeDecodeError as e:
    raise UserError(f"{path} is not UTF-8 text: {e.reason} at byte {e.start}") from None
  except csv.Error as e:
    raise UserError(f"{path}: unreadable TSV: {e}") from None
  if skipped:
    logging.warning("%s: skipped %s", path, ", ".join(f"{n} rows ({why})" for why, n in skipped.items()))
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


# ---------------------------------------------------------------------------------------------------
# Features


@dataclasses.dataclass
class InputFeatures:
  input_ids: list
  input_mask: list
  segment_ids: list
  label_id: int | float
  is_real_example: bool = True


def truncate_pair(tokens_a, tokens_b, max_length):
  """Pops tokens from the end of the longer list (the second on ties) until both fit, in place."""
  while len(tokens_a) + len(tokens_b) > max_length:
    (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def pack_ids(tokenizer, tokens_a, tokens_b, max_seq_length):
  """[CLS] a [SEP] (b [SEP] unless tokens_b is None) as zero-padded (input_ids, input_mask,
  segment_ids) of max_seq_length."""
  tokens = ["[CLS]", *tokens_a, "[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b is not None:
    tokens += [*tokens_b, "[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  padding = [0] * (max_seq_length - len(input_ids))
  return input_ids + padding, [1] * len(input_ids) + padding, segment_ids + padding


def convert_example(example, task, max_seq_length, tokenizer):
  """One example's features (spec §11.1): pairs truncated to S-3, single sentences to S-2."""
  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = tokenizer.tokenize(example.text_b) if example.text_b is not None else None
  if tokens_b is not None:
    truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  # Like the original, a second text without tokens adds no second [SEP].
  input_ids, input_mask, segment_ids = pack_ids(tokenizer, tokens_a, tokens_b or None, max_seq_length)
  label_id = float(example.label) if task.is_regression else task.labels.index(example.label)
  return InputFeatures(input_ids, input_mask, segment_ids, label_id)


def serialize_features(features):
  """A tf.train.Example with the original keys (§5.3); a float label is stored as a float feature."""
  example = tf.train.Example()
  feature = example.features.feature
  for key in ("input_ids", "input_mask", "segment_ids"):
    feature[key].int64_list.value.extend(getattr(features, key))
  if isinstance(features.label_id, float):
    feature["label_ids"].float_list.value.append(features.label_id)
  else:
    feature["label_ids"].int64_list.value.append(features.label_id)
  feature["is_real_example"].int64_list.value.append(int(features.is_real_example))
  return example.SerializeToString()


def write_tfrecord(path, records):
  """Writes serialized records to `path` atomically (temporary file, then rename); returns the count."""
  directory = os.path.dirname(path) or "."
  tf.io.gfile.makedirs(directory)
  temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
  count = 0
  try:
    with tf.io.TFRecordWriter(temporary) as writer:
      for record in records:
        writer.write(record)
        count += 1
    tf.io.gfile.rename(temporary, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
  return count


def check_feature_file(path, record_length, float_label, flag_name):
  """Fails clearly when a reused feature cache was built for another sequence length or label type."""
  try:
    first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
  except tf.errors.OpError as e:
    raise UserError(f"--{flag_name}: cannot read the cached features {path}: {e.message}") from None
  if first is None:
    raise UserError(f"--{flag_name}: the cached features {path} are empty; delete the file to rebuild it")
  feature = tf.train.Example.FromString(first.numpy()).features.feature
  if "input_ids" not in feature or "label_ids" not in feature:
    raise UserError(f"--{flag_name}: {path} is not a feature file of this task (no input_ids/label_ids)")
  found = len(feature["input_ids"].int64_list.value)
  if found != record_length:
    raise UserError(f"--{flag_name}: the cached features {path} hold sequences of {found} tokens but the "
                    f"flags need {record_length}; delete the file or change --max_seq_length")
  if (feature["label_ids"].WhichOneof("kind") == "float_list") != float_label:
    raise UserError(f"--{flag_name}: the cached features {path} were built for another task (label type); "
                    "delete the file")


def cached_feature_file(path, build_records, record_length, float_label, flag_name):
  """Writes `build_records()` to `path` unless the file exists (then checks it fits and reuses it)."""
  if tf.io.gfile.exists(path):
    check_feature_file(path, record_length, float_label, flag_name)
    logging.info("reusing cached features %s", path)
    return path
  count = write_tfrecord(path, build_records())
  logging.info("wrote %d features to %s", count, path)
  return path


# ---------------------------------------------------------------------------------------------------
# Input pipelines and padding


def input_fn_builder(input_file, record_length, is_training, batch_size, float_label=False, seed=None):
  """A `dataset_fn(input_context=None)` over a feature file (§5.5): training repeats, shuffles
  (buffer 100) and drops the remainder; evaluation keeps the order and every example.
  """
  spec = {key: tf.io.FixedLenFeature([record_length], tf.int64)
          for key in ("input_ids", "input_mask", "segment_ids")}
  spec["label_ids"] = tf.io.FixedLenFeature([], tf.float32 if float_label else tf.int64)
  spec["is_real_example"] = tf.io.FixedLenFeature([], tf.int64)
  return input_pipeline.tfrecord_dataset_fn(input_file, spec, batch_size, is_training, is_training, seed)


def trim_padding(input_ids, input_mask, segment_ids):
  """Cuts [N, S] inputs to the longest real sequence among the N (padding always sits at the end), so
  a batch of short examples does not pay for max_seq_length. Attention never looks at padding, so the
  outputs are those of the padded batch.
  """
  length = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(input_mask, tf.int32), axis=1)), 1)
  return input_ids[:, :length], input_mask[:, :length], segment_ids[:, :length]


def padding_trim_settings(trim_flag, strategy, jit_compile):
  """(trim in evaluation/prediction, trim in training): data-dependent shapes are off on TPUs, and in
  training under XLA, which both need static shapes."""
  on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  inference = trim_flag and not on_tpu
  return inference, inference and not jit_compile


# ---------------------------------------------------------------------------------------------------
# The classifier task


class ClassifierTask(trainer.Task):
  """ALBERT's pooled output + the classifier head; softmax cross-entropy, or squared error for STS-B."""

  def __init__(self, config, num_labels, compute_dtype=tf.float32, trim_inference=True, trim_training=True,
               create_encoder=None):
    self.config, self.num_labels, self.compute_dtype = config, num_labels, compute_dtype
    self.trim_inference, self.trim_training = trim_inference, trim_training
    self.create_encoder = create_encoder or (lambda dtype: AlbertModel(config, dtype))

  def build(self):
    self.model = self.create_encoder(self.compute_dtype)
    self.head = heads.ClassifierHead(self.config, self.num_labels)

  def named_variables(self):
    return {**self.model.named_variables(), **self.head.named_variables()}

  def logits(self, features, training):
    inputs = features["input_ids"], features["input_mask"], features["segment_ids"]
    if self.trim_training if training else self.trim_inference:
      inputs = trim_padding(*inputs)
    return self.head(self.model(*inputs, training=training).pooled_output, training)

  def _losses(self, logits, labels):
    if self.num_labels == 1:
      return heads.regression_losses(logits, labels)
    return heads.classification_losses(logits, labels)

  def compute_loss(self, features, training):
    return tf.reduce_mean(self._losses(self.logits(features, training), features["label_ids"]))

  def predict_step(self, features):
    logits = self.logits(features, training=False)
    return {**prediction_outputs(logits, self.num_labels == 1), "logits": logits,
            "label_ids": features["label_ids"], "is_real_example": features["is_real_example"]}


def prediction_outputs(logits, is_regression):
  """The original predict dict: `probabilities` (softmax; the raw [B, 1] logits for a regression) and
  `predictions` (argmax int32; the squeezed logit for a regression)."""
  if is_regression:
    return {"probabilities": logits, "predictions": tf.squeeze(logits, -1)}
  return {"probabilities": tf.nn.softmax(logits, axis=-1),
          "predictions": tf.argmax(logits, axis=-1, output_type=tf.int32)}


def stack_predictions(results):
  """Per-example prediction dicts -> one numpy array per output."""
  results = list(results)
  if not results:
    raise UserError("the evaluation input is empty")
  return {key: np.stack([result[key] for result in results]) for key in results[0]}


# ---------------------------------------------------------------------------------------------------
# Metrics (numpy, on the real examples)


def accuracy(predictions, labels):
  return float(np.mean(np.asarray(predictions) == np.asarray(labels))) if len(labels) else float("nan")


def _confusion(predictions, labels):
  predictions, labels = np.asarray(predictions) == 1, np.asarray(labels) == 1
  return (int(np.sum(predictions & labels)), int(np.sum(~predictions & ~labels)),
          int(np.sum(predictions & ~labels)), int(np.sum(~predictions & labels)))


def f1_score(predictions, labels):
  """F1 of the positive class 1 (0 when there is no true or predicted positive)."""
  tp, _, fp, fn = _confusion(predictions, labels)
  return 2.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews_corrcoef(predictions, labels):
  """Matthews correlation of binary predictions; 0 when a marginal is empty (the usual convention)."""
  tp, tn, fp, fn = _confusion(predictions, labels)
  denominator = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(x, y):
  """Pearson correlation; 0 when either side is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x, y = x - x.mean(), y - y.mean()
  denominator = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
  return float(np.sum(x * y) / denominator) if denominator else 0.0


def _ranks(values):
  """1-based ranks with ties sharing their average rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values), np.float64)
  start = 0
  while start < len(values):
    end = start
    while end + 1 < len(values) and values[order[end + 1]] == values[order[start]]:
      end += 1
    ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
    start = end + 1
  return ranks


def spearman(x, y):
  """Spearman rank correlation (Pearson of the tie-averaged ranks)."""
  return pearson(_ranks(x), _ranks(y))


def per_example_losses(logits, labels, is_regression):
  """Float64 losses as the head computes them: squared error, or softmax cross-entropy."""
  logits = np.asarray(logits, np.float64)
  if is_regression:
    return (logits[:, 0] - np.asarray(labels, np.float64)) ** 2
  top = logits.max(axis=1, keepdims=True)
  log_normalizer = top[:, 0] + np.log(np.sum(np.exp(logits - top), axis=1))
  return log_normalizer - logits[np.arange(len(logits)), np.asarray(labels, np.int64)]


def loss_metrics(losses, real, batch_size):
  """`eval_loss` (mean over real examples) and the Estimator's `loss` (mean of per-batch means)."""
  batch_means = [np.mean(losses[i:i + batch_size]) for i in range(0, len(losses), batch_size)]
  return {"eval_loss": float(np.mean(losses[real])) if real.any() else float("nan"),
          "loss": float(np.mean(batch_means))}


def classifier_scores(task, outputs, batch_size):
  """The task's eval metrics (spec §10.3, §11.1) from stacked predict outputs."""
  real = outputs["is_real_example"] > 0
  labels = outputs["label_ids"]
  scores = loss_metrics(per_example_losses(outputs["logits"], labels, task.is_regression), real, batch_size)
  predictions, labels = outputs["predictions"][real], labels[real]
  if task.is_regression:
    scores.update(pearson=pearson(predictions, labels), spearman=spearman(predictions, labels),
                  MSE=float(np.mean((predictions.astype(np.float64) - labels) ** 2)))
    return scores
  scores["eval_accuracy"] = accuracy(predictions, labels)
  if "f1" in task.extra_metrics:
    scores["f1"] = f1_score(predictions, labels)
  if "matthew_corr" in task.extra_metrics:
    scores["matthew_corr"] = matthews_corrcoef(predictions, labels)
  return scores


# ---------------------------------------------------------------------------------------------------
# Evaluating checkpoints (shared with RACE)


def evaluate_checkpoints(model_trainer, output_dir, score, key, init_checkpoint=None, write_outputs=True):
  """Scores every checkpoint kept in output_dir (ascending), copies the best to model.ckpt-best and
  writes eval_results.txt/.json; without checkpoints, scores `init_checkpoint`. `score()` evaluates the
  trainer's current weights. Returns the BestCheckpointTracker.
  """
  candidates = eval_results.checkpoints_to_evaluate(output_dir, evaluate_all=True)
  tracker = eval_results.BestCheckpointTracker(output_dir, key=key, copy_best=write_outputs and bool(candidates))
  if not candidates:
    prefix = model_trainer.restore_for_inference(init_checkpoint=init_checkpoint)
    tracker.add(prefix, model_trainer.global_step, score())
  for prefix in candidates:
    model_trainer.restore_for_inference(checkpoint=prefix)
    scores = score()
    logging.info("%s: %s = %s", prefix, key, scores[key])
    tracker.add(prefix, model_trainer.global_step, scores)
  if write_outputs:
    tracker.write(output_dir)
  return tracker


def best_checkpoint(output_dir):
  """`model.ckpt-best` of output_dir if an evaluation made one, else None (the latest is used)."""
  prefix = os.path.join(output_dir, eval_results.BEST_CHECKPOINT)
  return prefix if checkpoints.checkpoint_exists(prefix) else None


# ---------------------------------------------------------------------------------------------------
# SavedModel export (spec §11.2)


class _ServingModule(tf.Module):
  """Holds the model and head variables and the serving function of serialized tf.Examples."""

  def __init__(self, task, seq_length, is_regression, threshold):
    super().__init__(name="albert_classifier")
    self.model, self.head = task.model, task.head
    self._task, self._is_regression, self._threshold = task, is_regression, threshold
    self._spec = {key: tf.io.FixedLenFeature([seq_length], tf.int64)
                  for key in ("input_ids", "input_mask", "segment_ids")}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized_example")])
  def serve(self, serialized_example):
    parsed = tf.io.parse_example(serialized_example, self._spec)
    features = {key: tf.cast(value, tf.int32) for key, value in parsed.items()}
    outputs = prediction_outputs(self._task.logits(features, training=False), self._is_regression)
    if self._threshold is not None:
      outputs["threshold"] = tf.constant(self._threshold, tf.float32)
    return outputs


def export_saved_model(config, task, checkpoint_prefix, export_dir, seq_length, threshold=None):
  """Exports the classifier at `checkpoint_prefix` to `<export_dir>/<timestamp>` (like the Estimator);
  its `serving_default` signature takes `serialized_example` strings and returns `probabilities`,
  `predictions` (and `threshold` when given). Returns the SavedModel directory.
  """
  classifier = serving.load_task_for_export(
      ClassifierTask(config, task.num_labels, trim_inference=False, trim_training=False), checkpoint_prefix,
      "classifier")
  module = _ServingModule(classifier, seq_length, task.is_regression, threshold)
  return serving.save_timestamped(module, export_dir, {"serving_default": module.serve})
