"""What `run_squad_v1` and `run_squad_v2` share: their flags, the SQuAD task, and the train/predict/evaluate flow.

The two scripts differ only in the head (span head vs XLNet-style head), a few version flags and
post-processing; everything else is here once.
"""

import os
import tempfile

import tensorflow as tf
from absl import flags, logging

from albert import checkpoint as checkpoints
from albert import (distribute, eval_results, fileio, heads, model_setup, serving, squad_eval, squad_postprocess,
                    squad_utils, trainer)
from albert import flags as shared_flags
from albert.errors import UserError, require_file

FLAGS = flags.FLAGS


def define_flags(version):
  """The original run_squad_v{1,2} flags (names, defaults, meanings) plus the suite's shared new ones."""
  shared_flags.define_model_flags()
  shared_flags.define_tpu_flags()
  shared_flags.define_execution_flags(keep_checkpoint_max=5)
  flags.DEFINE_string("train_file", None, "SQuAD json for training. E.g., train-v1.1.json")
  flags.DEFINE_string("predict_file", None, "SQuAD json for predictions. E.g., dev-v1.1.json or test-v1.1.json")
  flags.DEFINE_string("train_feature_file", None,
                      "Training TFRecord feature cache: reused if it exists, created otherwise "
                      "(default: <output_dir>/train.tf_record).")
  flags.DEFINE_string("predict_feature_file", None,
                      "Prediction TFRecord feature cache (default: <output_dir>/predict.tf_record); reused "
                      "only together with --predict_feature_left_file.")
  flags.DEFINE_string("predict_feature_left_file", None,
                      "Per-window token-to-text maps needed by post-processing (JSON lines; default: "
                      "<output_dir>/predict_left.jsonl).")
  flags.DEFINE_integer("max_seq_length", 384, "The maximum total input sequence length after tokenization.")
  flags.DEFINE_integer("doc_stride", 128, "How far apart consecutive windows of a long document start.")
  flags.DEFINE_integer("max_query_length", 64, "Questions longer than this many tokens are truncated.")
  flags.DEFINE_bool("do_train", False, "Whether to run training.")
  flags.DEFINE_bool("do_predict", False, "Whether to run prediction (and evaluation, when the predict file has answers).")
  flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
  flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predictions.")
  flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
  flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
  flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear learning rate warmup for.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
  flags.DEFINE_integer("n_best_size", 20, "The total number of n-best predictions to generate.")
  flags.DEFINE_integer("max_answer_length", 30, "The maximum length of an answer that can be generated.")
  flags.DEFINE_integer("num_preprocess_workers", 1, "Processes converting SQuAD examples to features (new).")
  flags.DEFINE_string("export_dir", None,
                      "Export a SavedModel of the checkpoint the predictions come from (or, without "
                      "--do_train/--do_predict, of the latest checkpoint or --init_checkpoint) to "
                      "<export_dir>/saved_model/<timestamp>, plus <export_dir>/albert_model.tflite. Its "
                      "serving_default signature takes int32 [batch, max_seq_length] input_ids, input_mask "
                      "and segment_ids" + (" and returns start_logits and end_logits." if version == 1 else
                                           " and returns the beam outputs and cls_logits (new in v2)."))
  flags.DEFINE_bool("eval_all_checkpoints", False,
                    "Evaluate every checkpoint kept in --output_dir (ascending steps), copy the best by F1 "
                    "to model.ckpt-best and finish with its predictions, like the original's evaluation "
                    "loop (new; default: evaluate only the final checkpoint).")
  if version == 1:
    flags.DEFINE_bool("use_einsum", True, "Use tf.einsum (the maths is identical; kept for compatibility).")
  else:
    flags.DEFINE_integer("start_n_top", 5, "Beam size for the start position.")
    flags.DEFINE_integer("end_n_top", 5, "Beam size for the end position.")
    flags.DEFINE_float("dropout_prob", 0.1, "Dropout probability of the answer-class layer.")
    flags.DEFINE_enum("threshold_rule", "original", list(squad_postprocess.THRESHOLD_RULES),
                      "Which scores fill exact/f1 when evaluating: 'original' applies the released "
                      "scripts' 1.0 na_prob threshold to null_odds.json (comparable with published "
                      "numbers); 'tuned' scores predictions.json alone. Both pairs are always written (new).")
    flags.DEFINE_float("null_score_diff_threshold", None,
                       "Answer '' when a question's null score diff is >= this; used when the predict "
                       "file has no answers to tune it on (new; default: always answer a span).")


