"""run_squad_v1 --export_dir end to end: the SavedModel (and TFLite file) reproduce the run's n-best logits."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, run_cli, shared_path, subset_file

pytestmark = pytest.mark.slow

SEQ = 128
TINY = dict(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
            num_attention_heads=4, intermediate_size=64, inner_group_num=1, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=SEQ,
            type_vocab_size=2, initializer_range=0.02)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, spm_model_file):
  work = tmp_path_factory.mktemp("squad_export")
  config_file = work / "albert_config.json"
  config_file.write_text(json.dumps(TINY))
  data_file = subset_file(shared_path("squad", "dev-v1.1-sample.json"), work / "subset.json", 30)
  common = [f"--albert_config_file={config_file}", f"--spm_model_file={spm_model_file}",
            f"--output_dir={work / 'out'}", f"--max_seq_length={SEQ}", "--doc_stride=64", "--max_query_length=32"]
  run_cli("albert.run_squad_v1", *common, f"--train_file={data_file}", f"--predict_file={data_file}", "--do_train", "--do_predict",
          "--train_batch_size=8", "--num_train_epochs=2", "--learning_rate=1e-3", "--seed=1",
          f"--export_dir={work / 'export'}")
  return dict(work=work, common=common, out=work / "out", export=work / "export")


def predict_features(output_dir):
  """The predict.tf_record windows as int32 arrays, parsed with the runner's own TFRecord keys."""
  from albert import squad_utils
  spec = squad_utils.feature_spec(SEQ, is_training=False, use_p_mask=False)
  records = tf.data.TFRecordDataset(str(output_dir / "predict.tf_record")).batch(1000)
  parsed = tf.io.parse_example(next(iter(records)), spec)
  return {key: tf.cast(parsed[key], tf.int32).numpy() for key in ("input_ids", "input_mask", "segment_ids")}


def assert_nbest_logits_come_from(start_logits, end_logits, nbest, max_answer_length=30):
  """Every n-best span's (start, end) raw logits must be a valid span's pair of logits in some window."""
  checked = 0
  for question, entries in nbest.items():
    for entry in entries:
      if entry["text"] == "empty":
        continue
      start_hits = np.isclose(start_logits, entry["start_log_prob"], atol=1e-4, rtol=0)
      end_hits = np.isclose(end_logits, entry["end_log_prob"], atol=1e-4, rtol=0)
      found = any(start <= end < start + max_answer_length
                  for window in range(len(start_logits))
                  for start in np.flatnonzero(start_hits[window]) for end in np.flatnonzero(end_hits[window]))
      assert found, (question, entry)
      checked += 1
  assert checked >= 30


def test_saved_model_lands_under_a_timestamp_with_the_serving_signature(exported):
  (saved_model,) = glob.glob(str(exported["export"] / "saved_model" / "*"))
  assert os.path.basename(saved_model).isdigit()
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  inputs = signature.structured_input_signature[1]
  assert sorted(inputs) == ["input_ids", "input_mask", "segment_ids"]
  for spec in inputs.values():
    assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, SEQ]
  assert sorted(signature.structured_outputs) == ["end_logits", "start_logits"]
  assert not [name for name in os.listdir(exported["export"] / "saved_model") if name.startswith(".")]


def test_saved_model_reproduces_the_runs_nbest_logits(exported):
  (saved_model,) = glob.glob(str(exported["export"] / "saved_model" / "*"))
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  features = predict_features(exported["out"])
  outputs = signature(**{key: tf.constant(value) for key, value in features.items()})
  start_logits, end_logits = outputs["start_logits"].numpy(), outputs["end_logits"].numpy()
  assert start_logits.shape == end_logits.shape == (len(features["input_ids"]), SEQ)
  nbest = json.loads((exported["out"] / "nbest_predictions.json").read_text())
  assert_nbest_logits_come_from(start_logits, end_logits, nbest)
  # Logits off by 0.5 must fail the same check: the comparison can fail.
  with pytest.raises(AssertionError):
    assert_nbest_logits_come_from(start_logits + 0.5, end_logits, nbest)


