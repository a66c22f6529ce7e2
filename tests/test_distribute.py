"""Strategy selection from flags, and training with several replicas and several workers.

Multi-device checks run in child processes (TensorFlow configures devices once per process): this
file run as a script (`python tests/test_distribute.py mirrored|worker ...`) is that child.
"""

import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from albert.core.errors import UserError
from albert.training import distribute

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


class FakeStrategy:
  """Records how a strategy class was constructed, without touching devices or the network."""

  def __init__(self, *args, **kwargs):
    self.args, self.kwargs = args, kwargs
    self.num_replicas_in_sync = 2


@pytest.fixture
def fake_strategies(monkeypatch):
  for name in ("MirroredStrategy", "MultiWorkerMirroredStrategy", "OneDeviceStrategy"):
    monkeypatch.setattr(tf.distribute, name, type(name, (FakeStrategy,), {}))
  monkeypatch.delenv("TF_CONFIG", raising=False)


def fake_gpus(monkeypatch, count):
  real = tf.config.list_physical_devices
  gpus = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(count)]
  monkeypatch.setattr(tf.config, "list_physical_devices",
                      lambda kind=None: gpus if kind == "GPU" else real(kind))


def test_bad_distribution_strategy_is_a_user_error():
  with pytest.raises(UserError, match=r"--distribution_strategy: unknown value 'gpus'"):
    distribute.get_strategy("gpus")


def test_use_tpu_conflicts_with_a_non_tpu_strategy():
  with pytest.raises(UserError, match="--use_tpu conflicts with --distribution_strategy=mirrored"):
    distribute.get_strategy("mirrored", use_tpu=True)


def test_unavailable_tpu_says_what_was_tried():
  with pytest.raises(UserError, match=r"--use_tpu: no TPU available \(tried TPUClusterResolver\(tpu=None"):
    distribute.get_strategy(use_tpu=True)


def test_auto_on_a_plain_machine_is_the_default_strategy(fake_strategies):
  strategy = distribute.get_strategy("auto")
  assert strategy is tf.distribute.get_strategy()
  assert distribute.is_chief(strategy)


def test_auto_with_two_gpus_is_mirrored_over_them(fake_strategies, monkeypatch):
  fake_gpus(monkeypatch, 2)
  strategy = distribute.get_strategy("auto")
  assert type(strategy).__name__ == "MirroredStrategy"
  assert strategy.kwargs["devices"] == ["/gpu:0", "/gpu:1"]
  assert type(distribute.get_strategy("auto", num_gpus=1)) is type(tf.distribute.get_strategy())
  one = distribute.get_strategy("one_device", num_gpus=1)
  assert one.args == ("/gpu:0",)
  with pytest.raises(UserError, match="--num_gpus=3 but only 2 GPU"):
    distribute.get_strategy("mirrored", num_gpus=3)


def test_auto_with_a_multi_worker_tf_config_is_multi_worker_mirrored(fake_strategies, monkeypatch):
  cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
  monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
  assert type(distribute.get_strategy("auto")).__name__ == "MultiWorkerMirroredStrategy"
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(UserError, match="TF_CONFIG"):
    distribute.get_strategy("auto")


def test_explicit_names_build_their_strategy(fake_strategies):
  assert type(distribute.get_strategy("multi_worker_mirrored")).__name__ == "MultiWorkerMirroredStrategy"
  assert distribute.get_strategy("one_device").args == ("/cpu:0",)
  assert distribute.get_strategy("DEFAULT") is tf.distribute.get_strategy()
  with pytest.raises(UserError, match="flag --num_gpus=-1: must be >= 0"):
    distribute.get_strategy("mirrored", num_gpus=-1)


