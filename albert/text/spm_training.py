"""Training a SentencePiece model the way the original release trained `30k-clean.model`.

The options of the original's spm_train command (docs/compatibility.md §4.5) are the command's flag
defaults (`python -m albert.train_spm`). Beyond spm_train, the input text can first go through the
tokenizer's own preprocessing (`preprocess_text`: whitespace collapsed, accents stripped, lowercased),
so the pieces are learned on exactly the text they will later encode. Without it a model trained on
cased text is fed lowercased text at use time and falls back to single letters for every word it only
saw capitalised.

The user-defined symbols are split on plain commas and handed to SentencePiece as a list: passed as one
string, SentencePiece's CSV flag parser treats '"' as a quote and merges the last six symbols into one.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

from albert.core import bounds
from albert.core.errors import UserError
from albert.text.sentencepiece import preprocess_text

# The options of the original release's spm_train command for 30k-clean.model (docs/compatibility.md §4.5):
# pad 0, unk 1, no bos/eos, three control symbols (ids 2-4), eight user-defined symbols (ids 5-12).
ORIGINAL_OPTIONS = dict(
    pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
    user_defined_symbols=["(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac"], model_type="unigram",
    character_coverage=0.99995, shuffle_input_sentence=True)

_TOO_MANY_PIECES = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def split_symbols(value: str | None) -> list[str]:
  """Splits a comma-separated symbol list on plain commas (no CSV quoting), dropping empty entries.

  Args:
    value: e.g. '[CLS],[SEP],[MASK]'; quotes are ordinary characters. None or "" gives no symbols.
  Returns:
    The symbols in order.
  """
  return [symbol for symbol in value.split(",") if symbol] if value else []


def _translate_error(error, vocab_size, input_files):
  """SentencePiece's RuntimeError as a one-line UserError naming the flag at fault."""
  message = str(error)
  too_many = _TOO_MANY_PIECES.search(message)
  if too_many:
    return UserError(f"--vocab_size={vocab_size} is too large for this corpus: it yields at most "
                     f"{too_many.group(2)} pieces; lower --vocab_size or add text to --input")
  if "sentences_.empty()" in message:
    return UserError(f"--input: no text to train on in {', '.join(input_files)}")
  return UserError(f"SentencePiece training failed: {message.splitlines()[0]}")


def write_preprocessed(input_files: list[str], target: str, lower: bool) -> None:
  """Streams every input line through `preprocess_text` into `target` (blank lines kept).

  Args:
    input_files: UTF-8 text files, read in order; undecodable bytes become U+FFFD.
    target: the file to write (overwritten), one output line per input line.
    lower: lowercase as well.
  """
  with open(target, "w", encoding="utf-8") as out:
    for path in input_files:
      with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
          out.write(preprocess_text(line, lower=lower) + "\n")


def train(input_files: list[str], model_prefix: str, vocab_size: int, num_threads: int = 1,
          preprocess: bool = False, lower: bool = True, **options: Any) -> str:
  """Trains into a temporary prefix beside `model_prefix`, then renames both files into place.

  With `preprocess`, the text is first normalized like the tokenizer does (`lower`: lowercase too).
  `options` are SentencePiece trainer options (list values for symbol lists). Returns the .model path.

  Args:
    input_files: local text files, one sentence per line.
    model_prefix: where `<prefix>.model` and `<prefix>.vocab` go; the directory is created if needed.
    vocab_size: pieces in the trained vocabulary, at least 1.
    num_threads: SentencePiece trainer threads.
    preprocess: run the text through `preprocess_text` first.
    lower: with `preprocess`, lowercase as well.
    **options: further `SentencePieceTrainer.train` options, e.g. `model_type="unigram"`.
  Returns:
    The path `<model_prefix>.model`. A corpus too small for `vocab_size` or without text is a UserError.
  """
  import sentencepiece as spm
  bounds.check("vocab_size", vocab_size, bounds.AT_LEAST_ONE)
  directory = os.path.dirname(os.path.abspath(model_prefix))
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory, prefix=".spm-") as scratch:
    scratch_prefix = os.path.join(scratch, "model")
    training_files = input_files
    if preprocess:
      training_files = [os.path.join(scratch, "input.txt")]
      write_preprocessed(input_files, training_files[0], lower)
    try:
      spm.SentencePieceTrainer.train(input=training_files, model_prefix=scratch_prefix, vocab_size=vocab_size,
                                     num_threads=num_threads, minloglevel=1, **options)
    except RuntimeError as e:
      raise _translate_error(e, vocab_size, input_files) from None
    for suffix in (".vocab", ".model"):
      os.replace(scratch_prefix + suffix, model_prefix + suffix)
  return model_prefix + ".model"
