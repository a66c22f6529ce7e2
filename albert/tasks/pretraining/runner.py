"""The `run_pretraining` job: MLM + SOP pretraining with LAMB (or AdamW), and evaluation.

`--do_train` trains to `--num_train_steps`, resuming from the latest checkpoint in `--output_dir`;
`--do_eval` scores the latest (or every kept) checkpoint on `--input_file` for `--max_eval_steps`
batches, writes `eval_results.txt`/`eval_results.json` and keeps the checkpoint with the best
`masked_lm_accuracy` as `model.ckpt-best`.
"""

import os

from absl import flags, logging

from albert.cli import flags as flag_groups
from albert.cli.definer import definer
from albert.core import bounds
from albert.core.errors import UserError, require_file, run_main
from albert.core.precision import compute_dtype
from albert.io import checkpoint as checkpoints
from albert.model.config import AlbertConfig
from albert.tasks.pretraining.inputs import check_input_data, count_input_records, expand_input_files, input_fn_builder
from albert.tasks.pretraining.task import PretrainingTask, num_of_group
from albert.training import checkpoint_selection, distribute, optimization

BEST_METRIC = "masked_lm_accuracy"


def define_flags(flag_values=None):
  """The original run_pretraining.py flags plus the shared new ones, defined into `flag_values`."""
  flag_groups.define_model_flags(flag_values, tokenizer=False, hub=False)
  flag_groups.define_tpu_flags(flag_values)
  flag_groups.define_execution_flags(flag_values, keep_checkpoint_max=5)
  flag_groups.define_training_flags(flag_values, batch_sizes={"train": 4096, "eval": 64}, learning_rate=0.00176,
                                    save_checkpoints_steps=5000)
  define = definer(flag_values)
  define(flags.DEFINE_string, "input_file", None, "Input TF example files (can be a glob or comma separated).")
  define(flags.DEFINE_integer, "max_seq_length", 512,
         "The maximum total input sequence length after WordPiece tokenization. Must match the data.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_predictions_per_seq", 20,
         "Maximum number of masked LM predictions per sequence. Must match the data.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_bool, "do_train", True, "Whether to run training.")
  define(flags.DEFINE_bool, "do_eval", False, "Whether to run eval on the dev set.")
  define(flags.DEFINE_enum, "optimizer", "lamb", list(optimization.OPTIMIZERS), "The optimizer for training.")
  define(flags.DEFINE_float, "poly_power", 1.0, "The power of poly decay.", bound=bounds.POSITIVE)
  define(flags.DEFINE_integer, "num_train_steps", 125000, "Number of training steps.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "num_warmup_steps", 3125, "Number of warmup steps.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "start_warmup_step", 0, "The starting step of warmup.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "max_eval_steps", 100, "Maximum number of eval steps.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_bool, "init_from_group0", False,
         "Whether to initialize parameters of other groups from group 0.")
  define(flags.DEFINE_integer, "masked_lm_budget", 0,
         "If > 0, the reader reads token_boundary for on-the-fly masking, which is not implemented "
         "(the original fails too); must be 0.", bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_bool, "eval_all_checkpoints", False,
         "With --do_eval, evaluate every checkpoint kept in --output_dir (ascending steps) instead of "
         "only the latest, like the original's evaluation loop over a training run (new).")


def _check_flags(fv):
  if not fv.do_train and not fv.do_eval:
    raise UserError("at least one of --do_train or --do_eval must be set")
  if not fv.output_dir:
    raise UserError("--output_dir is required")
  bounds.check_output_directory("output_dir", fv.output_dir)
  if fv.masked_lm_budget > 0:
    raise UserError(f"--masked_lm_budget={fv.masked_lm_budget}: on-the-fly masking is not implemented "
                    "(the original fails too); use 0 with data masked by create_pretraining_data")
  bounds.require(fv.max_predictions_per_seq <= fv.max_seq_length, "max_predictions_per_seq",
                 fv.max_predictions_per_seq, f"<= --max_seq_length={fv.max_seq_length}")


def run(fv):
  """The whole run_pretraining job, driven by the flag values `fv`; returns the eval summary (or None)."""
  _check_flags(fv)
  config = AlbertConfig.from_json_file(require_file(fv.albert_config_file, "albert_config_file"))
  flag_groups.validate_seq_length(fv.max_seq_length, config)
  files = expand_input_files(fv.input_file)
  count = count_input_records(files)
  check_input_data(files, fv.max_seq_length, fv.max_predictions_per_seq, config.vocab_size)
  logging.info("pretraining input: %d file(s), %d records (checked): %s%s", len(files), count,
               ", ".join(files[:5]), " ..." if len(files) > 5 else "")
  os.makedirs(fv.output_dir, exist_ok=True)
  strategy = flag_groups.strategy_from_flags(fv)
  if fv.do_eval and fv.eval_batch_size % strategy.num_replicas_in_sync:
    raise UserError(f"--eval_batch_size={fv.eval_batch_size} is not divisible by the "
                    f"{strategy.num_replicas_in_sync} replicas")
  task = PretrainingTask(config, compute_dtype(fv.precision))
  pretrainer = flag_groups.make_trainer(fv, task, strategy, num_train_steps=fv.num_train_steps,
                                        num_warmup_steps=fv.num_warmup_steps)
  if fv.do_train:
    pretrainer.initialize(fv.init_checkpoint, num_of_group=num_of_group(config, fv.init_from_group0))
    train_input = input_fn_builder(files, fv.max_seq_length, fv.max_predictions_per_seq,
                                   flag_groups.micro_batch_size(fv), is_training=True)
    pretrainer.train(train_input, fv.train_batch_size)
  if fv.do_eval:
    return evaluate(fv, pretrainer, files, distribute.is_chief(strategy))
  return None


def evaluate(fv, pretrainer, files, is_chief):
  """Scores the latest (or every kept) checkpoint of output_dir, else `--init_checkpoint`; keeps the best
  by masked_lm_accuracy as model.ckpt-best and writes eval_results.txt/.json (chief only).
  """
  if not checkpoints.latest_checkpoint(fv.output_dir) and not fv.init_checkpoint:
    raise UserError(f"--do_eval: no checkpoint in --output_dir ({fv.output_dir}) and no --init_checkpoint")
  eval_input = input_fn_builder(files, fv.max_seq_length, fv.max_predictions_per_seq, fv.eval_batch_size,
                                is_training=False)

  def score(prefix):
    scores = pretrainer.evaluate(eval_input, steps=fv.max_eval_steps)
    logging.info("eval of %s: %s", prefix, ", ".join(f"{name} = {value}" for name, value in sorted(scores.items())))
    return scores

  tracker = checkpoint_selection.evaluate_checkpoints(
      pretrainer, fv.output_dir, score, BEST_METRIC, evaluate_all=fv.eval_all_checkpoints,
      init_checkpoint=fv.init_checkpoint, copy_best=is_chief)
  return tracker.write() if is_chief else None


def main():
  """The command line of run_pretraining: defines its flags, then runs the job with them."""
  define_flags()
  run_main(lambda argv: run(flags.FLAGS))
