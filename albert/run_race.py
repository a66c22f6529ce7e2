"""Fine-tune ALBERT on RACE, score every kept checkpoint on dev, evaluate the best on test:
`python -m albert.run_race --data_dir=data --output_dir=out --albert_config_file=... --spm_model_file=...`.

The flags are the original run_race.py's (see `--helpfull`; note `--do_train` and `--do_eval` default to
True) plus the suite's shared ones. Outputs in `--output_dir`: checkpoints, `eval_results.txt`/`.json`
with accuracy for middle, high and all, `model.ckpt-best`, and with `--do_predict` the test scores in
`predict_results.txt`/`.json`.
"""

import os

from absl import flags

from albert import classifier_utils as cu
from albert import distribute, eval_results, fileio, model_setup, race_utils, trainer
from albert import flags as shared_flags
from albert.errors import UserError, run_main

FLAGS = flags.FLAGS
KEY_METRIC = "eval_accuracy"
PREDICT_RESULTS = "predict_results"


def define_flags():
  shared_flags.define_model_flags()
  shared_flags.define_tpu_flags()
  shared_flags.define_execution_flags()
  flags.DEFINE_string("data_dir", None, "The directory holding RACE/{train,dev,test}/{middle,high}/.")
  flags.DEFINE_string("task_name", "race", "The name of the task; only race.")
  flags.DEFINE_string("train_file", None, "Training TFRecord cache, written if missing "
                      "(default: <output_dir>/train.tf_record).")
  flags.DEFINE_string("eval_file", None, "Dev TFRecord cache, written if missing (default: "
                      "<output_dir>/eval.tf_record).")
  flags.DEFINE_string("predict_file", None, "Test TFRecord, always rewritten (default: "
                      "<output_dir>/predict.tf_record).")
  flags.DEFINE_float("dropout_prob", 0.1, "Dropout probability on the pooled output of the head.")
  flags.DEFINE_integer("max_seq_length", 512, "The maximum total input sequence length after tokenization.")
  flags.DEFINE_integer("max_qa_length", 128, "The maximum number of question+option tokens; the last ones "
                       "are kept.")
  flags.DEFINE_integer("num_keep_checkpoint", 5, "How many of the newest checkpoints to keep; 0 keeps all.")
  flags.DEFINE_bool("high_only", False, "Whether to only use the high school level.")
  flags.DEFINE_bool("middle_only", False, "Whether to only use the middle school level.")
  flags.DEFINE_bool("do_train", True, "Whether to run training.")
  flags.DEFINE_bool("do_eval", True, "Whether to evaluate every kept checkpoint on the dev set.")
  flags.DEFINE_bool("do_predict", False, "Whether to evaluate the best checkpoint on the test set.")
  flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
  flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
  flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
  flags.DEFINE_float("learning_rate", 1e-5, "The initial learning rate for Adam.")
  flags.DEFINE_integer("train_step", 12000, "Total number of training steps to perform.")
  flags.DEFINE_integer("warmup_step", 1000, "Number of steps of linear learning-rate warmup.")
  flags.DEFINE_integer("save_checkpoints_steps", 100, "How often to save the model checkpoint.")
  flags.DEFINE_bool("trim_padding", True,
                    "Run each batch only up to its longest real sequence (same results, less work; new). "
                    "Off on TPUs, and in training with --jit_compile, which need static shapes.")


def _check_flags():
  if (FLAGS.task_name or "").lower() != "race":
    raise UserError(f"--task_name: only race is supported, got {FLAGS.task_name!r}")
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
    raise UserError("at least one of --do_train, --do_eval or --do_predict must be set")
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  if FLAGS.high_only and FLAGS.middle_only:
    raise UserError("--high_only and --middle_only exclude each other")
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "save_checkpoints_steps",
               "iterations_per_loop"):
    if FLAGS[name].value <= 0:
      raise UserError(f"--{name} must be positive, got {FLAGS[name].value}")
  if FLAGS.do_train and FLAGS.train_step <= 0:
    raise UserError(f"--train_step must be positive, got {FLAGS.train_step}")
  if FLAGS.warmup_step < 0:
    raise UserError(f"--warmup_step must be >= 0, got {FLAGS.warmup_step}")
  if not 0.0 <= FLAGS.dropout_prob < 1.0:
    raise UserError(f"--dropout_prob must be in [0, 1), got {FLAGS.dropout_prob}")
  race_utils.check_lengths(FLAGS.max_seq_length, FLAGS.max_qa_length)


