"""Top-k predictions for `[MASK]` in texts from a pretraining checkpoint: `python -m albert.fill_mask`.

    python -m albert.fill_mask --albert_config_file=albert_config.json --init_checkpoint=model.ckpt-best \
        --spm_model_file=30k-clean.model --text="Hello I'm a [MASK] model." --top_k=5

Each literal `[MASK]` stands for exactly one piece (`albert.inference.masked_lm`). The checkpoint must
contain the masked-LM head (`cls/predictions/*`), as pretraining checkpoints do; fine-tuned ones do not.
Results go to stdout as a table and, with `--output_file`, to a JSON list with one entry per text.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli import model_loader
from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import run_main
from albert.inference.masked_lm import format_table, predict, read_texts

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  model_loader.define_encoder_flags(flag_values, max_seq_length=128, batch_size=8)
  define = definer(flag_values)
  define(flags.DEFINE_multi_string, "text", None, "A text containing one or more [MASK]; may be repeated.")
  define(flags.DEFINE_string, "input_file", None, "A file with one text per line (blank lines are skipped).")
  define(flags.DEFINE_integer, "top_k", 5, "How many predictions to show per [MASK].", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_string, "output_file", None, "Also write the predictions here as JSON.")


def main(argv):
  del argv
  labelled = read_texts(FLAGS.text, FLAGS.input_file)
  encoder = model_loader.load_encoder(FLAGS, with_mlm_head=True)
  bounds.require(FLAGS.top_k <= encoder.config.vocab_size, "top_k", FLAGS.top_k,
                 f"<= the vocabulary size {encoder.config.vocab_size}")
  results = predict(encoder, labelled, FLAGS.top_k, FLAGS.batch_size)
  print(format_table(results), flush=True)
  if FLAGS.output_file:
    fileio.write_json(FLAGS.output_file, results)


if __name__ == "__main__":
  define_flags()
  run_main(main)
