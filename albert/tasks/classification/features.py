"""Classification features (GLUE and RACE): ids, masks, labels, their TFRecords, caches and pipeline.

A GLUE example becomes `[CLS] a [SEP] (b [SEP])` zero-padded to max_seq_length; a RACE question four
such sequences concatenated (`albert.tasks.classification.race`). Records carry the original keys
(docs/compatibility.md §5.3-5.4): `input_ids`, `input_mask`, `segment_ids`, `label_ids` (a float for
the STS-B regression) and `is_real_example`.
"""

import dataclasses

import tensorflow as tf

from albert.io import input_pipeline, tfrecord
from albert.io.feature_cache import FeatureCache
from albert.text.sentencepiece import preprocess_text
from albert.training.task import padding_trim_settings  # noqa: F401  (shared by every task; kept here for callers)

INPUT_KEYS = ("input_ids", "input_mask", "segment_ids")


def text_normalizer(tokenizer):
  """The original `process_text`: SentencePiece input is preprocessed (and lowercased per
  do_lower_case) when read; WordPiece input is left to the tokenizer."""
  if tokenizer.sp_model is None:
    return lambda text: text
  return lambda text: preprocess_text(text, lower=tokenizer.do_lower_case)


@dataclasses.dataclass
class InputFeatures:
  input_ids: list
  input_mask: list
  segment_ids: list
  label_id: int | float
  is_real_example: bool = True


def truncate_pair(tokens_a, tokens_b, max_length):
  """Pops tokens from the end of the longer list (the second on ties) until both fit, in place."""
  while len(tokens_a) + len(tokens_b) > max_length:
    (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def pack_ids(tokenizer, tokens_a, tokens_b, max_seq_length):
  """[CLS] a [SEP] (b [SEP] unless tokens_b is None) as zero-padded (input_ids, input_mask,
  segment_ids) of max_seq_length."""
  tokens = ["[CLS]", *tokens_a, "[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b is not None:
    tokens += [*tokens_b, "[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  padding = [0] * (max_seq_length - len(input_ids))
  return input_ids + padding, [1] * len(input_ids) + padding, segment_ids + padding


def convert_example(example, task, max_seq_length, tokenizer):
  """One example's features (docs/compatibility.md §11.1): pairs truncated to S-3, single sentences to S-2."""
  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = tokenizer.tokenize(example.text_b) if example.text_b is not None else None
  if tokens_b is not None:
    truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  # Like the original, a second text without tokens adds no second [SEP].
  input_ids, input_mask, segment_ids = pack_ids(tokenizer, tokens_a, tokens_b or None, max_seq_length)
  label_id = float(example.label) if task.is_regression else task.labels.index(example.label)
  return InputFeatures(input_ids, input_mask, segment_ids, label_id)


def serialize_features(features):
  """A serialized tf.train.Example with the original keys; a float label is stored as a float feature."""
  return tfrecord.encode_example({
      "input_ids": features.input_ids, "input_mask": features.input_mask, "segment_ids": features.segment_ids,
      "label_ids": [features.label_id], "is_real_example": [int(features.is_real_example)]})


def prepare_feature_file(path, flag_name, build_records, settings, tokenizer, sources, source_flag=None):
  """Writes the records `build_records()` yields to `path`, unless a cache there matches the settings,
  the tokenizer and the source files (`albert.io.feature_cache`). Returns the path."""

  def build():
    return {"count": tfrecord.write_records(path, build_records())}

  FeatureCache(path, flag_name, settings, tokenizer.fingerprint, sources, source_flag=source_flag).prepare(build)
  return path


def input_fn_builder(input_file, record_length, is_training, batch_size, float_label=False, seed=None):
  """A `dataset_fn(input_context=None)` over a feature file (docs/compatibility.md §5.5): training
  repeats, shuffles (buffer 100) and drops the remainder; evaluation keeps the order and every example.
  """
  spec = {key: tf.io.FixedLenFeature([record_length], tf.int64) for key in INPUT_KEYS}
  spec["label_ids"] = tf.io.FixedLenFeature([], tf.float32 if float_label else tf.int64)
  spec["is_real_example"] = tf.io.FixedLenFeature([], tf.int64)
  return input_pipeline.tfrecord_dataset_fn(input_file, spec, batch_size, is_training, is_training, seed)

