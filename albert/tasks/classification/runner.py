"""The `run_classifier` (GLUE or your own files) and `run_race` jobs: one skeleton, three data sets.

All train for `--train_step` steps, score every kept checkpoint on the dev set (keeping the best as
`model.ckpt-best`), and predict the test set with the best checkpoint. What differs, the data and its
features, the scores and the prediction files, is a `GlueData`, `CustomData` (`--task_name=custom`) or
`RaceData` object.
"""

import math
import os

from absl import flags, logging

from albert.cli import flags as flag_groups
from albert.cli import model_loader
from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import UserError, run_main
from albert.core.precision import compute_dtype
from albert.io import checkpoint as checkpoints
from albert.io import tfrecord
from albert.tasks.classification import custom, features, glue, metrics, race, serving
from albert.tasks.classification.task import NUM_CHOICES, ClassifierTask, RaceTask, stack_predictions
from albert.training import checkpoint_selection, distribute

BEST_TRIAL_FILE = "best_trial.txt"
TEST_RESULTS_FILE = "test_results.tsv"
SUBMIT_RESULTS_FILE = "submit_results.tsv"
PREDICT_FEATURE_FILE = "predict.tf_record"
RACE_PREDICT_RESULTS = "predict_results"


# ---- flags ----

def define_flags(flag_values=None, *, race_flags=False, task_name=None, do_train=False, do_eval=False,
                 learning_rate=5e-5, train_step=1000, warmup_step=0, save_checkpoints_steps=1000):
  """The flags run_classifier and run_race share (their defaults differ), then each one's own."""
  flag_groups.define_model_flags(flag_values)
  flag_groups.define_tpu_flags(flag_values)
  flag_groups.define_execution_flags(flag_values, keep_checkpoint_max=None if race_flags else 5)
  define = definer(flag_values)
  define(flags.DEFINE_string, "data_dir", None, "The data root: GLUE task folders (MNLI/, ...) or RACE/.")
  define(flags.DEFINE_string, "task_name", task_name, "The task: " + (
      "only race." if race_flags else f"one of {', '.join(glue.TASKS)} (any case), or custom for your own "
      "TSV/CSV/JSONL files (--train_file, --eval_file, --predict_file)."))
  define(flags.DEFINE_integer, "max_seq_length", 512, "The maximum total input sequence length after "
         "tokenization; longer inputs are truncated.", bound=bounds.at_least(3))
  define(flags.DEFINE_bool, "do_train", do_train, "Whether to run training.")
  define(flags.DEFINE_bool, "do_eval", do_eval, "Whether to evaluate every kept checkpoint on the dev set.")
  define(flags.DEFINE_bool, "do_predict", False, "Whether to predict the test set with the best checkpoint.")
  flag_groups.define_training_flags(flag_values, batch_sizes={"train": 32, "eval": 8, "predict": 8},
                                    learning_rate=learning_rate, save_checkpoints_steps=save_checkpoints_steps)
  define(flags.DEFINE_integer, "train_step", train_step, "Total number of training steps to perform.",
         bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_integer, "warmup_step", warmup_step, "Number of steps of linear learning-rate warmup.",
         bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_bool, "trim_padding", True,
         "Run each batch only up to its longest real sequence (same results, less work; new). Off on TPUs, "
         "and in training with --jit_compile, which need static shapes.")
  (_define_race_flags if race_flags else _define_glue_flags)(define)
  if not race_flags:
    flag_groups.define_text_signature_flag(flag_values)


