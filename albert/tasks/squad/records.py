"""SQuAD feature files: the TFRecords with the original keys, the per-window "left" file, their caches.

The train file holds each window's inputs and labels; the predict file its inputs, and the "left" file
(JSON lines, one per window) what post-processing needs to map positions back to text. Records are
encoded in the conversion workers (`albert.io.tfrecord`), with the parent adding only the `unique_ids`
entry it numbers. Both files are caches (`albert.io.feature_cache`): reused only when their sidecar
matches the window flags, the tokenizer and the source file.

TensorFlow is imported only where records are written or read, never at import: the conversion
workers import this module and stay light.
"""

import dataclasses
import json
import os
import random
from typing import NamedTuple

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError, require_file
from albert.io import structure, tfrecord
from albert.io.feature_cache import FeatureCache
from albert.io.files import text_lines
from albert.tasks.squad import windows
from albert.tasks.squad.examples import read_squad_examples

DEFAULT_TRAIN_FEATURE_FILE = "train.tf_record"
DEFAULT_PREDICT_FEATURE_FILE = "predict.tf_record"
DEFAULT_PREDICT_FEATURE_LEFT_FILE = "predict_left.jsonl"
INPUT_KEYS = ("input_ids", "input_mask", "segment_ids", "p_mask")
LABEL_KEYS = ("start_positions", "end_positions", "is_impossible")
UNIQUE_ID_KEY = "unique_ids"
# The unique_id of the copies that complete a length bucket's last prediction batch (real ids are >= 0).
FILLER_UNIQUE_ID = -1
# The workers encode every entry but `unique_ids`, which the parent appends: that keeps the entries in
# key order (albert.io.tfrecord) only because it sorts after every other key.
assert max(INPUT_KEYS + LABEL_KEYS) < UNIQUE_ID_KEY


# ---- records ----

def encode_feature_body(feature, is_training):
  """The Example map entries of a feature except `unique_ids`; labels only for the train file."""
  values = {"input_ids": feature.input_ids, "input_mask": feature.input_mask,
            "segment_ids": feature.segment_ids, "p_mask": feature.p_mask}
  if is_training:
    values.update(start_positions=[feature.start_position], end_positions=[feature.end_position],
                  is_impossible=[int(feature.is_impossible)])
  return tfrecord.feature_entries(values)


def encode_example(unique_id, body):
  """A serialized tf.train.Example: the feature's entries followed by its `unique_ids` entry."""
  return tfrecord.example_from_entries(body + tfrecord.feature_entry(UNIQUE_ID_KEY, [unique_id]))


class _EncodedFeature(NamedTuple):
  """A feature as written: record entries and meta JSON, both still without the unique_id."""
  record_body: bytes
  meta_json_tail: str | None  # the FeatureMeta JSON after "{" without unique_id; predict only


def _meta_json_tail(feature):
  meta = feature.meta()
  del meta.unique_id
  return json.dumps(vars(meta), separators=(",", ":"))[1:]  # vars(), not asdict(): no deep copy


def _meta_line(unique_id, json_tail):
  return f'{{"unique_id":{unique_id},{json_tail}\n'


def _build_and_encode(builder, task):
  """`builder.build`, with every feature encoded for the files (done in the workers)."""
  features, outcome = builder.build(*task)
  return [_EncodedFeature(encode_feature_body(f, builder.is_training),
                          None if builder.is_training else _meta_json_tail(f))
          for f in features], outcome


class FeatureWriter(tfrecord.TFRecordWriter):
  """Writes SquadFeatures to a TFRecord file with the original keys (docs/compatibility.md §5.2),
  atomically: the file appears on `close()` (or a clean exit from the `with` block)."""

  def __init__(self, path, is_training):
    super().__init__(path)
    self.is_training = is_training

  @property
  def num_features(self):
    return self.count

  def process_feature(self, feature):
    self.write_encoded(feature.unique_id, encode_feature_body(feature, self.is_training))

  def write_encoded(self, unique_id, record_body):
    self.write(encode_example(unique_id, record_body))


def write_feature_metas(path, metas):
  """Writes FeatureMetas one JSON object per line, atomically; returns how many."""
  count = 0
  with fileio.atomic_open(path) as f:
    for meta in metas:
      f.write(json.dumps(vars(meta), separators=(",", ":")))  # vars(), not asdict(): no deep copy
      f.write("\n")
      count += 1
  return count


def read_feature_metas(path):
  """Yields the FeatureMetas of a predict "left" file; a malformed line is a UserError naming it."""
  if not os.path.isfile(path):
    raise UserError(f"--predict_feature_left_file: file not found: {path}")
  return _parse_feature_metas(path)


