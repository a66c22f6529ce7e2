"""Which fine-tuned model `albert.answer` and `albert.classify` run: the flags that name it and their rules.

A model comes from exactly one of
- `--model_dir`: a run_squad_* / run_classifier output directory; its `model.ckpt-best` (written when the
  run evaluated its checkpoints), else its latest checkpoint;
- `--init_checkpoint`: a checkpoint prefix (or a directory: its latest checkpoint);
- `--saved_model_dir`: a serving export (`--export_dir` of the runners): a timestamped SavedModel, or a
  directory holding them (the newest is used, also below a `saved_model/` folder as run_squad_* writes it).
- `--onnx_model` (with `--engine=onnx`): a file of `python -m albert.export_onnx`, the whole model.
Checkpoints need the model's config: `--albert_config_file`, else the `albert_config.json` beside the
checkpoint. `--albert_hub_module_handle` builds the encoder, config and tokenizer from a TF-Hub module
(through the one model loader); the fine-tuned weights, head included, still come from `--model_dir` or
`--init_checkpoint`. A SavedModel or an ONNX file takes only the tokenizer flags (`--spm_model_file` or
`--vocab_file`). `--engine=onnx` runs an ONNX file, or a checkpoint exported to ONNX in memory
(`--onnx_quantize=int8` quantizes it), through ONNX Runtime.
"""

import os

import tensorflow as tf
from absl import flags

from albert.cli import flags as flag_groups
from albert.cli import model_loader
from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, require_file
from albert.io import checkpoint
from albert.model.config import CONFIG_FILENAME
from albert.training import checkpoint_selection

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SUBDIRECTORY = "saved_model"  # where run_squad_* --export_dir puts its timestamped exports
MODEL_FLAGS = ("model_dir", "init_checkpoint", "saved_model_dir", "onnx_model")


class ModelSource:
  """The model the flags name.

  Attributes:
    setup: the `model_loader.ModelSetup` (config, tokenizer, encoder factory), None for a SavedModel.
    tokenizer: the tokenizer inputs are split with.
    checkpoint: the checkpoint prefix, None for a SavedModel.
    saved_model: the SavedModel directory, or None.
    onnx_model: the ONNX file (`--onnx_model`), or None.
    run_dirs: directories that may hold the run's side files (labels.json, eval_results.json), nearest first.
    engine: "tensorflow" or "onnx" (`--engine`); a checkpoint run by "onnx" is exported in memory.
    onnx_quantize: "none" or "int8": how a checkpoint exported in memory is quantized.
  """

  def __init__(self, setup, tokenizer, checkpoint_prefix=None, saved_model=None, run_dirs=(), onnx_model=None,
               engine="tensorflow", onnx_quantize="none"):
    self.setup, self.tokenizer = setup, tokenizer
    self.checkpoint, self.saved_model, self.run_dirs = checkpoint_prefix, saved_model, tuple(run_dirs)
    self.onnx_model, self.engine, self.onnx_quantize = onnx_model, engine, onnx_quantize

  @property
  def from_hub(self):
    return bool(self.setup and self.setup.hub_handle)

  @property
  def name(self):
    """How messages name the model: the flag that gave it and its path."""
    if self.onnx_model:
      return f"ONNX model {self.onnx_model}"
    return f"SavedModel {self.saved_model}" if self.saved_model else f"checkpoint {self.checkpoint}"

  def side_file(self, name):
    """The path of the run's file `name` in the nearest run directory holding it, or None."""
    for directory in self.run_dirs:
      path = os.path.join(directory, name)
      if tf.io.gfile.exists(path):
        return path
    return None


def define_flags(flag_values=None, *, max_seq_length, max_seq_length_help, batch_size=8):
  """The model flags of the use commands, their batching and precision, and --input_file/--output_file."""
  flag_groups.define_model_flags(flag_values, output_dir=False)
  define = definer(flag_values)
  define(flags.DEFINE_string, "model_dir", None,
         "A run_squad_*/run_classifier output directory: its model.ckpt-best, else its latest checkpoint "
         f"(with {CONFIG_FILENAME} beside it unless --albert_config_file is given).")
  define(flags.DEFINE_string, "saved_model_dir", None,
         "A SavedModel exported by the runners' --export_dir: a timestamped directory or the directory "
         "holding them (the newest is used). Needs --spm_model_file (or --vocab_file).")
  define(flags.DEFINE_integer, "max_seq_length", max_seq_length, max_seq_length_help, bound=bounds.at_least(3))
  flag_groups.define_inference_flags(flag_values, batch_size=batch_size)
  flag_groups.define_engine_flags(flag_values)
  define(flags.DEFINE_string, "input_file", None, "Many inputs at once (see the command's help); needs --output_file.")
  define(flags.DEFINE_string, "output_file", None, "Write the results here as JSON lines, one per input.")


