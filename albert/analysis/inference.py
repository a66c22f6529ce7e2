"""A SQuAD task with what analysis needs per window: the usual prediction outputs plus the window's loss
against its labels and two latent vectors (pooled output, mask-weighted mean of the sequence).
"""

import tensorflow as tf

from albert.training.task import Task


class AnalysisTask(Task):
  """Wraps a SQuAD task (`SquadV1Task` or `SquadV2Task`); its predictions also carry `window_loss`,
  `pooled_output` and `mean_output`."""

  def __init__(self, squad_task):
    self.squad_task = squad_task

  @property
  def model(self):
    return self.squad_task.model

  def build(self):
    self.squad_task.build()

  def named_variables(self):
    return self.squad_task.named_variables()

  def compute_loss(self, features, training):
    return self.squad_task.compute_loss(features, training)

  def window_losses(self, sequence_output, features):
    """The loss of every window of the batch against its labels, float32 [B]."""
    return self.squad_task.window_losses(sequence_output, features)

  def predict_step(self, features):
    outputs = self.model(features["input_ids"], features["input_mask"], features["segment_ids"])
    sequence_output = outputs.sequence_output
    mask = tf.cast(features["input_mask"], tf.float32)[:, :, tf.newaxis]
    hidden = tf.cast(sequence_output, tf.float32)
    mean_output = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return {"unique_ids": features["unique_ids"], **self.squad_task.head_outputs(sequence_output, features),
            "window_loss": self.window_losses(sequence_output, features),
            "pooled_output": tf.cast(outputs.pooled_output, tf.float32), "mean_output": mean_output}
