"""The `run_squad_v1` / `run_squad_v2` job: flags, then train, predict, evaluate and export.

The two scripts differ only in their task object (`SquadV1Task`, `SquadV2Task`) and a few flags of the
v2 head; the flow here is written once and asks the task for everything version-specific.
"""

import tempfile

from absl import flags, logging

from albert.cli import flags as flag_groups
from albert.cli import model_loader
from albert.cli.definer import attach_rule, definer
from albert.core import bounds
from albert.core.errors import UserError, require_file, run_main
from albert.core.precision import compute_dtype
from albert.inference import onnx_engine
from albert.io import checkpoint as checkpoints
from albert.io.input_pipeline import Bucketing
from albert.tasks.squad import evaluate, records, serving, windows
from albert.tasks.squad.records import read_feature_metas
from albert.tasks.squad.task import SQUAD_TASKS, AnswerRules
from albert.training import checkpoint_selection, distribute, trainer
from albert.training.task import shapes_may_vary


def define_flags(version, flag_values=None):
  """The original run_squad_v{1,2} flags (names, defaults, meanings) plus the suite's shared new ones."""
  task_class = SQUAD_TASKS[version]
  flag_groups.define_model_flags(flag_values)
  flag_groups.define_tpu_flags(flag_values)
  flag_groups.define_execution_flags(flag_values, keep_checkpoint_max=5)
  define = definer(flag_values)
  define(flags.DEFINE_string, "train_file", None, "SQuAD json for training. E.g., train-v1.1.json")
  define(flags.DEFINE_string, "predict_file", None,
         "SQuAD json for predictions. E.g., dev-v1.1.json or test-v1.1.json")
  define(flags.DEFINE_string, "train_feature_file", None,
         "Training TFRecord feature cache: reused if it matches the flags, tokenizer and train file, "
         "(re)built otherwise (default: <output_dir>/train.tf_record).")
  define(flags.DEFINE_string, "predict_feature_file", None,
         "Prediction TFRecord feature cache (default: <output_dir>/predict.tf_record); reused only "
         "together with --predict_feature_left_file.")
  define(flags.DEFINE_string, "predict_feature_left_file", None,
         "Per-window token-to-text maps needed by post-processing (JSON lines; default: "
         "<output_dir>/predict_left.jsonl).")
  define_window_flags(flag_values)
  define(flags.DEFINE_bool, "do_train", False, "Whether to run training.")
  define(flags.DEFINE_bool, "do_predict", False,
         "Whether to run prediction (and evaluation, when the predict file has answers).")
  flag_groups.define_training_flags(flag_values, batch_sizes={"train": 32, "predict": 8}, learning_rate=5e-5,
                                    save_checkpoints_steps=1000)
  define(flags.DEFINE_float, "num_train_epochs", 3.0, "Total number of training epochs to perform.",
         bound=bounds.POSITIVE)
  define(flags.DEFINE_float, "warmup_proportion", 0.1,
         "Proportion of training to perform linear learning rate warmup for.", bound=bounds.FRACTION)
  flag_groups.define_length_bucketing_flags(flag_values)
  define_answer_flags(flag_values)
  flag_groups.define_engine_flags(flag_values)
  flag_groups.define_text_signature_flag(flag_values)
  task_class.define_flags(define)
  define(flags.DEFINE_integer, "num_preprocess_workers", 1, "Processes converting SQuAD examples to features (new).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_string, "export_dir", None,
         "Export a SavedModel of the checkpoint the predictions come from (or, without --do_train/--do_predict, "
         "of the latest checkpoint or --init_checkpoint) to <export_dir>/saved_model/<timestamp>, plus "
         "<export_dir>/albert_model.tflite. Its serving_default signature takes int32 [batch, max_seq_length] "
         f"input_ids, input_mask and segment_ids and returns {task_class.serving_outputs}.")
  define(flags.DEFINE_bool, "eval_all_checkpoints", False,
         "Evaluate every checkpoint kept in --output_dir (ascending steps), copy the best by F1 to "
         "model.ckpt-best and finish with its predictions, like the original's evaluation loop (new; "
         "default: evaluate only the final checkpoint).")


