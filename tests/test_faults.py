"""The fault battery: every runner against bad numeric flags, damaged feature caches, a full disk, a
hostile weight file and `kill -9` during a checkpoint save.

Each case must end the way a user can act on: exit status 2, one `error:` line naming the flag or file,
no traceback, and nothing lost or half-written (or, where the input can be rebuilt, a rebuild that the
log mentions). The outcomes are collected into a table that pytest prints at the end of the session
(`conftest.FAULT_TABLE`). The full-disk cases need a small tmpfs (root, as in CI); without one they skip
and the in-process cases below, which inject ENOSPC at the file layer, still run.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO_ROOT, SQUAD_TINY_CONFIG, flag_definers, record_fault, run_cli, shared_path, subset_file
from test_run_pretraining import make_instances, write_config, write_records

from albert.core import fileio
from albert.core.errors import UserError
from albert.io import checkpoint, tfrecord
from albert.io.feature_cache import sidecar_path

pytestmark = pytest.mark.slow

SEQ, PRED = 32, 5


def one_line_failure(result):
  """The `error:` line of a run that failed as a user error should: status 2, no traceback."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith("error: "), result.stderr[-3000:]
  return line


def leftovers(directory):
  """Temporary files (hidden names with .tmp) left in `directory`."""
  return sorted(name for name in os.listdir(directory) if name.startswith(".") and ".tmp" in name)


# ---- family 1: numeric flags are bounded at parse time, nothing is written ----

# Numeric flags whose every value means something (ids, seeds, signed scores), so they have no bound.
UNBOUNDED = {
    "seed": "any integer seeds the generators", "random_seed": "any integer seeds the generators",
    "pad_id": "-1 means none", "unk_id": "a SentencePiece id", "bos_id": "-1 means none", "eos_id": "-1 means none",
    "topic_bias": "a signed logit offset", "topic_scale": "a signed logit scale",
    "null_score_diff_threshold": "a signed score margin", "na_prob_thresh": "compared with probabilities; >1 disables",
    "threshold_to_export": "NaN (the default) disables the export threshold",
}


def test_every_numeric_flag_of_every_command_is_bounded():
  unbounded = []
  for command, define in flag_definers().items():
    fv = flags.FlagValues()
    define(fv)
    for name, flag in fv._flags().items():
      if isinstance(flag.parser, (flags.IntegerParser, flags.FloatParser)) and not flag.validators:
        if name not in UNBOUNDED:
          unbounded.append(f"{command} --{name}")
  assert not unbounded, unbounded


BAD_FLAGS = [
    ("run_squad_v1", ["--do_train", "--learning_rate=-0.001"], "flag --learning_rate=-0.001: must be > 0"),
    ("run_squad_v2", ["--do_train", "--doc_stride=400"], "--doc_stride must be <= --max_seq_length - "
                                                          "--max_query_length - 3 = 317"),
    ("run_classifier", ["--do_train", "--train_batch_size=0"], "flag --train_batch_size=0: must be >= 1"),
    ("run_race", ["--do_train", "--dropout_prob=1.0"], "flag --dropout_prob=1.0: must be in [0, 1)"),
    ("run_pretraining", ["--do_train", "--num_warmup_steps=-5"], "flag --num_warmup_steps=-5: must be >= 0"),
]


@pytest.mark.parametrize("runner,args,message", BAD_FLAGS, ids=[case[0] for case in BAD_FLAGS])
def test_a_bad_numeric_flag_is_one_line_and_writes_nothing(tmp_path, runner, args, message):
  out = tmp_path / "out"
  line = one_line_failure(run_cli(f"albert.{runner}", f"--output_dir={out}", *args, check=False))
  assert message in line
  assert not out.exists()
  record_fault("bad numeric flag", runner, " ".join(args[1:]), line)


def test_max_seq_length_beyond_the_position_embeddings_is_one_line(tmp_path):
  config = write_config(tmp_path / "config.json", max_position_embeddings=64)
  out = tmp_path / "out"
  line = one_line_failure(run_cli("albert.run_pretraining", f"--albert_config_file={config}", "--input_file=x",
                              f"--output_dir={out}", "--do_train", "--max_seq_length=128", check=False))
  assert line == "error: flag --max_seq_length=128: must be <= max_position_embeddings=64 of the albert config"
  assert not out.exists()
  record_fault("bad numeric flag", "run_pretraining", "--max_seq_length=128 (config: 64 positions)", line)


# ---- family 2: damaged feature caches and inputs ----

