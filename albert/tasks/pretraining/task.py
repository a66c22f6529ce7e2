"""The pretraining task: ALBERT with the masked-LM and sentence-order heads (docs/compatibility.md §2.8).

Loss = MLM loss + SOP loss; evaluation reports the original's metrics (masked-LM and sentence-order
accuracy and loss).
"""

import tensorflow as tf

from albert.model.pretraining import AlbertPretrainingModel, masked_lm_loss, sentence_order_loss
from albert.training.task import Task


class PretrainingTask(Task):
  """ALBERT with the masked-LM and sentence-order heads; loss = MLM loss + SOP loss."""

  def __init__(self, config, compute_dtype=tf.float32):
    self.config, self.compute_dtype = config, compute_dtype
    self.model = None

  def build(self):
    self.model = AlbertPretrainingModel(self.config, self.compute_dtype)

  def named_variables(self):
    return self.model.named_variables()

  def encoder(self):
    return self.model.model

  def _forward(self, features, training):
    return self.model(features["input_ids"], features["input_mask"], features["segment_ids"],
                      features["masked_lm_positions"], training=training)

  def compute_loss(self, features, training):
    outputs = self._forward(features, training)
    return self.model.compute_loss(outputs, features["masked_lm_ids"], features["masked_lm_weights"],
                                   features["next_sentence_labels"])

  def eval_step(self, features):
    """The original's eval metrics as (weighted sum, weight) pairs, plus the total `loss` per batch."""
    outputs = self._forward(features, training=False)
    mlm_ids = tf.reshape(features["masked_lm_ids"], [-1])
    mlm_weights = tf.reshape(tf.cast(features["masked_lm_weights"], tf.float32), [-1])
    sop_labels = tf.reshape(features["next_sentence_labels"], [-1])
    mlm_loss, mlm_per_prediction = masked_lm_loss(outputs.masked_lm_logits, mlm_ids, mlm_weights)
    sop_loss, sop_per_example = sentence_order_loss(outputs.sentence_order_logits, sop_labels)
    mlm_correct = _correct(outputs.masked_lm_logits, mlm_ids)
    sop_correct = _correct(outputs.sentence_order_logits, sop_labels)
    mlm_total = tf.reduce_sum(mlm_weights)
    examples = tf.cast(tf.size(sop_labels), tf.float32)
    return {
        "masked_lm_accuracy": (tf.reduce_sum(mlm_weights * mlm_correct), mlm_total),
        "masked_lm_loss": (tf.reduce_sum(mlm_weights * mlm_per_prediction), mlm_total),
        "sentence_order_accuracy": (tf.reduce_sum(sop_correct), examples),
        "sentence_order_loss": (tf.reduce_sum(sop_per_example), examples),
        "loss": (mlm_loss + sop_loss, tf.constant(1.0)),
    }


def _correct(logits, labels):
  """1.0 where the argmax of the logits is the label, else 0.0."""
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.float32)


def num_of_group(config, init_from_group0):
  """Groups `init_checkpoint` fills (docs/compatibility.md §2.9): 1, or with init_from_group0 every group
  (every layer when the config's net_structure_type > 0). A config without net_structure_type counts as
  0 (the original crashed: quirk 7).
  """
  if not init_from_group0:
    return 1
  if int(config.extra.get("net_structure_type", 0) or 0) > 0:
    return config.num_hidden_layers
  return config.num_hidden_groups
