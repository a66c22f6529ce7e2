"""albert.train_spm and scripts/train_spm.sh: the original spm_train options and clear errors."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_path

from albert.text.spm_training import split_symbols

EXPECTED_FIRST_PIECES = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]",
                         "(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac"]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable)


def _run(args):
  return subprocess.run(args, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
  """The first 1500 lines of WikiText-2: enough for 1000 pieces, fast to train on."""
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    lines = f.readlines()[:1500]
  path = tmp_path_factory.mktemp("spm_corpus") / "slice.txt"
  path.write_text("".join(lines), encoding="utf-8")
  return str(path)


def _pieces(model_file):
  import sentencepiece as spm
  model = spm.SentencePieceProcessor(model_file=model_file)
  return [model.id_to_piece(i) for i in range(model.get_piece_size())], model


def test_readme_symbol_string_splits_into_eight_symbols():
  assert split_symbols('(,),",-,.,\u2013,\u00a3,\u20ac') == EXPECTED_FIRST_PIECES[5:]
  assert split_symbols("[CLS],[SEP],[MASK]") == ["[CLS]", "[SEP]", "[MASK]"]
  assert split_symbols("") == []


def test_cli_trains_model_with_the_original_special_ids(corpus_slice, tmp_path):
  prefix = str(tmp_path / "out" / "1k-clean")
  result = _run([sys.executable, "-m", "albert.train_spm", f"--input={corpus_slice}",
                 f"--model_prefix={prefix}", "--vocab_size=1000", "--num_threads=2"])
  assert result.returncode == 0, result.stderr
  pieces, model = _pieces(prefix + ".model")
  assert len(pieces) == 1000
  assert pieces[:13] == EXPECTED_FIRST_PIECES
  assert model.bos_id() == -1 and model.eos_id() == -1
  assert model.pad_id() == 0 and model.unk_id() == 1
  # Control symbols are never produced from text; user-defined symbols always are single pieces.
  assert "[CLS]" not in model.encode("[CLS] hello", out_type=str)
  assert "\u20ac" in model.encode("it cost 5\u20ac.", out_type=str)
  with open(prefix + ".vocab", encoding="utf-8") as f:
    assert [line.split("\t")[0] for line in f][:13] == EXPECTED_FIRST_PIECES
  assert sorted(os.listdir(tmp_path / "out")) == ["1k-clean.model", "1k-clean.vocab"]


def test_pieces_are_learned_on_the_text_the_tokenizer_will_feed(corpus_slice, tmp_path):
  """By default the corpus is preprocessed like the tokenizer does (lowercased, accents stripped): no
  piece holds an upper-case letter, and lowercased text encodes in fewer pieces than with a model
  trained on the raw cased text (which spends pieces on capitalised forms the tokenizer never feeds)."""
  from albert import tokenization
  models = {}
  for name, extra in (("default", []), ("raw", ["--nopreprocess"])):
    prefix = str(tmp_path / name)
    result = _run([sys.executable, "-m", "albert.train_spm", f"--input={corpus_slice}",
                   f"--model_prefix={prefix}", "--vocab_size=1000", "--num_threads=2", *extra])
    assert result.returncode == 0, result.stderr
    models[name] = _pieces(prefix + ".model")
  pieces, _ = models["default"]
  assert not [piece for piece in pieces[13:] if piece != piece.lower()]
  assert [piece for piece in models["raw"][0][13:] if piece != piece.lower()]  # the raw model is cased
  with open(corpus_slice, encoding="utf-8") as f:
    text = tokenization.preprocess_text(f.read(), lower=True)
  lengths = {name: len(model.encode(text)) for name, (_, model) in models.items()}
  assert lengths["default"] < lengths["raw"], lengths


def test_shell_wrapper_passes_the_original_options(corpus_slice, tmp_path):
  prefix = str(tmp_path / "wrapped")
  result = _run(["bash", os.path.join(REPO_ROOT, "scripts", "train_spm.sh"), corpus_slice, prefix, "800",
                 "--num_threads=2"])
  assert result.returncode == 0, result.stderr
  pieces, _ = _pieces(prefix + ".model")
  assert len(pieces) == 800 and pieces[:13] == EXPECTED_FIRST_PIECES


def _error_line(tmp_path, corpus_text, *flags):
  """Runs train_spm on a corpus with `corpus_text`; asserts the user-error exit, returns the error line."""
  corpus = tmp_path / "corpus.txt"
  corpus.write_text(corpus_text, encoding="utf-8")
  result = _run([sys.executable, "-m", "albert.train_spm", f"--input={corpus}", f"--model_prefix={tmp_path / 'm'}",
                 *flags])
  assert result.returncode == 2
  return result.stderr.strip().splitlines()[-1]


def test_vocab_too_large_for_corpus_names_the_flag(tmp_path):
  error = _error_line(tmp_path, "a small corpus.\nwith very few words in it.\n", "--vocab_size=2000")
  assert error.startswith("error: --vocab_size=2000 is too large for this corpus")
  assert not os.path.exists(tmp_path / "m.model")


@pytest.mark.parametrize("input_flag,expected", [
    ("--input=/nonexistent/corpus*.txt", "error: --input: no file matches /nonexistent/corpus*.txt"),
    (None, "error: --input is required"),
])
def test_missing_input_is_a_clear_error(tmp_path, input_flag, expected):
  args = [sys.executable, "-m", "albert.train_spm", f"--model_prefix={tmp_path / 'm'}"]
  result = _run(args + ([input_flag] if input_flag else []))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == expected


def test_empty_corpus_is_a_clear_error(tmp_path):
  error = _error_line(tmp_path, "\n\n", "--vocab_size=100")
  assert error == f"error: --input: no text to train on in {tmp_path / 'corpus.txt'}"
