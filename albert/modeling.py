"""The ALBERT encoder and its pretraining heads, as plain `tf.Module`s with the original variable names.

Every variable is a float32 `tf.Variable` named exactly like the original checkpoint variable (see
`named_variables()`), so checkpoints of the original release load by name. Computation runs in a
configurable compute dtype (float32, bfloat16, float16): weights are cast once per call, LayerNorm and
softmax run in float32. Activations are kept 2-D ([batch * seq, width]) between the dense layers so
every projection is one plain matmul.
"""

import math
from typing import NamedTuple

import tensorflow as tf

from albert.errors import UserError

COMPUTE_DTYPES = (tf.float32, tf.bfloat16, tf.float16)
LAYER_NORM_EPSILON = 1e-12
ATTENTION_MASK_BIAS = -10000.0


# ---- shared building blocks (also used by the task heads) ----

def create_variable(name, shape, stddev):
  """A float32 variable: truncated normal with `stddev` (re-drawn beyond 2 sigma), zeros if None."""
  shape = [int(d) for d in shape]
  if stddev is None:
    initial_value = lambda: tf.zeros(shape, tf.float32)
  else:
    initial_value = lambda: tf.random.truncated_normal(shape, stddev=stddev, dtype=tf.float32)
  return tf.Variable(initial_value, dtype=tf.float32, name=name)


def ones_variable(name, shape):
  """A float32 variable initialized to ones (LayerNorm gamma)."""
  shape = [int(d) for d in shape]
  return tf.Variable(lambda: tf.ones(shape, tf.float32), dtype=tf.float32, name=name)


def dense(x, kernel, bias=None):
  """x @ kernel (+ bias) over the last axis, with the float32 weights cast to x's dtype."""
  kernel = tf.cast(kernel, x.dtype)
  if x.shape.rank == 2:
    y = tf.matmul(x, kernel)
  else:
    leading = tf.shape(x)[:-1]
    y = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel)
    y = tf.reshape(y, tf.concat([leading, [kernel.shape[1]]], axis=0))
  if bias is not None:
    y = tf.nn.bias_add(y, tf.cast(bias, x.dtype))
  return y


def layer_norm(x, gamma, beta, epsilon=LAYER_NORM_EPSILON):
  """LayerNorm over the last axis, computed in float32 (safe for bfloat16/float16 inputs)."""
  x32 = tf.cast(x, tf.float32)
  mean = tf.reduce_mean(x32, axis=-1, keepdims=True)
  centered = x32 - mean
  variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
  y = centered * tf.math.rsqrt(variance + epsilon) * tf.cast(gamma, tf.float32) + tf.cast(beta, tf.float32)
  return tf.cast(y, x.dtype)


_GELU_LINEAR = 2.0 * math.sqrt(2.0 / math.pi)
_GELU_CUBIC = _GELU_LINEAR * 0.044715


def gelu(x):
  """GELU, tanh approximation (the original's `gelu`; "gelu_new" in some ports).

  0.5 x (1 + tanh(z)) is written as x sigmoid(2z): fewer elementwise passes than the textbook form,
  and no pow(x, 3), which eager mode runs as a slow generic power.
  """
  return x * tf.sigmoid(x * (_GELU_LINEAR + _GELU_CUBIC * tf.square(x)))


def _linear(x):
  return x


_ACTIVATIONS = {"gelu": gelu, "relu": tf.nn.relu, "tanh": tf.tanh, "linear": _linear, "": _linear}


def get_activation(name):
  """The activation function for a config `hidden_act` (case-insensitive); callables pass through."""
  if callable(name):
    return name
  key = (name or "").lower()
  if key not in _ACTIVATIONS:
    raise UserError(f"hidden_act {name!r} is not one of gelu, relu, tanh, linear")
  return _ACTIVATIONS[key]


def dropout(x, rate, training):
  """Dropout only when training with a positive rate; identity otherwise."""
  if training and rate > 0.0:
    return tf.nn.dropout(x, rate=rate)
  return x


def _compute_dtype(dtype):
  dtype = tf.as_dtype(dtype)
  if dtype not in COMPUTE_DTYPES:
    raise UserError(f"compute dtype {dtype.name} is not one of float32, bfloat16, float16")
  return dtype


def _dims(x):
  """Static dimensions where known, dynamic scalars otherwise (keeps XLA shapes static)."""
  static = x.shape.as_list()
  if None not in static:
    return static
  dynamic = tf.shape(x)
  return [d if d is not None else dynamic[i] for i, d in enumerate(static)]


# ---- the encoder ----

