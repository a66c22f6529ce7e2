"""Task heads on top of the ALBERT encoder, with the original release's variable names and math.

Each head is a `Head` (`tf.Module`) whose float32 variables are named like the original checkpoint
variables, so fine-tuned checkpoints of the original release load by name. Heads accept float32,
bfloat16 or float16 encoder outputs and return float32 logits; losses take those logits.

Sections of docs/compatibility.md give the original's math:
- `SquadV1Head`: start/end logits from one [2, H] projection (§3.3), `squad_v1_loss`.
- `SquadV2Head`: XLNet-style start, end (conditioned on the start) and answer-class logits with
  p_mask, teacher forcing for training and a start x end beam for prediction (§3.4), `squad_v2_loss`.
- `ClassifierHead`: GLUE classification/regression on the pooled output (§3.1),
  `classification_losses`, `regression_losses`.
- `MultipleChoiceHead`: one score per RACE choice (§3.2).
The pretraining heads (`albert.model.pretraining`) build on the same `Head`.

Shapes: B is the batch size, S the sequence length, H `hidden_size`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from albert.model.layers import create_variable, dense, dropout, layer_norm, ones_variable, variable_for

if TYPE_CHECKING:
  from albert.model.config import AlbertConfig

FIXED_HEAD_STDDEV = 0.02  # the original hard-codes this for the classifier, RACE and SQuAD v1 heads
MASKED_LOGIT = 1e30


class Head(tf.Module):
  """A task head: owns float32 variables keyed by their original checkpoint names.

  Subclasses create their variables in `__init__` and compute in `__call__`; checkpoint loading and
  saving go through `named_variables`.

  Args:
    name: the `tf.Module` name; it does not prefix the variable names.
  """

  def __init__(self, name: str) -> None:
    super().__init__(name=name)
    self._variables = {}

  def named_variables(self) -> dict[str, tf.Variable]:
    """The head's variables keyed by their original checkpoint name (no `:0`).

    Returns:
      A new dict in creation order; the variables themselves are shared.
    """
    return dict(self._variables)

  def _create(self, name, shape, stddev):
    """A truncated-normal (zeros if stddev is None) variable registered under its original name."""
    self._variables[name] = create_variable(name, shape, stddev)
    return self._variables[name]

  def _create_ones(self, name, shape):
    self._variables[name] = ones_variable(name, shape)
    return self._variables[name]

  def _create_named(self, shapes, stddev):
    """Variables for {name: shape} with the original's initializer for each name (`variable_for`)."""
    for name, shape in shapes.items():
      self._variables[name] = variable_for(name, shape, stddev)


def _flat_int32(values):
  """Labels arrive as [B] or [B, 1] int64 from TFRecords; the heads want [B] int32."""
  return tf.reshape(tf.cast(values, tf.int32), [-1])


# ---- SQuAD v1.1 ----

