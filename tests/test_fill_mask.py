"""fill_mask: [MASK] handling, top-k against a numpy masked-LM head, the CLI and its errors.

Also home of the tiny-checkpoint helpers the extract_features and retrieve tests import.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from albert.cli import model_loader
from albert.inference import masked_lm as fill_mask
from albert.io import checkpoint
from albert.modeling import AlbertModel, AlbertPretrainingModel
from albert.tokenization import Token

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tiny_model(directory, config, heads=True, seed=0):
  """albert_config.json + model.ckpt-1 with N(0, 0.3) weights, LayerNorm gammas near 1 and betas near 0.

  Weights this large give texts clearly different outputs; a large shared beta would make every vector
  point the same way.
  """
  os.makedirs(directory, exist_ok=True)
  config_path = os.path.join(directory, "albert_config.json")
  config.to_json_file(config_path)
  model = AlbertPretrainingModel(config) if heads else AlbertModel(config)
  rng = np.random.RandomState(seed)
  values = {}
  for name, variable in model.named_variables().items():
    noise = rng.normal(0.0, 0.3, variable.shape).astype(np.float32)
    if "LayerNorm" in name:
      noise = noise / 10 + (1.0 if name.endswith("gamma") else 0.0)
    values[name] = noise
  prefix = checkpoint.save_checkpoint(os.path.join(directory, "model.ckpt-1"), values)
  return config_path, prefix, values


def encoder_flag_values(config_path, prefix, spm_model_file, *extra):
  """A parsed FlagValues with the encoder flags, independent of absl's global FLAGS."""
  fv = flags.FlagValues()
  model_loader.define_encoder_flags(flag_values=fv)
  fv(["test", f"--albert_config_file={config_path}", f"--init_checkpoint={prefix}",
      f"--spm_model_file={spm_model_file}", *extra])
  return fv


def reference_model(config, prefix):
  """AlbertModel loaded by name from the checkpoint: the reference forward pass."""
  model = AlbertModel(config)
  checkpoint.load_variables(model.named_variables(), prefix)
  return model


def run_cli(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def numpy_mlm_probabilities(values, hidden):
  """softmax(LayerNorm(gelu(h W + b)) E^T + bias), written out in numpy."""
  p = "cls/predictions/"
  x = hidden @ values[p + "transform/dense/kernel"] + values[p + "transform/dense/bias"]
  x = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  x = (x - mean) / np.sqrt(variance + 1e-12) * values[p + "transform/LayerNorm/gamma"] + values[p + "transform/LayerNorm/beta"]
  logits = x @ values["bert/embeddings/word_embeddings"].T + values[p + "output_bias"]
  exp = np.exp(logits - logits.max(-1, keepdims=True))
  return exp / exp.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, spm_model_file):
  from albert.model.config import AlbertConfig
  config = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
  config_path, prefix, values = write_tiny_model(str(tmp_path_factory.mktemp("fill_mask")), config)
  return config, config_path, prefix, values


@pytest.fixture(scope="module")
def encoder(tiny_model, spm_model_file):
  _, config_path, prefix, _ = tiny_model
  fv = encoder_flag_values(config_path, prefix, spm_model_file, "--max_seq_length=32")
  return model_loader.load_encoder(fv, with_mlm_head=True)


def test_masks_become_the_mask_piece_and_the_rest_is_tokenized_as_usual(encoder, spm_model_file):
  import sentencepiece as spm
  sp = spm.SentencePieceProcessor(model_file=spm_model_file)
  text = "The River [MASK] of the city"
  tokens = fill_mask.tokenize_masked(encoder, text)
  expected = sp.encode("the river", out_type=str) + ["[MASK]"] + sp.encode("of the city", out_type=str)
  assert [t.piece for t in tokens] == expected
  mask = tokens[len(sp.encode("the river"))]
  assert text[mask.start:mask.end] == "[MASK]"
  assert [text[t.start:t.end].lower() for t in tokens if t.piece != "[MASK]"] == \
      [p.lstrip("\u2581") for p in expected if p != "[MASK]"]


