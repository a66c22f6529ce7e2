"""Fine-tune ALBERT on a GLUE task, score every kept checkpoint, predict the test set:
`python -m albert.run_classifier --task_name=MRPC --data_dir=glue --output_dir=out --do_train ...`.

The flags are the original run_classifier.py's (see `--helpfull`) plus the suite's shared ones
(`--distribution_strategy`, `--precision`, `--trim_padding`, ...). Outputs in `--output_dir`:
checkpoints, `eval_results.txt`/`.json`, `best_trial.txt`, `model.ckpt-best`, `test_results.tsv`,
`submit_results.tsv`; with `--export_dir` a SavedModel of the best checkpoint.
"""

import math
import os

from absl import flags, logging

from albert import checkpoint as checkpoints
from albert import classifier_utils as cu
from albert import distribute, fileio, model_setup, trainer
from albert import flags as shared_flags
from albert.errors import UserError, run_main

FLAGS = flags.FLAGS
BEST_TRIAL_FILE = "best_trial.txt"
TEST_RESULTS_FILE = "test_results.tsv"
SUBMIT_RESULTS_FILE = "submit_results.tsv"


def define_flags():
  shared_flags.define_model_flags()
  shared_flags.define_tpu_flags()
  shared_flags.define_execution_flags(keep_checkpoint_max=5)
  flags.DEFINE_string("data_dir", None, "The GLUE data root: it holds the task folders (MNLI/, CoLA/, ...).")
  flags.DEFINE_string("task_name", None, f"The task to train on: one of {', '.join(cu.TASKS)} (any case).")
  flags.DEFINE_string("cached_dir", None,
                      "Where <task>_train.tf_record and <task>_eval.tf_record are cached (default: "
                      "--output_dir); each is written only if missing.")
  flags.DEFINE_integer("max_seq_length", 512, "The maximum total input sequence length after tokenization; "
                       "longer inputs are truncated.")
  flags.DEFINE_bool("do_train", False, "Whether to run training.")
  flags.DEFINE_bool("do_eval", False, "Whether to evaluate every kept checkpoint on the dev set.")
  flags.DEFINE_bool("do_predict", False, "Whether to predict the test set with the best checkpoint.")
  flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
  flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
  flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
  flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
  flags.DEFINE_integer("train_step", 1000, "Total number of training steps to perform.")
  flags.DEFINE_integer("warmup_step", 0, "Number of steps of linear learning-rate warmup.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
  flags.DEFINE_string("optimizer", "adamw", "Optimizer to use: adamw or lamb.")
  flags.DEFINE_string("export_dir", None, "If set, a SavedModel of the best checkpoint is exported to "
                      "<export_dir>/<timestamp>.")
  flags.DEFINE_float("threshold_to_export", float("nan"),
                     "If not NaN, the exported serving signature also returns this constant as `threshold`.")
  flags.DEFINE_bool("trim_padding", True,
                    "Run each batch only up to its longest real sequence (same results, less work; new). "
                    "Off on TPUs, and in training with --jit_compile, which need static shapes.")


def _check_flags(task):
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
    raise UserError("at least one of --do_train, --do_eval or --do_predict must be set")
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  if task.predict_only and (FLAGS.do_train or FLAGS.do_eval):
    raise UserError(f"--task_name={task.name} has only a test set: use --do_predict alone, with "
                    "--init_checkpoint (or --output_dir) of a model fine-tuned on MNLI")
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "save_checkpoints_steps",
               "iterations_per_loop"):
    if FLAGS[name].value <= 0:
      raise UserError(f"--{name} must be positive, got {FLAGS[name].value}")
  if FLAGS.do_train and FLAGS.train_step <= 0:
    raise UserError(f"--train_step must be positive, got {FLAGS.train_step}")
  if FLAGS.warmup_step < 0:
    raise UserError(f"--warmup_step must be >= 0, got {FLAGS.warmup_step}")


def main(argv):
  del argv
  task = cu.get_task(FLAGS.task_name)
  _check_flags(task)
  config, tokenizer, create_encoder, _ = model_setup.model_setup_from_flags(FLAGS)
  shared_flags.validate_seq_length(FLAGS.max_seq_length, config)
  if FLAGS.max_seq_length < 3:
    raise UserError(f"--max_seq_length={FLAGS.max_seq_length} leaves no room for text after [CLS] and [SEP]")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  strategy = shared_flags.strategy_from_flags()
  trim_inference, trim_training = cu.padding_trim_settings(FLAGS.trim_padding, strategy, FLAGS.jit_compile)
  model_task = cu.ClassifierTask(config, task.num_labels, trainer.compute_dtype_for(FLAGS.precision),
                                 trim_inference, trim_training, create_encoder)
  model_trainer = shared_flags.make_trainer(FLAGS, model_task, strategy, FLAGS.train_step, FLAGS.warmup_step)
  runner = _Runner(task, tokenizer, model_trainer, distribute.is_chief(strategy))
  if FLAGS.do_train:
    runner.train()
  if FLAGS.do_eval:
    runner.evaluate()
  if FLAGS.export_dir and runner.write_outputs:
    runner.export(config)
  if FLAGS.do_predict:
    runner.predict()


