"""GLUE: processors on files in the real GLUE layouts, features, metrics, padding trimming, heads, and
run_classifier end to end through the command line (train, eval, predict, SavedModel export)."""

import glob
import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, shared_path

from albert import classifier_utils as cu
from albert.core.errors import UserError
from albert.model import heads
from albert.text import in_graph

# ---------------------------------------------------------------------------------------------------
# Fixture files in the real GLUE layouts (headers and column counts of the official TSVs)

MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                     "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:10] + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
STSB_HEADER = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
               "score"]


def _mnli_row(guid, a, b, label, split):
  row = [guid, "31193", f"{guid}n", "government", "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b]
  if split == "train":
    return row + [label, label]
  if split == "dev":
    return row + [label] * 5 + [label]
  return row


def glue_rows(task_name, split, items):
  """The TSV rows (header first when the file has one) of (guid, text_a, text_b, label) items."""
  test = split == "test"
  if task_name in ("mnli", "mismnli"):
    header = MNLI_TRAIN_HEADER if split == "train" else MNLI_DEV_HEADER if split == "dev" else MNLI_TRAIN_HEADER[:10]
    return [header] + [_mnli_row(g, a, b, y, split) for g, a, b, y in items]
  if task_name == "cola":
    if test:
      return [["index", "sentence"]] + [[g, a] for g, a, _, _ in items]
    return [["gj04", y, "" if y == "1" else "*", a] for _, a, _, y in items]
  if task_name == "mrpc":
    if test:
      return [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]] + [[g, "1", "2", a, b] for g, a, b, _ in items]
    return [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]] + [[y, "1", "2", a, b] for _, a, b, y in items]
  if task_name == "sst-2":
    if test:
      return [["index", "sentence"]] + [[g, a] for g, a, _, _ in items]
    return [["sentence", "label"]] + [[a, y] for _, a, _, y in items]
  if task_name == "sts-b":
    prefix = lambda g: [g, "main-captions", "MSRvid", "2012test", "0001"]
    if test:
      return [STSB_HEADER[:9]] + [prefix(g) + ["none", "none", a, b] for g, a, b, _ in items]
    return [STSB_HEADER] + [prefix(g) + ["none", "none", a, b, y] for g, a, b, y in items]
  if task_name == "qqp":
    if test:
      return [["id", "question1", "question2"]] + [[g, a, b] for g, a, b, _ in items]
    return [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]] + [
        [g, "1", "2", a, b, y] for g, a, b, y in items]
  header = {"qnli": ["index", "question", "sentence"]}.get(task_name, ["index", "sentence1", "sentence2"])
  if test:
    return [header] + [[g, a, b] for g, a, b, _ in items]
  return [header + ["label"]] + [[g, a, b, y] for g, a, b, y in items]


GLUE_FILES = {"mnli": ("MNLI", "train.tsv", "dev_matched.tsv", "test_matched.tsv"),
              "mismnli": ("MNLI", "train.tsv", "dev_mismatched.tsv", "test_mismatched.tsv"),
              "cola": ("CoLA",), "mrpc": ("MRPC",), "sst-2": ("SST-2",), "sts-b": ("STS-B",), "qqp": ("QQP",),
              "qnli": ("QNLI",), "rte": ("RTE",), "wnli": ("WNLI",)}


def glue_path(root, task_name, split):
  folder, *files = GLUE_FILES[task_name]
  files = files or ["train.tsv", "dev.tsv", "test.tsv"]
  return os.path.join(root, folder, files[["train", "dev", "test"].index(split)])


