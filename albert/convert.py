r"""Converts ALBERT weights between the original release's layout, Hugging Face folders and keras-hub presets.

    python -m albert.convert --from=hf --input_dir=hf_albert --output_dir=albert_base
    python -m albert.convert --from=original --input_dir=albert_base --output_dir=hf_albert
    python -m albert.convert --from=keras_hub --keras_hub_dir=albert_base_en_uncased --output_dir=albert_base
    python -m albert.convert --from=original --to=keras_hub --input_dir=albert_base --output_dir=preset

Every direction is exact (float32 copies, transposes and reshapes); see `albert.export.hf` and
`albert.model.keras_hub`. An original-layout directory holds albert_config.json, 30k-clean.model and a
checkpoint (model.ckpt-best when written here).
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

from absl import flags

from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, run_main
from albert.export.hf import (HF_CONFIG, HF_SAFETENSORS, HF_SPM, ORIGINAL_CHECKPOINT, ORIGINAL_CONFIG, ORIGINAL_SPM,
                              hf_to_original, original_to_hf)
from albert.model import keras_hub

# Re-exported for scripts that call the converter directly.
__all__ = ["hf_to_original", "original_to_hf"]
FORMATS = ("hf", "original", "keras_hub")


def define_flags(flag_values=None):
  define = definer(flag_values)
  define(flags.DEFINE_enum, "from", None, list(FORMATS),
         "The format of the input: 'hf' (a Hugging Face folder, --input_dir), 'original' (albert_config.json, "
         "30k-clean.model and a checkpoint, --input_dir) or 'keras_hub' (a keras-hub preset, --keras_hub_dir).")
  define(flags.DEFINE_enum, "to", None, list(FORMATS),
         "The format to write: by default 'original' from hf or keras_hub, and 'hf' from original; "
         "--to=keras_hub writes a keras-hub preset from an original-layout --input_dir.")
  define(flags.DEFINE_string, "input_dir", None, "The directory to convert (--from=hf or original).")
  define(flags.DEFINE_string, "keras_hub_dir", None, "With --from=keras_hub: the preset directory (config.json, "
         "model.weights.h5, assets/tokenizer/vocabulary.spm).")
  define(flags.DEFINE_string, "checkpoint_name", ORIGINAL_CHECKPOINT,
         "With --from=original: the checkpoint prefix inside --input_dir (or a directory's latest).")
  define(flags.DEFINE_bool, "do_lower_case", True, "With --from=original --to=hf: do_lower_case of the written "
         "tokenizer_config.json.")
  define(flags.DEFINE_string, "output_dir", None, "Where the converted files go (created if needed).")


def _directions(fv):
  """(from, to) of the flags; only conversions to or from the original layout exist."""
  source, target = fv["from"].value, fv.to
  if source is None:
    if target in ("hf", "keras_hub"):
      source = "original"
    else:
      raise UserError(f"--from is required: {', '.join(FORMATS)}")
  if target is None:
    target = "hf" if source == "original" else "original"
  if source == target or "original" not in (source, target):
    raise UserError(f"--from={source} --to={target} is not a conversion: convert to or from 'original' (e.g. "
                    "--from=hf then --from=original --to=keras_hub)")
  return source, target


def main(argv):
  del argv
  fv = flags.FLAGS
  source, target = _directions(fv)
  input_flag = "keras_hub_dir" if source == "keras_hub" else "input_dir"
  for name in (input_flag, "output_dir"):
    if not fv[name].value:
      raise UserError(f"--{name} is required")
  bounds.check_output_directory("output_dir", fv.output_dir)
  if source == "hf":
    prefix = hf_to_original(fv.input_dir, fv.output_dir)
    print(f"wrote {prefix}, {ORIGINAL_CONFIG} and {ORIGINAL_SPM} in {fv.output_dir}")
  elif source == "keras_hub":
    prefix = keras_hub.preset_to_original(fv.keras_hub_dir, fv.output_dir, ORIGINAL_CHECKPOINT, ORIGINAL_SPM)
    print(f"wrote {prefix}, {ORIGINAL_CONFIG} and {ORIGINAL_SPM} in {fv.output_dir}")
  elif target == "keras_hub":
    prefix = keras_hub.original_to_preset(fv.input_dir, fv.checkpoint_name, ORIGINAL_SPM, fv.output_dir)
    print(f"converted {prefix} to the keras-hub preset {fv.output_dir} ({keras_hub.CONFIG_FILE}, "
          f"{keras_hub.WEIGHTS_FILE}, {keras_hub.TOKENIZER_FILE}, {keras_hub.SPM_ASSET})")
  else:
    prefix = original_to_hf(fv.input_dir, fv.checkpoint_name, fv.output_dir, fv.do_lower_case)
    print(f"converted {prefix} to {HF_CONFIG}, {HF_SAFETENSORS} and {HF_SPM} in {fv.output_dir}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