def main(argv):
  del argv
  _check_flags()
  config, tokenizer, create_encoder, _ = model_setup.model_setup_from_flags(FLAGS)
  shared_flags.validate_seq_length(FLAGS.max_seq_length, config)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  strategy = shared_flags.strategy_from_flags()
  trim_inference, trim_training = cu.padding_trim_settings(FLAGS.trim_padding, strategy, FLAGS.jit_compile)
  task = race_utils.RaceTask(config, FLAGS.dropout_prob, trainer.compute_dtype_for(FLAGS.precision),
                             trim_inference, trim_training, create_encoder)
  model_trainer = shared_flags.make_trainer(FLAGS, task, strategy, FLAGS.train_step, FLAGS.warmup_step)
  runner = _Runner(tokenizer, model_trainer, distribute.is_chief(strategy))
  if FLAGS.do_train:
    runner.train()
  dev_best = runner.evaluate() if FLAGS.do_eval else _previous_dev_best()
  if FLAGS.do_predict:
    runner.predict(dev_best)


def _previous_dev_best():
  """The dev accuracy of model.ckpt-best from an earlier evaluation in output_dir, if there was one."""
  path = os.path.join(FLAGS.output_dir, eval_results.EVAL_RESULTS_JSON)
  if not os.path.exists(path):
    return None
  return fileio.read_json(path, what="earlier evaluation results").get(KEY_METRIC)


class _Runner:
  """The phases of one run, sharing the tokenizer and trainer."""

  def __init__(self, tokenizer, model_trainer, write_outputs):
    self.tokenizer, self.trainer, self.write_outputs = tokenizer, model_trainer, write_outputs
    self.normalize = cu.text_normalizer(tokenizer)
    self.record_length = race_utils.NUM_CHOICES * FLAGS.max_seq_length

  def _examples(self, split):
    return race_utils.read_race_examples(FLAGS.data_dir, split, self.normalize, FLAGS.high_only, FLAGS.middle_only)

  def _records(self, examples):
    for example in examples:
      yield cu.serialize_features(race_utils.convert_example(example, self.tokenizer, FLAGS.max_seq_length,
                                                             FLAGS.max_qa_length))

  def _dataset_fn(self, path, is_training, batch_size):
    return cu.input_fn_builder(path, self.record_length, is_training, batch_size, seed=FLAGS.seed)

  def _scores(self, path, levels, batch_size):
    results = self.trainer.predict(self._dataset_fn(path, False, batch_size), batch_size)
    return race_utils.race_scores(cu.stack_predictions(results), levels, batch_size)

  def _cache(self, flag_name, default_name, examples):
    path = FLAGS[flag_name].value or os.path.join(FLAGS.output_dir, default_name)
    return cu.cached_feature_file(path, lambda: self._records(examples()), self.record_length, False, flag_name)

  def train(self):
    path = self._cache("train_file", "train.tf_record", lambda: self._examples(cu.TRAIN))
    self.trainer.initialize(FLAGS.init_checkpoint)
    self.trainer.train(self._dataset_fn(path, True, FLAGS.train_batch_size), FLAGS.train_batch_size)

  def evaluate(self):
    """Scores every kept checkpoint on dev; returns the best dev accuracy."""
    examples = self._examples(cu.DEV)
    path = self._cache("eval_file", "eval.tf_record", lambda: examples)
    levels = [example.level for example in examples]
    tracker = cu.evaluate_checkpoints(self.trainer, FLAGS.output_dir,
                                      lambda: self._scores(path, levels, FLAGS.eval_batch_size), KEY_METRIC,
                                      FLAGS.init_checkpoint, self.write_outputs)
    return tracker.best[2][KEY_METRIC]

  def predict(self, dev_best):
    """Evaluates model.ckpt-best (else the latest checkpoint) on the test set."""
    examples = self._examples(cu.TEST)
    path = FLAGS.predict_file or os.path.join(FLAGS.output_dir, cu.PREDICT_FEATURE_FILE)
    cu.write_tfrecord(path, self._records(examples))
    prefix = self.trainer.restore_for_inference(checkpoint=cu.best_checkpoint(FLAGS.output_dir),
                                                init_checkpoint=FLAGS.init_checkpoint)
    scores = self._scores(path, [example.level for example in examples], FLAGS.predict_batch_size)
    scores["global_step"] = self.trainer.global_step
    if not self.write_outputs:
      return
    lines = ["***** Predict results *****"] + [f"{key} = {scores[key]}" for key in sorted(scores)]
    if dev_best is not None:
      lines.append(f"best = {dev_best}")
    fileio.write_text(os.path.join(FLAGS.output_dir, PREDICT_RESULTS + ".txt"), "\n".join(lines) + "\n")
    fileio.write_json(os.path.join(FLAGS.output_dir, PREDICT_RESULTS + ".json"),
                      {"checkpoint": prefix, **scores, "dev_best": dev_best})


define_flags()

if __name__ == "__main__":
  run_main(main)
