"""Classification tasks: GLUE (a label or a score per text pair) and RACE (one of four choices).

Both are an ALBERT encoder's pooled output plus a small head (docs/compatibility.md §3.1-3.2); they
share the loss, the prediction outputs the original wrote, and the trimming of padding.
"""

import numpy as np
import tensorflow as tf

from albert.core.errors import UserError
from albert.model import heads
from albert.training.task import EncoderTask

NUM_CHOICES = 4  # RACE


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


class _ClassificationTask(EncoderTask):
  """Logits from the pooled output; softmax cross-entropy (squared error for one regression logit)."""

  is_regression = False

  def logits(self, features, training):
    raise NotImplementedError

  def compute_loss(self, features, training):
    logits = self.logits(features, training)
    if self.is_regression:
      return tf.reduce_mean(heads.regression_losses(logits, features["label_ids"]))
    return tf.reduce_mean(heads.classification_losses(logits, features["label_ids"]))

  def predict_step(self, features):
    logits = self.logits(features, training=False)
    return {**prediction_outputs(logits, self.is_regression), "logits": logits,
            "label_ids": features["label_ids"], "is_real_example": features["is_real_example"]}


class ClassifierTask(_ClassificationTask):
  """ALBERT's pooled output + the classifier head; `num_labels` 1 is the STS-B regression."""

  def __init__(self, config, num_labels, compute_dtype=tf.float32, trim_inference=True, trim_training=True,
               create_encoder=None):
    super().__init__(config, create_encoder, compute_dtype, trim_inference, trim_training)
    self.num_labels = num_labels
    self.is_regression = num_labels == 1

  def build_head(self):
    return heads.ClassifierHead(self.config, self.num_labels)

  def logits(self, features, training):
    outputs = self.encode(features["input_ids"], features["input_mask"], features["segment_ids"], training)
    return self.head(outputs.pooled_output, training)


class RaceTask(_ClassificationTask):
  """ALBERT over each (article, choice) pair + one score per choice; softmax over the four choices."""

  def __init__(self, config, dropout_prob=0.1, compute_dtype=tf.float32, trim_inference=True, trim_training=True,
               create_encoder=None):
    super().__init__(config, create_encoder, compute_dtype, trim_inference, trim_training)
    self.dropout_prob = dropout_prob

  def build_head(self):
    return heads.MultipleChoiceHead(self.config, NUM_CHOICES, self.dropout_prob)

  def logits(self, features, training):
    """[B, 4] from inputs [B, 4·S]: one encoder pass over the B·4 sequences."""
    inputs = [tf.reshape(features[key], [-1, features[key].shape[-1] // NUM_CHOICES])
              for key in ("input_ids", "input_mask", "segment_ids")]
    return self.head(self.encode(*inputs, training).pooled_output, training)
