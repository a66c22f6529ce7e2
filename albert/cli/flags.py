"""Flag definitions for every entry point: the guarded definer, the shared groups, and their bounds.

Names, defaults and meanings are the original scripts'; where the scripts differ, a group takes the
runner's default as an argument. New flags (`--distribution_strategy`, `--precision`, ...) are additions.

Every flag of every runner and tool is defined through `albert.cli.definer`, which skips names already
defined and attaches each flag's bound, so absl rejects a bad value while parsing the command line.
"""

import random

import numpy as np
import tensorflow as tf
from absl import flags

from albert.cli.definer import attach_rule, definer
from albert.core import bounds, precision
from albert.core.errors import UserError
from albert.core.precision import PRECISIONS
from albert.training import distribute, trainer


def define_model_flags(flag_values=None, *, tokenizer=True, hub=True, do_lower_case=True, output_dir=True):
  """The model and checkpoint flags; `tokenizer`/`hub`/`output_dir` add the vocabulary, TF-Hub and output
  directory ones."""
  define = definer(flag_values)
  define(flags.DEFINE_string, "albert_config_file", None,
         "The albert_config.json of the pretrained model; it specifies the model architecture.")
  define(flags.DEFINE_string, "init_checkpoint", None,
         "Initial checkpoint (usually a pretrained ALBERT model): a prefix such as model.ckpt-1000, or a "
         "directory (its latest checkpoint). Runners use it only to seed a fresh run.")
  if output_dir:
    define(flags.DEFINE_string, "output_dir", None,
           "The output directory: checkpoints, summaries and results. A run resumes from the latest "
           "checkpoint found here.")
  if tokenizer:
    define(flags.DEFINE_string, "vocab_file", None,
           "The WordPiece vocabulary file (unused when --spm_model_file is given).")
    define(flags.DEFINE_string, "spm_model_file", None,
           "The SentencePiece model file of the pretrained model (with a TF-Hub module: optional, the "
           "module's own is used unless this names an existing file).")
    define(flags.DEFINE_bool, "do_lower_case", do_lower_case,
           "Whether to lower case the input text; True for uncased models.")
  if hub:
    define(flags.DEFINE_string, "albert_hub_module_handle", None,
           "A TF-Hub ALBERT module to use instead of --albert_config_file and --init_checkpoint.")


def define_tpu_flags(flag_values=None):
  """The original TPU and loop flags of every training script."""
  define = definer(flag_values)
  define(flags.DEFINE_bool, "use_tpu", False, "Whether to use a TPU.")
  define(flags.DEFINE_string, "tpu_name", None,
         "The Cloud TPU to use: its name or a grpc://ip.address.of.tpu:8470 URL.")
  define(flags.DEFINE_string, "tpu_zone", None,
         "[Optional] GCE zone of the Cloud TPU; detected from metadata if not given.")
  define(flags.DEFINE_string, "gcp_project", None,
         "[Optional] GCP project of the Cloud TPU; detected from metadata if not given.")
  define(flags.DEFINE_string, "master", None, "[Optional] TensorFlow master URL.")
  define(flags.DEFINE_integer, "num_tpu_cores", 8, "Only used if --use_tpu: the number of TPU cores to use.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "iterations_per_loop", 1000,
         "How many steps to run per host loop (one tf.function call).", bound=bounds.AT_LEAST_ONE)


def define_execution_flags(flag_values=None, *, keep_checkpoint_max=None):
  """How and where steps run (new flags). `keep_checkpoint_max` adds that flag with this default for
  runners whose original lacks it (the SQuAD scripts kept every checkpoint: 0).
  """
  define = definer(flag_values)
  define(flags.DEFINE_string, "distribution_strategy", "auto",
         f"tf.distribute strategy: {', '.join(distribute.STRATEGIES)}. 'auto' uses the TPU with "
         "--use_tpu, MultiWorkerMirrored when TF_CONFIG lists several workers, Mirrored with several "
         "GPUs, else one device.")
  define(flags.DEFINE_integer, "num_gpus", None, "Number of GPUs to use (default: all visible ones).",
         bound=bounds.NON_NEGATIVE)
  define_precision_flag(flag_values, "Compute dtype of activations; weights stay float32. float16 uses dynamic "
                        "loss scaling.")
  define(flags.DEFINE_bool, "jit_compile", False, "Compile the training step with XLA.")
  define(flags.DEFINE_integer, "log_every_n_steps", 100,
         "Steps between progress log lines and training summaries.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "seed", None,
         "Seed for weight initialization, dropout and input shuffling, so a run can be repeated "
         "(default: unseeded, like the original).", bound=bounds.NON_NEGATIVE)
  if keep_checkpoint_max is not None:
    define(flags.DEFINE_integer, "keep_checkpoint_max", keep_checkpoint_max,
           "How many of the newest checkpoints to keep; 0 keeps all.", bound=bounds.NON_NEGATIVE)


