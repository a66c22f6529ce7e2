"""The official SQuAD 1.1/2.0 scoring of any predictions file:

    python -m albert.squad_eval --data_file=dev-v2.0.json --predictions_file=predictions.json \
        [--na_prob_file=null_odds.json] [--version=2.0] [--output_file=eval.json]

prints the scores as JSON. The scoring itself is `albert.tasks.squad.evaluate`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import json

from absl import flags

from albert.cli.definer import definer
from albert.core import fileio
from albert.core.errors import run_main
from albert.tasks.squad.evaluate import evaluate_files


def define_flags(flag_values=None):
  define = definer(flag_values)
  define(flags.DEFINE_string, "data_file", None, "SQuAD JSON file with the reference answers.")
  define(flags.DEFINE_string, "predictions_file", None, "predictions.json: {qas_id: answer text}.")
  define(flags.DEFINE_string, "na_prob_file", None, "2.0 only: null_odds.json, {qas_id: no-answer score}.")
  define(flags.DEFINE_float, "na_prob_thresh", 1.0, "2.0 only: predict null when the no-answer score exceeds this.")
  define(flags.DEFINE_enum, "version", None, ["1.1", "2.0"], "SQuAD version; default: the data file's `version`.")
  define(flags.DEFINE_string, "output_file", None, "Also write the scores to this JSON file.")
  flags.mark_flags_as_required(["data_file", "predictions_file"],
                              flag_values=flags.FLAGS if flag_values is None else flag_values)


def main(argv):
  del argv
  options = flags.FLAGS
  result = evaluate_files(options.data_file, options.predictions_file, options.na_prob_file,
                          options.version, options.na_prob_thresh)
  if options.output_file:
    fileio.write_json(options.output_file, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  define_flags()
  run_main(main)
