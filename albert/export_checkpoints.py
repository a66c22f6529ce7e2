r"""Writes a slim checkpoint: the pretraining model's variables (original names), no optimizer slots.

    python -m albert.export_checkpoints --albert_directory=pretrain_out \
      --checkpoint_name=model.ckpt-125000 --export_path=albert_slim/model.ckpt-best

Like the original, the output holds the encoder, the MLM head and the SOP head with `global_step` 0;
see `albert.export.checkpoints` for what differs.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli.definer import definer
from albert.cli.flags import define_model_directory_flags
from albert.core.errors import run_main
from albert.export.checkpoints import export_checkpoint


def define_flags(flag_values=None):
  define_model_directory_flags(flag_values, do_lower_case_help="Unused; kept for compatibility with the original flags.")
  define = definer(flag_values)
  define(flags.DEFINE_string, "export_path", None, "Checkpoint prefix to write (e.g. out/model.ckpt-best).")


def main(argv):
  del argv
  fv = flags.FLAGS
  prefix = export_checkpoint(fv.albert_directory, fv.checkpoint_name, fv.export_path)
  print(f"exported {prefix} to {fv.export_path}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