def define_precision_flag(flag_values, help_text):
  """--precision, with a hook that prints the CPU's one-line hint about the chosen precision once the flags are
  parsed (albert.core.precision.cpu_hint: float16 and emulated bfloat16 are slow on CPUs, native bfloat16 is
  fast); nothing when the run computes on GPUs or a TPU."""
  fv = flags.FLAGS if flag_values is None else flag_values
  if "precision" in fv:
    return
  definer(fv)(flags.DEFINE_enum, "precision", "float32", list(PRECISIONS), help_text)

  def value(name):
    return fv[name].value if name in fv else None

  def on_accelerator():
    if value("use_tpu") or value("distribution_strategy") == "tpu":
      return True
    return bool(tf.config.list_physical_devices("GPU")) and value("num_gpus") != 0

  def hint(chosen):
    if fv.is_parsed():  # not when a program sets the value itself
      precision.print_cpu_hint(chosen, on_accelerator)
    return True
  flags.register_validator("precision", hint, flag_values=fv)


def define_model_directory_flags(flag_values=None, *, do_lower_case_help):
  """The flags of the original export scripts: a model directory, its checkpoint, and casing."""
  define = definer(flag_values)
  define(flags.DEFINE_string, "albert_directory", None,
         "Directory with albert_config.json, the checkpoint and (for TF-Hub) 30k-clean.model.")
  define(flags.DEFINE_string, "checkpoint_name", "model.ckpt-best", "Name of the checkpoint under albert_directory.")
  define(flags.DEFINE_bool, "do_lower_case", True, do_lower_case_help)


_BATCH_PURPOSES = {"train": "training", "eval": "evaluation", "predict": "predictions"}


def define_training_flags(flag_values=None, *, batch_sizes, learning_rate, save_checkpoints_steps):
  """The batch sizes (`{"train": 32, "predict": 8}`: global sizes), learning rate and checkpoint cadence
  every training runner has; their defaults are each original script's."""
  define = definer(flag_values)
  for name, default in batch_sizes.items():
    define(flags.DEFINE_integer, f"{name}_batch_size", default, f"Total batch size for {_BATCH_PURPOSES[name]}.",
           bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_float, "learning_rate", learning_rate, "The initial learning rate.", bound=bounds.POSITIVE)
  define(flags.DEFINE_integer, "save_checkpoints_steps", save_checkpoints_steps,
         "How often to save the model checkpoint.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "gradient_accumulation_steps", 1,
         "Micro-batches per optimizer step (new): --train_batch_size stays the effective global batch and "
         "is split into this many parts, whose float32 gradient sum makes one step. Steps, the learning-rate "
         "schedule, clipping, summaries and checkpoints count optimizer steps.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_bool, "recompute_grad", False,
         "Recompute each transformer block's activations in the backward pass instead of keeping them "
         "(new): much less activation memory for about one extra forward pass per step.")
  if "train" in batch_sizes:
    attach_rule(flag_values, ("train_batch_size", "gradient_accumulation_steps"),
                lambda v: v["train_batch_size"] % v["gradient_accumulation_steps"] == 0,
                lambda v: (f"--train_batch_size={v['train_batch_size']} must be a multiple of "
                           f"--gradient_accumulation_steps={v['gradient_accumulation_steps']}"))


def define_length_bucketing_flags(flag_values=None, *, prediction=True):
  """--group_by_length (training) and, with `prediction`, --bucket_prediction: batches cut to a few
  fixed lengths (albert.io.input_pipeline.Bucketing)."""
  define = definer(flag_values)
  if prediction:
    define(flags.DEFINE_bool, "bucket_prediction", True,
           "Group prediction windows by real length and run each batch only up to its length bucket (a "
           "multiple of 64, at most --max_seq_length) instead of padding every window to --max_seq_length "
           "(new). The outputs at every position up to the bucket are the padded run's; v2 answers are "
           "identical. v1's head, like the original, does not mask padding, so a padding logit past the "
           "bucket, which the padded run would rank, can no longer take an n-best slot (seen with untrained "
           "weights only). False pads as before. Off on TPUs.")
  define(flags.DEFINE_bool, "group_by_length", False,
         "Training batches of similar lengths, each cut to the length bucket of its longest sequence (new): "
         "the shuffled data is cut into chunks of 50 batches, each sorted by length and split into batches, "
         "and whole batches are shuffled. Deterministic under --seed; TPUs keep the full length.")


def micro_batch_size(flag_values):
  """The batch the training input yields: --train_batch_size split by --gradient_accumulation_steps."""
  return flag_values.train_batch_size // flag_values.gradient_accumulation_steps


def define_inference_flags(flag_values=None, *, max_seq_length=128, batch_size=8):
  """What the inference tools (fill_mask, extract_features, retrieve) add to the model flags."""
  define = definer(flag_values)
  define(flags.DEFINE_integer, "max_seq_length", max_seq_length,
         "Maximum pieces per model input, [CLS] and [SEP] included; longer texts are truncated.",
         bound=bounds.at_least(2))
  define(flags.DEFINE_integer, "batch_size", batch_size, "Texts per model call.", bound=bounds.AT_LEAST_ONE)
  define_precision_flag(flag_values, "Compute dtype of activations; weights stay float32.")


