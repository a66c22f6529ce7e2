"""Judgements over per-example records: cluster and title summaries, suspicious labels, near-misses.

A record is a dict with at least `id`, `title`, `question`, `references` (list of texts),
`prediction`, `exact_match` (0/1), `f1` (0..1), `loss`, `confidence` and `cluster`.
"""

import collections
import re
import unicodedata

import numpy as np

from albert.tasks.squad import evaluate as squad_eval

OPENING_WORDS = 2
OPENINGS_SHOWN = 3
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def question_opening(question, words=OPENING_WORDS):
  """The first words of a question, capitalized as a label ("What year", "How many")."""
  found = _WORD.findall(question.strip())[:words]
  return " ".join(found).capitalize() if found else "(empty)"


def _mean(values):
  return float(np.mean(values)) if len(values) else float("nan")


def _group_summary(records):
  return {"size": len(records), "mean_loss": _mean([r["loss"] for r in records]),
          "exact_match": 100.0 * _mean([r["exact_match"] for r in records]),
          "f1": 100.0 * _mean([r["f1"] for r in records])}


def cluster_summaries(records):
  """One summary per cluster (ascending id): size, mean loss, EM/F1 in percent, top question openings."""
  by_cluster = collections.defaultdict(list)
  for record in records:
    by_cluster[record["cluster"]].append(record)
  summaries = []
  for cluster in sorted(by_cluster):
    members = by_cluster[cluster]
    openings = collections.Counter(question_opening(r["question"]) for r in members)
    summaries.append({"cluster": cluster, **_group_summary(members),
                      "openings": [[text, count] for text, count in openings.most_common(OPENINGS_SHOWN)]})
  return summaries


def title_ranking(records):
  """Per-title summaries, highest mean loss first: where the model struggles by article."""
  by_title = collections.defaultdict(list)
  for record in records:
    by_title[record["title"]].append(record)
  ranking = [{"title": title, **_group_summary(members)} for title, members in by_title.items()]
  return sorted(ranking, key=lambda item: (-item["mean_loss"], item["title"]))


def suspicious_labels(records, min_confidence, loss_quantile, limit):
  """Likely wrong labels: the model is confident (>= min_confidence), its answer shares no token with
  any reference (F1 0) and its loss is at or above the `loss_quantile` of all losses; highest loss first.
  """
  if not records:
    return []
  loss_floor = float(np.quantile([r["loss"] for r in records], loss_quantile))
  flagged = [r for r in records
             if r["f1"] == 0 and r["confidence"] >= min_confidence and r["loss"] >= loss_floor]
  flagged.sort(key=lambda r: (-r["loss"], -r["confidence"], r["id"]))
  return flagged[:limit]


def _strip_punctuation(text):
  """Casefolded text without any Unicode punctuation (the official rule drops only ASCII punctuation)."""
  kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.casefold())
  return " ".join(kept.split())


def near_miss_kind(prediction, references):
  """Why a prediction scored EM 0 although it nearly matches a reference, or None.

  "punctuation": equal once all Unicode punctuation (curly quotes, dashes, ...) and case are ignored;
  "boundary": the normalized answers differ by one word at either edge.
  """
  golds = [g for g in references if g.strip()]
  if not prediction.strip() or not golds or any(squad_eval.exact_score(g, prediction) for g in golds):
    return None
  if any(_strip_punctuation(g) == _strip_punctuation(prediction) for g in golds):
    return "punctuation"
  predicted = squad_eval.answer_tokens(prediction)
  for gold in golds:
    reference = squad_eval.answer_tokens(gold)
    shorter, longer = sorted((predicted, reference), key=len)
    if shorter and len(longer) - len(shorter) == 1 and shorter in (longer[:-1], longer[1:]):
      return "boundary"
  return None


def near_misses(records):
  """Records whose prediction nearly matches a reference, with `kind`; punctuation cases first."""
  found = []
  for record in records:
    kind = near_miss_kind(record["prediction"], record["references"])
    if kind:
      found.append({**record, "kind": kind})
  return sorted(found, key=lambda r: (r["kind"] != "punctuation", r["id"]))
