"""SQuAD post-processing: model outputs -> n-best answers -> predictions.json / nbest / null_odds files.

Inputs follow the SQuAD contract: the examples (anything with `qas_id` and `paragraph_text`), the
per-window `FeatureMeta`s in example order (from the predict "left" file) and one raw result dict per
window. Everything is consumed as a stream, one example at a time: results are expected in feature
order and only out-of-order ones are buffered.

Candidate rules, n-best, fallbacks and the v2 null score follow the original release
(docs/compatibility.md §6.4).
v2 dev runs tune the null threshold in two passes (`tune_threshold_v2`); see its docstring for the two
scoring rules it reports.
"""

import dataclasses
import json
import math
import os

import numpy as np

from albert.core import fileio
from albert.core.errors import UserError
from albert.tasks.squad import evaluate as squad_eval

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"

NO_FEATURE_SCORE_NULL = 1000000.0  # v2 score_null of an example without any window
# The single (text, score) n-best entry when no candidate span survives the filters, per version.
FALLBACK_V1 = ("empty", 0.0)
FALLBACK_V2 = ("", -1e6)
THRESHOLD_RULES = ("original", "tuned")


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A (start, end) answer span in doc-token indices of one window, with its two scores."""
  start: int
  end: int
  start_score: float
  end_score: float
  doc_char_spans: list

  @property
  def score(self):
    return self.start_score + self.end_score

  def text(self, paragraph_text):
    start, end = self.char_span(paragraph_text)
    return paragraph_text[start:end]

  def char_span(self, paragraph_text):
    """(start, end) of the answer in `paragraph_text`: the tokens' raw span without its edge whitespace."""
    start, end = self.doc_char_spans[self.start][0], self.doc_char_spans[self.end][1]
    raw = paragraph_text[start:end]
    stripped = raw.lstrip()
    start += len(raw) - len(stripped)
    return start, start + len(stripped.rstrip())


@dataclasses.dataclass(frozen=True)
class NbestEntry:
  """One n-best answer; `char_start`/`char_end` locate `text` in the context (None for a fallback entry,
  which no span stands behind). The prediction files hold only the original four fields."""
  text: str
  probability: float
  start_log_prob: float
  end_log_prob: float
  char_start: int | None = None
  char_end: int | None = None

  def to_json(self):
    return {"text": self.text, "probability": self.probability,
            "start_log_prob": self.start_log_prob, "end_log_prob": self.end_log_prob}


@dataclasses.dataclass(frozen=True)
class ExamplePrediction:
  """The n-best list of one question; `score_diff` (v2 only) is its null score, a raw cls logit."""
  qas_id: str
  nbest: list
  score_diff: float = None


# ---- candidates of one window ----

def _is_valid_span(meta, start, end, max_answer_length):
  """The original's filters on doc-relative (start, end)."""
  window_length = len(meta.doc_char_spans)
  if start < 0 or start >= window_length or end >= window_length:
    return False
  if not meta.token_is_max_context[start]:
    return False
  return start <= end and end - start + 1 <= max_answer_length


def _top_indices(logits, n):
  """Indices of the n largest values, descending; equal values keep their position order."""
  return np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")[:n]


def candidates_v1(meta, result, n_best_size, max_answer_length):
  """Pairs of the n_best_size best start and end logits that form a valid span (scores: raw logits)."""
  start_logits = np.asarray(result["start_logits"], dtype=np.float32)
  end_logits = np.asarray(result["end_logits"], dtype=np.float32)
  candidates = []
  for start_index in _top_indices(start_logits, n_best_size):
    for end_index in _top_indices(end_logits, n_best_size):
      start, end = int(start_index) - meta.doc_offset, int(end_index) - meta.doc_offset
      if _is_valid_span(meta, start, end, max_answer_length):
        candidates.append(Candidate(start, end, float(start_logits[start_index]),
                                    float(end_logits[end_index]), meta.doc_char_spans))
  return candidates


def candidates_v2(meta, result, start_n_top, end_n_top, max_answer_length):
  """The valid spans of the start_n_top x end_n_top beam (scores: log-probabilities)."""
  start_log_probs = np.asarray(result["start_top_log_probs"], dtype=np.float32)
  start_indices = np.asarray(result["start_top_index"])
  end_log_probs = np.asarray(result["end_top_log_probs"], dtype=np.float32)
  end_indices = np.asarray(result["end_top_index"])
  candidates = []
  for i in range(start_n_top):
    for j in range(end_n_top):
      beam = i * end_n_top + j
      start = int(start_indices[i]) - meta.doc_offset
      end = int(end_indices[beam]) - meta.doc_offset
      if _is_valid_span(meta, start, end, max_answer_length):
        candidates.append(Candidate(start, end, float(start_log_probs[i]), float(end_log_probs[beam]),
                                    meta.doc_char_spans))
  return candidates


