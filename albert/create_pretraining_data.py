"""Create ALBERT pretraining data: text -> SOP sentence pairs with n-gram masking -> TFRecords.

`python -m albert.create_pretraining_data --input_file=corpus.txt --output_file=train.tfrecord
--spm_model_file=30k-clean.model` takes the original flags (docs/compatibility.md §10.2) and writes the
original TFRecord keys (§5.1). Input: one sentence per line, a blank line between documents (see
`albert.prepare_corpus`). The job is `albert.tasks.pretraining` (`writer`, `instances`, `masking`).

Differences from the original (README, "Differences from the original"): the n-gram length is drawn
from a seeded RNG (quirk 3), so the same flags give byte-identical files; `--vocab_file` is not needed
with `--spm_model_file` (quirk 18); documents are streamed in chunks of `--max_documents_in_memory` and
processed by `--num_workers` processes; each input file ends a document; with `--do_permutation` the
prediction slots double as in the original (quirk 5), so `run_pretraining` needs the doubled value.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags, logging

from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, run_main
from albert.io.files import expand_globs
from albert.tasks.pretraining.writer import INPUT_FILE_MODES, Settings, create_pretraining_data

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  """The original create_pretraining_data.py flags (§10.2) plus the streaming/parallel additions."""
  define = definer(flag_values)
  define(flags.DEFINE_string, "input_file", None, "Input raw text file (or comma-separated list of files or globs).")
  define(flags.DEFINE_string, "output_file", None, "Output TF example file (or comma-separated list of files).")
  define(flags.DEFINE_string, "vocab_file", None, "The vocabulary file (WordPiece; not needed with --spm_model_file).")
  define(flags.DEFINE_string, "spm_model_file", None, "The model file for sentence piece tokenization.")
  define(flags.DEFINE_enum, "input_file_mode", "r", list(INPUT_FILE_MODES),
         "The data format of the input file: 'r' (UTF-8) or 'rb' (bytes; non-UTF-8 lines are read as latin-1).")
  define(flags.DEFINE_bool, "do_lower_case", True, "Whether to lower case the input text.")
  define(flags.DEFINE_bool, "do_whole_word_mask", True,
         "Whether to use whole word masking rather than per-piece masking.")
  define(flags.DEFINE_bool, "do_permutation", False,
         "Whether to add permutation predictions (doubles the prediction slots: quirk 5).")
  define(flags.DEFINE_bool, "favor_shorter_ngram", True,
         "Whether to favor shorter n-grams for selecting spans to mask.")
  define(flags.DEFINE_bool, "random_next_sentence", False,
         "Use random-document negatives (NSP) instead of swaps (SOP).")
  define(flags.DEFINE_integer, "max_seq_length", 512, "Maximum sequence length ([CLS] A [SEP] B [SEP] needs 5).",
         bound=bounds.at_least(5))
  define(flags.DEFINE_integer, "ngram", 3, "Maximum number of n-grams to mask.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_predictions_per_seq", 20, "Maximum number of masked LM predictions per sequence.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "random_seed", 12345, "Random seed for data generation.")
  define(flags.DEFINE_integer, "dupe_factor", 40, "Number of times to duplicate the input data (with different masks).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_float, "masked_lm_prob", 0.15, "Masked LM probability.", bound=bounds.OPEN_FRACTION)
  define(flags.DEFINE_float, "short_seq_prob", 0.1,
         "Probability of creating sequences which are shorter than the maximum length.", bound=bounds.FRACTION)
  define(flags.DEFINE_integer, "num_workers", 1, "Processes creating instances in parallel; the output does not "
         "depend on it (new).", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_documents_in_memory", 100000,
         "Documents per chunk: documents and instances are shuffled, and random-document segments drawn, within a "
         "chunk; 0 = the whole input at once like the original (new).", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "log_every_seconds", 30, "Seconds between progress reports (new).",
         bound=bounds.NON_NEGATIVE)


def settings_from_flags(fv):
  """The Settings the flags describe (their bounds were checked when they were parsed)."""
  names = [name for name in Settings.__dataclass_fields__]
  return Settings(**{name: fv[name].value for name in names})


def output_paths(value):
  paths = [path.strip() for path in (value or "").split(",") if path.strip()]
  if not paths:
    raise UserError("--output_file is required")
  for path in paths:
    bounds.check_output_file("output_file", path)
  return paths


def main(argv):
  del argv
  input_files = expand_globs(FLAGS.input_file, "input_file")
  output_files = output_paths(FLAGS.output_file)
  documents, instances = create_pretraining_data(
      settings_from_flags(FLAGS), input_files, output_files, FLAGS.num_workers, FLAGS.max_documents_in_memory,
      FLAGS.input_file_mode, FLAGS.log_every_seconds)
  logging.info("wrote %d instances from %d documents to %s", instances, documents, ", ".join(output_files))


if __name__ == "__main__":
  define_flags()
  run_main(main)
