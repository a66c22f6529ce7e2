"""The ALBERT encoder: factorized embeddings, a parameter-shared post-LN transformer, and the pooler.

A plain `tf.Module` whose float32 variables are named exactly like the original checkpoint variables
(`albert.model.variables`), so checkpoints of the original release load by name. Computation runs in a
configurable compute dtype (float32, bfloat16, float16): weights are cast once per call, LayerNorm and
softmax run in float32. Activations are kept 2-D ([batch * seq, width]) between the dense layers so
every projection is one plain matmul.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import tensorflow as tf

from albert.core import precision
from albert.core.errors import UserError
from albert.model import variables
from albert.model.layers import dense, dims, dropout, get_activation, layer_norm, variable_for
from albert.model.recompute import recompute_layers_in_backward_pass

if TYPE_CHECKING:
  from albert.model.config import AlbertConfig

ATTENTION_MASK_BIAS = -10000.0


class AlbertOutputs(NamedTuple):
  """What one encoder call returns, in the compute dtype.

  B is the batch size, S the sequence length, H `hidden_size` and E `embedding_size`.

  Args:
    sequence_output: the last layer's hidden states [B, S, H].
    pooled_output: tanh(dense(hidden state of the first, [CLS], position)) [B, H], the input of
      sentence-level heads.
    all_encoder_layers: the output of every block in order, L * inner_group_num tensors [B, S, H];
      the last one is `sequence_output`.
    embedding_output: summed word, token-type and position embeddings after LayerNorm and dropout
      [B, S, E], before the E->H projection.
    word_embedding_output: the word embeddings alone [B, S, E].
  """
  sequence_output: tf.Tensor        # [B, S, H]
  pooled_output: tf.Tensor          # [B, H]
  all_encoder_layers: tuple         # L*K tensors [B, S, H]
  embedding_output: tf.Tensor       # [B, S, E]
  word_embedding_output: tf.Tensor  # [B, S, E]


class _BlockWeights(NamedTuple):
  """One inner group's weights, cast to the compute dtype for one forward pass."""
  qkv_kernel: tf.Tensor  # [H, 3H]: query (pre-scaled by 1/sqrt(D)), key, value
  qkv_bias: tf.Tensor    # [3H]
  output_kernel: tf.Tensor
  output_bias: tf.Tensor
  attention_gamma: tf.Tensor
  attention_beta: tf.Tensor
  intermediate_kernel: tf.Tensor
  intermediate_bias: tf.Tensor
  ffn_output_kernel: tf.Tensor
  ffn_output_bias: tf.Tensor
  ffn_gamma: tf.Tensor
  ffn_beta: tf.Tensor


class _Block:
  """The variables of one `inner_group_k`: post-LN self-attention + FFN, stored as the original 2-D kernels."""

  def __init__(self, prefix, config):
    self.prefix = prefix
    self.variables = {suffix: variable_for(f"{prefix}/{suffix}", shape, config.initializer_range)
                      for suffix, shape in variables.block_shapes(config).items()}

  def named_variables(self):
    return {f"{self.prefix}/{suffix}": v for suffix, v in self.variables.items()}

  def weights(self, dtype, query_scale):
    """Casts (and fuses q/k/v) once per forward pass; shared layers then reuse the result."""
    v = self.variables
    attention = "attention_1/self/"
    cast = lambda name: tf.cast(v[name], dtype)
    qkv_kernel = tf.concat([v[attention + "query/kernel"] * query_scale, v[attention + "key/kernel"],
                            v[attention + "value/kernel"]], axis=1)
    qkv_bias = tf.concat([v[attention + "query/bias"] * query_scale, v[attention + "key/bias"],
                          v[attention + "value/bias"]], axis=0)
    return _BlockWeights(
        qkv_kernel=tf.cast(qkv_kernel, dtype), qkv_bias=tf.cast(qkv_bias, dtype),
        output_kernel=cast("attention_1/output/dense/kernel"),
        output_bias=cast("attention_1/output/dense/bias"),
        attention_gamma=v["LayerNorm/gamma"], attention_beta=v["LayerNorm/beta"],
        intermediate_kernel=cast("ffn_1/intermediate/dense/kernel"),
        intermediate_bias=cast("ffn_1/intermediate/dense/bias"),
        ffn_output_kernel=cast("ffn_1/intermediate/output/dense/kernel"),
        ffn_output_bias=cast("ffn_1/intermediate/output/dense/bias"),
        ffn_gamma=v["LayerNorm_1/gamma"], ffn_beta=v["LayerNorm_1/beta"])