class _Runner:
  """The phases of one run, sharing the task, tokenizer and trainer."""

  def __init__(self, task, tokenizer, model_trainer, write_outputs):
    self.task, self.tokenizer, self.trainer = task, tokenizer, model_trainer
    self.write_outputs = write_outputs
    self.normalize = cu.text_normalizer(tokenizer)
    self.cache_dir = FLAGS.cached_dir or FLAGS.output_dir

  def _records(self, split):
    examples = cu.read_examples(self.task, FLAGS.data_dir, split, self.normalize).examples
    if not examples:
      raise UserError(f"--data_dir: no {split} examples in {cu.data_file(FLAGS.data_dir, self.task, split)}")
    for example in examples:
      yield cu.serialize_features(cu.convert_example(example, self.task, FLAGS.max_seq_length, self.tokenizer))

  def _feature_file(self, split, suffix):
    path = os.path.join(self.cache_dir, f"{self.task.name}_{suffix}.tf_record")
    return cu.cached_feature_file(path, lambda: self._records(split), FLAGS.max_seq_length,
                                  self.task.is_regression, "cached_dir")

  def _dataset_fn(self, path, is_training, batch_size):
    return cu.input_fn_builder(path, FLAGS.max_seq_length, is_training, batch_size, self.task.is_regression,
                               seed=FLAGS.seed)

  def _predict(self, path, batch_size):
    return cu.stack_predictions(self.trainer.predict(self._dataset_fn(path, False, batch_size), batch_size))

  def train(self):
    path = self._feature_file(cu.TRAIN, "train")
    self.trainer.initialize(FLAGS.init_checkpoint)
    self.trainer.train(self._dataset_fn(path, True, FLAGS.train_batch_size), FLAGS.train_batch_size)

  def evaluate(self):
    path = self._feature_file(cu.DEV, "eval")

    def score():
      return cu.classifier_scores(self.task, self._predict(path, FLAGS.eval_batch_size), FLAGS.eval_batch_size)

    tracker = cu.evaluate_checkpoints(self.trainer, FLAGS.output_dir, score, self.task.key_metric,
                                      FLAGS.init_checkpoint, self.write_outputs)
    if self.write_outputs:
      _, best_step, best_scores = tracker.best
      fileio.write_text(os.path.join(FLAGS.output_dir, BEST_TRIAL_FILE),
                        f"{tracker.evaluated[-1][1]}:{best_step}:{best_scores[self.task.key_metric]}\n")

  def export(self, config):
    prefix = cu.best_checkpoint(FLAGS.output_dir) or checkpoints.latest_checkpoint(FLAGS.output_dir)
    if prefix is None:
      raise UserError(f"--export_dir: no checkpoint in --output_dir ({FLAGS.output_dir}) to export")
    threshold = None if math.isnan(FLAGS.threshold_to_export) else FLAGS.threshold_to_export
    cu.export_saved_model(config, self.task, prefix, FLAGS.export_dir, FLAGS.max_seq_length, threshold)

  def predict(self):
    examples = cu.read_examples(self.task, FLAGS.data_dir, cu.TEST, self.normalize).examples
    path = os.path.join(FLAGS.output_dir, cu.PREDICT_FEATURE_FILE)
    cu.write_tfrecord(path, (cu.serialize_features(cu.convert_example(e, self.task, FLAGS.max_seq_length,
                                                                      self.tokenizer)) for e in examples))
    self.trainer.restore_for_inference(checkpoint=cu.best_checkpoint(FLAGS.output_dir),
                                       init_checkpoint=FLAGS.init_checkpoint)
    outputs = self._predict(path, FLAGS.predict_batch_size)
    if not self.write_outputs:
      return
    with fileio.atomic_open(os.path.join(FLAGS.output_dir, TEST_RESULTS_FILE)) as f:
      for probabilities in outputs["probabilities"]:
        f.write("\t".join(str(p) for p in probabilities) + "\n")
    with fileio.atomic_open(os.path.join(FLAGS.output_dir, SUBMIT_RESULTS_FILE)) as f:
      f.write("index\tprediction\n")
      for example, prediction in zip(examples, outputs["predictions"]):
        label = prediction if self.task.is_regression else self.task.labels[prediction]
        f.write(f"{example.guid}\t{label}\n")
    logging.info("wrote predictions of %d test examples to %s", len(examples), FLAGS.output_dir)


define_flags()

if __name__ == "__main__":
  run_main(main)
