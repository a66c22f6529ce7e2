r"""Exports a fine-tuned SQuAD, classifier or encoder checkpoint to ONNX: `python -m albert.export_onnx`.

    python -m albert.export_onnx --model_dir=squad_out --output=squad.onnx
    python -m albert.export_onnx --init_checkpoint=glue_out/model.ckpt-best --task=classifier \
        --output=classifier_int8.onnx --quantize=int8

The model: `--model_dir` (a run's output directory: model.ckpt-best, else the latest checkpoint) or
`--init_checkpoint`, with `--albert_config_file` or the albert_config.json beside the checkpoint (or
`--albert_hub_module_handle` for a run fine-tuned from a TF-Hub module). `--task` defaults to the
checkpoint's head. The file takes int32 input_ids/input_mask/segment_ids of any batch size and length
and is described in `albert.export.onnx`; it records the run's labels.json and tuned null threshold, so
`albert.answer`, `albert.classify` and `run_squad_* --do_predict` run it with `--engine=onnx
--onnx_model=FILE`. Needs the [onnx] extra (onnx, onnxruntime).
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import os

from absl import flags

from albert.cli import flags as flag_groups
from albert.cli import model_loader, model_source
from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, require_file, run_main
from albert.export import onnx as onnx_export
from albert.io import checkpoint, structure
from albert.io.files import read_text
from albert.model.config import CONFIG_FILENAME, AlbertConfig
from albert.tasks.classification import custom
from albert.tasks.fine_tuned import EXPORT_TASKS, load_for_export
from albert.tasks.squad.task import define_beam_flags
from albert.training.checkpoint_selection import EVAL_RESULTS_JSON

FLAGS = flags.FLAGS


def define_flags(flag_values=None):
  flag_groups.define_model_flags(flag_values, output_dir=False)
  define = definer(flag_values)
  define(flags.DEFINE_string, "model_dir", None, "A run_squad_*/run_classifier output directory: its "
         f"model.ckpt-best, else its latest checkpoint (with {CONFIG_FILENAME} beside it).")
  define(flags.DEFINE_enum, "task", None, list(EXPORT_TASKS),
         "What the graph ends in (default: the checkpoint's head; encoder: sequence and pooled outputs).")
  define(flags.DEFINE_string, "output", None, "The .onnx file to write.")
  define(flags.DEFINE_enum, "quantize", "none", list(onnx_export.QUANTIZATIONS),
         "int8: ONNX Runtime's dynamic quantization of the matmul weights (int8 per column in 7 bits, 4x smaller "
         "than float32; faster on CPUs).")
  define(flags.DEFINE_integer, "opset", onnx_export.DEFAULT_OPSET, "The ONNX opset.", bound=onnx_export.OPSET_BOUND)
  define_beam_flags(define)


def _side_file_metadata(run_dir, task_name):
  """What the run left beside the checkpoint that the file should carry: labels, the tuned v2 threshold."""
  metadata = {}
  labels = os.path.join(run_dir, custom.LABELS_FILE)
  if task_name == "classifier" and os.path.isfile(labels):
    task = custom.read_labels_file(labels)
    metadata["labels"] = {"regression": True} if task.is_regression else {"labels": list(task.labels)}
  results = os.path.join(run_dir, EVAL_RESULTS_JSON)
  if task_name == "squad_v2" and os.path.isfile(results):
    threshold = structure.parse(read_text(results), results).get("null_score_diff_threshold", (int, float),
                                                                  default=None)
    if threshold is not None:
      metadata["null_score_diff_threshold"] = threshold
  return metadata


def run(fv):
  """The whole command, driven by the flag values `fv` (parsed from `define_flags`)."""
  onnx_export.require("onnx", "albert.export_onnx")
  onnx_export.require("onnxruntime", "albert.export_onnx")
  if not fv.output:
    raise UserError("--output is required (the .onnx file to write)")
  bounds.check_output_file("output", fv.output)
  if bool(fv.model_dir) == bool(fv.init_checkpoint):
    raise UserError("pass the checkpoint as --model_dir (a run's output directory) or --init_checkpoint (one of them)")
  if fv.model_dir:
    prefix, run_dir = model_source.run_checkpoint(fv.model_dir), fv.model_dir
  else:
    prefix = checkpoint.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
    run_dir = os.path.dirname(prefix)
  if fv.albert_hub_module_handle:
    setup = model_loader.load_model(fv)
    config, create_encoder = setup.config, setup.create_encoder
  else:
    config_file = fv.albert_config_file or os.path.join(run_dir, CONFIG_FILENAME)
    if not fv.albert_config_file and not os.path.isfile(config_file):
      raise UserError(f"--albert_config_file is required: no {CONFIG_FILENAME} beside {prefix}")
    config, create_encoder = AlbertConfig.from_json_file(require_file(config_file, "albert_config_file")), None
  model, task_name = load_for_export(prefix, fv.task, config, create_encoder, bool(fv.albert_hub_module_handle),
                                     (fv.start_n_top, fv.end_n_top))
  metadata = {"checkpoint": os.path.abspath(prefix), "global_step": checkpoint.checkpoint_step(prefix) or 0,
              **_side_file_metadata(run_dir, task_name)}
  summary = onnx_export.export(config, onnx_export.task_weights(model), onnx_export.spec_for(model), fv.output,
                               opset=fv.opset, quantize=fv.quantize, metadata=metadata, source=f"checkpoint {prefix}")
  print(f"exported the {task_name} model of {prefix} to {summary.describe()}", flush=True)
  return summary


if __name__ == "__main__":
  define_flags()
  run_main(lambda argv: run(FLAGS))
