"""Optimizers and schedule against numpy re-implementations of the original update rules (docs/compatibility.md §9)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from albert import optimization
from albert.core.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = "bert/encoder/transformer/group_0/inner_group_0/"
KERNEL = LAYER + "ffn_1/intermediate/dense/kernel"
BIAS = LAYER + "ffn_1/intermediate/dense/bias"
GAMMA = LAYER + "LayerNorm/gamma"
POOLER = "bert/pooler/dense/kernel"
OUTPUT_BIAS = "cls/predictions/output_bias"
EMBEDDINGS = "bert/embeddings/word_embeddings"
DECAYED = {KERNEL, POOLER, EMBEDDINGS}


def initial_values():
  rng = np.random.RandomState(0)
  return {
      KERNEL: rng.normal(size=(3, 4)).astype(np.float32),
      BIAS: rng.normal(size=(4,)).astype(np.float32),
      GAMMA: np.ones(4, np.float32),
      POOLER: np.zeros((2, 2), np.float32),  # ||w|| = 0 on the first LAMB step
      OUTPUT_BIAS: rng.normal(size=(3,)).astype(np.float32),  # zero gradient: ||update|| = 0
  }


def gradients(step, replica=0):
  rng = np.random.RandomState(100 + 10 * step + replica)
  grads = {name: rng.normal(scale=0.5, size=value.shape).astype(np.float32)
           for name, value in initial_values().items()}
  grads[OUTPUT_BIAS] = np.zeros(3, np.float32)
  return grads


def reference_lr(step):
  """create_optimizer(0.01, num_train_steps=10, num_warmup_steps=2), by hand."""
  return 0.01 * step / 2 if step < 2 else 0.01 * (1 - step / 10)


def numpy_step(state, grads, lr, lamb, clip_norm=None):
  """One step of the original AdamW / LAMB in float64 numpy; state maps name -> (w, m, v)."""
  if clip_norm is not None:
    norm = np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in grads.values()))
    grads = {n: g * clip_norm / max(norm, clip_norm) for n, g in grads.items()}
  new_state = {}
  for name, (w, m, v) in state.items():
    g = grads[name].astype(np.float64)
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    update = m / (np.sqrt(v) + 1e-6)
    if name in DECAYED:
      update = update + 0.01 * w
    ratio = 1.0
    if lamb and name in DECAYED:
      w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
      ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    new_state[name] = (w - ratio * lr * update, m, v)
  return new_state


def numpy_run(num_steps, lamb, grads_at=gradients, clip_norm=None, init=None):
  state = {n: (w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape))
           for n, w in (init or initial_values()).items()}
  for step in range(num_steps):
    state = numpy_step(state, grads_at(step), reference_lr(step), lamb, clip_norm)
  return state


def make_variables():
  # Deliberately unrelated `name=`s: the optimizer must use the names given to build().
  return {name: tf.Variable(value, name=f"v{i}") for i, (name, value) in
          enumerate(initial_values().items())}


def assert_matches(variables, optimizer, expected):
  slots = optimizer.named_slot_variables()
  for name, (w, m, v) in expected.items():
    np.testing.assert_allclose(variables[name].numpy(), w, rtol=1e-6, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(slots[name + "/adam_m"].numpy(), m, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(slots[name + "/adam_v"].numpy(), v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["adamw", "lamb"])
@pytest.mark.parametrize("compiled", [False, True])
def test_updates_match_numpy_reference(name, compiled):
  variables = make_variables()
  optimizer, _ = optimization.create_optimizer(0.01, 10, 2, optimizer=name)
  optimizer.build(variables)

  def apply(grads, step):
    optimizer.apply_gradients([(grads[n], variables[n]) for n in variables], step)

  if compiled:
    apply = tf.function(apply, jit_compile=True)
  for step in range(6):
    grads = {n: tf.constant(g) for n, g in gradients(step).items()}
    apply(grads, tf.constant(step, tf.int64))
  assert_matches(variables, optimizer, numpy_run(6, lamb=name == "lamb"))


def test_lamb_trust_ratio_differs_from_adamw():
  """Guards the reference itself: LAMB's ratio must change the decayed kernel's trajectory."""
  adamw, lamb = numpy_run(3, lamb=False), numpy_run(3, lamb=True)
  assert not np.allclose(adamw[KERNEL][0], lamb[KERNEL][0], atol=1e-4)
  np.testing.assert_allclose(adamw[BIAS][0], lamb[BIAS][0])


def test_exclusion_patterns_are_configurable():
  w = tf.Variable([1.0, -2.0], name="x")
  optimizer = optimization.AdamWeightDecay(0.1, exclude_from_weight_decay=["kernel"])
  optimizer.build({"my/LayerNorm/gamma": w})
  optimizer.apply_gradients([(tf.constant([0.0, 0.0]), w)], 0)
  # Zero gradient: only the decay moves w, and LayerNorm is no longer excluded.
  np.testing.assert_allclose(w.numpy(), [1.0 - 0.1 * 0.01, -2.0 + 0.1 * 0.02], rtol=1e-6)


def test_lamb_exclude_from_layer_adaptation():
  w = tf.Variable([3.0, 4.0], name="x")
  optimizer = optimization.LAMB(0.1, weight_decay_rate=0.0, exclude_from_layer_adaptation=["kernel"])
  optimizer.build({"a/kernel": w})
  optimizer.apply_gradients([(tf.constant([1.0, 1.0]), w)], 0)
  update = 0.1 / (np.sqrt(0.001) + 1e-6)  # m / (sqrt(v) + eps) on the first step, ratio 1
  np.testing.assert_allclose(w.numpy(), [3.0 - 0.1 * update, 4.0 - 0.1 * update], rtol=1e-6)


def test_slots_named_after_original_names_and_build_is_idempotent():
  variables = make_variables()
  optimizer, _ = optimization.create_optimizer(1e-3, 10, 0, optimizer="lamb")
  optimizer.build(variables)
  first = optimizer.named_slot_variables()
  optimizer.build(variables)
  second = optimizer.named_slot_variables()
  expected = [f"{n}/{s}" for n in initial_values() for s in ("adam_m", "adam_v")]
  assert list(second) == expected
  assert all(first[k] is second[k] for k in expected)
  assert f"{KERNEL}/adam_m:0" == first[f"{KERNEL}/adam_m"].name
  for name, value in initial_values().items():
    slot = second[name + "/adam_v"]
    assert slot.dtype == tf.float32 and not slot.trainable and slot.shape == value.shape
    assert not slot.numpy().any()
  assert len(optimizer.variables) == 2 * len(variables)  # model variables are not the optimizer's


def test_none_gradients_are_skipped():
  variables = make_variables()
  optimizer, _ = optimization.create_optimizer(0.01, 10, 0)
  optimizer.build(variables)
  optimizer.apply_gradients([(None, variables[KERNEL]), (tf.ones([4]), variables[BIAS])], 0)
  np.testing.assert_array_equal(variables[KERNEL].numpy(), initial_values()[KERNEL])
  assert not optimizer.named_slot_variables()[KERNEL + "/adam_m"].numpy().any()
  assert optimizer.named_slot_variables()[BIAS + "/adam_m"].numpy().all()
  optimizer.apply_gradients([(None, variables[KERNEL])], 1)  # nothing to do


def test_unbuilt_variable_is_rejected():
  optimizer, _ = optimization.create_optimizer(0.01, 10, 0)
  with pytest.raises(ValueError, match="build"):
    optimizer.apply_gradients([(tf.ones([2]), tf.Variable([1.0, 2.0]))], 0)


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_indexed_slices_gradient_equals_dense_reference(name):
  table = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
  embeddings = tf.Variable(table, name="emb")
  optimizer, _ = optimization.create_optimizer(0.1, 10, 0, optimizer=name)
  optimizer.build({"bert/embeddings/word_embeddings": embeddings})
  values = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [-1.0, 0.0, 1.0]], np.float32)
  indices = np.array([2, 0, 2])  # a repeated row sums
  grad = tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([4, 3]))
  optimizer.apply_gradients([(grad, embeddings)], 0)

  dense = np.zeros((4, 3))
  np.add.at(dense, indices, values)
  m, v = 0.1 * dense, 0.001 * dense ** 2
  update = m / (np.sqrt(v) + 1e-6) + 0.01 * table
  ratio = np.linalg.norm(table) / np.linalg.norm(update) if name == "lamb" else 1.0
  np.testing.assert_allclose(embeddings.numpy(), table - ratio * 0.1 * update, rtol=1e-6, atol=1e-6)
  slots = optimizer.named_slot_variables()
  np.testing.assert_allclose(slots["bert/embeddings/word_embeddings/adam_v"].numpy(), v, rtol=1e-6)


def test_schedule_warmup_then_linear_decay():
  schedule = optimization.PolynomialWarmupSchedule(0.1, 100, 10)
  expected = {0: 0.0, 1: 0.01, 5: 0.05, 9: 0.09, 10: 0.09, 50: 0.05, 99: 0.001, 100: 0.0, 150: 0.0}
  for step, lr in expected.items():
    assert float(schedule(step)) == pytest.approx(lr, abs=1e-7), step


def test_schedule_poly_power_two_without_warmup():
  schedule = optimization.PolynomialWarmupSchedule(0.1, 100, 0, poly_power=2.0)
  for step, lr in {0: 0.1, 50: 0.025, 90: 0.001, 100: 0.0}.items():
    assert float(schedule(step)) == pytest.approx(lr, abs=1e-7), step


def test_schedule_start_warmup_step_gives_zero_before_and_unshifted_decay_after():
  schedule = optimization.PolynomialWarmupSchedule(0.1, 100, 10, start_warmup_step=20)
  expected = {0: 0.0, 10: 0.0, 19: 0.0, 20: 0.0, 25: 0.05, 29: 0.09, 30: 0.07, 60: 0.04}
  for step, lr in expected.items():
    assert float(schedule(step)) == pytest.approx(lr, abs=1e-7), step


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_schedule_accepts_integer_tensors_in_tf_function(dtype):
  schedule = optimization.PolynomialWarmupSchedule(0.1, 100, 10)
  compiled = tf.function(schedule, jit_compile=True)
  for step, lr in {5: 0.05, 50: 0.05}.items():
    value = compiled(tf.constant(step, dtype))
    assert value.dtype == tf.float32 and float(value) == pytest.approx(lr, abs=1e-7)


def test_schedule_zero_train_steps_does_not_divide_by_zero():
  assert float(optimization.PolynomialWarmupSchedule(0.1, 0, 0)(0)) == 0.0
  warm = optimization.PolynomialWarmupSchedule(0.1, 0, 4)
  assert [float(warm(s)) for s in (2, 4, 9)] == pytest.approx([0.05, 0.0, 0.0])


def test_schedule_rejects_negative_step_counts():
  with pytest.raises(UserError, match="num_train_steps"):
    optimization.PolynomialWarmupSchedule(0.1, -1, 0)
  with pytest.raises(UserError, match="num_warmup_steps"):
    optimization.PolynomialWarmupSchedule(0.1, 10, -1)


def test_clip_by_global_norm_matches_numpy():
  a = np.array([[3.0, 0.0], [4.0, 1.0]], np.float32)
  rows = np.array([[2.0, 2.0], [1.0, 0.0]], np.float32)
  sparse = tf.IndexedSlices(tf.constant(rows), tf.constant([1, 1]), tf.constant([3, 2]))
  clipped, norm = optimization.clip_by_global_norm([tf.constant(a), None, sparse], 1.0)
  dense = np.zeros((3, 2), np.float32)
  dense[1] = rows.sum(axis=0)  # a repeated row counts once, summed
  expected_norm = np.sqrt((a ** 2).sum() + (dense ** 2).sum())
  assert float(norm) == pytest.approx(expected_norm, rel=1e-6)
  np.testing.assert_allclose(clipped[0].numpy(), a / expected_norm, rtol=1e-6)
  assert clipped[1] is None
  np.testing.assert_allclose(clipped[2].numpy(), dense / expected_norm, rtol=1e-6)


def test_clip_by_global_norm_leaves_small_gradients_and_all_none():
  small = np.array([0.3, -0.4], np.float32)
  clipped, norm = optimization.clip_by_global_norm([tf.constant(small)], 1.0)
  np.testing.assert_allclose(clipped[0].numpy(), small, rtol=1e-6)
  assert float(norm) == pytest.approx(0.5)
  clipped, norm = optimization.clip_by_global_norm([None, None])
  assert clipped == [None, None] and float(norm) == 0.0


def test_clip_scale_is_tensorflows_factor_and_nan_for_a_non_finite_norm():
  grads = [tf.constant([3.0, 4.0]), None, tf.constant([[12.0]])]
  scale, norm = optimization.clip_scale(grads, 2.0)
  assert float(norm) == pytest.approx(13.0) and float(scale) == pytest.approx(2.0 / 13.0)
  assert float(optimization.clip_scale([tf.constant([0.1])], 1.0)[0]) == 1.0
  assert float(optimization.clip_scale([tf.constant([0.0])], 1.0)[0]) == 1.0
  assert np.isnan(float(optimization.clip_scale([tf.constant([np.inf, 1.0])], 1.0)[0]))


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_a_scale_inside_the_update_equals_clipping_first(name):
  """The trainer's path (clip_scale passed to apply_gradients) against clipped copies, for two steps."""
  rng = np.random.default_rng(0)
  start = {n: rng.normal(size=shape).astype(np.float32) for n, shape in (("a/kernel", (4, 3)), ("a/bias", (3,)))}
  grads = [{n: tf.constant(rng.normal(size=v.shape) * 3, tf.float32) for n, v in start.items()} for _ in range(2)]
  results = []
  for fold in (False, True):
    variables = {n: tf.Variable(v, name=n) for n, v in start.items()}
    optimizer, _ = optimization.create_optimizer(0.1, 10, 0, optimizer=name)
    optimizer.build(variables)
    for step, step_grads in enumerate(grads):
      listed = [step_grads[n] for n in variables]
      if fold:
        scale, _ = optimization.clip_scale(listed, 1.0)
        optimizer.apply_gradients(zip(listed, variables.values()), step, gradient_scale=scale)
      else:
        clipped, _ = optimization.clip_by_global_norm(listed, 1.0)
        optimizer.apply_gradients(zip(clipped, variables.values()), step)
    results.append({n: v.numpy() for n, v in variables.items()})
  for n in start:
    np.testing.assert_allclose(results[1][n], results[0][n], rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[1][n], start[n])


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_toy_quadratic_converges(name):
  """The original optimization_test: minimize mean((x - w)^2) from zeros, lr 0.2, 100 steps."""
  w = tf.Variable(tf.zeros([3]), name="w")
  target = tf.constant([0.4, 0.2, -0.5])
  optimizer, _ = optimization.create_optimizer(0.2, 100, 10, optimizer=name)
  optimizer.build({"w": w})

  @tf.function
  def train_step(step):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(target - w))
    grads, _ = optimization.clip_by_global_norm(tape.gradient(loss, [w]), 1.0)
    optimizer.apply_gradients(zip(grads, [w]), step)

  for step in range(100):
    train_step(tf.constant(step, tf.int64))
  np.testing.assert_allclose(w.numpy(), target.numpy(), rtol=1e-2, atol=1e-2)