# ---- n-best of one example ----

def _softmax(scores):
  top = max(scores)
  exps = [math.exp(score - top) for score in scores]
  total = sum(exps)
  return [e / total for e in exps]


def build_nbest(paragraph_text, candidates, n_best_size, fallback):
  """The n_best_size best candidates by start + end score, distinct by text, with softmax probabilities.

  `fallback` = (text, score) is the single entry used when no candidate survives.
  """
  kept = []
  seen_texts = set()
  for candidate in sorted(candidates, key=lambda c: c.score, reverse=True):
    if len(kept) >= n_best_size:
      break
    char_span = candidate.char_span(paragraph_text)
    text = paragraph_text[char_span[0]:char_span[1]]
    if text in seen_texts:
      continue
    seen_texts.add(text)
    kept.append((text, candidate.start_score, candidate.end_score, char_span))
  if not kept:
    text, score = fallback
    kept = [(text, score, score, (None, None))]
  probabilities = _softmax([start + end for _, start, end, _ in kept])
  return [NbestEntry(text, probability, start, end, *char_span)
          for (text, start, end, char_span), probability in zip(kept, probabilities)]


# ---- joining examples, metas and results ----

def _scalar(value, dtype):
  """A Python number from a numpy scalar or one-element array (float32 values stay float32-exact)."""
  return np.asarray(value, dtype=dtype).item()


def _unique_id(result):
  return _scalar(result["unique_ids"], np.int64)


class _ResultLookup:
  """Finds results by unique_id in a stream that is normally in feature order; buffers the others."""

  def __init__(self, results):
    self._results = iter(results)
    self._pending = {}

  def pop(self, unique_id):
    if unique_id in self._pending:
      return self._pending.pop(unique_id)
    for result in self._results:
      found = _unique_id(result)
      if found == unique_id:
        return result
      self._pending[found] = result
    raise UserError(f"no model output for feature unique_id {unique_id}: the predict feature file and "
                    "--predict_feature_left_file do not describe the same features")


def group_by_example(examples, metas, results):
  """Yields (example, [(meta, result), ...]) for every example in order (an empty list if it has no window)."""
  lookup = _ResultLookup(results)
  metas = iter(metas)
  meta = next(metas, None)
  example_count = 0
  for example_index, example in enumerate(examples):
    example_count += 1
    windows = []
    while meta is not None and meta.example_index <= example_index:
      if meta.example_index < example_index:
        raise UserError(f"--predict_feature_left_file: feature {meta.unique_id} is out of example order")
      windows.append((meta, lookup.pop(meta.unique_id)))
      meta = next(metas, None)
    yield example, windows
  if meta is not None:
    raise UserError(f"--predict_feature_left_file: feature {meta.unique_id} refers to example "
                    f"{meta.example_index}, but there are only {example_count} examples")


def predict_v1(examples, metas, results, n_best_size=20, max_answer_length=30):
  """Yields the ExamplePrediction of every example; without a valid span the answer is "empty"."""
  for example, windows in group_by_example(examples, metas, results):
    candidates = [c for meta, result in windows
                  for c in candidates_v1(meta, result, n_best_size, max_answer_length)]
    nbest = build_nbest(example.paragraph_text, candidates, n_best_size, fallback=FALLBACK_V1)
    yield ExamplePrediction(example.qas_id, nbest)


def predict_v2(examples, metas, results, n_best_size=20, max_answer_length=30, start_n_top=5, end_n_top=5):
  """Yields the ExamplePrediction of every example with score_diff = min cls_logits over its windows."""
  for example, windows in group_by_example(examples, metas, results):
    candidates = [c for meta, result in windows
                  for c in candidates_v2(meta, result, start_n_top, end_n_top, max_answer_length)]
    nbest = build_nbest(example.paragraph_text, candidates, n_best_size, fallback=FALLBACK_V2)
    score_null = min((_scalar(result["cls_logits"], np.float32) for _, result in windows),
                     default=NO_FEATURE_SCORE_NULL)
    yield ExamplePrediction(example.qas_id, nbest, score_null)


# ---- output files ----

@dataclasses.dataclass
class WrittenPredictions:
  """What the answers depend on once the n-best file is written: best span text and null score per question."""
  best_texts: dict
  score_diffs: dict = None

  def answers(self, threshold=None):
    if self.score_diffs is None or threshold is None:
      return dict(self.best_texts)
    return {qid: "" if null_answer_wins(self.score_diffs[qid], threshold) else text
            for qid, text in self.best_texts.items()}


def null_answer_wins(score_diff, threshold):
  """The v2 rule: a question is answered "" when its null score diff reaches the threshold (None: never)."""
  return threshold is not None and not score_diff < threshold