def test_text_glued_to_a_mask_continues_the_word():
  vocab = {"s": 1, "\u2581s": 2}
  glued = fill_mask._continue_word([Token("\u2581s", 6, 7), Token("\u2581city", 8, 12)], vocab)
  assert [t.piece for t in glued] == ["s", "\u2581city"]
  assert fill_mask._continue_word([Token("\u2581", 6, 6), Token("x", 6, 7)], vocab) == [Token("x", 6, 7)]
  unknown = [Token("\u2581zz", 6, 8)]
  assert fill_mask._continue_word(unknown, vocab) == unknown


def test_top_k_matches_a_numpy_softmax_of_the_mlm_logits(encoder, tiny_model, spm_model_file):
  config, _, prefix, values = tiny_model
  texts = [("a", "The [MASK] of the city was [MASK]."), ("b", "Hello I'm a [MASK] model.")]
  results = fill_mask.predict(encoder, texts, top_k=5, batch_size=2)
  model = reference_model(config, prefix)
  mask_id = encoder.tokenizer.vocab["[MASK]"]
  assert [len(r["masks"]) for r in results] == [2, 1]
  for result in results:
    ids = encoder.tokenizer.convert_tokens_to_ids(result["tokens"])
    hidden = model(tf.constant([ids])).sequence_output.numpy()[0]  # one text alone: no padding
    positions = [i for i, token_id in enumerate(ids) if token_id == mask_id]
    assert [m["token_index"] for m in result["masks"]] == positions
    for mask, position in zip(result["masks"], positions):
      expected = numpy_mlm_probabilities(values, hidden[position])
      top = np.argsort(-expected)[:5]
      predictions = mask["predictions"]
      assert [p["token_id"] for p in predictions] == top.tolist()
      assert len({p["token"] for p in predictions}) == 5
      np.testing.assert_allclose([p["probability"] for p in predictions], expected[top], rtol=1e-4, atol=1e-6)
      assert sum(p["probability"] for p in predictions) <= 1.0
      assert all(p["probability"] >= q["probability"] for p, q in zip(predictions, predictions[1:]))


def test_too_long_texts_and_texts_without_mask_are_user_errors(encoder, tmp_path):
  from albert.core.errors import UserError
  with pytest.raises(UserError, match="max_seq_length=32"):
    fill_mask.predict(encoder, [("--text #1", "word " * 40 + "[MASK]")], top_k=3, batch_size=1)
  path = tmp_path / "texts.txt"
  path.write_text("a [MASK] here\n\nno mask here\n", encoding="utf-8")
  with pytest.raises(UserError, match=r"line 3: no \[MASK\]"):
    fill_mask.read_texts(None, str(path))


def test_cli_prints_a_table_and_writes_json(tiny_model, spm_model_file, tmp_path):
  _, config_path, prefix, _ = tiny_model
  output = tmp_path / "out" / "masks.json"
  result = run_cli("albert.fill_mask", f"--albert_config_file={config_path}", f"--init_checkpoint={os.path.dirname(prefix)}",
                   f"--spm_model_file={spm_model_file}", "--text=Hello I'm a [MASK] model.", "--top_k=3",
                   f"--output_file={output}")
  assert result.returncode == 0, result.stderr
  saved = json.loads(output.read_text(encoding="utf-8"))
  predictions = saved[0]["masks"][0]["predictions"]
  assert len(predictions) == 3
  assert saved[0]["text"] in result.stdout
  assert predictions[0]["token"] in result.stdout
  assert predictions[0]["sequence"].startswith("Hello I'm a ")


def test_cli_rejects_a_checkpoint_without_the_mlm_head(tmp_path, spm_model_file, tiny_model):
  config = tiny_model[0]
  config_path, prefix, _ = write_tiny_model(str(tmp_path / "encoder_only"), config, heads=False)
  result = run_cli("albert.fill_mask", f"--albert_config_file={config_path}", f"--init_checkpoint={prefix}",
                   f"--spm_model_file={spm_model_file}", "--text=a [MASK] b")
  assert result.returncode == 2
  assert "error: --init_checkpoint" in result.stderr and "masked-LM head" in result.stderr
  assert "Traceback" not in result.stderr
