"""Train a SentencePiece model the way the original release trained `30k-clean.model`.

`python -m albert.train_spm --input=corpus.txt --model_prefix=30k-clean --vocab_size=30000` writes
`30k-clean.model` and `30k-clean.vocab` with the README's spm_train options as flag defaults:
pad 0, unk 1, no bos/eos, control symbols [CLS], [SEP], [MASK] (ids 2-4), the user-defined symbols
( ) " - . – £ € (ids 5-12), unigram, character coverage 0.99995, shuffled input sentences.

Training itself is `albert.text.spm_training`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import os

from absl import flags, logging

from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, run_main
from albert.io.files import expand_globs
from albert.text.spm_training import ORIGINAL_OPTIONS, split_symbols, train

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  """Flags named after spm_train's options, with the original README command's values as defaults."""
  define = definer(flag_values)
  define(flags.DEFINE_string, "input", None, "Training text, one sentence per line: comma-separated files or globs.")
  define(flags.DEFINE_string, "model_prefix", None, "Output prefix: writes <prefix>.model and <prefix>.vocab.")
  define(flags.DEFINE_integer, "vocab_size", 30000, "Number of pieces, special symbols included.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "pad_id", ORIGINAL_OPTIONS["pad_id"], "Id of <pad> (-1: none).")
  define(flags.DEFINE_integer, "unk_id", ORIGINAL_OPTIONS["unk_id"], "Id of <unk>.")
  define(flags.DEFINE_integer, "bos_id", ORIGINAL_OPTIONS["bos_id"], "Id of <s> (-1: none).")
  define(flags.DEFINE_integer, "eos_id", ORIGINAL_OPTIONS["eos_id"], "Id of </s> (-1: none).")
  define(flags.DEFINE_string, "control_symbols", ",".join(ORIGINAL_OPTIONS["control_symbols"]),
         "Comma-separated control symbols; they get the ids after the special ones.")
  define(flags.DEFINE_string, "user_defined_symbols", ",".join(ORIGINAL_OPTIONS["user_defined_symbols"]),
         "Comma-separated symbols always kept as single pieces (split on plain commas, "
         "so '\"' needs no quoting).")
  define(flags.DEFINE_enum, "model_type", ORIGINAL_OPTIONS["model_type"], ["unigram", "bpe", "char", "word"],
         "SentencePiece model type.")
  define(flags.DEFINE_float, "character_coverage", ORIGINAL_OPTIONS["character_coverage"],
         "Share of characters the model must cover.", bound=bounds.OPEN_FRACTION)
  define(flags.DEFINE_bool, "shuffle_input_sentence", ORIGINAL_OPTIONS["shuffle_input_sentence"],
         "Shuffle before sampling --input_sentence_size sentences.")
  define(flags.DEFINE_integer, "input_sentence_size", 10000000, "Sentences sampled for training (0: all).",
         bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "num_threads", os.cpu_count() or 1, "Training threads.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_bool, "do_lower_case", True,
         "Train on the text as the tokenizer will see it with the same --do_lower_case: accents "
         "stripped and lowercased (new; spm_train itself does no preprocessing).")
  define(flags.DEFINE_bool, "preprocess", True,
         "Apply the tokenizer's preprocess_text to the input before training (new); --nopreprocess "
         "trains on the raw text like plain spm_train.")


def main(argv):
  del argv
  if not FLAGS.model_prefix:
    raise UserError("--model_prefix is required")
  bounds.check_output_file("model_prefix", FLAGS.model_prefix + ".model")
  input_files = expand_globs(FLAGS.input, "input")
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