def _json_member(key, value):
  """One `"key": value` member of a JSON object as json.dump(indent=4) writes it inside the top level."""
  return json.dumps({key: value}, indent=4, ensure_ascii=False)[2:-2]


def _write_json_stream(path, items):
  """Writes {key: value for key, value in items} like fileio.write_json, without holding the dict."""
  with fileio.atomic_open(path) as f:
    first = True
    for key, value in items:
      f.write("{\n" if first else ",\n")
      f.write(_json_member(key, value))
      first = False
    f.write("{}\n" if first else "\n}\n")


def write_prediction_files(output_dir, example_predictions, with_null_odds, threshold=None):
  """Streams the n-best file, then writes predictions.json (and null_odds.json if `with_null_odds`, v2).

  Returns the WrittenPredictions from which predictions.json can be rewritten for another threshold.
  """
  written = WrittenPredictions({}, {} if with_null_odds else None)

  def nbest_items():
    for prediction in example_predictions:
      written.best_texts[prediction.qas_id] = prediction.nbest[0].text
      if with_null_odds:
        written.score_diffs[prediction.qas_id] = prediction.score_diff
      yield prediction.qas_id, [entry.to_json() for entry in prediction.nbest]

  _write_json_stream(os.path.join(output_dir, NBEST_FILE), nbest_items())
  fileio.write_json(os.path.join(output_dir, PREDICTIONS_FILE), written.answers(threshold))
  if with_null_odds:
    fileio.write_json(os.path.join(output_dir, NULL_ODDS_FILE), written.score_diffs)
  return written


def write_predictions_v1(output_dir, examples, metas, results, n_best_size=20, max_answer_length=30):
  """v1 predictions.json and nbest_predictions.json (score fields are raw logits, like the original)."""
  predictions = predict_v1(examples, metas, results, n_best_size, max_answer_length)
  return write_prediction_files(output_dir, predictions, with_null_odds=False)


def write_predictions_v2(output_dir, examples, metas, results, n_best_size=20, max_answer_length=30,
                         start_n_top=5, end_n_top=5, null_score_diff_threshold=None):
  """v2 predictions.json, nbest_predictions.json and null_odds.json; threshold None always answers a span."""
  predictions = predict_v2(examples, metas, results, n_best_size, max_answer_length, start_n_top, end_n_top)
  return write_prediction_files(output_dir, predictions, with_null_odds=True,
                                threshold=null_score_diff_threshold)


def tune_threshold_v2(output_dir, written, dataset, threshold_rule="original"):
  """Picks the null threshold on this dev set, rewrites predictions.json with it and scores the result.

  Pass 1 scores the span-only answers `written` was made with (threshold None); its best-F1 threshold
  (find_best_thresh over the null scores) becomes `null_score_diff_threshold` and predictions.json is
  rewritten with it (a question whose null score equals the threshold is answered "", like the
  original). nbest_predictions.json and null_odds.json do not depend on the threshold.

  Every score describes the final files: `tuned_exact`/`tuned_f1` are the official 2.0 script on
  predictions.json alone; `original_exact`/`original_f1` add `--na_prob_file=null_odds.json` with the
  script's default na_prob_thresh 1.0, which the original release applied to raw logits (docs/compatibility.md,
  quirk 13) and
  which its published numbers use. `threshold_rule` picks which pair fills `exact`/`f1` and the
  HasAns_/NoAns_ breakdown; the default "original" keeps results comparable with published ones.
  `best_exact`, `best_f1` and their thresholds are pass 1's, the numbers the threshold was chosen from.
  """
  if threshold_rule not in THRESHOLD_RULES:
    raise UserError(f"threshold_rule must be one of {', '.join(THRESHOLD_RULES)}, got {threshold_rule!r}")
  span_answers = written.answers(None)
  exact_raw, f1_raw = squad_eval.raw_scores(dataset, span_answers)
  pass1 = {}
  squad_eval.find_all_best_thresh(pass1, span_answers, exact_raw, f1_raw, written.score_diffs,
                                  squad_eval.has_answer_map(dataset))
  threshold = pass1["best_f1_thresh"]
  answers = written.answers(threshold)
  fileio.write_json(os.path.join(output_dir, PREDICTIONS_FILE), answers)
  original = squad_eval.evaluate_v2(dataset, answers, written.score_diffs, na_prob_thresh=1.0)
  tuned = squad_eval.evaluate_v2(dataset, answers)
  chosen = original if threshold_rule == "original" else tuned
  scores = {key: value for key, value in chosen.items() if not key.startswith("best_")}
  scores.update(null_score_diff_threshold=threshold,
                original_exact=original["exact"], original_f1=original["f1"],
                tuned_exact=tuned["exact"], tuned_f1=tuned["f1"], **pass1)
  return scores
