"""Classification metrics in numpy, on the real examples: the original's GLUE metrics and RACE accuracy.

Accuracy, F1 of class 1, Matthews correlation, Pearson and Spearman correlation and the MSE for STS-B;
macro F1 for custom data with more than two labels; for RACE, accuracy over all questions and per level
(middle, high).
"""

import math

import numpy as np

from albert.core.errors import UserError


def accuracy(predictions, labels):
  return float(np.mean(np.asarray(predictions) == np.asarray(labels))) if len(labels) else float("nan")


def _confusion(predictions, labels):
  predictions, labels = np.asarray(predictions) == 1, np.asarray(labels) == 1
  return (int(np.sum(predictions & labels)), int(np.sum(~predictions & ~labels)),
          int(np.sum(predictions & ~labels)), int(np.sum(~predictions & labels)))


def f1_score(predictions, labels):
  """F1 of the positive class 1 (0 when there is no true or predicted positive)."""
  tp, _, fp, fn = _confusion(predictions, labels)
  return 2.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(predictions, labels):
  """The mean over classes of each class's F1, over the classes that occur in the labels or the
  predictions (scikit-learn's `f1_score(average="macro")`); NaN without examples."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if not len(labels):
    return float("nan")
  scores = []
  for label in np.union1d(predictions, labels):
    predicted, actual = predictions == label, labels == label
    tp = int(np.sum(predicted & actual))
    scores.append(2.0 * tp / (int(np.sum(predicted)) + int(np.sum(actual))))
  return float(np.mean(scores))


def matthews_corrcoef(predictions, labels):
  """Matthews correlation of binary predictions; 0 when a marginal is empty (the usual convention)."""
  tp, tn, fp, fn = _confusion(predictions, labels)
  denominator = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(x, y):
  """Pearson correlation; 0 when either side is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x, y = x - x.mean(), y - y.mean()
  denominator = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
  return float(np.sum(x * y) / denominator) if denominator else 0.0


def _ranks(values):
  """1-based ranks with ties sharing their average rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values), np.float64)
  start = 0
  while start < len(values):
    end = start
    while end + 1 < len(values) and values[order[end + 1]] == values[order[start]]:
      end += 1
    ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
    start = end + 1
  return ranks


def spearman(x, y):
  """Spearman rank correlation (Pearson of the tie-averaged ranks)."""
  return pearson(_ranks(x), _ranks(y))


def per_example_losses(logits, labels, is_regression):
  """Float64 losses as the head computes them: squared error, or softmax cross-entropy."""
  logits = np.asarray(logits, np.float64)
  if is_regression:
    return (logits[:, 0] - np.asarray(labels, np.float64)) ** 2
  top = logits.max(axis=1, keepdims=True)
  log_normalizer = top[:, 0] + np.log(np.sum(np.exp(logits - top), axis=1))
  return log_normalizer - logits[np.arange(len(logits)), np.asarray(labels, np.int64)]


def loss_metrics(losses, real, batch_size):
  """`eval_loss` (mean over real examples) and the Estimator's `loss` (mean of per-batch means)."""
  batch_means = [np.mean(losses[i:i + batch_size]) for i in range(0, len(losses), batch_size)]
  return {"eval_loss": float(np.mean(losses[real])) if real.any() else float("nan"),
          "loss": float(np.mean(batch_means))}


def classifier_scores(task, outputs, batch_size):
  """The task's eval metrics (docs/compatibility.md §10.3, §11.1) from stacked predict outputs."""
  real = outputs["is_real_example"] > 0
  labels = outputs["label_ids"]
  scores = loss_metrics(per_example_losses(outputs["logits"], labels, task.is_regression), real, batch_size)
  predictions, labels = outputs["predictions"][real], labels[real]
  if task.is_regression:
    scores.update(pearson=pearson(predictions, labels), spearman=spearman(predictions, labels),
                  MSE=float(np.mean((predictions.astype(np.float64) - labels) ** 2)))
    return scores
  scores["eval_accuracy"] = accuracy(predictions, labels)
  if "f1" in task.extra_metrics:
    scores["f1"] = f1_score(predictions, labels)
  if "macro_f1" in task.extra_metrics:
    scores["macro_f1"] = macro_f1(predictions, labels)
  if "matthew_corr" in task.extra_metrics:
    scores["matthew_corr"] = matthews_corrcoef(predictions, labels)
  return scores


def race_scores(outputs, levels, batch_size):
  """eval_accuracy / eval_loss / loss over all questions, plus eval_accuracy_<level> per level present."""
  if len(levels) != len(outputs["predictions"]):
    raise UserError(f"the RACE feature file holds {len(outputs['predictions'])} questions but the data has "
                    f"{len(levels)}; delete the stale --eval_file/--predict_file cache")
  real = outputs["is_real_example"] > 0
  labels = outputs["label_ids"]
  scores = loss_metrics(per_example_losses(outputs["logits"], labels, False), real, batch_size)
  correct = outputs["predictions"] == labels
  scores["eval_accuracy"] = float(np.mean(correct[real]))
  levels = np.asarray(levels)
  for level in dict.fromkeys(levels.tolist()):  # in reading order: middle, then high
    selected = real & (levels == level)
    if selected.any():
      scores[f"eval_accuracy_{level}"] = float(np.mean(correct[selected]))
  return scores
