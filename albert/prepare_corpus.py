"""Turn raw text (e.g. a Project Gutenberg book) into the pretraining input format.

`python -m albert.prepare_corpus --input_file=book.txt --output_file=book.sentences.txt` writes one
sentence per line and a blank line between documents, the format `create_pretraining_data` reads. The
rules (Gutenberg markers, headings, prose detection, sentence splitting) are in `albert.text.corpus`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import re

from absl import flags, logging

from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import UserError, require_file, run_main
from albert.text.corpus import FORMATS, prepare

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  define = definer(flag_values)
  define(flags.DEFINE_string, "input_file", None, "Raw text file to convert.")
  define(flags.DEFINE_string, "output_file", None, "Where to write one sentence per line, documents blank-line "
         "separated.")
  define(flags.DEFINE_enum, "format", "auto", list(FORMATS),
         "raw: clean and split a book-like text; lines: input is already one sentence per line (copied "
         "unchanged); auto: decide from the text.")
  define(flags.DEFINE_integer, "min_document_sentences", 2, "Drop (raw) documents with fewer sentences than this.",
         bound=bounds.NON_NEGATIVE)


def read_input(path):
  """The whole input text, without a UTF-8 byte-order mark; bytes that are not UTF-8 are one line naming
  the file and the byte."""
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise UserError(f"--input_file: {path} is not UTF-8 text: {e.reason} at byte {e.start}") from None


def main(argv):
  del argv
  require_file(FLAGS.input_file, "input_file")
  if not FLAGS.output_file:
    raise UserError("--output_file is required")
  bounds.check_output_file("output_file", FLAGS.output_file)
  output, used_format = prepare(read_input(FLAGS.input_file), FLAGS.format, FLAGS.min_document_sentences)
  if not output.strip():
    raise UserError(f"--input_file: no sentences found in {FLAGS.input_file}")
  fileio.write_text(FLAGS.output_file, output)
  num_documents = len(re.split(r"\n[ \t]*\n", output.strip()))
  logging.info("wrote %s (%s input): %d documents", FLAGS.output_file, used_format, num_documents)


if __name__ == "__main__":
  define_flags()
  run_main(main)
