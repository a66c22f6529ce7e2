"""Consuming exported modules: hub.load, hub.KerasLayer, TFHUB_CACHE_DIR handles, HubAlbertModel, tokenizers,
and the original TF1 modules of both versions (with and without assets/albert_config.json)."""

import hashlib
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli, write_tf1_hub_module
from test_export import write_model_directory

from albert.core.errors import UserError
from albert.export import tfhub as export_to_tfhub
from albert.io import checkpoint
from albert.model import hub, shapes, variables
from albert.model.config import AlbertConfig, preset
from albert.modeling import AlbertModel
from albert.tokenization import FullTokenizer

CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                      num_hidden_groups=2, num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1, max_position_embeddings=64)
HANDLE = "https://tfhub.dev/google/albert_base/3"


@pytest.fixture(scope="module")
def module(tmp_path_factory, spm_model_file):
  """(export path, model directory): one tiny export with random weights for the whole file."""
  root = tmp_path_factory.mktemp("hub")
  directory = str(root / "albert")
  write_model_directory(directory, CONFIG, spm_model_file, seed=5)
  path = export_to_tfhub.export_module(directory, "model.ckpt-best", str(root / "module"))
  return path, directory


def checkpoint_route(directory):
  """The reference: AlbertModel loaded from the exported checkpoint by name."""
  model = AlbertModel(CONFIG)
  checkpoint.load_variables(model.named_variables(), os.path.join(directory, "model.ckpt-best"))
  return model


def inputs():
  rng = np.random.default_rng(11)
  ids = rng.integers(5, 2000, size=(3, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, 7:] = 0
  segments = np.zeros_like(ids)
  segments[:, 6:] = 1
  return ids, mask, segments


def test_hub_load_matches_the_checkpoint_route(module):
  path, directory = module
  loaded = hub.tensorflow_hub().load(path)
  ids, mask, segments = inputs()
  outputs = loaded.signatures["tokens"](input_ids=ids, input_mask=mask, segment_ids=segments)
  expected = checkpoint_route(directory)(ids, mask, segments)
  np.testing.assert_allclose(outputs["sequence_output"], expected.sequence_output, atol=1e-5)
  np.testing.assert_allclose(outputs["pooled_output"], expected.pooled_output, atol=1e-5)


def test_keras_layer_is_trainable_and_matches(module):
  path, directory = module
  tensorflow_hub = hub.tensorflow_hub()
  layer = tensorflow_hub.KerasLayer(path, trainable=True)
  ids, mask, segments = inputs()
  feed = {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask), "input_type_ids": tf.constant(segments)}
  expected = checkpoint_route(directory)(ids, mask, segments)
  np.testing.assert_allclose(layer(feed, training=False)["pooled_output"], expected.pooled_output, atol=1e-5)
  assert len(layer.trainable_weights) == len(expected_names())
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(layer(feed, training=True)["sequence_output"] ** 2)
  gradients = tape.gradient(loss, layer.trainable_weights)
  named = {w.name[:-2]: g for w, g in zip(layer.trainable_weights, gradients)}
  encoder = {name: g for name, g in named.items() if name.startswith("bert/") and "pooler" not in name}
  assert encoder and all(g is not None and float(tf.norm(tf.convert_to_tensor(g))) > 0 for g in encoder.values())


def expected_names():
  from albert.modeling import AlbertPretrainingModel
  return AlbertPretrainingModel(CONFIG).named_variables()


def _cache(tmp_path, monkeypatch, path):
  """Places the module where tensorflow_hub caches HANDLE, so resolving it needs no network."""
  cache = tmp_path / "tfhub_cache"
  shutil.copytree(path, cache / hashlib.sha1(HANDLE.encode("utf8")).hexdigest())
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
  return cache


def test_cached_handle_gives_model_and_tokenizer(module, tmp_path, monkeypatch, spm_model_file):
  path, directory = module
  cache = _cache(tmp_path, monkeypatch, path)
  assert hub.resolve(HANDLE).startswith(str(cache))
  config, model, tokenizer = hub.create_model_and_tokenizer(HANDLE, do_lower_case=True)
  assert config.to_dict() == CONFIG.to_dict()
  ids, mask, segments = inputs()
  outputs = model(ids, mask, segments)
  expected = checkpoint_route(directory)(ids, mask, segments)
  for got, want in zip(outputs, expected):
    if isinstance(got, tuple):
      assert len(got) == len(want) == 3
      for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    else:
      np.testing.assert_allclose(got, want, atol=1e-5)
  reference = FullTokenizer(spm_model_file=spm_model_file, do_lower_case=True)
  text = "The Normans gave their name to Normandy in 1,000 AD."
  assert tokenizer.tokenize_with_offsets(text) == reference.tokenize_with_offsets(text)
  assert tokenizer.vocab == reference.vocab


