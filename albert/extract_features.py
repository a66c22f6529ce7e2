"""Encoder outputs of texts as numpy arrays: `python -m albert.extract_features`.

    python -m albert.extract_features --albert_config_file=albert_config.json \
        --init_checkpoint=model.ckpt-best --spm_model_file=30k-clean.model \
        --input_file=texts.txt --output_dir=features --layers=-1,-2

`--input_file` holds one example per line: a text, or a pair `text_a ||| text_b` (segments 0 and 1, as
in BERT's extract_features). Row i of every output is line i+1 of the input (blank lines included).
`--output_dir` receives, each written atomically:
- `pooled.npy`   float32 [N, H]: the pooler output ([CLS] through dense + tanh);
- `mean.npy`     float32 [N, K, H]: per `--layers` entry (in flag order), the mean over the example's
                 real pieces ([CLS] and [SEP] included);
- `sequence.npy` float32 [N, K, max_seq_length, H], only with `--write_token_vectors`: every piece's
                 vector, zero beyond the example's length (large: N * K * S * H * 4 bytes);
- `examples.jsonl`: per example its text(s), pieces, segment ids, each piece's [start, end) span in the
                 raw text of its segment (null for [CLS]/[SEP]) and whether it was truncated;
- `features.json`: the layers (as 0-based indices), shapes and the model the features came from.
Layer indices count the outputs of every encoder block (0 is the first, -1 the last).
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import os

from absl import flags

from albert.cli import model_loader
from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import UserError, require_file, run_main
from albert.inference.encoder import layer_indices
from albert.inference.features import extract, read_examples

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  model_loader.define_encoder_flags(flag_values, max_seq_length=128, batch_size=8)
  define = definer(flag_values)
  define(flags.DEFINE_string, "input_file", None, "Texts, one per line; `text_a ||| text_b` for a pair.")
  define(flags.DEFINE_string, "output_dir", None, "Where pooled.npy, mean.npy, examples.jsonl (...) are written.")
  define(flags.DEFINE_string, "layers", "-1",
         "Comma-separated encoder layers for mean.npy/sequence.npy; -1 is the last.")
  define(flags.DEFINE_bool, "write_token_vectors", False, "Also write every piece's vectors to sequence.npy.")


def main(argv):
  del argv
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  bounds.check_output_directory("output_dir", FLAGS.output_dir)
  require_file(FLAGS.input_file, "input_file")
  encoder = model_loader.load_encoder(FLAGS)
  layers = layer_indices(FLAGS.layers, encoder.num_layers)
  count = extract(encoder, read_examples(FLAGS.input_file), FLAGS.output_dir, layers, FLAGS.batch_size,
                  FLAGS.write_token_vectors, input_name=f"--input_file {FLAGS.input_file}")
  fileio.write_json(os.path.join(FLAGS.output_dir, "features.json"), {
      "count": count, "hidden_size": encoder.hidden_size, "layers": [index % encoder.num_layers for index in layers],
      "max_seq_length": encoder.max_seq_length, "token_vectors": FLAGS.write_token_vectors,
      "model": encoder.source})
  print(f"wrote features of {count} examples to {FLAGS.output_dir}", flush=True)


if __name__ == "__main__":
  define_flags()
  run_main(main)