class AlbertOutputs(NamedTuple):
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
    h, i, r = config.hidden_size, config.intermediate_size, config.initializer_range
    self.variables = {}

    def add(suffix, shape, stddev):
      self.variables[suffix] = create_variable(f"{prefix}/{suffix}", shape, stddev)

    for part in ("query", "key", "value"):
      add(f"attention_1/self/{part}/kernel", [h, h], r)
      add(f"attention_1/self/{part}/bias", [h], None)
    add("attention_1/output/dense/kernel", [h, h], r)
    add("attention_1/output/dense/bias", [h], None)
    self.variables["LayerNorm/gamma"] = ones_variable(f"{prefix}/LayerNorm/gamma", [h])
    add("LayerNorm/beta", [h], None)
    add("ffn_1/intermediate/dense/kernel", [h, i], r)
    add("ffn_1/intermediate/dense/bias", [i], None)
    add("ffn_1/intermediate/output/dense/kernel", [i, h], r)
    add("ffn_1/intermediate/output/dense/bias", [h], None)
    self.variables["LayerNorm_1/gamma"] = ones_variable(f"{prefix}/LayerNorm_1/gamma", [h])
    add("LayerNorm_1/beta", [h], None)
    self.prefix = prefix

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
  """

  def __init__(self, config, compute_dtype=tf.float32, name="bert"):
    super().__init__(name=name)
    config.validate()
    self.config = config
    self.compute_dtype = _compute_dtype(compute_dtype)
    self._activation = get_activation(config.hidden_act)
    e, h, r = config.embedding_size, config.hidden_size, config.initializer_range
    self._variables = {}

    def add(suffix, shape, stddev):
      self._variables[f"{name}/{suffix}"] = create_variable(f"{name}/{suffix}", shape, stddev)

    add("embeddings/word_embeddings", [config.vocab_size, e], r)
    add("embeddings/token_type_embeddings", [config.type_vocab_size, e], r)
    add("embeddings/position_embeddings", [config.max_position_embeddings, e], r)
    self._variables[f"{name}/embeddings/LayerNorm/gamma"] = ones_variable(
        f"{name}/embeddings/LayerNorm/gamma", [e])
    add("embeddings/LayerNorm/beta", [e], None)
    if e != h:
      add("encoder/embedding_hidden_mapping_in/kernel", [e, h], r)
      add("encoder/embedding_hidden_mapping_in/bias", [h], None)
    self._blocks = [[_Block(f"{name}/encoder/transformer/group_{g}/inner_group_{k}", config)
                     for k in range(config.inner_group_num)]
                    for g in range(config.num_hidden_groups)]
    for group in self._blocks:
      for block in group:
        self._variables.update(block.named_variables())
    add("pooler/dense/kernel", [h, h], r)
    add("pooler/dense/bias", [h], None)
    self._prefix = name

  @property
  def word_embeddings(self):
    """The [V, E] word embedding table (tied to the MLM output layer)."""
    return self._variables[f"{self._prefix}/embeddings/word_embeddings"]

  def named_variables(self):
    """All variables keyed by their original checkpoint name (no `:0`)."""
    return dict(self._variables)

  def _var(self, suffix):
    return self._variables[f"{self._prefix}/{suffix}"]

  def __call__(self, input_ids, input_mask=None, token_type_ids=None, training=False):
    """Runs the encoder on int32/int64 ids [B, S]; `training` (a Python bool) enables dropout."""
    config, dtype = self.config, self.compute_dtype
    input_ids = tf.cast(input_ids, tf.int32)
    batch_size, seq_length = _dims(input_ids)
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
    all_layers = []
    for layer_index in range(config.num_hidden_layers):
      with tf.name_scope(f"layer_{layer_index}"):
        for block_weights in weights[config.group_of_layer(layer_index)]:
          x = self._block(x, block_weights, mask_bias, batch_size, seq_length, training)
          all_layers.append(tf.reshape(x, [batch_size, seq_length, config.hidden_size]))

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

  def _block(self, x, w, mask_bias, batch_size, seq_length, training):
    """One post-LN block on 2-D activations [B*S, H]."""
    config = self.config
    context = self._attention(x, w, mask_bias, batch_size, seq_length, training)
    projected = dropout(tf.nn.bias_add(tf.matmul(context, w.output_kernel), w.output_bias),
                        config.hidden_dropout_prob, training)
    attended = layer_norm(projected + x, w.attention_gamma, w.attention_beta)
    inner = self._activation(tf.nn.bias_add(tf.matmul(attended, w.intermediate_kernel), w.intermediate_bias))
    ffn = dropout(tf.nn.bias_add(tf.matmul(inner, w.ffn_output_kernel), w.ffn_output_bias),
                  config.hidden_dropout_prob, training)
    return layer_norm(ffn + attended, w.ffn_gamma, w.ffn_beta)

  def _attention(self, x, w, mask_bias, batch_size, seq_length, training):
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
    probs = dropout(probs, config.attention_probs_dropout_prob, training)
    context = tf.matmul(probs, value)  # [B, N, S, D]
    context = tf.transpose(context, [0, 2, 1, 3])
    return tf.reshape(context, [-1, config.hidden_size])


# ---- pretraining heads and losses ----

class MaskedLMHead(tf.Module):
  """`cls/predictions`: transform (dense H->E, activation, LayerNorm) and logits tied to the word embeddings."""

  def __init__(self, config, word_embeddings, name="cls/predictions"):
    super().__init__(name="predictions")
    e, r = config.embedding_size, config.initializer_range
    self._activation = get_activation(config.hidden_act)
    self._variables = {
        f"{name}/transform/dense/kernel": create_variable(f"{name}/transform/dense/kernel",
                                                          [config.hidden_size, e], r),
        f"{name}/transform/dense/bias": create_variable(f"{name}/transform/dense/bias", [e], None),
        f"{name}/transform/LayerNorm/gamma": ones_variable(f"{name}/transform/LayerNorm/gamma", [e]),
        f"{name}/transform/LayerNorm/beta": create_variable(f"{name}/transform/LayerNorm/beta", [e], None),
        f"{name}/output_bias": create_variable(f"{name}/output_bias", [config.vocab_size], None),
    }
    self._prefix = name
    self._word_embeddings = word_embeddings

  def named_variables(self):
    """The head's own variables (the tied word embeddings belong to the model)."""
    return dict(self._variables)

  def __call__(self, sequence_output, positions):
    """Gathers [B, P] positions of [B, S, H] (batch flattened) and returns float32 logits [B*P, V]."""
    v, p = self._variables, self._prefix
    batch_size, seq_length, hidden = _dims(sequence_output)
    positions = tf.cast(positions, tf.int32)
    offsets = tf.reshape(tf.range(batch_size, dtype=tf.int32) * seq_length, [-1, 1])
    flat_positions = tf.reshape(positions + offsets, [-1])
    gathered = tf.gather(tf.reshape(sequence_output, [-1, hidden]), flat_positions)
    transformed = self._activation(dense(gathered, v[f"{p}/transform/dense/kernel"], v[f"{p}/transform/dense/bias"]))
    transformed = layer_norm(tf.cast(transformed, tf.float32), v[f"{p}/transform/LayerNorm/gamma"],
                             v[f"{p}/transform/LayerNorm/beta"])
    logits = tf.matmul(transformed, self._word_embeddings, transpose_b=True)
    return tf.nn.bias_add(logits, v[f"{p}/output_bias"])


