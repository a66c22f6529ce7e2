"""Classifier SavedModel export (docs/compatibility.md §11.2): serialized tf.Examples in, the original
predict outputs (`probabilities`, `predictions`, optionally a constant `threshold`) out; and, when
tensorflow-text is installed and the tokenizer is SentencePiece, a second signature that takes raw text.

`serve_text` takes `text_a` and `text_b` (string [B]; an empty `text_b` means a single text, as leaving out
`--text_b` does for `albert.classify`) and returns `probabilities` [B, labels], `predictions` [B] and `labels`
[B] (the predicted label's name, from the task's label list); a regression model returns only `predictions`
[B] (its score). Texts become the model input exactly as run_classifier builds it (`features.convert_example`:
the original's preprocessing and SentencePiece through `albert.text.in_graph`, longest-first truncation of a
pair to max_seq_length - 3, a single text cut to max_seq_length - 2, a second text without pieces adding no
second [SEP]), so the signature gives what `albert.classify` gives on the same texts. Loading a SavedModel
with this signature needs tensorflow-text's ops registered (`import tensorflow_text`) in the loading process.
"""

import tensorflow as tf
from absl import logging

from albert.export import savedmodel
from albert.tasks.classification.features import INPUT_KEYS
from albert.tasks.classification.task import prediction_outputs
from albert.text import in_graph

TEXT_SIGNATURE = "serve_text"


class ClassifierServing(tf.Module):
  """Holds the model and head variables and the serving functions (the text one when `tokenizer` is given).

  Args:
    task: the classifier task, its variables loaded.
    seq_length: the input length in pieces (`--max_seq_length`).
    threshold: a constant the signatures also return as `threshold`, or None.
    tokenizer: an `InGraphTokenizer` of the run's SentencePiece model and casing, or None (no `serve_text`).
    labels: the task's label names, in output order (empty for a regression).
  """

  def __init__(self, task, seq_length, threshold, tokenizer=None, labels=()):
    super().__init__(name="albert_classifier")
    self.model, self.head = task.model, task.head
    self._task, self._threshold, self._seq_length = task, threshold, seq_length
    self._spec = {key: tf.io.FixedLenFeature([seq_length], tf.int64) for key in INPUT_KEYS}
    if tokenizer is not None:
      self.tokenizer = tokenizer
      self._labels = list(labels)
      text = tf.TensorSpec([None], tf.string, name="text_a"), tf.TensorSpec([None], tf.string, name="text_b")
      self.serve_text = tf.function(self._serve_text, input_signature=text)

  def _outputs(self, features):
    outputs = prediction_outputs(self._task.logits(features, training=False), self._task.is_regression)
    if self._threshold is not None:
      outputs["threshold"] = tf.constant(self._threshold, tf.float32)
    return outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized_example")])
  def serve(self, serialized_example):
    parsed = tf.io.parse_example(serialized_example, self._spec)
    return self._outputs({key: tf.cast(value, tf.int32) for key, value in parsed.items()})

  def _serve_text(self, text_a, text_b):
    outputs = self._outputs(text_features(self.tokenizer, text_a, text_b, self._seq_length))
    if self._task.is_regression:
      outputs.pop("probabilities")
    else:
      outputs["labels"] = tf.gather(tf.constant(self._labels, tf.string), outputs["predictions"])
    return outputs

  def signatures(self):
    signatures = {"serving_default": self.serve}
    if hasattr(self, "serve_text"):
      signatures[TEXT_SIGNATURE] = self.serve_text
    return signatures


def _keep_first(ids, lengths):
  """The first `lengths[i]` ids of each row of a ragged [B, (n)]."""
  return tf.ragged.boolean_mask(ids, tf.ragged.range(ids.row_lengths()) < tf.cast(lengths, tf.int64)[:, None])