def test_unknown_optimizer_is_a_user_error():
  with pytest.raises(UserError, match="--optimizer"):
    optimization.create_optimizer(0.1, 10, 0, optimizer="sgd")


# --- MirroredStrategy with two logical CPUs, in a subprocess (logical devices are per process) ----

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from albert import optimization

    spec = json.loads(sys.stdin.read())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    names, steps = spec["names"], spec["steps"]  # steps[step][replica] = {"grads", "ids", "rows"}
    embeddings_name = spec["embeddings"]
    results = {}
    for optimizer_name in ("adamw", "lamb"):
      with strategy.scope():
        variables = {n: tf.Variable(np.array(spec["init"][n], np.float32), name=f"v{i}")
                     for i, n in enumerate(names + [embeddings_name])}
        global_step = tf.Variable(0, dtype=tf.int64, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        optimizer, _ = optimization.create_optimizer(0.01, 10, 2, optimizer=optimizer_name)
        optimizer.build(variables)
      ordered = [variables[n] for n in names + [embeddings_name]]

      def replica_step(inputs):
        with tf.GradientTape() as tape:
          rows = tf.gather(variables[embeddings_name], inputs["ids"])  # IndexedSlices gradient
          loss = tf.add_n([tf.reduce_sum(variables[n] * inputs["grads"][n]) for n in names] +
                          [tf.reduce_sum(rows * inputs["rows"])])
        local = tape.gradient(loss, ordered)
        assert isinstance(local[-1], tf.IndexedSlices)
        context = tf.distribute.get_replica_context()
        averaged = context.all_reduce(tf.distribute.ReduceOp.MEAN, local)
        clipped, _ = optimization.clip_by_global_norm(averaged, 1.0)
        optimizer.apply_gradients(zip(clipped, ordered), global_step)

      def run_step(inputs):
        strategy.run(replica_step, args=(inputs,))
        global_step.assign_add(1)

      compiled = tf.function(run_step)
      for step, per_replica in enumerate(steps):
        def replica_inputs(ctx, per_replica=per_replica):
          data = per_replica[ctx.replica_id_in_sync_group]
          return {"grads": {n: tf.constant(data["grads"][n], tf.float32) for n in names},
                  "ids": tf.constant(data["ids"], tf.int32),
                  "rows": tf.constant(data["rows"], tf.float32)}
        inputs = strategy.experimental_distribute_values_from_function(replica_inputs)
        (run_step if step == 0 else compiled)(inputs)  # one eager step, then graph steps
      tracked = dict(variables, **optimizer.named_slot_variables())
      results[optimizer_name] = {
          name: [c.numpy().tolist() for c in strategy.experimental_local_results(var)]
          for name, var in tracked.items()}
      results[optimizer_name]["global_step"] = int(global_step.numpy())
    print("RESULT " + json.dumps(results))
""")


def embedding_inputs(step, replica):
  rng = np.random.RandomState(500 + 10 * step + replica)
  return rng.randint(0, 5, size=3), rng.normal(scale=0.5, size=(3, 2)).astype(np.float32)


def test_mirrored_strategy_updates_every_copy_consistently():
  """AdamW and LAMB under MirroredStrategy: every copy of variables and slots gets the same update."""
  num_steps = 4
  names = list(initial_values())
  init = dict(initial_values())
  init[EMBEDDINGS] = np.arange(10, dtype=np.float32).reshape(5, 2) / 10
  steps = []
  for step in range(num_steps):
    per_replica = []
    for replica in range(2):
      ids, rows = embedding_inputs(step, replica)
      grads = {n: g.tolist() for n, g in gradients(step, replica).items()}
      per_replica.append({"grads": grads, "ids": ids.tolist(), "rows": rows.tolist()})
    steps.append(per_replica)
  spec = {"names": names, "embeddings": EMBEDDINGS, "steps": steps,
          "init": {n: w.tolist() for n, w in init.items()}}
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], input=json.dumps(spec),
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
  results = json.loads(line[len("RESULT "):])

  def mean_gradients(step):
    """The all-reduced (mean over the two replicas) gradients, embeddings densified."""
    mean = {n: np.zeros(w.shape) for n, w in init.items()}
    for replica in range(2):
      for n, g in gradients(step, replica).items():
        mean[n] += g / 2
      ids, rows = embedding_inputs(step, replica)
      np.add.at(mean[EMBEDDINGS], ids, rows / 2)
    return mean

  for optimizer_name in ("adamw", "lamb"):
    got = results[optimizer_name]
    assert got["global_step"] == num_steps
    expected = numpy_run(num_steps, optimizer_name == "lamb", mean_gradients, clip_norm=1.0,
                         init=init)
    for name, (w, m, v) in expected.items():
      for key, value in ((name, w), (name + "/adam_m", m), (name + "/adam_v", v)):
        assert len(got[key]) == 2, key
        for component in got[key]:
          np.testing.assert_allclose(component, value, rtol=1e-6, atol=1e-6,
                                     err_msg=f"{optimizer_name} {key}")
