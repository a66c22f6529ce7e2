"""Classifier SavedModel export (docs/compatibility.md §11.2): serialized tf.Examples in, the original
predict outputs (`probabilities`, `predictions`, optionally a constant `threshold`) out."""

import tensorflow as tf

from albert.export import savedmodel
from albert.tasks.classification.features import INPUT_KEYS
from albert.tasks.classification.task import prediction_outputs


class ClassifierServing(tf.Module):
  """Holds the model and head variables and the serving function of serialized tf.Examples."""

  def __init__(self, task, seq_length, threshold):
    super().__init__(name="albert_classifier")
    self.model, self.head = task.model, task.head
    self._task, self._threshold = task, threshold
    self._spec = {key: tf.io.FixedLenFeature([seq_length], tf.int64) for key in INPUT_KEYS}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized_example")])
  def serve(self, serialized_example):
    parsed = tf.io.parse_example(serialized_example, self._spec)
    features = {key: tf.cast(value, tf.int32) for key, value in parsed.items()}
    outputs = prediction_outputs(self._task.logits(features, training=False), self._task.is_regression)
    if self._threshold is not None:
      outputs["threshold"] = tf.constant(self._threshold, tf.float32)
    return outputs


def export_saved_model(task, checkpoint_prefix, export_dir, seq_length, threshold=None):
  """Exports the classifier `task` at `checkpoint_prefix` to `<export_dir>/<timestamp>` (like the
  Estimator); its `serving_default` signature takes `serialized_example` strings and returns
  `probabilities`, `predictions` (and `threshold` when given). Returns the SavedModel directory.
  """
  classifier = savedmodel.load_task_for_export(task, checkpoint_prefix, "classifier")
  module = ClassifierServing(classifier, seq_length, threshold)
  return savedmodel.save_timestamped(module, export_dir, {"serving_default": module.serve})
