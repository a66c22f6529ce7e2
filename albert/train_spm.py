"""Train a SentencePiece model the way the original release trained `30k-clean.model`.

`python -m albert.train_spm --input=corpus.txt --model_prefix=30k-clean --vocab_size=30000` writes
`30k-clean.model` and `30k-clean.vocab` with the README's spm_train options (§4.5) as flag defaults:
pad 0, unk 1, no bos/eos, control symbols [CLS], [SEP], [MASK] (ids 2-4), the user-defined symbols
( ) " - . – £ € (ids 5-12), unigram, character coverage 0.99995, shuffled input sentences.

Beyond spm_train, the input text first goes through the tokenizer's own preprocessing (`preprocess_text`:
whitespace collapsed, accents stripped, lowercased with `--do_lower_case`, the default everywhere in the
suite), so the pieces are learned on exactly the text they will later encode. Without it a model trained
on cased text is fed lowercased text at use time and falls back to single letters for every word it only
saw capitalised.

The user-defined symbols are split on plain commas and handed to SentencePiece as a list: passed as one
string, SentencePiece's CSV flag parser treats '"' as a quote and merges the last six symbols into one.
"""

import glob
import os
import re
import tempfile

from absl import flags, logging

from albert.errors import UserError, run_main

FLAGS = flags.FLAGS

_TOO_MANY_PIECES = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def define_flags():
  """Flags named after spm_train's options, with the original README command's values as defaults."""
  flags.DEFINE_string("input", None, "Training text, one sentence per line: comma-separated files or globs.")
  flags.DEFINE_string("model_prefix", None, "Output prefix: writes <prefix>.model and <prefix>.vocab.")
  flags.DEFINE_integer("vocab_size", 30000, "Number of pieces, special symbols included.")
  flags.DEFINE_integer("pad_id", 0, "Id of <pad> (-1: none).")
  flags.DEFINE_integer("unk_id", 1, "Id of <unk>.")
  flags.DEFINE_integer("bos_id", -1, "Id of <s> (-1: none).")
  flags.DEFINE_integer("eos_id", -1, "Id of </s> (-1: none).")
  flags.DEFINE_string("control_symbols", "[CLS],[SEP],[MASK]",
                      "Comma-separated control symbols; they get the ids after the special ones.")
  flags.DEFINE_string("user_defined_symbols", '(,),",-,.,\u2013,\u00a3,\u20ac',
                      "Comma-separated symbols always kept as single pieces (split on plain commas, "
                      "so '\"' needs no quoting).")
  flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe", "char", "word"], "SentencePiece model type.")
  flags.DEFINE_float("character_coverage", 0.99995, "Share of characters the model must cover.")
  flags.DEFINE_bool("shuffle_input_sentence", True, "Shuffle before sampling --input_sentence_size sentences.")
  flags.DEFINE_integer("input_sentence_size", 10000000, "Sentences sampled for training (0: all).")
  flags.DEFINE_integer("num_threads", os.cpu_count() or 1, "Training threads.")
  flags.DEFINE_bool("do_lower_case", True,
                    "Train on the text as the tokenizer will see it with the same --do_lower_case: accents "
                    "stripped and lowercased (new; spm_train itself does no preprocessing).")
  flags.DEFINE_bool("preprocess", True,
                    "Apply the tokenizer's preprocess_text to the input before training (new); --nopreprocess "
                    "trains on the raw text like plain spm_train.")


def split_symbols(value):
  """Splits a comma-separated symbol list on plain commas (no CSV quoting), dropping empty entries."""
  return [symbol for symbol in value.split(",") if symbol] if value else []


def expand_inputs(patterns, flag_name="input"):
  """Files matching comma-separated globs, in pattern order; a pattern matching nothing is an error."""
  files = []
  for pattern in filter(None, (p.strip() for p in (patterns or "").split(","))):
    matches = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
    if not matches:
      raise UserError(f"--{flag_name}: no file matches {pattern}")
    files.extend(matches)
  if not files:
    raise UserError(f"--{flag_name} is required")
  return files


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


def write_preprocessed(input_files, target, lower):
  """Streams every input line through `preprocess_text` into `target` (blank lines kept)."""
  from albert.tokenization import preprocess_text
  with open(target, "w", encoding="utf-8") as out:
    for path in input_files:
      with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
          out.write(preprocess_text(line, lower=lower) + "\n")


def train(input_files, model_prefix, vocab_size, num_threads=1, preprocess=False, lower=True, **options):
  """Trains into a temporary prefix beside `model_prefix`, then renames both files into place.

  With `preprocess`, the text is first normalized like the tokenizer does (`lower`: lowercase too).
  `options` are SentencePiece trainer options (list values for symbol lists). Returns the .model path.
  """
  import sentencepiece as spm
  if vocab_size < 1:
    raise UserError(f"--vocab_size must be positive, got {vocab_size}")
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


def main(argv):
  del argv
  if not FLAGS.model_prefix:
    raise UserError("--model_prefix is required")
  input_files = expand_inputs(FLAGS.input)
  model_file = train(
      input_files, FLAGS.model_prefix, FLAGS.vocab_size, num_threads=FLAGS.num_threads,
      preprocess=FLAGS.preprocess, lower=FLAGS.do_lower_case,
      pad_id=FLAGS.pad_id, unk_id=FLAGS.unk_id, bos_id=FLAGS.bos_id, eos_id=FLAGS.eos_id,
      control_symbols=split_symbols(FLAGS.control_symbols),
      user_defined_symbols=split_symbols(FLAGS.user_defined_symbols),
      model_type=FLAGS.model_type, character_coverage=FLAGS.character_coverage,
      shuffle_input_sentence=FLAGS.shuffle_input_sentence, input_sentence_size=FLAGS.input_sentence_size)
  logging.info("wrote %s and %s.vocab", model_file, FLAGS.model_prefix)


if __name__ == "__main__":
  define_flags()
  run_main(main)
