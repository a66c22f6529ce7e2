"""Progress lines for long work: one duration format (H:MM:SS) and one done/total/rate/ETA line.

Every long-running part of the suite (feature conversion, pretraining data, training, prediction,
indexing, the quickstart) reports through here, so a user reads one format everywhere:
`converting: 1200/10570 questions (812.3 questions/s, ETA 0:00:11), 1250 features`.
"""

import math
import time

from absl import logging


def format_duration(seconds):
  """`H:MM:SS` (hours unbounded: `26:03:04`), or `unknown` for an infinite or undefined time."""
  if seconds is None or not math.isfinite(seconds):
    return "unknown"
  minutes, seconds = divmod(int(round(max(seconds, 0.0))), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


def eta_seconds(done, total, rate):
  """Seconds left at `rate` units/second, or None when it cannot be known."""
  if total is None or rate <= 0:
    return None
  return max(total - done, 0) / rate


def _number(value):
  return f"{value:.1f}" if isinstance(value, float) else str(value)


class ProgressLog:
  """Logs `what: done/total unit (rate unit/s, ETA H:MM:SS)extra` at most every `every_seconds`.

  `total` None (an unknown amount of work) leaves out the total and the ETA.
  """

  def __init__(self, what, unit, total=None, every_seconds=30.0):
    self.what, self.unit, self.total, self.every_seconds = what, unit, total, every_seconds
    self.started = self.last_logged = time.monotonic()

  @property
  def elapsed(self):
    return time.monotonic() - self.started

  def line(self, done, extra=""):
    rate = done / max(self.elapsed, 1e-9)
    amount = _number(done) if self.total is None else f"{_number(done)}/{_number(self.total)}"
    timing = f"{rate:.1f} {self.unit}/s"
    if self.total is not None:
      timing += f", ETA {format_duration(eta_seconds(done, self.total, rate))}"
    return f"{self.what}: {amount} {self.unit} ({timing}){extra}"

  def update(self, done, extra="", force=False):
    """Logs the line if `every_seconds` have passed since the last one (or `force`); returns whether."""
    now = time.monotonic()
    if not force and now - self.last_logged < self.every_seconds:
      return False
    self.last_logged = now
    logging.info("%s", self.line(done, extra))
    return True