def test_hub_model_trains_under_the_original_names(module, tmp_path):
  path, _ = module
  _, model = hub.load_model(path, expected_config=CONFIG)
  names = model.named_variables()
  assert set(names) == set(AlbertModel(CONFIG).named_variables())
  ids, mask, segments = inputs()
  variables = list(names.values())
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(ids, mask, segments, training=True).pooled_output ** 2)
  gradients = dict(zip(names, tape.gradient(loss, variables)))
  assert gradients["bert/pooler/dense/kernel"] is not None
  assert gradients["bert/encoder/transformer/group_1/inner_group_0/ffn_1/intermediate/dense/kernel"] is not None
  assert all(g is not None for name, g in gradients.items() if "pooler" in name or "group_0" in name)
  # A checkpoint written from the hub model loads into AlbertModel by the original names.
  names["bert/pooler/dense/bias"].assign(tf.fill([32], 0.5))
  prefix = str(tmp_path / "fine_tuned" / "model.ckpt-1")
  checkpoint.save_checkpoint(prefix, names)
  fresh = AlbertModel(CONFIG)
  report = checkpoint.load_variables(fresh.named_variables(), prefix)
  assert not report.missing
  np.testing.assert_array_equal(fresh.named_variables()["bert/pooler/dense/bias"].numpy(), np.full([32], 0.5))


def test_spm_model_file_overrides_the_module_asset(module, tmp_path, spm_model_file):
  path, _ = module
  other = str(tmp_path / "renamed.model")
  shutil.copy(spm_model_file, other)
  tokenizer = hub.create_tokenizer(path, spm_model_file=other, do_lower_case=False)
  assert tokenizer.do_lower_case is False
  from_module = hub.create_tokenizer(path)
  assert from_module.do_lower_case is True  # the module was exported with do_lower_case=True


def test_tf1_hub_module_loads_through_its_checkpoint(tmp_path, spm_model_file):
  """The original TF1 Hub format: assets + variables/variables with the names of docs/compatibility.md §2.7."""
  module_dir = tmp_path / "tf1_module"
  source = write_tf1_hub_module(module_dir, CONFIG, spm_model_file)
  assert tf.compat.v1.saved_model.contains_saved_model(str(module_dir))
  assert sorted(os.listdir(module_dir / "assets")) == ["30k-clean.model", "albert_config.json"]
  config, model, tokenizer = hub.create_model_and_tokenizer(str(module_dir))
  assert config == CONFIG
  ids, mask, segments = inputs()
  np.testing.assert_allclose(model(ids, mask, segments).pooled_output, source(ids, mask, segments).pooled_output,
                             atol=1e-6)
  assert tokenizer.tokenize("hello world") == FullTokenizer(spm_model_file=spm_model_file).tokenize("hello world")


def test_broken_or_mismatched_modules_are_one_line_errors(module, tmp_path):
  path, _ = module
  with pytest.raises(UserError, match="albert_hub_module_handle.*cannot resolve"):
    hub.resolve(str(tmp_path / "does_not_exist"))
  with pytest.raises(UserError, match="no assets/albert_config.json"):
    hub.load_model(str(tmp_path))
  not_saved_model = tmp_path / "not_saved_model"
  shutil.copytree(os.path.join(path, "assets"), not_saved_model / "assets")
  with pytest.raises(UserError, match="not a loadable SavedModel"):
    hub.load_model(str(not_saved_model))
  with pytest.raises(UserError, match="does not match --albert_config_file.*hidden_size 32 vs 64"):
    hub.load_model(path, expected_config=CONFIG.copy(hidden_size=64))
  lying = tmp_path / "lying"
  shutil.copytree(path, lying)
  CONFIG.copy(intermediate_size=128).to_json_file(str(lying / "assets" / "albert_config.json"))
  with pytest.raises(UserError, match="do not match its albert_config.json.*ffn_1/intermediate/dense/kernel"):
    hub.load_model(str(lying))


# ---- version-1 TF1 modules (albert_<size>/1): assets/30k-clean.model only, no albert_config.json ----

V1_CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                         max_position_embeddings=64)
# A released-like size of V1_CONFIG's hidden and feed-forward widths; vocabulary and positions come from the module.
TINY_PRESETS = {"albert_tiny v1": V1_CONFIG.copy(vocab_size=30000, max_position_embeddings=512)}


@pytest.fixture(scope="module")
def v1_module(tmp_path_factory, spm_model_file):
  """(module directory, the AlbertModel whose weights it holds) of a version-1 layout module."""
  module_dir = tmp_path_factory.mktemp("v1") / "albert_tiny_1"
  source = write_tf1_hub_module(module_dir, V1_CONFIG, spm_model_file, with_config=False, seed=3)
  assert sorted(os.listdir(module_dir)) == ["assets", "saved_model.pb", "tfhub_module.pb", "variables"]
  assert os.listdir(module_dir / "assets") == ["30k-clean.model"]
  return str(module_dir), source