def _define_glue_flags(define):
  define(flags.DEFINE_string, "cached_dir", None,
         "Where <task>_train.tf_record and <task>_eval.tf_record are cached (default: --output_dir); each is "
         "reused only if it matches the flags, tokenizer and data file.")
  define(flags.DEFINE_string, "optimizer", "adamw", "Optimizer to use: adamw or lamb.")
  define(flags.DEFINE_string, "export_dir", None,
         "If set, a SavedModel of the best checkpoint is exported to <export_dir>/<timestamp>.")
  define(flags.DEFINE_float, "threshold_to_export", float("nan"),
         "If not NaN, the exported serving signature also returns this constant as `threshold`.")
  # --task_name=custom: your own files (albert.tasks.classification.custom)
  define(flags.DEFINE_string, "train_file", None, "--task_name=custom: the training file (.tsv, .csv or .jsonl).")
  define(flags.DEFINE_string, "eval_file", None, "--task_name=custom: the dev file, with labels.")
  define(flags.DEFINE_string, "predict_file", None, "--task_name=custom: the file to predict (labels not read).")
  define(flags.DEFINE_enum, "file_format", "auto", ["auto", *custom.FORMATS],
         "--task_name=custom: the files' format; auto: from the extension (.tsv, .csv, .jsonl).")
  define(flags.DEFINE_string, "text_a_column", "text",
         "--task_name=custom: the text column (TSV/CSV header name, JSONL key).")
  define(flags.DEFINE_string, "text_b_column", None,
         "--task_name=custom: the second text's column, for text pairs (default: single texts).")
  define(flags.DEFINE_string, "label_column", "label", "--task_name=custom: the label (or regression target) column.")
  define(flags.DEFINE_string, "id_column", None,
         "--task_name=custom: a column of record ids for submit_results.tsv (default: the 0-based record number).")
  define(flags.DEFINE_list, "label_list", None,
         "--task_name=custom: the labels, comma-separated, in this order (default: the training file's, sorted; "
         "without --do_train, the trained model's labels.json).")
  define(flags.DEFINE_bool, "regression", False,
         "--task_name=custom: the label column is a number to predict (squared-error loss; Pearson and Spearman).")


def _define_race_flags(define):
  define(flags.DEFINE_string, "train_file", None,
         "Training TFRecord cache (default: <output_dir>/train.tf_record).")
  define(flags.DEFINE_string, "eval_file", None, "Dev TFRecord cache (default: <output_dir>/eval.tf_record).")
  define(flags.DEFINE_string, "predict_file", None,
         "Test TFRecord, always rewritten (default: <output_dir>/predict.tf_record).")
  define(flags.DEFINE_float, "dropout_prob", 0.1, "Dropout probability on the pooled output of the head.",
         bound=bounds.DROPOUT)
  define(flags.DEFINE_integer, "max_qa_length", 128,
         "The maximum number of question+option tokens; the last ones are kept.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "num_keep_checkpoint", 5, "How many of the newest checkpoints to keep; 0 keeps all.",
         bound=bounds.NON_NEGATIVE)
  define(flags.DEFINE_bool, "high_only", False, "Whether to only use the high school level.")
  define(flags.DEFINE_bool, "middle_only", False, "Whether to only use the middle school level.")


# ---- the two data sets ----

class GlueData:
  """A GLUE task: TSV splits, one text pair per record, the task's metrics and submission files."""

  @classmethod
  def for_flags(cls, fv):
    """The data class of `--task_name`: CustomData for custom, else this one."""
    return CustomData if custom.is_custom(fv.task_name) else cls

  def __init__(self, fv, tokenizer):
    self.fv, self.tokenizer = fv, tokenizer
    self.task = glue.get_task(fv.task_name)
    self.normalize = features.text_normalizer(tokenizer)
    self.record_length, self.float_label, self.key_metric = fv.max_seq_length, self.task.is_regression, \
        self.task.key_metric

  def make_task(self, config, create_encoder, dtype, trim_inference, trim_training):
    return ClassifierTask(config, self.task.num_labels, dtype, trim_inference, trim_training, create_encoder)

  @staticmethod
  def check(fv):
    task = glue.get_task(fv.task_name)
    custom.check_glue_flags(fv)
    if task.predict_only and (fv.do_train or fv.do_eval):
      raise UserError(f"--task_name={task.name} has only a test set: use --do_predict alone, with "
                      "--init_checkpoint (or --output_dir) of a model fine-tuned on MNLI")

  def examples(self, split):
    examples = glue.read_examples(self.task, self.fv.data_dir, split, self.normalize).examples
    if not examples:
      raise UserError(f"--data_dir: no {split} examples in {glue.data_file(self.fv.data_dir, self.task, split)}")
    return examples

  def record(self, example):
    return features.serialize_features(
        features.convert_example(example, self.task, self.fv.max_seq_length, self.tokenizer))

  def cache(self, split):
    """(path, flag, settings, source files) of the split's feature cache."""
    suffix = "train" if split == glue.TRAIN else "eval"
    path = os.path.join(self.fv.cached_dir or self.fv.output_dir, f"{self.task.name}_{suffix}.tf_record")
    settings = {"task": self.task.name, "split": split, "max_seq_length": self.fv.max_seq_length}
    return path, "cached_dir", settings, [glue.data_file(self.fv.data_dir, self.task, split)]

  def score(self, outputs, examples, batch_size):
    return metrics.classifier_scores(self.task, outputs, batch_size)

  def labelled_task(self):
    """The task whose labels (or regression) labels.json records."""
    return self.task

  def after_evaluation(self, tracker):
    _, best_step, best_scores = tracker.best
    fileio.write_text(os.path.join(self.fv.output_dir, BEST_TRIAL_FILE),
                      f"{tracker.evaluated[-1][1]}:{best_step}:{best_scores[self.key_metric]}\n")

  def predict_file(self):
    return os.path.join(self.fv.output_dir, PREDICT_FEATURE_FILE)

  def write_predictions(self, examples, outputs, prefix, global_step):
    """test_results.tsv (probabilities) and submit_results.tsv (labels), like the original."""
    output_dir = self.fv.output_dir
    with fileio.atomic_open(os.path.join(output_dir, TEST_RESULTS_FILE)) as f:
      for probabilities in outputs["probabilities"]:
        f.write("\t".join(str(p) for p in probabilities) + "\n")
    with fileio.atomic_open(os.path.join(output_dir, SUBMIT_RESULTS_FILE)) as f:
      f.write("index\tprediction\n")
      for example, prediction in zip(examples, outputs["predictions"]):
        label = prediction if self.task.is_regression else self.task.labels[prediction]
        f.write(f"{example.guid}\t{label}\n")
    logging.info("wrote predictions of %d test examples to %s", len(examples), output_dir)