def _cut(path, keep_fraction=0.5):
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep_fraction) | 1])  # odd: never on a record boundary by luck


def _flip(path, offset):
  data = bytearray(open(path, "rb").read())
  data[offset] ^= 0xFF
  with open(path, "wb") as f:
    f.write(data)


@pytest.fixture(scope="module")
def squad_cache(tmp_path_factory, spm_model_file):
  """A train feature cache of 40 real questions (with its sidecar), built by the library."""
  from albert.tasks.squad import records
  from albert.text.tokenizer import FullTokenizer
  root = tmp_path_factory.mktemp("squad_cache")
  train_file = subset_file(shared_path("squad", "dev-v1.1-sample.json"), root / "train.json", 40)
  tokenizer = FullTokenizer(None, True, spm_model_file)
  feature_file = str(root / "train.tf_record")
  records.prepare_train_features(train_file, feature_file, tokenizer, 128, 64, 32)
  config = root / "albert_config.json"
  config.write_text(json.dumps(SQUAD_TINY_CONFIG))
  return dict(root=root, train_file=train_file, feature_file=feature_file, tokenizer=tokenizer,
              spm=spm_model_file, config=str(config))


def _copy_cache(cache, directory):
  directory.mkdir()
  target = str(directory / "train.tf_record")
  for suffix in ("", ".info.json"):
    fileio.copy_file(cache["feature_file"] + suffix, target + suffix)
  os.utime(target, ns=(os.stat(cache["feature_file"]).st_mtime_ns,) * 2)
  return target


def test_a_cut_squad_cache_without_its_source_is_one_line_before_training(tmp_path, squad_cache):
  feature_file = _copy_cache(squad_cache, tmp_path / "cache")
  _cut(feature_file)
  out = tmp_path / "out"
  line = one_line_failure(run_cli(
      "albert.run_squad_v1", f"--albert_config_file={squad_cache['config']}", f"--spm_model_file={squad_cache['spm']}",
      f"--output_dir={out}", "--do_train", f"--train_feature_file={feature_file}", "--max_seq_length=128",
      "--doc_stride=64", "--max_query_length=32", check=False))
  assert f"--train_feature_file: cannot reuse {feature_file}: it " in line
  assert "cut short" in line or "damaged" in line
  assert not list(out.glob("model.ckpt*"))
  record_fault("damaged cache", "run_squad_v1", "train.tf_record cut in half, no --train_file", line)


def test_a_damaged_squad_cache_with_its_source_is_rebuilt_and_logged(tmp_path, squad_cache, caplog):
  from albert.tasks.squad import records
  feature_file = _copy_cache(squad_cache, tmp_path / "cache")
  expected = tfrecord.scan_records(feature_file)
  _flip(feature_file, os.path.getsize(feature_file) // 2)
  with caplog.at_level("WARNING"):
    records.prepare_train_features(squad_cache["train_file"], feature_file, squad_cache["tokenizer"], 128, 64, 32)
  (message,) = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
  assert "it is damaged: corrupted record at" in message
  assert tfrecord.scan_records(feature_file) == expected
  record_fault("damaged cache", "run_squad_v1/v2", "a flipped byte, --train_file given", "rebuilt; log: " + message)


def test_damaged_classifier_and_race_caches_are_rebuilt_or_refused(tmp_path, squad_cache, caplog):
  """GLUE and RACE caches go through one function (`features.prepare_feature_file`)."""
  from albert.tasks.classification import features
  source = tmp_path / "train.tsv"
  source.write_text("sentence\tlabel\n" + "".join(f"text {i}\t{i % 2}\n" for i in range(50)))
  path = str(tmp_path / "mrpc_train.tf_record")
  records = lambda: (tfrecord.encode_example({"input_ids": [i] * 8, "label_ids": [i % 2]}) for i in range(50))
  prepare = lambda sources: features.prepare_feature_file(path, "cached_dir", records, {"max_seq_length": 8},
                                                          squad_cache["tokenizer"], sources, "data_dir")
  prepare([str(source)])
  _cut(path, 0.7)
  with pytest.raises(UserError) as refused:
    prepare(None)
  assert str(refused.value).startswith(f"--cached_dir: cannot reuse {path}: it ")
  with caplog.at_level("WARNING"):
    prepare([str(source)])
  assert any("rebuilding" in r.getMessage() for r in caplog.records)
  assert tfrecord.scan_records(path) == 50
  record_fault("damaged cache", "run_classifier/run_race", "cached record file cut at 70%",
         "rebuilt from --data_dir (logged); without a source: " + str(refused.value)[:60] + "...")


@pytest.fixture(scope="module")
def pretraining_workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp("faults_pretraining")
  data = write_records(root / "train.tfrecord", make_instances(40, seed=3))
  return dict(root=root, config=write_config(root / "config.json"), data=data)


def pretraining_args(workspace, output_dir, data=None, **overrides):
  settings = dict(albert_config_file=workspace["config"], input_file=data or workspace["data"],
                  output_dir=output_dir, max_seq_length=SEQ, max_predictions_per_seq=PRED, train_batch_size=8,
                  num_warmup_steps=0, learning_rate=1e-3, num_train_steps=3, save_checkpoints_steps=1,
                  iterations_per_loop=1, do_train=True)
  settings.update(overrides)
  return [f"--{name}={value}" for name, value in settings.items()]


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_a_damaged_pretraining_input_is_one_line_before_training(tmp_path, pretraining_workspace, damage):
  data = str(tmp_path / "train.tfrecord")
  fileio.copy_file(pretraining_workspace["data"], data)
  _cut(data) if damage == "cut" else _flip(data, 1000)
  out = tmp_path / "out"
  line = one_line_failure(run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(out), data),
                                  check=False))
  assert line.startswith(f"error: --input_file: {data} is damaged: ")
  assert not list(out.glob("model.ckpt*")) if out.exists() else True
  record_fault("damaged cache", "run_pretraining", f"--input_file {'cut in half' if damage == 'cut' else 'a flipped byte'}",
         line)


