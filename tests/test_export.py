"""export_checkpoints (slim checkpoints) and export_to_tfhub (the SavedModel's signatures, assets, names)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from albert.core.errors import UserError
from albert.export import checkpoints as export_checkpoints
from albert.export import tfhub as export_to_tfhub
from albert.io import checkpoint
from albert.model.config import AlbertConfig
from albert.modeling import AlbertModel, AlbertPretrainingModel

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def perturbed_values(named_variables, seed):
  """Non-trivial values for every variable (gammas near 1, non-zero biases), so tests can tell them apart."""
  rng = np.random.default_rng(seed)
  values = {}
  for name, variable in sorted(named_variables.items()):
    shape = variable.shape.as_list()
    base = 1.0 if name.endswith("gamma") else 0.0
    values[name] = (base + rng.normal(0.0, 0.1, shape)).astype(np.float32)
  return values


def write_model_directory(directory, config, spm_model_file, heads=True, extra=None, seed=0):
  """albert_config.json, 30k-clean.model/.vocab and model.ckpt-best (with Adam slots and a global_step)."""
  os.makedirs(directory, exist_ok=True)
  config.to_json_file(os.path.join(directory, "albert_config.json"))
  shutil.copy(spm_model_file, os.path.join(directory, "30k-clean.model"))
  vocab = spm_model_file[:-len(".model")] + ".vocab"
  if os.path.exists(vocab):
    shutil.copy(vocab, os.path.join(directory, "30k-clean.vocab"))
  model = AlbertPretrainingModel(config) if heads else AlbertModel(config)
  values = perturbed_values(model.named_variables(), seed)
  stored = dict(values)
  stored.update({f"{name}/adam_m": np.ones_like(v) for name, v in values.items()})
  stored.update({f"{name}/adam_v": np.ones_like(v) for name, v in values.items()})
  stored.update(extra or {})
  stored["global_step"] = np.int64(7)
  checkpoint.save_checkpoint(os.path.join(directory, "model.ckpt-best"), stored)
  return values


@pytest.fixture
def model_dir(tmp_path, tiny_config, spm_model_file):
  directory = str(tmp_path / "albert")
  values = write_model_directory(directory, tiny_config, spm_model_file)
  return directory, values


# ---- export_checkpoints ----

def test_slim_checkpoint_has_the_model_variables_only_and_step_zero(model_dir, tmp_path):
  directory, values = model_dir
  export_path = str(tmp_path / "slim" / "model.ckpt-best")
  export_checkpoints.export_checkpoint(directory, "model.ckpt-best", export_path)
  names = checkpoint.list_variables(export_path)
  assert set(names) == set(values) | {"global_step"}
  assert not [n for n in names if "adam" in n]
  reader = tf.train.load_checkpoint(export_path)
  assert reader.get_tensor("global_step") == 0
  for name, value in values.items():
    np.testing.assert_array_equal(reader.get_tensor(name), value)
  assert "cls/predictions/output_bias" in names and "cls/seq_relationship/output_weights" in names


def test_slim_checkpoint_refuses_a_checkpoint_without_the_heads(tmp_path, tiny_config, spm_model_file):
  directory = str(tmp_path / "encoder_only")
  write_model_directory(directory, tiny_config, spm_model_file, heads=False)
  with pytest.raises(UserError, match="cls/predictions"):
    export_checkpoints.export_checkpoint(directory, "model.ckpt-best", str(tmp_path / "out" / "ckpt"))


def test_slim_checkpoint_reports_a_config_mismatch(model_dir, tmp_path, tiny_config):
  directory, _ = model_dir
  tiny_config.copy(hidden_size=64).to_json_file(os.path.join(directory, "albert_config.json"))
  with pytest.raises(UserError, match="does not fit the model"):
    export_checkpoints.export_checkpoint(directory, "model.ckpt-best", str(tmp_path / "out" / "ckpt"))


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=120)


def test_cli_missing_checkpoint_is_one_line_error(model_dir, tmp_path):
  directory, _ = model_dir
  result = _run("albert.export_checkpoints", f"--albert_directory={directory}", "--checkpoint_name=model.ckpt-9",
                f"--export_path={tmp_path / 'x'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: --checkpoint_name: checkpoint not found")


@pytest.mark.slow
def test_cli_export_checkpoints(model_dir, tmp_path):
  directory, values = model_dir
  export_path = str(tmp_path / "slim" / "model.ckpt-best")
  result = _run("albert.export_checkpoints", f"--albert_directory={directory}", f"--export_path={export_path}")
  assert result.returncode == 0, result.stderr
  assert set(checkpoint.list_variables(export_path)) == set(values) | {"global_step"}


# ---- export_to_tfhub ----

DROPOUT_CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.3,
                              attention_probs_dropout_prob=0.3, max_position_embeddings=64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, spm_model_file):
  """One export shared by the module's tests (exporting traces six functions: seconds of CPU)."""
  root = tmp_path_factory.mktemp("export")
  directory = str(root / "albert")
  values = write_model_directory(directory, DROPOUT_CONFIG, spm_model_file)
  path = export_to_tfhub.export_module(directory, "model.ckpt-best", str(root / "hub"), do_lower_case=False)
  return path, directory, values


