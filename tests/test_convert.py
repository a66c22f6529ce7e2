"""safetensors I/O and the Hugging Face <-> original conversion (names, transposes, configs, errors, parity)."""

import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from test_export import write_model_directory

from albert import convert
from albert.core.errors import UserError
from albert.io import checkpoint
from albert.io import safetensors as safetensors_io
from albert.model.config import AlbertConfig
from albert.modeling import AlbertPretrainingModel

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Three layers in two groups, two inner blocks: exercises every index of the name map.
CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2,
                      num_attention_heads=4, intermediate_size=64, inner_group_num=2, max_position_embeddings=64,
                      extra={"net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0})


# ---- safetensors ----

def test_safetensors_layout_matches_the_format(tmp_path):
  path = str(tmp_path / "t.safetensors")
  tensors = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([1, -2], np.int64),
             "empty": np.zeros((0, 4), np.float16)}
  safetensors_io.write_file(path, tensors, metadata={"format": "pt"})
  raw = open(path, "rb").read()
  (length,) = struct.unpack("<Q", raw[:8])
  assert (8 + length) % 8 == 0
  header = json.loads(raw[8:8 + length])
  assert header["__metadata__"] == {"format": "pt"}
  assert header["b"]["dtype"] == "F32" and header["b"]["shape"] == [2, 3]
  begin, end = header["b"]["data_offsets"]
  data = raw[8 + length:]
  assert struct.unpack("<6f", data[begin:end]) == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
  begin, end = header["a"]["data_offsets"]
  assert struct.unpack("<2q", data[begin:end]) == (1, -2)
  read, metadata = safetensors_io.read_file(path)
  assert metadata == {"format": "pt"}
  for name, value in tensors.items():
    assert read[name].dtype == value.dtype
    np.testing.assert_array_equal(read[name], value)


def test_safetensors_bfloat16_and_big_endian_input(tmp_path):
  import ml_dtypes
  path = str(tmp_path / "t.safetensors")
  bf16 = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
  big = np.array([1.0, 2.0], dtype=">f4")
  safetensors_io.write_file(path, {"bf16": bf16, "big": big})
  read, _ = safetensors_io.read_file(path)
  assert read["bf16"].view(np.uint16).tolist() == [0x3FC0, 0xC000, 0x4050]
  np.testing.assert_array_equal(read["big"], [1.0, 2.0])
  assert read["big"].dtype == np.dtype("<f4")


def test_safetensors_interoperates_with_the_reference_package(tmp_path):
  reference = pytest.importorskip("safetensors.numpy")
  ours, theirs = str(tmp_path / "ours.safetensors"), str(tmp_path / "theirs.safetensors")
  tensors = {"x": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32), "y": np.arange(4, dtype=np.int32)}
  safetensors_io.write_file(ours, tensors)
  reference.save_file(tensors, theirs, metadata={"k": "v"})
  for name, value in reference.load_file(ours).items():
    np.testing.assert_array_equal(value, tensors[name])
  read, metadata = safetensors_io.read_file(theirs)
  assert metadata == {"k": "v"}
  for name, value in read.items():
    np.testing.assert_array_equal(value, tensors[name])


def test_malformed_safetensors_are_user_errors(tmp_path):
  # The package validates the frame; one case per kind of message here, hostile files in test_safetensors_hostile.py.
  path = tmp_path / "bad.safetensors"
  path.write_bytes(struct.pack("<Q", 1000) + b"{}")
  with pytest.raises(UserError, match="bad.safetensors: not a valid safetensors file: "):
    safetensors_io.read_file(str(path))
  header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}).encode()
  path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
  with pytest.raises(UserError, match="tensor 'w' has unsupported dtype 'F8_E4M3'"):
    safetensors_io.read_file(str(path))
  with pytest.raises(UserError, match="not found"):
    safetensors_io.read_file(str(tmp_path / "missing.safetensors"))


# ---- an independent numpy ALBERT on the Hugging Face tensors (torch conventions) ----

def _layer_norm(x, t, name):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-12) * t[name + ".weight"] + t[name + ".bias"]