def test_a_pretraining_input_shorter_than_its_sidecar_says_is_one_line(tmp_path, pretraining_workspace):
  data = str(tmp_path / "train.tfrecord")
  tfrecord.write_records(data, list(tf.data.TFRecordDataset(pretraining_workspace["data"]).as_numpy_iterator())[:30])
  with open(sidecar_path(data), "w") as f:
    json.dump({"format": 1, "count": 40}, f)
  line = one_line_failure(run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(tmp_path / "o"),
                                                                           data), check=False))
  assert line == f"error: --input_file: {data} holds 30 records but 40 were written (cut short?); write it again " \
                 "with create_pretraining_data"
  record_fault("damaged cache", "run_pretraining", "--input_file cut at a record boundary", line)


# ---- family 3: a full disk ----

@contextlib.contextmanager
def small_tmpfs(directory, size):
  directory.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'}); the in-process "
                "ENOSPC cases cover the file layer")
  try:
    yield directory
  finally:
    subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory, leave_bytes):
  """Writes a ballast file so that about `leave_bytes` stay free; returns its path."""
  stat = os.statvfs(directory)
  ballast = directory / "ballast"
  with open(ballast, "wb") as f:
    f.write(b"\0" * max(stat.f_bavail * stat.f_frsize - leave_bytes, 0))
  return ballast


def test_a_full_disk_during_training_is_one_line_keeps_the_last_checkpoint_and_resumes(tmp_path,
                                                                                     pretraining_workspace):
  with small_tmpfs(tmp_path / "disk", "3m") as disk:
    out = disk / "out"
    first = run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(out), num_train_steps=1),
                    check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    state = (out / "checkpoint").read_text()
    ballast = fill(disk, 4096)
    line = one_line_failure(run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(out)),
                                    check=False))
    assert line == f"error: no space left on device writing {out}/model.ckpt-2"
    assert leftovers(out) == []
    assert (out / "checkpoint").read_text() == state
    assert checkpoint.latest_checkpoint(str(out)) == f"{out}/model.ckpt-1"
    assert int(tf.train.load_checkpoint(f"{out}/model.ckpt-1").get_tensor("global_step")) == 1
    os.remove(ballast)
    resumed = run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(out)), check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "model.ckpt-1 at step 1" in resumed.stderr
    assert checkpoint.latest_checkpoint(str(out)) == f"{out}/model.ckpt-3"
  record_fault("full disk", "run_pretraining", "3 MB tmpfs filled after step 1", line + "; step 1 kept; rerun resumed")


def test_a_full_disk_while_writing_a_feature_cache_is_one_line_and_leaves_no_partial_file(tmp_path, squad_cache):
  with small_tmpfs(tmp_path / "disk", "1m") as disk:
    fill(disk, 8192)
    out = disk / "out"
    line = one_line_failure(run_cli(
        "albert.run_squad_v1", f"--albert_config_file={squad_cache['config']}",
        f"--spm_model_file={squad_cache['spm']}", f"--output_dir={out}", "--do_train",
        f"--train_file={squad_cache['train_file']}", "--max_seq_length=128", "--doc_stride=64",
        "--max_query_length=32", check=False))
    assert line == f"error: no space left on device writing {out}/train.tf_record"
    assert not (out / "train.tf_record").exists() and leftovers(out) == []
  record_fault("full disk", "run_squad_v1", "full tmpfs while writing train.tf_record", line + "; no partial file")