def write_tsv(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    for row in rows:
      f.write("\t".join(row) + "\n")
  return path


LABELS = {"mnli": ["contradiction", "entailment", "neutral"], "mismnli": ["contradiction", "entailment", "neutral"],
          "qnli": ["entailment", "not_entailment"], "rte": ["entailment", "not_entailment"], "sts-b": ["0.5", "4.25"]}
TEST_LABELS = {"mnli": "contradiction", "mismnli": "contradiction", "qnli": "entailment", "rte": "entailment",
               "sts-b": 0.0}
SINGLE = ("cola", "sst-2")
GUID_BY_ROW = {"cola": 0, "mrpc": 1, "sst-2": 1}  # train/dev guids are "<split>-<row index>"


def items_for(task_name, split, count=3):
  labels = LABELS.get(task_name, ["0", "1"])
  return [(f"{split[:2]}{i}", f"First  Text {i} of {split}", None if task_name in SINGLE else f"Second text {i}",
           labels[i % len(labels)]) for i in range(count)]


@pytest.mark.parametrize("task_name", sorted(GLUE_FILES))
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_every_task_reads_its_glue_layout(tmp_path, task_name, split):
  items = items_for(task_name, split)
  write_tsv(glue_path(str(tmp_path), task_name, split), glue_rows(task_name, split, items))
  task = cu.get_task(task_name.upper())
  normalize = lambda text: " ".join(text.split()).lower()  # what process_text does to these ASCII texts
  examples = cu.read_examples(task, str(tmp_path), split, normalize).examples
  assert len(examples) == len(items)
  for row_index, (example, (guid, a, b, label)) in enumerate(zip(examples, items), 1):
    if split == "test":
      expected_guid, expected_label = guid, TEST_LABELS.get(task_name, "0")
    elif task_name in GUID_BY_ROW:
      expected_guid, expected_label = f"{split}-{row_index - 1 + GUID_BY_ROW[task_name]}", label
    else:
      expected_guid, expected_label = guid, label
    if task_name == "sts-b" and split != "test":
      expected_label = float(label)
    assert example.guid == expected_guid
    assert example.text_a == normalize(a)
    assert example.text_b == (None if b is None else normalize(b))
    assert example.label == expected_label


def test_every_original_task_and_ax_are_registered():
  assert set(cu.TASKS) == {"cola", "mnli", "mismnli", "mrpc", "sst-2", "sts-b", "qqp", "qnli", "rte", "wnli", "ax"}
  assert {name: task.key_metric for name, task in cu.TASKS.items() if task.key_metric != "eval_accuracy"} == {
      "cola": "matthew_corr", "sts-b": "pearson"}
  with pytest.raises(UserError, match="--task_name: unknown task 'squad'"):
    cu.get_task("squad")


def test_ax_reads_the_diagnostic_set_and_is_predict_only(tmp_path):
  write_tsv(str(tmp_path / "diagnostic" / "diagnostic.tsv"),
            [["index", "sentence1", "sentence2"], ["0", "The cat sat.", "A cat sat."], ["1", "No.", "Yes."]])
  task = cu.get_task("AX")
  examples = cu.read_examples(task, str(tmp_path), "test", lambda t: t).examples
  assert [(e.guid, e.text_a, e.text_b, e.label) for e in examples] == [
      ("0", "The cat sat.", "A cat sat.", "contradiction"), ("1", "No.", "Yes.", "contradiction")]
  assert task.labels == ("contradiction", "entailment", "neutral")
  with pytest.raises(UserError, match="only a test set"):
    cu.read_examples(task, str(tmp_path), "train", lambda t: t)


# ---------------------------------------------------------------------------------------------------
# Malformed rows


def test_a_row_with_too_few_columns_names_file_and_line(tmp_path):
  path = write_tsv(str(tmp_path / "RTE" / "dev.tsv"),
                   [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"], ["1", "a b"]])
  with pytest.raises(UserError, match=rf"{path} line 3: expected at least 4 tab-separated columns, found 2"):
    cu.read_examples(cu.get_task("rte"), str(tmp_path), "dev", lambda t: t)


def test_an_unknown_label_names_file_and_line(tmp_path):
  path = write_tsv(str(tmp_path / "SST-2" / "train.tsv"), [["sentence", "label"], ["good", "1"], ["bad", "2"]])
  with pytest.raises(UserError, match=rf"{path} line 3: unknown label '2'; sst-2 labels are 0, 1"):
    cu.read_examples(cu.get_task("sst-2"), str(tmp_path), "train", lambda t: t)


def test_a_non_numeric_sts_score_names_file_and_line(tmp_path):
  rows = glue_rows("sts-b", "train", [("0", "a", "b", "3.5"), ("1", "c", "d", "high")])
  path = write_tsv(glue_path(str(tmp_path), "sts-b", "train"), rows)
  with pytest.raises(UserError, match=rf"{path} line 3: the sts-b score 'high' is not a number"):
    cu.read_examples(cu.get_task("sts-b"), str(tmp_path), "train", lambda t: t)


def test_empty_texts_and_short_qqp_rows_are_counted_skips(tmp_path):
  rows = glue_rows("qqp", "train", [("0", "a?", "b?", "1"), ("1", "", "c?", "0"), ("2", "d?", "e?", "0")])
  rows.insert(2, ["7", "broken row"])
  write_tsv(glue_path(str(tmp_path), "qqp", "train"), rows)
  result = cu.read_examples(cu.get_task("qqp"), str(tmp_path), "train", lambda t: t)
  assert [e.guid for e in result.examples] == ["0", "2"]
  assert result.skipped == {"too few columns": 1, "empty text": 1}


def test_dev_and_test_rows_with_empty_text_are_kept_for_scores_and_submissions(tmp_path):
  write_tsv(glue_path(str(tmp_path), "sst-2", "test"), [["index", "sentence"], ["0", "fine"], ["1", ""]])
  examples = cu.read_examples(cu.get_task("sst-2"), str(tmp_path), "test", lambda t: t).examples
  assert [(e.guid, e.text_a) for e in examples] == [("0", "fine"), ("1", "")]
  write_tsv(glue_path(str(tmp_path), "sst-2", "dev"), [["sentence", "label"], ["fine", "1"], ["", "0"]])
  examples = cu.read_examples(cu.get_task("sst-2"), str(tmp_path), "dev", lambda t: t).examples
  assert [(e.guid, e.text_a, e.label) for e in examples] == [("dev-1", "fine", "1"), ("dev-2", "", "0")]


def test_binary_bytes_are_one_line_naming_the_line(tmp_path):
  path = write_tsv(str(tmp_path / "SST-2" / "train.tsv"), [["sentence", "label"], ["good", "1"], ["b\0d", "0"]])
  with pytest.raises(UserError, match=rf"^{path} line 3 holds a NUL byte at byte 23: binary data, not text$"):
    cu.read_examples(cu.get_task("sst-2"), str(tmp_path), "train", lambda t: t)
  with open(path, "wb") as f:
    f.write(b"sentence\tlabel\ngood\t1\nb\xffd\t0\n")
  with pytest.raises(UserError, match=rf"^{path} line 3 is not UTF-8 text: invalid start byte at byte 23$"):
    cu.read_examples(cu.get_task("sst-2"), str(tmp_path), "train", lambda t: t)


def test_rows_wider_than_the_header_are_read_like_the_original_and_logged(tmp_path, caplog):
  # A lost line end runs two rows together: the original reads the first one's columns and drops the rest.
  rows = glue_rows("mrpc", "dev", [("0", "a", "b", "1"), ("1", "c", "d", "0")])
  rows[1] = rows[1] + rows[2]
  del rows[2]
  write_tsv(glue_path(str(tmp_path), "mrpc", "dev"), rows)
  with caplog.at_level("WARNING"):
    examples = cu.read_examples(cu.get_task("mrpc"), str(tmp_path), "dev", lambda t: t).examples
  assert [(e.text_a, e.text_b, e.label) for e in examples] == [("a", "b", "1")]
  assert "1 rows have more columns than the header's 5 (lines 2)" in caplog.text


def test_a_missing_task_file_names_it(tmp_path):
  with pytest.raises(UserError, match=r"--data_dir: mrpc dev file not found: .*MRPC/dev.tsv"):
    cu.read_examples(cu.get_task("mrpc"), str(tmp_path), "dev", lambda t: t)


# ---------------------------------------------------------------------------------------------------
# Features


class WordTokenizer:
  """Whitespace tokens; ids by a fixed table. Enough to hand-check layout and truncation."""
  vocab = {"[CLS]": 2, "[SEP]": 3}

  def tokenize(self, text):
    return text.split()

  def convert_tokens_to_ids(self, tokens):
    return [self.vocab[t] if t in self.vocab else int(t[1:]) + (10 if t[0] == "a" else 30) for t in tokens]


def test_pair_layout_and_truncation_from_the_longer_side():
  example = cu.InputExample("g", "a1 a2 a3 a4 a5", "b1 b2 b3", "entailment")
  features = cu.convert_example(example, cu.get_task("rte"), 9, WordTokenizer())
  # 6 text tokens fit (9 - 3): a loses a5 (5 > 3), then a4 (4 > 3).
  assert features.input_ids == [2, 11, 12, 13, 3, 31, 32, 33, 3]
  assert features.input_mask == [1] * 9
  assert features.segment_ids == [0, 0, 0, 0, 0, 1, 1, 1, 1]
  assert features.label_id == 0
  tie = cu.convert_example(cu.InputExample("g", "a1 a2", "b1 b2", "not_entailment"), cu.get_task("rte"), 6,
                           WordTokenizer())
  assert tie.input_ids == [2, 11, 12, 3, 31, 3]  # on a tie the second text loses its token
  assert tie.label_id == 1


def test_single_sentence_truncation_and_float_label():
  features = cu.convert_example(cu.InputExample("g", "a1 a2 a3 a4 a5", None, "1"), cu.get_task("cola"), 5,
                                WordTokenizer())
  assert (features.input_ids, features.segment_ids) == ([2, 11, 12, 13, 3], [0] * 5)
  regression = cu.convert_example(cu.InputExample("g", "a1", "b1", 3.25), cu.get_task("sts-b"), 8, WordTokenizer())
  record = tf.train.Example.FromString(cu.serialize_features(regression)).features.feature
  assert list(record["label_ids"].float_list.value) == [3.25]
  assert list(record["input_ids"].int64_list.value) == [2, 11, 3, 31, 3, 0, 0, 0]
  assert list(record["is_real_example"].int64_list.value) == [1]


class FingerprintOnly:
  def __init__(self, digest):
    self.fingerprint = {"mode": "test", "sha256": digest, "do_lower_case": True}


def test_feature_cache_is_written_once_and_checked(tmp_path):
  path = str(tmp_path / "rte_train.tf_record")
  source = tmp_path / "train.tsv"
  source.write_text("header\nrow\n", encoding="utf-8")
  records = lambda: (cu.serialize_features(cu.InputFeatures([2, 3, 0], [1, 1, 0], [0, 0, 0], 1)) for _ in range(2))
  settings = {"task": "rte", "split": "train", "max_seq_length": 3}
  prepare = lambda build, tokenizer=FingerprintOnly("a"), sources=(str(source),), **changes: cu.prepare_feature_file(
      path, "cached_dir", build, {**settings, **changes}, tokenizer, sources and list(sources), "data_dir")
  prepare(records)
  before = os.stat(path).st_mtime_ns
  prepare(lambda: pytest.fail("a cached file must not be rebuilt"))
  assert os.stat(path).st_mtime_ns == before
  # Other flags, another tokenizer or an edited source: rebuilt when the source is at hand, else refused.
  with pytest.raises(UserError, match="max_seq_length=3 but the flags say .*max_seq_length=8.*pass --data_dir"):
    prepare(records, sources=None, max_seq_length=8)
  with pytest.raises(UserError, match="another tokenizer"):
    prepare(records, tokenizer=FingerprintOnly("b"), sources=None)
  rebuilt = []
  prepare(lambda: rebuilt.append(1) or records(), tokenizer=FingerprintOnly("b"))
  source.write_text("header\nrow\nanother row\n", encoding="utf-8")
  prepare(lambda: rebuilt.append(2) or records(), tokenizer=FingerprintOnly("b"))
  assert rebuilt == [1, 2]
  batches = list(cu.input_fn_builder(path, 3, False, 8)())
  assert batches[0]["input_ids"].numpy().tolist() == [[2, 3, 0]] * 2
  assert batches[0]["label_ids"].dtype == tf.int32


# ---------------------------------------------------------------------------------------------------
# Metrics against hand-computed values


def test_binary_metrics_match_hand_computed_values():
  predictions = [1, 1, 0, 0, 1, 0, 1, 1]
  labels = [1, 0, 0, 1, 1, 0, 0, 1]
  # tp = 3, tn = 2, fp = 2, fn = 1
  assert cu.accuracy(predictions, labels) == pytest.approx(5 / 8)
  assert cu.f1_score(predictions, labels) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
  assert cu.matthews_corrcoef(predictions, labels) == pytest.approx((3 * 2 - 2 * 1) / math.sqrt(5 * 4 * 4 * 3))
  assert cu.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # no negative prediction: the usual 0
  assert cu.matthews_corrcoef([0, 1, 1, 0], [1, 0, 0, 1]) == pytest.approx(-1.0)
  assert cu.f1_score([0, 0], [0, 1]) == 0.0


def test_correlations_match_hand_computed_values():
  x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
  # deviations (-1.5, -0.5, 0.5, 1.5) and (-0.5, -1.5, 1.5, 0.5): sum of products 0.75+0.75+0.75+0.75 = 3, norms 5
  assert cu.pearson(x, y) == pytest.approx(3.0 / 5.0)
  assert cu.spearman([10.0, 20.0, 30.0, 40.0], [1.0, 0.5, 9.0, 3.0]) == pytest.approx(0.6)
  # ties share ranks: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4)
  rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4.0])
  dx, dy = rx - rx.mean(), ry - ry.mean()
  expected = np.sum(dx * dy) / np.sqrt(np.sum(dx ** 2) * np.sum(dy ** 2))
  assert cu.spearman([0.1, 0.5, 0.5, 0.9], [1, 2, 3, 4]) == pytest.approx(expected)
  assert cu.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
  assert cu.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_scores_of_cola_and_sts_b_outputs():
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0]], np.float32)
  outputs = {"logits": logits, "predictions": np.array([0, 1, 1, 0]), "label_ids": np.array([0, 1, 0, 0]),
             "is_real_example": np.array([1, 1, 1, 1])}
  scores = cu.classifier_scores(cu.get_task("cola"), outputs, batch_size=3)
  losses = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1)), math.log(1 + math.exp(2)),
            math.log(1 + math.exp(-0.5))]
  assert scores["eval_loss"] == pytest.approx(np.mean(losses))
  assert scores["loss"] == pytest.approx((np.mean(losses[:3]) + losses[3]) / 2)  # mean of batch means
  assert scores["eval_accuracy"] == pytest.approx(0.75)
  # tp 1, tn 2, fp 1, fn 0
  assert scores["matthew_corr"] == pytest.approx(2 / math.sqrt(2 * 1 * 3 * 2))
  regression = {"logits": np.array([[1.0], [2.0], [4.0]]), "predictions": np.array([1.0, 2.0, 4.0]),
                "label_ids": np.array([1.5, 2.0, 3.0]), "is_real_example": np.array([1, 1, 1])}
  scores = cu.classifier_scores(cu.get_task("sts-b"), regression, batch_size=8)
  assert scores["MSE"] == pytest.approx((0.25 + 0 + 1) / 3)
  assert scores["eval_loss"] == pytest.approx((0.25 + 0 + 1) / 3)
  assert scores["spearman"] == pytest.approx(1.0)
  assert scores["pearson"] == pytest.approx(np.corrcoef([1, 2, 4], [1.5, 2, 3])[0, 1])
  assert "eval_accuracy" not in scores


