"""Scoring checkpoints and keeping the best one: what every runner's evaluation shares.

The original scripts polled `output_dir`, evaluated each new `model.ckpt-<step>`, copied the best to
`model.ckpt-best` and logged everything to `eval_results.txt`. Here the same bookkeeping runs once over
the checkpoints a run kept (no polling sleeps), and the final scores also go to a JSON file.
"""

import math
import os

from absl import logging

from albert.core import fileio
from albert.io import checkpoint as checkpoints

BEST_CHECKPOINT = "model.ckpt-best"
EVAL_RESULTS_TEXT = "eval_results.txt"
EVAL_RESULTS_JSON = "eval_results.json"


def checkpoints_to_evaluate(output_dir, evaluate_all):
  """The checkpoints of `output_dir` to score: every kept one (ascending) if `evaluate_all`, else the latest."""
  found = checkpoints.CheckpointManager(output_dir).checkpoints()
  return found if evaluate_all else found[-1:]


class BestCheckpointTracker:
  """Records each checkpoint's scores and keeps a copy of the best one (by `key`) as `model.ckpt-best`."""

  def __init__(self, output_dir, key, higher_is_better=True, copy_best=True):
    self.output_dir, self.key = output_dir, key
    self.higher_is_better, self.copy_best = higher_is_better, copy_best
    self.evaluated = []  # (prefix, global step, scores, was best when evaluated)
    self.best = None

  def _better(self, value):
    if self.best is None:
      return True
    if value is None or (isinstance(value, float) and math.isnan(value)):
      return False
    best_value = self.best[2][self.key]
    return value > best_value if self.higher_is_better else value < best_value

  def add(self, prefix, global_step, scores):
    """Records the scores of `prefix`; returns True if it is the new best (and copies it if asked)."""
    is_best = self._better(scores[self.key])
    self.evaluated.append((prefix, global_step, scores, is_best))
    if is_best:
      self.best = (prefix, global_step, scores)
      if self.copy_best:
        checkpoints.copy_checkpoint(prefix, os.path.join(self.output_dir, BEST_CHECKPOINT))
    return is_best

  @property
  def last_is_best(self):
    return bool(self.evaluated) and self.evaluated[-1][0] == self.best[0]

  def write(self, results_dir=None, extra=None):
    """Writes eval_results.txt (the original's layout) and eval_results.json (the best's scores + history)."""
    results_dir = results_dir or self.output_dir
    lines, best_value = [], None
    for prefix, step, scores, is_best in self.evaluated:
      lines.append(f"evaluated {prefix} (global step {step})")
      lines.extend(f"{name} = {scores[name]}" for name in sorted(scores))
      if is_best:
        best_value = scores[self.key]
        if self.copy_best:
          lines.append(f"saved {prefix} to {os.path.join(self.output_dir, BEST_CHECKPOINT)}")
      lines.append(f"best {self.key} = {best_value}")
      lines.append("=" * 50)
    best_prefix, best_step, best_scores = self.best
    lines.extend(f"{name} = {best_scores[name]}" for name in sorted(best_scores))
    fileio.write_text(os.path.join(results_dir, EVAL_RESULTS_TEXT),
                      "\n".join(lines) + f"\nbest perf happened at step: {best_step}")
    history = [{"checkpoint": prefix, "global_step": step, **scores}
               for prefix, step, scores, _ in self.evaluated]
    summary = {"checkpoint": best_prefix, "global_step": best_step, **best_scores, **(extra or {}),
               "history": history}
    fileio.write_json(os.path.join(results_dir, EVAL_RESULTS_JSON), summary)
    logging.info("scores of %s (step %d): %s", best_prefix, best_step,
                 ", ".join(f"{k}={v:.4f}" for k, v in best_scores.items() if isinstance(v, float)))
    return summary


def evaluate_checkpoints(model_trainer, output_dir, score, key, *, evaluate_all=True, init_checkpoint=None,
                         copy_best=True, finish_on_best=False):
  """Scores the checkpoints kept in `output_dir` (every one, ascending, or the latest) and tracks the best.

  Without checkpoints it scores `init_checkpoint` (never copied to model.ckpt-best); without either it
  is a UserError. `score(prefix)` evaluates the trainer's current weights and returns a dict holding
  `key`. With `finish_on_best`, the best checkpoint is restored and scored again at the end if it was
  not the last one, so files `score` writes describe the best. Returns the BestCheckpointTracker
  (the caller writes it).
  """
  candidates = checkpoints_to_evaluate(output_dir, evaluate_all)
  tracker = BestCheckpointTracker(output_dir, key=key, copy_best=copy_best and bool(candidates))
  if not candidates:
    prefix = model_trainer.restore_for_inference(init_checkpoint=init_checkpoint)
    tracker.add(prefix, model_trainer.global_step, score(prefix))
  for prefix in candidates:
    model_trainer.restore_for_inference(checkpoint=prefix)
    scores = score(prefix)
    logging.info("%s: %s = %s", prefix, key, scores[key])
    tracker.add(prefix, model_trainer.global_step, scores)
  if finish_on_best and not tracker.last_is_best:
    model_trainer.restore_for_inference(checkpoint=tracker.best[0])
    score(tracker.best[0])
  return tracker


def best_checkpoint(output_dir):
  """`model.ckpt-best` of output_dir if an evaluation made one, else None (the latest is used)."""
  prefix = os.path.join(output_dir, BEST_CHECKPOINT)
  return prefix if checkpoints.checkpoint_exists(prefix) else None
