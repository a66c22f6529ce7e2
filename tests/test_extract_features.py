"""extract_features: outputs against a per-example reference forward pass, the .npy row writer, the CLI."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from test_fill_mask import encoder_flag_values, reference_model, run_cli, write_tiny_model

from albert.cli import model_loader
from albert.core.errors import UserError
from albert.export import tfhub as export_to_tfhub
from albert.inference import encoder as encoders
from albert.inference import features as extract_features
from albert.io.npy import npy_row_writer
from albert.model.config import AlbertConfig

TEXTS = ["The city was founded in 1990, by settlers.", "A short one ||| and  its Pair", "", "Café   résumé"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  config = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
  config_path, prefix, _ = write_tiny_model(str(tmp_path_factory.mktemp("features")), config, heads=False, seed=1)
  return config, config_path, prefix


@pytest.fixture(scope="module")
def input_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("input") / "texts.txt"
  path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
  return str(path)


def test_outputs_match_a_reference_run_of_each_example_alone(tiny_model, input_file, spm_model_file, tmp_path):
  config, config_path, prefix = tiny_model
  encoder = model_loader.load_encoder(encoder_flag_values(config_path, prefix, spm_model_file, "--max_seq_length=24"))
  output_dir = str(tmp_path / "out")
  count = extract_features.extract(encoder, extract_features.read_examples(input_file), output_dir, [-1, 0],
                                   batch_size=3, write_token_vectors=True)
  assert count == len(TEXTS)
  pooled, mean = np.load(os.path.join(output_dir, "pooled.npy")), np.load(os.path.join(output_dir, "mean.npy"))
  sequence = np.load(os.path.join(output_dir, "sequence.npy"))
  assert pooled.shape == (4, 32) and mean.shape == (4, 2, 32) and sequence.shape == (4, 2, 24, 32)
  records = [json.loads(line) for line in open(os.path.join(output_dir, "examples.jsonl"), encoding="utf-8")]
  model = reference_model(config, prefix)
  for row, record in enumerate(records):
    ids = encoder.tokenizer.convert_tokens_to_ids(record["tokens"])
    outputs = model(tf.constant([ids]), token_type_ids=tf.constant([record["segment_ids"]]))
    last, first = outputs.all_encoder_layers[-1].numpy()[0], outputs.all_encoder_layers[0].numpy()[0]
    np.testing.assert_allclose(pooled[row], outputs.pooled_output.numpy()[0], atol=2e-5)
    np.testing.assert_allclose(mean[row, 0], last.mean(axis=0), atol=2e-5)
    np.testing.assert_allclose(mean[row, 1], first.mean(axis=0), atol=2e-5)
    np.testing.assert_allclose(sequence[row, 0, :len(ids)], last, atol=2e-5)
    assert not sequence[row, :, len(ids):].any()


def test_examples_record_pairs_segments_and_raw_offsets(tiny_model, input_file, spm_model_file, tmp_path):
  _, config_path, prefix = tiny_model
  encoder = model_loader.load_encoder(encoder_flag_values(config_path, prefix, spm_model_file, "--max_seq_length=12"))
  output_dir = str(tmp_path / "out")
  extract_features.extract(encoder, extract_features.read_examples(input_file), output_dir, [-1], 2, False)
  assert not os.path.exists(os.path.join(output_dir, "sequence.npy"))
  records = [json.loads(line) for line in open(os.path.join(output_dir, "examples.jsonl"), encoding="utf-8")]
  assert [r["text_a"] for r in records] == [TEXTS[0], "A short one", "", "Café   résumé"]
  pair = records[1]
  assert pair["text_b"] == "and  its Pair" and "text_b" not in records[0]
  separator = pair["tokens"].index("[SEP]")
  assert pair["segment_ids"] == [0] * (separator + 1) + [1] * (len(pair["tokens"]) - separator - 1)
  assert records[0]["truncated"] and len(records[0]["tokens"]) == 12 and not pair["truncated"]
  assert records[2]["tokens"] == ["[CLS]", "[SEP]"]
  for record in records:
    texts = [record["text_a"], record.get("text_b")]
    for piece, segment, offset in zip(record["tokens"], record["segment_ids"], record["offsets"]):
      if piece in ("[CLS]", "[SEP]"):
        assert offset is None
        continue
      covered = texts[segment][offset[0]:offset[1]]
      # lower-cased and accent-stripped, the raw span spells the piece
      assert piece.lstrip("\u2581") == covered.lower().replace("é", "e")


def test_npy_row_writer_streams_rows_into_a_valid_npy(tmp_path):
  path = str(tmp_path / "rows.npy")
  rows = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
  with npy_row_writer(path, [2, 3]) as writer:
    writer.append(rows[:2])
    writer.append(rows[2:])
  np.testing.assert_array_equal(np.load(path), rows)
  empty = str(tmp_path / "empty.npy")
  with npy_row_writer(empty, [4]):
    pass
  assert np.load(empty).shape == (0, 4)
  with pytest.raises(ValueError), npy_row_writer(str(tmp_path / "bad.npy"), [4]) as writer:
    writer.append(np.zeros([1, 3]))
  assert sorted(os.listdir(tmp_path)) == ["empty.npy", "rows.npy"]


def test_layer_indices_are_checked():
  assert encoders.layer_indices("-1,-2, 0", 3) == [-1, -2, 0]
  for spec in ("3", "-4", "a", ""):
    with pytest.raises(UserError, match="--layers"):
      encoders.layer_indices(spec, 3)


def test_empty_input_is_an_error_and_leaves_no_outputs(tiny_model, spm_model_file, tmp_path):
  _, config_path, prefix = tiny_model
  encoder = model_loader.load_encoder(encoder_flag_values(config_path, prefix, spm_model_file))
  empty = tmp_path / "empty.txt"
  empty.write_text("", encoding="utf-8")
  output_dir = tmp_path / "out"
  with pytest.raises(UserError, match="empty.txt has no lines"):
    extract_features.extract(encoder, extract_features.read_examples(str(empty)), str(output_dir), [-1], 2,
                             False, input_name=str(empty))
  assert os.listdir(output_dir) == []


def test_cli_writes_all_outputs_and_reports_bad_layers(tiny_model, input_file, spm_model_file, tmp_path):
  _, config_path, prefix = tiny_model
  model_flags = [f"--albert_config_file={config_path}", f"--init_checkpoint={prefix}",
                 f"--spm_model_file={spm_model_file}"]
  output_dir = tmp_path / "features"
  result = run_cli("albert.extract_features", *model_flags, f"--input_file={input_file}",
                   f"--output_dir={output_dir}", "--layers=-1,-3")
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(output_dir)) == ["examples.jsonl", "features.json", "mean.npy", "pooled.npy"]
  info = json.loads((output_dir / "features.json").read_text(encoding="utf-8"))
  assert info["layers"] == [2, 0] and info["count"] == 4 and info["model"]["init_checkpoint"] == prefix
  bad = run_cli("albert.extract_features", *model_flags, f"--input_file={input_file}",
                f"--output_dir={tmp_path / 'bad'}", "--layers=7")
  assert bad.returncode == 2 and "error: --layers: layer 7 does not exist" in bad.stderr


@pytest.mark.slow
def test_a_tf_hub_module_gives_the_checkpoint_features(tmp_path, spm_model_file):
  config = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
  directory = str(tmp_path / "albert")
  config_path, prefix, _ = write_tiny_model(directory, config, heads=True, seed=3)
  shutil.copy(spm_model_file, os.path.join(directory, "30k-clean.model"))
  module = export_to_tfhub.export_module(directory, os.path.basename(prefix), str(tmp_path / "module"))
  hub_flags = flags.FlagValues()
  model_loader.define_encoder_flags(flag_values=hub_flags)
  hub_flags(["test", f"--albert_hub_module_handle={module}"])
  from_hub = model_loader.load_encoder(hub_flags)
  from_checkpoint = model_loader.load_encoder(encoder_flag_values(config_path, prefix, spm_model_file))
  texts = ("The river flows north.", "Music and football")
  inputs = [from_checkpoint.encode_text(text) for text in texts]
  assert [x.tokens for x in inputs] == [from_hub.encode_text(text).tokens for text in texts]
  for pooling in encoders.POOLINGS:
    np.testing.assert_allclose(from_hub.embed(inputs, pooling), from_checkpoint.embed(inputs, pooling), atol=1e-5)
  with pytest.raises(UserError, match="masked-LM head"):
    model_loader.load_encoder(hub_flags, with_mlm_head=True)