def _parse_feature_metas(path):
  fields = [field.name for field in dataclasses.fields(windows.FeatureMeta)]
  for line_number, line in enumerate(text_lines(path), 1):
    meta = structure.parse(line, f"feature meta file {path} line {line_number}")
    yield windows.FeatureMeta(**{name: meta.get(name) for name in fields})


# ---- reading ----

def feature_spec(seq_length, is_training, use_p_mask=True):
  """tf.io parsing spec of the TFRecord keys (docs/compatibility.md §5.2); v1 runs do not read `p_mask`."""
  import tensorflow as tf
  spec = {UNIQUE_ID_KEY: tf.io.FixedLenFeature([], tf.int64)}
  names = INPUT_KEYS if use_p_mask else INPUT_KEYS[:-1]
  spec.update({name: tf.io.FixedLenFeature([seq_length], tf.int64) for name in names})
  if is_training:
    spec.update({name: tf.io.FixedLenFeature([], tf.int64) for name in LABEL_KEYS})
  return spec


def input_fn_builder(input_file, seq_length, is_training, drop_remainder, batch_size, use_p_mask=True,
                     seed=None, bucketing=None):
  """A `dataset_fn(input_context=None)` for `strategy.distribute_datasets_from_function`.

  `batch_size` is global; with an InputContext each input pipeline reads its own shard and batches
  per replica. Training repeats and shuffles (buffer 100) like the original; prediction keeps the
  file order. Integer features arrive as int32.

  A `albert.io.input_pipeline.Bucketing` groups windows by length: in training the mega-batches of
  --group_by_length; in prediction batches of one length bucket each, out of file order and with
  filler windows (unique_id FILLER_UNIQUE_ID) completing each bucket's last batch. `predict_windows`
  runs such a prediction and drops the fillers.
  """
  import tensorflow as tf
  from albert.io import input_pipeline  # imports TensorFlow, which conversion workers never need
  if not tf.io.gfile.exists(input_file):
    raise UserError(f"SQuAD feature file not found: {input_file}")
  spec = feature_spec(seq_length, is_training, use_p_mask)
  if bucketing is not None and not is_training:
    return input_pipeline.bucketed_dataset_fn(input_file, spec, batch_size, bucketing,
                                              filler={UNIQUE_ID_KEY: FILLER_UNIQUE_ID})
  return input_pipeline.tfrecord_dataset_fn(input_file, spec, batch_size, is_training, drop_remainder, seed,
                                            bucketing)


