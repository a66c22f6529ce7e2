"""Pretrain ALBERT (masked LM + sentence order): `python -m albert.run_pretraining --flags`.

The flags are the original run_pretraining.py's (names, defaults, meanings; see `--helpfull`) plus the
suite's shared ones (`--distribution_strategy`, `--precision`, `--jit_compile`, ...). The input is the
TFRecord data of `create_pretraining_data`. `--do_train` trains to `--num_train_steps`, resuming from
the latest checkpoint in `--output_dir`; `--do_eval` scores the latest checkpoint on `--input_file`
for `--max_eval_steps` batches, writes `eval_results.txt`/`eval_results.json` and keeps the checkpoint
with the best `masked_lm_accuracy` as `model.ckpt-best`.

Flags are defined only when this module runs as a script, so its task and input pipeline can be
imported (tests, benchmarks) next to other runners.
"""

import os

from absl import flags, logging
import tensorflow as tf

from albert import distribute, eval_results, modeling, optimization, trainer
from albert import flags as shared_flags
from albert.config import AlbertConfig
from albert.errors import UserError, require_file, run_main

BEST_METRIC = "masked_lm_accuracy"
SHUFFLE_BUFFER = 100
MAX_INTERLEAVE_FILES = 4


def define_flags(flag_values=None):
  """The original run_pretraining.py flags plus the shared new ones, defined into `flag_values`."""
  fv = flags.FLAGS if flag_values is None else flag_values
  shared_flags.define_model_flags(fv, tokenizer=False, hub=False)
  shared_flags.define_tpu_flags(fv)
  shared_flags.define_execution_flags(fv, keep_checkpoint_max=5)
  define = lambda kind, *args, **kwargs: getattr(flags, f"DEFINE_{kind}")(*args, flag_values=fv, **kwargs)
  define("string", "input_file", None, "Input TF example files (can be a glob or comma separated).")
  define("integer", "max_seq_length", 512,
         "The maximum total input sequence length after WordPiece tokenization. Must match the data.")
  define("integer", "max_predictions_per_seq", 20,
         "Maximum number of masked LM predictions per sequence. Must match the data.")
  define("bool", "do_train", True, "Whether to run training.")
  define("bool", "do_eval", False, "Whether to run eval on the dev set.")
  define("integer", "train_batch_size", 4096, "Total batch size for training.")
  define("integer", "eval_batch_size", 64, "Total batch size for eval.")
  define("enum", "optimizer", "lamb", list(optimization.OPTIMIZERS), "The optimizer for training.")
  define("float", "learning_rate", 0.00176, "The initial learning rate.")
  define("float", "poly_power", 1.0, "The power of poly decay.")
  define("integer", "num_train_steps", 125000, "Number of training steps.")
  define("integer", "num_warmup_steps", 3125, "Number of warmup steps.")
  define("integer", "start_warmup_step", 0, "The starting step of warmup.")
  define("integer", "save_checkpoints_steps", 5000, "How often to save the model checkpoint.")
  define("integer", "max_eval_steps", 100, "Maximum number of eval steps.")
  define("bool", "init_from_group0", False,
         "Whether to initialize parameters of other groups from group 0.")
  define("integer", "masked_lm_budget", 0,
         "If > 0, the reader reads token_boundary for on-the-fly masking, which is not implemented "
         "(the original fails too); must be 0.")
  define("bool", "eval_all_checkpoints", False,
         "With --do_eval, evaluate every checkpoint kept in --output_dir (ascending steps) instead of "
         "only the latest, like the original's evaluation loop over a training run (new).")