class CustomData(GlueData):
  """Your own TSV, CSV or JSONL files (`--task_name=custom`): text and label columns named by flags,
  labels from --label_list, the training file or a trained model's labels.json, or a regression
  (`albert.tasks.classification.custom`). Scores, best_trial.txt and the prediction files are GLUE's."""

  def __init__(self, fv, tokenizer):
    self.fv, self.tokenizer = fv, tokenizer
    self.normalize = features.text_normalizer(tokenizer)
    self.columns = custom.Columns.from_flags(fv)
    self._read = {}  # split -> examples already read (the training file, when its labels were collected)
    self.task = custom.choose_task(fv, self._training_labels, has_checkpoint(fv.output_dir))
    self.record_length, self.float_label, self.key_metric = fv.max_seq_length, self.task.is_regression, \
        self.task.key_metric
    logging.info("custom data: %s", custom.describe_labels(self.task))

  @staticmethod
  def check(fv):
    custom.check_flags(fv)

  def _path(self, split):
    flag = custom.SPLIT_FLAGS[split]
    return flag, self.fv[flag].value, custom.file_format(self.fv[flag].value, flag, self.fv.file_format)

  def _read_examples(self, split, task):
    flag, path, fmt = self._path(split)
    examples = custom.read_examples(path, fmt, self.columns, split, self.normalize, task)
    if not examples:
      raise UserError(f"--{flag}: no {split} examples in {path}")
    return examples

  def _training_labels(self):
    examples = self._read_examples(glue.TRAIN, None)
    self._read[glue.TRAIN] = examples  # their labels are the task's by construction
    return custom.collect_labels(examples, self.fv.train_file)

  def examples(self, split):
    if split in self._read:
      return self._read.pop(split)
    return self._read_examples(split, self.task)

  def cache(self, split):
    """(path, flag, settings, source files) of the split's feature cache: custom_train/custom_eval."""
    suffix = "train" if split == glue.TRAIN else "eval"
    path = os.path.join(self.fv.cached_dir or self.fv.output_dir, f"{custom.CUSTOM}_{suffix}.tf_record")
    _, source, fmt = self._path(split)
    settings = {"task": custom.CUSTOM, "split": split, "max_seq_length": self.fv.max_seq_length, "file_format": fmt,
                **self.columns.settings(), **custom.labels_record(self.task)}
    return path, "cached_dir", settings, [source]