class AlbertModel(tf.Module):
  """ALBERT: factorized embeddings, a parameter-shared post-LN transformer encoder, and the pooler.

  `compute_dtype` sets the dtype of activations and outputs; variables stay float32.
  Variables are created (with the original's initializers) when the model is built, so build it under
  the distribution strategy's scope and load a checkpoint into `named_variables()` afterwards.

  Args:
    config: the hyper-parameters; validated here, an inconsistent config is a UserError.
    compute_dtype: tf.float32, tf.bfloat16 or tf.float16, or one of their names.
    name: the top-level variable scope; "bert" matches the original checkpoints.

  Attributes:
    recompute_grad: when True, training passes keep only each block's input and recompute its
      activations in the backward pass (`albert.model.recompute`): activation memory falls from one
      set per layer to about one, for roughly one extra forward pass, and a shared block's weight
      gradients are summed as each layer produces them. Dropout then draws its masks from seeds
      fixed before the block, so the recomputed forward pass drops the same entries.
  """

  def __init__(self, config: AlbertConfig, compute_dtype: tf.DType | str = tf.float32,
               name: str = variables.ENCODER_SCOPE) -> None:
    super().__init__(name=name)
    config.validate()
    self.config = config
    self.compute_dtype = precision.compute_dtype(compute_dtype)
    self.recompute_grad = False
    self._activation = get_activation(config.hidden_act)
    self._prefix = name
    stddev = config.initializer_range
    # Created in the original's order (embeddings, blocks, pooler), so seeded runs draw the same values.
    self._variables = {n: variable_for(n, shape, stddev)
                       for n, shape in variables.embedding_shapes(config, name).items()}
    self._blocks = [[_Block(variables.block_prefix(g, k, name), config) for k in range(config.inner_group_num)]
                    for g in range(config.num_hidden_groups)]
    for group in self._blocks:
      for block in group:
        self._variables.update(block.named_variables())
    self._variables.update({n: variable_for(n, shape, stddev)
                            for n, shape in variables.pooler_shapes(config, name).items()})

  @property
  def word_embeddings(self) -> tf.Variable:
    """The [V, E] word embedding table (tied to the MLM output layer)."""
    return self._variables[f"{self._prefix}/embeddings/word_embeddings"]

  def named_variables(self) -> dict[str, tf.Variable]:
    """All variables keyed by their original checkpoint name (no `:0`).

    Returns:
      A new dict in creation order (embeddings, blocks, pooler); the variables themselves are shared.
    """
    return dict(self._variables)

  def _var(self, suffix):
    return self._variables[f"{self._prefix}/{suffix}"]

  def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor | None = None,
               token_type_ids: tf.Tensor | None = None, training: bool = False) -> AlbertOutputs:
    """Runs the encoder on int32/int64 ids [B, S]; `training` (a Python bool) enables dropout.

    Args:
      input_ids: piece ids [B, S], int32 or int64; S may not exceed `max_position_embeddings`.
      input_mask: [B, S], 1 for real pieces and 0 for padding, which no position attends to; None
        lets every position attend to every other.
      token_type_ids: segment ids [B, S] (0 for the first text, 1 for the second); None means all 0.
      training: a Python bool; True applies the config's dropout rates.
    Returns:
      AlbertOutputs in the model's compute dtype.
    """
    config, dtype = self.config, self.compute_dtype
    input_ids = tf.cast(input_ids, tf.int32)
    batch_size, seq_length = dims(input_ids)
    seq_length = self._checked_sequence_length(seq_length)

    word_embedding_output, embedding_output = self._embed(input_ids, token_type_ids, seq_length, training)
    x = tf.reshape(embedding_output, [-1, config.embedding_size])
    if config.embedding_size != config.hidden_size:
      x = dense(x, self._var("encoder/embedding_hidden_mapping_in/kernel"),
                self._var("encoder/embedding_hidden_mapping_in/bias"))

    mask_bias = None
    if input_mask is not None:
      mask = tf.cast(tf.reshape(input_mask, [batch_size, 1, 1, seq_length]), tf.float32)
      mask_bias = (1.0 - mask) * ATTENTION_MASK_BIAS

    query_scale = 1.0 / math.sqrt(config.head_size)
    weights = [[block.weights(dtype, query_scale) for block in group] for group in self._blocks]
    if training and self.recompute_grad:
      outputs = self._recomputed_layers(x, weights, mask_bias, batch_size, seq_length, training)
    else:
      outputs = []
      for layer_index in range(config.num_hidden_layers):
        with tf.name_scope(f"layer_{layer_index}"):
          for block_weights in weights[config.group_of_layer(layer_index)]:
            x = self._block(x, block_weights, mask_bias, batch_size, seq_length, training)
            outputs.append(x)
    all_layers = [tf.reshape(output, [batch_size, seq_length, config.hidden_size]) for output in outputs]

    sequence_output = all_layers[-1]
    first_token = sequence_output[:, 0, :]
    pooled_output = tf.tanh(dense(first_token, self._var("pooler/dense/kernel"), self._var("pooler/dense/bias")))
    return AlbertOutputs(sequence_output=sequence_output, pooled_output=pooled_output,
                         all_encoder_layers=tuple(all_layers), embedding_output=embedding_output,
                         word_embedding_output=word_embedding_output)

  def _checked_sequence_length(self, seq_length):
    """Rejects sequences longer than the position table; a dynamic length is checked before any use."""
    limit = self.config.max_position_embeddings
    if isinstance(seq_length, int):
      if seq_length > limit:
        raise UserError(f"sequence length {seq_length} exceeds max_position_embeddings {limit} of the "
                        "albert config; lower --max_seq_length")
      return seq_length
    check = tf.debugging.assert_less_equal(
        seq_length, limit, message=f"sequence length exceeds max_position_embeddings {limit}")
    with tf.control_dependencies([check]):
      return tf.identity(seq_length)

  def _embed(self, input_ids, token_type_ids, seq_length, training):
    """word + token-type + position embeddings, LayerNorm (float32), dropout; returns (word, embedding)."""
    words = tf.gather(self._var("embeddings/word_embeddings"), input_ids)
    token_types = self._var("embeddings/token_type_embeddings")
    if token_type_ids is None:
      summed = words + token_types[0]
    else:
      summed = words + tf.gather(token_types, tf.cast(token_type_ids, tf.int32))
    summed += self._var("embeddings/position_embeddings")[:seq_length]
    normalized = layer_norm(summed, self._var("embeddings/LayerNorm/gamma"), self._var("embeddings/LayerNorm/beta"))
    embedding_output = dropout(tf.cast(normalized, self.compute_dtype), self.config.hidden_dropout_prob, training)
    return tf.cast(words, self.compute_dtype), embedding_output

  def _block(self, x, w, mask_bias, batch_size, seq_length, training, seed=None):
    """One post-LN block on 2-D activations [B*S, H]; `seed` ([2] int32) makes its dropout stateless."""
    config = self.config
    context = self._attention(x, w, mask_bias, batch_size, seq_length, training, seed)
    projected = dropout(tf.nn.bias_add(tf.matmul(context, w.output_kernel), w.output_bias),
                        config.hidden_dropout_prob, training, _offset(seed, 1))
    attended = layer_norm(projected + x, w.attention_gamma, w.attention_beta)
    inner = self._activation(tf.nn.bias_add(tf.matmul(attended, w.intermediate_kernel), w.intermediate_bias))
    ffn = dropout(tf.nn.bias_add(tf.matmul(inner, w.ffn_output_kernel), w.ffn_output_bias),
                  config.hidden_dropout_prob, training, _offset(seed, 2))
    return layer_norm(ffn + attended, w.ffn_gamma, w.ffn_beta)

  def _recomputed_layers(self, x, weights, mask_bias, batch_size, seq_length, training):
    """Every layer's `_block`, recomputed in the backward pass (`albert.model.recompute`); returns each step's
    output. The weights and the mask enter as arguments (not captured); each step's dropout seed is drawn
    here, so the recomputed pass drops the same entries."""
    config, inner = self.config, self.config.inner_group_num
    # Block k of group g is distinct block g * inner + k; every layer runs its group's blocks in order.
    schedule = [config.group_of_layer(layer) * inner + k for layer in range(config.num_hidden_layers)
                for k in range(inner)]
    mask = tf.zeros([], x.dtype) if mask_bias is None else mask_bias
    extras = [(mask, tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)) for _ in schedule]

    def block(x, w, mask, seed):
      return self._block(x, _BlockWeights(*w), None if mask_bias is None else mask, batch_size, seq_length,
                         training, seed)

    return recompute_layers_in_backward_pass(block, x, [w for group in weights for w in group], schedule, extras)

  def _attention(self, x, w, mask_bias, batch_size, seq_length, training, seed=None):
    """Multi-head self-attention; returns the per-head contexts merged back to [B*S, H]."""
    config = self.config
    heads, head_size = config.num_attention_heads, config.head_size
    qkv = tf.nn.bias_add(tf.matmul(x, w.qkv_kernel), w.qkv_bias)
    qkv = tf.reshape(qkv, [batch_size, seq_length, 3, heads, head_size])
    query, key, value = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]), axis=0)  # each [B, N, S, D]
    scores = tf.matmul(query, key, transpose_b=True)  # [B, N, S_from, S_to], already scaled
    if scores.dtype != tf.float32:
      scores = tf.cast(scores, tf.float32)
    if mask_bias is not None:
      scores += mask_bias
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
    probs = dropout(probs, config.attention_probs_dropout_prob, training, seed)
    context = tf.matmul(probs, value)  # [B, N, S, D]
    context = tf.transpose(context, [0, 2, 1, 3])
    return tf.reshape(context, [-1, config.hidden_size])


def _offset(seed, k):
  """The k-th of a block's dropout seeds (None stays None: stateful dropout)."""
  return None if seed is None else seed + k