class PretrainingTask(trainer.Task):
  """ALBERT with the masked-LM and sentence-order heads; loss = MLM loss + SOP loss (§2.8)."""

  def __init__(self, config, compute_dtype=tf.float32):
    self.config, self.compute_dtype = config, compute_dtype
    self.model = None

  def build(self):
    self.model = modeling.AlbertPretrainingModel(self.config, self.compute_dtype)

  def named_variables(self):
    return self.model.named_variables()

  def _forward(self, features, training):
    return self.model(features["input_ids"], features["input_mask"], features["segment_ids"],
                      features["masked_lm_positions"], training=training)

  def compute_loss(self, features, training):
    outputs = self._forward(features, training)
    return self.model.compute_loss(outputs, features["masked_lm_ids"], features["masked_lm_weights"],
                                   features["next_sentence_labels"])

  def eval_step(self, features):
    """The original's eval metrics as (weighted sum, weight) pairs, plus the total `loss` per batch."""
    outputs = self._forward(features, training=False)
    mlm_ids = tf.reshape(features["masked_lm_ids"], [-1])
    mlm_weights = tf.reshape(tf.cast(features["masked_lm_weights"], tf.float32), [-1])
    sop_labels = tf.reshape(features["next_sentence_labels"], [-1])
    mlm_loss, mlm_per_prediction = modeling.masked_lm_loss(outputs.masked_lm_logits, mlm_ids, mlm_weights)
    sop_loss, sop_per_example = modeling.sentence_order_loss(outputs.sentence_order_logits, sop_labels)
    mlm_correct = _correct(outputs.masked_lm_logits, mlm_ids)
    sop_correct = _correct(outputs.sentence_order_logits, sop_labels)
    mlm_total = tf.reduce_sum(mlm_weights)
    examples = tf.cast(tf.size(sop_labels), tf.float32)
    return {
        "masked_lm_accuracy": (tf.reduce_sum(mlm_weights * mlm_correct), mlm_total),
        "masked_lm_loss": (tf.reduce_sum(mlm_weights * mlm_per_prediction), mlm_total),
        "sentence_order_accuracy": (tf.reduce_sum(sop_correct), examples),
        "sentence_order_loss": (tf.reduce_sum(sop_per_example), examples),
        "loss": (mlm_loss + sop_loss, tf.constant(1.0)),
    }


def _correct(logits, labels):
  """1.0 where the argmax of the logits is the label, else 0.0."""
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.float32)


# ---- input ----

def feature_spec(max_seq_length, max_predictions_per_seq):
  """The §5.1 features run_pretraining reads (token_boundary is only for on-the-fly masking)."""
  sequence = tf.io.FixedLenFeature([max_seq_length], tf.int64)
  predictions = tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64)
  return {
      "input_ids": sequence,
      "input_mask": sequence,
      "segment_ids": sequence,
      "masked_lm_positions": predictions,
      "masked_lm_ids": predictions,
      "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
      "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
  }


def expand_input_files(input_file):
  """The files named by `--input_file` (comma-separated globs), in order, without duplicates."""
  if not input_file:
    raise UserError("--input_file is required")
  files = []
  for pattern in (p.strip() for p in input_file.split(",")):
    if not pattern:
      continue
    matches = sorted(tf.io.gfile.glob(pattern))
    if not matches:
      raise UserError(f"--input_file: no file matches {pattern}")
    files.extend(m for m in matches if m not in files)
  if not files:
    raise UserError(f"--input_file: no file named in {input_file!r}")
  return files


def check_input_data(files, max_seq_length, max_predictions_per_seq, vocab_size):
  """Reads the first record and checks it against the flags and the config, so a mismatch is one clear
  line instead of a parse error deep inside training. Returns the file the record came from.
  """
  for path in files:
    try:
      record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as error:
      raise UserError(f"--input_file: {path} is not a readable TFRecord file: {_first_line(error)}")
    if record is None:
      continue
    example = _parse_example(path, record.numpy())
    _check_lengths(path, example, max_seq_length, max_predictions_per_seq)
    largest_id = max(example["input_ids"].int64_list.value)
    if largest_id >= vocab_size:
      raise UserError(f"--input_file: {path} holds token id {largest_id}, beyond vocab_size={vocab_size} "
                      "of --albert_config_file; was the data made with another vocabulary?")
    return path
  raise UserError(f"--input_file: the {len(files)} file(s) hold no records")


def _parse_example(path, serialized):
  try:
    features = tf.train.Example.FromString(serialized).features.feature
  except Exception as error:  # protobuf's DecodeError has no stable import path
    raise UserError(f"--input_file: {path} does not hold tf.train.Example records: {error}")
  missing = [key for key in feature_spec(1, 1) if key not in features]
  if missing:
    raise UserError(f"--input_file: {path} lacks the pretraining features {', '.join(missing)}; was it "
                    "written by create_pretraining_data?")
  return features


