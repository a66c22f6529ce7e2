"""AlbertModel and the pretraining heads against a plain-numpy re-implementation written here."""

import numpy as np
import pytest
import tensorflow as tf

from albert import modeling
from albert.core.errors import UserError
from albert.model.config import AlbertConfig


def make_config(**changes):
  base = dict(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
              num_attention_heads=4, intermediate_size=64, inner_group_num=1, hidden_act="gelu",
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64,
              type_vocab_size=2, initializer_range=0.02)
  base.update(changes)
  return AlbertConfig(**base)


def randomize(named_variables, seed):
  """Gives every variable random values (gammas around 1) so each one shows in the outputs."""
  rng = np.random.default_rng(seed)
  for name, variable in sorted(named_variables.items()):
    values = rng.normal(0.0, 0.2, variable.shape)
    if name.endswith("gamma"):
      values = 1.0 + 0.5 * values
    variable.assign(values.astype(np.float32))


def values_of(named_variables):
  return {name: v.numpy().astype(np.float64) for name, v in named_variables.items()}


def random_inputs(config, batch_size=3, seq_length=12, seed=0):
  """Ids, a mask with padding (example 1 has 5 real tokens, example 2 has 9) and mixed token types."""
  rng = np.random.default_rng(seed)
  input_ids = rng.integers(0, config.vocab_size, (batch_size, seq_length)).astype(np.int32)
  input_mask = np.ones((batch_size, seq_length), np.int32)
  input_mask[1, 5:] = 0
  input_mask[2, 9:] = 0
  token_type_ids = np.zeros((batch_size, seq_length), np.int32)
  token_type_ids[:, seq_length // 2:] = 1
  positions = rng.integers(0, seq_length, (batch_size, 4)).astype(np.int32)
  return input_ids, input_mask, token_type_ids, positions


# ---- the numpy reference (float64) ----

def np_layer_norm(x, gamma, beta):
  mean = x.mean(axis=-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def np_gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


NP_ACTIVATIONS = {"gelu": np_gelu, "relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}


def np_softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def np_attention(x, w, p, mask, heads):
  """Per-head loop: head n uses the stored kernel columns n*D .. n*D+D-1."""
  batch_size, seq_length, hidden = x.shape
  head_size = hidden // heads
  q = x @ w[p + "attention_1/self/query/kernel"] + w[p + "attention_1/self/query/bias"]
  k = x @ w[p + "attention_1/self/key/kernel"] + w[p + "attention_1/self/key/bias"]
  v = x @ w[p + "attention_1/self/value/kernel"] + w[p + "attention_1/self/value/bias"]
  context = np.zeros_like(x)
  for b in range(batch_size):
    for n in range(heads):
      cols = slice(n * head_size, (n + 1) * head_size)
      scores = q[b, :, cols] @ k[b, :, cols].T / np.sqrt(head_size)
      scores = scores + (1.0 - mask[b][None, :]) * -10000.0
      context[b, :, cols] = np_softmax(scores) @ v[b, :, cols]
  return context @ w[p + "attention_1/output/dense/kernel"] + w[p + "attention_1/output/dense/bias"]


def np_block(x, w, p, mask, config):
  act = NP_ACTIVATIONS[config.hidden_act]
  a = np_layer_norm(np_attention(x, w, p, mask, config.num_attention_heads) + x,
                    w[p + "LayerNorm/gamma"], w[p + "LayerNorm/beta"])
  inner = act(a @ w[p + "ffn_1/intermediate/dense/kernel"] + w[p + "ffn_1/intermediate/dense/bias"])
  out = inner @ w[p + "ffn_1/intermediate/output/dense/kernel"] + w[p + "ffn_1/intermediate/output/dense/bias"]
  return np_layer_norm(out + a, w[p + "LayerNorm_1/gamma"], w[p + "LayerNorm_1/beta"])


def np_forward(w, config, groups, input_ids, input_mask, token_type_ids):
  """Returns (word_embeddings, embedding_output, all_layers, pooled) of the whole encoder."""
  seq_length = input_ids.shape[1]
  words = w["bert/embeddings/word_embeddings"][input_ids]
  summed = (words + w["bert/embeddings/token_type_embeddings"][token_type_ids]
            + w["bert/embeddings/position_embeddings"][:seq_length][None])
  embedding = np_layer_norm(summed, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
  x = embedding
  if config.embedding_size != config.hidden_size:
    x = x @ w["bert/encoder/embedding_hidden_mapping_in/kernel"] + w["bert/encoder/embedding_hidden_mapping_in/bias"]
  mask = input_mask.astype(np.float64)
  layers = []
  for group in groups:
    for k in range(config.inner_group_num):
      x = np_block(x, w, f"bert/encoder/transformer/group_{group}/inner_group_{k}/", mask, config)
      layers.append(x)
  pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
  return words, embedding, layers, pooled


def np_mlm_logits(w, config, sequence_output, positions):
  hidden = np.concatenate([sequence_output[b, positions[b]] for b in range(len(positions))])
  t = NP_ACTIVATIONS[config.hidden_act](hidden @ w["cls/predictions/transform/dense/kernel"]
                                         + w["cls/predictions/transform/dense/bias"])
  t = np_layer_norm(t, w["cls/predictions/transform/LayerNorm/gamma"], w["cls/predictions/transform/LayerNorm/beta"])
  return t @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]


def np_sop_logits(w, pooled):
  return pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]


def build(config, seed=1, compute_dtype=tf.float32):
  model = modeling.AlbertPretrainingModel(config, compute_dtype)
  randomize(model.named_variables(), seed)
  return model


def assert_close(actual, expected, tol=1e-5):
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol, atol=tol)


# ---- forward pass vs the reference ----

FORWARD_CASES = {
    "E!=H": (dict(), [0, 0]),
    "E==H": (dict(embedding_size=32), [0, 0]),
    "G2_L3": (dict(num_hidden_layers=3, num_hidden_groups=2), [0, 0, 1]),
    "K2": (dict(inner_group_num=2, hidden_act="relu"), [0, 0]),
    "G2_K2_L3": (dict(num_hidden_layers=3, num_hidden_groups=2, inner_group_num=2, hidden_act="tanh"), [0, 0, 1]),
    "G3_L3": (dict(num_hidden_layers=3, num_hidden_groups=3, num_attention_heads=2), [0, 1, 2]),
}


@pytest.mark.parametrize("case", sorted(FORWARD_CASES))
def test_forward_matches_numpy_reference(case):
  changes, groups = FORWARD_CASES[case]
  config = make_config(**changes)
  model = build(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)
  outputs = model(input_ids, input_mask, token_type_ids, positions)
  w = values_of(model.named_variables())
  words, embedding, layers, pooled = np_forward(w, config, groups, input_ids, input_mask, token_type_ids)

  model_outputs = outputs.model_outputs
  assert len(model_outputs.all_encoder_layers) == len(layers) == config.num_hidden_layers * config.inner_group_num
  assert_close(model_outputs.word_embedding_output, words)
  assert_close(model_outputs.embedding_output, embedding)
  for actual, expected in zip(model_outputs.all_encoder_layers, layers):
    assert_close(actual, expected)
  assert_close(model_outputs.sequence_output, layers[-1])
  assert_close(model_outputs.pooled_output, pooled)
  assert_close(outputs.masked_lm_logits, np_mlm_logits(w, config, layers[-1], positions))
  assert_close(outputs.sentence_order_logits, np_sop_logits(w, pooled))


def test_output_shapes_and_dtypes():
  config = make_config(inner_group_num=2)
  model = build(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config, batch_size=3, seq_length=12)
  outputs = model(input_ids, input_mask, token_type_ids, positions)
  o = outputs.model_outputs
  assert o.sequence_output.shape == (3, 12, 32) and o.pooled_output.shape == (3, 32)
  assert o.embedding_output.shape == (3, 12, 16) and o.word_embedding_output.shape == (3, 12, 16)
  assert isinstance(o.all_encoder_layers, tuple) and len(o.all_encoder_layers) == 4
  assert outputs.masked_lm_logits.shape == (12, 2000) and outputs.masked_lm_logits.dtype == tf.float32
  assert outputs.sentence_order_logits.shape == (3, 2) and outputs.sentence_order_logits.dtype == tf.float32


def test_group_assignment_follows_floor_rule():
  """L=3, G=2 -> layers use groups 0, 0, 1: changing group_1 only changes the last layer."""
  config = make_config(num_hidden_layers=3, num_hidden_groups=2)
  model = build(config)
  input_ids, input_mask, token_type_ids, _ = random_inputs(config)
  before = model.model(input_ids, input_mask, token_type_ids).all_encoder_layers
  kernel = model.named_variables()["bert/encoder/transformer/group_1/inner_group_0/ffn_1/intermediate/dense/kernel"]
  kernel.assign(kernel * 2.0)
  after = model.model(input_ids, input_mask, token_type_ids).all_encoder_layers
  np.testing.assert_array_equal(before[0], after[0])
  np.testing.assert_array_equal(before[1], after[1])
  assert np.abs(before[2].numpy() - after[2].numpy()).max() > 1e-3


def test_group_rule_of_the_spec_example():
  config = make_config(num_hidden_layers=12, num_hidden_groups=5)
  assert [config.group_of_layer(l) for l in range(12)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]


# ---- variables ----

def expected_variables(V, E, H, I, T, P, G, K):
  """The docs/compatibility.md §2.7 list of the pretraining graph (without global_step), written out by hand."""
  names = {
      "bert/embeddings/word_embeddings": [V, E],
      "bert/embeddings/token_type_embeddings": [T, E],
      "bert/embeddings/position_embeddings": [P, E],
      "bert/embeddings/LayerNorm/gamma": [E],
      "bert/embeddings/LayerNorm/beta": [E],
      "bert/pooler/dense/kernel": [H, H],
      "bert/pooler/dense/bias": [H],
      "cls/predictions/transform/dense/kernel": [H, E],
      "cls/predictions/transform/dense/bias": [E],
      "cls/predictions/transform/LayerNorm/gamma": [E],
      "cls/predictions/transform/LayerNorm/beta": [E],
      "cls/predictions/output_bias": [V],
      "cls/seq_relationship/output_weights": [2, H],
      "cls/seq_relationship/output_bias": [2],
  }
  if E != H:
    names["bert/encoder/embedding_hidden_mapping_in/kernel"] = [E, H]
    names["bert/encoder/embedding_hidden_mapping_in/bias"] = [H]
  for g in range(G):
    for k in range(K):
      x = f"bert/encoder/transformer/group_{g}/inner_group_{k}/"
      names.update({
          x + "attention_1/self/query/kernel": [H, H], x + "attention_1/self/query/bias": [H],
          x + "attention_1/self/key/kernel": [H, H], x + "attention_1/self/key/bias": [H],
          x + "attention_1/self/value/kernel": [H, H], x + "attention_1/self/value/bias": [H],
          x + "attention_1/output/dense/kernel": [H, H], x + "attention_1/output/dense/bias": [H],
          x + "LayerNorm/gamma": [H], x + "LayerNorm/beta": [H],
          x + "ffn_1/intermediate/dense/kernel": [H, I], x + "ffn_1/intermediate/dense/bias": [I],
          x + "ffn_1/intermediate/output/dense/kernel": [I, H], x + "ffn_1/intermediate/output/dense/bias": [H],
          x + "LayerNorm_1/gamma": [H], x + "LayerNorm_1/beta": [H],
      })
  return names


def test_variable_names_and_shapes_match_the_original_layout():
  config = make_config(num_hidden_layers=3, num_hidden_groups=2, inner_group_num=2, type_vocab_size=3)
  model = modeling.AlbertPretrainingModel(config)
  named = model.named_variables()
  expected = expected_variables(V=2000, E=16, H=32, I=64, T=3, P=64, G=2, K=2)
  assert {name: list(v.shape) for name, v in named.items()} == expected
  for name, variable in named.items():
    assert variable.name == name + ":0"
    assert variable.dtype == tf.float32
  assert len(model.trainable_variables) == len(expected)


def test_no_mapping_variable_when_embedding_equals_hidden():
  names = modeling.AlbertModel(make_config(embedding_size=32)).named_variables()
  assert not any("embedding_hidden_mapping_in" in name for name in names)


def test_initial_values():
  config = make_config(initializer_range=0.05)
  named = modeling.AlbertPretrainingModel(config).named_variables()
  for name, variable in named.items():
    values = variable.numpy()
    if name.endswith("gamma"):
      np.testing.assert_array_equal(values, 1.0)
    elif name.endswith("bias") or name.endswith("beta"):
      np.testing.assert_array_equal(values, 0.0)
    else:
      assert np.abs(values).max() <= 2 * 0.05, name
  table = named["bert/embeddings/word_embeddings"].numpy()
  assert 0.035 < table.std() < 0.05  # a 2-sigma truncated normal has std 0.88 * stddev


def test_mlm_logits_are_tied_to_word_embeddings():
  config = make_config()
  model = build(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)
  model.model.word_embeddings.assign_add(tf.ones_like(model.model.word_embeddings))
  w = values_of(model.named_variables())
  outputs = model(input_ids, input_mask, token_type_ids, positions)
  _, _, layers, _ = np_forward(w, config, [0, 0], input_ids, input_mask, token_type_ids)
  assert_close(outputs.masked_lm_logits, np_mlm_logits(w, config, layers[-1], positions))
  assert "bert/embeddings/word_embeddings" not in model.masked_lm.named_variables()


# ---- inputs and masking ----

def test_padding_does_not_change_real_positions():
  config = make_config()
  model = build(config).model
  input_ids, input_mask, token_type_ids, _ = random_inputs(config)
  changed_ids = input_ids.copy()
  changed_ids[1, 5:] = (changed_ids[1, 5:] + 7) % config.vocab_size
  a = model(input_ids, input_mask, token_type_ids).sequence_output.numpy()
  b = model(changed_ids, input_mask, token_type_ids).sequence_output.numpy()
  np.testing.assert_allclose(a[1, :5], b[1, :5], atol=1e-6)
  assert np.abs(a[1, 5:] - b[1, 5:]).max() > 1e-3  # query positions are not masked


def test_defaults_are_all_ones_mask_and_zero_token_types():
  config = make_config()
  model = build(config).model
  input_ids = random_inputs(config)[0]
  explicit = model(input_ids, np.ones_like(input_ids), np.zeros_like(input_ids))
  default = model(input_ids)
  assert_close(default.sequence_output, explicit.sequence_output.numpy().astype(np.float64), tol=1e-6)
  assert_close(default.pooled_output, explicit.pooled_output.numpy().astype(np.float64), tol=1e-6)


def test_int64_inputs_give_the_same_outputs():
  config = make_config()
  model = build(config).model
  input_ids, input_mask, token_type_ids, _ = random_inputs(config)
  a = model(input_ids, input_mask, token_type_ids).sequence_output.numpy()
  b = model(input_ids.astype(np.int64), input_mask.astype(np.int64), token_type_ids.astype(np.int64))
  np.testing.assert_array_equal(a, b.sequence_output.numpy())


def test_sequence_longer_than_position_table_is_rejected():
  config = make_config(max_position_embeddings=16)
  model = modeling.AlbertModel(config)
  model(np.zeros((1, 16), np.int32))  # exactly max_position_embeddings is fine
  with pytest.raises(UserError, match="sequence length 17 exceeds max_position_embeddings 16"):
    model(np.zeros((1, 17), np.int32))
  dynamic = tf.function(lambda ids: model(ids).sequence_output,
                        input_signature=[tf.TensorSpec([None, None], tf.int32)])
  assert dynamic(tf.zeros((2, 10), tf.int32)).shape == (2, 10, 32)
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_position_embeddings 16"):
    dynamic(tf.zeros((1, 17), tf.int32))


def test_bad_compute_dtype_is_rejected():
  with pytest.raises(UserError, match="compute dtype int32"):
    modeling.AlbertModel(make_config(), compute_dtype=tf.int32)


# ---- dropout ----

def test_dropout_only_when_training():
  config = make_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.3)
  model = build(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)
  w = values_of(model.named_variables())
  _, embedding, layers, _ = np_forward(w, config, [0, 0], input_ids, input_mask, token_type_ids)

  evaluated = model.model(input_ids, input_mask, token_type_ids, training=False)
  assert_close(evaluated.sequence_output, layers[-1])

  trained = model.model(input_ids, input_mask, token_type_ids, training=True)
  dropped = trained.embedding_output.numpy()
  kept = dropped != 0.0
  assert 0.4 < 1.0 - kept.mean() < 0.6
  np.testing.assert_allclose(dropped[kept], 2.0 * embedding[kept], rtol=1e-5, atol=1e-5)
  again = model.model(input_ids, input_mask, token_type_ids, training=True).sequence_output.numpy()
  assert np.abs(trained.sequence_output.numpy() - again).max() > 1e-3


