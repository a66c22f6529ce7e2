"""SQuAD heads against numpy re-implementations of the original formulas (docs/compatibility.md §3.3, §3.4)."""

import numpy as np
import pytest
import tensorflow as tf

from albert.model import heads

B, S, H = 2, 12, 32
KS, KE = 3, 2
# [CLS] q q [SEP] doc x6 [SEP] pad pad: 1 = can never be an answer.
P_MASK = np.array([[0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1],
                   [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]], np.float32)


# ---- numpy references ----

def np_log_softmax(x):
  shifted = x - x.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def np_masked(logits, p_mask):
  return logits * (1 - p_mask) - 1e30 * p_mask


def np_weights(head):
  return {name: v.numpy().astype(np.float64) for name, v in head.named_variables().items()}


def np_start_logits(w, hidden, p_mask):
  return np_masked(hidden @ w["start_logits/dense/kernel"][:, 0] + w["start_logits/dense/bias"][0], p_mask)


def np_end_log_probs(w, hidden_b, start_feature, p_mask_b):
  """One example's end log-probs given one start feature: [hidden_at_position, start_feature] @ dense_0."""
  tiled = np.concatenate([hidden_b, np.tile(start_feature, (hidden_b.shape[0], 1))], axis=-1)
  x = np.tanh(tiled @ w["end_logits/dense_0/kernel"] + w["end_logits/dense_0/bias"])
  x = np_layer_norm(x, w["end_logits/LayerNorm/gamma"], w["end_logits/LayerNorm/beta"])
  logits = x @ w["end_logits/dense_1/kernel"][:, 0] + w["end_logits/dense_1/bias"][0]
  return np_log_softmax(np_masked(logits, p_mask_b))


def np_cls_logits(w, hidden, p_mask):
  start_logits = np_start_logits(w, hidden, p_mask)
  start_probs = np.exp(np_log_softmax(start_logits))
  start_feature = np.einsum("bs,bsh->bh", start_probs, hidden)
  x = np.concatenate([start_feature, hidden[:, 0]], axis=-1)
  x = np.tanh(x @ w["answer_class/dense_0/kernel"] + w["answer_class/dense_0/bias"])
  return x @ w["answer_class/dense_1/kernel"][:, 0]


def np_beam(w, hidden, p_mask, ks, ke):
  start_log_probs = np_log_softmax(np_start_logits(w, hidden, p_mask))
  out = {name: [] for name in ("start_top_index", "start_top_log_probs", "end_top_index", "end_top_log_probs")}
  for b in range(hidden.shape[0]):
    starts = np.argsort(-start_log_probs[b], kind="stable")[:ks]
    out["start_top_index"].append(starts)
    out["start_top_log_probs"].append(start_log_probs[b, starts])
    ends, end_lps = [], []
    for s in starts:  # row-major: all ends of start 0, then of start 1, ...
      end_log_probs = np_end_log_probs(w, hidden[b], hidden[b, s], p_mask[b])
      top = np.argsort(-end_log_probs, kind="stable")[:ke]
      ends.extend(top)
      end_lps.extend(end_log_probs[top])
    out["end_top_index"].append(ends)
    out["end_top_log_probs"].append(end_lps)
  out = {name: np.array(values) for name, values in out.items()}
  out["cls_logits"] = np_cls_logits(w, hidden, p_mask)
  return out


# ---- fixtures ----

def randomize(head, seed):
  """Weights of order 1 so logits are well separated (the 0.02 init makes near-ties)."""
  rng = np.random.default_rng(seed)
  for v in head.named_variables().values():
    v.assign(rng.normal(0.0, 0.5, v.shape).astype(np.float32))


@pytest.fixture
def hidden():
  return np.random.default_rng(0).normal(0.0, 1.0, [B, S, H]).astype(np.float32)


@pytest.fixture
def v2_head(tiny_config):
  tf.random.set_seed(1)
  head = heads.SquadV2Head(tiny_config, start_n_top=KS, end_n_top=KE, dropout_prob=0.1)
  randomize(head, 2)
  return head


# ---- variables ----

def test_v1_variables(tiny_config):
  # A large initializer_range shows the head ignores it and uses the fixed 0.02.
  variables = heads.SquadV1Head(tiny_config.copy(initializer_range=1.0)).named_variables()
  assert {name: v.shape.as_list() for name, v in variables.items()} == {
      "cls/squad/output_weights": [2, H], "cls/squad/output_bias": [2]}
  assert all(v.name == name + ":0" and v.dtype == tf.float32 for name, v in variables.items())
  weights = variables["cls/squad/output_weights"].numpy()
  assert np.abs(weights).max() <= 0.04 and weights.std() > 0.005
  assert not variables["cls/squad/output_bias"].numpy().any()