def define_window_flags(flag_values=None):
  """The window flags, and the rule that they leave room for document tokens."""
  define = definer(flag_values)
  define(flags.DEFINE_integer, "max_seq_length", 384,
         "The maximum total input sequence length after tokenization.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "doc_stride", 128, "How far apart consecutive windows of a long document start.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_query_length", 64, "Questions longer than this many tokens are truncated.",
         bound=bounds.AT_LEAST_ONE)
  attach_rule(flag_values, ("max_seq_length", "max_query_length"),
              lambda v: v["max_seq_length"] > v["max_query_length"] + 3,
              lambda v: f"--max_seq_length must be > --max_query_length + 3 = {v['max_query_length'] + 3}")
  attach_rule(flag_values, ("max_seq_length", "max_query_length", "doc_stride"),
              lambda v: v["doc_stride"] <= windows.document_room(v["max_seq_length"], v["max_query_length"]),
              lambda v: (f"--doc_stride must be <= --max_seq_length - --max_query_length - 3 = "
                         f"{windows.document_room(v['max_seq_length'], v['max_query_length'])} (the document "
                         "room of a window), or windows would not start --doc_stride apart"))


def define_answer_flags(flag_values=None):
  """The post-processing flags both versions share."""
  define = definer(flag_values)
  define(flags.DEFINE_integer, "n_best_size", 20, "The total number of n-best predictions to generate.",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "max_answer_length", 30, "The maximum length of an answer that can be generated.",
         bound=bounds.AT_LEAST_ONE)


def answer_rules(fv):
  """The AnswerRules of the flags (v1 has no threshold flags)."""
  if "threshold_rule" not in fv:
    return AnswerRules(fv.n_best_size, fv.max_answer_length)
  return AnswerRules(fv.n_best_size, fv.max_answer_length, fv.null_score_diff_threshold, fv.threshold_rule)


def _check_flags(fv):
  if not fv.do_train and not fv.do_predict and not fv.export_dir:
    raise UserError("at least one of --do_train, --do_predict or --export_dir must be set")
  if not fv.output_dir:
    raise UserError("--output_dir is required")
  bounds.check_output_directory("output_dir", fv.output_dir)
  bounds.check_output_directory("export_dir", fv.export_dir)
  for name in ("train_feature_file", "predict_feature_file", "predict_feature_left_file"):
    bounds.check_output_file(name, fv[name].value)
  if "start_n_top" in fv:
    bounds.require(fv.start_n_top <= fv.max_seq_length, "start_n_top", fv.start_n_top,
                   f"<= --max_seq_length={fv.max_seq_length}")
  flag_groups.check_engine_flags(fv)
  if fv.engine == "onnx" and fv.do_train and fv.onnx_model:
    raise UserError("--onnx_model predicts with that file, not with the checkpoint --do_train makes: drop "
                    "--onnx_model to predict with the trained checkpoint exported in memory")
  if fv.engine == "onnx" and fv.eval_all_checkpoints:
    raise UserError("--eval_all_checkpoints runs with --engine=tensorflow; --engine=onnx predicts one model")


