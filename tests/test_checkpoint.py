"""Checkpoints in the original layout: TF1-graph interoperability, loading rules, the manager, distribution."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from albert.core.errors import UserError
from albert.io import checkpoint
from albert.io.checkpoint import CheckpointManager, CheckpointMismatchError
from albert.modeling import AlbertModel, MaskedLMHead, SentenceOrderHead

V1 = tf.compat.v1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, SEQ = 2, 10


# ---- an independent TF1-graph ALBERT with the original variable scopes ----

def _v1_get(name, shape):
  """A TF1 variable with a non-trivial random value (gammas near 1, biases non-zero)."""
  if name == "gamma":
    initializer = V1.random_normal_initializer(1.0, 0.1)
  elif name in ("beta", "bias") or name.endswith("_bias"):
    initializer = V1.random_normal_initializer(0.0, 0.1)
  else:
    initializer = V1.truncated_normal_initializer(stddev=0.2)
  return V1.get_variable(name, shape, tf.float32, initializer=initializer)


def _v1_dense(x, units, scope):
  with V1.variable_scope(scope):
    kernel = _v1_get("kernel", [x.shape[-1], units])
    bias = _v1_get("bias", [units])
  return tf.einsum("...i,io->...o", x, kernel) + bias


def _v1_layer_norm(x, scope="LayerNorm"):
  with V1.variable_scope(scope):
    beta = _v1_get("beta", [x.shape[-1]])
    gamma = _v1_get("gamma", [x.shape[-1]])
  mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
  return (x - mean) * tf.math.rsqrt(variance + 1e-12) * gamma + beta


def _v1_gelu(x):
  return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _v1_block(x, mask, config):
  heads, size = config.num_attention_heads, config.hidden_size // config.num_attention_heads

  def split(t):
    return tf.transpose(tf.reshape(t, [BATCH, SEQ, heads, size]), [0, 2, 1, 3])

  with V1.variable_scope("attention_1"):
    with V1.variable_scope("self"):
      q, k, v = (split(_v1_dense(x, config.hidden_size, n)) for n in ("query", "key", "value"))
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(size)
    scores += (1.0 - tf.cast(mask, tf.float32)[:, None, None, :]) * -10000.0
    context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
    context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [BATCH, SEQ, config.hidden_size])
    with V1.variable_scope("output"):
      projected = _v1_dense(context, config.hidden_size, "dense")
  attended = _v1_layer_norm(projected + x, "LayerNorm")
  with V1.variable_scope("ffn_1"):
    with V1.variable_scope("intermediate"):
      inner = _v1_gelu(_v1_dense(attended, config.intermediate_size, "dense"))
      with V1.variable_scope("output"):
        ffn = _v1_dense(inner, config.hidden_size, "dense")
  return _v1_layer_norm(ffn + attended, "LayerNorm_1")


def build_v1_albert(config, features):
  """The pretraining graph of the original release, written from the spec; returns output tensors."""
  ids, mask, types, positions = (tf.constant(features[k]) for k in ("ids", "mask", "types", "positions"))
  e, h = config.embedding_size, config.hidden_size
  with V1.variable_scope("bert"):
    with V1.variable_scope("embeddings"):
      word_table = _v1_get("word_embeddings", [config.vocab_size, e])
      type_table = _v1_get("token_type_embeddings", [config.type_vocab_size, e])
      position_table = _v1_get("position_embeddings", [config.max_position_embeddings, e])
      summed = tf.gather(word_table, ids) + tf.gather(type_table, types) + position_table[None, :SEQ]
      embedding_output = _v1_layer_norm(summed)
    with V1.variable_scope("encoder"):
      x = _v1_dense(embedding_output, h, "embedding_hidden_mapping_in") if e != h else embedding_output
      layers = []
      with V1.variable_scope("transformer", reuse=V1.AUTO_REUSE):
        for layer in range(config.num_hidden_layers):
          group = int(layer / config.num_hidden_layers * config.num_hidden_groups)
          with V1.variable_scope(f"group_{group}"):
            for inner in range(config.inner_group_num):
              with V1.variable_scope(f"inner_group_{inner}"):
                x = _v1_block(x, mask, config)
                layers.append(x)
    with V1.variable_scope("pooler"):
      pooled = tf.tanh(_v1_dense(x[:, 0], h, "dense"))
  with V1.variable_scope("cls/predictions"):
    flat = tf.reshape(positions + (tf.range(BATCH) * SEQ)[:, None], [-1])
    gathered = tf.gather(tf.reshape(x, [-1, h]), flat)
    with V1.variable_scope("transform"):
      transformed = _v1_layer_norm(_v1_gelu(_v1_dense(gathered, e, "dense")))
    mlm_logits = tf.matmul(transformed, word_table, transpose_b=True) + _v1_get("output_bias", [config.vocab_size])
  with V1.variable_scope("cls/seq_relationship"):
    weights, bias = _v1_get("output_weights", [2, h]), _v1_get("output_bias", [2])
    sop_logits = tf.matmul(pooled, weights, transpose_b=True) + bias
  V1.train.get_or_create_global_step()
  return dict(sequence=x, pooled=pooled, layers=tf.stack(layers), embedding=embedding_output,
              mlm=mlm_logits, sop=sop_logits)


def run_eager_albert(config, features, named_override=None):
  """Our modules; returns (named variables incl. heads, outputs in the same keys as the graph)."""
  model = AlbertModel(config)
  mlm_head = MaskedLMHead(config, model.word_embeddings)
  sop_head = SentenceOrderHead(config)
  named = {**model.named_variables(), **mlm_head.named_variables(), **sop_head.named_variables()}

  def forward():
    out = model(features["ids"], features["mask"], features["types"])
    return dict(sequence=out.sequence_output, pooled=out.pooled_output, layers=tf.stack(out.all_encoder_layers),
                embedding=out.embedding_output, mlm=mlm_head(out.sequence_output, features["positions"]),
                sop=sop_head(out.pooled_output))
  return named, forward


def make_features(config, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.ones([BATCH, SEQ], np.int32)
  mask[1, 7:] = 0
  return dict(ids=rng.integers(0, config.vocab_size, [BATCH, SEQ]).astype(np.int32), mask=mask,
              types=(np.arange(SEQ)[None, :] >= np.array([[4], [6]])).astype(np.int32),
              positions=np.array([[1, 3, 8], [0, 2, 5]], np.int32))


def randomize(named, seed=1):
  """Non-trivial values everywhere, so a swapped or skipped variable changes the outputs."""
  rng = np.random.default_rng(seed)
  for name, variable in named.items():
    centre = 1.0 if name.endswith("gamma") else 0.0
    variable.assign(centre + 0.2 * rng.standard_normal(variable.shape).astype(np.float32))


def assert_outputs_close(actual, expected):
  for key in expected:
    np.testing.assert_allclose(np.asarray(actual[key]), expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.fixture(params=["mapping", "grouped"])
def interop_config(request, tiny_config):
  """E != H with one group, and E == H (no mapping) with L=3 over G=2 groups of K=2 blocks."""
  if request.param == "mapping":
    return tiny_config
  return tiny_config.copy(embedding_size=32, num_hidden_layers=3, num_hidden_groups=2, inner_group_num=2)


# ---- (a) a checkpoint of the original TF1 graph loads into our modules ----

def test_tf1_checkpoint_loads_and_reproduces_outputs(tmp_path, interop_config):
  features = make_features(interop_config)
  graph = tf.Graph()
  with graph.as_default():
    V1.set_random_seed(3)
    outputs = build_v1_albert(interop_config, features)
    with V1.variable_scope("bert/pooler/dense/kernel"):
      V1.get_variable("adam_m", [interop_config.hidden_size], initializer=V1.zeros_initializer())
    saver = V1.train.Saver()
    with V1.Session(graph=graph) as session:
      session.run(V1.global_variables_initializer())
      expected = session.run(outputs)
      saved = saver.save(session, str(tmp_path / "model.ckpt"), global_step=7)
  assert saved == str(tmp_path / "model.ckpt-7")

  named, forward = run_eager_albert(interop_config, features)
  report = checkpoint.load_variables(named, checkpoint.resolve_checkpoint(str(tmp_path), "init_checkpoint"))
  assert report.missing == [] and report.mismatched == [] and report.unexpected == []
  assert sorted(report.loaded) == sorted(named)
  assert all(source == name for name, source in report.loaded.items())
  assert report.training_state == ["bert/pooler/dense/kernel/adam_m", "global_step"]
  assert_outputs_close(forward(), expected)


# ---- (b) our checkpoint restores into the original TF1 graph ----

def test_our_checkpoint_restores_into_tf1_graph(tmp_path, interop_config):
  features = make_features(interop_config)
  named, forward = run_eager_albert(interop_config, features)
  randomize(named)
  expected = {k: v.numpy() for k, v in forward().items()}
  CheckpointManager(str(tmp_path)).save(3, {**named, "global_step": np.int64(3)})

  graph = tf.Graph()
  with graph.as_default():
    outputs = build_v1_albert(interop_config, features)
    graph_names = sorted(v.op.name for v in V1.global_variables())
    with V1.Session(graph=graph) as session:
      V1.train.Saver().restore(session, V1.train.latest_checkpoint(str(tmp_path)))
      actual = session.run(outputs)
      step = session.run(V1.train.get_global_step())
  assert graph_names == sorted([*named, "global_step"])
  assert step == 3
  assert_outputs_close(actual, expected)


# ---- (c) a config that does not match the checkpoint ----

def test_wrong_config_raises_one_line_listing_every_mismatch(tmp_path, tiny_config):
  named, _ = run_eager_albert(tiny_config, make_features(tiny_config))
  prefix = checkpoint.save_checkpoint(str(tmp_path / "model.ckpt-1"), named)
  wrong = tiny_config.copy(hidden_size=48, intermediate_size=96, vocab_size=2100)
  wrong_named, _ = run_eager_albert(wrong, make_features(tiny_config))
  untouched = wrong_named["bert/embeddings/LayerNorm/gamma"]
  untouched.assign(np.full([16], 5.0, np.float32))

  with pytest.raises(CheckpointMismatchError) as caught:
    checkpoint.load_variables(wrong_named, prefix)
  message = str(caught.value)
  assert "\n" not in message and isinstance(caught.value, UserError)
  assert "bert/embeddings/word_embeddings: model [2100, 16] vs checkpoint [2000, 16]" in message
  assert "bert/pooler/dense/kernel: model [48, 48] vs checkpoint [32, 32]" in message
  assert "cls/predictions/output_bias: model [2100] vs checkpoint [2000]" in message
  assert "config" in message
  # Every variable whose shape involves H, I or V: all but the embedding-side ones of width E.
  same_shape = {"bert/embeddings/token_type_embeddings", "bert/embeddings/position_embeddings",
                "bert/embeddings/LayerNorm/gamma", "bert/embeddings/LayerNorm/beta",
                "cls/predictions/transform/dense/bias", "cls/predictions/transform/LayerNorm/gamma",
                "cls/predictions/transform/LayerNorm/beta", "cls/seq_relationship/output_bias"}
  assert sorted(caught.value.report.mismatched) == sorted(set(named) - same_shape)
  assert f"({len(named) - len(same_shape)} mismatched;" in message
  np.testing.assert_array_equal(untouched.numpy(), np.full([16], 5.0))  # nothing assigned before the check


def test_dtype_rules(tmp_path):
  prefix = checkpoint.save_checkpoint(str(tmp_path / "c"), {
      "a": np.array([1.5, 2.5], np.float64), "b": np.array([3], np.int32), "c": np.array([1.0], np.float32)})
  a, b, c = tf.Variable(tf.zeros([2])), tf.Variable(tf.zeros([1], tf.int64)), tf.Variable(tf.zeros([1], tf.int32))
  with pytest.raises(CheckpointMismatchError, match=r"c: model int32 vs checkpoint float32"):
    checkpoint.load_variables({"a": a, "b": b, "c": c}, prefix)
  report = checkpoint.load_variables({"a": a, "b": b}, prefix)
  assert report.unexpected == ["c"]
  np.testing.assert_array_equal(a.numpy(), [1.5, 2.5])
  assert b.dtype == tf.int64 and b.numpy().tolist() == [3]


# ---- (d) the manager, the state file, resolution ----

def values_for(step):
  return {"w": np.full([2, 3], float(step), np.float32), "global_step": np.int64(step)}


def test_manager_prunes_and_writes_state_file(tmp_path):
  manager = CheckpointManager(str(tmp_path), max_to_keep=2)
  prefixes = [manager.save(step, values_for(step)) for step in (1, 2, 10, 11)]
  assert prefixes[-1] == str(tmp_path / "model.ckpt-11")
  assert sorted(os.listdir(tmp_path)) == [
      "checkpoint", "model.ckpt-10.data-00000-of-00001", "model.ckpt-10.index",
      "model.ckpt-11.data-00000-of-00001", "model.ckpt-11.index"]
  assert (tmp_path / "checkpoint").read_text() == (
      'model_checkpoint_path: "model.ckpt-11"\n'
      'all_model_checkpoint_paths: "model.ckpt-10"\n'
      'all_model_checkpoint_paths: "model.ckpt-11"\n')
  state = tf.train.get_checkpoint_state(str(tmp_path))
  assert list(state.all_model_checkpoint_paths) == [str(tmp_path / "model.ckpt-10"), prefixes[-1]]
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefixes[-1]
  assert manager.checkpoints() == [str(tmp_path / "model.ckpt-10"), prefixes[-1]]
  assert manager.latest() == checkpoint.latest_checkpoint(str(tmp_path)) == prefixes[-1]
  np.testing.assert_array_equal(tf.train.load_checkpoint(prefixes[-1]).get_tensor("w"), np.full([2, 3], 11.0))


def test_manager_keeps_all_with_zero_and_never_prunes_best(tmp_path):
  keep_all = CheckpointManager(str(tmp_path / "all"), max_to_keep=0)
  for step in range(1, 8):
    keep_all.save(step, values_for(step))
  assert len(keep_all.checkpoints()) == 7

  manager = CheckpointManager(str(tmp_path / "run"), max_to_keep=1)
  other = CheckpointManager(str(tmp_path / "run"), basename="other.ckpt").save(1, values_for(1))
  first = manager.save(1, values_for(1))
  best = checkpoint.copy_checkpoint(first, str(tmp_path / "run" / "model.ckpt-best"))
  for step in (2, 3):
    manager.save(step, values_for(step))
  assert manager.checkpoints() == [str(tmp_path / "run" / "model.ckpt-3")]
  assert checkpoint.checkpoint_exists(other)  # another basename is not this manager's to prune
  assert tf.train.load_checkpoint(best).get_tensor("w")[0, 0] == 1.0
  assert checkpoint.checkpoint_step(best) == 1  # from its global_step tensor
  checkpoint.copy_checkpoint(manager.latest(), best)  # overwriting a best replaces it
  assert checkpoint.checkpoint_step(best) == 3
  assert sorted(f for f in os.listdir(tmp_path / "run") if "best" in f) == [
      "model.ckpt-best.data-00000-of-00001", "model.ckpt-best.index"]


def test_latest_without_or_with_stale_state_file(tmp_path):
  manager = CheckpointManager(str(tmp_path), max_to_keep=5)
  for step in (5, 20, 100):
    manager.save(step, values_for(step))
  os.remove(tmp_path / "checkpoint")
  assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-100")
  assert manager.latest() == str(tmp_path / "model.ckpt-100")

  # A state file left behind by a crash between the save and the state update.
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-20"\n')
  assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-100")
  # A state file naming checkpoints that were deleted.
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-900"\n')
  assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-100")
  (tmp_path / "checkpoint").write_text("not a state file {")
  assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-100")
  manager.save(101, values_for(101))
  assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-101")
  assert checkpoint.latest_checkpoint(str(tmp_path / "empty")) is None


@pytest.mark.parametrize("failing_file", [".index", ".data-00000-of-00001"])
def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch, failing_file):
  manager = CheckpointManager(str(tmp_path), max_to_keep=1)
  manager.save(1, values_for(1))
  state_before = (tmp_path / "checkpoint").read_text()
  real_rename = tf.io.gfile.rename

  def crash_on_move(src, dst, overwrite=False):
    if dst.endswith(failing_file):
      raise OSError("disk full")
    real_rename(src, dst, overwrite)

  monkeypatch.setattr(tf.io.gfile, "rename", crash_on_move)
  with pytest.raises(OSError, match="disk full"):
    manager.save(2, values_for(2))
  monkeypatch.undo()

  assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-1")
  assert (tmp_path / "checkpoint").read_text() == state_before
  assert not (tmp_path / "model.ckpt-2.index").exists()
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # temporary files cleaned up
  assert tf.train.load_checkpoint(str(tmp_path / "model.ckpt-1")).get_tensor("w")[0, 0] == 1.0


def test_resolve_step_and_list(tmp_path):
  prefix = CheckpointManager(str(tmp_path)).save(12, values_for(12))
  for given in (prefix, prefix + ".index", prefix + ".data-00000-of-00001", str(tmp_path), str(tmp_path) + "/"):
    assert checkpoint.resolve_checkpoint(given, "init_checkpoint") == prefix
  with pytest.raises(UserError, match=r"^--init_checkpoint: checkpoint not found: .*nope"):
    checkpoint.resolve_checkpoint(str(tmp_path / "nope"), "init_checkpoint")
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match=r"^--init_checkpoint: no checkpoint in directory"):
    checkpoint.resolve_checkpoint(str(tmp_path / "empty"), "init_checkpoint")
  with pytest.raises(UserError, match=r"^--init_checkpoint is required"):
    checkpoint.resolve_checkpoint("", "init_checkpoint")
  assert checkpoint.checkpoint_step(prefix) == 12
  assert checkpoint.list_variables(prefix) == {"global_step": [], "w": [2, 3]}
  with pytest.raises(UserError, match="checkpoint not found"):
    checkpoint.list_variables(str(tmp_path / "nope"))
  os.remove(prefix + ".data-00000-of-00001")
  with pytest.raises(UserError, match="cannot be read"):
    checkpoint.load_variables({"w": tf.Variable(tf.zeros([2, 3]))}, prefix)


# ---- (e) init_from_group0 ----

def test_init_from_group0_fills_new_groups_from_group_0(tmp_path, tiny_config):
  source, _ = run_eager_albert(tiny_config, make_features(tiny_config))
  randomize(source)
  prefix = checkpoint.save_checkpoint(str(tmp_path / "model.ckpt-1"), source)
  wide = tiny_config.copy(num_hidden_groups=2)

  exact_named, _ = run_eager_albert(wide, make_features(wide))
  report = checkpoint.load_variables(exact_named, prefix, num_of_group=1)
  group_1 = sorted(n for n in exact_named if "/group_1/" in n)
  assert len(group_1) == 16 and report.missing == group_1

  named, _ = run_eager_albert(wide, make_features(wide))
  report = checkpoint.load_variables(named, prefix, num_of_group=2)
  assert report.missing == [] and report.unexpected == []
  for name in group_1:
    assert report.loaded[name] == name.replace("/group_1/", "/group_0/")
    np.testing.assert_array_equal(named[name].numpy(), source[name.replace("/group_1/", "/group_0/")].numpy())
  assert "initialized from group 0 (16)" in report.summary()


def test_group0_substitution_order(tmp_path):
  prefix = checkpoint.save_checkpoint(str(tmp_path / "c"), {
      name: np.array([value], np.float32) for name, value in (
          ("t/group_0/ffn_4/w", 1.0), ("t/group_3/ffn_1/w", 2.0), ("t/attention_1/w", 3.0),
          ("t/group_0/ffn_1/w", 4.0))})
  named = {name: tf.Variable(tf.zeros([1])) for name in
           ("t/group_3/ffn_4/w", "t/group_3/ffn_9/w", "t/attention_7/w", "t/group_5/ffn_6/w")}
  report = checkpoint.load_variables(named, prefix, num_of_group=3)
  # group_0 is tried before ffn_1, which is tried before attention_1.
  assert report.loaded == {"t/group_3/ffn_4/w": "t/group_0/ffn_4/w", "t/group_3/ffn_9/w": "t/group_3/ffn_1/w",
                           "t/attention_7/w": "t/attention_1/w"}
  assert [named[n].numpy()[0] for n in ("t/group_3/ffn_4/w", "t/group_3/ffn_9/w", "t/attention_7/w")] == [1, 2, 3]
  # One substitution at a time, as in the original: group_5/ffn_6 does not become group_0/ffn_1.
  assert report.missing == ["t/group_5/ffn_6/w"] and report.unexpected == ["t/group_0/ffn_1/w"]


def test_exclude_skips_variables(tmp_path):
  prefix = checkpoint.save_checkpoint(str(tmp_path / "c"), {"bert/a": np.ones([2], np.float32),
                                                             "cls/b": np.ones([2], np.float32)})
  named = {"bert/a": tf.Variable(tf.zeros([2])), "cls/b": tf.Variable(tf.zeros([2]))}
  report = checkpoint.load_variables(named, prefix, exclude=[r"^cls/"])
  assert list(report.loaded) == ["bert/a"] and report.excluded == ["cls/b"]
  assert report.missing == [] and report.unexpected == []
  assert named["cls/b"].numpy().tolist() == [0.0, 0.0]


# ---- (f) optimizer slots and global_step ----

def test_slots_and_global_step_round_trip_with_restore_all(tmp_path, tiny_config):
  def training_state(seed):
    named, _ = run_eager_albert(tiny_config, make_features(tiny_config))
    slots = {f"{n}/{s}": tf.Variable(tf.zeros(v.shape)) for n, v in named.items() for s in ("adam_m", "adam_v")}
    randomize(slots, seed)
    randomize(named, seed + 1)
    return {**named, **slots, "global_step": tf.Variable(seed, dtype=tf.int64)}

  saved = training_state(seed=40)
  prefix = CheckpointManager(str(tmp_path)).save(40, saved)
  restored = training_state(seed=1)
  report = checkpoint.restore_all(restored, prefix)
  assert len(report.loaded) == len(saved) and report.unexpected == [] and report.training_state == []
  for name, variable in saved.items():
    assert restored[name].dtype == variable.dtype
    np.testing.assert_array_equal(restored[name].numpy(), variable.numpy(), err_msg=name)

  model_only = {n: v for n, v in restored.items() if not n.endswith(("adam_m", "adam_v")) and n != "global_step"}
  report = checkpoint.load_variables(model_only, prefix)
  assert report.unexpected == [] and len(report.training_state) == 2 * len(model_only) + 1
  with pytest.raises(UserError, match=r"cannot resume this run: 1 variables are missing: cls/new/bias$"):
    checkpoint.restore_all({**restored, "cls/new/bias": tf.Variable(tf.zeros([2]))}, prefix)


# ---- (g) MirroredStrategy over two logical CPUs (own process: devices are configured once) ----

MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from albert.io import checkpoint
from albert.model.config import AlbertConfig
from albert.modeling import AlbertModel

config = AlbertConfig(vocab_size=100, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  source = AlbertModel(config)
  source_step = tf.Variable(9, dtype=tf.int64, name="global_step")
  target = AlbertModel(config)
  target_step = tf.Variable(0, dtype=tf.int64, name="global_step")
saved = {**source.named_variables(), "global_step": source_step}
prefix = checkpoint.CheckpointManager(sys.argv[1]).save(9, saved)
reader = tf.train.load_checkpoint(prefix)
checkpoint.load_variables(target.named_variables(), prefix)
loaded_ok = all(len(v.values) == 2 and all(np.array_equal(r.numpy(), reader.get_tensor(n)) for r in v.values)
                for n, v in target.named_variables().items())
with strategy.scope():
  for v in target.named_variables().values():
    v.assign(tf.zeros_like(v))
checkpoint.restore_all({**target.named_variables(), "global_step": target_step}, prefix)
restored_ok = all(np.array_equal(r.numpy(), saved[n].values[0].numpy())
                  for n, v in target.named_variables().items() for r in v.values)
print(json.dumps({
    "mirrored": type(source_step).__name__,
    "saved_ok": all(np.array_equal(reader.get_tensor(n), v.values[0].numpy()) for n, v in saved.items()),
    "loaded_ok": loaded_ok, "restored_ok": restored_ok,
    "step": [int(r.numpy()) for r in target_step.values]}))
"""


def test_mirrored_variables_save_and_load(tmp_path):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}
  result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  outcome = json.loads(result.stdout.strip().splitlines()[-1])
  assert outcome == {"mirrored": "MirroredVariable", "saved_ok": True, "loaded_ok": True, "restored_ok": True,
                     "step": [9, 9]}
