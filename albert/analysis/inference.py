"""The SQuAD task with what analysis needs per window: the usual prediction outputs plus the window's
loss against its labels and two latent vectors (pooled output, mask-weighted mean of the sequence).
"""

import tensorflow as tf

from albert.squad_runner import SquadTask

LABEL_KEYS = ("start_positions", "end_positions", "is_impossible")


def _rows(values):
  return tf.reshape(tf.cast(values, tf.int32), [-1])


def v1_window_losses(start_logits, end_logits, start_positions, end_positions):
  """Per window: (start cross-entropy + end cross-entropy) / 2, the summand of heads.squad_v1_loss."""
  def cross_entropy(logits, positions):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_rows(positions), logits=logits)
  return (cross_entropy(start_logits, start_positions) + cross_entropy(end_logits, end_positions)) / 2.0


def v2_window_losses(start_log_probs, end_log_probs, cls_logits, start_positions, end_positions,
                     is_impossible):
  """Per window: 0.5·(start NLL + end NLL) + 0.5·answer-class cross-entropy, the summand of
  heads.squad_v2_loss."""
  start_nll = -tf.gather(start_log_probs, _rows(start_positions), batch_dims=1)
  end_nll = -tf.gather(end_log_probs, _rows(end_positions), batch_dims=1)
  labels = tf.cast(_rows(is_impossible), tf.float32)
  answer_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=cls_logits)
  return 0.5 * (start_nll + end_nll) + 0.5 * answer_class


class AnalysisTask(SquadTask):
  """SquadTask whose predictions also carry `window_loss`, `pooled_output` and `mean_output`."""

  def window_losses(self, sequence_output, features):
    """The loss of every window of the batch against its labels, float32 [B]."""
    if self.version == 1:
      start_logits, end_logits = self.head(sequence_output)
      return v1_window_losses(start_logits, end_logits, features["start_positions"], features["end_positions"])
    start_log_probs, end_log_probs, cls_logits = self.head.train_logits(
        sequence_output, features["p_mask"], features["start_positions"], training=False)
    return v2_window_losses(start_log_probs, end_log_probs, cls_logits, features["start_positions"],
                            features["end_positions"], features["is_impossible"])

  def predict_step(self, features):
    outputs = self.model(features["input_ids"], features["input_mask"], features["segment_ids"])
    sequence_output = outputs.sequence_output
    if self.version == 1:
      start_logits, end_logits = self.head(sequence_output)
      predictions = {"start_logits": start_logits, "end_logits": end_logits}
    else:
      predictions = self.head.predict(sequence_output, features["p_mask"])
    mask = tf.cast(features["input_mask"], tf.float32)[:, :, tf.newaxis]
    hidden = tf.cast(sequence_output, tf.float32)
    mean_output = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return {"unique_ids": features["unique_ids"], **predictions,
            "window_loss": self.window_losses(sequence_output, features),
            "pooled_output": tf.cast(outputs.pooled_output, tf.float32), "mean_output": mean_output}
