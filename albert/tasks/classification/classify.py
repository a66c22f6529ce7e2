"""Labels from raw text with a fine-tuned classifier (`python -m albert.classify`).

A text (or pair) becomes the model input exactly as run_classifier builds it (`features.text_normalizer`,
`features.convert_example`: the same truncation and layout), so one model gives the same probabilities
here as in its test_results.tsv. The outputs are named by the run's `labels.json` (written by
run_classifier: `{"labels": [...]}` or `{"regression": true}`), else by the GLUE task `--task_name`, else
by their indices; a regression model gives its score.
"""

from __future__ import annotations

import csv
import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core.errors import UserError, require_file
from albert.core.progress import ProgressLog
from albert.core.streams import batched
from albert.inference import onnx_engine
from albert.tasks.fine_tuned import ServingSignature, checkpoint_head, load_weights, wrong_model
from albert.io.files import json_lines, text_lines
from albert.tasks.classification import custom, features, glue
from albert.tasks.classification.glue import InputExample
from albert.tasks.classification.task import ClassifierTask, prediction_outputs

if TYPE_CHECKING:
  from collections.abc import Iterable, Iterator

  from albert.cli.model_source import ModelSource

EXPECTED = "a classifier fine-tuned with run_classifier"
DEFAULT_MAX_SEQ_LENGTH = 512  # run_classifier's default, capped at the model's max_position_embeddings
TEXT_KEYS = ("text_a", "text")  # the first text's key or column: text_a, or text as in custom training files


# ---- inputs ----

def _example(where, guid, text_a, text_b):
  if not text_a.strip():
    raise UserError(f"{where}: the text is empty")
  return where, InputExample(guid, text_a, text_b, None)


def text_from_flags(text_a: str | None, text_b: str | None) -> tuple[str, InputExample]:
  """(where, example) of `--text_a` and the optional `--text_b`."""
  if text_a is None:
    raise UserError("--text_a is required (or --input_file)")
  return _example("--text_a", "1", text_a, text_b)


def read_texts(path: str) -> Iterator[tuple[str, InputExample]]:
  """(where, example) per record of `--input_file`, streamed: TSV (`.tsv`) or JSON lines.

  A JSON line is {"id"?, "text_a", "text_b"?} (`text` may stand for `text_a`); a TSV file starts with a
  header naming its columns the same way. Ids default to the line number.
  """
  require_file(path, "input_file")
  return _tsv_rows(path) if path.lower().endswith(".tsv") else _json_lines(path)


def _text_key(keys, where):
  key = next((key for key in TEXT_KEYS if key in keys), None)
  if key is None:
    raise UserError(f"{where}: no text_a (found {', '.join(map(str, keys)) or 'nothing'})")
  return key


def _json_lines(path):
  for where, number, record in json_lines(path, f"--input_file {path}",
                                          expected='a JSON object {"id", "text_a", "text_b"}'):
    text_a = record.get(_text_key(record.value, where), str)
    guid = record.get("id", (str, int), default=number)
    yield _example(where, str(guid), text_a, record.get("text_b", str, default=None))


