"""Allowed ranges of numeric settings and checks of path settings, with one phrasing for every violation.

A violation reads `flag --train_batch_size=0: must be >= 1`: the flag, its value, the allowed range.
The flag groups (`albert.cli.flags`) attach these bounds to flag definitions, so absl checks them while
parsing the command line, before anything is read or written; library code (the trainer, benchmarks)
checks its own arguments with `check` and says the same thing in the same words.
"""

import dataclasses
import math
import os

from albert.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Bound:
  """An interval of allowed values; `low`/`high` None means unbounded on that side."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False

  def contains(self, value):
    if isinstance(value, float) and math.isnan(value):
      return False
    if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
      return False
    return self.high is None or (value < self.high or (not self.high_open and value == self.high))

  def describe(self):
    if self.high is None:
      return f"{'>' if self.low_open else '>='} {_number(self.low)}"
    if self.low is None:
      return f"{'<' if self.high_open else '<='} {_number(self.high)}"
    return (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
            f"{')' if self.high_open else ']'}")


def _number(value):
  return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Bound(low=0, low_open=True)                   # rates, epochs: > 0
AT_LEAST_ONE = Bound(low=1)                              # batch sizes, cadences, counts of things
NON_NEGATIVE = Bound(low=0)                              # step counts, warmup, optional counts
FRACTION = Bound(low=0, high=1)                          # proportions: [0, 1]
DROPOUT = Bound(low=0, high=1, high_open=True)           # dropout rates: [0, 1)
OPEN_FRACTION = Bound(low=0, high=1, low_open=True)      # probabilities that must be able to happen: (0, 1]


def at_least(low):
  return Bound(low=low)


def violation(name, value, requirement):
  """The one phrasing of a bad setting."""
  return f"flag --{name}={value}: must be {requirement}"


def check(name, value, bound):
  """Raises a UserError when `value` (None always passes) lies outside `bound`."""
  if value is not None and not bound.contains(value):
    raise UserError(violation(name, value, bound.describe()))
  return value


def require(condition, name, value, requirement):
  """Raises a UserError in the one phrasing unless `condition` holds (cross-setting rules)."""
  if not condition:
    raise UserError(violation(name, value, requirement))


# ---- paths ----

def _parent_problem(path):
  """Why files cannot be created at `path` (its nearest existing ancestor is a file or unwritable)."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return f"{parent} is a file, not a directory"
  if not os.access(parent, os.W_OK | os.X_OK):
    return f"{parent} is not writable"
  return None


def check_output_directory(name, path):
  """`--name` must name a directory that exists or can be created (not a file, not in a read-only place)."""
  if not path or "://" in path:
    return path
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"flag --{name}={path}: is a file, but a directory is needed")
  problem = None if os.path.isdir(path) else _parent_problem(path)
  if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
    problem = f"{path} is not writable"
  if problem:
    raise UserError(f"flag --{name}={path}: cannot write there: {problem}")
  return path


def check_output_file(name, path):
  """`--name` must name a file that can be written (not a directory, not in a read-only place)."""
  if not path or "://" in path:
    return path
  if os.path.isdir(path):
    raise UserError(f"flag --{name}={path}: is a directory, but a file is needed")
  problem = _parent_problem(path)
  if problem:
    raise UserError(f"flag --{name}={path}: cannot write there: {problem}")
  return path