def test_v2_variables(tiny_config):
  variables = heads.SquadV2Head(tiny_config).named_variables()
  h = tiny_config.hidden_size
  assert {name: v.shape.as_list() for name, v in variables.items()} == {
      "start_logits/dense/kernel": [h, 1], "start_logits/dense/bias": [1],
      "end_logits/dense_0/kernel": [2 * h, h], "end_logits/dense_0/bias": [h],
      "end_logits/LayerNorm/gamma": [h], "end_logits/LayerNorm/beta": [h],
      "end_logits/dense_1/kernel": [h, 1], "end_logits/dense_1/bias": [1],
      "answer_class/dense_0/kernel": [2 * h, h], "answer_class/dense_0/bias": [h],
      "answer_class/dense_1/kernel": [h, 1]}
  assert all(v.name == name + ":0" for name, v in variables.items())
  assert (variables["end_logits/LayerNorm/gamma"].numpy() == 1).all()
  for name in ("end_logits/LayerNorm/beta", "end_logits/dense_0/bias", "answer_class/dense_0/bias"):
    assert not variables[name].numpy().any()
  kernel = variables["end_logits/dense_0/kernel"].numpy()
  assert np.abs(kernel).max() <= 2 * tiny_config.initializer_range and kernel.std() > 0.005


# ---- v1 ----