def _inputs():
  rng = np.random.default_rng(3)
  ids = rng.integers(5, 2000, size=(2, 9)).astype(np.int32)
  mask = np.ones((2, 9), np.int32)
  mask[1, 6:] = 0
  segments = np.zeros((2, 9), np.int32)
  segments[:, 4:] = 1
  return ids, mask, segments


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_module_signatures_match_the_checkpoint_model(exported):
  path, directory, values = exported
  config = DROPOUT_CONFIG
  loaded = tf.saved_model.load(path)
  assert {"tokens", "sop", "mlm", "tokenization_info", "serving_default"} <= set(loaded.signatures)
  reference = AlbertPretrainingModel(config)
  checkpoint.load_variables(reference.named_variables(), os.path.join(directory, "model.ckpt-best"))
  ids, mask, segments = _inputs()
  positions = np.array([[1, 3, 0], [2, 5, 8]], np.int32)
  expected = reference(ids, mask, segments, positions)

  tokens = loaded.signatures["tokens"](input_ids=ids, input_mask=mask, segment_ids=segments)
  np.testing.assert_allclose(tokens["sequence_output"], expected.model_outputs.sequence_output, atol=1e-5)
  np.testing.assert_allclose(tokens["pooled_output"], expected.model_outputs.pooled_output, atol=1e-5)

  sop = loaded.signatures["sop"](input_ids=ids, input_mask=mask, segment_ids=segments)
  pooled = expected.model_outputs.pooled_output.numpy()
  sop_logits = pooled @ values["cls/seq_relationship/output_weights"].T + values["cls/seq_relationship/output_bias"]
  np.testing.assert_allclose(sop["sop_log_probs"], _log_softmax(sop_logits), atol=1e-5)

  mlm = loaded.signatures["mlm"](input_ids=ids, input_mask=mask, segment_ids=segments, mlm_positions=positions)
  assert mlm["mlm_logits"].shape == (6, config.vocab_size)  # flattened [B*P, V]
  np.testing.assert_allclose(mlm["mlm_logits"], expected.masked_lm_logits, atol=1e-4)

  serving = loaded.signatures["serving_default"](input_word_ids=ids, input_mask=mask, input_type_ids=segments)
  np.testing.assert_allclose(serving["pooled_output"], expected.model_outputs.pooled_output, atol=1e-5)


def test_module_keeps_original_variable_names_and_ships_assets(exported, spm_model_file):
  path, _, values = exported
  loaded = tf.saved_model.load(path)
  assert sorted(v.name[:-2] for v in loaded.variables) == sorted(values)
  assert all(v.trainable for v in loaded.trainable_variables)
  info = loaded.signatures["tokenization_info"]()
  vocab_file = info["vocab_file"].numpy().decode()
  assert vocab_file == os.path.join(path, "assets", "30k-clean.model")
  with open(vocab_file, "rb") as f, open(spm_model_file, "rb") as g:
    assert f.read() == g.read()
  assert info["do_lower_case"].numpy() == False  # noqa: E712  (exported with do_lower_case=False)
  assert sorted(os.listdir(os.path.join(path, "assets"))) == ["30k-clean.model", "30k-clean.vocab",
                                                              "albert_config.json"]


def test_call_applies_dropout_only_when_training(exported):
  path, _, _ = exported
  config = DROPOUT_CONFIG
  loaded = tf.saved_model.load(path)
  ids, mask, segments = _inputs()
  inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments}
  inference = [loaded(inputs, training=False)["sequence_output"].numpy() for _ in range(2)]
  training = loaded(inputs, training=True)["sequence_output"].numpy()
  np.testing.assert_array_equal(inference[0], inference[1])
  assert np.abs(training - inference[0]).max() > 1e-3
  outputs = loaded(inputs, training=False)
  assert len(outputs["encoder_outputs"]) == config.num_hidden_layers * config.inner_group_num
  assert outputs["embedding_output"].shape == (2, 9, config.embedding_size)


def test_export_needs_the_sentencepiece_model(model_dir, tmp_path):
  directory, _ = model_dir
  os.remove(os.path.join(directory, "30k-clean.model"))
  with pytest.raises(UserError, match="30k-clean.model"):
    export_to_tfhub.export_module(directory, "model.ckpt-best", str(tmp_path / "hub"))


@pytest.mark.slow
def test_cli_export_to_tfhub_replaces_an_earlier_export(model_dir, tmp_path):
  directory, _ = model_dir
  export_path = tmp_path / "hub"
  export_path.mkdir()
  (export_path / "stale.txt").write_text("from an earlier export")
  result = _run("albert.export_to_tfhub", f"--albert_directory={directory}", f"--export_path={export_path}",
                "--use_einsum=false")
  assert result.returncode == 0, result.stderr
  assert not (export_path / "stale.txt").exists()
  assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []
  config = AlbertConfig.from_json_file(str(export_path / "assets" / "albert_config.json"))
  assert config.hidden_size == 32
  assert tf.saved_model.load(str(export_path)).signatures["tokenization_info"]()["do_lower_case"].numpy()
  missing = _run("albert.export_to_tfhub", f"--export_path={export_path}")
  assert missing.returncode == 2 and "error: --albert_directory is required" in missing.stderr