class SquadTask(trainer.Task):
  """ALBERT encoder + the v1 span head or the v2 XLNet-style head."""

  def __init__(self, config, version, create_encoder, compute_dtype, start_n_top=5, end_n_top=5,
               dropout_prob=0.1):
    self.config, self.version, self.compute_dtype = config, version, compute_dtype
    self.create_encoder = create_encoder
    self.start_n_top, self.end_n_top, self.dropout_prob = start_n_top, end_n_top, dropout_prob

  def build(self):
    self.model = self.create_encoder(self.compute_dtype)
    if self.version == 1:
      self.head = heads.SquadV1Head(self.config)
    else:
      self.head = heads.SquadV2Head(self.config, self.start_n_top, self.end_n_top, self.dropout_prob)

  def named_variables(self):
    return {**self.model.named_variables(), **self.head.named_variables()}

  def _sequence_output(self, features, training):
    return self.model(features["input_ids"], features["input_mask"], features["segment_ids"],
                      training=training).sequence_output

  def compute_loss(self, features, training):
    sequence_output = self._sequence_output(features, training)
    if self.version == 1:
      start_logits, end_logits = self.head(sequence_output)
      return heads.squad_v1_loss(start_logits, end_logits, features["start_positions"], features["end_positions"])
    start_log_probs, end_log_probs, cls_logits = self.head.train_logits(
        sequence_output, features["p_mask"], features["start_positions"], training)
    return heads.squad_v2_loss(start_log_probs, end_log_probs, cls_logits, features["start_positions"],
                               features["end_positions"], features["is_impossible"])

  def predict_step(self, features):
    return {"unique_ids": features["unique_ids"], **self.answer_outputs(features)}

  def answer_outputs(self, features):
    """v1: start/end logits; v2: the head's beam outputs and cls_logits (needs `p_mask`)."""
    sequence_output = self._sequence_output(features, training=False)
    if self.version == 1:
      start_logits, end_logits = self.head(sequence_output)
      return {"start_logits": start_logits, "end_logits": end_logits}
    return self.head.predict(sequence_output, features["p_mask"])


def _check_flags(version):
  if not FLAGS.do_train and not FLAGS.do_predict and not FLAGS.export_dir:
    raise UserError("at least one of --do_train, --do_predict or --export_dir must be set")
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  for name in ("train_batch_size", "predict_batch_size", "save_checkpoints_steps", "n_best_size",
               "max_answer_length", "num_preprocess_workers", "iterations_per_loop"):
    if FLAGS[name].value <= 0:
      raise UserError(f"--{name} must be positive, got {FLAGS[name].value}")
  if FLAGS.do_train and FLAGS.num_train_epochs <= 0:
    raise UserError(f"--num_train_epochs must be positive, got {FLAGS.num_train_epochs}")
  if not 0 <= FLAGS.warmup_proportion <= 1:
    raise UserError(f"--warmup_proportion must be in [0, 1], got {FLAGS.warmup_proportion}")
  if version == 2 and (FLAGS.start_n_top <= 0 or FLAGS.end_n_top <= 0):
    raise UserError("--start_n_top and --end_n_top must be positive")
  if version == 2 and FLAGS.start_n_top > FLAGS.max_seq_length:
    raise UserError(f"--start_n_top={FLAGS.start_n_top} exceeds --max_seq_length={FLAGS.max_seq_length}")


def _window_args(output_dir):
  return dict(max_seq_length=FLAGS.max_seq_length, doc_stride=FLAGS.doc_stride,
              max_query_length=FLAGS.max_query_length, output_dir=output_dir,
              num_workers=FLAGS.num_preprocess_workers)


def _writable_dir(strategy):
  """Where this worker writes feature caches and outputs: --output_dir for the chief, a scratch directory
  for the other workers of a cluster (they share --output_dir with the chief but never write to it)."""
  if distribute.is_chief(strategy):
    return FLAGS.output_dir
  return tempfile.mkdtemp(prefix="squad_worker_")