def test_v1_logits_and_loss_match_numpy(tiny_config, hidden):
  head = heads.SquadV1Head(tiny_config)
  randomize(head, 3)
  w = np_weights(head)
  start_logits, end_logits = head(tf.constant(hidden))
  expected = hidden @ w["cls/squad/output_weights"].T + w["cls/squad/output_bias"]
  np.testing.assert_allclose(start_logits.numpy(), expected[..., 0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(end_logits.numpy(), expected[..., 1], rtol=1e-5, atol=1e-5)
  starts, ends = np.array([0, 5]), np.array([[3], [11]])  # [B] and [B, 1] labels; padding is not masked
  loss = heads.squad_v1_loss(start_logits, end_logits, starts, ends)
  start_ce = -np_log_softmax(expected[..., 0])[np.arange(B), starts].mean()
  end_ce = -np_log_softmax(expected[..., 1])[np.arange(B), ends[:, 0]].mean()
  assert loss.dtype == tf.float32
  assert float(loss) == pytest.approx((start_ce + end_ce) / 2, rel=1e-5)


# ---- v2 ----

def test_v2_training_path_matches_numpy(v2_head, hidden):
  w = np_weights(v2_head)
  starts = np.array([5, 0])
  start_lp, end_lp, cls_logits = v2_head.train_logits(tf.constant(hidden), tf.constant(P_MASK.astype(np.int64)),
                                                      tf.constant(starts), training=False)
  expected_start = np_log_softmax(np_start_logits(w, hidden, P_MASK))
  expected_end = np.stack([np_end_log_probs(w, hidden[b], hidden[b, starts[b]], P_MASK[b]) for b in range(B)])
  valid = P_MASK == 0
  np.testing.assert_allclose(start_lp.numpy()[valid], expected_start[valid], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(end_lp.numpy()[valid], expected_end[valid], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(cls_logits.numpy(), np_cls_logits(w, hidden, P_MASK), rtol=1e-4, atol=1e-4)
  assert (start_lp.numpy()[~valid] < -1e29).all() and (end_lp.numpy()[~valid] < -1e29).all()


def test_v2_beam_matches_numpy_including_flattening_order(v2_head, hidden):
  outputs = v2_head.predict(tf.constant(hidden), tf.constant(P_MASK))
  expected = np_beam(np_weights(v2_head), hidden, P_MASK, KS, KE)
  assert {name: tuple(v.shape) for name, v in outputs.items()} == {
      "start_top_log_probs": (B, KS), "start_top_index": (B, KS), "end_top_log_probs": (B, KS * KE),
      "end_top_index": (B, KS * KE), "cls_logits": (B,)}
  np.testing.assert_array_equal(outputs["start_top_index"].numpy(), expected["start_top_index"])
  np.testing.assert_array_equal(outputs["end_top_index"].numpy(), expected["end_top_index"])
  for name in ("start_top_log_probs", "end_top_log_probs", "cls_logits"):
    assert outputs[name].dtype == tf.float32
    np.testing.assert_allclose(outputs[name].numpy(), expected[name], rtol=1e-4, atol=1e-4)


def test_v2_masked_positions_never_matter(v2_head, hidden):
  outputs = v2_head.predict(tf.constant(hidden), tf.constant(P_MASK))
  for name in ("start_top_index", "end_top_index"):
    for b in range(B):
      assert (P_MASK[b, outputs[name].numpy()[b]] == 0).all()
  noisy = hidden.copy()
  noisy[P_MASK == 1] += np.random.default_rng(5).normal(0, 3.0, noisy[P_MASK == 1].shape).astype(np.float32)
  noisy_outputs = v2_head.predict(tf.constant(noisy), tf.constant(P_MASK))
  for name, value in outputs.items():
    np.testing.assert_allclose(noisy_outputs[name].numpy(), value.numpy(), rtol=1e-5, atol=1e-5)
  unmasked = v2_head.predict(tf.constant(hidden), tf.zeros([B, S]))
  assert not np.allclose(unmasked["cls_logits"].numpy(), outputs["cls_logits"].numpy())


def test_v2_cls_logits_use_the_soft_start_not_the_true_start(v2_head, hidden):
  x, p_mask = tf.constant(hidden), tf.constant(P_MASK)
  cls_a = v2_head.train_logits(x, p_mask, tf.constant([4, 4]), training=False)[2]
  cls_b = v2_head.train_logits(x, p_mask, tf.constant([0, 7]), training=False)[2]
  np.testing.assert_array_equal(cls_a.numpy(), cls_b.numpy())
  np.testing.assert_allclose(cls_a.numpy(), v2_head.predict(x, p_mask)["cls_logits"].numpy(), rtol=1e-6)


def test_v2_answer_class_dropout_only_in_training(tiny_config, hidden):
  head = heads.SquadV2Head(tiny_config, dropout_prob=0.5)
  randomize(head, 4)
  x, p_mask, starts = tf.constant(hidden), tf.constant(P_MASK), tf.constant([4, 5])
  tf.random.set_seed(7)
  evaluation = head.train_logits(x, p_mask, starts, training=False)
  training = head.train_logits(x, p_mask, starts, training=True)
  np.testing.assert_array_equal(evaluation[0].numpy(), training[0].numpy())
  np.testing.assert_array_equal(evaluation[1].numpy(), training[1].numpy())
  assert not np.allclose(evaluation[2].numpy(), training[2].numpy())


def test_v2_loss_formula_and_gradients(v2_head, hidden):
  starts, ends, impossible = np.array([5, 0]), np.array([[7], [0]]), np.array([0, 1])
  with tf.GradientTape() as tape:
    start_lp, end_lp, cls_logits = v2_head.train_logits(tf.constant(hidden), tf.constant(P_MASK),
                                                        tf.constant(starts), training=True)
    loss = heads.squad_v2_loss(start_lp, end_lp, cls_logits, starts, ends, impossible)
  s, e, c = start_lp.numpy(), end_lp.numpy(), cls_logits.numpy().astype(np.float64)
  sigmoid = 1 / (1 + np.exp(-c))
  answer_loss = -(impossible * np.log(sigmoid) + (1 - impossible) * np.log(1 - sigmoid)).mean()
  expected = 0.5 * (-s[np.arange(B), starts].mean() - e[np.arange(B), ends[:, 0]].mean()) + 0.5 * answer_loss
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  gradients = dict(zip(v2_head.named_variables(), tape.gradient(loss, list(v2_head.named_variables().values()))))
  assert all(g is not None for g in gradients.values())
  # Biases right before a softmax get no gradient (softmax ignores shifts); every kernel must.
  assert all(np.abs(g.numpy()).sum() > 0 for name, g in gradients.items() if name.endswith("kernel"))


# ---- low precision ----

@pytest.mark.parametrize("dtype, tolerance", [(tf.bfloat16, 0.15), (tf.float16, 0.02)])
def test_low_precision_inputs_give_float32_outputs_close_to_float32(v2_head, tiny_config, hidden, dtype, tolerance):
  low = tf.cast(tf.constant(hidden), dtype)
  reference = v2_head.predict(tf.cast(low, tf.float32), P_MASK)  # same rounded inputs, float32 math
  outputs = v2_head.predict(low, P_MASK)
  for name in ("start_top_log_probs", "end_top_log_probs", "cls_logits"):
    assert outputs[name].dtype == tf.float32
    np.testing.assert_allclose(outputs[name].numpy(), reference[name].numpy(), atol=tolerance, rtol=tolerance)
  np.testing.assert_array_equal(outputs["start_top_index"].numpy(), reference["start_top_index"].numpy())
  train = v2_head.train_logits(low, P_MASK, [4, 5], training=False)
  assert all(t.dtype == tf.float32 for t in train)
  head = heads.SquadV1Head(tiny_config)
  randomize(head, 6)
  start_logits, end_logits = head(low)
  assert start_logits.dtype == end_logits.dtype == tf.float32
  np.testing.assert_allclose(start_logits.numpy(), head(tf.cast(low, tf.float32))[0].numpy(), rtol=1e-5, atol=1e-5)


def test_predict_traces_with_unknown_batch_size(v2_head, hidden):
  traced = tf.function(v2_head.predict, input_signature=[tf.TensorSpec([None, S, H], tf.float32),
                                                         tf.TensorSpec([None, S], tf.float32)])
  outputs = traced(tf.constant(hidden), tf.constant(P_MASK))
  eager = v2_head.predict(tf.constant(hidden), tf.constant(P_MASK))
  np.testing.assert_array_equal(outputs["end_top_index"].numpy(), eager["end_top_index"].numpy())
  np.testing.assert_allclose(outputs["cls_logits"].numpy(), eager["cls_logits"].numpy(), rtol=1e-4, atol=1e-4)