class RaceData:
  """RACE: JSON passages, four (article, question+option) sequences per record, accuracy per level."""

  key_metric = "eval_accuracy"
  float_label = False

  @classmethod
  def for_flags(cls, fv):
    return cls

  def labelled_task(self):
    return None  # four choices, no labels to name

  def __init__(self, fv, tokenizer):
    self.fv, self.tokenizer = fv, tokenizer
    self.normalize = features.text_normalizer(tokenizer)
    self.record_length = NUM_CHOICES * fv.max_seq_length

  def make_task(self, config, create_encoder, dtype, trim_inference, trim_training):
    return RaceTask(config, self.fv.dropout_prob, dtype, trim_inference, trim_training, create_encoder)

  @staticmethod
  def check(fv):
    if (fv.task_name or "").lower() != "race":
      raise UserError(f"--task_name: only race is supported, got {fv.task_name!r}")
    if fv.high_only and fv.middle_only:
      raise UserError("--high_only and --middle_only exclude each other")
    race.check_lengths(fv.max_seq_length, fv.max_qa_length)

  def examples(self, split):
    return race.read_race_examples(self.fv.data_dir, split, self.normalize, self.fv.high_only, self.fv.middle_only)

  def record(self, example):
    return features.serialize_features(
        race.convert_example(example, self.tokenizer, self.fv.max_seq_length, self.fv.max_qa_length))

  def cache(self, split):
    flag, default = ("train_file", "train.tf_record") if split == glue.TRAIN else ("eval_file", "eval.tf_record")
    fv = self.fv
    path = fv[flag].value or os.path.join(fv.output_dir, default)
    settings = {"task": "race", "split": split, "max_seq_length": fv.max_seq_length,
                "max_qa_length": fv.max_qa_length, "high_only": fv.high_only, "middle_only": fv.middle_only}
    return path, flag, settings, race.source_files(fv.data_dir, split, fv.high_only, fv.middle_only)

  def score(self, outputs, examples, batch_size):
    return metrics.race_scores(outputs, [example.level for example in examples], batch_size)

  def after_evaluation(self, tracker):
    pass

  def predict_file(self):
    return self.fv.predict_file or os.path.join(self.fv.output_dir, PREDICT_FEATURE_FILE)

  def write_predictions(self, examples, outputs, prefix, global_step):
    """predict_results.txt/.json: the test scores of the best checkpoint, with the dev best."""
    scores = {**self.score(outputs, examples, self.fv.predict_batch_size), "global_step": global_step}
    dev_best = self._dev_best()
    lines = ["***** Predict results *****"] + [f"{key} = {scores[key]}" for key in sorted(scores)]
    if dev_best is not None:
      lines.append(f"best = {dev_best}")
    output_dir = self.fv.output_dir
    fileio.write_text(os.path.join(output_dir, RACE_PREDICT_RESULTS + ".txt"), "\n".join(lines) + "\n")
    fileio.write_json(os.path.join(output_dir, RACE_PREDICT_RESULTS + ".json"),
                      {"checkpoint": prefix, **scores, "dev_best": dev_best})

  def _dev_best(self):
    """The dev accuracy of model.ckpt-best from an evaluation in output_dir, if there was one."""
    path = os.path.join(self.fv.output_dir, checkpoint_selection.EVAL_RESULTS_JSON)
    if not os.path.exists(path):
      return None
    return fileio.read_json(path, what="earlier evaluation results").get(self.key_metric)


# ---- the job ----

def has_checkpoint(output_dir):
  """Whether `output_dir` holds a checkpoint (a stepped one or model.ckpt-best): the model a run uses."""
  return bool(checkpoints.latest_checkpoint(output_dir) or checkpoint_selection.best_checkpoint(output_dir))


