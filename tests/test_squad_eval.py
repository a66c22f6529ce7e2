"""EM/F1 against hand-computed values and the real SQuAD dev samples."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_path

from albert.core.errors import UserError
from albert.tasks.squad import evaluate as squad_eval


def _dataset(*qas):
  """A one-article SQuAD `data` list; each qa is (id, [reference texts])."""
  return [{"title": "t", "paragraphs": [{"context": "c", "qas": [
      {"id": qid, "question": "q", "answers": [{"text": t, "answer_start": 0} for t in texts]}
      for qid, texts in qas]}]}]


# ---- normalization and per-answer scores ----

@pytest.mark.parametrize("text, expected", [
    ("The  Quick, brown-fox!", "quick brownfox"),
    ("a.b", "ab"),            # punctuation goes before articles: "a.b" is one word, not the article "a"
    ("an-apple", "anapple"),
    ("Theatre of the Absurd", "theatre of absurd"),
    ("  A   cat\tand\nTHE dog ", "cat and dog"),
    ("«Ünïcode» ok", "«ünïcode» ok"),  # only ASCII punctuation is removed
])
def test_normalize_answer(text, expected):
  assert squad_eval.normalize_answer(text) == expected


def test_f1_uses_multiset_overlap():
  # gold tokens [cat, sat, on, mat], predicted [cat, cat, mat]: overlap 2, P = 2/3, R = 1/2.
  assert squad_eval.f1_score("the cat sat on the mat", "cat cat mat") == pytest.approx(4 / 7)
  assert squad_eval.f1_score("cat", "dog") == 0
  assert squad_eval.f1_score("", "") == 1
  assert squad_eval.f1_score("", "dog") == 0
  assert squad_eval.f1_score("the", "") == 1  # both normalize to no tokens
  assert squad_eval.exact_score("The Cat.", "cat") == 1


# ---- v1 ----

def test_evaluate_v1_max_over_references_and_missing_prediction(capsys):
  data = _dataset(("q1", ["Denver Broncos", "The Broncos"]), ("q2", ["blue sky"]), ("q3", ["x"]))
  predictions = {"q1": "broncos", "q2": "the blue"}
  # q1: exact vs "The Broncos" = 1, f1 = 1; q2: exact 0, f1: P = 1/1, R = 1/2 -> 2/3; q3 missing: 0.
  result = squad_eval.evaluate_v1(data, predictions)
  assert result == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})
  assert "Unanswered question q3 will receive score 0." in capsys.readouterr().err


def test_evaluate_v1_rejects_unanswerable_questions():
  with pytest.raises(UserError, match="q1 has no reference answers"):
    squad_eval.evaluate_v1(_dataset(("q1", [])), {"q1": ""})


@pytest.mark.parametrize("edit, message", [
    (lambda qa: qa["answers"][0].update(text=1066),
     r'"answers"\[0\]\."text" must be a string, found a number \(1066\)'),
    (lambda qa: qa["answers"][0].pop("text"), r'"answers"\[0\]\."text" is missing \(expected a string\)'),
    (lambda qa: qa.update(answers="Denver"), '"answers" must be a list, found a string'),
    (lambda qa: qa.pop("id"), r': "id" is missing \(expected a string or an integer\)'),
])
def test_malformed_references_are_one_line_naming_their_path(tmp_path, edit, message):
  data = _dataset(("q1", ["Denver"]))
  edit(data[0]["paragraphs"][0]["qas"][0])
  data_file = tmp_path / "dev.json"
  data_file.write_text(json.dumps({"version": "1.1", "data": data}))
  predictions = tmp_path / "predictions.json"
  predictions.write_text(json.dumps({"q1": "Denver"}))
  with pytest.raises(UserError, match=rf"^{data_file}: data\[0\]\.paragraphs\[0\]\.qas\[0\].*{message}"):
    squad_eval.evaluate_files(str(data_file), str(predictions))


def test_predictions_and_no_answer_scores_are_checked_by_key(tmp_path):
  data_file = tmp_path / "dev.json"
  data_file.write_text(json.dumps({"version": "2.0", "data": _dataset(("q1", ["Denver"]))}))
  predictions = tmp_path / "predictions.json"
  predictions.write_text(json.dumps({"q1": 7}))
  with pytest.raises(UserError, match=f'^{predictions}: "q1" must be a string, found a number'):
    squad_eval.evaluate_files(str(data_file), str(predictions))
  predictions.write_text(json.dumps({"q1": "Denver"}))
  na_probs = tmp_path / "null_odds.json"
  na_probs.write_text(json.dumps({"q1": "high"}))
  with pytest.raises(UserError, match=f'^{na_probs}: "q1" must be a number, found a string'):
    squad_eval.evaluate_files(str(data_file), str(predictions), str(na_probs))


# ---- v2 ----

def test_evaluate_v2_empty_answers_breakdown_and_missing(capsys):
  data = _dataset(("h1", ["red car"]), ("h2", ["blue"]), ("n1", []), ("n2", []), ("p1", ["!!"]), ("m1", ["x"]))
  predictions = {"h1": "the red", "h2": "blue", "n1": "", "n2": "something", "p1": ""}
  result = squad_eval.evaluate_v2(data, predictions)
  # h1: exact 0, f1 = 2·1·(1/2)/(3/2) = 2/3; h2: 1/1; n1: 1/1; n2: 0/0;
  # p1: its only reference normalizes to "" -> gold [""], "" matches: 1/1 (still a HasAns question);
  # m1: no prediction -> skipped.
  assert result["total"] == 5
  assert result["exact"] == pytest.approx(100 * 3 / 5)
  assert result["f1"] == pytest.approx(100 * (2 / 3 + 3) / 5)
  assert result["HasAns_total"] == 3 and result["NoAns_total"] == 2
  assert result["HasAns_exact"] == pytest.approx(100 * 2 / 3)
  assert result["HasAns_f1"] == pytest.approx(100 * (2 / 3 + 2) / 3)
  assert result["NoAns_exact"] == result["NoAns_f1"] == pytest.approx(50.0)
  assert not any(key.startswith("best_") for key in result)
  assert "Missing prediction for m1" in capsys.readouterr().err


def test_evaluate_v2_no_answer_threshold_and_best_thresholds():
  data = _dataset(("h1", ["fox"]), ("h2", ["lazy dog"]), ("h3", ["brown"]), ("n1", []), ("n2", []))
  predictions = {"h1": "fox", "h2": "lazy", "h3": "brown", "n1": "dog", "n2": ""}
  na_probs = {"h1": 0.2, "h2": 0.9, "h3": 0.6, "n1": 0.7, "n2": 0.95}
  result = squad_eval.evaluate_v2(data, predictions, na_probs, na_prob_thresh=0.65)
  # Above 0.65 (h2, n1, n2) are scored as null: h2 -> 0, n1 -> 1, n2 -> 1; h1 1, h3 1.
  assert result["exact"] == pytest.approx(80.0)
  assert result["f1"] == pytest.approx(80.0)
  assert result["HasAns_exact"] == pytest.approx(100 * 2 / 3)
  # find_best_thresh on raw scores, start = 2 (no-answer questions), ascending na_prob:
  # h1 +1 -> 3 (t=.2), h3 +1 -> 4 (t=.6), n1 non-empty -1 -> 3, h2 exact +0 / f1 +2/3, n2 empty +0.
  assert result["best_exact"] == pytest.approx(80.0) and result["best_exact_thresh"] == 0.6
  assert result["best_f1"] == pytest.approx(80.0) and result["best_f1_thresh"] == 0.6


def test_find_best_thresh_counts_ties_as_answered_and_starts_at_zero():
  has_answer = {"a": True, "b": False}
  # Everything null is best: threshold stays at its initial 0.0.
  assert squad_eval.find_best_thresh({"a": "x", "b": "y"}, {"a": 0, "b": 0}, {"a": 1.0, "b": 0.5},
                                     has_answer) == (50.0, 0.0)
  assert squad_eval.find_best_thresh({"a": "x", "b": "y"}, {"a": 1, "b": 0}, {"a": 0.3, "b": 0.5},
                                     has_answer) == (100.0, 0.3)


def test_apply_no_ans_threshold_is_strict():
  scores = {"a": 0.5, "b": 0.0}
  thresholded = squad_eval.apply_no_ans_threshold(scores, {"a": 1.0, "b": 1.5}, {"a": True, "b": False}, 1.0)
  assert thresholded == {"a": 0.5, "b": 1.0}


# ---- real dev samples ----

def _load(name):
  with open(shared_path("squad", name), encoding="utf-8") as f:
    return json.load(f)


def test_v2_sample_gold_predictions_score_100_and_null_predictions_score_noans_share():
  data = _load("dev-v2.0-sample.json")["data"]
  qas = [qa for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  gold = {qa["id"]: qa["answers"][0]["text"] if qa["answers"] else "" for qa in qas}
  perfect = squad_eval.evaluate_v2(data, gold)
  assert perfect["exact"] == perfect["f1"] == 100.0 and perfect["total"] == len(qas) == 950
  no_answer_count = sum(1 for qa in qas if not qa["answers"])
  empty = squad_eval.evaluate_v2(data, {qa["id"]: "" for qa in qas})
  assert empty["exact"] == empty["f1"] == pytest.approx(100 * no_answer_count / 950)
  assert empty["HasAns_exact"] == 0.0 and empty["NoAns_exact"] == 100.0
  assert empty["HasAns_total"] + empty["NoAns_total"] == 950


def test_v1_sample_gold_predictions_score_100():
  data = _load("dev-v1.1-sample.json")["data"]
  gold = {qa["id"]: qa["answers"][0]["text"]
          for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]}
  assert squad_eval.evaluate_v1(data, gold) == {"exact_match": 100.0, "f1": 100.0}


# ---- command line ----

def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  return subprocess.run([sys.executable, "-m", "albert.squad_eval", *args], capture_output=True, text=True,
                        env=env, cwd=REPO_ROOT, timeout=120)


def test_cli_scores_files_and_writes_output(tmp_path):
  data_file = shared_path("squad", "dev-v2.0-sample.json")
  qas = [qa for article in _load("dev-v2.0-sample.json")["data"]
         for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  predictions = {qa["id"]: "" for qa in qas}
  null_odds = {qa["id"]: 2.0 for qa in qas}
  (tmp_path / "predictions.json").write_text(json.dumps(predictions))
  (tmp_path / "null_odds.json").write_text(json.dumps(null_odds))
  output_file = tmp_path / "eval.json"
  completed = _run_cli(f"--data_file={data_file}", f"--predictions_file={tmp_path / 'predictions.json'}",
                       f"--na_prob_file={tmp_path / 'null_odds.json'}", f"--output_file={output_file}")
  assert completed.returncode == 0, completed.stderr
  printed = json.loads(completed.stdout)
  assert printed == json.loads(output_file.read_text())
  assert printed["exact"] == pytest.approx(100 * 477 / 950)
  assert printed["best_f1_thresh"] == 0.0 and "HasAns_f1" in printed


def test_cli_reports_missing_file_in_one_line(tmp_path):
  completed = _run_cli(f"--data_file={tmp_path / 'absent.json'}", f"--predictions_file={tmp_path / 'p.json'}")
  assert completed.returncode == 2
  assert completed.stderr.strip() == f"error: --data_file not found: {tmp_path / 'absent.json'}"