class SentenceOrderHead(tf.Module):
  """`cls/seq_relationship`: two-way logits from the pooled output (0 = in order, 1 = swapped)."""

  def __init__(self, config, name="cls/seq_relationship"):
    super().__init__(name="seq_relationship")
    self._weights_name, self._bias_name = f"{name}/output_weights", f"{name}/output_bias"
    self._variables = {
        self._weights_name: create_variable(self._weights_name, [2, config.hidden_size], config.initializer_range),
        self._bias_name: create_variable(self._bias_name, [2], None),
    }

  def named_variables(self):
    return dict(self._variables)

  def __call__(self, pooled_output):
    """float32 logits [B, 2]."""
    logits = tf.matmul(tf.cast(pooled_output, tf.float32), self._variables[self._weights_name], transpose_b=True)
    return tf.nn.bias_add(logits, self._variables[self._bias_name])


def masked_lm_loss(logits, label_ids, label_weights):
  """Σ w·(−log p(label)) / (Σ w + 1e-5); returns (loss, per_example_loss [B*P])."""
  label_ids = tf.reshape(tf.cast(label_ids, tf.int32), [-1])
  label_weights = tf.reshape(tf.cast(label_weights, tf.float32), [-1])
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=label_ids, logits=tf.cast(logits, tf.float32))
  loss = tf.reduce_sum(label_weights * per_example_loss) / (tf.reduce_sum(label_weights) + 1e-5)
  return loss, per_example_loss


def sentence_order_loss(logits, labels):
  """Mean of −log p(label) over the batch; returns (loss, per_example_loss [B])."""
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
  return tf.reduce_mean(per_example_loss), per_example_loss


class PretrainingOutputs(NamedTuple):
  masked_lm_logits: tf.Tensor       # float32 [B*P, V]
  sentence_order_logits: tf.Tensor  # float32 [B, 2]
  model_outputs: AlbertOutputs


class AlbertPretrainingModel(tf.Module):
  """The pretraining graph: AlbertModel (`bert/...`) plus the MLM and SOP heads (`cls/...`)."""

  def __init__(self, config, compute_dtype=tf.float32):
    super().__init__(name="albert_pretraining")
    self.model = AlbertModel(config, compute_dtype)
    self.masked_lm = MaskedLMHead(config, self.model.word_embeddings)
    self.sentence_order = SentenceOrderHead(config)

  def named_variables(self):
    named = self.model.named_variables()
    named.update(self.masked_lm.named_variables())
    named.update(self.sentence_order.named_variables())
    return named

  def __call__(self, input_ids, input_mask, token_type_ids, masked_lm_positions, training=False):
    outputs = self.model(input_ids, input_mask, token_type_ids, training=training)
    return PretrainingOutputs(masked_lm_logits=self.masked_lm(outputs.sequence_output, masked_lm_positions),
                              sentence_order_logits=self.sentence_order(outputs.pooled_output),
                              model_outputs=outputs)

  def compute_loss(self, outputs, masked_lm_ids, masked_lm_weights, sentence_order_labels):
    """Total pretraining loss = MLM loss + SOP loss (equal weights)."""
    mlm, _ = masked_lm_loss(outputs.masked_lm_logits, masked_lm_ids, masked_lm_weights)
    sop, _ = sentence_order_loss(outputs.sentence_order_logits, sentence_order_labels)
    return mlm + sop
