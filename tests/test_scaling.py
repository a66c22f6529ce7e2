"""Large-model training aids: gradient accumulation and recomputation of the encoder's blocks.

Accumulation must be invisible to the maths: one optimizer step on N micro-batches equals one step on
the whole batch (AdamW and LAMB, whose trust ratio must see the summed gradient), also under
MirroredStrategy. Recomputation must give the gradients of the plain backward pass, dropout included.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO_ROOT

from albert.core.errors import UserError
from albert.model.config import AlbertConfig
from albert.model.encoder import AlbertModel
from albert.training.trainer import check_batch_split

TINY = dict(vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=1,
            num_attention_heads=4, intermediate_size=64, inner_group_num=1, max_position_embeddings=32,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

# One optimizer step with and without accumulation, per strategy and optimizer, in a fresh process
# (MirroredStrategy needs two logical CPUs, which are configured before anything else).
ACCUMULATION_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
(cpu,) = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from albert.model import heads
from albert.model.config import AlbertConfig
from albert.tasks.classification.task import ClassifierTask

heads.CLASSIFIER_DROPOUT = 0.0  # the head's fixed dropout would draw other masks in the two runs
from albert.training import optimization
from albert.training.step import TrainStep

config = AlbertConfig(**json.loads(sys.argv[1]))
rng = np.random.default_rng(0)
batch, length = 8, 12
lengths = rng.integers(4, length + 1, batch)
mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
data = {"input_ids": (rng.integers(5, config.vocab_size, (batch, length)) * mask).astype(np.int32),
        "input_mask": mask, "segment_ids": np.zeros((batch, length), np.int32),
        "label_ids": rng.integers(0, 3, batch).astype(np.int32)}

def one_step(strategy, optimizer_name, accumulation_steps, initial=None):
  task = ClassifierTask(config, num_labels=3)
  with strategy.scope():
    task.build()
    variables = task.named_variables()
    if initial is not None:
      for name, value in initial.items():
        variables[name].assign(value)
    optimizer, _ = optimization.create_optimizer(1e-2, 10, 0, optimizer=optimizer_name)
    optimizer.build(variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
  step = TrainStep(task, strategy, optimizer, variables, global_step, clip_norm=0.5,
                   accumulation_steps=accumulation_steps)
  dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch // accumulation_steps)
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  loss, norm, _ = tf.function(lambda: step(iterator))()
  values = {name: v.numpy() if not hasattr(v, "values") else v.values[0].numpy() for name, v in variables.items()}
  return values, float(loss), float(norm), int(global_step.numpy())

results = {}
strategies = {"one device": tf.distribute.OneDeviceStrategy("CPU:0"),
              "mirrored x2": tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])}
for strategy_name, strategy in strategies.items():
  for optimizer_name in ("adamw", "lamb"):
    task = ClassifierTask(config, num_labels=3)
    task.build()
    initial = {name: v.numpy() for name, v in task.named_variables().items()}
    whole, loss1, norm1, steps1 = one_step(strategy, optimizer_name, 1, initial)
    split, loss4, norm4, steps4 = one_step(strategy, optimizer_name, 4, initial)
    moved = max(float(np.max(np.abs(whole[n] - initial[n]))) for n in whole)
    results[f"{strategy_name} {optimizer_name}"] = {
        "max_difference": max(float(np.max(np.abs(whole[n] - split[n]))) for n in whole),
        "largest_update": moved, "losses": [loss1, loss4], "norms": [norm1, norm4], "steps": [steps1, steps4]}
print("RESULT " + json.dumps(results))
"""