def run(version):
  """The whole run_squad_v{version} job, driven by FLAGS."""
  _check_flags(version)
  squad_utils.check_window_flags(FLAGS.max_seq_length, FLAGS.doc_stride, FLAGS.max_query_length)
  config, tokenizer, create_encoder, _ = model_setup.model_setup_from_flags(FLAGS)
  shared_flags.validate_seq_length(FLAGS.max_seq_length, config)
  if FLAGS.do_predict:
    require_file(FLAGS.predict_file, "predict_file")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  strategy = shared_flags.strategy_from_flags()
  compute_dtype = trainer.compute_dtype_for(FLAGS.precision)
  task = (SquadTask(config, 1, create_encoder, compute_dtype) if version == 1 else
          SquadTask(config, 2, create_encoder, compute_dtype, FLAGS.start_n_top, FLAGS.end_n_top,
                    FLAGS.dropout_prob))

  squad_trainer = None
  predicted_prefix = None
  if FLAGS.do_train:
    squad_trainer = _train(version, task, strategy, tokenizer)
  if FLAGS.do_predict:
    if squad_trainer is None:
      squad_trainer = shared_flags.make_trainer(FLAGS, task, strategy, num_train_steps=1, num_warmup_steps=0)
    predicted_prefix = _predict_and_evaluate(version, squad_trainer, strategy, tokenizer)
  if FLAGS.export_dir and distribute.is_chief(strategy):
    _export(task, predicted_prefix or _checkpoint_to_export())


def _train(version, task, strategy, tokenizer):
  feature_dir = _writable_dir(strategy)
  num_examples = squad_utils.prepare_train_features(
      FLAGS.train_file, FLAGS.train_feature_file, tokenizer, **_window_args(feature_dir))
  num_train_steps = trainer.num_train_steps_from_epochs(num_examples, FLAGS.train_batch_size,
                                                        FLAGS.num_train_epochs)
  if num_train_steps <= 0:
    raise UserError(f"{num_examples} training examples at --train_batch_size={FLAGS.train_batch_size} and "
                    f"--num_train_epochs={FLAGS.num_train_epochs} make no training step")
  num_warmup_steps = trainer.num_warmup_steps(num_train_steps, FLAGS.warmup_proportion)
  logging.info("training on %d examples: %d steps (%d warmup) at batch size %d", num_examples,
               num_train_steps, num_warmup_steps, FLAGS.train_batch_size)
  squad_trainer = shared_flags.make_trainer(FLAGS, task, strategy, num_train_steps, num_warmup_steps)
  squad_trainer.initialize(FLAGS.init_checkpoint)
  # Each worker reads the features it wrote itself (a non-chief's are in its scratch directory).
  feature_file = squad_utils.train_feature_path(FLAGS.train_feature_file, feature_dir)
  dataset_fn = squad_utils.input_fn_builder(feature_file, FLAGS.max_seq_length, is_training=True,
                                            drop_remainder=True, batch_size=FLAGS.train_batch_size,
                                            use_p_mask=version == 2, seed=FLAGS.seed)
  squad_trainer.train(dataset_fn, FLAGS.train_batch_size)
  return squad_trainer


def _predict_and_evaluate(version, squad_trainer, strategy, tokenizer):
  """Predicts with the checkpoint(s) to evaluate and leaves the files of the best (or only) one."""
  # Only the chief writes outputs; other workers take part in the collective prediction.
  output_dir = _writable_dir(strategy)
  features = squad_utils.prepare_predict_features(
      FLAGS.predict_file, FLAGS.predict_feature_file, FLAGS.predict_feature_left_file, tokenizer,
      **_window_args(output_dir))
  dataset = fileio.read_json(FLAGS.predict_file, what="--predict_file")
  has_answers = _has_answers(dataset)
  predictor = _Predictor(version, squad_trainer, features, dataset if has_answers else None, output_dir)

  # Only the chief copies model.ckpt-best; results are written where this worker writes outputs.
  tracker = eval_results.BestCheckpointTracker(FLAGS.output_dir, key="f1", copy_best=False)
  candidates = eval_results.checkpoints_to_evaluate(FLAGS.output_dir, FLAGS.eval_all_checkpoints)
  if not has_answers or not candidates:
    prefix = squad_trainer.restore_for_inference(init_checkpoint=FLAGS.init_checkpoint)
    scores = predictor.run(prefix)
    if scores is not None:
      tracker.add(prefix, squad_trainer.global_step, scores)
      tracker.write(output_dir)
    return prefix
  tracker.copy_best = len(candidates) > 1 and distribute.is_chief(strategy)
  for prefix in candidates:
    squad_trainer.restore_for_inference(checkpoint=prefix)
    tracker.add(prefix, squad_trainer.global_step, predictor.run(prefix))
  if not tracker.last_is_best:
    # The final predictions.json and scores must describe the same (best) checkpoint.
    squad_trainer.restore_for_inference(checkpoint=tracker.best[0])
    predictor.run(tracker.best[0])
  tracker.write(output_dir)
  return tracker.best[0]