def run_child(*args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  env.pop("TF_CONFIG", None)
  return subprocess.run([sys.executable, os.path.abspath(__file__), *map(str, args)], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_replicas_match_one_replica_with_the_same_global_batch(tmp_path):
  from test_trainer import BIAS, INITIAL, WEIGHT, toy_data
  child = run_child("mirrored", tmp_path)
  assert child.returncode == 0, child.stderr[-4000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["replicas"] == 2
  assert sorted(map(int, results["mirrored_losses"])) == list(range(1, 13))
  for step, loss in results["default_losses"].items():
    assert results["mirrored_losses"][step] == pytest.approx(loss, rel=1e-5), step
  for name in ("final", "resumed", "float16", "jit"):
    for variable, value in results[f"default_{name}"].items():
      np.testing.assert_allclose(results[f"mirrored_{name}"][variable], value, rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name}: {variable}")
  assert results["mirrored_float16_scale"] == results["default_float16_scale"] == 2.0 ** 14
  assert results["mirrored_float16_skipped_step_unchanged"]
  data = toy_data(rows=11, seed=3)
  assert results["predicted_ids"] == list(range(1000, 1011))
  np.testing.assert_allclose(results["predictions"], data["x"] @ INITIAL[WEIGHT][0] + INITIAL[BIAS][0],
                             rtol=1e-6)
  assert results["mirrored_evaluation"]["count"] == results["default_evaluation"]["count"] == 12.0
  assert results["mirrored_evaluation"]["mse"] == pytest.approx(results["default_evaluation"]["mse"],
                                                                rel=1e-4)


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_like_one_and_only_the_chief_writes(tmp_path):
  workers = [f"localhost:{free_port()}" for _ in range(2)]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  children = []
  for index in range(2):
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    children.append(subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "worker", str(tmp_path / f"worker{index}")],
        env=dict(env, TF_CONFIG=json.dumps(config)), cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  outputs = [child.communicate(timeout=300) for child in children]
  for child, (_, errors) in zip(children, outputs):
    assert child.returncode == 0, errors[-4000:]
  assert not os.path.exists(tmp_path / "worker1")  # the non-chief worker wrote nothing
  from test_trainer import (
    BATCH,
    read_checkpoint,
    read_scalars,
    toy_dataset_fn,
    toy_trainer,
  )
  reference = toy_trainer(tmp_path / "reference", num_train_steps=8, save_checkpoints_steps=4)
  reference.train(toy_dataset_fn(), BATCH)
  chief = read_checkpoint(str(tmp_path / "worker0" / "model.ckpt-8"))
  for name, value in read_checkpoint(str(tmp_path / "reference" / "model.ckpt-8")).items():
    np.testing.assert_allclose(chief[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
  chief_losses = read_scalars(str(tmp_path / "worker0"))["loss"]
  assert sorted(chief_losses) == list(range(1, 9))
  # Step by step, the two workers' global batch gives the single process's loss: every step agrees,
  # not only where the runs end.
  for step, loss in read_scalars(str(tmp_path / "reference"))["loss"].items():
    assert chief_losses[step] == pytest.approx(loss, rel=1e-5), step
  evaluation = json.loads(outputs[0][0].strip().splitlines()[-1])
  assert evaluation["count"] == 16.0 and evaluation["global_step"] == 8


@pytest.mark.slow
def test_run_squad_as_two_workers_follows_one_process_step_by_step(tmp_path, tiny_config, spm_model_file):
  """The runner itself under MultiWorkerMirroredStrategy: two worker processes on localhost (TF_CONFIG)
  sharing one --output_dir (as a cluster shares storage), per-worker batches of 2, follow one process
  with the global batch of 4 loss by loss and end with the same weights and predictions; only the chief
  writes (one summary file, no stray feature caches)."""
  from conftest import shared_path, subset_file
  from test_trainer import read_checkpoint, read_scalars
  data_file = str(tmp_path / "squad.json")
  subset_file(shared_path("squad", "dev-v1.1-sample.json"), data_file, 12)
  config_file = str(tmp_path / "albert_config.json")
  tiny_config.to_json_file(config_file)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  env.pop("TF_CONFIG", None)

  def command(output_dir, strategy):
    return [sys.executable, "-m", "albert.run_squad_v1", f"--albert_config_file={config_file}",
            f"--spm_model_file={spm_model_file}", f"--train_file={data_file}", f"--predict_file={data_file}",
            f"--output_dir={output_dir}", f"--distribution_strategy={strategy}", "--do_train", "--do_predict",
            "--max_seq_length=64", "--doc_stride=32", "--max_query_length=16", "--train_batch_size=4",
            "--num_train_epochs=1", "--learning_rate=1e-3", "--seed=7", "--iterations_per_loop=1",
            "--log_every_n_steps=1", "--save_checkpoints_steps=1000"]

  workers = [f"localhost:{free_port()}" for _ in range(2)]
  children = []
  for index in range(2):
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    children.append(subprocess.Popen(command(tmp_path / "cluster", "multi_worker_mirrored"),
                                     env=dict(env, TF_CONFIG=json.dumps(config)), cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = [child.communicate(timeout=600) for child in children]
  for child, (_, errors) in zip(children, outputs):
    assert child.returncode == 0, "\n".join(e[-3000:] for _, e in outputs)
  single = subprocess.run(command(tmp_path / "single", "default"), env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-4000:]

  files = lambda run: sorted(name if not name.startswith("events.out") else "events"
                             for name in os.listdir(tmp_path / run))
  assert files("cluster") == files("single") and files("single").count("events") == 1
  cluster_losses = read_scalars(str(tmp_path / "cluster"))["loss"]
  single_losses = read_scalars(str(tmp_path / "single"))["loss"]
  assert sorted(cluster_losses) == sorted(single_losses) and len(single_losses) >= 3
  assert len(set(single_losses.values())) > 1
  for step, loss in single_losses.items():
    assert cluster_losses[step] == pytest.approx(loss, rel=1e-4), step
  last = max(single_losses)
  cluster = read_checkpoint(str(tmp_path / "cluster" / f"model.ckpt-{last}"))
  for name, value in read_checkpoint(str(tmp_path / "single" / f"model.ckpt-{last}")).items():
    np.testing.assert_allclose(cluster[name], value, rtol=1e-3, atol=1e-5, err_msg=name)
  with open(tmp_path / "cluster" / "predictions.json") as f, open(tmp_path / "single" / "predictions.json") as g:
    assert json.load(f) == json.load(g)


# ---- child processes ----

def _as_lists(state):
  return {name: np.asarray(value).tolist() for name, value in state.items()}


def _mirrored_child(output_dir):
  """Trains, resumes, evaluates and predicts under the default strategy and Mirrored on 2 CPUs."""
  distribute.configure_logical_cpus(2)
  from test_trainer import (
    BATCH,
    WEIGHT,
    ToyTask,
    read_checkpoint,
    read_scalars,
    toy_data,
    toy_dataset_fn,
    toy_trainer,
  )
  mirrored = distribute.get_strategy("mirrored")
  results = {"replicas": mirrored.num_replicas_in_sync}
  float16_data = {k: v / 10 if k != "unique_ids" else v for k, v in toy_data().items()}
  float16_data["y"][BATCH:2 * BATCH] = 1e6
  for name, strategy in (("default", tf.distribute.get_strategy()), ("mirrored", mirrored)):
    directory = lambda kind: os.path.join(output_dir, f"{name}_{kind}")
    saved = lambda kind, step: read_checkpoint(os.path.join(directory(kind), f"model.ckpt-{step}"))

    toy_trainer(directory("run"), strategy=strategy, num_train_steps=12, save_checkpoints_steps=8).train(
        toy_dataset_fn(), BATCH)
    results[f"{name}_losses"] = read_scalars(directory("run"))["loss"]
    results[f"{name}_final"] = _as_lists(saved("run", 12))
    os.remove(os.path.join(directory("run"), "model.ckpt-12.index"))
    resumed = toy_trainer(directory("run"), strategy=strategy, num_train_steps=12, save_checkpoints_steps=8)
    resumed.train(toy_dataset_fn(), BATCH)  # from step 8
    results[f"{name}_resumed"] = _as_lists(saved("run", 12))
    # 16 rows in per-replica batches of 6 / replicas: two full steps (12 rows); the rest is dropped.
    results[f"{name}_evaluation"] = resumed.evaluate(toy_dataset_fn(repeat=False, global_batch_size=6))

    scaled = toy_trainer(directory("float16"), strategy=strategy, task=ToyTask(tf.float16),
                         precision="float16", num_train_steps=3, save_checkpoints_steps=1)
    scaled.train(toy_dataset_fn(float16_data), BATCH)
    results[f"{name}_float16"] = _as_lists(saved("float16", 3))
    results[f"{name}_float16_scale"] = float(scaled.loss_scale.scale.numpy())
    results[f"{name}_float16_skipped_step_unchanged"] = bool(
        np.array_equal(saved("float16", 1)[WEIGHT], saved("float16", 2)[WEIGHT]))

    toy_trainer(directory("jit"), strategy=strategy, jit_compile=True, num_train_steps=4,
                iterations_per_loop=2).train(toy_dataset_fn(), BATCH)
    results[f"{name}_jit"] = _as_lists(saved("jit", 4))
  fresh = toy_trainer(os.path.join(output_dir, "predict"), strategy=mirrored)
  fresh.initialize()
  data = toy_data(rows=11, seed=3)
  predictions = list(fresh.predict(tf.data.Dataset.from_tensor_slices(data).batch(5), global_batch_size=3))
  results["predicted_ids"] = [int(p["unique_ids"]) for p in predictions]
  results["predictions"] = [float(p["prediction"]) for p in predictions]
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(results, f)


def _worker_child(output_dir):
  """One worker of a two-worker MultiWorkerMirrored run; prints its evaluation as the last line."""
  from test_trainer import BATCH, toy_dataset_fn, toy_trainer
  strategy = distribute.get_strategy("auto")
  run = toy_trainer(output_dir, strategy=strategy, num_train_steps=8, save_checkpoints_steps=4)
  run.train(toy_dataset_fn(), BATCH)
  print(json.dumps(run.evaluate(toy_dataset_fn(repeat=False))), flush=True)


if __name__ == "__main__":
  {"mirrored": _mirrored_child, "worker": _worker_child}[sys.argv[1]](sys.argv[2])
