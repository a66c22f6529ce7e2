"""The training loop: numerics against numpy, resume, checkpoints, summaries, prediction, float16.

Run as a script (`python tests/test_trainer.py train|train-slow OUTPUT_DIR STEPS`), this file is the
child process of the interruption tests (and of test_distribute.py's multi-device checks).
"""

import glob
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from albert.core.errors import UserError
from albert.core.precision import compute_dtype
from albert.io import checkpoint
from albert.training import loss_scale, trainer
from albert.training import task as task_base

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

FEATURES = 3
BATCH = 4
DISTINCT_BATCHES = 4
WEIGHT = "cls/squad/output_weights"
BIAS = "cls/squad/output_bias"
UNUSED = "bert/pooler/dense/kernel"
INITIAL = {WEIGHT: np.array([[0.5, -0.3, 0.2]], np.float32), BIAS: np.array([0.1], np.float32),
           UNUSED: np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)}


def toy_data(rows=BATCH * DISTINCT_BATCHES, seed=0):
  """Regression rows y = x . [2, -1, 0.5] + 3 + noise; large enough that step 1 is clipped."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, size=(rows, FEATURES)).astype(np.float32)
  y = (x @ np.array([2.0, -1.0, 0.5], np.float32) + 3.0
       + rng.normal(scale=0.1, size=rows)).astype(np.float32)
  return {"x": x, "y": y, "unique_ids": np.arange(1000, 1000 + rows, dtype=np.int64)}


class ToyTask(task_base.Task):
  """Linear regression with a head named like the original SQuAD v1 head, plus an unused variable
  (like the pooler in SQuAD) that gets no gradient.
  """

  def __init__(self, compute_dtype=tf.float32, initial=None):
    self.compute_dtype = compute_dtype
    self.initial = INITIAL if initial is None else initial
    self.variables = None

  def build(self):
    self.variables = {name: tf.Variable(value, name=name) for name, value in self.initial.items()}

  def named_variables(self):
    return dict(self.variables)

  def _predictions(self, features):
    x = tf.cast(features["x"], self.compute_dtype)
    weights = tf.cast(self.variables[WEIGHT], self.compute_dtype)
    bias = tf.cast(self.variables[BIAS], self.compute_dtype)
    return tf.cast(tf.linalg.matvec(x, weights[0]) + bias[0], tf.float32)

  def compute_loss(self, features, training):
    return tf.reduce_mean(tf.square(self._predictions(features) - features["y"]))

  def predict_step(self, features):
    return {"unique_ids": features["unique_ids"], "prediction": self._predictions(features)}

  def eval_step(self, features):
    errors = tf.square(self._predictions(features) - features["y"])
    return {"mse": (tf.reduce_sum(errors), tf.cast(tf.size(errors), tf.float32)),
            "count": tf.cast(tf.size(errors), tf.float32)}


def toy_dataset_fn(data=None, repeat=True, delay=0.0, global_batch_size=BATCH):
  """Per-replica batches of `data` in order (repeated), optionally slowed down per batch.

  Every global batch holds the same rows whatever the number of workers and replicas.
  """
  data = toy_data() if data is None else data

  def dataset_fn(input_context):
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(per_replica, drop_remainder=True)
    dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if repeat:
      dataset = dataset.repeat()
    if delay:
      dataset = dataset.map(lambda features: _after_a_pause(features, delay))
    return dataset

  return dataset_fn


def _after_a_pause(features, delay):
  """The batch unchanged, static shapes included, once `delay` seconds have passed.

  The pause runs as a control dependency rather than being added to the data: adding it left `x` of
  unknown shape, the training step was traced for that shape, and on TensorFlow 2.21 its rounding
  then differed in the last bit from the parent's static-shape run, failing the resume comparison.
  """
  pause = tf.py_function(_sleep, [delay], tf.float32)
  with tf.control_dependencies([pause]):
    return {name: tf.identity(value) for name, value in features.items()}


def _sleep(seconds):
  time.sleep(float(seconds))
  return np.float32(0.0)


def toy_trainer(output_dir, strategy=None, task=None, **kwargs):
  settings = dict(learning_rate=0.05, num_train_steps=24, num_warmup_steps=0, save_checkpoints_steps=4,
                  keep_checkpoint_max=0, iterations_per_loop=1, log_every_n_steps=1)
  settings.update(kwargs)
  return trainer.Trainer(task or ToyTask(), strategy or tf.distribute.get_strategy(), str(output_dir),
                         **settings)


def read_checkpoint(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def assert_same_state(a, b, rtol=0.0):
  """Equal checkpoints: exactly, or within `rtol` where the two were computed in different processes."""
  assert sorted(a) == sorted(b)
  for name in a:
    if rtol and np.issubdtype(a[name].dtype, np.floating):
      np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=1e-9, err_msg=name)
    else:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---- an independent numpy re-computation of the original AdamW with clipping ----

def numpy_training(data, steps, learning_rate, num_train_steps):
  """States after each step: weights, adam_m/adam_v (no bias correction), clip at global norm 1."""
  w = INITIAL[WEIGHT].astype(np.float64)
  b = INITIAL[BIAS].astype(np.float64)
  m = {WEIGHT: np.zeros_like(w), BIAS: np.zeros_like(b)}
  v = {WEIGHT: np.zeros_like(w), BIAS: np.zeros_like(b)}
  states = []
  for step in range(steps):
    rows = slice((step % DISTINCT_BATCHES) * BATCH, (step % DISTINCT_BATCHES + 1) * BATCH)
    x, y = data["x"][rows].astype(np.float64), data["y"][rows].astype(np.float64)
    residual = x @ w[0] + b[0] - y
    grads = {WEIGHT: (2.0 / BATCH * residual @ x)[None, :], BIAS: np.array([2.0 / BATCH * residual.sum()])}
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    grads = {name: g / max(norm, 1.0) for name, g in grads.items()}
    lr = learning_rate * (1.0 - step / num_train_steps)
    for name, value in ((WEIGHT, w), (BIAS, b)):
      m[name] = 0.9 * m[name] + 0.1 * grads[name]
      v[name] = 0.999 * v[name] + 0.001 * grads[name] ** 2
      update = m[name] / (np.sqrt(v[name]) + 1e-6)
      if name == WEIGHT:  # "bias" names are excluded from weight decay
        update = update + 0.01 * value
      value -= lr * update
    states.append({WEIGHT: w.copy(), BIAS: b.copy(), f"{WEIGHT}/adam_m": m[WEIGHT].copy(),
                   f"{WEIGHT}/adam_v": v[WEIGHT].copy(), f"{BIAS}/adam_m": m[BIAS].copy(),
                   f"{BIAS}/adam_v": v[BIAS].copy(), "norm": norm})
  return states


def test_steps_match_numpy_reference(tmp_path):
  data = toy_data()
  run = toy_trainer(tmp_path, num_train_steps=10, save_checkpoints_steps=1)
  assert run.train(toy_dataset_fn(data, repeat=False), BATCH) == 4  # the input ends after 4 steps
  expected = numpy_training(data, 4, 0.05, 10)
  assert expected[0]["norm"] > 1.5  # the first step is clipped
  for step in (1, 2, 4):
    saved = read_checkpoint(os.path.join(tmp_path, f"model.ckpt-{step}"))
    assert saved["global_step"] == step
    np.testing.assert_array_equal(saved[UNUSED], INITIAL[UNUSED])
    for name, value in expected[step - 1].items():
      if name != "norm":
        np.testing.assert_allclose(saved[name], value, rtol=2e-5, atol=1e-6, err_msg=f"{name} @ {step}")
  # The unused variable has slots (built for every variable) that stay zero, as it never gets a gradient.
  np.testing.assert_array_equal(saved[f"{UNUSED}/adam_m"], 0.0)


def test_training_reduces_loss_and_evaluate_averages(tmp_path):
  data = toy_data()
  run = toy_trainer(tmp_path, learning_rate=0.2, num_train_steps=80, save_checkpoints_steps=40,
                    iterations_per_loop=40, log_every_n_steps=40)
  initial_mse = np.mean((data["x"] @ INITIAL[WEIGHT][0] + INITIAL[BIAS][0] - data["y"]) ** 2)
  run.train(toy_dataset_fn(data), BATCH)
  weights = run.task.variables[WEIGHT].numpy()[0]
  bias = run.task.variables[BIAS].numpy()[0]
  final_mse = np.mean((data["x"] @ weights + bias - data["y"]) ** 2)
  assert final_mse < initial_mse / 20
  results = run.evaluate(toy_dataset_fn(data, repeat=False, global_batch_size=3))
  assert results["global_step"] == 80
  assert results["count"] == 15.0  # 16 rows in batches of 3 with drop_remainder: 5 batches
  rows = slice(0, 15)
  expected = np.mean((data["x"][rows] @ weights + bias - data["y"][rows]) ** 2)
  np.testing.assert_allclose(results["mse"], expected, rtol=1e-5)
  limited = run.evaluate(toy_dataset_fn(data, repeat=False, global_batch_size=3), steps=2)
  assert limited["count"] == 6.0


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
  data = toy_data()
  whole = toy_trainer(tmp_path / "whole")
  whole.train(toy_dataset_fn(data), BATCH)
  # The "interrupted" run: its input ends after 10 steps (the last checkpoint is at step 8)...
  first = toy_trainer(tmp_path / "resumed")
  first.train(toy_dataset_fn({k: np.concatenate([v] * 3)[:40] for k, v in data.items()}, repeat=False),
              BATCH)
  assert first.global_step == 10
  os.remove(tmp_path / "resumed" / "model.ckpt-10.index")  # as if killed before saving step 10
  # ... and a new Trainer on the same directory resumes from step 8 to the end.
  second = toy_trainer(tmp_path / "resumed")
  assert second.initialize().startswith("resumed from")
  assert second.global_step == 8
  second.train(toy_dataset_fn(data), BATCH)
  assert_same_state(read_checkpoint(str(tmp_path / "whole" / "model.ckpt-24")),
                    read_checkpoint(str(tmp_path / "resumed" / "model.ckpt-24")))


def test_init_checkpoint_seeds_fresh_runs_only(tmp_path):
  seed = {WEIGHT: np.array([[1.0, 1.0, 1.0]], np.float32), "bert/extra/unexpected": np.ones(2, np.float32)}
  checkpoint.save_checkpoint(str(tmp_path / "pretrained" / "model.ckpt-7"), seed)
  run = toy_trainer(tmp_path / "run", num_train_steps=4)
  description = run.initialize(init_checkpoint=str(tmp_path / "pretrained"))
  assert "initialized 1 of 3 variables" in description
  np.testing.assert_array_equal(run.task.variables[WEIGHT].numpy(), seed[WEIGHT])
  np.testing.assert_array_equal(run.task.variables[BIAS].numpy(), INITIAL[BIAS])  # fresh head
  assert run.global_step == 0  # init_checkpoint never restores the step or the slots
  run.train(toy_dataset_fn(), BATCH)
  trained = run.task.variables[WEIGHT].numpy()

  rerun = toy_trainer(tmp_path / "run", num_train_steps=4)
  description = rerun.initialize(init_checkpoint=str(tmp_path / "pretrained"))
  assert "resumed from" in description and "ignored" in description
  np.testing.assert_array_equal(rerun.task.variables[WEIGHT].numpy(), trained)
  assert rerun.global_step == 4


def test_missing_init_checkpoint_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="--init_checkpoint"):
    toy_trainer(tmp_path).initialize(init_checkpoint=str(tmp_path / "nope" / "model.ckpt-1"))


def test_keep_checkpoint_max_prunes_old_checkpoints(tmp_path):
  toy_trainer(tmp_path, num_train_steps=10, save_checkpoints_steps=2, keep_checkpoint_max=2).train(
      toy_dataset_fn(), BATCH)
  indexes = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "model.ckpt-*.index")))
  assert indexes == ["model.ckpt-10.index", "model.ckpt-8.index"]
  assert checkpoint.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-10")


def test_iterations_per_loop_does_not_change_results(tmp_path):
  for loop in (1, 5):
    toy_trainer(tmp_path / str(loop), num_train_steps=12, save_checkpoints_steps=12, iterations_per_loop=loop,
                log_every_n_steps=100).train(toy_dataset_fn(), BATCH)
  assert_same_state(read_checkpoint(str(tmp_path / "1" / "model.ckpt-12")),
                    read_checkpoint(str(tmp_path / "5" / "model.ckpt-12")))


def read_scalars(directory):
  from tensorflow.core.util import event_pb2
  scalars = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return scalars


def test_summaries_hold_loss_and_learning_rate(tmp_path):
  data = toy_data()
  run = toy_trainer(tmp_path, num_train_steps=6, num_warmup_steps=2, iterations_per_loop=3,
                    log_every_n_steps=2, save_checkpoints_steps=6)
  run.train(toy_dataset_fn(data), BATCH)
  scalars = read_scalars(str(tmp_path))
  assert {"loss", "learning_rate", "gradient_global_norm", "examples/sec"} <= set(scalars)
  assert sorted(scalars["loss"]) == [2, 4, 6]
  # The learning rate of the last step of each interval: warmup 0.05 * s / 2, then linear decay.
  assert scalars["learning_rate"] == pytest.approx({2: 0.05 * 1 / 2, 4: 0.05 * (1 - 3 / 6),
                                                    6: 0.05 * (1 - 5 / 6)})
  # Steps 1 and 2 run at learning rate 0 and 0.025; the loss of step 2 is measured before its update.
  after_step_1 = numpy_training(data, 1, 0.0, 6)[0]

  def batch_mse(index, state):
    rows = slice(index * BATCH, (index + 1) * BATCH)
    return np.mean((data["x"][rows] @ state[WEIGHT][0] + state[BIAS][0] - data["y"][rows]) ** 2)

  expected = (batch_mse(0, INITIAL) + batch_mse(1, after_step_1)) / 2
  assert scalars["loss"][2] == pytest.approx(expected, rel=1e-5)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
  data = toy_data()
  data["y"][2 * BATCH] = np.nan  # the third batch
  run = toy_trainer(tmp_path, num_train_steps=10, save_checkpoints_steps=2, iterations_per_loop=10,
                    log_every_n_steps=10)
  with pytest.raises(trainer.NonFiniteLossError, match=r"loss is nan at step 3.*model\.ckpt-2"):
    run.train(toy_dataset_fn(data), BATCH)
  assert checkpoint.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-2")


def test_training_past_num_train_steps_is_a_no_op(tmp_path):
  toy_trainer(tmp_path, num_train_steps=4).train(toy_dataset_fn(), BATCH)
  before = read_checkpoint(str(tmp_path / "model.ckpt-4"))
  again = toy_trainer(tmp_path, num_train_steps=4)
  assert again.train(toy_dataset_fn(), BATCH) == 4
  assert_same_state(before, read_checkpoint(str(tmp_path / "model.ckpt-4")))
  assert len(glob.glob(str(tmp_path / "model.ckpt-*.index"))) == 1


def test_predict_keeps_order_and_the_partial_last_batch(tmp_path):
  data = toy_data(rows=10, seed=3)
  run = toy_trainer(tmp_path)
  run.initialize()

  def batched(input_context):
    return tf.data.Dataset.from_tensor_slices(data).batch(3)

  predictions = list(run.predict(batched, global_batch_size=4))
  assert [int(p["unique_ids"]) for p in predictions] == list(range(1000, 1010))
  expected = data["x"] @ INITIAL[WEIGHT][0] + INITIAL[BIAS][0]
  np.testing.assert_allclose([p["prediction"] for p in predictions], expected, rtol=1e-6)
  again = list(run.predict(tf.data.Dataset.from_tensor_slices(data).batch(10), global_batch_size=8))
  assert [int(p["unique_ids"]) for p in again] == list(range(1000, 1010))


def test_restore_for_inference(tmp_path):
  with pytest.raises(UserError, match="no checkpoint in --output_dir"):
    toy_trainer(tmp_path / "empty").restore_for_inference()
  run = toy_trainer(tmp_path / "run", num_train_steps=8)
  run.train(toy_dataset_fn(), BATCH)
  after_4 = read_checkpoint(str(tmp_path / "run" / "model.ckpt-4"))

  latest = toy_trainer(tmp_path / "run")
  assert latest.restore_for_inference().endswith("model.ckpt-8")
  assert latest.global_step == 8
  explicit = toy_trainer(tmp_path / "run")
  explicit.restore_for_inference(checkpoint=str(tmp_path / "run" / "model.ckpt-4"))
  np.testing.assert_array_equal(explicit.task.variables[WEIGHT].numpy(), after_4[WEIGHT])
  assert explicit.global_step == 4
  with pytest.raises(UserError, match="checkpoint not found"):
    explicit.restore_for_inference(checkpoint=str(tmp_path / "run" / "model.ckpt-best"))
  seeded = toy_trainer(tmp_path / "fresh")
  seeded.restore_for_inference(init_checkpoint=str(tmp_path / "run" / "model.ckpt-4"))
  np.testing.assert_array_equal(seeded.task.variables[WEIGHT].numpy(), after_4[WEIGHT])

  other_task = toy_trainer(tmp_path / "run", task=ToyTask(initial={**INITIAL, "cls/other/bias": np.zeros(1)}))
  with pytest.raises(UserError, match="lacks 1 variables"):
    other_task.restore_for_inference()


def test_float16_loss_scaling_skips_a_step_with_infinite_gradients(tmp_path):
  data = {k: v / 10 if k != "unique_ids" else v for k, v in toy_data().items()}  # fits float16 at 2**15
  data["y"][BATCH:2 * BATCH] = 1e6  # batch 2: float16 gradients overflow even at loss scale 1
  run = toy_trainer(tmp_path, task=ToyTask(tf.float16), precision="float16", num_train_steps=3,
                    save_checkpoints_steps=1)
  run.train(toy_dataset_fn(data), BATCH)
  states = [read_checkpoint(str(tmp_path / f"model.ckpt-{s}")) for s in (1, 2, 3)]
  assert states[1]["global_step"] == 2
  for name in (WEIGHT, BIAS, f"{WEIGHT}/adam_m", f"{WEIGHT}/adam_v"):
    np.testing.assert_array_equal(states[1][name], states[0][name], err_msg=name)  # skipped
    assert not np.array_equal(states[2][name], states[1][name]), name  # applied again
  assert run.loss_scale.scale.numpy() == 2.0 ** 14  # halved once from 2**15
  expected = numpy_training(data, 1, 0.05, 3)[0]
  np.testing.assert_allclose(states[0][WEIGHT], expected[WEIGHT], rtol=2e-3)  # float16 forward


def test_dynamic_loss_scale_grows_after_good_steps():
  scale = loss_scale.DynamicLossScale(initial_scale=8.0, growth_interval=2)
  for finite, expected in ((True, 8.0), (True, 16.0), (False, 8.0), (True, 8.0), (True, 16.0)):
    scale.update(tf.constant(finite))
    assert scale.scale.numpy() == expected
  tiny = loss_scale.DynamicLossScale(initial_scale=1.0)
  tiny.update(tf.constant(False))
  assert tiny.scale.numpy() == 1.0


def test_jit_compile_gives_the_same_training(tmp_path):
  for jit in (False, True):
    toy_trainer(tmp_path / str(jit), num_train_steps=6, save_checkpoints_steps=6, iterations_per_loop=3,
                jit_compile=jit).train(toy_dataset_fn(), BATCH)
  plain, compiled = (read_checkpoint(str(tmp_path / str(jit) / "model.ckpt-6")) for jit in (False, True))
  for name in plain:
    np.testing.assert_allclose(compiled[name], plain[name], rtol=1e-5, atol=1e-7, err_msg=name)


class TinyAlbertClassifier(task_base.Task):
  """The real tiny AlbertModel with a GLUE-style classifier head (original head names)."""

  def __init__(self, config, compute_dtype=tf.float32):
    self.config = config
    self.compute_dtype = compute_dtype

  def build(self):
    from albert import modeling
    self.model = modeling.AlbertModel(self.config, compute_dtype=self.compute_dtype)
    self.output_weights = modeling.create_variable("output_weights", [2, self.config.hidden_size], 0.02)
    self.output_bias = modeling.create_variable("output_bias", [2], None)

  def named_variables(self):
    return {**self.model.named_variables(), "output_weights": self.output_weights,
            "output_bias": self.output_bias}

  def compute_loss(self, features, training):
    from albert import modeling
    pooled = self.model(features["input_ids"], features["input_mask"], training=training).pooled_output
    logits = tf.cast(modeling.dense(pooled, tf.transpose(self.output_weights), self.output_bias), tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(features["label"], logits))


def albert_dataset_fn(input_context):
  rng = np.random.default_rng(5)
  ids = rng.integers(5, 2000, size=(8, 16)).astype(np.int32)
  data = {"input_ids": ids, "input_mask": np.ones_like(ids), "label": (ids[:, 0] % 2).astype(np.int32)}
  return tf.data.Dataset.from_tensor_slices(data).batch(
      input_context.get_per_replica_batch_size(4), drop_remainder=True).repeat()


def test_tiny_albert_resume_is_bit_exact(tmp_path, tiny_config):
  def albert_trainer(name):
    return toy_trainer(tmp_path / name, task=TinyAlbertClassifier(tiny_config), learning_rate=1e-3,
                       num_train_steps=4, save_checkpoints_steps=2, iterations_per_loop=2,
                       log_every_n_steps=2)

  albert_trainer("whole").train(albert_dataset_fn, 4)
  final = read_checkpoint(str(tmp_path / "whole" / "model.ckpt-4"))
  assert "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel/adam_m" in final
  # A run interrupted after the step-2 checkpoint, resumed by a new Trainer:
  checkpoint.copy_checkpoint(str(tmp_path / "whole" / "model.ckpt-2"),
                             str(tmp_path / "resumed" / "model.ckpt-2"))
  resumed = albert_trainer("resumed")
  assert resumed.initialize().startswith("resumed from")
  resumed.train(albert_dataset_fn, 4)
  assert_same_state(final, read_checkpoint(str(tmp_path / "resumed" / "model.ckpt-4")))


def test_tiny_albert_trains_in_float16(tmp_path, tiny_config):
  run = toy_trainer(tmp_path, task=TinyAlbertClassifier(tiny_config, tf.float16), precision="float16",
                    learning_rate=1e-3, num_train_steps=2, iterations_per_loop=2, log_every_n_steps=2)
  run.train(albert_dataset_fn, 4)
  saved = read_checkpoint(str(tmp_path / "model.ckpt-2"))
  assert saved["bert/embeddings/word_embeddings"].dtype == np.float32
  assert np.all(np.isfinite(saved["output_weights"]))


def test_helpers_and_bad_arguments(tmp_path):
  assert trainer.num_train_steps_from_epochs(130319, 48, 2.0) == 5429
  assert trainer.num_warmup_steps(5429, 0.1) == 542
  assert compute_dtype("bfloat16") == tf.bfloat16
  with pytest.raises(UserError, match="--precision"):
    compute_dtype("float8")
  with pytest.raises(UserError, match="--save_checkpoints_steps"):
    toy_trainer(tmp_path, save_checkpoints_steps=0)
  with pytest.raises(UserError, match="--train_batch_size=3 is not divisible"):
    class FakeStrategy:
      num_replicas_in_sync = 2
    run = toy_trainer(tmp_path)
    run.initialize()
    run.strategy = FakeStrategy()
    run.train(toy_dataset_fn(), 3)


# ---- interruption in a real process ----

def start_child(mode, output_dir, steps, **popen_kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), mode, str(output_dir), str(steps)],
                          env=env, cwd=REPO_ROOT, **popen_kwargs)


def wait_for(condition, process, timeout=180):
  deadline = time.time() + timeout
  while not condition():
    assert process.poll() is None, "the training process ended early"
    assert time.time() < deadline, "timed out waiting for the training process"
    time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_completes_like_an_uninterrupted_run(tmp_path):
  killed_dir = tmp_path / "killed"
  child = start_child("train-slow", killed_dir, 24, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_for(lambda: os.path.exists(killed_dir / "model.ckpt-8.index"), child)
    child.send_signal(signal.SIGKILL)
  finally:
    child.wait()
  assert child.returncode == -signal.SIGKILL
  assert not os.path.exists(killed_dir / "model.ckpt-24.index")
  rerun = toy_trainer(killed_dir)
  assert rerun.initialize().startswith("resumed from")
  rerun.train(toy_dataset_fn(), BATCH)
  toy_trainer(tmp_path / "whole").train(toy_dataset_fn(), BATCH)
  # The killed run's first 8 steps ran in another process, whose multi-threaded float reductions can
  # round the last bit differently (a 1e-10 difference in an Adam slot when this test runs alone);
  # the step count and everything else must match.
  assert_same_state(read_checkpoint(str(tmp_path / "whole" / "model.ckpt-24")),
                    read_checkpoint(str(killed_dir / "model.ckpt-24")), rtol=1e-6)


@pytest.mark.slow
def test_sigterm_saves_the_current_step_before_exiting(tmp_path):
  child = start_child("train-slow", tmp_path, 1000, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                      text=True)
  lines = []
  try:
    for line in child.stderr:
      lines.append(line)
      if "step 3/1000" in line:
        child.send_signal(signal.SIGTERM)
        break
    lines += child.stderr.readlines()
  finally:
    child.wait(timeout=120)
  log = "".join(lines)
  assert child.returncode == -signal.SIGTERM, log
  assert "received SIGTERM" in log
  latest = checkpoint.latest_checkpoint(str(tmp_path))
  step = int(latest.rsplit("-", 1)[1])
  assert 3 <= step < 1000  # saved mid-way, not at a save_checkpoints_steps boundary (1000)
  assert read_checkpoint(latest)["global_step"] == step


def _child_main(mode, output_dir, steps):
  """Trains the toy task in a child process; `train-slow` sleeps 0.1 s per batch."""
  from absl import logging
  logging.set_verbosity(logging.INFO)
  delay = 0.1 if mode == "train-slow" else 0.0
  save = 1000 if steps >= 1000 else 4
  toy_trainer(output_dir, num_train_steps=steps, save_checkpoints_steps=save).train(
      toy_dataset_fn(delay=delay), BATCH)


if __name__ == "__main__":
  _child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
