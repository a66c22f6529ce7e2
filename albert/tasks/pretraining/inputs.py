"""Pretraining input: the TFRecords of `create_pretraining_data`, checked against the flags, as tf.data.

The features are the original's (docs/compatibility.md §5.1); `token_boundary` is written but not read
(it served on-the-fly masking, which the original never finished either). The pipeline follows §5.5.
"""

import json

import tensorflow as tf

from albert.core.errors import UserError, first_line
from albert.io import feature_cache, input_pipeline
from albert.io.files import expand_globs

MAX_INTERLEAVE_FILES = 4


def feature_spec(max_seq_length, max_predictions_per_seq):
  """The features run_pretraining reads (token_boundary is only for on-the-fly masking)."""
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
  return expand_globs(input_file, "input_file")


def count_input_records(files):
  """Reads every input file whole (framing, CRCs, and the count its create_pretraining_data sidecar
  recorded, when there is one) and returns the total record count; a damaged file is one UserError
  line naming it, before training starts rather than as a DataLossError (or silently fewer records)
  mid-run."""
  total = 0
  for path in files:
    count, problem = feature_cache.check_record_file(path, _recorded_count(path))
    if problem:
      raise UserError(f"--input_file: {path} {problem}; write it again with create_pretraining_data")
    total += count
  return total


def _recorded_count(path):
  """The record count the sidecar of `path` recorded, or None without a readable sidecar."""
  try:
    with open(feature_cache.sidecar_path(path), encoding="utf-8") as f:
      return int(json.load(f)["count"])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def check_input_data(files, max_seq_length, max_predictions_per_seq, vocab_size):
  """Reads the first record and checks it against the flags and the config, so a mismatch is one clear
  line instead of a parse error deep inside training. Returns the file the record came from.
  """
  for path in files:
    try:
      record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as error:
      raise UserError(f"--input_file: {path} is not a readable TFRecord file: {first_line(error)}") from None
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


def input_fn_builder(files, max_seq_length, max_predictions_per_seq, batch_size, is_training, seed=None):
  """A `dataset_fn(input_context=None)` over pretraining TFRecords; `batch_size` is global.

  Training repeats and shuffles the file list, interleaves up to 4 files in non-deterministic order and
  shuffles records (buffer 100); several input pipelines split the files when there are enough of them.
  Evaluation reads the files in order, repeated. Batches drop their remainder; ints arrive as int32.
  """
  spec = feature_spec(max_seq_length, max_predictions_per_seq)

  def dataset_fn(input_context=None):
    pipelines, pipeline_id = input_pipeline.pipeline_position(input_context)
    if is_training:
      dataset = _training_records(files, pipelines, pipeline_id, seed)
    else:
      dataset = tf.data.TFRecordDataset(files)
      if pipelines > 1:
        dataset = dataset.shard(pipelines, pipeline_id)
      dataset = dataset.repeat()
    batch_size_here = input_pipeline.per_replica_batch_size(batch_size, input_context)
    return input_pipeline.batched_and_parsed(dataset, spec, batch_size_here, drop_remainder=True)

  return dataset_fn


def _training_records(files, pipelines, pipeline_id, seed):
  """Shuffled, endless records; with fewer files than pipelines every pipeline reads all files in its
  own random order (as every TPU host did).
  """
  own_files = files[pipeline_id::pipelines] if len(files) >= pipelines else files
  dataset = tf.data.Dataset.from_tensor_slices(own_files).repeat().shuffle(len(own_files), seed=seed)
  dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(MAX_INTERLEAVE_FILES, len(own_files)),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  return dataset.shuffle(input_pipeline.SHUFFLE_BUFFER, seed=seed)