def test_tflite_model_gives_the_saved_model_logits(exported):
  (saved_model,) = glob.glob(str(exported["export"] / "saved_model" / "*"))
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  features = {key: value[:2] for key, value in predict_features(exported["out"]).items()}
  expected = signature(**{key: tf.constant(value) for key, value in features.items()})
  interpreter = tf.lite.Interpreter(model_path=str(exported["export"] / "albert_model.tflite"))
  runner = interpreter.get_signature_runner("serving_default")
  outputs = runner(**features)
  for name in ("start_logits", "end_logits"):
    np.testing.assert_allclose(outputs[name], expected[name].numpy(), atol=1e-4)


def test_export_only_run_exports_the_latest_checkpoint(exported):
  run_cli("albert.run_squad_v1", *exported["common"], f"--export_dir={exported['work'] / 'export_only'}")
  (saved_model,) = glob.glob(str(exported["work"] / "export_only" / "saved_model" / "*"))
  assert tf.saved_model.load(saved_model).signatures["serving_default"] is not None


def test_export_only_without_any_checkpoint_is_a_one_line_error(exported, tmp_path):
  common = [arg if not arg.startswith("--output_dir=") else f"--output_dir={tmp_path / 'empty'}"
            for arg in exported["common"]]
  proc = run_cli("albert.run_squad_v1", *common, f"--export_dir={tmp_path / 'export'}", check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "--export_dir" in proc.stderr.strip().splitlines()[-1]
  assert not os.path.exists(tmp_path / "export" / "saved_model") or not os.listdir(tmp_path / "export" / "saved_model")


def test_v2_answer_mask_matches_the_feature_layout():
  from albert.tasks.squad.task import answer_mask
  # [CLS] q q [SEP] d d d [SEP] pad pad: only [CLS] (0) and the document (4..6) are answerable.
  input_mask = tf.constant([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]], tf.int32)
  segment_ids = tf.constant([[0, 0, 0, 0, 1, 1, 1, 1, 0, 0]], tf.int32)
  np.testing.assert_array_equal(answer_mask(input_mask, segment_ids).numpy(),
                                [[0, 1, 1, 1, 0, 0, 0, 1, 1, 1]])


def test_v2_export_rebuilds_the_recorded_p_mask_and_returns_the_beam(tmp_path, spm_model_file):
  from albert import squad_utils
  from albert.tasks.squad.task import answer_mask
  config_file = tmp_path / "albert_config.json"
  config_file.write_text(json.dumps(TINY))
  data_file = subset_file(shared_path("squad", "dev-v2.0-sample.json"), tmp_path / "subset.json", 12)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  proc = subprocess.run(
      [sys.executable, "-m", "albert.run_squad_v2", f"--albert_config_file={config_file}",
       f"--spm_model_file={spm_model_file}", f"--output_dir={tmp_path / 'out'}", f"--max_seq_length={SEQ}",
       "--doc_stride=64", "--max_query_length=32", f"--train_file={data_file}", f"--predict_file={data_file}",
       "--do_train", "--do_predict", "--train_batch_size=8", "--num_train_epochs=1",
       f"--export_dir={tmp_path / 'export'}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  records = tf.data.TFRecordDataset(str(tmp_path / "out" / "predict.tf_record")).batch(1000)
  parsed = tf.io.parse_example(next(iter(records)), squad_utils.feature_spec(SEQ, is_training=False))
  features = {key: tf.cast(value, tf.int32) for key, value in parsed.items()}
  np.testing.assert_array_equal(answer_mask(features["input_mask"], features["segment_ids"]).numpy(),
                                features["p_mask"].numpy())
  (saved_model,) = glob.glob(str(tmp_path / "export" / "saved_model" / "*"))
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  outputs = signature(**{key: features[key] for key in ("input_ids", "input_mask", "segment_ids")})
  windows = len(features["input_ids"])
  assert {name: tuple(value.shape) for name, value in outputs.items()} == {
      "start_top_log_probs": (windows, 5), "start_top_index": (windows, 5), "end_top_log_probs": (windows, 25),
      "end_top_index": (windows, 25), "cls_logits": (windows,)}
  # Beam starts may only fall on [CLS] or the document, as the recorded p_mask allows.
  starts = outputs["start_top_index"].numpy()
  assert not np.take_along_axis(features["p_mask"].numpy(), starts, axis=1).any()
