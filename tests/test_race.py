"""RACE: reading both data layouts, four-choice features, the multiple-choice head and task, per-level
scores, and run_race end to end through the command line."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from test_classifier import TINY, WordTokenizer, _batch, corpus_sentences, run_cli

from albert import race_utils
from albert.core.errors import UserError
from albert.model import heads


def passage(pid, article, questions, options, answers):
  return {"answers": answers, "options": options, "questions": questions, "article": article, "id": pid}


def write_all_txt(directory, passages):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "all.txt"), "w", encoding="utf-8") as f:
    for p in passages:
      f.write(json.dumps(p) + "\n")


def write_passage_files(directory, passages):
  """The official release: one JSON object per <n>.txt file."""
  os.makedirs(directory, exist_ok=True)
  for number, p in enumerate(passages, 1):
    with open(os.path.join(directory, f"{number}.txt"), "w", encoding="utf-8") as f:
      json.dump(p, f)


MIDDLE = [passage("middle1.txt", "Tom  has a Dog.", ["Tom has a _ .", "What does Tom have?"],
                  [["cat", "dog", "cow", "pig"], ["A cat", "A dog", "Nothing", "Two dogs"]], ["B", "B"])]
HIGH = [passage(f"high{n}.txt", f"Article {n}.", [f"Question {n}?"], [["w", "x", "y", "z"]], [letter])
        for n, letter in zip(range(1, 12), "ABCDABCDABC")]


def test_all_txt_and_per_passage_files_middle_before_high(tmp_path):
  write_all_txt(str(tmp_path / "RACE/dev/middle"), MIDDLE)
  write_passage_files(str(tmp_path / "RACE/dev/high"), HIGH)
  normalize = lambda text: " ".join(text.split()).lower()
  examples = race_utils.read_race_examples(str(tmp_path), "dev", normalize)
  assert [e.level for e in examples] == ["middle"] * 2 + ["high"] * 11
  first, second = examples[:2]
  assert first.article == "tom has a dog."
  assert first.choices == ["tom has a cat .", "tom has a dog .", "tom has a cow .", "tom has a pig ."]
  assert second.choices == ["what does tom have? a cat", "what does tom have? a dog",
                            "what does tom have? nothing", "what does tom have? two dogs"]
  assert (first.label, second.label) == (1, 1)
  assert [e.example_id for e in examples[2:5]] == ["high1.txt-0", "high2.txt-0", "high3.txt-0"]  # 2 before 10
  assert [e.label for e in examples[2:]] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
  assert [e.level for e in race_utils.read_race_examples(str(tmp_path), "dev", normalize, high_only=True)] == \
      ["high"] * 11
  assert len(race_utils.read_race_examples(str(tmp_path), "dev", normalize, middle_only=True)) == 2


@pytest.mark.parametrize("content, message", [
    ('{"article": "a", "questions": ["q"], "options": [["1","2","3","4"]], "answers": ["E"]}',
     "line 2: question 0 has answer 'E'; expected one of A, B, C, D"),
    ('{"article": "a", "questions": ["q"], "options": [["1","2","3"]], "answers": ["A"]}',
     "line 2: question 0 needs 4 options"),
    ('{"article": "a", "questions": ["q"], "answers": ["A"]}', r'line 2: "options" is missing \(expected a list\)'),
    ('{"article": "a", "questions": ["q", "r"], "options": [["1","2","3","4"]], "answers": ["A"]}',
     "line 2: 2 questions, 1 option lists and 1 answers must match"),
    ('{"article": "a", ', "line 2: not valid JSON"),
])
def test_malformed_passages_name_file_and_line(tmp_path, content, message):
  directory = tmp_path / "RACE/train/middle"
  write_all_txt(str(directory), MIDDLE)
  with open(directory / "all.txt", "a", encoding="utf-8") as f:
    f.write(content + "\n")
  with pytest.raises(UserError, match=f"{directory / 'all.txt'} {message}"):
    race_utils.read_race_examples(str(tmp_path), "train", lambda t: t, middle_only=True)


def test_missing_directories_and_files_are_named(tmp_path):
  with pytest.raises(UserError, match=r"RACE test directory not found: .*RACE/test/middle"):
    race_utils.read_race_examples(str(tmp_path), "test", lambda t: t)
  os.makedirs(tmp_path / "RACE/test/high")
  with pytest.raises(UserError, match="neither all.txt nor per-passage"):
    race_utils.read_race_examples(str(tmp_path), "test", lambda t: t, high_only=True)
  with pytest.raises(UserError, match="exclude each other"):
    race_utils.read_race_examples(str(tmp_path), "test", lambda t: t, high_only=True, middle_only=True)


def test_features_keep_the_last_qa_tokens_and_cut_the_article():
  example = race_utils.RaceExample("x", "high", "a1 a2 a3 a4 a5 a6", ["b1 b2 b3 b4 b5", "b1", "", "b6 b7"], 2)
  features = race_utils.convert_example(example, WordTokenizer(), max_seq_length=10, max_qa_length=3)
  s = 10
  ids = [features.input_ids[i * s:(i + 1) * s] for i in range(4)]
  segments = [features.segment_ids[i * s:(i + 1) * s] for i in range(4)]
  masks = [features.input_mask[i * s:(i + 1) * s] for i in range(4)]
  # choice 0: qa = last 3 tokens (b3 b4 b5); article gets 10 - 3 - 3 = 4 tokens
  assert ids[0] == [2, 11, 12, 13, 14, 3, 33, 34, 35, 3]
  assert segments[0] == [0] * 6 + [1] * 4 and masks[0] == [1] * 10
  # choice 1: qa = b1; the article keeps 6 tokens: 1 + 6 + 1 + 1 + 1 = 10
  assert ids[1] == [2, 11, 12, 13, 14, 15, 16, 3, 31, 3]
  # choice 2: an empty qa still ends with [SEP]
  assert ids[2] == [2, 11, 12, 13, 14, 15, 16, 3, 3, 0]
  assert segments[2] == [0] * 8 + [1, 0] and masks[2] == [1] * 9 + [0]
  assert ids[3] == [2, 11, 12, 13, 14, 15, 3, 36, 37, 3]
  assert features.label_id == 2 and len(features.input_ids) == 4 * s
  with pytest.raises(UserError, match=r"flag --max_qa_length=8: must be <= --max_seq_length - 3 = 7"):
    race_utils.check_lengths(10, 8)


def test_multiple_choice_head_names_and_math(tiny_config):
  head = heads.MultipleChoiceHead(tiny_config, 4, dropout_prob=0.5)
  assert {name: v.shape.as_list() for name, v in head.named_variables().items()} == {
      "output_weights": [1, 32], "output_bias": [1]}
  head.output_bias.assign([0.25])
  pooled = np.random.RandomState(0).randn(8, 32).astype(np.float32)
  expected = (pooled @ head.output_weights.numpy()[0] + 0.25).reshape(2, 4)
  np.testing.assert_allclose(head(tf.constant(pooled)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_trimmed_race_batches_give_the_padded_results(tiny_config):
  padded = race_utils.RaceTask(tiny_config, trim_inference=False)
  padded.build()
  trimmed = race_utils.RaceTask(tiny_config, trim_inference=True)
  trimmed.build()
  for name, variable in trimmed.named_variables().items():
    variable.assign(padded.named_variables()[name])
  flat = _batch([5, 9, 3, 7, 12, 4, 4, 6], 32)  # 2 questions x 4 choices
  features = {key: tf.reshape(flat[key], [2, 4 * 32]) for key in ("input_ids", "input_mask", "segment_ids")}
  features.update(label_ids=tf.constant([1, 3]), is_real_example=tf.constant([1, 1]))
  expected = padded.predict_step(features)
  got = tf.function(trimmed.predict_step)(features)
  assert expected["logits"].shape == (2, 4)
  np.testing.assert_allclose(got["logits"].numpy(), expected["logits"].numpy(), rtol=1e-5, atol=1e-6)
  loss = float(padded.compute_loss(features, training=False))
  logits = expected["logits"].numpy().astype(np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  assert loss == pytest.approx(-(log_probs[0, 1] + log_probs[1, 3]) / 2, rel=1e-5)


def test_scores_per_level_match_hand_counts():
  logits = np.zeros([5, 4], np.float32)
  logits[np.arange(5), [0, 1, 2, 3, 0]] = 2.0
  outputs = {"logits": logits, "predictions": np.array([0, 1, 2, 3, 0]), "label_ids": np.array([0, 1, 0, 3, 1]),
             "is_real_example": np.ones(5, np.int64)}
  scores = race_utils.race_scores(outputs, ["middle", "middle", "high", "high", "high"], batch_size=8)
  assert scores["eval_accuracy"] == pytest.approx(3 / 5)
  assert scores["eval_accuracy_middle"] == pytest.approx(1.0)
  assert scores["eval_accuracy_high"] == pytest.approx(1 / 3)
  right, wrong = -np.log(np.exp(2) / (np.exp(2) + 3)), -np.log(1 / (np.exp(2) + 3))
  assert scores["eval_loss"] == pytest.approx((3 * right + 2 * wrong) / 5)
  with pytest.raises(UserError, match="holds 5 questions but the data has 4"):
    race_utils.race_scores(outputs, ["high"] * 4, batch_size=8)


# ---------------------------------------------------------------------------------------------------
# run_race end to end


def race_passages(sentences, prefix, count, start):
  out = []
  for n in range(count):
    s = sentences[start + 6 * n:start + 6 * (n + 1)]
    out.append(passage(f"{prefix}{n + 1}.txt", " ".join(s[:4]), ["Which sentence is in the text?", "The text says _ ."],
                       [[s[0], s[4], s[5], "none"], [s[4], s[5], s[1], "nothing"]], ["A", "C"]))
  return out


@pytest.mark.slow
def test_run_race_trains_evaluates_per_level_and_predicts(tmp_path, spm_model_file):
  wiki, _ = corpus_sentences()
  data = tmp_path / "data"
  for split_index, split in enumerate(("train", "dev", "test")):
    write_all_txt(str(data / "RACE" / split / "middle"), race_passages(wiki, "m", 3, 100 * split_index))
    write_passage_files(str(data / "RACE" / split / "high"), race_passages(wiki, "h", 2, 100 * split_index + 40))
  config = tmp_path / "albert_config.json"
  config.write_text(json.dumps(TINY))
  out = tmp_path / "out"
  args = [f"--albert_config_file={config}", f"--spm_model_file={spm_model_file}", f"--data_dir={data}",
          f"--output_dir={out}", "--max_seq_length=48", "--max_qa_length=16"]
  run_cli("albert.run_race", *args, "--do_predict", "--train_step=4", "--warmup_step=1", "--train_batch_size=4",
          "--eval_batch_size=3", "--predict_batch_size=5", "--save_checkpoints_steps=2", "--num_keep_checkpoint=1",
          "--learning_rate=1e-3")
  assert sorted(p for p in os.listdir(out) if p.endswith(".index")) == ["model.ckpt-4.index", "model.ckpt-best.index"]
  assert {"train.tf_record", "eval.tf_record", "predict.tf_record"} <= set(os.listdir(out))
  record = next(iter(tf.data.TFRecordDataset(str(out / "eval.tf_record")))).numpy()
  assert len(tf.train.Example.FromString(record).features.feature["input_ids"].int64_list.value) == 4 * 48

  results = json.loads((out / "eval_results.json").read_text())
  # dev: 3 middle passages x 2 questions, 2 high passages x 2 questions
  assert results["eval_accuracy"] == pytest.approx(
      (6 * results["eval_accuracy_middle"] + 4 * results["eval_accuracy_high"]) / 10)
  assert {"eval_loss", "loss", "global_step"} <= set(results)
  lines = (out / "predict_results.txt").read_text().splitlines()
  assert lines[0] == "***** Predict results *****"
  keys = [line.split(" = ")[0] for line in lines[1:-1]]
  assert keys == sorted(keys) and {"eval_accuracy", "eval_accuracy_high", "eval_accuracy_middle"} <= set(keys)
  assert lines[-1] == f"best = {results['eval_accuracy']}"

  # do_predict alone, without TPU and without do_eval (the original needed both), on the high level only
  os.remove(out / "predict_results.txt")
  run_cli("albert.run_race", *args, "--nodo_train", "--nodo_eval", "--do_predict", "--high_only",
          f"--predict_file={tmp_path / 'high_test.tf_record'}")
  predicted = json.loads((out / "predict_results.json").read_text())
  assert predicted["checkpoint"].endswith("model.ckpt-best") and predicted["global_step"] == results["global_step"]
  assert "eval_accuracy_middle" not in predicted
  assert predicted["eval_accuracy"] == predicted["eval_accuracy_high"]
  assert (out / "predict_results.txt").read_text().splitlines()[-1] == f"best = {results['eval_accuracy']}"


def test_run_race_reports_bad_data_and_flags(tmp_path, spm_model_file):
  bad = passage("m1.txt", "Text.", ["Q?"], [["a", "b", "c", "d"]], ["F"])
  write_all_txt(str(tmp_path / "RACE/train/middle"), [bad])
  config = tmp_path / "albert_config.json"
  config.write_text(json.dumps(TINY))
  args = [f"--albert_config_file={config}", f"--spm_model_file={spm_model_file}", f"--data_dir={tmp_path}",
          f"--output_dir={tmp_path / 'out'}", "--max_seq_length=32", "--max_qa_length=8", "--nodo_eval",
          "--middle_only"]
  proc = run_cli("albert.run_race", *args, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {tmp_path / 'RACE/train/middle/all.txt'} line 1: question 0 has answer 'F'; expected one of A, B, C, D")
  proc = run_cli("albert.run_race", *args, "--task_name=squad", check=False)
  assert proc.returncode == 2 and "error: --task_name: only race is supported" in proc.stderr