def _checkpoint_to_export():
  """Without a prediction run: the latest checkpoint of output_dir, else --init_checkpoint."""
  prefix = checkpoints.latest_checkpoint(FLAGS.output_dir)
  if prefix:
    return prefix
  if FLAGS.init_checkpoint:
    return checkpoints.resolve_checkpoint(FLAGS.init_checkpoint, "init_checkpoint")
  raise UserError(f"--export_dir: no checkpoint in --output_dir ({FLAGS.output_dir}) and no --init_checkpoint")


def answer_mask(input_mask, segment_ids):
  """The v2 `p_mask` rebuilt from the serving inputs: 0 on [CLS] and the document window (segment 1 up
  to, not including, the final [SEP]), 1 elsewhere."""
  positions = tf.range(tf.shape(input_mask)[1])[tf.newaxis, :]
  final_sep = tf.reduce_sum(input_mask, axis=1, keepdims=True) - 1
  answerable = (positions == 0) | ((segment_ids == 1) & (positions < final_sep))
  return 1 - tf.cast(answerable, tf.int32)


class _SquadServing(tf.Module):
  """The exported model: float32 weights and a `serving_default` over int32 [batch, max_seq_length]
  input_ids, input_mask and segment_ids."""

  def __init__(self, task, seq_length):
    super().__init__(name="albert_squad")
    self.model, self.head, self._task = task.model, task.head, task
    specs = [tf.TensorSpec([None, seq_length], tf.int32, name=name)
             for name in ("input_ids", "input_mask", "segment_ids")]
    self.serve = tf.function(self._serve, input_signature=specs)

  def _serve(self, input_ids, input_mask, segment_ids):
    features = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    if self._task.version == 2:
      features["p_mask"] = answer_mask(input_mask, segment_ids)
    return self._task.answer_outputs(features)


def _export(task, prefix):
  """SavedModel of `prefix` under <export_dir>/saved_model/, and for v1 the original's TFLite file."""
  export_task = SquadTask(task.config, task.version, task.create_encoder, tf.float32, task.start_n_top,
                          task.end_n_top, task.dropout_prob)
  serving.load_task_for_export(export_task, prefix, "SQuAD model")
  module = _SquadServing(export_task, FLAGS.max_seq_length)
  path = serving.save_timestamped(module, os.path.join(FLAGS.export_dir, "saved_model"),
                                  {"serving_default": module.serve})
  logging.info("exported %s to %s", prefix, path)
  if task.version == 1:
    serving.write_tflite(path, os.path.join(FLAGS.export_dir, "albert_model.tflite"))


def _has_answers(dataset):
  """Whether the predict file carries references to evaluate against (a dev set, not a test set)."""
  try:
    return any(qa.get("answers") or "is_impossible" in qa
               for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"])
  except (KeyError, TypeError, AttributeError):
    return False


class _Predictor:
  """Predicts the features with the trainer's current weights, writes the prediction files, scores them."""

  def __init__(self, version, squad_trainer, features, dataset, output_dir):
    self.version, self.trainer, self.features = version, squad_trainer, features
    self.dataset, self.output_dir = dataset, output_dir

  def run(self, prefix):
    logging.info("predicting %d windows with %s", self.features.num_features, prefix)
    dataset_fn = squad_utils.input_fn_builder(
        self.features.feature_file, FLAGS.max_seq_length, is_training=False, drop_remainder=False,
        batch_size=FLAGS.predict_batch_size, use_p_mask=self.version == 2)
    results = self.trainer.predict(dataset_fn, FLAGS.predict_batch_size)
    metas = squad_utils.read_feature_metas(self.features.feature_left_file)
    if self.version == 1:
      written = squad_postprocess.write_predictions_v1(
          self.output_dir, self.features.examples, metas, results, FLAGS.n_best_size, FLAGS.max_answer_length)
      return None if self.dataset is None else squad_eval.evaluate_v1(self.dataset, written.answers())
    threshold = None if self.dataset is not None else FLAGS.null_score_diff_threshold
    written = squad_postprocess.write_predictions_v2(
        self.output_dir, self.features.examples, metas, results, FLAGS.n_best_size, FLAGS.max_answer_length,
        FLAGS.start_n_top, FLAGS.end_n_top, null_score_diff_threshold=threshold)
    if self.dataset is None:
      return None
    return squad_postprocess.tune_threshold_v2(self.output_dir, written, self.dataset, FLAGS.threshold_rule)