def _tsv_rows(path):
  reader = csv.reader(text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
  header = next(reader, None)
  if header is None:
    raise UserError(f"--input_file {path}: empty file (expected a header row naming text_a, text_b, id)")
  header = [name.strip().lstrip("\ufeff") for name in header]
  text_key = _text_key(header, f"--input_file {path} header")
  index = {name: header.index(name) for name in (text_key, "text_b", "id") if name in header}
  for row in reader:
    where = f"--input_file {path} line {reader.line_num}"
    if not row:
      continue
    if len(row) != len(header):
      raise UserError(f"{where}: expected {len(header)} tab-separated columns like the header, found {len(row)}")
    text_b = row[index["text_b"]] if "text_b" in index else None
    guid = row[index["id"]] if "id" in index else str(reader.line_num)
    yield _example(where, guid, row[index[text_key]], text_b)


# ---- labels ----

def output_names(source: ModelSource, num_outputs: int, task_name: str | None):
  """The task naming the model's outputs: the run's labels.json, else the GLUE `task_name`, else indices.

  Returns:
    An object with `labels` (() for a regression), `is_regression` and `source` (for messages).
  """
  path = source.side_file(custom.LABELS_FILE)
  if path is not None:
    task = custom.read_labels_file(path)
  elif task_name:
    task = glue.get_task(task_name)
  elif num_outputs == 1:
    return custom.REGRESSION
  else:
    return custom.CustomTask(tuple(str(index) for index in range(num_outputs)), "label indices")
  if task.num_labels != num_outputs:
    where = path or f"--task_name={task.name}"
    raise UserError(f"{where} names {custom.describe_labels(task)}, but {source.name} has {num_outputs} output(s)")
  return task


# ---- the model ----

class Classifier:
  """A classifier and its label names: `classify(labelled_examples)` yields one result dict per text.

  Build it with `load_classifier`.

  Args:
    run_batch: `(list of InputFeatures) -> {"probabilities": [B, L]}` (a regression: the [B, 1] scores).
    tokenizer: the model's tokenizer.
    max_seq_length: the input length in pieces (texts are truncated like run_classifier's).
    task: names the outputs (`output_names`).
    batch_size: texts per model call.
  """

  def __init__(self, run_batch, tokenizer, max_seq_length, task, batch_size):
    self.run_batch, self.tokenizer, self.max_seq_length = run_batch, tokenizer, max_seq_length
    self.task, self.batch_size = task, batch_size
    self.normalize = features.text_normalizer(tokenizer)
    self.placeholder = 0.0 if task.is_regression else task.labels[0]  # what run_classifier gives test examples

  def features(self, example):
    """The InputFeatures run_classifier would build for the example (its label a placeholder)."""
    text_b = None if example.text_b is None else self.normalize(example.text_b)
    normalized = InputExample(example.guid, self.normalize(example.text_a), text_b, self.placeholder)
    return features.convert_example(normalized, self.task, self.max_seq_length, self.tokenizer)

  def classify(self, labelled_examples: Iterable[tuple[str, InputExample]], total: int | None = None) -> Iterator[dict]:
    """The result of every (where, example), in order; see `prediction_record`."""
    progress = ProgressLog("classifying", "texts", total)
    done = 0
    for batch in batched(labelled_examples, self.batch_size):
      probabilities = self.run_batch([self.features(example) for _, example in batch])
      for (_, example), row in zip(batch, probabilities):
        yield prediction_record(example, row, self.task)
        done += 1
      progress.update(done)
    progress.update(done, force=True)


def load_classifier(source: ModelSource, max_seq_length: int | None, batch_size: int, task_name: str | None = None,
                    compute_dtype: tf.DType = tf.float32) -> Classifier:
  """The Classifier of a model source; `max_seq_length` None takes a SavedModel's, else run_classifier's default."""
  if source.saved_model:
    return _from_saved_model(source, max_seq_length, batch_size, task_name)
  if source.onnx_model:
    return _from_onnx(source, onnx_engine.OnnxEngine(source.onnx_model), max_seq_length, batch_size, task_name)
  head = checkpoint_head(source.checkpoint)
  if head.kind != "classifier":
    raise wrong_model(source.name, head, EXPECTED, "albert.classify")
  config = source.setup.config
  max_seq_length = max_seq_length or min(DEFAULT_MAX_SEQ_LENGTH, config.max_position_embeddings)
  task = ClassifierTask(config, head.num_labels, compute_dtype, trim_inference=True, trim_training=False,
                        create_encoder=source.setup.create_encoder)
  load_weights(task, source.checkpoint, source.from_hub)
  if source.engine == "onnx":
    engine = onnx_engine.from_task(task, config, source.name, source.onnx_quantize)
    return _from_onnx(source, engine, max_seq_length, batch_size, task_name)
  spec = tf.TensorSpec([None, None], tf.int32)

  @tf.function(input_signature=[spec] * 3)
  def forward(input_ids, input_mask, segment_ids):
    features_ = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    return prediction_outputs(task.logits(features_, training=False), task.is_regression)["probabilities"]

  def run_batch(batch):
    arrays = [np.asarray([getattr(f, key) for f in batch], np.int32) for key in features.INPUT_KEYS]
    return forward(*arrays).numpy()

  return Classifier(run_batch, source.tokenizer, max_seq_length, output_names(source, head.num_labels, task_name),
                    batch_size)


def _from_saved_model(source, max_seq_length, batch_size, task_name):
  signature = ServingSignature(source.saved_model)
  if "serialized_example" not in signature.inputs:
    if "input_ids" in signature.inputs:
      raise UserError(f"{source.name} takes token ids, like a SQuAD export, not {EXPECTED}: use albert.answer")
    raise UserError(f"{source.name} does not take serialized_example: not a run_classifier --export_dir SavedModel")
  if "probabilities" not in signature.outputs:
    raise UserError(f"{source.name} returns {', '.join(signature.outputs)}, not the probabilities of {EXPECTED}")
  length = signature.parsed_length()
  if max_seq_length is None:
    if length is None:
      raise UserError(f"--max_seq_length is required: the input length of {source.name} cannot be read from it")
    max_seq_length = length
  elif length is not None and length != max_seq_length:
    raise UserError(f"--max_seq_length={max_seq_length}, but {source.name} takes inputs of {length} pieces")
  num_outputs = signature.outputs["probabilities"].shape[-1]
  logging.info("%s: %d output(s), inputs of %d pieces", source.name, num_outputs, max_seq_length)

  def run_batch(batch):
    serialized = np.asarray([features.serialize_features(f) for f in batch], dtype=object)
    return signature(serialized_example=serialized)["probabilities"]

  return Classifier(run_batch, source.tokenizer, max_seq_length, output_names(source, num_outputs, task_name),
                    batch_size)


def _from_onnx(source, engine, max_seq_length, batch_size, task_name):
  """The Classifier of an ONNX model (`--engine=onnx`); outputs are named by the labels the export recorded,
  else as for a checkpoint (labels.json beside the file, --task_name, indices)."""
  if engine.task != "classifier":
    raise UserError(f"{source.name} is {engine.describe()}, not {EXPECTED}")
  max_seq_length = max_seq_length or min(DEFAULT_MAX_SEQ_LENGTH, engine.max_position_embeddings)
  engine.check_length(max_seq_length)
  stored = engine.json_value("labels")  # the run's labels.json, recorded by albert.export_onnx
  if stored is not None and not task_name:
    where = f"the labels stored in {source.name}"
    names = (dataclasses.replace(custom.REGRESSION, source=where) if stored.get("regression")
             else custom.CustomTask(tuple(stored["labels"]), where))
    if names.num_labels != engine.num_labels:
      raise UserError(f"{source.name} stores {custom.describe_labels(names)} for {engine.num_labels} output(s)")
  else:
    names = output_names(source, engine.num_labels, task_name)

  def run_batch(batch):
    arrays = {key: np.asarray([getattr(f, key) for f in batch], np.int32) for key in features.INPUT_KEYS}
    length = max(int(arrays["input_mask"].sum(axis=1).max()), 1)  # padding changes no output: cut it
    return engine(**{key: value[:, :length] for key, value in arrays.items()})["probabilities"]

  return Classifier(run_batch, source.tokenizer, max_seq_length, names, batch_size)


# ---- results ----

def prediction_record(example: InputExample, probabilities: np.ndarray, task) -> dict:
  """A text's result: `id`, then `score` for a regression, else `label`, its `probability` and every
  label's `probabilities` (in the model's output order)."""
  record = {"id": example.guid}
  if task.is_regression:
    record["score"] = float(probabilities[0])
    return record
  best = int(np.argmax(probabilities))
  record.update(label=task.labels[best], probability=float(probabilities[best]),
                probabilities={label: float(p) for label, p in zip(task.labels, probabilities)})
  return record


def format_record(example: InputExample, record: dict) -> str:
  """The human-readable report of one text: the texts, then the score or the labels by probability."""
  lines = [f"text_a: {example.text_a}"] + ([f"text_b: {example.text_b}"] if example.text_b is not None else [])
  if "score" in record:
    return "\n".join(lines + [f"score:  {record['score']:.6g}"])
  lines.append(f"label:  {record['label']} (probability {record['probability']:.4f})")
  for label, p in sorted(record["probabilities"].items(), key=lambda item: -item[1]):
    lines.append(f"  {p:.4f}  {label}")
  return "\n".join(lines)