def test_dropout_in_tf_function_and_xla():
  config = make_config(hidden_dropout_prob=0.5)
  model = build(config).model
  input_ids = random_inputs(config)[0]
  for jit in (False, True):
    run = tf.function(lambda ids: model(ids, training=True).embedding_output, jit_compile=jit)
    zeros = (run(input_ids).numpy() == 0.0).mean()
    assert 0.4 < zeros < 0.6


def test_building_blocks():
  assert modeling.get_activation("GELU") is modeling.gelu
  x = tf.constant([-2.0, -1.0, 0.0, 1.0, 2.0])
  # Hand-computed values of 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  np.testing.assert_allclose(modeling.gelu(x), [-0.04540231, -0.15880801, 0.0, 0.84119199, 1.95459769], atol=1e-6)
  np.testing.assert_array_equal(modeling.get_activation("relu")(x), [0, 0, 0, 1, 2])
  np.testing.assert_allclose(modeling.get_activation("tanh")(x), np.tanh([-2.0, -1.0, 0.0, 1.0, 2.0]), atol=1e-6)
  for name in ("linear", ""):
    np.testing.assert_array_equal(modeling.get_activation(name)(x), x)
  with pytest.raises(UserError, match="swish"):
    modeling.get_activation("swish")
  assert modeling.create_variable("a/b", [2, 3], None).name == "a/b:0"
  np.testing.assert_array_equal(modeling.ones_variable("a/gamma", [3]), [1, 1, 1])
  y = modeling.layer_norm(tf.constant([[1.0, 2.0, 3.0, 6.0]], tf.bfloat16), tf.ones([4]), tf.zeros([4]))
  assert y.dtype == tf.bfloat16
  # mean 3, variance 3.5: (x - 3) / sqrt(3.5)
  np.testing.assert_allclose(tf.cast(y, tf.float32), [[-1.0690, -0.5345, 0.0, 1.6036]], atol=1e-2)
  h = modeling.dense(tf.ones([2, 3, 4], tf.float16), tf.fill([4, 5], 0.5), tf.fill([5], 1.0))
  assert h.dtype == tf.float16 and h.shape == (2, 3, 5)
  np.testing.assert_array_equal(h, np.full((2, 3, 5), 3.0))