class SquadV1Head(Head):
  """`cls/squad/output_weights` [2, H] and `output_bias` [2]: channel 0 is the start, channel 1 the end.

  Args:
    config: gives H (`hidden_size`); the weights use the original's fixed stddev 0.02, not the config's.
  """

  def __init__(self, config: AlbertConfig) -> None:
    super().__init__("squad_v1_head")
    self.output_weights = self._create("cls/squad/output_weights", [2, config.hidden_size], FIXED_HEAD_STDDEV)
    self.output_bias = self._create("cls/squad/output_bias", [2], None)

  def __call__(self, sequence_output: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(start_logits, end_logits), float32 [B, S] each; no masking, like the original.

    Args:
      sequence_output: the encoder's last layer [B, S, H], any float dtype.
    Returns:
      The start and end logits, float32 [B, S] each; padding and question positions are not masked.
    """
    logits = dense(tf.cast(sequence_output, tf.float32), tf.transpose(self.output_weights), self.output_bias)
    return logits[..., 0], logits[..., 1]


def squad_v1_window_losses(start_logits: tf.Tensor, end_logits: tf.Tensor, start_positions: tf.Tensor,
                           end_positions: tf.Tensor) -> tf.Tensor:
  """Per window [B]: (start cross-entropy + end cross-entropy) / 2 over all S positions.

  Args:
    start_logits: [B, S] from `SquadV1Head`.
    end_logits: [B, S] from `SquadV1Head`.
    start_positions: the answer's first piece per window, integer [B] or [B, 1].
    end_positions: the answer's last piece per window (inclusive), integer [B] or [B, 1].
  Returns:
    float32 losses [B], one per window.
  """
  def cross_entropy(logits, positions):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_flat_int32(positions),
                                                          logits=tf.cast(logits, tf.float32))
  return (cross_entropy(start_logits, start_positions) + cross_entropy(end_logits, end_positions)) / 2.0


def squad_v1_loss(start_logits: tf.Tensor, end_logits: tf.Tensor, start_positions: tf.Tensor,
                  end_positions: tf.Tensor) -> tf.Tensor:
  """The v1 training loss: (mean start cross-entropy + mean end cross-entropy) / 2.

  Takes the arguments of `squad_v1_window_losses` and returns a float32 scalar, the mean of its losses.
  """
  return tf.reduce_mean(squad_v1_window_losses(start_logits, end_logits, start_positions, end_positions))


# ---- SQuAD v2.0 ----

def _mask_logits(logits, p_mask):
  """logits·(1 − p_mask) − 1e30·p_mask: positions that cannot hold an answer get −1e30."""
  return logits * (1.0 - p_mask) - MASKED_LOGIT * p_mask


class SquadV2Head(Head):
  """Start logits, end logits given a start, and an is-impossible logit (higher = more likely null).

  Works in [B, S, H]; the original's [S, B, H] layout gives the same numbers. The concatenation
  [hidden, start_feature] @ dense_0 is computed as hidden @ top half + start_feature @ bottom half, so
  the beam costs one [B, S, H] projection instead of one per start candidate. That [B, k, S, H] path
  runs in the compute dtype; everything else (and every logit, softmax and LayerNorm) in float32.

  `p_mask` arguments are [B, S] with 1 at positions that cannot hold an answer (question, [SEP],
  padding) and 0 elsewhere; those positions get a logit of -1e30.

  Args:
    config: gives H (`hidden_size`) and the stddev of fresh weights (`initializer_range`).
    start_n_top: start candidates kept by `predict`'s beam.
    end_n_top: end candidates kept per start candidate.
    dropout_prob: dropout on the answer-class hidden layer while training.
  """

  def __init__(self, config: AlbertConfig, start_n_top: int = 5, end_n_top: int = 5,
               dropout_prob: float = 0.1) -> None:
    super().__init__("squad_v2_head")
    h, stddev = config.hidden_size, config.initializer_range
    self.hidden_size = h
    self.start_n_top = start_n_top
    self.end_n_top = end_n_top
    self.dropout_prob = dropout_prob
    self.start_kernel = self._create("start_logits/dense/kernel", [h, 1], stddev)
    self.start_bias = self._create("start_logits/dense/bias", [1], None)
    self.end_kernel_0 = self._create("end_logits/dense_0/kernel", [2 * h, h], stddev)
    self.end_bias_0 = self._create("end_logits/dense_0/bias", [h], None)
    self.end_gamma = self._create_ones("end_logits/LayerNorm/gamma", [h])
    self.end_beta = self._create("end_logits/LayerNorm/beta", [h], None)
    self.end_kernel_1 = self._create("end_logits/dense_1/kernel", [h, 1], stddev)
    self.end_bias_1 = self._create("end_logits/dense_1/bias", [1], None)
    self.answer_kernel_0 = self._create("answer_class/dense_0/kernel", [2 * h, h], stddev)
    self.answer_bias_0 = self._create("answer_class/dense_0/bias", [h], None)
    self.answer_kernel_1 = self._create("answer_class/dense_1/kernel", [h, 1], stddev)

  def _start_logits(self, sequence_output, p_mask):
    """Masked start logits, float32 [B, S]."""
    logits = dense(tf.cast(sequence_output, tf.float32), self.start_kernel, self.start_bias)
    return _mask_logits(tf.squeeze(logits, -1), p_mask)

  def _end_logits(self, sequence_output, start_features, p_mask):
    """Masked end logits, float32 [B, k, S], for k start features [B, k, H]."""
    hidden_part = dense(sequence_output, self.end_kernel_0[:self.hidden_size])
    start_part = dense(start_features, self.end_kernel_0[self.hidden_size:], self.end_bias_0)
    x = tf.tanh(hidden_part[:, tf.newaxis, :, :] + start_part[:, :, tf.newaxis, :])
    x = layer_norm(tf.cast(x, tf.float32), self.end_gamma, self.end_beta)
    logits = tf.squeeze(dense(x, self.end_kernel_1, self.end_bias_1), -1)
    return _mask_logits(logits, p_mask[:, tf.newaxis, :])

  def _answer_class_logits(self, sequence_output, start_logits, training):
    """cls_logits [B] from [softmax-weighted start feature, hidden state of [CLS]]."""
    hidden = tf.cast(sequence_output, tf.float32)
    start_probs = tf.nn.softmax(start_logits, axis=-1)
    start_feature = tf.einsum("bs,bsh->bh", start_probs, hidden)
    x = tf.concat([start_feature, hidden[:, 0, :]], axis=-1)
    x = tf.tanh(dense(x, self.answer_kernel_0, self.answer_bias_0))
    x = dropout(x, self.dropout_prob, training)
    return tf.squeeze(dense(x, self.answer_kernel_1), -1)

  def train_logits(self, sequence_output: tf.Tensor, p_mask: tf.Tensor, start_positions: tf.Tensor,
                   training: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(start_log_probs [B, S], end_log_probs [B, S] given the true start, cls_logits [B]), float32.

    The end distribution is conditioned on the labelled start (teacher forcing), as in the original.

    Args:
      sequence_output: the encoder's last layer [B, S, H], any float dtype.
      p_mask: [B, S], 1 where an answer cannot be.
      start_positions: the labelled start per window, integer [B] or [B, 1].
      training: a Python bool; True applies dropout to the answer-class layer.
    Returns:
      The inputs of `squad_v2_loss`: start and end log-probabilities and the answer-class logits.
    """
    p_mask = tf.cast(p_mask, tf.float32)
    start_logits = self._start_logits(sequence_output, p_mask)
    start_features = tf.gather(sequence_output, _flat_int32(start_positions), batch_dims=1)
    end_logits = self._end_logits(sequence_output, start_features[:, tf.newaxis, :], p_mask)[:, 0, :]
    cls_logits = self._answer_class_logits(sequence_output, start_logits, training)
    return tf.nn.log_softmax(start_logits, -1), tf.nn.log_softmax(end_logits, -1), cls_logits

  def predict(self, sequence_output: tf.Tensor, p_mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """The beam outputs: start_top_log_probs/start_top_index [B, ks], end_top_log_probs/end_top_index
    [B, ks·ke] (entry i·ke + j belongs to start candidate i) and cls_logits [B].

    ks is `start_n_top` and ke `end_n_top`; dropout is never applied.

    Args:
      sequence_output: the encoder's last layer [B, S, H], any float dtype.
      p_mask: [B, S], 1 where an answer cannot be.
    Returns:
      A dict of those five tensors: log-probabilities float32, indices int32 positions in [0, S).
    """
    p_mask = tf.cast(p_mask, tf.float32)
    start_logits = self._start_logits(sequence_output, p_mask)
    start_top_log_probs, start_top_index = tf.math.top_k(tf.nn.log_softmax(start_logits, -1), k=self.start_n_top)
    start_features = tf.gather(sequence_output, start_top_index, batch_dims=1)
    end_log_probs = tf.nn.log_softmax(self._end_logits(sequence_output, start_features, p_mask), -1)
    end_top_log_probs, end_top_index = tf.math.top_k(end_log_probs, k=self.end_n_top)
    beam_size = self.start_n_top * self.end_n_top
    return {
        "start_top_log_probs": start_top_log_probs,
        "start_top_index": start_top_index,
        "end_top_log_probs": tf.reshape(end_top_log_probs, [-1, beam_size]),
        "end_top_index": tf.reshape(end_top_index, [-1, beam_size]),
        "cls_logits": self._answer_class_logits(sequence_output, start_logits, training=False),
    }


def squad_v2_window_losses(start_log_probs: tf.Tensor, end_log_probs: tf.Tensor, cls_logits: tf.Tensor,
                           start_positions: tf.Tensor, end_positions: tf.Tensor,
                           is_impossible: tf.Tensor) -> tf.Tensor:
  """Per window [B]: 0.5·(start NLL + end NLL) + 0.5·sigmoid cross-entropy of cls_logits vs is_impossible.

  Args:
    start_log_probs: [B, S] from `SquadV2Head.train_logits`.
    end_log_probs: [B, S] from `SquadV2Head.train_logits`.
    cls_logits: [B] from `SquadV2Head.train_logits`.
    start_positions: the labelled start per window, integer [B] or [B, 1] (0, the [CLS] position, when
      the window holds no answer).
    end_positions: the labelled end per window (inclusive), integer [B] or [B, 1].
    is_impossible: 1 when the window holds no answer, else 0, [B] or [B, 1] of any numeric dtype.
  Returns:
    float32 losses [B], one per window.
  """
  def nll(log_probs, positions):
    return -tf.gather(log_probs, _flat_int32(positions), batch_dims=1)
  labels = tf.reshape(tf.cast(is_impossible, tf.float32), [-1])
  answer_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=cls_logits)
  return 0.5 * (nll(start_log_probs, start_positions) + nll(end_log_probs, end_positions)) + 0.5 * answer_class


def squad_v2_loss(start_log_probs: tf.Tensor, end_log_probs: tf.Tensor, cls_logits: tf.Tensor,
                  start_positions: tf.Tensor, end_positions: tf.Tensor, is_impossible: tf.Tensor) -> tf.Tensor:
  """The v2 training loss: the mean of `squad_v2_window_losses` over the batch.

  Takes the arguments of `squad_v2_window_losses` and returns a float32 scalar.
  """
  return tf.reduce_mean(squad_v2_window_losses(start_log_probs, end_log_probs, cls_logits, start_positions,
                                               end_positions, is_impossible))


# ---- GLUE classifier ----

CLASSIFIER_DROPOUT = 0.1  # hard-coded by the original classifier, not taken from a flag or the config


class ClassifierHead(Head):
  """Top-level `output_weights` [num_labels, H] and `output_bias` [num_labels] on the pooled output.

  `num_labels` 1 is the STS-B regression head: its single logit is the predicted score.

  Args:
    config: gives H (`hidden_size`); the weights use the original's fixed stddev 0.02, not the config's.
    num_labels: the number of classes, or 1 for regression.
  """

  def __init__(self, config: AlbertConfig, num_labels: int) -> None:
    super().__init__("classifier_head")
    self.output_weights = self._create("output_weights", [num_labels, config.hidden_size], FIXED_HEAD_STDDEV)
    self.output_bias = self._create("output_bias", [num_labels], None)

  def __call__(self, pooled_output: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Logits float32 [B, num_labels]; dropout 0.1 on the pooled output only when training.

    Args:
      pooled_output: the encoder's pooled output [B, H], any float dtype.
      training: a Python bool; True applies the dropout.
    Returns:
      float32 logits [B, num_labels].
    """
    pooled_output = dropout(tf.cast(pooled_output, tf.float32), CLASSIFIER_DROPOUT, training)
    return dense(pooled_output, tf.transpose(self.output_weights), self.output_bias)


def classification_losses(logits: tf.Tensor, label_ids: tf.Tensor) -> tf.Tensor:
  """Per-example softmax cross-entropy [B] against integer labels.

  Args:
    logits: float32 [B, num_labels] from `ClassifierHead`.
    label_ids: class indices in [0, num_labels), integer [B] or [B, 1].
  Returns:
    float32 losses [B]; the caller averages them.
  """
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_flat_int32(label_ids), logits=logits)


def regression_losses(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Per-example squared error [B] of the single logit (STS-B).

  Args:
    logits: float32 [B, 1] from a `ClassifierHead` with `num_labels` 1.
    labels: the target scores, [B] or [B, 1] of any numeric dtype.
  Returns:
    float32 squared errors [B]; the caller averages them.
  """
  return tf.square(tf.squeeze(logits, -1) - tf.reshape(tf.cast(labels, tf.float32), [-1]))


# ---- RACE multiple choice ----

class MultipleChoiceHead(Head):
  """One score per choice from the pooled output of each (context, choice) pair: top-level
  `output_weights` [1, H] and `output_bias` [1], like the original RACE head.

  Args:
    config: gives H (`hidden_size`); the weights use the original's fixed stddev 0.02, not the config's.
    num_choices: the choices per example (4 for RACE).
    dropout_prob: dropout on the pooled output while training.
  """

  def __init__(self, config: AlbertConfig, num_choices: int = 4, dropout_prob: float = 0.1) -> None:
    super().__init__("multiple_choice_head")
    self.num_choices = num_choices
    self.dropout_prob = dropout_prob
    self.output_weights = self._create("output_weights", [1, config.hidden_size], FIXED_HEAD_STDDEV)
    self.output_bias = self._create("output_bias", [1], None)

  def __call__(self, pooled_output: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Logits float32 [B, num_choices] from pooled outputs [B * num_choices, H] (choices of an example
    adjacent).

    Args:
      pooled_output: [B * num_choices, H], any float dtype; rows i * num_choices to
        (i + 1) * num_choices - 1 are the choices of example i.
      training: a Python bool; True applies dropout.
    Returns:
      float32 scores [B, num_choices]; softmax cross-entropy over them (`classification_losses`)
      trains the head.
    """
    pooled_output = dropout(tf.cast(pooled_output, tf.float32), self.dropout_prob, training)
    logits = dense(pooled_output, tf.transpose(self.output_weights), self.output_bias)
    return tf.reshape(logits, [-1, self.num_choices])
