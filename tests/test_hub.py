"""Consuming exported modules: hub.load, hub.KerasLayer, TFHUB_CACHE_DIR handles, HubAlbertModel, tokenizers."""

import hashlib
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_tf1_hub_module
from test_export import write_model_directory

from albert.core.errors import UserError
from albert.export import tfhub as export_to_tfhub
from albert.io import checkpoint
from albert.model import hub
from albert.model.config import AlbertConfig
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
  path, directory = module
  config, model = hub.load_model(path, expected_config=CONFIG)
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
  config, model, tokenizer = hub.create_model_and_tokenizer(str(module_dir))
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
