r"""Converts ALBERT weights between Hugging Face folders and the original release's layout.

    python -m albert.convert --from=hf --input_dir=hf_albert --output_dir=albert_base
    python -m albert.convert --from=original --input_dir=albert_base --output_dir=hf_albert

Both directions are exact (float32 copies and transposes); see `albert.export.hf`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, run_main
from albert.export.hf import (HF_CONFIG, HF_SAFETENSORS, HF_SPM, ORIGINAL_CHECKPOINT, ORIGINAL_CONFIG, ORIGINAL_SPM,
                              hf_to_original, original_to_hf)

# Re-exported for scripts that call the converter directly.
__all__ = ["hf_to_original", "original_to_hf"]


def define_flags(flag_values=None):
  define = definer(flag_values)
  define(flags.DEFINE_enum, "from", None, ["hf", "original"],
         "The format of --input_dir: 'hf' (a Hugging Face folder) or 'original' (albert_config.json, "
         "30k-clean.model and a checkpoint).")
  define(flags.DEFINE_string, "input_dir", None, "The directory to convert.")
  define(flags.DEFINE_string, "checkpoint_name", ORIGINAL_CHECKPOINT,
         "With --from=original: the checkpoint prefix inside --input_dir (or a directory's latest).")
  define(flags.DEFINE_bool, "do_lower_case", True, "With --from=original: do_lower_case of the written "
         "tokenizer_config.json.")
  define(flags.DEFINE_string, "output_dir", None, "Where the converted files go (created if needed).")


def main(argv):
  del argv
  fv = flags.FLAGS
  if fv["from"].value is None:
    raise UserError("--from is required: hf or original")
  for name in ("input_dir", "output_dir"):
    if not fv[name].value:
      raise UserError(f"--{name} is required")
  bounds.check_output_directory("output_dir", fv.output_dir)
  if fv["from"].value == "hf":
    prefix = hf_to_original(fv.input_dir, fv.output_dir)
    print(f"wrote {prefix}, {ORIGINAL_CONFIG} and {ORIGINAL_SPM} in {fv.output_dir}")
  else:
    prefix = original_to_hf(fv.input_dir, fv.checkpoint_name, fv.output_dir, fv.do_lower_case)
    print(f"converted {prefix} to {HF_CONFIG}, {HF_SAFETENSORS} and {HF_SPM} in {fv.output_dir}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