class ClassificationRun:
  """The phases of one run, sharing the data, the task and the trainer."""

  def __init__(self, fv, data_class):
    data_class = data_class.for_flags(fv)
    data_class.check(fv)
    if not (fv.do_train or fv.do_eval or fv.do_predict):
      raise UserError("at least one of --do_train, --do_eval or --do_predict must be set")
    if not fv.output_dir:
      raise UserError("--output_dir is required")
    bounds.check_output_directory("output_dir", fv.output_dir)
    self.fv = fv
    setup = model_loader.load_model(fv)
    self.data = data_class(fv, setup.tokenizer)
    flag_groups.validate_seq_length(fv.max_seq_length, setup.config)
    os.makedirs(fv.output_dir, exist_ok=True)
    strategy = flag_groups.strategy_from_flags(fv)
    self.write_outputs = distribute.is_chief(strategy)
    self._labels_file()
    trim = features.padding_trim_settings(fv.trim_padding, strategy, fv.jit_compile)
    self.task = self.data.make_task(setup.config, setup.create_encoder, compute_dtype(fv.precision), *trim)
    self.trainer = flag_groups.make_trainer(fv, self.task, strategy, fv.train_step, fv.warmup_step)
    self.tokenizer = setup.tokenizer

  def _labels_file(self):
    """labels.json in --output_dir names the model's outputs (for GLUE and custom data, not RACE); an
    output directory whose checkpoints were trained with other labels is refused."""
    task = self.data.labelled_task()
    if task is None:
      return
    output_dir = self.fv.output_dir
    custom.check_and_save_labels(output_dir, task, has_checkpoint(output_dir), self.write_outputs)

  def run(self):
    fv = self.fv
    if fv.do_train:
      self.train()
    if fv.do_eval:
      self.evaluate()
    if "export_dir" in fv and fv.export_dir and self.write_outputs:
      self.export()
    if fv.do_predict:
      self.predict()

  def _feature_file(self, split, examples):
    path, flag, settings, sources = self.data.cache(split)
    settings["record_length"] = self.data.record_length
    return features.prepare_feature_file(path, flag, lambda: map(self.data.record, examples()), settings,
                                         self.tokenizer, sources, "data_dir")

  def _dataset_fn(self, path, is_training, batch_size):
    return features.input_fn_builder(path, self.data.record_length, is_training, batch_size, self.data.float_label,
                                     seed=self.fv.seed)

  def _predict(self, path, batch_size):
    return stack_predictions(self.trainer.predict(self._dataset_fn(path, False, batch_size), batch_size))

  def train(self):
    path = self._feature_file(glue.TRAIN, lambda: self.data.examples(glue.TRAIN))
    self.trainer.initialize(self.fv.init_checkpoint)
    self.trainer.train(self._dataset_fn(path, True, flag_groups.micro_batch_size(self.fv)), self.fv.train_batch_size)

  def evaluate(self):
    """Scores every kept checkpoint on dev, keeps the best as model.ckpt-best, writes eval_results."""
    fv = self.fv
    examples = self.data.examples(glue.DEV)
    path = self._feature_file(glue.DEV, lambda: examples)

    def score(prefix):
      return self.data.score(self._predict(path, fv.eval_batch_size), examples, fv.eval_batch_size)

    tracker = checkpoint_selection.evaluate_checkpoints(self.trainer, fv.output_dir, score, self.data.key_metric,
                                                        init_checkpoint=fv.init_checkpoint,
                                                        copy_best=self.write_outputs)
    if self.write_outputs:
      tracker.write(fv.output_dir)
      self.data.after_evaluation(tracker)

  def export(self):
    fv = self.fv
    prefix = checkpoint_selection.best_checkpoint(fv.output_dir) or checkpoints.latest_checkpoint(fv.output_dir)
    if prefix is None:
      raise UserError(f"--export_dir: no checkpoint in --output_dir ({fv.output_dir}) to export")
    threshold = None if math.isnan(fv.threshold_to_export) else fv.threshold_to_export
    serving.export_saved_model(self.task, prefix, fv.export_dir, fv.max_seq_length, threshold,
                               tokenizer=self.tokenizer if fv.export_text_signature else None,
                               label_task=self.data.labelled_task())

  def predict(self):
    """Predicts the test set with model.ckpt-best (else the latest checkpoint or --init_checkpoint)."""
    fv = self.fv
    examples = self.data.examples(glue.TEST)
    path = self.data.predict_file()
    tfrecord.write_records(path, map(self.data.record, examples))
    prefix = self.trainer.restore_for_inference(checkpoint=checkpoint_selection.best_checkpoint(fv.output_dir),
                                                init_checkpoint=fv.init_checkpoint)
    outputs = self._predict(path, fv.predict_batch_size)
    if self.write_outputs:
      self.data.write_predictions(examples, outputs, prefix, self.trainer.global_step)


def main(data_class, **flag_defaults):
  """The command line of run_classifier (GlueData) or run_race (RaceData)."""
  define_flags(race_flags=data_class is RaceData, **flag_defaults)
  run_main(lambda argv: ClassificationRun(flags.FLAGS, data_class).run())