def text_features(tokenizer, text_a, text_b, seq_length):
  """`features.convert_example` of raw text pairs in TensorFlow ops: int32 [B, seq_length] input_ids,
  input_mask and segment_ids; an empty `text_b` is a single text."""
  pieces_a, pieces_b = tokenizer.tokenize(text_a), tokenizer.tokenize(text_b)
  length_a, length_b = tf.cast(pieces_a.row_lengths(), tf.int32), tf.cast(pieces_b.row_lengths(), tf.int32)
  pair = tf.strings.length(text_b) > 0
  # truncate_pair pops from the end of the longer list (the second on ties) until both fit in `budget`:
  # the shorter is kept whole if the longer still reaches it, else they meet halfway (the first rounding up).
  budget = seq_length - 3
  shorter = tf.minimum(length_a, length_b)
  fits = length_a + length_b <= budget
  unequal = 2 * shorter <= budget
  keep_a = tf.where(fits, length_a, tf.where(unequal, tf.minimum(length_a, budget - shorter), (budget + 1) // 2))
  keep_b = tf.where(fits, length_b, tf.where(unequal, tf.minimum(length_b, budget - shorter), budget // 2))
  keep_a = tf.where(pair, keep_a, tf.minimum(length_a, seq_length - 2))
  keep_b = tf.where(pair, keep_b, 0)
  batch = tf.size(text_a)
  cls = tf.fill([batch, 1], tokenizer.cls_id)
  sep = tf.fill([batch, 1], tokenizer.sep_id)
  second_sep = tf.ragged.boolean_mask(sep, (keep_b > 0)[:, None])  # none after an empty second text
  ids = tf.concat([cls, _keep_first(pieces_a, keep_a), sep, _keep_first(pieces_b, keep_b), second_sep], axis=1)
  segments = tf.concat([tf.zeros_like(cls), tf.zeros_like(_keep_first(pieces_a, keep_a)), tf.zeros_like(sep),
                        tf.ones_like(_keep_first(pieces_b, keep_b)), tf.ones_like(second_sep)], axis=1)
  shape = [batch, seq_length]
  return {"input_ids": ids.to_tensor(0, shape=shape), "input_mask": tf.ones_like(ids).to_tensor(0, shape=shape),
          "segment_ids": segments.to_tensor(0, shape=shape)}


def _text_tokenizer(tokenizer):
  """The in-graph tokenizer for `serve_text`, or None (saying why in one log line) when it cannot be built."""
  if tokenizer is None:
    return None
  if tokenizer.sp_model is None:
    logging.info("the SavedModel has no %s signature: in-graph tokenization needs a SentencePiece model",
                 TEXT_SIGNATURE)
    return None
  if not in_graph.available():
    logging.info("the SavedModel has no %s signature (raw text in): the [serving] extra (tensorflow-text) adds it",
                 TEXT_SIGNATURE)
    return None
  return in_graph.InGraphTokenizer(tokenizer.sp_model.serialized_model_proto(), tokenizer.do_lower_case)


def export_saved_model(task, checkpoint_prefix, export_dir, seq_length, threshold=None, tokenizer=None,
                       label_task=None):
  """Exports the classifier `task` at `checkpoint_prefix` to `<export_dir>/<timestamp>` (like the
  Estimator); its `serving_default` signature takes `serialized_example` strings and returns
  `probabilities`, `predictions` (and `threshold` when given). With the run's `tokenizer` (a FullTokenizer)
  and `label_task` (naming the labels) it also gets `serve_text` (see the module docstring). Returns the
  SavedModel directory.
  """
  classifier = savedmodel.load_task_for_export(task, checkpoint_prefix, "classifier")
  text_tokenizer = _text_tokenizer(tokenizer)
  labels = () if label_task is None or label_task.is_regression else label_task.labels
  if text_tokenizer is not None and not classifier.is_regression and len(labels) != classifier.num_labels:
    text_tokenizer = None  # no names to give the outputs (cannot happen with run_classifier's tasks)
  module = ClassifierServing(classifier, seq_length, threshold, text_tokenizer, labels)
  return savedmodel.save_timestamped(module, export_dir, module.signatures())