# ---- precision and compilation ----

# Absolute tolerances for outputs of magnitude up to ~4: bfloat16 keeps 8 significant bits, float16 11.
@pytest.mark.parametrize("dtype,tolerance", [(tf.bfloat16, 0.1), (tf.float16, 0.01)])
def test_low_precision_agrees_with_float32(dtype, tolerance):
  config = make_config()
  full = build(config, seed=3)
  low = build(config, seed=3, compute_dtype=dtype)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)
  expected = full(input_ids, input_mask, token_type_ids, positions)
  actual = low(input_ids, input_mask, token_type_ids, positions)
  assert actual.model_outputs.sequence_output.dtype == dtype
  assert actual.model_outputs.pooled_output.dtype == dtype
  assert actual.masked_lm_logits.dtype == tf.float32
  for got, want in [(actual.model_outputs.sequence_output, expected.model_outputs.sequence_output),
                    (actual.model_outputs.pooled_output, expected.model_outputs.pooled_output),
                    (actual.masked_lm_logits, expected.masked_lm_logits),
                    (actual.sentence_order_logits, expected.sentence_order_logits)]:
    np.testing.assert_allclose(tf.cast(got, tf.float32), want, atol=tolerance, rtol=0)


def test_xla_matches_eager():
  config = make_config(inner_group_num=2)
  model = build(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)
  eager = model(input_ids, input_mask, token_type_ids, positions)
  compiled = tf.function(lambda *a: model(*a), jit_compile=True)(input_ids, input_mask, token_type_ids, positions)
  for got, want in [(compiled.model_outputs.sequence_output, eager.model_outputs.sequence_output),
                    (compiled.model_outputs.pooled_output, eager.model_outputs.pooled_output),
                    (compiled.masked_lm_logits, eager.masked_lm_logits)]:
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_runs_under_a_distribution_strategy():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  config = make_config(hidden_dropout_prob=0.1)
  with strategy.scope():
    model = modeling.AlbertPretrainingModel(config)
  input_ids, input_mask, token_type_ids, positions = random_inputs(config)

  @tf.function
  def step():
    def replica_fn():
      with tf.GradientTape() as tape:
        outputs = model(input_ids, input_mask, token_type_ids, positions, training=True)
        loss = model.compute_loss(outputs, np.ones((3, 4), np.int32), np.ones((3, 4), np.float32),
                                  np.zeros(3, np.int32))
      return loss, tape.gradient(loss, model.model.word_embeddings)
    return strategy.run(replica_fn)

  loss, gradient = step()
  assert np.isfinite(loss.numpy()) and np.abs(tf.convert_to_tensor(gradient)).sum() > 0


# ---- losses ----

def test_masked_lm_loss_formula():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(6, 10)).astype(np.float32)
  labels = np.array([[1, 2, 3], [4, 0, 0]], np.int32)
  weights = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  per_example = -log_probs[np.arange(6), labels.reshape(-1)]
  expected = (weights.reshape(-1) * per_example).sum() / (weights.sum() + 1e-5)
  loss, per_example_loss = modeling.masked_lm_loss(logits, labels, weights)
  np.testing.assert_allclose(per_example_loss, per_example, rtol=1e-5)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  zero_loss, _ = modeling.masked_lm_loss(logits, labels, np.zeros_like(weights))
  assert zero_loss.numpy() == 0.0


def test_sentence_order_loss_formula():
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
  labels = np.array([0, 1, 0], np.int32)
  # -log softmax: log(1 + e^-2), log(1 + e^-1), log 2
  per_example = np.array([0.12692801, 0.31326169, 0.69314718])
  loss, per_example_loss = modeling.sentence_order_loss(logits, labels[:, None])
  np.testing.assert_allclose(per_example_loss, per_example, rtol=1e-5)
  np.testing.assert_allclose(loss, per_example.mean(), rtol=1e-5)