def _enospc(*args, **kwargs):
  raise OSError(28, os.strerror(28))


def test_enospc_injected_at_the_file_layer_leaves_old_outputs_and_no_temporaries(tmp_path, monkeypatch):
  """Where no tmpfs can be mounted: the same guarantees, with the failure injected in-process."""
  target = tmp_path / "predictions.json"
  target.write_text("old")
  monkeypatch.setattr(os, "fsync", _enospc)
  with pytest.raises(fileio.DiskFull, match=f"^no space left on device writing {target}$"):
    fileio.write_json(str(target), {"q": "new"})
  monkeypatch.undo()
  assert target.read_text() == "old" and leftovers(tmp_path) == []

  prefix = str(tmp_path / "model.ckpt-1")
  checkpoint.save_checkpoint(prefix, {"w": np.ones(3, np.float32)})

  def full_save(**kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, f"{kwargs['prefix']}.data-00000-of-00001.tempstate1; "
                                                       "No space left on device")
  monkeypatch.setattr(tf.raw_ops, "SaveV2", full_save)
  with pytest.raises(fileio.DiskFull, match="model.ckpt-2$"):
    checkpoint.save_checkpoint(str(tmp_path / "model.ckpt-2"), {"w": np.zeros(3, np.float32)})
  monkeypatch.undo()
  assert checkpoint.latest_checkpoint(str(tmp_path)) == prefix and leftovers(tmp_path) == []
  record_fault("full disk", "(file layer)", "ENOSPC injected: JSON output, checkpoint save",
         "DiskFull one line; old file and previous checkpoint kept; no temporaries")


# ---- family 4: hostile weight files (safetensors: tests/test_safetensors_hostile.py adds its rows) ----

def test_a_damaged_init_checkpoint_is_one_line(tmp_path, pretraining_workspace):
  prefix = str(tmp_path / "pretrained" / "model.ckpt-1")
  trained = run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(tmp_path / "pretrained"),
                                                             num_train_steps=1), check=False)
  assert trained.returncode == 0, trained.stderr[-3000:]
  (data_file,) = [str(p) for p in (tmp_path / "pretrained").glob("model.ckpt-1.data-*")]
  _cut(data_file)
  out = tmp_path / "out"
  line = one_line_failure(run_cli("albert.run_pretraining", *pretraining_args(pretraining_workspace, str(out)),
                              f"--init_checkpoint={prefix}", check=False))
  assert prefix in line
  assert not list(out.glob("model.ckpt*")) if out.exists() else True
  record_fault("hostile weights", "run_pretraining", "--init_checkpoint whose data file is cut in half", line)


# ---- family 5: kill -9 during a checkpoint save ----

KILL_DURING_SAVE = """
import os, signal, sys
from albert.io import checkpoint
publish = checkpoint._publish
def killed_midway(temporary, prefix):
  if prefix.endswith("-2"):  # the data file is written, the index not yet moved into place
    os.kill(os.getpid(), signal.SIGKILL)
  publish(temporary, prefix)
checkpoint._publish = killed_midway
from albert.tasks.pretraining import runner
sys.argv = ["run_pretraining", *sys.argv[1:]]
runner.main()
"""


def test_kill_9_during_a_checkpoint_save_then_rerun_resumes_from_the_previous_one(tmp_path, pretraining_workspace):
  out = tmp_path / "out"
  args = pretraining_args(pretraining_workspace, str(out))
  killed = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert leftovers(out), "the killed save should have left its temporary files"
  assert checkpoint.latest_checkpoint(str(out)) == f"{out}/model.ckpt-1"
  rerun = run_cli("albert.run_pretraining", *args, check=False)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "of a checkpoint save that did not finish" in rerun.stderr
  assert "model.ckpt-1 at step 1" in rerun.stderr
  assert leftovers(out) == []
  assert checkpoint.latest_checkpoint(str(out)) == f"{out}/model.ckpt-3"
  record_fault("kill -9", "run_pretraining", "SIGKILL between data file and index of step 2",
         "step 1 intact; rerun removed the partial save, resumed at 1, finished at 3")