def _check_lengths(path, example, max_seq_length, max_predictions_per_seq):
  seq_length = len(example["input_ids"].int64_list.value)
  if seq_length != max_seq_length:
    raise UserError(f"--max_seq_length={max_seq_length} does not match the data: {path} has sequences "
                    f"of length {seq_length}")
  slots = len(example["masked_lm_positions"].int64_list.value)
  if slots != max_predictions_per_seq:
    hint = (" (data made with --do_permutation has twice the slots: pass the doubled value)"
            if slots == 2 * max_predictions_per_seq else "")
    raise UserError(f"--max_predictions_per_seq={max_predictions_per_seq} does not match the data: {path} "
                    f"has {slots} prediction slots{hint}")


def _first_line(error):
  return (getattr(error, "message", "") or str(error)).strip().splitlines()[0]


def input_fn_builder(files, max_seq_length, max_predictions_per_seq, batch_size, is_training, seed=None):
  """A `dataset_fn(input_context=None)` over pretraining TFRecords (§5.5); `batch_size` is global.

  Training repeats and shuffles the file list, interleaves up to 4 files in non-deterministic order and
  shuffles records (buffer 100); several input pipelines split the files when there are enough of them.
  Evaluation reads the files in order, repeated. Batches drop their remainder; ints arrive as int32.
  """
  spec = feature_spec(max_seq_length, max_predictions_per_seq)

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    return {name: value if value.dtype == tf.float32 else tf.cast(value, tf.int32)
            for name, value in parsed.items()}

  def dataset_fn(input_context=None):
    per_replica_batch, pipelines, pipeline_id = batch_size, 1, 0
    if input_context is not None:
      per_replica_batch = input_context.get_per_replica_batch_size(batch_size)
      pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if is_training:
      dataset = _training_records(files, pipelines, pipeline_id, seed)
    else:
      dataset = tf.data.TFRecordDataset(files)
      if pipelines > 1:
        dataset = dataset.shard(pipelines, pipeline_id)
      dataset = dataset.repeat()
    dataset = dataset.batch(per_replica_batch, drop_remainder=True)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  return dataset_fn


def _training_records(files, pipelines, pipeline_id, seed):
  """Shuffled, endless records; with fewer files than pipelines every pipeline reads all files in its
  own random order (as every TPU host did).
  """
  own_files = files[pipeline_id::pipelines] if len(files) >= pipelines else files
  dataset = tf.data.Dataset.from_tensor_slices(own_files).repeat().shuffle(len(own_files), seed=seed)
  dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(MAX_INTERLEAVE_FILES, len(own_files)),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  return dataset.shuffle(SHUFFLE_BUFFER, seed=seed)


# ---- the job ----

def num_of_group(config, init_from_group0):
  """Groups `init_checkpoint` fills (§2.9): 1, or with init_from_group0 every group (every layer when the
  config's net_structure_type > 0). A config without net_structure_type counts as 0 (the original
  crashed: quirk 7).
  """
  if not init_from_group0:
    return 1
  if int(config.extra.get("net_structure_type", 0) or 0) > 0:
    return config.num_hidden_layers
  return config.num_hidden_groups


def _check_flags(fv):
  if not fv.do_train and not fv.do_eval:
    raise UserError("at least one of --do_train or --do_eval must be set")
  if not fv.output_dir:
    raise UserError("--output_dir is required")
  if fv.masked_lm_budget > 0:
    raise UserError(f"--masked_lm_budget={fv.masked_lm_budget}: on-the-fly masking is not implemented "
                    "(the original fails too); use 0 with data masked by create_pretraining_data")
  positive = ["max_predictions_per_seq", "save_checkpoints_steps", "iterations_per_loop"]
  positive += ["train_batch_size", "num_train_steps"] if fv.do_train else []
  positive += ["eval_batch_size", "max_eval_steps"] if fv.do_eval else []
  for name in positive:
    if fv[name].value <= 0:
      raise UserError(f"--{name} must be positive, got {fv[name].value}")
  for name in ("num_warmup_steps", "start_warmup_step"):
    if fv[name].value < 0:
      raise UserError(f"--{name} must be >= 0, got {fv[name].value}")
  if fv.do_train and fv.learning_rate <= 0:
    raise UserError(f"--learning_rate must be positive, got {fv.learning_rate}")
  if fv.max_predictions_per_seq > fv.max_seq_length:
    raise UserError(f"--max_predictions_per_seq={fv.max_predictions_per_seq} exceeds "
                    f"--max_seq_length={fv.max_seq_length}")


