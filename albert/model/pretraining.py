"""The pretraining graph: the encoder plus the masked-LM and sentence-order heads, and their losses.

Names and math follow the original (docs/compatibility.md §2.8): `cls/predictions/...` transforms the
sequence output at the masked positions and scores it against the tied word embeddings;
`cls/seq_relationship/...` gives two logits from the pooled output (0 = in order, 1 = swapped).

Shapes: B is the batch size, S the sequence length, P the masked positions per sequence, H
`hidden_size`, E `embedding_size`, V `vocab_size`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import tensorflow as tf

from albert.model import variables
from albert.model.encoder import AlbertModel, AlbertOutputs
from albert.model.heads import Head
from albert.model.layers import dense, dims, get_activation, layer_norm

if TYPE_CHECKING:
  from albert.model.config import AlbertConfig


class MaskedLMHead(Head):
  """`cls/predictions`: transform (dense H->E, activation, LayerNorm) and logits tied to the word embeddings.

  Args:
    config: gives the sizes, `hidden_act` and the stddev of fresh weights.
    word_embeddings: the encoder's [V, E] word embedding table (`AlbertModel.word_embeddings`); it is
      shared, not copied, and not among this head's `named_variables`.
  """

  def __init__(self, config: AlbertConfig, word_embeddings: tf.Variable) -> None:
    super().__init__("predictions")
    self._activation = get_activation(config.hidden_act)
    self._create_named(variables.masked_lm_shapes(config), config.initializer_range)
    self._word_embeddings = word_embeddings

  def __call__(self, sequence_output: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """Gathers [B, P] positions of [B, S, H] (batch flattened) and returns float32 logits [B*P, V].

    Args:
      sequence_output: the encoder's last layer [B, S, H], any float dtype.
      positions: integer [B, P], the positions in [0, S) to predict; padded entries (e.g. 0) give
        logits too, which the loss weights ignore.
    Returns:
      float32 logits [B*P, V], row b * P + p for position p of sequence b.
    """
    v, p = self._variables, variables.MLM_SCOPE
    batch_size, seq_length, hidden = dims(sequence_output)
    positions = tf.cast(positions, tf.int32)
    offsets = tf.reshape(tf.range(batch_size, dtype=tf.int32) * seq_length, [-1, 1])
    flat_positions = tf.reshape(positions + offsets, [-1])
    gathered = tf.gather(tf.reshape(sequence_output, [-1, hidden]), flat_positions)
    transformed = self._activation(dense(gathered, v[f"{p}/transform/dense/kernel"], v[f"{p}/transform/dense/bias"]))
    transformed = layer_norm(tf.cast(transformed, tf.float32), v[f"{p}/transform/LayerNorm/gamma"],
                             v[f"{p}/transform/LayerNorm/beta"])
    logits = tf.matmul(transformed, self._word_embeddings, transpose_b=True)
    return tf.nn.bias_add(logits, v[f"{p}/output_bias"])


class SentenceOrderHead(Head):
  """`cls/seq_relationship`: two-way logits from the pooled output (0 = in order, 1 = swapped).

  Args:
    config: gives H (`hidden_size`) and the stddev of fresh weights.
  """

  def __init__(self, config: AlbertConfig) -> None:
    super().__init__("seq_relationship")
    self._create_named(variables.sentence_order_shapes(config), config.initializer_range)

  def __call__(self, pooled_output: tf.Tensor) -> tf.Tensor:
    """float32 logits [B, 2]: column 0 scores "in order", column 1 "swapped".

    Args:
      pooled_output: the encoder's pooled output [B, H], any float dtype.
    Returns:
      float32 logits [B, 2].
    """
    p = variables.SOP_SCOPE
    logits = tf.matmul(tf.cast(pooled_output, tf.float32), self._variables[f"{p}/output_weights"], transpose_b=True)
    return tf.nn.bias_add(logits, self._variables[f"{p}/output_bias"])


def masked_lm_loss(logits: tf.Tensor, label_ids: tf.Tensor, label_weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Σ w·(−log p(label)) / (Σ w + 1e-5); returns (loss, per_example_loss [B*P]).

  Args:
    logits: [B*P, V] from `MaskedLMHead`.
    label_ids: the original piece ids at the masked positions, integer [B, P].
    label_weights: [B, P], 1.0 for real predictions and 0.0 for padding entries.
  Returns:
    The weighted mean loss (a float32 scalar) and the unweighted per-position losses [B*P].
  """
  label_ids = tf.reshape(tf.cast(label_ids, tf.int32), [-1])
  label_weights = tf.reshape(tf.cast(label_weights, tf.float32), [-1])
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=label_ids, logits=tf.cast(logits, tf.float32))
  loss = tf.reduce_sum(label_weights * per_example_loss) / (tf.reduce_sum(label_weights) + 1e-5)
  return loss, per_example_loss


