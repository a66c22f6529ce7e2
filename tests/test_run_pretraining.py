"""run_pretraining: flags, input pipeline, eval metrics, and the CLI end to end (train, eval, resume,
init_from_group0, LAMB vs AdamW, clear errors). Pretraining TFRecords are written here with the
docs/compatibility.md §5.1 keys.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO_ROOT, shared_path

from albert.core.errors import UserError
from albert.model.config import AlbertConfig
from albert.tasks.pretraining import inputs as pretraining_inputs
from albert.tasks.pretraining import runner as run_pretraining
from albert.tasks.pretraining import task as pretraining_task

SEQ, PRED, VOCAB = 32, 5, 2000
FIRST_ORDINARY_ID = 13  # after <pad>, <unk>, [CLS], [SEP], [MASK] and the user symbols
CLS, SEP, MASK = 2, 3, 4
TINY = dict(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
            num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
GROUP_KERNEL = "bert/encoder/transformer/group_{}/inner_group_0/ffn_1/intermediate/dense/kernel"


# ---- data ----

def _ints(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def make_instances(count, seed, seq_length=SEQ, predictions=PRED):
  """Random two-segment instances with masking structure: [CLS] A [SEP] B [SEP], masked positions sorted,
  80% of them replaced by [MASK], the last prediction slot padding (weight 0) in every other instance.
  """
  rng = np.random.default_rng(seed)
  instances = []
  for index in range(count):
    length = int(rng.integers(predictions + 6, seq_length + 1))
    a_length = int(rng.integers(1, length - 4))
    tokens = rng.integers(FIRST_ORDINARY_ID, VOCAB, length)
    tokens[0], tokens[a_length + 1], tokens[length - 1] = CLS, SEP, SEP
    segment = np.zeros(seq_length, np.int64)
    segment[a_length + 2:length] = 1
    real = predictions - index % 2
    candidates = [i for i in range(1, length - 1) if i != a_length + 1]
    positions = np.sort(rng.choice(candidates, real, replace=False))
    labels = tokens[positions].copy()
    tokens[positions[rng.random(real) < 0.8]] = MASK
    pad = lambda values, size: np.concatenate([values, np.zeros(size - len(values), np.int64)])
    instances.append(dict(
        input_ids=pad(tokens, seq_length), input_mask=pad(np.ones(length, np.int64), seq_length),
        segment_ids=segment, token_boundary=pad(np.ones(length, np.int64), seq_length),
        masked_lm_positions=pad(positions, predictions), masked_lm_ids=pad(labels, predictions),
        masked_lm_weights=np.array([1.0] * real + [0.0] * (predictions - real), np.float32),
        next_sentence_labels=np.array([index % 2])))
  return instances


def write_records(path, instances, drop=()):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for instance in instances:
      feature = {key: (tf.train.Feature(float_list=tf.train.FloatList(value=value)) if value.dtype == np.float32
                       else _ints(value)) for key, value in instance.items() if key not in drop}
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  return str(path)


def write_config(path, **changes):
  with open(path, "w") as f:
    json.dump({**TINY, **changes}, f)
  return str(path)


# ---- running it ----

def run_cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "albert.run_pretraining", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def common_args(config, data, output_dir, **overrides):
  settings = dict(albert_config_file=config, input_file=data, output_dir=output_dir, max_seq_length=SEQ,
                  max_predictions_per_seq=PRED, train_batch_size=8, eval_batch_size=8, num_warmup_steps=1,
                  learning_rate=1e-3)
  settings.update(overrides)
  return [f"--{name}={value}" for name, value in settings.items()]


def parsed_flags(*args):
  fv = flags.FlagValues()
  run_pretraining.define_flags(fv)
  fv(["run_pretraining", *args])
  return fv


def checkpoint_tensor(prefix, name):
  return tf.train.load_checkpoint(prefix).get_tensor(name)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp("pretraining")
  return dict(root=root, config=write_config(root / "config.json"),
              data=write_records(root / "train.tfrecord", make_instances(40, seed=1)))


@pytest.fixture(scope="module")
def trained(workspace):
  """3 steps (checkpoints at 2 and 3) then evaluation: the run later tests resume and seed from."""
  output_dir = str(workspace["root"] / "run")
  result = run_cli(*common_args(workspace["config"], workspace["data"], output_dir, num_train_steps=3,
                                save_checkpoints_steps=2, iterations_per_loop=1, do_eval=True,
                                max_eval_steps=3))
  assert result.returncode == 0, result.stderr[-3000:]
  return output_dir


# ---- flags ----

def test_original_flags_and_defaults():
  fv = parsed_flags()
  expected = dict(albert_config_file=None, input_file=None, output_dir=None, init_checkpoint=None,
                  max_seq_length=512, max_predictions_per_seq=20, do_train=True, do_eval=False,
                  train_batch_size=4096, eval_batch_size=64, optimizer="lamb", learning_rate=0.00176,
                  poly_power=1.0, num_train_steps=125000, num_warmup_steps=3125, start_warmup_step=0,
                  save_checkpoints_steps=5000, keep_checkpoint_max=5, max_eval_steps=100,
                  init_from_group0=False, masked_lm_budget=0, use_tpu=False, tpu_name=None, tpu_zone=None,
                  gcp_project=None, master=None, num_tpu_cores=8, iterations_per_loop=1000)
  assert {name: fv[name].value for name in expected} == expected
  with pytest.raises(flags.IllegalFlagValueError):
    parsed_flags("--optimizer=sgd")


def test_num_of_group_follows_init_from_group0_and_net_structure_type():
  config = AlbertConfig.from_dict({**TINY, "num_hidden_layers": 4, "num_hidden_groups": 2})
  assert pretraining_task.num_of_group(config, init_from_group0=False) == 1
  assert pretraining_task.num_of_group(config, init_from_group0=True) == 2  # no net_structure_type key
  assert pretraining_task.num_of_group(config.copy(extra={"net_structure_type": 0}), True) == 2
  assert pretraining_task.num_of_group(config.copy(extra={"net_structure_type": 1}), True) == 4


# ---- input ----

def test_input_files_expand_comma_separated_globs(tmp_path):
  for name in ("a-1.tfrecord", "a-2.tfrecord", "b.tfrecord"):
    (tmp_path / name).write_bytes(b"")
  files = pretraining_inputs.expand_input_files(f"{tmp_path}/a-*.tfrecord, {tmp_path}/b.tfrecord,{tmp_path}/a-1*")
  assert [os.path.basename(f) for f in files] == ["a-1.tfrecord", "a-2.tfrecord", "b.tfrecord"]
  with pytest.raises(UserError, match="--input_file: no file matches .*c.tfrecord"):
    pretraining_inputs.expand_input_files(f"{tmp_path}/b.tfrecord,{tmp_path}/c.tfrecord")


def test_eval_input_is_sequential_and_repeats(tmp_path):
  instances = make_instances(10, seed=2)
  path = write_records(tmp_path / "eval.tfrecord", instances)
  dataset_fn = pretraining_inputs.input_fn_builder([path], SEQ, PRED, batch_size=4, is_training=False)
  batches = list(dataset_fn().take(3))
  order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
  for key in ("input_ids", "masked_lm_positions", "masked_lm_weights", "next_sentence_labels"):
    got = np.concatenate([batch[key].numpy() for batch in batches])
    np.testing.assert_array_equal(got.reshape(12, -1), np.stack([instances[i][key] for i in order]).reshape(12, -1))
  assert batches[0]["input_ids"].dtype == tf.int32 and batches[0]["masked_lm_weights"].dtype == tf.float32
  assert "token_boundary" not in batches[0]


def test_training_input_shuffles_full_batches_from_every_file(tmp_path):
  first, second = make_instances(6, seed=3), make_instances(6, seed=4)
  files = [write_records(tmp_path / "one.tfrecord", first), write_records(tmp_path / "two.tfrecord", second)]
  dataset_fn = pretraining_inputs.input_fn_builder(files, SEQ, PRED, batch_size=5, is_training=True, seed=7)
  batches = list(dataset_fn().take(12))
  assert all(batch["input_ids"].shape == (5, SEQ) for batch in batches)
  seen = {tuple(row) for batch in batches for row in batch["input_ids"].numpy()}
  assert seen == {tuple(instance["input_ids"]) for instance in first + second}


def test_input_data_checks_name_the_flag(tmp_path):
  good = write_records(tmp_path / "good.tfrecord", make_instances(2, seed=5))
  check = lambda files, seq=SEQ, pred=PRED, vocab=VOCAB: pretraining_inputs.check_input_data(files, seq, pred, vocab)
  assert check([good]) == good
  with pytest.raises(UserError, match=r"--max_seq_length=64 does not match the data: .* length 32"):
    check([good], seq=64)
  with pytest.raises(UserError, match=r"--max_predictions_per_seq=4 does not match .* 5 prediction slots$"):
    check([good], pred=4)
  permuted = write_records(tmp_path / "permuted.tfrecord", make_instances(2, seed=5, predictions=2 * PRED))
  with pytest.raises(UserError, match="--do_permutation has twice the slots"):
    check([permuted])
  with pytest.raises(UserError, match="beyond vocab_size=1000 of --albert_config_file"):
    check([good], vocab=1000)
  no_labels = write_records(tmp_path / "no_labels.tfrecord", make_instances(2, seed=5), drop=("next_sentence_labels",))
  with pytest.raises(UserError, match="lacks the pretraining features next_sentence_labels"):
    check([no_labels])
  empty = write_records(tmp_path / "empty.tfrecord", [])
  assert check([empty, good]) == good
  with pytest.raises(UserError, match="hold no records"):
    check([empty])
  text = tmp_path / "text.txt"
  text.write_text("this is not a TFRecord file\n" * 5)
  with pytest.raises(UserError, match="--input_file: .*text.txt is not a readable TFRecord file"):
    check([str(text)])


# ---- task ----

def _log_softmax(logits):
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_eval_step_and_loss_match_numpy(tiny_config):
  tf.random.set_seed(3)
  task = pretraining_task.PretrainingTask(tiny_config)
  task.build()
  instances = make_instances(6, seed=6)
  features = {key: tf.constant(np.stack([i[key] for i in instances]),
                               tf.float32 if key == "masked_lm_weights" else tf.int32)
              for key in pretraining_inputs.feature_spec(SEQ, PRED)}
  # Make some MLM predictions right, so accuracy is not trivially 0.
  outputs = task.model(features["input_ids"], features["input_mask"], features["segment_ids"],
                       features["masked_lm_positions"])
  mlm_logits, sop_logits = outputs.masked_lm_logits.numpy(), outputs.sentence_order_logits.numpy()
  ids = features["masked_lm_ids"].numpy().reshape(-1)
  ids[::3] = mlm_logits.argmax(-1)[::3]
  features["masked_lm_ids"] = tf.constant(ids.reshape(6, PRED))
  weights = features["masked_lm_weights"].numpy().reshape(-1)
  labels = features["next_sentence_labels"].numpy().reshape(-1)

  mlm_nll = -_log_softmax(mlm_logits.astype(np.float64))[np.arange(len(ids)), ids]
  sop_nll = -_log_softmax(sop_logits.astype(np.float64))[np.arange(6), labels]
  mlm_hits = (mlm_logits.argmax(-1) == ids).astype(np.float64)
  sop_hits = (sop_logits.argmax(-1) == labels).astype(np.float64)
  expected_loss = (weights * mlm_nll).sum() / (weights.sum() + 1e-5) + sop_nll.mean()
  expected = {
      "masked_lm_accuracy": ((weights * mlm_hits).sum(), weights.sum()),
      "masked_lm_loss": ((weights * mlm_nll).sum(), weights.sum()),
      "sentence_order_accuracy": (sop_hits.sum(), 6.0),
      "sentence_order_loss": (sop_nll.sum(), 6.0),
      "loss": (expected_loss, 1.0),
  }
  metrics = task.eval_step(features)
  assert set(metrics) == set(expected)
  for name, (value_sum, weight) in expected.items():
    np.testing.assert_allclose([float(metrics[name][0]), float(metrics[name][1])], [value_sum, weight],
                               rtol=1e-5, err_msg=name)
  assert weights.sum() == 27 and 0 < (weights * mlm_hits).sum() < weights.sum()
  np.testing.assert_allclose(float(task.compute_loss(features, training=False)), expected_loss, rtol=1e-5)


# ---- the CLI ----

def test_train_and_eval_write_checkpoints_results_and_best_copy(trained):
  names = set(os.listdir(trained))
  for step in (2, 3, "best"):
    assert {f"model.ckpt-{step}.index", f"model.ckpt-{step}.data-00000-of-00001"} <= names
  assert "checkpoint" in names
  assert checkpoint_tensor(os.path.join(trained, "model.ckpt-3"), "global_step") == 3
  slots = tf.train.list_variables(os.path.join(trained, "model.ckpt-3"))
  assert ("cls/predictions/output_bias/adam_m", [VOCAB]) in [(n, s) for n, s in slots]
  np.testing.assert_array_equal(checkpoint_tensor(os.path.join(trained, "model.ckpt-best"), "bert/pooler/dense/kernel"),
                                checkpoint_tensor(os.path.join(trained, "model.ckpt-3"), "bert/pooler/dense/kernel"))
  with open(os.path.join(trained, "eval_results.txt")) as f:
    text = f.read()
  keys = {line.split(" = ")[0] for line in text.splitlines() if " = " in line}
  assert {"masked_lm_accuracy", "masked_lm_loss", "sentence_order_accuracy", "sentence_order_loss", "loss",
          "global_step"} <= keys
  assert "global_step = 3" in text and "model.ckpt-best" in text
  with open(os.path.join(trained, "eval_results.json")) as f:
    results = json.load(f)
  assert results["global_step"] == 3
  assert 0.0 <= results["masked_lm_accuracy"] <= 1.0 and 0.0 <= results["sentence_order_accuracy"] <= 1.0
  # A random model: MLM loss near ln(V), SOP loss near ln(2); the total is their sum (+ the 1e-5 term).
  assert abs(results["masked_lm_loss"] - np.log(VOCAB)) < 1.0 and abs(results["sentence_order_loss"] - np.log(2)) < 0.2
  assert results["loss"] == pytest.approx(results["masked_lm_loss"] + results["sentence_order_loss"], rel=1e-3)


@pytest.mark.slow
def test_resume_continues_the_step_count_and_keeps_max_checkpoints(workspace, trained, tmp_path):
  output_dir = str(tmp_path / "resumed")
  shutil.copytree(trained, output_dir)
  result = run_cli(*common_args(workspace["config"], workspace["data"], output_dir, num_train_steps=5,
                                save_checkpoints_steps=2, keep_checkpoint_max=2, do_eval=True,
                                eval_all_checkpoints=True, max_eval_steps=1))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "model.ckpt-3 at step 3" in result.stderr
  assert checkpoint_tensor(os.path.join(output_dir, "model.ckpt-5"), "global_step") == 5
  kept = sorted(n for n in os.listdir(output_dir) if n.endswith(".index"))
  assert kept == ["model.ckpt-4.index", "model.ckpt-5.index", "model.ckpt-best.index"]
  with open(os.path.join(output_dir, "eval_results.json")) as f:
    assert [entry["global_step"] for entry in json.load(f)["history"]] == [4, 5]


@pytest.mark.slow
def test_init_from_group0_fills_every_group_and_lamb_steps_by_trust_ratio(workspace, trained, tmp_path):
  # A G=2 config without net_structure_type (the original crashed on it), seeded from the G=1 run.
  config = write_config(tmp_path / "config_g2.json", num_hidden_groups=2)
  output_dir = str(tmp_path / "grouped")
  seed = os.path.join(trained, "model.ckpt-3")
  result = run_cli(*common_args(config, workspace["data"], output_dir, num_train_steps=1, num_warmup_steps=0,
                                init_checkpoint=seed, init_from_group0=True))
  assert result.returncode == 0, result.stderr[-3000:]
  group0 = checkpoint_tensor(seed, GROUP_KERNEL.format(0)).astype(np.float64)
  for group in (0, 1):
    updated = checkpoint_tensor(os.path.join(output_dir, "model.ckpt-1"), GROUP_KERNEL.format(group))
    # LAMB: step = lr * (|w| / |update|) * update, so |w_new - w_old| = lr * |w_old| (lr 1e-3 at step 0).
    step_norm = np.linalg.norm(updated - group0)
    assert step_norm == pytest.approx(1e-3 * np.linalg.norm(group0), rel=2e-2), group


@pytest.mark.slow
def test_adamw_flag_steps_without_trust_ratio(workspace, trained, tmp_path):
  output_dir = str(tmp_path / "adamw")
  seed = os.path.join(trained, "model.ckpt-3")
  fv = parsed_flags(*common_args(workspace["config"], workspace["data"], output_dir, num_train_steps=1,
                                 num_warmup_steps=0, init_checkpoint=seed, optimizer="adamw"))
  run_pretraining.run(fv)
  old = checkpoint_tensor(seed, GROUP_KERNEL.format(0)).astype(np.float64)
  new = checkpoint_tensor(os.path.join(output_dir, "model.ckpt-1"), GROUP_KERNEL.format(0))
  # AdamW without bias correction, first step: update = 0.1 g / (sqrt(0.001 g^2) + eps), |update| <= sqrt(10),
  # plus decoupled weight decay 0.01 w; no rescaling to lr * |w|.
  update = (old - new) / 1e-3 - 0.01 * old
  assert np.abs(update).max() <= np.sqrt(10) * 1.001
  assert np.abs(update).mean() > 1.0
  assert np.linalg.norm(old - new) > 10 * 1e-3 * np.linalg.norm(old)


def test_user_mistakes_are_one_clear_line(workspace, tmp_path):
  args = lambda **overrides: common_args(workspace["config"], workspace["data"], str(tmp_path / "out"), **overrides)
  cases = [
      (args(do_train=False), "at least one of --do_train or --do_eval"),
      (args(train_batch_size=0), "flag --train_batch_size=0: must be >= 1"),
      (args(max_predictions_per_seq=40), r"flag --max_predictions_per_seq=40: must be <= --max_seq_length=32"),
      (args(max_seq_length=256), "flag --max_seq_length=256: must be <= max_position_embeddings=128"),
      (args(max_seq_length=64), "--max_seq_length=64 does not match the data"),
      (args(input_file=str(tmp_path / "missing-*.tfrecord")), "--input_file: no file matches"),
      (args(albert_config_file=str(tmp_path / "none.json")), "--albert_config_file: file not found"),
      (args(do_train=False, do_eval=True), "--do_eval: no checkpoint in --output_dir"),
  ]
  for argv, message in cases:
    # Bounds are checked while the flags are parsed, everything else when the run starts.
    with pytest.raises((UserError, flags.IllegalFlagValueError), match=message):
      run_pretraining.run(parsed_flags(*argv))


def test_masked_lm_budget_fails_clearly_on_the_command_line(workspace, tmp_path):
  result = run_cli(*common_args(workspace["config"], workspace["data"], str(tmp_path / "out"), masked_lm_budget=10))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --masked_lm_budget=10: on-the-fly masking")
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_pretrains_on_data_from_create_pretraining_data(spm_model_file, tmp_path):
  corpus = shared_path("corpus", "wikitext2-valid.txt")
  with open(corpus, encoding="utf-8") as f:
    (tmp_path / "corpus.txt").write_text("".join(f.readlines()[:300]), encoding="utf-8")  # 3 documents
  data = str(tmp_path / "wiki.tfrecord")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  created = subprocess.run(
      [sys.executable, "-m", "albert.create_pretraining_data", f"--input_file={tmp_path / 'corpus.txt'}",
       f"--output_file={data}", f"--spm_model_file={spm_model_file}", "--max_seq_length=64",
       "--max_predictions_per_seq=10", "--dupe_factor=1"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert created.returncode == 0, created.stderr[-3000:]
  output_dir = str(tmp_path / "run")
  result = run_cli(*common_args(write_config(tmp_path / "config.json"), data, output_dir, max_seq_length=64,
                                max_predictions_per_seq=10, num_train_steps=2, do_eval=True, max_eval_steps=2))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(output_dir, "eval_results.json")) as f:
    results = json.load(f)
  assert results["global_step"] == 2 and os.path.exists(os.path.join(output_dir, "model.ckpt-best.index"))
  assert abs(results["masked_lm_loss"] - np.log(VOCAB)) < 1.0
