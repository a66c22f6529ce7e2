"""Shared pytest fixtures: real data from ../shared/data, a tiny SentencePiece model, tiny configs."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))

# The original release's spm_train options (README): pad 0, unk 1, no bos/eos, three control symbols.
# The user-defined symbols are passed as a list: as one comma-separated string, SentencePiece's flag
# parser reads the '"' as a CSV quote and merges the last six symbols into one.
SPM_OPTIONS = dict(
    pad_id=0, unk_id=1, eos_id=-1, bos_id=-1,
    control_symbols=["[CLS]", "[SEP]", "[MASK]"],
    user_defined_symbols=["(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac"],
    shuffle_input_sentence=True, character_coverage=0.99995, model_type="unigram",
)


def shared_path(*parts):
  """Path of a file under ../shared/data; skips the test when the folder is absent."""
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f"shared data not available: {path} (set ALBERT_SHARED_DATA)")
  return path


def run_cli(module, *args, check=True, timeout=900):
  """Runs `python -m <module> args...` from the repository root; raises with its stderr on failure."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc


def subset_file(source, target, num_questions):
  """A SQuAD file with the first `num_questions` questions of `source` (fast end-to-end runs)."""
  with open(source, encoding="utf-8") as f:
    data = json.load(f)
  kept, left = [], num_questions
  for article in data["data"]:
    paragraphs = []
    for paragraph in article["paragraphs"]:
      if left <= 0:
        break
      qas = paragraph["qas"][:left]
      left -= len(qas)
      paragraphs.append(dict(paragraph, qas=qas))
    if paragraphs:
      kept.append(dict(article, paragraphs=paragraphs))
  with open(target, "w", encoding="utf-8") as f:
    json.dump(dict(data, data=kept), f)
  return str(target)


def train_spm(output_prefix, input_path, vocab_size):
  import sentencepiece as spm
  spm.SentencePieceTrainer.train(
      input=input_path, model_prefix=output_prefix, vocab_size=vocab_size,
      input_sentence_size=20000, minloglevel=2, num_threads=2, **SPM_OPTIONS)
  return output_prefix + ".model"


# The SQuAD command-line tests' model: small, but large enough to fit a few hundred real questions.
SQUAD_TINY_CONFIG = dict(vocab_size=2000, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                         num_hidden_groups=1, num_attention_heads=4, intermediate_size=128, inner_group_num=1,
                         hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         max_position_embeddings=128, type_vocab_size=2, initializer_range=0.02)


@pytest.fixture(scope="session")
def squad_assets(tmp_path_factory, spm_model_file):
  """The session's SentencePiece model and an albert_config.json of SQUAD_TINY_CONFIG."""
  config_file = tmp_path_factory.mktemp("squad_assets") / "albert_config.json"
  config_file.write_text(json.dumps(SQUAD_TINY_CONFIG))
  return {"spm": spm_model_file, "config": str(config_file)}


@pytest.fixture(scope="session")
def spm_model_file(tmp_path_factory):
  """A 2000-piece unigram SentencePiece model trained on WikiText-2 with the original options."""
  corpus = shared_path("corpus", "wikitext2-valid.txt")
  prefix = str(tmp_path_factory.mktemp("spm") / "wiki2k")
  return train_spm(prefix, corpus, 2000)


@pytest.fixture
def tiny_config():
  """A tiny ALBERT config (E != H, so embedding_hidden_mapping_in exists)."""
  from albert.model.config import AlbertConfig
  return AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                      num_hidden_groups=1, num_attention_heads=4, intermediate_size=64,
                      inner_group_num=1, hidden_act="gelu", hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, max_position_embeddings=128,
                      type_vocab_size=2, initializer_range=0.02)


def write_tf1_hub_module(directory, config, spm_model_file):
  """A module in the original TF1 Hub layout (the config and SentencePiece assets, the variables under
  their original names, a tfhub_module.pb marker); returns the AlbertModel whose weights it holds."""
  import shutil
  from albert.io import checkpoint
  from albert.modeling import AlbertModel
  (directory / "assets").mkdir(parents=True)
  (directory / "tfhub_module.pb").write_bytes(b"")
  config.to_json_file(str(directory / "assets" / "albert_config.json"))
  shutil.copy(spm_model_file, directory / "assets" / "30k-clean.model")
  model = AlbertModel(config)
  checkpoint.save_checkpoint(str(directory / "variables" / "variables"), model.named_variables())
  return model