def test_v1_module_takes_the_shapes_matching_preset_and_says_so(v1_module, caplog, spm_model_file):
  module_dir, source = v1_module
  with caplog.at_level(logging.WARNING):
    config = hub.module_config(module_dir, presets=TINY_PRESETS)
  assert config == V1_CONFIG  # layers, heads and dropout from the preset; vocab and positions from the shapes
  assert [r.getMessage() for r in caplog.records if "albert_config.json" in r.getMessage()] == [(
      f"module {module_dir} has no assets/albert_config.json: using the albert_tiny v1 preset (hidden 32, 2 layers, "
      "4 heads, dropout 0.1) matched by its variable shapes (vocab_size 2000, embedding_size 16, hidden_size 32, "
      "intermediate_size 64, max_position_embeddings 64, type_vocab_size 2, num_hidden_groups 1, inner_group_num 1); "
      "pass --albert_config_file to override")]
  model = hub.load_encoder(module_dir, config)
  ids, mask, segments = inputs()
  np.testing.assert_allclose(model(ids, mask, segments).sequence_output, source(ids, mask, segments).sequence_output,
                             atol=1e-6)
  tokenizer = hub.create_tokenizer(module_dir)  # the SentencePiece model alone, no .vocab asset
  assert tokenizer.vocab == FullTokenizer(spm_model_file=spm_model_file).vocab


def test_released_presets_are_told_apart_by_their_shapes():
  """The real table: each released v1 size is found from its variable shapes alone (no files)."""
  presets = shapes.released_v1_presets()
  for size in ("base", "large", "xlarge", "xxlarge"):
    released = preset(size, version=1)
    sizes = shapes.module_sizes(variables.pretraining_shapes(released))
    name, config = shapes.match_preset(sizes, presets)
    assert (name, config) == (f"albert_{size} v1", released)
  assert (preset("base", 1).hidden_dropout_prob, preset("xxlarge", 1).hidden_dropout_prob) == (0.1, 0.0)
  # Another vocabulary (e.g. the Chinese models) keeps the preset's layers and heads.
  name, config = shapes.match_preset(shapes.module_sizes(variables.encoder_shapes(preset("base", 1, vocab_size=21128))),
                                  presets)
  assert (name, config.vocab_size, config.num_hidden_layers) == ("albert_base v1", 21128, 12)
  # Shapes of no released size: more groups, or a custom width.
  assert shapes.match_preset(shapes.module_sizes(variables.encoder_shapes(preset("base", 1).copy(num_hidden_groups=2))),
                          presets) is None
  assert shapes.match_preset(shapes.module_sizes(variables.encoder_shapes(V1_CONFIG)), presets) is None


def test_v1_module_checks_a_given_config_against_its_shapes(v1_module):
  module_dir, _ = v1_module
  assert hub.module_config(module_dir, V1_CONFIG.copy(hidden_dropout_prob=0.0)).hidden_dropout_prob == 0.0
  with pytest.raises(UserError, match=r"variables of .*albert_tiny_1 do not match --albert_config_file \(module vs "
                                      r"file\): intermediate_size 64 vs 128$"):
    hub.module_config(module_dir, V1_CONFIG.copy(intermediate_size=128))
  bare = os.path.join(os.path.dirname(module_dir), "no_variables")
  shutil.copytree(module_dir, bare, ignore=shutil.ignore_patterns("variables"))
  with pytest.raises(UserError, match="has neither assets/albert_config.json nor a variables/variables checkpoint"):
    hub.module_config(bare)


def test_v1_module_through_the_command_line(v1_module, tmp_path, spm_model_file):
  """With --albert_config_file the tool runs on the module's weights; without it and with shapes of no
  released size it stops with one line naming the module."""
  module_dir, source = v1_module
  config_file = tmp_path / "albert_config.json"
  V1_CONFIG.to_json_file(str(config_file))
  texts = tmp_path / "texts.txt"
  texts.write_text("the version one module has no config.\n", encoding="utf-8")
  hub_flags = [f"--albert_hub_module_handle={module_dir}", "--spm_model_file=from_tf_hub", f"--input_file={texts}",
               "--max_seq_length=32"]
  result = run_cli("albert.extract_features", *hub_flags, f"--albert_config_file={config_file}",
                   f"--output_dir={tmp_path / 'features'}", timeout=300)
  assert (f"module {module_dir} has no assets/albert_config.json: using the config given (--albert_config_file), "
          "whose sizes match its variable shapes") in result.stderr
  record = json.loads((tmp_path / "features" / "examples.jsonl").read_text().splitlines()[0])
  ids = FullTokenizer(spm_model_file=spm_model_file).convert_tokens_to_ids(record["tokens"])
  expected = source(np.asarray([ids], np.int32), np.ones([1, len(ids)], np.int32),
                    np.zeros([1, len(ids)], np.int32)).pooled_output
  np.testing.assert_allclose(np.load(tmp_path / "features" / "pooled.npy"), expected, atol=1e-5)

  result = run_cli("albert.extract_features", *hub_flags, f"--output_dir={tmp_path / 'refused'}", check=False,
                   timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: --albert_hub_module_handle: {module_dir} has no assets/albert_config.json and its variable shapes "
      "(vocab_size 2000, embedding_size 16, hidden_size 32, intermediate_size 64, max_position_embeddings 64, "
      "type_vocab_size 2, num_hidden_groups 1, inner_group_num 1) match no known ALBERT size (albert_base v1, "
      "albert_large v1, albert_xlarge v1, albert_xxlarge v1); pass --albert_config_file")
  assert not (tmp_path / "refused").exists()
