"""Shared plumbing: one duration format and progress line, the ordered worker pool, bounds and path checks."""

import os

import pytest

from albert.core import bounds
from albert.core.errors import UserError
from albert.core.progress import ProgressLog, format_duration
from albert.core.streams import WorkerPool, batched


def test_one_duration_format():
  assert format_duration(0) == "0:00:00"
  assert format_duration(59.6) == "0:01:00"
  assert format_duration(3723) == "1:02:03"
  assert format_duration(26 * 3600 + 184) == "26:03:04"  # hours are not folded into days
  assert format_duration(float("inf")) == format_duration(None) == "unknown"


def test_progress_line_has_done_total_rate_and_eta(monkeypatch):
  now = [100.0]
  monkeypatch.setattr("albert.core.progress.time.monotonic", lambda: now[0])
  progress = ProgressLog("converting", "questions", total=300)
  now[0] = 110.0
  assert progress.line(100, ", 120 features") == (
      "converting: 100/300 questions (10.0 questions/s, ETA 0:00:20), 120 features")
  unknown_total = ProgressLog("predicting", "examples")
  now[0] = 112.0
  assert unknown_total.line(5) == "predicting: 5 examples (2.5 examples/s)"


def _square(offset, item):
  return (item + offset) ** 2


def _process_id(state, item):
  return os.getpid()


def test_worker_pool_keeps_input_order_with_any_number_of_workers():
  items = list(range(40))
  expected = [(item + 3) ** 2 for item in items]
  with WorkerPool(int, (3,), num_workers=1) as inline:
    assert list(inline.map(_square, items)) == expected
  with WorkerPool(int, (3,), num_workers=2, chunk_size=3, chunks_in_flight=2) as pool:
    assert list(pool.map(_square, iter(items))) == expected
    assert os.getpid() not in set(pool.map(_process_id, range(6)))  # the work ran in the workers


def test_batched():
  assert list(batched(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_bounds_have_one_phrasing():
  assert bounds.POSITIVE.describe() == "> 0" and bounds.AT_LEAST_ONE.describe() == ">= 1"
  assert bounds.DROPOUT.describe() == "in [0, 1)" and bounds.OPEN_FRACTION.describe() == "in (0, 1]"
  assert not bounds.POSITIVE.contains(0.0) and not bounds.FRACTION.contains(float("nan"))
  with pytest.raises(UserError, match=r"^flag --learning_rate=-0.001: must be > 0$"):
    bounds.check("learning_rate", -0.001, bounds.POSITIVE)
  assert bounds.check("num_gpus", None, bounds.NON_NEGATIVE) is None  # unset optional values pass


def test_output_paths_are_checked_before_anything_is_written(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  with pytest.raises(UserError, match=r"^flag --output_dir=.*a_file: is a file, but a directory is needed$"):
    bounds.check_output_directory("output_dir", str(a_file))
  with pytest.raises(UserError, match=r"^flag --export_dir=.*: cannot write there: .*a_file is a file"):
    bounds.check_output_directory("export_dir", str(a_file / "below"))
  with pytest.raises(UserError, match=r"^flag --output_file=.*: is a directory, but a file is needed$"):
    bounds.check_output_file("output_file", str(tmp_path))
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o500)
  try:
    if not os.access(read_only, os.W_OK):  # root may write anywhere
      with pytest.raises(UserError, match="is not writable"):
        bounds.check_output_directory("output_dir", str(read_only / "run"))
  finally:
    read_only.chmod(0o700)
  assert bounds.check_output_directory("output_dir", str(tmp_path / "new" / "run"))  # creatable is fine