def sentence_order_loss(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mean of −log p(label) over the batch; returns (loss, per_example_loss [B]).

  Args:
    logits: [B, 2] from `SentenceOrderHead`.
    labels: 0 (segments in order) or 1 (swapped), integer [B] or [B, 1].
  Returns:
    The mean loss (a float32 scalar) and the per-example losses [B].
  """
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
  return tf.reduce_mean(per_example_loss), per_example_loss


class PretrainingOutputs(NamedTuple):
  """What one `AlbertPretrainingModel` call returns.

  Args:
    masked_lm_logits: float32 [B*P, V], the MLM head's logits at the masked positions.
    sentence_order_logits: float32 [B, 2], the sentence-order head's logits.
    model_outputs: the encoder's outputs, in the compute dtype.
  """
  masked_lm_logits: tf.Tensor       # float32 [B*P, V]
  sentence_order_logits: tf.Tensor  # float32 [B, 2]
  model_outputs: AlbertOutputs


class AlbertPretrainingModel(tf.Module):
  """The pretraining graph: AlbertModel (`bert/...`) plus the MLM and SOP heads (`cls/...`).

  Args:
    config: the AlbertConfig.
    compute_dtype: the activation dtype (variables stay float32): tf.float32, tf.bfloat16 or
      tf.float16, or one of their names.
  """

  def __init__(self, config: AlbertConfig, compute_dtype: tf.DType | str = tf.float32) -> None:
    super().__init__(name="albert_pretraining")
    self.model = AlbertModel(config, compute_dtype)
    self.masked_lm = MaskedLMHead(config, self.model.word_embeddings)
    self.sentence_order = SentenceOrderHead(config)

  def named_variables(self) -> dict[str, tf.Variable]:
    """Every variable of the graph keyed by its original checkpoint name.

    Returns:
      A new dict: the encoder's variables (`bert/...`), then the MLM and SOP heads' (`cls/...`).
    """
    return {**self.model.named_variables(), **self.masked_lm.named_variables(),
            **self.sentence_order.named_variables()}

  def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor | None, token_type_ids: tf.Tensor | None,
               masked_lm_positions: tf.Tensor, training: bool = False) -> PretrainingOutputs:
    """PretrainingOutputs for int ids/mask/segments [B, S] and masked positions [B, P].

    Args:
      input_ids: piece ids [B, S], with [MASK] (or replacement) pieces at the masked positions.
      input_mask: [B, S], 1 for real pieces and 0 for padding; None means no padding.
      token_type_ids: segment ids [B, S]; None means all 0.
      masked_lm_positions: integer [B, P], the positions the MLM head predicts.
      training: a Python bool; True applies dropout.
    Returns:
      The logits of both heads and the encoder's outputs.
    """
    outputs = self.model(input_ids, input_mask, token_type_ids, training=training)
    return PretrainingOutputs(masked_lm_logits=self.masked_lm(outputs.sequence_output, masked_lm_positions),
                              sentence_order_logits=self.sentence_order(outputs.pooled_output),
                              model_outputs=outputs)

  def compute_loss(self, outputs: PretrainingOutputs, masked_lm_ids: tf.Tensor, masked_lm_weights: tf.Tensor,
                   sentence_order_labels: tf.Tensor) -> tf.Tensor:
    """Total pretraining loss = MLM loss + SOP loss (equal weights).

    Args:
      outputs: what `__call__` returned.
      masked_lm_ids: the original piece ids at the masked positions, integer [B, P].
      masked_lm_weights: [B, P], 1.0 for real predictions and 0.0 for padding entries.
      sentence_order_labels: 0 (in order) or 1 (swapped), integer [B] or [B, 1].
    Returns:
      A float32 scalar (see `masked_lm_loss` and `sentence_order_loss`).
    """
    mlm, _ = masked_lm_loss(outputs.masked_lm_logits, masked_lm_ids, masked_lm_weights)
    sop, _ = sentence_order_loss(outputs.sentence_order_logits, sentence_order_labels)
    return mlm + sop
