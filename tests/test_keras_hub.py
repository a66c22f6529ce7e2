"""keras-hub presets: `python -m albert.convert --from=keras_hub` and `--to=keras_hub`, checked against a preset
written here in keras-hub's layout (docs/compatibility.md §16.3) and its outputs computed in that layout.

keras-hub itself loading what --to=keras_hub writes, and converting presets it saved, is checked by
scripts/compat_model_garden.sh in its own environment.
"""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from conftest import run_cli
from test_model_garden import garden_forward, inputs, max_difference

from albert.core.errors import UserError
from albert.io import checkpoint
from albert.model import keras_hub
from albert.model.config import AlbertConfig
from albert.model.encoder import AlbertModel

# Two groups of one block each: layers 0-1 use group 0, layers 2-3 group 1.
ARGUMENTS = {"vocabulary_size": 2000, "num_layers": 4, "num_heads": 4, "num_groups": 2, "num_inner_repetitions": 1,
             "embedding_dim": 16, "hidden_dim": 32, "intermediate_dim": 64, "dropout": 0.0, "max_sequence_length": 64,
             "num_segments": 2}
CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=4, num_hidden_groups=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)


def preset_weights(arguments, seed):
  """{h5 dataset path: value} of an AlbertBackbone, keras-hub's paths written out by hand."""
  v, e, h = arguments["vocabulary_size"], arguments["embedding_dim"], arguments["hidden_dim"]
  i, n = arguments["intermediate_dim"], arguments["num_heads"]
  shapes = {"layers/reversible_embedding/vars/0": [v, e], "layers/position_embedding/vars/0": [64, e],
            "layers/embedding/vars/0": [2, e], "layers/layer_normalization/vars/0": [e],
            "layers/layer_normalization/vars/1": [e], "layers/dense/vars/0": [e, h], "layers/dense/vars/1": [h],
            "layers/dense_1/vars/0": [h, h], "layers/dense_1/vars/1": [h]}
  for block in range(arguments["num_groups"] * arguments["num_inner_repetitions"]):
    p = "layers/transformer_encoder" + (f"_{block}" if block else "")
    for part in ("query", "key", "value"):
      shapes[f"{p}/_self_attention_layer/{part}_dense/vars/0"] = [h, n, h // n]
      shapes[f"{p}/_self_attention_layer/{part}_dense/vars/1"] = [n, h // n]
    shapes.update({f"{p}/_self_attention_layer/output_dense/vars/0": [n, h // n, h],
                   f"{p}/_self_attention_layer/output_dense/vars/1": [h],
                   f"{p}/_self_attention_layer_norm/vars/0": [h], f"{p}/_self_attention_layer_norm/vars/1": [h],
                   f"{p}/_feedforward_intermediate_dense/vars/0": [h, i],
                   f"{p}/_feedforward_intermediate_dense/vars/1": [i],
                   f"{p}/_feedforward_output_dense/vars/0": [i, h], f"{p}/_feedforward_output_dense/vars/1": [h],
                   f"{p}/_feedforward_layer_norm/vars/0": [h], f"{p}/_feedforward_layer_norm/vars/1": [h]})
  rng = np.random.RandomState(seed)
  weights = {}
  for path, shape in shapes.items():
    value = rng.normal(0.0, 0.3, shape).astype(np.float32)
    if "norm" in path:
      value = value / 10 + (1.0 if path.endswith("/0") else 0.0)
    weights[path] = value
  return weights


def write_preset(directory, arguments, weights, spm_model_file, class_name="AlbertBackbone"):
  """A preset directory as keras-hub saves one: config.json, model.weights.h5, tokenizer.json, metadata.json, assets."""
  os.makedirs(directory / "assets" / "tokenizer")
  (directory / "config.json").write_text(json.dumps({
      "module": "keras_hub.src.models.albert.albert_backbone", "class_name": class_name,
      "config": {"name": "albert_backbone", "trainable": True, **arguments},
      "registered_name": f"keras_hub>{class_name}"}))
  (directory / "tokenizer.json").write_text(json.dumps({"class_name": "AlbertTokenizer", "config": {}}))
  (directory / "metadata.json").write_text(json.dumps({"keras_hub_version": "0.32.0"}))
  shutil.copy(spm_model_file, directory / "assets" / "tokenizer" / "vocabulary.spm")
  with h5py.File(directory / "model.weights.h5", "w") as f:
    for block in range(arguments["num_groups"]):
      name = f"group_{block}_inner_layer_0"
      f.require_group("layers/transformer_encoder" + (f"_{block}" if block else "") + "/vars").attrs["name"] = name
    f.require_group("layers/add/vars")  # a layer without weights, as Keras records it
    for path, value in weights.items():
      f.create_dataset(path, data=value)
  return str(directory)


def keras_outputs(weights, arguments, ids, mask, segments):
  """The backbone's outputs computed in keras-hub's layout (the Model Garden block math, group by layer)."""
  layers_per_group = arguments["num_layers"] // arguments["num_groups"]
  names = {"reversible_embedding/vars/0": "word_embeddings/embeddings", "position_embedding/vars/0":
           "position_embedding/embeddings", "embedding/vars/0": "type_embeddings/embeddings",
           "layer_normalization/vars/0": "embeddings/layer_norm/gamma", "layer_normalization/vars/1":
           "embeddings/layer_norm/beta", "dense/vars/0": "embedding_projection/kernel", "dense/vars/1":
           "embedding_projection/bias", "dense_1/vars/0": "pooler_transform/kernel",
           "dense_1/vars/1": "pooler_transform/bias"}
  sub = {"_self_attention_layer/query_dense": "self_attention/query", "_self_attention_layer/key_dense":
         "self_attention/key", "_self_attention_layer/value_dense": "self_attention/value",
         "_self_attention_layer/output_dense": "self_attention/attention_output", "_self_attention_layer_norm":
         "self_attention_layer_norm", "_feedforward_intermediate_dense": "intermediate", "_feedforward_output_dense":
         "output", "_feedforward_layer_norm": "output_layer_norm"}
  w = {}
  for path, value in weights.items():
    relative = path[len("layers/"):]
    if relative in names:
      w[names[relative]] = value
      continue
    layer, rest = relative.split("/", 1)
    scope, index = rest.rsplit("/vars/", 1)
    leaf = ("gamma", "beta") if "norm" in scope else ("kernel", "bias")
    block = int(layer.rsplit("_", 1)[1]) if layer != "transformer_encoder" else 0
    w[f"block_{block}/{sub[scope]}/{leaf[int(index)]}"] = value
  return garden_forward(w, arguments["num_layers"], ids, mask, segments,
                        block=lambda layer: f"block_{layer // layers_per_group}/")


@pytest.fixture(scope="module")
def preset(tmp_path_factory, spm_model_file):
  weights = preset_weights(ARGUMENTS, seed=2)
  return write_preset(tmp_path_factory.mktemp("keras_hub") / "albert_tiny_en_uncased", ARGUMENTS, weights,
                      spm_model_file), weights


@pytest.mark.slow
def test_from_keras_hub_writes_an_original_directory_with_equal_outputs(preset, tmp_path, spm_model_file):
  path, weights = preset
  out = tmp_path / "albert_tiny"
  result = run_cli("albert.convert", "--from=keras_hub", f"--keras_hub_dir={path}", f"--output_dir={out}", timeout=300)
  assert result.stdout.strip() == f"wrote {out / 'model.ckpt-best'}, albert_config.json and 30k-clean.model in {out}"
  assert sorted(os.listdir(out)) == ["30k-clean.model", "albert_config.json", "model.ckpt-best.data-00000-of-00001",
                                     "model.ckpt-best.index"]
  config = AlbertConfig.from_json_file(str(out / "albert_config.json"))
  assert config == CONFIG
  assert (out / "30k-clean.model").read_bytes() == open(spm_model_file, "rb").read()
  model = AlbertModel(config)
  report = checkpoint.load_variables(model.named_variables(), str(out / "model.ckpt-best"))
  assert not report.missing and not report.unexpected
  ids, mask, segments = inputs()
  ours = model(ids, mask, segments)
  sequence, pooled, layers = keras_outputs(weights, ARGUMENTS, ids, mask, segments)
  assert max_difference(ours.sequence_output, sequence) < 1e-5
  assert max_difference(ours.pooled_output, pooled) < 1e-5
  assert max(max_difference(a, b) for a, b in zip(ours.all_encoder_layers, layers)) < 1e-5


def test_to_keras_hub_writes_keras_hubs_layout_and_round_trips_bit_exactly(preset, tmp_path):
  path, weights = preset
  original = tmp_path / "original"
  keras_hub.preset_to_original(path, str(original), "model.ckpt-best", "30k-clean.model")
  written = tmp_path / "preset"
  keras_hub.original_to_preset(str(original), "model.ckpt-best", "30k-clean.model", str(written))
  assert sorted(os.listdir(written)) == ["assets", "config.json", "metadata.json", "model.weights.h5", "tokenizer.json"]
  config_json = json.loads((written / "config.json").read_text())
  assert (config_json["class_name"], config_json["registered_name"]) == ("AlbertBackbone", "keras_hub>AlbertBackbone")
  assert {key: config_json["config"][key] for key in ARGUMENTS} == ARGUMENTS
  assert json.loads((written / "tokenizer.json").read_text())["registered_name"] == "keras_hub>AlbertTokenizer"
  with h5py.File(written / "model.weights.h5", "r") as f:
    datasets = {}
    f.visititems(lambda name, item: datasets.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    assert f["layers/transformer_encoder_1/vars"].attrs["name"] == "group_1_inner_layer_0"
    assert f["layers/dense/vars"].attrs["name"] == "embedding_projection"
  assert datasets.keys() == weights.keys()
  for name, value in weights.items():
    np.testing.assert_array_equal(datasets[name], value, err_msg=name)
  back = tmp_path / "back"
  keras_hub.preset_to_original(str(written), str(back), "model.ckpt-best", "30k-clean.model")
  first, second = (checkpoint.list_variables(str(d / "model.ckpt-best")) for d in (original, back))
  assert first == second
  for name in first:
    np.testing.assert_array_equal(checkpoint.read_tensors(str(original / "model.ckpt-best"), [name])[name],
                                  checkpoint.read_tensors(str(back / "model.ckpt-best"), [name])[name])


def test_equal_embedding_and_hidden_size_needs_an_identity_projection(tmp_path, spm_model_file):
  arguments = dict(ARGUMENTS, embedding_dim=32, num_groups=1, num_layers=2)
  weights = preset_weights(arguments, seed=3)
  weights["layers/dense/vars/0"] = np.eye(32, dtype=np.float32)
  weights["layers/dense/vars/1"] = np.zeros(32, np.float32)
  config, arrays, _ = keras_hub.read_preset(write_preset(tmp_path / "identity", arguments, weights, spm_model_file))
  assert config.embedding_size == config.hidden_size == 32
  assert not any("embedding_hidden_mapping_in" in name for name in arrays)
  weights["layers/dense/vars/1"] = np.ones(32, np.float32)
  with pytest.raises(UserError, match="embedding_dim == hidden_dim but the embedding projection is not the identity"):
    keras_hub.read_preset(write_preset(tmp_path / "not_identity", arguments, weights, spm_model_file))


def test_bad_presets_are_one_line_errors(preset, tmp_path, spm_model_file):
  path, weights = preset
  no_weights = tmp_path / "no_weights"
  shutil.copytree(path, no_weights)
  os.remove(no_weights / "model.weights.h5")
  with pytest.raises(UserError, match=r"^--keras_hub_dir: .*no_weights has no model.weights.h5 \(the backbone's "
                                      r"weights\); download the whole preset$"):
    keras_hub.read_preset(str(no_weights))
  bert = write_preset(tmp_path / "bert_tiny_en_uncased", ARGUMENTS, weights, spm_model_file, class_name="BertBackbone")
  with pytest.raises(UserError, match=r"^--keras_hub_dir: .*config.json describes a keras_hub>BertBackbone, not a "
                                      r"keras_hub>AlbertBackbone; convert an ALBERT preset$"):
    keras_hub.read_preset(bert)
  wrong = dict(weights)
  wrong["layers/dense_1/vars/0"] = np.zeros([32, 16], np.float32)
  with pytest.raises(UserError, match=r"does not fit its config.json: layers/dense_1/vars/0 \[32, 16\] \(config.json "
                                      r"implies \[32, 32\] as bert/pooler/dense/kernel\)"):
    keras_hub.read_preset(write_preset(tmp_path / "wrong_shape", ARGUMENTS, wrong, spm_model_file))
  extra = dict(weights, **{"layers/dense_2/vars/0": np.zeros([2], np.float32)})
  with pytest.raises(UserError, match=r"has weights with no ALBERT counterpart: layers/dense_2/vars/0$"):
    keras_hub.read_preset(write_preset(tmp_path / "extra", ARGUMENTS, extra, spm_model_file))
  damaged = tmp_path / "damaged"
  shutil.copytree(path, damaged)
  (damaged / "model.weights.h5").write_bytes(b"not hdf5")
  with pytest.raises(UserError, match=r"^--keras_hub_dir: .*model.weights.h5 cannot be read as HDF5: "):
    keras_hub.read_preset(str(damaged))
  with pytest.raises(UserError, match="hidden_act 'relu' cannot be expressed"):
    keras_hub.backbone_config(CONFIG.copy(hidden_act="relu"))
  # Through the command: the last line of stderr, exit status 2, nothing written.
  result = run_cli("albert.convert", "--from=keras_hub", f"--keras_hub_dir={no_weights}",
                   f"--output_dir={tmp_path / 'out'}", check=False, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: --keras_hub_dir: {no_weights} has no model.weights.h5 (the backbone's weights); download the whole "
      "preset")
  assert not (tmp_path / "out").exists()
