r"""Writes a slim checkpoint: the pretraining model's variables (spec §2.7 names), no optimizer slots.

    python -m albert.export_checkpoints --albert_directory=pretrain_out \
      --checkpoint_name=model.ckpt-125000 --export_path=albert_slim/model.ckpt-best

Like the original, the output holds the encoder, the MLM head and the SOP head with `global_step` 0,
and leaves out `adam_m`/`adam_v` (and `lamb_m`/`lamb_v`). Unlike the original, a variable missing from
the input is an error instead of being written with its random initial value, and no `.meta` graph
file is written (TensorFlow 2 has no graphs to save; nothing reads it).
"""

import os

from absl import flags, logging
import numpy as np

from albert import checkpoint
from albert.config import AlbertConfig
from albert.errors import UserError, require_file, run_main
from albert.modeling import AlbertPretrainingModel

CONFIG_FILENAME = "albert_config.json"


def load_pretraining_model(albert_directory, checkpoint_name):
  """(config, AlbertPretrainingModel with every variable loaded, checkpoint prefix) from a model directory."""
  if not albert_directory:
    raise UserError("--albert_directory is required")
  if not os.path.isdir(albert_directory):
    raise UserError(f"--albert_directory: directory not found: {albert_directory}")
  config = AlbertConfig.from_json_file(
      require_file(os.path.join(albert_directory, CONFIG_FILENAME), f"albert_directory ({CONFIG_FILENAME})"))
  prefix = checkpoint.resolve_checkpoint(os.path.join(albert_directory, checkpoint_name), "checkpoint_name")
  model = AlbertPretrainingModel(config)
  report = checkpoint.load_variables(model.named_variables(), prefix)
  logging.info("%s", report.summary())
  if report.missing:
    raise UserError(f"checkpoint {prefix} lacks {len(report.missing)} variables of the pretraining model "
                    f"({', '.join(report.missing[:5])}{', ...' if len(report.missing) > 5 else ''}); it needs the "
                    "encoder, cls/predictions and cls/seq_relationship")
  return config, model, prefix


def export_checkpoint(albert_directory, checkpoint_name, export_path):
  """Writes the slim checkpoint at `export_path` and returns the input prefix."""
  if not export_path:
    raise UserError("--export_path is required")
  _, model, prefix = load_pretraining_model(albert_directory, checkpoint_name)
  checkpoint.save_checkpoint(export_path, {**model.named_variables(), checkpoint.GLOBAL_STEP: np.int64(0)})
  return prefix


def define_flags():
  flags.DEFINE_string("albert_directory", None,
                      "Directory with albert_config.json and the checkpoint to export.")
  flags.DEFINE_string("checkpoint_name", "model.ckpt-best", "Name of the checkpoint under albert_directory.")
  flags.DEFINE_bool("do_lower_case", True, "Unused; kept for compatibility with the original flags.")
  flags.DEFINE_string("export_path", None, "Checkpoint prefix to write (e.g. out/model.ckpt-best).")


def main(argv):
  del argv
  fv = flags.FLAGS
  prefix = export_checkpoint(fv.albert_directory, fv.checkpoint_name, fv.export_path)
  print(f"exported {prefix} to {fv.export_path}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