def predict_windows(trainer, feature_file, seq_length, batch_size, use_p_mask=True, bucketing=None):
  """Yields the model outputs of every window of a predict feature file, one dict per window with its
  `unique_ids` (`trainer.predict` with the trainer's current or restored weights; `trainer` may also be
  an engine with the same `predict`, `albert.inference.onnx_engine.OnnxEngine`).

  Without `bucketing` every window runs padded to `seq_length`, in file order. With a `Bucketing`
  (whose `trim` is set) batches run cut to their windows' length bucket: outputs come in bucket order,
  position outputs (v1 logits) are only as long as the bucket, and post-processing finds them by
  unique_id (`albert.tasks.squad.postprocess`).
  """
  bucketing = bucketing if bucketing is not None and bucketing.trim else None
  if bucketing is not None:
    # Fillers complete each bucket's batch to the size the trainer runs: a multiple of the replicas.
    replicas = trainer.strategy.num_replicas_in_sync if hasattr(trainer, "strategy") else 1
    batch_size = -(-batch_size // replicas) * replicas
  dataset_fn = input_fn_builder(feature_file, seq_length, is_training=False, drop_remainder=False,
                                batch_size=batch_size, use_p_mask=use_p_mask, bucketing=bucketing)
  quiet = _RetracingNoticeFilter() if bucketing is not None else None
  try:
    for result in trainer.predict(dataset_fn, batch_size):
      if int(result[UNIQUE_ID_KEY]) != FILLER_UNIQUE_ID:
        yield result
  finally:
    if quiet is not None:
      quiet.remove()


class _RetracingNoticeFilter:
  """Keeps TensorFlow's "triggered tf.function retracing" warning off while buckets are predicted: the
  prediction step is traced once per bucket length, as intended."""

  def __init__(self):
    import tensorflow as tf
    self.logger = tf.get_logger()
    self.logger.addFilter(self)

  def filter(self, record):
    return "triggered tf.function retracing" not in record.getMessage()

  def remove(self):
    self.logger.removeFilter(self)


# ---- writing and caching ----

def write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training,
                   feature_file, feature_left_file=None, num_workers=1, log_every_seconds=5.0):
  """Converts and writes in one streaming pass: the TFRecord, plus the left file when predicting.

  The files are the same as writing `convert_examples_to_features` through FeatureWriter and
  write_feature_metas, but the workers also encode the records, so more workers help. Returns
  the ConversionStats.
  """
  if is_training == (feature_left_file is not None):
    raise ValueError("a feature left file is written exactly when predicting")
  builder = windows.make_builder(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
  stats = windows.ConversionStats()
  encoded = windows.numbered_features(windows.as_list(examples), builder, _build_and_encode, num_workers, stats,
                                      log_every_seconds)
  with FeatureWriter(feature_file, is_training) as writer:
    if is_training:
      for unique_id, feature in encoded:
        writer.write_encoded(unique_id, feature.record_body)
    else:
      with fileio.atomic_open(feature_left_file) as left:
        for unique_id, feature in encoded:
          writer.write_encoded(unique_id, feature.record_body)
          left.write(_meta_line(unique_id, feature.meta_json_tail))
  logging.info("wrote %d features to %s%s", writer.count, feature_file,
               f" and {feature_left_file}" if feature_left_file else "")
  return stats


def feature_path(path, output_dir, default_name, flag_name):
  """`path` if given, else `<output_dir>/<default_name>`."""
  if path:
    return path
  if not output_dir:
    raise UserError(f"--{flag_name} or --output_dir is required")
  return os.path.join(output_dir, default_name)


def train_feature_path(train_feature_file, output_dir):
  """The train TFRecord that `prepare_train_features` writes or reuses (and training then reads)."""
  return feature_path(train_feature_file, output_dir, DEFAULT_TRAIN_FEATURE_FILE, "train_feature_file")


def _cache(path, flag_name, tokenizer, window_settings, source, source_flag, companions=()):
  return FeatureCache(path, flag_name, window_settings, tokenizer.fingerprint, [source] if source else None,
                      companions, source_flag)


def _window_settings(max_seq_length, doc_stride, max_query_length):
  return {"max_seq_length": max_seq_length, "doc_stride": doc_stride, "max_query_length": max_query_length}


def _conversion_info(stats):
  return {"count": stats.features, "num_examples": stats.examples, "num_features": stats.features,
          "conversion": stats.as_dict()}


def prepare_train_features(train_file, train_feature_file, tokenizer, max_seq_length, doc_stride,
                           max_query_length, output_dir=None, num_workers=1):
  """Writes (or reuses) the train TFRecord; returns the number of training EXAMPLES
  (docs/compatibility.md §6.3.7), which the step count is computed from.

  Examples are shuffled with the original's seed before they are written.
  """
  windows.check_window_flags(max_seq_length, doc_stride, max_query_length)
  feature_file = train_feature_path(train_feature_file, output_dir)
  if train_file:
    require_file(train_file, "train_file")
  cache = _cache(feature_file, "train_feature_file", tokenizer,
                 _window_settings(max_seq_length, doc_stride, max_query_length), train_file, "train_file")

  def build():
    from albert.io.input_pipeline import SHUFFLE_SEED
    examples = read_squad_examples(require_file(train_file, "train_file"), is_training=True).examples
    random.Random(SHUFFLE_SEED).shuffle(examples)
    return _conversion_info(write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, True,
                                           feature_file, num_workers=num_workers))

  return cache.prepare(build)["num_examples"]


class PredictFeatures(NamedTuple):
  examples: list
  feature_file: str
  feature_left_file: str
  num_features: int


def prepare_predict_features(predict_file, predict_feature_file, predict_feature_left_file, tokenizer,
                             max_seq_length, doc_stride, max_query_length, output_dir=None, num_workers=1):
  """Reads the predict examples; writes the TFRecord and the left file, or reuses them as a pair."""
  windows.check_window_flags(max_seq_length, doc_stride, max_query_length)
  feature_file = feature_path(predict_feature_file, output_dir, DEFAULT_PREDICT_FEATURE_FILE,
                              "predict_feature_file")
  left_file = feature_path(predict_feature_left_file, output_dir, DEFAULT_PREDICT_FEATURE_LEFT_FILE,
                           "predict_feature_left_file")
  examples = read_squad_examples(require_file(predict_file, "predict_file"), is_training=False).examples
  cache = _cache(feature_file, "predict_feature_file", tokenizer,
                 _window_settings(max_seq_length, doc_stride, max_query_length), predict_file, "predict_file",
                 companions=(left_file,))

  def build():
    return _conversion_info(write_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                           False, feature_file, left_file, num_workers))

  info = cache.prepare(build)
  return PredictFeatures(examples, feature_file, left_file, info["num_features"])