def test_one_accumulated_step_equals_one_step_on_the_whole_batch():
  result = subprocess.run([sys.executable, "-c", ACCUMULATION_SCRIPT, json.dumps(TINY)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
  assert set(results) == {"one device adamw", "one device lamb", "mirrored x2 adamw", "mirrored x2 lamb"}
  for case, figures in results.items():
    assert figures["steps"] == [1, 1], case  # one optimizer step, whatever the micro-batch count
    assert figures["largest_update"] > 1e-3, case  # the step really moved the weights
    assert figures["max_difference"] < 1e-5, (case, figures)
    np.testing.assert_allclose(*figures["losses"], rtol=1e-5, err_msg=case)
    np.testing.assert_allclose(*figures["norms"], rtol=1e-5, err_msg=case)  # clipping saw the same sum


def test_the_batch_must_split_into_micro_batches_and_replicas():
  assert check_batch_split(32, 4, 2) == 8
  with pytest.raises(UserError, match=r"^--train_batch_size=30 is not divisible by "
                                       r"--gradient_accumulation_steps=4 x the 2 replicas \(needs a multiple of 8\)$"):
    check_batch_split(30, 4, 2)
  from albert.tasks.classification import runner
  fv = flags.FlagValues()
  runner.define_flags(fv)
  with pytest.raises(flags.IllegalFlagValueError, match="--train_batch_size=30 must be a multiple of "
                                                        "--gradient_accumulation_steps=4"):
    fv(["run_classifier", "--train_batch_size=30", "--gradient_accumulation_steps=4"])


def _encoder_gradients(model, ids, mask, seed):
  with tf.GradientTape() as tape:
    tf.random.set_seed(seed)
    outputs = model(ids, mask, training=True)
    loss = tf.reduce_sum(outputs.sequence_output ** 2) + tf.reduce_sum(outputs.pooled_output)
  return loss, tape.gradient(loss, list(model.named_variables().values()))


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_recomputed_blocks_give_the_plain_gradients(dropout):
  config = AlbertConfig(**{**TINY, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout})
  tf.random.set_seed(1)
  model = AlbertModel(config)
  rng = np.random.default_rng(1)
  ids = tf.constant(rng.integers(5, 300, (3, 10)), tf.int32)
  mask = tf.constant((np.arange(10)[None, :] < np.array([[10], [7], [4]])).astype(np.int32))
  if dropout:
    # Plain blocks with the stateless masks the recomputed ones draw: same seeds, same masks.
    plain = model._block
    seeds = iter(tf.random.Generator.from_seed(5).uniform_full_int([config.num_hidden_layers, 2], tf.int32))
    model._block = lambda *args: plain(*args, seed=next(seeds))
    expected_loss, expected = _encoder_gradients(model, ids, mask, 0)
    del model._block
    seeds = iter(tf.random.Generator.from_seed(5).uniform_full_int([config.num_hidden_layers, 2], tf.int32))
    draw = tf.random.uniform
    tf.random.uniform = lambda *args, **kwargs: next(seeds)
    try:
      model.recompute_grad = True
      loss, grads = _encoder_gradients(model, ids, mask, 0)
    finally:
      tf.random.uniform = draw
  else:
    expected_loss, expected = _encoder_gradients(model, ids, mask, 0)
    model.recompute_grad = True
    loss, grads = _encoder_gradients(model, ids, mask, 0)
  np.testing.assert_allclose(loss.numpy(), expected_loss.numpy(), rtol=1e-6)
  assert len(grads) == len(expected)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy(),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_recomputed_groups_and_inner_groups_give_the_plain_gradients(dtype, tolerance):
  """Two groups of two inner blocks over five layers (steps share blocks unevenly), with every layer's
  output in the loss, so gradients also enter the stack between steps; bfloat16 sums in float32."""
  config = AlbertConfig(**{**TINY, "num_hidden_layers": 5, "num_hidden_groups": 2, "inner_group_num": 2})
  tf.random.set_seed(3)
  model = AlbertModel(config, compute_dtype=dtype)
  ids = tf.constant(np.random.default_rng(3).integers(5, 300, (2, 9)), tf.int32)
  mask = tf.constant((np.arange(9)[None, :] < np.array([[9], [5]])).astype(np.int32))
  # Random read-outs, not sums of squares: LayerNorm outputs have a near-constant square sum, whose
  # gradients cancel down to rounding noise.
  readouts = tf.constant(np.random.default_rng(4).normal(size=(10, 2, 9, 32)), tf.float32)

  def gradients():
    with tf.GradientTape() as tape:
      outputs = model(ids, mask, training=True)
      loss = sum(tf.reduce_sum(tf.cast(layer, tf.float32) * readouts[k])
                 for k, layer in enumerate(outputs.all_encoder_layers))
      loss += tf.reduce_sum(tf.cast(outputs.pooled_output, tf.float32))
    return tape.gradient(loss, list(model.named_variables().values()))

  expected = tf.function(gradients)()
  model.recompute_grad = True
  got = tf.function(gradients)()
  assert len(got) == len(expected) == len(model.named_variables())
  for name, a, b in zip(model.named_variables(), got, expected):
    want = tf.convert_to_tensor(b).numpy()
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(tf.convert_to_tensor(a).numpy() / scale, want / scale, atol=tolerance, err_msg=name)


def test_recompute_grad_in_a_graph_step_matches(tmp_path):
  """The same through tf.function (how the trainer runs it), with the model's own seed draws."""
  config = AlbertConfig(**TINY)
  tf.random.set_seed(2)
  model = AlbertModel(config)
  ids = tf.constant(np.random.default_rng(2).integers(5, 300, (2, 8)), tf.int32)
  step = tf.function(lambda: _encoder_gradients(model, ids, None, 0)[1])
  expected = step()
  model.recompute_grad = True
  got = tf.function(lambda: _encoder_gradients(model, ids, None, 0)[1])()
  for a, b in zip(got, expected):
    np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(), atol=1e-5)


@pytest.mark.slow
def test_kill_9_during_accumulated_training_resumes_at_the_last_optimizer_step(tmp_path):
  """Checkpoints hold optimizer steps only: a kill between micro-batches loses at most the step in flight."""
  import signal
  import time
  from test_run_pretraining import make_instances, write_config, write_records

  from albert.io import checkpoint
  data = write_records(tmp_path / "train.tfrecord", make_instances(40, seed=4))
  out = tmp_path / "out"
  args = [f"--albert_config_file={write_config(tmp_path / 'config.json')}", f"--input_file={data}",
          f"--output_dir={out}", "--max_seq_length=32", "--max_predictions_per_seq=5", "--train_batch_size=8",
          "--gradient_accumulation_steps=4", "--num_warmup_steps=0", "--learning_rate=1e-3", "--num_train_steps=40",
          "--save_checkpoints_steps=2", "--iterations_per_loop=1", "--do_train"]
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  command = [sys.executable, "-m", "albert.run_pretraining", *args]
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (out / "model.ckpt-4.index").exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.3)  # well inside a later step's micro-batches
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = checkpoint.checkpoint_step(checkpoint.latest_checkpoint(str(out)))
  assert 4 <= saved < 40
  rerun = subprocess.run([*command, "--num_train_steps=" + str(saved + 2)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"at step {saved}" in rerun.stderr
  assert checkpoint.checkpoint_step(checkpoint.latest_checkpoint(str(out))) == saved + 2
  reader = tf.train.load_checkpoint(checkpoint.latest_checkpoint(str(out)))
  assert int(reader.get_tensor("global_step")) == saved + 2  # optimizer steps, not micro-batches


# ---- the memory model the runners print (albert/training/memory.py) ----

def test_the_memory_model_counts_what_the_backward_pass_keeps():
  from albert.training import memory
  config = AlbertConfig(**TINY)  # H 32, I 64, 4 heads, 3 layers, E 16
  seq = 16
  layer = seq * (8 * 32 + 4 * 64) + 4 * seq * seq  # 8192 + 1024 values
  embeddings = seq * (4 * 16 + 4 * 32)
  plain = memory.per_example_bytes(config, seq) / memory.PER_EXAMPLE_FACTOR["plain"]
  assert plain == pytest.approx(4 * (3 * layer + embeddings))
  recomputed = memory.per_example_bytes(config, seq, recompute=True) / memory.PER_EXAMPLE_FACTOR["recompute"]
  assert recomputed == pytest.approx(4 * (3 * seq * 32 + 2 * layer + embeddings))
  with_dropout = memory.per_example_bytes(config.copy(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
                                          seq) / memory.PER_EXAMPLE_FACTOR["plain"]
  assert with_dropout == pytest.approx(plain + 4 * 3 * (seq * 64 + 4 * seq * seq))
  # Weights, gradients and two slots of every parameter; all three layers' gradient copies of the block.
  from albert.model import variables
  params = sum(int(np.prod(s)) for s in variables.encoder_shapes(config).values())
  block = sum(int(np.prod(s)) for s in variables.block_shapes(config).values())
  assert (memory.fixed_bytes(config) - memory.RUNTIME_BYTES) / memory.FIXED_FACTOR == pytest.approx(
      4 * (4 * params + 3 * block))
  # Recomputed layers add each layer's block gradients to a running sum: the sum and one layer's are alive.
  assert (memory.fixed_bytes(config, recompute=True) - memory.RUNTIME_BYTES) / memory.FIXED_FACTOR == pytest.approx(
      4 * (4 * params + 2 * block))


def test_the_memory_model_picks_batches_that_fit():
  from albert.training import memory
  step = memory.StepMemory(fixed=2 * memory.GB, per_example=0.5 * memory.GB)
  assert step.total(4) == 4 * memory.GB
  assert step.largest_micro_batch(4.2 * memory.GB) == 4
  assert step.largest_micro_batch(1 * memory.GB) == 0
  base = AlbertConfig(**TINY).copy(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                   num_hidden_layers=12, max_position_embeddings=512)
  line = memory.describe(base, 384, 8, accumulation_steps=6)
  assert line.startswith("estimated peak memory of a training step: ") and "6 accumulated" in line
  assert "--recompute_grad would save" in line
  assert "would save" not in memory.describe(base, 384, 8, recompute=True)
  assert "would save" not in memory.describe(AlbertConfig(**TINY), 16, 8)  # nothing worth saving


# ---- benchmarks/memory.py: from measured peaks to docs/scaling.md's table ----

def test_the_fits_table_never_takes_a_slope_below_the_counted_activations():
  """Two small batches give a noisy slope when the allocator's pool sets the peaks: the table keeps the
  counted per-example bytes then, with the smallest fixed part that covers every measured peak."""
  from benchmarks import memory as bench
  from albert.training import memory
  config = bench._config("base", 384)
  counted = memory.step_memory(config, 384).per_example
  peaks = [(1, 3.0 * memory.GB), (2, 3.0 * memory.GB + 0.5 * counted)]  # a slope of half the counted bytes
  fit = bench.fit(peaks)
  report = {"settings": {"seq_length": 384},
            "sizes": {"base": {"plain": {"runs": [{"batch": b, "peak_bytes": p} for b, p in peaks], "fit": fit},
                               "recompute": {"runs": [], "fit": {"fixed_bytes": 1.0 * memory.GB,
                                                                 "per_example_bytes": 0.1 * memory.GB}}}}}
  (plain, recompute), source = bench.step_models(report, "base", 384)
  assert source == "measured"
  assert plain.per_example == pytest.approx(counted)
  assert plain.fixed == pytest.approx(3.0 * memory.GB - counted)  # batch 1's peak is the one to cover
  assert all(plain.total(b) >= p - 1 for b, p in peaks)
  assert recompute.fixed == 1.0 * memory.GB and recompute.per_example == pytest.approx(0.1 * memory.GB)
  # A steeper measured slope is kept as measured.
  steep = bench.fit([(1, 3.0 * memory.GB), (2, 3.0 * memory.GB + 2 * counted)])
  report["sizes"]["base"]["plain"]["fit"] = steep
  (plain, _), _ = bench.step_models(report, "base", 384)
  assert plain.per_example == pytest.approx(2 * counted)
