"""AlbertConfig: original keys and defaults, JSON round trip, presets, validation, group rule."""

import json

import pytest

from albert.core.errors import UserError
from albert.model.config import AlbertConfig, preset


def test_constructor_defaults_are_the_originals():
  c = AlbertConfig(vocab_size=30000)
  assert (c.embedding_size, c.hidden_size, c.num_hidden_layers, c.num_hidden_groups) == (128, 4096, 12, 1)
  assert (c.num_attention_heads, c.intermediate_size, c.inner_group_num, c.down_scale_factor) == (64, 16384, 1, 1)
  assert (c.hidden_act, c.hidden_dropout_prob, c.attention_probs_dropout_prob) == ("gelu", 0, 0)
  assert (c.max_position_embeddings, c.type_vocab_size, c.initializer_range) == (512, 2, 0.02)


def test_released_json_round_trips_with_unused_keys(tmp_path):
  released = {
      "attention_probs_dropout_prob": 0, "hidden_act": "gelu", "hidden_dropout_prob": 0,
      "embedding_size": 128, "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 16384,
      "max_position_embeddings": 512, "num_attention_heads": 64, "num_hidden_layers": 12,
      "num_hidden_groups": 1, "net_structure_type": 0, "layers_to_keep": [], "gap_size": 0,
      "num_memory_blocks": 0, "inner_group_num": 1, "down_scale_factor": 1, "type_vocab_size": 2,
      "vocab_size": 30000}
  path = tmp_path / "albert_config.json"
  path.write_text(json.dumps(released))
  config = AlbertConfig.from_json_file(str(path))
  assert config.extra == {"net_structure_type": 0, "layers_to_keep": [], "gap_size": 0, "num_memory_blocks": 0}
  out = tmp_path / "out.json"
  config.to_json_file(str(out))
  text = out.read_text()
  assert json.loads(text) == released
  assert text.endswith("}\n") and text.startswith('{\n  "attention_probs_dropout_prob"')  # indent 2, sorted


def test_presets_are_the_v2_archives():
  base = preset("base")
  assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.intermediate_size) == (768, 12, 12, 3072)
  assert base.hidden_dropout_prob == 0 and preset("base", version=1).hidden_dropout_prob == 0.1
  assert preset("xxlarge", version=1).attention_probs_dropout_prob == 0
  assert preset("large").num_hidden_layers == 24 and preset("xlarge").hidden_size == 2048
  assert preset("xxlarge").hidden_size == 4096 and base.vocab_size == 30000
  with pytest.raises(UserError, match="unknown preset"):
    preset("huge")


def test_group_of_layer_matches_the_spec_examples():
  c = AlbertConfig(vocab_size=10, num_hidden_layers=12, num_hidden_groups=5, hidden_size=64, num_attention_heads=4)
  assert [c.group_of_layer(i) for i in range(12)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
  c12 = c.copy(num_hidden_groups=12)
  assert [c12.group_of_layer(i) for i in range(12)] == list(range(12))


@pytest.mark.parametrize("bad, message", [
    ({"hidden_size": 30, "num_attention_heads": 4}, "not a multiple"),
    ({"hidden_act": "swish"}, "hidden_act"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
])
def test_invalid_configs_name_the_key(tmp_path, bad, message):
  d = {"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 4, **bad}
  path = tmp_path / "c.json"
  path.write_text(json.dumps(d))
  with pytest.raises(UserError, match=message) as e:
    AlbertConfig.from_json_file(str(path))
  assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": "64"}, '"hidden_size" must be an integer, found a string'),
    ({"num_hidden_layers": 2.5}, r'"num_hidden_layers" must be an integer, found a number \(2.5\)'),
    ({"hidden_act": ["gelu"]}, '"hidden_act" must be a string, found a list'),
    ({"initializer_range": ""}, '"initializer_range" must be a number, found an empty string'),
    ({"initializer_range": -1}, r"initializer_range must be a number >= 0 \(got -1\)"),
    ({"vocab_size": None}, '"vocab_size" must be an integer, found null'),
])
def test_mistyped_keys_are_one_line_naming_the_key(tmp_path, change, message):
  path = tmp_path / "albert_config.json"
  path.write_text(json.dumps({"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 4, **change}))
  with pytest.raises(UserError, match=message) as e:
    AlbertConfig.from_json_file(str(path))
  assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_a_misspelled_key_is_an_error_and_a_missing_size_is_logged(tmp_path, caplog):
  path = tmp_path / "albert_config.json"
  path.write_text(json.dumps({"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 4, "hiden_act": "relu"}))
  with pytest.raises(UserError, match='"hiden_act" is not a config key; is it a misspelled "hidden_act"'):
    AlbertConfig.from_json_file(str(path))
  # Keys the released files carry but the model does not use are kept, not taken for misspellings.
  path.write_text(json.dumps({"vocab_size": 100, "hidden_size": 32, "num_attention_heads": 4, "gap_size": 0,
                              "net_structure_type": 0, "num_memory_blocks": 0, "layers_to_keep": []}))
  with caplog.at_level("WARNING"):
    config = AlbertConfig.from_json_file(str(path))
  assert config.extra == {"gap_size": 0, "net_structure_type": 0, "num_memory_blocks": 0, "layers_to_keep": []}
  assert "has no embedding_size, num_hidden_layers" in caplog.text  # defaults, as the original, but said


def test_missing_and_malformed_files_are_one_line_errors(tmp_path):
  with pytest.raises(UserError, match="not found"):
    AlbertConfig.from_json_file(str(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text("{ not json")
  with pytest.raises(UserError, match="not valid JSON"):
    AlbertConfig.from_json_file(str(bad))
  missing_vocab = tmp_path / "novocab.json"
  missing_vocab.write_text("{}")
  with pytest.raises(UserError, match="vocab_size"):
    AlbertConfig.from_json_file(str(missing_vocab))