def _gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def hf_reference(t, config, ids, mask, types):
  """(sequence, pooled, mlm logits [B,S,V], sop logits) in float64 from HF-named tensors."""
  t = {k: v.astype(np.float64) for k, v in t.items()}
  linear = lambda x, name: x @ t[name + ".weight"].T + t[name + ".bias"]
  emb = "albert.embeddings."
  x = (t[emb + "word_embeddings.weight"][ids] + t[emb + "token_type_embeddings.weight"][types]
       + t[emb + "position_embeddings.weight"][:ids.shape[1]])
  h = linear(_layer_norm(x, t, emb + "LayerNorm"), "albert.encoder.embedding_hidden_mapping_in")
  b, s = ids.shape
  n, d = config.num_attention_heads, config.hidden_size // config.num_attention_heads
  heads = lambda y: y.reshape(b, s, n, d).transpose(0, 2, 1, 3)
  for layer in range(config.num_hidden_layers):
    group = int(layer / (config.num_hidden_layers / config.num_hidden_groups))
    for inner in range(config.inner_group_num):
      p = f"albert.encoder.albert_layer_groups.{group}.albert_layers.{inner}."
      q, k, v = (heads(linear(h, p + f"attention.{part}")) for part in ("query", "key", "value"))
      scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + (1.0 - mask[:, None, None, :]) * -1e9
      probs = np.exp(scores - scores.max(-1, keepdims=True))
      probs /= probs.sum(-1, keepdims=True)
      context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, n * d)
      a = _layer_norm(h + linear(context, p + "attention.dense"), t, p + "attention.LayerNorm")
      h = _layer_norm(a + linear(_gelu_tanh(linear(a, p + "ffn")), p + "ffn_output"), t, p + "full_layer_layer_norm")
  pooled = np.tanh(linear(h[:, 0], "albert.pooler"))
  transformed = _layer_norm(_gelu_tanh(linear(h, "predictions.dense")), t, "predictions.LayerNorm")
  mlm = transformed @ t[emb + "word_embeddings.weight"].T + t["predictions.bias"]
  sop = linear(pooled, "sop_classifier.classifier")
  return h, pooled, mlm, sop