def define_text_signature_flag(flag_values=None):
  """--export_text_signature, for the runners whose --export_dir SavedModel can also take raw text."""
  definer(flag_values)(
      flags.DEFINE_bool, "export_text_signature", True,
      "With --export_dir: also export the serve_text signature (raw strings in; tokenized in the graph with "
      "tensorflow-text, the [serving] extra, which loading it then needs too; stock TensorFlow Serving cannot "
      "load it). Exported only with a SentencePiece model and tensorflow-text installed (new).")


def define_engine_flags(flag_values=None):
  """--engine and the ONNX model it runs (`albert.inference.onnx_engine`), for the commands that predict."""
  define = definer(flag_values)
  define(flags.DEFINE_enum, "engine", "tensorflow", ["tensorflow", "onnx"],
         "What runs the model: TensorFlow, or ONNX Runtime (the [onnx] extra) on --onnx_model, else on the "
         "checkpoint exported to ONNX in memory (new).")
  define(flags.DEFINE_string, "onnx_model", None,
         "With --engine=onnx: an .onnx file written by python -m albert.export_onnx (float32 or int8); it holds "
         "the whole model, so no checkpoint or config flags are needed (new).")
  define(flags.DEFINE_enum, "onnx_quantize", "none", ["none", "int8"],
         "With --engine=onnx and no --onnx_model: int8 quantizes the matmul weights of the checkpoint exported "
         "in memory (ONNX Runtime's dynamic quantization, as albert.export_onnx --quantize=int8) (new).")


def check_engine_flags(fv):
  """--onnx_model and --onnx_quantize need --engine=onnx; an ONNX model computes in float32 (or int8)."""
  if fv.engine != "onnx":
    for name in ("onnx_model", "onnx_quantize"):
      if fv[name].present:
        raise UserError(f"--{name} needs --engine=onnx")
    return
  if fv.onnx_model and fv["onnx_quantize"].present:
    raise UserError("--onnx_quantize applies to a checkpoint exported in memory; quantize an --onnx_model file "
                    "with python -m albert.export_onnx --quantize=int8")
  if "precision" in fv and fv.precision != "float32":
    raise UserError(f"--precision={fv.precision} applies to --engine=tensorflow; ONNX models compute in float32 "
                    "(int8 matmuls with --onnx_quantize or albert.export_onnx --quantize=int8)")


def strategy_from_flags(flag_values=None):
  """The tf.distribute strategy chosen by the TPU and execution flags."""
  fv = flags.FLAGS if flag_values is None else flag_values
  return distribute.get_strategy(
      distribution_strategy=fv.distribution_strategy, num_gpus=fv.num_gpus, use_tpu=fv.use_tpu,
      tpu_name=fv.tpu_name, tpu_zone=fv.tpu_zone, gcp_project=fv.gcp_project, master=fv.master,
      num_tpu_cores=fv.num_tpu_cores)


def validate_seq_length(max_seq_length, config):
  """`--max_seq_length` must be positive and fit the model's position embeddings."""
  bounds.check("max_seq_length", max_seq_length, bounds.AT_LEAST_ONE)
  bounds.require(max_seq_length <= config.max_position_embeddings, "max_seq_length", max_seq_length,
                 f"<= max_position_embeddings={config.max_position_embeddings} of the albert config")


def set_seed(seed):
  """Seeds Python, NumPy and TensorFlow (initializers, dropout, tf.data shuffles without own seeds)."""
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)


def make_trainer(flag_values, task, strategy, num_train_steps, num_warmup_steps, **overrides):
  """A Trainer configured from the shared flags; `overrides` set Trainer arguments directly.

  Optional flags a runner lacks take the Trainer's defaults (`--optimizer`: adamw). The checkpoint
  count comes from `--keep_checkpoint_max`, else the RACE script's `--num_keep_checkpoint`.
  """
  fv = flag_values
  if "seed" in fv and fv.seed is not None:
    set_seed(fv.seed)
  settings = dict(learning_rate=fv.learning_rate, save_checkpoints_steps=fv.save_checkpoints_steps,
                  iterations_per_loop=fv.iterations_per_loop, log_every_n_steps=fv.log_every_n_steps,
                  precision=fv.precision, jit_compile=fv.jit_compile)
  for name in ("optimizer", "poly_power", "start_warmup_step", "keep_checkpoint_max", "gradient_accumulation_steps",
               "recompute_grad"):
    if name in fv:
      settings[name] = fv[name].value
  if "keep_checkpoint_max" not in fv and "num_keep_checkpoint" in fv:
    settings["keep_checkpoint_max"] = fv.num_keep_checkpoint
  settings.update(overrides)
  return trainer.Trainer(task, strategy, fv.output_dir, num_train_steps=num_train_steps,
                         num_warmup_steps=num_warmup_steps, **settings)