def run(fv):
  """The whole run_pretraining job, driven by the flag values `fv`."""
  _check_flags(fv)
  config = AlbertConfig.from_json_file(require_file(fv.albert_config_file, "albert_config_file"))
  shared_flags.validate_seq_length(fv.max_seq_length, config)
  files = expand_input_files(fv.input_file)
  check_input_data(files, fv.max_seq_length, fv.max_predictions_per_seq, config.vocab_size)
  logging.info("pretraining input: %d file(s): %s%s", len(files), ", ".join(files[:5]),
               " ..." if len(files) > 5 else "")
  os.makedirs(fv.output_dir, exist_ok=True)
  strategy = shared_flags.strategy_from_flags(fv)
  if fv.do_eval and fv.eval_batch_size % strategy.num_replicas_in_sync:
    raise UserError(f"--eval_batch_size={fv.eval_batch_size} is not divisible by the "
                    f"{strategy.num_replicas_in_sync} replicas")
  task = PretrainingTask(config, trainer.compute_dtype_for(fv.precision))
  pretrainer = shared_flags.make_trainer(fv, task, strategy, num_train_steps=fv.num_train_steps,
                                         num_warmup_steps=fv.num_warmup_steps)
  if fv.do_train:
    pretrainer.initialize(fv.init_checkpoint, num_of_group=num_of_group(config, fv.init_from_group0))
    train_input = input_fn_builder(files, fv.max_seq_length, fv.max_predictions_per_seq,
                                   fv.train_batch_size, is_training=True)
    pretrainer.train(train_input, fv.train_batch_size)
  if fv.do_eval:
    return evaluate(fv, pretrainer, files, distribute.is_chief(strategy))
  return None


def evaluate(fv, pretrainer, files, is_chief):
  """Scores the latest (or every kept) checkpoint of output_dir, else `--init_checkpoint`; keeps the best
  by masked_lm_accuracy as model.ckpt-best and writes eval_results.txt/.json (chief only).
  """
  eval_input = input_fn_builder(files, fv.max_seq_length, fv.max_predictions_per_seq, fv.eval_batch_size,
                                is_training=False)
  tracker = eval_results.BestCheckpointTracker(fv.output_dir, key=BEST_METRIC, copy_best=is_chief)
  candidates = eval_results.checkpoints_to_evaluate(fv.output_dir, fv.eval_all_checkpoints)
  if candidates:
    for prefix in candidates:
      pretrainer.restore_for_inference(checkpoint=prefix)
      _score(pretrainer, eval_input, fv.max_eval_steps, tracker, prefix)
  elif fv.init_checkpoint:
    tracker.copy_best = False
    prefix = pretrainer.restore_for_inference(init_checkpoint=fv.init_checkpoint)
    _score(pretrainer, eval_input, fv.max_eval_steps, tracker, prefix)
  else:
    raise UserError(f"--do_eval: no checkpoint in --output_dir ({fv.output_dir}) and no --init_checkpoint")
  if is_chief:
    return tracker.write()
  return None


def _score(pretrainer, eval_input, max_eval_steps, tracker, prefix):
  scores = pretrainer.evaluate(eval_input, steps=max_eval_steps)
  logging.info("eval of %s: %s", prefix, ", ".join(f"{name} = {value}" for name, value in sorted(scores.items())))
  tracker.add(prefix, pretrainer.global_step, scores)


def main(argv):
  del argv
  run(flags.FLAGS)


if __name__ == "__main__":
  define_flags()
  run_main(main)