# ---------------------------------------------------------------------------------------------------
# Head, task and padding trimming


def test_classifier_head_names_and_math(tiny_config):
  head = heads.ClassifierHead(tiny_config, 3)
  assert {name: v.shape.as_list() for name, v in head.named_variables().items()} == {
      "output_weights": [3, 32], "output_bias": [3]}
  head.output_bias.assign([0.5, -1.0, 2.0])
  pooled = np.random.RandomState(0).randn(4, 32).astype(np.float32)
  expected = pooled @ head.output_weights.numpy().T + np.array([0.5, -1.0, 2.0])
  np.testing.assert_allclose(head(tf.constant(pooled)).numpy(), expected, rtol=1e-5, atol=1e-6)
  assert float(tf.math.reduce_std(head.output_weights)) < 0.03  # stddev 0.02, truncated


def _batch(lengths, seq_length, label_dtype=np.int32):
  rng = np.random.RandomState(1)
  ids = np.zeros([len(lengths), seq_length], np.int32)
  mask, segments = np.zeros_like(ids), np.zeros_like(ids)
  for row, length in enumerate(lengths):
    ids[row, :length] = rng.randint(5, 2000, length)
    mask[row, :length] = 1
    segments[row, length // 2:length] = 1
  return {"input_ids": tf.constant(ids), "input_mask": tf.constant(mask), "segment_ids": tf.constant(segments),
          "label_ids": tf.constant(np.zeros(len(lengths), label_dtype)),
          "is_real_example": tf.constant(np.ones(len(lengths), np.int32))}


def test_trimmed_batches_give_the_padded_results(tiny_config):
  padded = cu.ClassifierTask(tiny_config, 3, trim_inference=False)
  padded.build()
  trimmed = cu.ClassifierTask(tiny_config, 3, trim_inference=True)
  trimmed.build()
  for name, variable in trimmed.named_variables().items():
    variable.assign(padded.named_variables()[name])
  features = _batch([5, 17, 9], 64)
  ids, _, _ = cu.trim_padding(features["input_ids"], features["input_mask"], features["segment_ids"])
  assert ids.shape == (3, 17)
  expected = padded.predict_step(features)
  for step in (trimmed.predict_step, tf.function(trimmed.predict_step)):
    got = step(features)
    np.testing.assert_allclose(got["logits"].numpy(), expected["logits"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["predictions"].numpy(), expected["predictions"].numpy())


def test_regression_task_loss_is_the_mean_squared_error(tiny_config):
  task = cu.ClassifierTask(tiny_config, 1)
  task.build()
  features = _batch([4, 6], 16, np.float32)
  features["label_ids"] = tf.constant([1.0, -2.0])
  logits = task.logits(features, training=False).numpy()[:, 0]
  assert float(task.compute_loss(features, training=False)) == pytest.approx(
      np.mean((logits - np.array([1.0, -2.0])) ** 2), rel=1e-5)
  outputs = task.predict_step(features)
  np.testing.assert_allclose(outputs["predictions"].numpy(), logits, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# run_classifier end to end

TINY = dict(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
            num_attention_heads=4, intermediate_size=64, inner_group_num=1, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64,
            type_vocab_size=2, initializer_range=0.02)


def run_cli(module, *args, check=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  if check and proc.returncode != 0:
    raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("config") / "albert_config.json"
  path.write_text(json.dumps(TINY))
  return str(path)


def corpus_sentences():
  """Real sentences of two styles: encyclopedic (WikiText) and fairy tale (Grimm)."""
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    wiki = [line.strip() for line in f if 60 <= len(line.strip()) <= 160 and not line.startswith(" =")]
  with open(shared_path("corpus", "grimm-fairy-tales.txt"), encoding="utf-8") as f:
    text = " ".join(f.read().split()[3000:60000])
  tales = [s.strip() + "." for s in text.split(". ") if 60 <= len(s.strip()) <= 160]
  return wiki, tales


def labelled_style_set(seed, count):
  wiki, tales = corpus_sentences()
  rng = random.Random(seed)
  items = [(s, "0") for s in rng.sample(wiki, count // 2)] + [(s, "1") for s in rng.sample(tales, count // 2)]
  rng.shuffle(items)
  return items


def common_args(config_file, spm_model_file, data_dir, output_dir, task_name, seq=32):
  return [f"--albert_config_file={config_file}", f"--spm_model_file={spm_model_file}", f"--data_dir={data_dir}",
          f"--output_dir={output_dir}", f"--task_name={task_name}", f"--max_seq_length={seq}"]


@pytest.mark.slow
def test_sst2_fits_a_style_task_evaluates_predicts_and_exports(tmp_path, config_file, spm_model_file):
  data = labelled_style_set(seed=0, count=480)
  train, dev, test = data[:320], data[320:400], data[400:]
  write_tsv(str(tmp_path / "glue/SST-2/train.tsv"), [["sentence", "label"]] + [[s, y] for s, y in train])
  write_tsv(str(tmp_path / "glue/SST-2/dev.tsv"), [["sentence", "label"]] + [[s, y] for s, y in dev])
  write_tsv(str(tmp_path / "glue/SST-2/test.tsv"),
            [["index", "sentence"]] + [[str(i), s] for i, (s, _) in enumerate(test)])
  out, export = tmp_path / "out", tmp_path / "export"
  run_cli("albert.run_classifier", *common_args(config_file, spm_model_file, tmp_path / "glue", out, "SST-2"),
          "--do_train", "--do_eval", "--do_predict", "--train_step=160", "--warmup_step=10",
          "--learning_rate=2e-3", "--train_batch_size=16", "--eval_batch_size=16", "--predict_batch_size=7",
          "--save_checkpoints_steps=40", "--keep_checkpoint_max=2", f"--export_dir={export}",
          "--threshold_to_export=0.25", f"--cached_dir={tmp_path / 'cache'}", "--seed=1")

  assert sorted(os.listdir(tmp_path / "cache")) == [  # each cache with the sidecar that says what built it
      "sst-2_eval.tf_record", "sst-2_eval.tf_record.info.json", "sst-2_train.tf_record",
      "sst-2_train.tf_record.info.json"]
  assert sorted(p for p in os.listdir(out) if p.endswith(".index")) == [
      "model.ckpt-120.index", "model.ckpt-160.index", "model.ckpt-best.index"]  # keep_checkpoint_max honoured
  results = json.loads((out / "eval_results.json").read_text())
  assert [h["global_step"] for h in results["history"]] == [120, 160]
  assert results["eval_accuracy"] > 0.75, results  # chance is 0.5
  assert set(results) >= {"eval_accuracy", "eval_loss", "loss", "global_step"}
  text = (out / "eval_results.txt").read_text()
  assert f"eval_accuracy = {results['eval_accuracy']}" in text
  best = max(results["history"], key=lambda h: h["eval_accuracy"])
  assert (out / "best_trial.txt").read_text() == f"160:{best['global_step']}:{best['eval_accuracy']}\n"

  probabilities = np.loadtxt(out / "test_results.tsv", delimiter="\t")
  assert probabilities.shape == (len(test), 2)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  submit = (out / "submit_results.tsv").read_text().splitlines()
  assert submit[0] == "index\tprediction"
  assert submit[1:] == [f"{i}\t{int(np.argmax(p))}" for i, p in enumerate(probabilities)]
  test_accuracy = np.mean([int(np.argmax(p)) == int(y) for p, (_, y) in zip(probabilities, test)])
  assert test_accuracy > 0.7

  (saved_model_dir,) = glob.glob(str(export / "*"))
  in_graph.available()  # with tensorflow-text installed the export has a text-in signature, whose ops loading needs
  serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
  records = list(tf.data.TFRecordDataset(str(out / "predict.tf_record")).as_numpy_iterator())
  served = serve(serialized_example=tf.constant(records))
  np.testing.assert_allclose(served["probabilities"].numpy(), probabilities, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(served["predictions"].numpy(), np.argmax(probabilities, axis=1))
  assert float(served["threshold"]) == 0.25


@pytest.mark.slow
def test_sts_b_regression_and_mnli_then_ax_through_the_cli(tmp_path, config_file, spm_model_file):
  glue = tmp_path / "glue"
  wiki, _ = corpus_sentences()
  pairs = [(str(i), wiki[2 * i], wiki[2 * i + 1], f"{(i * 7) % 11 / 2:.2f}") for i in range(24)]
  for split in ("train", "dev", "test"):
    write_tsv(glue_path(str(glue), "sts-b", split), glue_rows("sts-b", split, pairs))
  out = tmp_path / "stsb"
  run_cli("albert.run_classifier", *common_args(config_file, spm_model_file, glue, out, "STS-B"), "--do_train",
          "--do_eval", "--do_predict", "--train_step=3", "--train_batch_size=4", "--save_checkpoints_steps=3")
  results = json.loads((out / "eval_results.json").read_text())
  assert set(results) >= {"pearson", "spearman", "MSE", "eval_loss", "loss", "global_step"}
  assert -1.0 <= results["pearson"] <= 1.0 and results["MSE"] >= 0
  step, best_step, best_value = (out / "best_trial.txt").read_text().split(":")
  assert (int(step), int(best_step), float(best_value)) == (3, 3, pytest.approx(results["pearson"]))
  scores = np.loadtxt(out / "test_results.tsv", delimiter="\t")
  submit = [line.split("\t") for line in (out / "submit_results.tsv").read_text().splitlines()[1:]]
  assert [guid for guid, _ in submit] == [guid for guid, *_ in pairs]
  np.testing.assert_allclose([float(v) for _, v in submit], scores, rtol=1e-6)

  items = [(str(i), wiki[i], wiki[i + 1], ["contradiction", "entailment", "neutral"][i % 3]) for i in range(12)]
  for split in ("train", "dev", "test"):
    write_tsv(glue_path(str(glue), "mnli", split), glue_rows("mnli", split, items))
  mnli = tmp_path / "mnli"
  run_cli("albert.run_classifier", *common_args(config_file, spm_model_file, glue, mnli, "MNLI"), "--do_train",
          "--do_eval", "--train_step=2", "--train_batch_size=4", "--save_checkpoints_steps=2")
  assert (mnli / "model.ckpt-best.index").exists()
  write_tsv(str(glue / "diagnostic" / "diagnostic.tsv"),
            [["index", "sentence1", "sentence2"]] + [[str(i), wiki[i], wiki[i + 5]] for i in range(5)])
  ax = tmp_path / "ax"
  run_cli("albert.run_classifier", *common_args(config_file, spm_model_file, glue, ax, "AX"), "--do_predict",
          f"--init_checkpoint={mnli / 'model.ckpt-best'}")
  assert np.loadtxt(ax / "test_results.tsv", delimiter="\t").shape == (5, 3)
  submit = (ax / "submit_results.tsv").read_text().splitlines()
  assert len(submit) == 6 and all(line.split("\t")[1] in LABELS["mnli"] for line in submit[1:])


def test_cli_reports_malformed_data_and_bad_flags(tmp_path, config_file, spm_model_file):
  path = write_tsv(str(tmp_path / "glue/RTE/train.tsv"),
                   [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"],
                    ["1", "a", "b", "maybe"]])
  args = common_args(config_file, spm_model_file, tmp_path / "glue", tmp_path / "out", "RTE")
  proc = run_cli("albert.run_classifier", *args, "--do_train", check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {path} line 3: unknown label 'maybe'; rte labels are entailment, not_entailment")
  proc = run_cli("albert.run_classifier", *args[:-2], "--task_name=AX", "--do_train", check=False)
  assert proc.returncode == 2 and "error: --task_name=ax has only a test set" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# scripts/run_glue.sh

GLUE_HYPERPARAMETERS = {  # docs/compatibility.md §10.8: warmup_step, learning_rate, train_step, save_checkpoints_steps, batch
    "SST-2": ("1256", "1e-5", "20935", "100", "32"), "MNLI": ("1000", "3e-5", "10000", "100", "128"),
    "CoLA": ("320", "1e-5", "5336", "100", "16"), "QNLI": ("1986", "1e-5", "33112", "200", "32"),
    "QQP": ("1000", "5e-5", "14000", "100", "128"), "RTE": ("200", "3e-5", "800", "100", "32"),
    "STS-B": ("214", "2e-5", "3598", "100", "16"), "MRPC": ("200", "2e-5", "800", "100", "32")}


def run_glue_script(tmp_path, *args, **env):
  env = dict(os.environ, ALBERT_ROOT="/albert", OUTPUT_DIR=str(tmp_path / "glue_out"), DRY_RUN="1", **env)
  proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "run_glue.sh"), *args], env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  return [line.split() for line in proc.stdout.splitlines() if "albert.run_classifier" in line]


def flag_values(command):
  return dict(arg[2:].split("=", 1) if "=" in arg else (arg[2:], True) for arg in command if arg.startswith("--"))


def test_run_glue_runs_every_task_twice_with_the_original_hyperparameters(tmp_path):
  commands = run_glue_script(tmp_path)
  assert len(commands) == 16
  for task, (train, evaluate) in zip(GLUE_HYPERPARAMETERS, zip(commands[::2], commands[1::2])):
    for command in (train, evaluate):
      flags = flag_values(command)
      assert flags["task_name"] == task
      assert (flags["warmup_step"], flags["learning_rate"], flags["train_step"], flags["save_checkpoints_steps"],
              flags["train_batch_size"]) == GLUE_HYPERPARAMETERS[task]
      assert (flags["max_seq_length"], flags["optimizer"], flags["do_lower_case"]) == ("512", "adamw", True)
      assert flags["spm_model_file"] == "/albert/30k-clean.model" and flags["data_dir"] == "/albert/glue"
      assert flags["output_dir"] == str(tmp_path / "glue_out" / task)
      assert flags["albert_hub_module_handle"] == "https://tfhub.dev/google/albert_base/1"
    assert {"do_train", "nodo_eval", "nodo_predict"} <= set(flag_values(train))
    assert {"nodo_train", "do_eval", "do_predict"} <= set(flag_values(evaluate))


def test_run_glue_with_an_init_checkpoint_and_overrides(tmp_path):
  commands = run_glue_script(tmp_path, "--max_seq_length=128", TASKS="RTE", INIT_CHECKPOINT="/ckpt/model.ckpt-1")
  train, evaluate = map(flag_values, commands)
  assert "albert_hub_module_handle" not in train and train["albert_config_file"] == "/albert/albert_config.json"
  assert train["init_checkpoint"] == "/ckpt/model.ckpt-1" and "init_checkpoint" not in evaluate
  assert commands[0][-1] == "--max_seq_length=128"  # last value wins in absl
