"""The one tf.train.Example encoder: byte-identical to TensorFlow on every feature set the suite writes."""

import os

import numpy as np
import pytest
import tensorflow as tf

from albert.io import tfrecord
from albert.tasks.squad import records as squad_records

# The key sets the suite writes (SQuAD train/predict, classifier and RACE, pretraining), by kind of values.
FEATURE_SETS = {
    "squad_train": {"input_ids": "ids", "input_mask": "mask", "segment_ids": "mask", "p_mask": "mask",
                    "start_positions": "position", "end_positions": "position", "is_impossible": "mask",
                    "unique_ids": "unique_id"},
    "squad_predict": {"input_ids": "ids", "input_mask": "mask", "segment_ids": "mask", "p_mask": "mask",
                      "unique_ids": "unique_id"},
    "classifier": {"input_ids": "ids", "input_mask": "mask", "segment_ids": "mask", "label_ids": "label",
                   "is_real_example": "mask"},
    "regression": {"input_ids": "ids", "input_mask": "mask", "segment_ids": "mask", "label_ids": "score",
                   "is_real_example": "mask"},
    "pretraining": {"input_ids": "ids", "input_mask": "mask", "segment_ids": "mask", "token_boundary": "mask",
                    "masked_lm_positions": "position", "masked_lm_ids": "ids", "masked_lm_weights": "weights",
                    "next_sentence_labels": "mask"},
}


def random_values(kind, rng):
  length = int(rng.integers(1, 40))
  if kind == "ids":  # numpy ids of a vocabulary, small and large (varints of 1 to 3 bytes)
    return rng.integers(0, rng.choice([120, 30000, 300000]), length).astype(np.int32)
  if kind == "mask":
    return rng.integers(0, 2, length).tolist()
  if kind == "position":
    return rng.integers(0, 512, length).tolist()
  if kind == "unique_id":
    return [int(rng.integers(1000000000, 1000100000))]
  if kind == "label":
    return [int(rng.integers(0, 3))]
  if kind == "score":
    return [float(rng.uniform(0, 5))]
  return [1.0] * int(rng.integers(0, length)) + [0.0] * length  # weights: ones, then zero padding


def reference(features):
  """What TensorFlow itself serializes (deterministic: the map's keys in sorted order)."""
  example = tf.train.Example()
  for key, values in features.items():
    feature = example.features.feature[key]
    if tfrecord._is_float(values):
      feature.float_list.value.extend(values)
    else:
      feature.int64_list.value.extend(int(v) for v in values)
  return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_every_feature_set_encodes_like_tensorflow(name):
  rng = np.random.default_rng(len(name))
  for _ in range(50):
    features = {key: random_values(kind, rng) for key, kind in FEATURE_SETS[name].items()}
    assert tfrecord.encode_example(features) == reference(features)


def test_edge_values_encode_like_tensorflow():
  features = {"empty_ints": [], "empty_floats": np.zeros(0, np.float32), "negative": [-1, -2**63, 5],
              "big": [2**63 - 1, 2**40], "floats": np.asarray([0.5, -3.25, 1e30], np.float32)}
  assert tfrecord.encode_example(features) == reference(features)


def test_squad_records_add_the_unique_id_entry_in_key_order():
  rng = np.random.default_rng(7)
  values = {key: random_values(kind, rng) for key, kind in FEATURE_SETS["squad_train"].items()}
  unique_id = values.pop("unique_ids")[0]
  body = tfrecord.feature_entries(values)  # what a conversion worker encodes
  assert squad_records.encode_example(unique_id, body) == reference({**values, "unique_ids": [unique_id]})


def test_writer_publishes_only_complete_files(tmp_path):
  path = str(tmp_path / "out.tf_record")
  assert tfrecord.write_records(path, [b"a", b"bc"]) == 2
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == [b"a", b"bc"]
  with pytest.raises(RuntimeError):
    with tfrecord.TFRecordWriter(path) as writer:
      writer.write(b"new")
      raise RuntimeError("interrupted")
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == [b"a", b"bc"]  # the old file is intact
  assert os.listdir(tmp_path) == ["out.tf_record"]  # and no temporary file is left
