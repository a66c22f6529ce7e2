"""Exact-match and F1 scores for SQuAD 1.1 and 2.0, identical to the official evaluation scripts.

`evaluate_v1` follows the 1.1 script (a missing prediction scores 0); `evaluate_v2` follows the 2.0
script (unanswerable references, missing predictions skipped, HasAns/NoAns breakdown, the no-answer
threshold applied to `na_probs` and the best thresholds found from them). Both take the `data` list
of a SQuAD JSON file (or the whole parsed file) and a {qas_id: answer text} dict.

Command line: `python -m albert.squad_eval` (see there) scores any predictions file with these functions.
"""

import collections
import re
import string
import sys
from typing import NamedTuple

from albert.core import fileio
from albert.core.errors import UserError
from albert.io import structure
from albert.tasks.squad.examples import question_id, reference_answers

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# ---- answer comparison (shared by 1.1 and 2.0) ----

def normalize_answer(text):
  """Lowercases, drops ASCII punctuation, replaces a/an/the by spaces, collapses whitespace (in this order)."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def answer_tokens(text):
  return normalize_answer(text).split() if text else []


def exact_score(gold, prediction):
  return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold, prediction):
  """Token F1 with multiset overlap; two empty answers agree (1), one empty answer disagrees (0)."""
  gold_tokens = answer_tokens(gold)
  predicted_tokens = answer_tokens(prediction)
  if not gold_tokens or not predicted_tokens:
    return int(gold_tokens == predicted_tokens)
  overlap = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
  if overlap == 0:
    return 0
  precision = overlap / len(predicted_tokens)
  recall = overlap / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


class Reference(NamedTuple):
  qas_id: str
  texts: list          # the reference answer texts, in file order
  marked: bool         # the question carries an `is_impossible` key (a 2.0 dev set)


def references(dataset, source="SQuAD data"):
  """Every question's Reference, checked as it is read: a missing or mistyped `data`, `paragraphs`,
  `qas`, `id`, `answers` or answer `text` is a UserError naming `source` and the path in the file.

  Args:
    dataset: a parsed SQuAD file, or its `data` list.
    source: how messages name it (the file's path).
  """
  root = structure.root(dataset if isinstance(dataset, dict) else {"data": dataset}, source)
  found = []
  for article in root.field("data", list).items(record=True):
    for paragraph in article.field("paragraphs", list).items(record=True):
      for qa in paragraph.field("qas", list).items(dict, record=True):
        qas_id = question_id(qa)
        answers = reference_answers(qa.record(f"id {qas_id}"))
        found.append(Reference(qas_id, [answer["text"] for answer in answers], "is_impossible" in qa.value))
  return found


def read_dataset(path, what):
  """A parsed SQuAD file, whose top level must be an object (its questions are checked by `references`)."""
  dataset = fileio.read_json(path, what=what)
  structure.root(dataset, path).require(dict)
  return dataset


def has_references(dataset, source="SQuAD data"):
  """Whether a SQuAD file carries references to evaluate against (a dev set, not a test set); its
  references are checked (`references`) either way."""
  return any(reference.texts or reference.marked for reference in references(dataset, source))


def _percent(numerator, denominator):
  return 100.0 * numerator / denominator if denominator else 0.0


# ---- SQuAD 1.1 ----

def evaluate_v1(dataset, predictions, source="SQuAD data"):
  """Returns {"exact_match", "f1"} in percent over all questions; unanswered ones score 0."""
  total = exact = f1 = 0
  for qid, golds, _ in references(dataset, source):
    total += 1
    if qid not in predictions:
      print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
      continue
    if not golds:
      raise UserError(f"{source}: question {qid} has no reference answers: SQuAD 2.0 data needs version 2.0")
    prediction = predictions[qid]
    exact += max(exact_score(gold, prediction) for gold in golds)
    f1 += max(f1_score(gold, prediction) for gold in golds)
  return {"exact_match": _percent(exact, total), "f1": _percent(f1, total)}


# ---- SQuAD 2.0 ----

def has_answer_map(dataset, source="SQuAD data"):
  """{qas_id: whether the question has reference answers} (an empty list means unanswerable)."""
  return {qid: bool(texts) for qid, texts, _ in references(dataset, source)}


def raw_scores(dataset, predictions, source="SQuAD data"):
  """Per-question exact and F1 (max over references); questions without a prediction are skipped."""
  exact, f1 = {}, {}
  for qid, texts, _ in references(dataset, source):
    golds = [text for text in texts if normalize_answer(text)] or [""]
    if qid not in predictions:
      print(f"Missing prediction for {qid}", file=sys.stderr)
      continue
    exact[qid] = max(exact_score(gold, predictions[qid]) for gold in golds)
    f1[qid] = max(f1_score(gold, predictions[qid]) for gold in golds)
  return exact, f1


def apply_no_ans_threshold(scores, na_probs, has_answer, na_prob_thresh):
  """Scores a question as a null prediction (1 iff unanswerable) when its na_prob exceeds the threshold."""
  thresholded = {}
  for qid, score in scores.items():
    if qid not in na_probs:
      raise UserError(f"no-answer probabilities lack question {qid}")
    thresholded[qid] = float(not has_answer[qid]) if na_probs[qid] > na_prob_thresh else score
  return thresholded


def make_eval_dict(exact, f1, qids=None):
  """{"exact", "f1", "total"} over `qids` (default: every scored question)."""
  qids = list(exact) if qids is None else qids
  return collections.OrderedDict([
      ("exact", _percent(sum(exact[q] for q in qids), len(qids))),
      ("f1", _percent(sum(f1[q] for q in qids), len(qids))),
      ("total", len(qids)),
  ])


def merge_eval(main_eval, new_eval, prefix):
  for key, value in new_eval.items():
    main_eval[f"{prefix}_{key}"] = value


def find_best_thresh(predictions, scores, na_probs, has_answer):
  """The na_prob threshold maximizing the score if questions with na_prob > threshold were predicted null.

  Returns (100 * best score / #scored questions, threshold); a question exactly at the threshold
  counts as answered, like the official script.
  """
  score = best_score = sum(1 for answered in has_answer.values() if not answered)
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda q: na_probs[q]):
    if qid not in scores:
      continue
    if has_answer[qid]:
      score += scores[qid]
    elif predictions[qid]:
      score -= 1
    if score > best_score:
      best_score, best_thresh = score, na_probs[qid]
  return _percent(best_score, len(scores)), best_thresh


def find_all_best_thresh(main_eval, predictions, exact, f1, na_probs, has_answer):
  best_exact, exact_thresh = find_best_thresh(predictions, exact, na_probs, has_answer)
  best_f1, f1_thresh = find_best_thresh(predictions, f1, na_probs, has_answer)
  main_eval["best_exact"] = best_exact
  main_eval["best_exact_thresh"] = exact_thresh
  main_eval["best_f1"] = best_f1
  main_eval["best_f1_thresh"] = f1_thresh


def evaluate_v2(dataset, predictions, na_probs=None, na_prob_thresh=1.0, source="SQuAD data"):
  """The official 2.0 scores: exact/f1/total, HasAns_*/NoAns_* and, given na_probs, best_* thresholds."""
  has_answer = has_answer_map(dataset, source)
  exact_raw, f1_raw = raw_scores(dataset, predictions, source)
  probs = na_probs if na_probs is not None else {qid: 0.0 for qid in predictions}
  exact = apply_no_ans_threshold(exact_raw, probs, has_answer, na_prob_thresh)
  f1 = apply_no_ans_threshold(f1_raw, probs, has_answer, na_prob_thresh)
  result = make_eval_dict(exact, f1)
  # Only scored questions enter the breakdown: the official script would crash on a missing one.
  answerable = [qid for qid in exact if has_answer[qid]]
  unanswerable = [qid for qid in exact if not has_answer[qid]]
  if answerable:
    merge_eval(result, make_eval_dict(exact, f1, answerable), "HasAns")
  if unanswerable:
    merge_eval(result, make_eval_dict(exact, f1, unanswerable), "NoAns")
  if na_probs is not None:
    find_all_best_thresh(result, predictions, exact_raw, f1_raw, na_probs, has_answer)
  return dict(result)


def _dataset_version(dataset_json, data_file):
  version = str(dataset_json.get("version", ""))
  if version.lstrip("v").startswith("2"):
    return "2.0"
  if version.lstrip("v").startswith("1"):
    return "1.1"
  found = f"unknown SQuAD version {version[:20]!r}" if "version" in dataset_json else 'no "version" key'
  raise UserError(f"--data_file {data_file}: {found}; pass --version")


def evaluate_files(data_file, predictions_file, na_prob_file=None, version=None, na_prob_thresh=1.0):
  """Scores a predictions file against a SQuAD file; `version` None reads it from the data file."""
  dataset_json = read_dataset(data_file, "--data_file")
  predictions = _read_mapping(predictions_file, "--predictions_file", str, "{qas_id: answer text}")
  version = version or _dataset_version(dataset_json, data_file)
  if version == "1.1":
    if na_prob_file:
      raise UserError("--na_prob_file is only used with --version=2.0")
    return evaluate_v1(dataset_json, predictions, data_file)
  na_probs = _read_mapping(na_prob_file, "--na_prob_file", float, "{qas_id: no-answer score}") if na_prob_file \
      else None
  return evaluate_v2(dataset_json, predictions, na_probs, na_prob_thresh, data_file)


def _read_mapping(path, what, kind, expected):
  """A JSON object whose every value is of `kind` (answers, no-answer scores), checked by key."""
  value = fileio.read_json(path, what=what)
  if not isinstance(value, dict):
    raise UserError(f"{what} {path}: expected a JSON object {expected}, found {structure.describe_value(value)}")
  return structure.root(value, path).mapping(kind)