def check_output_flags(fv, single_input_given):
  """Exactly one kind of input; a file of inputs needs --output_file, which must be writable."""
  if fv.input_file and single_input_given:
    raise UserError("--input_file excludes the single-input flags: pass one or the other")
  if fv.input_file and not fv.output_file:
    raise UserError("--output_file is required with --input_file")
  bounds.check_output_file("output_file", fv.output_file)


def resolve(fv):
  """The ModelSource of the flag values `fv` (see the module doc); a UserError names what is missing."""
  flag_groups.check_engine_flags(fv)
  given = [name for name in MODEL_FLAGS if fv[name].value]
  if len(given) > 1:
    raise UserError(f"--{given[0]} and --{given[1]} exclude each other: pass one model")
  if not given:
    if fv.albert_hub_module_handle:
      raise UserError("--albert_hub_module_handle holds only the pretrained encoder: pass the fine-tuned run's "
                      "--model_dir or --init_checkpoint too")
    raise UserError("no model: pass --model_dir (a run's output directory), --init_checkpoint or --saved_model_dir")
  engine = {"engine": fv.engine, "onnx_quantize": fv.onnx_quantize}
  if fv.onnx_model:
    if fv.albert_hub_module_handle:
      raise UserError("--onnx_model holds the whole model: --albert_hub_module_handle does not apply")
    path = require_file(fv.onnx_model, "onnx_model")
    return ModelSource(None, model_loader.tokenizer_from_flags(fv), onnx_model=path,
                       run_dirs=(os.path.dirname(os.path.abspath(path)),), **engine)
  if fv.saved_model_dir and fv.engine == "onnx":
    raise UserError("--engine=onnx runs checkpoints (exported in memory) or an --onnx_model file, not "
                    "--saved_model_dir: export the checkpoint with python -m albert.export_onnx")
  if fv.saved_model_dir:
    if fv.albert_hub_module_handle:
      raise UserError("--saved_model_dir holds the whole model: --albert_hub_module_handle does not apply")
    path = saved_model_path(fv.saved_model_dir)
    return ModelSource(None, model_loader.tokenizer_from_flags(fv), saved_model=path,
                       run_dirs=(path, os.path.dirname(path)))
  if fv.model_dir:
    prefix = run_checkpoint(fv.model_dir)
    run_dir = fv.model_dir
  else:
    prefix = checkpoint.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
    run_dir = os.path.dirname(prefix)
  if not fv.albert_config_file and not fv.albert_hub_module_handle:
    beside = os.path.join(run_dir, CONFIG_FILENAME)
    if not tf.io.gfile.exists(beside):
      raise UserError(f"--albert_config_file is required: no {CONFIG_FILENAME} beside {prefix}")
    fv["albert_config_file"].value = beside
  setup = model_loader.load_model(fv)
  return ModelSource(setup, setup.tokenizer, prefix, run_dirs=(run_dir,), **engine)


def run_checkpoint(model_dir, flag_name="model_dir"):
  """A run directory's `model.ckpt-best`, else its latest checkpoint; a UserError if it has none."""
  if not tf.io.gfile.isdir(model_dir):
    raise UserError(f"--{flag_name}: directory not found: {model_dir}")
  prefix = checkpoint_selection.best_checkpoint(model_dir) or checkpoint.latest_checkpoint(model_dir)
  if prefix is None:
    raise UserError(f"--{flag_name}: no checkpoint in {model_dir} (expected model.ckpt-best or model.ckpt-<step>)")
  return prefix


def saved_model_path(path, flag_name="saved_model_dir"):
  """The SavedModel at `path`, or the newest timestamped one below it (or below its `saved_model/`)."""
  if not tf.io.gfile.isdir(path):
    raise UserError(f"--{flag_name}: directory not found: {path}")
  for directory in (path, os.path.join(path, SERVING_SUBDIRECTORY)):
    if tf.io.gfile.exists(os.path.join(directory, SAVED_MODEL_FILE)):
      return directory
    if tf.io.gfile.isdir(directory):
      exports = sorted((int(name.rstrip("/")), name.rstrip("/")) for name in tf.io.gfile.listdir(directory)
                       if name.rstrip("/").isdigit()
                       and tf.io.gfile.exists(os.path.join(directory, name.rstrip("/"), SAVED_MODEL_FILE)))
      if exports:
        return os.path.join(directory, exports[-1][1])
  raise UserError(f"--{flag_name}: no SavedModel in {path} (expected {SAVED_MODEL_FILE} there or in a "
                  "timestamped directory below it)")
