"""SQuAD serving export (`--export_dir`): a SavedModel over int32 ids, and the v1 TFLite file.

`<export_dir>/saved_model/<timestamp>` has a `serving_default` signature taking int32 [batch,
max_seq_length] `input_ids`, `input_mask` and `segment_ids` and returning the task's answer outputs
(v1: start/end logits; v2: the beam outputs and cls_logits, with p_mask rebuilt from the inputs).
"""

import os

import tensorflow as tf
from absl import logging

from albert.export import savedmodel

SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "albert_model.tflite"


class SquadServing(tf.Module):
  """The exported model: float32 weights and a `serving_default` over int32 [batch, max_seq_length]
  input_ids, input_mask and segment_ids."""

  def __init__(self, task, seq_length):
    super().__init__(name="albert_squad")
    self.model, self.head, self._task = task.model, task.head, task
    specs = [tf.TensorSpec([None, seq_length], tf.int32, name=name)
             for name in ("input_ids", "input_mask", "segment_ids")]
    self.serve = tf.function(self._serve, input_signature=specs)

  def _serve(self, input_ids, input_mask, segment_ids):
    return self._task.answer_outputs(self._task.serving_features(input_ids, input_mask, segment_ids))


def export(task, prefix, export_dir, seq_length):
  """SavedModel of checkpoint `prefix` under <export_dir>/saved_model/, plus the TFLite file where the
  original wrote one (v1). Returns the SavedModel directory."""
  export_task = savedmodel.load_task_for_export(task, prefix, "SQuAD model")
  module = SquadServing(export_task, seq_length)
  path = savedmodel.save_timestamped(module, os.path.join(export_dir, SAVED_MODEL_DIR),
                                     {"serving_default": module.serve})
  logging.info("exported %s to %s", prefix, path)
  if task.exports_tflite:
    savedmodel.write_tflite(path, os.path.join(export_dir, TFLITE_FILE))
  return path