def model_inputs(seq=10):
  rng = np.random.default_rng(7)
  ids = rng.integers(5, 2000, size=(2, seq)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, seq - 3:] = 0
  types = np.zeros_like(ids)
  types[:, seq // 2:] = 1
  return ids, mask, types


def ours(directory, config, ids, mask, types):
  """Our pretraining model loaded from an original-layout directory: (sequence, pooled, mlm [B,S,V], sop)."""
  model = AlbertPretrainingModel(config)
  report = checkpoint.load_variables(model.named_variables(), os.path.join(directory, "model.ckpt-best"))
  assert not report.missing
  positions = np.tile(np.arange(ids.shape[1], dtype=np.int32), [ids.shape[0], 1])
  outputs = model(ids, mask, types, positions)
  mlm = outputs.masked_lm_logits.numpy().reshape(ids.shape[0], ids.shape[1], -1)
  return (outputs.model_outputs.sequence_output.numpy(), outputs.model_outputs.pooled_output.numpy(), mlm,
          outputs.sentence_order_logits.numpy())


@pytest.fixture
def original_dir(tmp_path, spm_model_file):
  directory = str(tmp_path / "original")
  values = write_model_directory(directory, CONFIG, spm_model_file, seed=1)
  return directory, values


def test_original_to_hf_names_shapes_config_and_numbers(original_dir, tmp_path):
  directory, values = original_dir
  hf_dir = str(tmp_path / "hf")
  convert.original_to_hf(directory, "model.ckpt-best", hf_dir, do_lower_case=True)
  assert sorted(os.listdir(hf_dir)) == ["config.json", "model.safetensors", "spiece.model", "tokenizer_config.json"]
  hf_config = json.load(open(os.path.join(hf_dir, "config.json")))
  assert hf_config["model_type"] == "albert" and hf_config["hidden_act"] == "gelu_new"
  assert hf_config["architectures"] == ["AlbertForPreTraining"]
  assert (hf_config["num_hidden_groups"], hf_config["inner_group_num"], hf_config["embedding_size"]) == (2, 2, 16)
  tensors, _ = safetensors_io.read_file(os.path.join(hf_dir, "model.safetensors"))
  query = "albert.encoder.albert_layer_groups.1.albert_layers.1.attention.query.weight"
  np.testing.assert_array_equal(
      tensors[query], values["bert/encoder/transformer/group_1/inner_group_1/attention_1/self/query/kernel"].T)
  assert tensors["albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"].shape == (64, 32)
  np.testing.assert_array_equal(tensors["sop_classifier.classifier.weight"],
                                values["cls/seq_relationship/output_weights"])  # [2, H] on both sides
  ids, mask, types = model_inputs()
  expected = hf_reference(tensors, CONFIG, ids, mask, types)
  for got, want in zip(ours(directory, CONFIG, ids, mask, types), expected):
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_round_trip_original_hf_original_is_bit_exact(original_dir, tmp_path, spm_model_file):
  directory, values = original_dir
  hf_dir, back = str(tmp_path / "hf"), str(tmp_path / "back")
  convert.original_to_hf(directory, "model.ckpt-best", hf_dir)
  prefix = convert.hf_to_original(hf_dir, back)
  assert prefix == os.path.join(back, "model.ckpt-best")
  reader = tf.train.load_checkpoint(prefix)
  assert set(checkpoint.list_variables(prefix)) == set(values) | {"global_step"}
  for name, value in values.items():
    restored = reader.get_tensor(name)
    assert restored.dtype == np.float32 and restored.tobytes() == value.tobytes(), name
  assert AlbertConfig.from_json_file(os.path.join(back, "albert_config.json")).to_dict() == CONFIG.to_dict()
  assert open(os.path.join(back, "30k-clean.model"), "rb").read() == open(spm_model_file, "rb").read()


def test_equal_embedding_and_hidden_size_uses_an_identity_projection(tmp_path, spm_model_file):
  config = CONFIG.copy(embedding_size=32, num_hidden_groups=1, inner_group_num=1)
  directory, hf_dir = str(tmp_path / "original"), str(tmp_path / "hf")
  values = write_model_directory(directory, config, spm_model_file, heads=False)
  assert "bert/encoder/embedding_hidden_mapping_in/kernel" not in values
  convert.original_to_hf(directory, "model.ckpt-best", hf_dir)
  path = os.path.join(hf_dir, "model.safetensors")
  tensors, _ = safetensors_io.read_file(path)
  np.testing.assert_array_equal(tensors["albert.encoder.embedding_hidden_mapping_in.weight"], np.eye(32))
  assert json.load(open(os.path.join(hf_dir, "config.json")))["architectures"] == ["AlbertModel"]
  convert.hf_to_original(hf_dir, str(tmp_path / "back"))
  assert set(checkpoint.list_variables(str(tmp_path / "back" / "model.ckpt-best"))) == set(values) | {"global_step"}
  tensors = dict(tensors)
  tensors["albert.encoder.embedding_hidden_mapping_in.bias"] = np.full(32, 0.1, np.float32)
  safetensors_io.write_file(path, tensors)
  with pytest.raises(UserError, match="not the identity"):
    convert.hf_to_original(hf_dir, str(tmp_path / "again"))


def _hf_folder(original_dir, tmp_path):
  directory, _ = original_dir
  hf_dir = str(tmp_path / "hf")
  convert.original_to_hf(directory, "model.ckpt-best", hf_dir)
  path = os.path.join(hf_dir, "model.safetensors")
  return hf_dir, path, dict(safetensors_io.read_file(path)[0])


def test_hf_variants_without_prefix_with_tied_decoder_and_buffers(original_dir, tmp_path):
  hf_dir, path, tensors = _hf_folder(original_dir, tmp_path)
  variant = {name[len("albert."):] if name.startswith("albert.") else name: value for name, value in tensors.items()}
  variant["predictions.decoder.weight"] = variant["embeddings.word_embeddings.weight"]
  variant["predictions.decoder.bias"] = variant.pop("predictions.bias")
  variant["embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]
  safetensors_io.write_file(path, variant)
  back = str(tmp_path / "back")
  convert.hf_to_original(hf_dir, back)
  reader = tf.train.load_checkpoint(os.path.join(back, "model.ckpt-best"))
  np.testing.assert_array_equal(reader.get_tensor("cls/predictions/output_bias"), tensors["predictions.bias"])


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update({"albert.pooler.weight": np.zeros((32, 31), np.float32)}),
     r"albert.pooler.weight has shape \[32, 31\], but config.json implies \[32, 32\]"),
    (lambda t: t.update({"classifier.weight": np.zeros((3, 32), np.float32)}),
     "no ALBERT counterpart: classifier.weight"),
    (lambda t: t.pop("albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.bias"),
     "missing tensors for this config.json: albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.bias"),
    (lambda t: t.update({"predictions.decoder.weight": np.ones((2000, 16), np.float32)}), "untied decoder"),
])
def test_broken_hf_tensors_are_one_line_errors(original_dir, tmp_path, change, message):
  hf_dir, path, tensors = _hf_folder(original_dir, tmp_path)
  change(tensors)
  safetensors_io.write_file(path, tensors)
  with pytest.raises(UserError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))


def test_broken_hf_folders_are_one_line_errors(original_dir, tmp_path, monkeypatch):
  hf_dir, path, _ = _hf_folder(original_dir, tmp_path)
  config_path = os.path.join(hf_dir, "config.json")
  hf_config = json.load(open(config_path))
  json.dump(dict(hf_config, model_type="bert"), open(config_path, "w"))
  with pytest.raises(UserError, match="model_type is 'bert', not 'albert'"):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))
  json.dump(dict(hf_config, hidden_act="silu"), open(config_path, "w"))
  with pytest.raises(UserError, match="hidden_act 'silu' has no ALBERT equivalent"):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))
  os.remove(config_path)
  with pytest.raises(UserError, match="config.json.*file not found"):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))
  json.dump(hf_config, open(config_path, "w"))
  os.remove(path)
  with pytest.raises(UserError, match="has no model.safetensors"):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))
  open(os.path.join(hf_dir, "pytorch_model.bin"), "wb").close()
  monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
  with pytest.raises(UserError, match="pytorch_model.bin needs torch"):
    convert.hf_to_original(hf_dir, str(tmp_path / "back"))


