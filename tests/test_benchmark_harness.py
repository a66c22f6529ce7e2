"""The benchmark harness: a contender that takes far too long is killed and recorded, the others are timed.

The contenders here are cheap fakes (sleeps and counters): what is tested is the round-robin over
one process per contender, not a model.
"""

import itertools
import multiprocessing
import time

from benchmarks.harness import Contender, round_robin, with_rates

TIME_LIMIT = 5.0  # far above a fake's set-up in a fresh process (about 0.5 s), far below the slow pass


def counting_contender(slow_from_pass=None):
  """Passes take 10 ms and return 0, 1, 2, ...; from pass `slow_from_pass` on, each takes 10 minutes."""
  passes = itertools.count()

  def run():
    number = next(passes)
    time.sleep(600 if slow_from_pass is not None and number >= slow_from_pass else 0.01)
    return number
  return run


def broken_contender():
  raise ValueError("no such model")


def test_a_contender_over_the_time_limit_is_recorded_and_the_others_go_on():
  contenders = {"steady": Contender(counting_contender, (), ()),
                "cliff": Contender(counting_contender, (1,), ()),  # warm-up pass fast, first timed pass slow
                "broken": Contender(broken_contender, (), ()),
                "after": Contender(counting_contender, (), ())}
  started = time.perf_counter()
  timings, first = round_robin(contenders, warmup=1, repeats=3, time_limit=TIME_LIMIT)
  elapsed = time.perf_counter() - started
  assert list(timings) == list(contenders)
  assert timings["cliff"] == {"timed_out": TIME_LIMIT, "during": "round 1"}
  assert timings["broken"] == {"failed": "ValueError: no such model", "during": "set-up"}
  for name in ("steady", "after"):
    assert len(timings[name]["seconds"]) == 3 and 0.01 <= timings[name]["median_seconds"] < TIME_LIMIT
    assert first[name] == 0
  assert elapsed < 600  # the sleeping pass was cut short, not waited for
  assert multiprocessing.active_children() == []  # every contender's process has ended
  rated = with_rates(timings, examples=4, flops=1e9)
  assert rated["cliff"] == {"timed_out": TIME_LIMIT, "during": "round 1"}
  assert rated["steady"]["examples_per_sec"] == round(4 / rated["steady"]["median_seconds"], 4)