class SquadRun:
  """One run of `run_squad_v{version}`, driven by the flag values `fv`."""

  def __init__(self, version, fv):
    _check_flags(fv)
    self.fv = fv
    setup = model_loader.load_model(fv)
    flag_groups.validate_seq_length(fv.max_seq_length, setup.config)
    if fv.do_predict:
      require_file(fv.predict_file, "predict_file")
    self.tokenizer, self.config = setup.tokenizer, setup.config
    self.strategy = flag_groups.strategy_from_flags(fv)
    self.task = SQUAD_TASKS[version].from_flags(fv, setup.config, setup.create_encoder, compute_dtype(fv.precision))
    self.trainer = None

  def writable_dir(self):
    """Where this worker writes feature caches and outputs: --output_dir for the chief, a scratch
    directory for the other workers of a cluster (they share --output_dir but never write to it)."""
    if distribute.is_chief(self.strategy):
      return self.fv.output_dir
    return tempfile.mkdtemp(prefix="squad_worker_")

  def window_args(self, output_dir):
    fv = self.fv
    return dict(max_seq_length=fv.max_seq_length, doc_stride=fv.doc_stride, max_query_length=fv.max_query_length,
                output_dir=output_dir, num_workers=fv.num_preprocess_workers)

  def bucketing(self, flag_on):
    """The length buckets of --bucket_prediction / --group_by_length (None when the flag is off); on TPUs
    batches are grouped but keep the full static length."""
    if not flag_on:
      return None
    return Bucketing(self.fv.max_seq_length, minimum=self.task.min_sequence_length,
                     trim=shapes_may_vary(self.strategy))

  def run(self):
    fv = self.fv
    predicted_prefix = None
    if fv.do_train:
      self.train()
    if fv.do_predict and fv.engine == "onnx":
      predicted_prefix = self.predict_with_onnx()
    elif fv.do_predict:
      if self.trainer is None:
        self.trainer = flag_groups.make_trainer(fv, self.task, self.strategy, num_train_steps=1, num_warmup_steps=0)
      predicted_prefix = self.predict_and_evaluate()
    if fv.export_dir and distribute.is_chief(self.strategy):
      windows = dict(max_seq_length=fv.max_seq_length, doc_stride=fv.doc_stride,
                     max_query_length=fv.max_query_length, rules=answer_rules(fv))
      serving.export(self.task, predicted_prefix or self.checkpoint_to_export(), fv.export_dir, fv.max_seq_length,
                     self.tokenizer, windows if fv.export_text_signature else None)

  def train(self):
    fv = self.fv
    feature_dir = self.writable_dir()
    num_examples = records.prepare_train_features(fv.train_file, fv.train_feature_file, self.tokenizer,
                                                  **self.window_args(feature_dir))
    num_train_steps = trainer.num_train_steps_from_epochs(num_examples, fv.train_batch_size, fv.num_train_epochs)
    if num_train_steps <= 0:
      raise UserError(f"{num_examples} training examples at --train_batch_size={fv.train_batch_size} and "
                      f"--num_train_epochs={fv.num_train_epochs} make no training step")
    num_warmup_steps = trainer.num_warmup_steps(num_train_steps, fv.warmup_proportion)
    logging.info("training on %d examples: %d steps (%d warmup) at batch size %d", num_examples,
                 num_train_steps, num_warmup_steps, fv.train_batch_size)
    self.trainer = flag_groups.make_trainer(fv, self.task, self.strategy, num_train_steps, num_warmup_steps)
    self.trainer.initialize(fv.init_checkpoint)
    # Each worker reads the features it wrote itself (a non-chief's are in its scratch directory).
    feature_file = records.train_feature_path(fv.train_feature_file, feature_dir)
    dataset_fn = records.input_fn_builder(feature_file, fv.max_seq_length, is_training=True, drop_remainder=True,
                                          batch_size=flag_groups.micro_batch_size(fv), use_p_mask=self.task.uses_p_mask,
                                          seed=fv.seed, bucketing=self.bucketing(fv.group_by_length))
    self.trainer.train(dataset_fn, fv.train_batch_size)

  def prediction_inputs(self):
    """(output directory, reference dataset or None, PredictFeatures, Bucketing or None) of --predict_file."""
    fv = self.fv
    # Only the chief writes outputs; other workers take part in the collective prediction.
    output_dir = self.writable_dir()
    # The references are checked before anything is predicted: a malformed one is one line, at once.
    dataset = evaluate.read_dataset(require_file(fv.predict_file, "predict_file"), "--predict_file")
    dataset = dataset if evaluate.has_references(dataset, fv.predict_file) else None
    features = records.prepare_predict_features(fv.predict_file, fv.predict_feature_file,
                                                fv.predict_feature_left_file, self.tokenizer,
                                                **self.window_args(output_dir))
    bucketing = self.bucketing(fv.bucket_prediction)
    if bucketing is not None and bucketing.trim:
      logging.info("prediction batches cut to length buckets %s", bucketing.lengths())
    return output_dir, dataset, features, bucketing

  def write_predictions(self, predictor, name, inputs):
    """Runs every window through `predictor` (the trainer or an ONNX engine), writes the prediction files
    and returns the scores (None without references)."""
    fv = self.fv
    output_dir, dataset, features, bucketing = inputs
    logging.info("predicting %d windows with %s", features.num_features, name)
    results = records.predict_windows(predictor, features.feature_file, fv.max_seq_length, fv.predict_batch_size,
                                      self.task.uses_p_mask, bucketing)
    return self.task.write_and_score(output_dir, features.examples, read_feature_metas(features.feature_left_file),
                                     results, answer_rules(fv), dataset)

  def predict_and_evaluate(self):
    """Predicts with the checkpoint(s) to evaluate and leaves the files of the best (or only) one."""
    fv = self.fv
    inputs = self.prediction_inputs()
    output_dir, dataset = inputs[:2]

    def predict(prefix):
      return self.write_predictions(self.trainer, prefix, inputs)

    if dataset is None:
      prefix = self.trainer.restore_for_inference(init_checkpoint=fv.init_checkpoint)
      predict(prefix)
      return prefix
    # Only the chief copies model.ckpt-best; results are written where this worker writes outputs.
    tracker = checkpoint_selection.evaluate_checkpoints(
        self.trainer, fv.output_dir, predict, "f1", evaluate_all=fv.eval_all_checkpoints,
        init_checkpoint=fv.init_checkpoint, finish_on_best=True,
        copy_best=fv.eval_all_checkpoints and distribute.is_chief(self.strategy))
    tracker.write(output_dir)
    return tracker.best[0]

  def predict_with_onnx(self):
    """--engine=onnx: the windows run through ONNX Runtime, on --onnx_model or on the checkpoint TensorFlow
    would predict with (the latest of --output_dir, else --init_checkpoint) exported in memory; the usual
    files and scores follow. Returns the checkpoint predicted (None for an --onnx_model file)."""
    fv = self.fv
    inputs = self.prediction_inputs()
    if fv.onnx_model:
      prefix, engine = None, onnx_engine.OnnxEngine(fv.onnx_model)
      self.check_onnx_model(engine)
      name, step = fv.onnx_model, int(engine.metadata.get("global_step", 0))
    else:
      if not checkpoints.latest_checkpoint(fv.output_dir) and not fv.init_checkpoint:
        raise UserError(f"--engine=onnx: no checkpoint in --output_dir ({fv.output_dir}) and no --init_checkpoint "
                        "(or pass --onnx_model)")
      prefix = self.checkpoint_to_export()
      task = self.task.for_export()
      task.build()
      report = checkpoints.load_variables(task.named_variables(), prefix)
      if report.missing:
        raise UserError(f"--engine=onnx: checkpoint {prefix} lacks {len(report.missing)} variables of the SQuAD "
                        f"model (e.g. {report.missing[0]}); predict with a fine-tuned checkpoint")
      engine = onnx_engine.from_task(task, self.config, f"checkpoint {prefix}", fv.onnx_quantize)
      name, step = prefix, checkpoints.checkpoint_step(prefix) or 0
    engine.check_length(fv.max_seq_length)
    scores = self.write_predictions(engine, engine.name, inputs)
    if scores is not None:
      tracker = checkpoint_selection.BestCheckpointTracker(fv.output_dir, "f1", copy_best=False)
      tracker.add(name, step, scores)
      tracker.write(inputs[0], extra={"engine": "onnx", "onnx_quantization": engine.quantization})
    return prefix

  def check_onnx_model(self, engine):
    """An --onnx_model file must be a model of this script's SQuAD version (and, v2, its beam)."""
    version = self.task.version
    if engine.task != f"squad_v{version}":
      raise UserError(f"--onnx_model: {engine.name} is {engine.describe()}, not a SQuAD v{version} model "
                      f"(run_squad_v{version})")
    beam = engine.beam
    if beam is not None and beam != (self.task.start_n_top, self.task.end_n_top):
      raise UserError(f"--onnx_model: {engine.name} was exported with --start_n_top={beam[0]} "
                      f"--end_n_top={beam[1]}; pass the same")

  def checkpoint_to_export(self):
    """Without a prediction run: the latest checkpoint of output_dir, else --init_checkpoint."""
    fv = self.fv
    prefix = checkpoints.latest_checkpoint(fv.output_dir)
    if prefix:
      return prefix
    if fv.init_checkpoint:
      return checkpoints.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
    raise UserError(f"--export_dir: no checkpoint in --output_dir ({fv.output_dir}) and no --init_checkpoint")


def run(version, fv=None):
  """The whole run_squad_v{version} job, driven by the flag values `fv` (default: absl's FLAGS)."""
  SquadRun(version, flags.FLAGS if fv is None else fv).run()


def main(version):
  """The command line of run_squad_v{version}: defines its flags, then runs the job with them."""
  define_flags(version)
  run_main(lambda argv: run(version))