def test_original_side_errors(original_dir, tmp_path, spm_model_file):
  directory, _ = original_dir
  with pytest.raises(UserError, match="checkpoint_name: checkpoint not found"):
    convert.original_to_hf(directory, "model.ckpt-5", str(tmp_path / "hf"))
  task_dir = str(tmp_path / "squad")
  write_model_directory(task_dir, CONFIG, spm_model_file, extra={"cls/squad/output_weights": np.zeros((2, 32))})
  with pytest.raises(UserError, match="no Hugging Face counterpart: cls/squad/output_weights"):
    convert.original_to_hf(task_dir, "model.ckpt-best", str(tmp_path / "hf"))
  CONFIG.copy(intermediate_size=48).to_json_file(os.path.join(directory, "albert_config.json"))
  mismatch = r"does not fit --albert_config_file: .*ffn_1/intermediate/dense/kernel \[32, 64\]"
  with pytest.raises(UserError, match=mismatch):
    convert.original_to_hf(directory, "model.ckpt-best", str(tmp_path / "hf"))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "albert.convert", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_cli_reports_user_errors(tmp_path):
  result = _run("--from=hf", f"--input_dir={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"error: --input_dir: directory not found: {tmp_path / 'nope'}"


@pytest.mark.slow
def test_cli_round_trip(original_dir, tmp_path):
  directory, values = original_dir
  result = _run("--from=original", f"--input_dir={directory}", f"--output_dir={tmp_path / 'hf'}")
  assert result.returncode == 0, result.stderr
  result = _run("--from=hf", f"--input_dir={tmp_path / 'hf'}", f"--output_dir={tmp_path / 'back'}")
  assert result.returncode == 0, result.stderr
  assert set(checkpoint.list_variables(str(tmp_path / "back" / "model.ckpt-best"))) == set(values) | {"global_step"}


# ---- parity with transformers (skipped unless transformers and torch are installed) ----

def test_transformers_loads_our_folder_with_equal_outputs(original_dir, tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  directory, _ = original_dir
  hf_dir = str(tmp_path / "hf")
  convert.original_to_hf(directory, "model.ckpt-best", hf_dir)
  ids, mask, types = model_inputs()
  sequence, pooled, mlm, _ = ours(directory, CONFIG, ids, mask, types)
  feed = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
              token_type_ids=torch.tensor(types, dtype=torch.long))
  with torch.no_grad():
    encoder = transformers.AlbertModel.from_pretrained(hf_dir).eval()(**feed)
    masked_lm = transformers.AlbertForMaskedLM.from_pretrained(hf_dir).eval()(**feed)
  np.testing.assert_allclose(encoder.last_hidden_state.numpy(), sequence, atol=1e-4)
  np.testing.assert_allclose(encoder.pooler_output.numpy(), pooled, atol=1e-4)
  np.testing.assert_allclose(masked_lm.logits.numpy(), mlm, atol=1e-4)


def test_model_saved_by_transformers_converts_with_equal_outputs(tmp_path, spm_model_file):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  hf_config = transformers.AlbertConfig(
      vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=2,
      num_attention_heads=4, intermediate_size=64, inner_group_num=2, max_position_embeddings=64,
      hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  model = transformers.AlbertForPreTraining(hf_config).eval()
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.add_(0.05 * torch.randn_like(parameter))  # non-trivial biases and LayerNorm weights
  hf_dir, original = str(tmp_path / "hf"), str(tmp_path / "original")
  model.save_pretrained(hf_dir, safe_serialization=True)
  shutil.copy(spm_model_file, os.path.join(hf_dir, "spiece.model"))
  convert.hf_to_original(hf_dir, original)
  config = AlbertConfig.from_json_file(os.path.join(original, "albert_config.json"))
  ids, mask, types = model_inputs()
  sequence, pooled, mlm, sop = ours(original, config, ids, mask, types)
  with torch.no_grad():
    feed = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long))
    expected = model(**feed)
    encoder = model.albert(**feed)
  np.testing.assert_allclose(encoder.last_hidden_state.numpy(), sequence, atol=1e-4)
  np.testing.assert_allclose(expected.prediction_logits.numpy(), mlm, atol=1e-4)
  np.testing.assert_allclose(expected.sop_logits.numpy(), sop, atol=1e-4)
  np.testing.assert_allclose(encoder.pooler_output.numpy(), pooled, atol=1e-4)
