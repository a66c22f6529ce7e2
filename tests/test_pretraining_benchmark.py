"""benchmarks/pretraining.py end to end on a few steps: the curve it records and the summary's statistics,
recomputed here from the recorded figures."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_path


@pytest.mark.slow
@pytest.mark.heavy  # ~2 min; the benchmark's flag checks below stay in CI
def test_pretraining_benchmark_records_a_curve_and_honest_baselines(tmp_path):
  corpus = shared_path("corpus", "wikitext2-valid.txt")
  output = tmp_path / "pretraining.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", ALBERT_SHARED_DATA=os.path.dirname(os.path.dirname(corpus)))
  result = subprocess.run(
      [sys.executable, "benchmarks/pretraining.py", f"--output_file={output}",
       f"--work_dir={tmp_path / 'work'}", "--vocab_size=1000", "--dupe_factor=1", "--heldout_dupe_factor=2",
       "--num_train_steps=20", "--num_warmup_steps=2", "--eval_every_steps=10", "--train_batch_size=8",
       "--eval_batch_size=32"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(output.read_text())
  curve, summary, data = report["curve"], report["summary"], report["data"]

  assert [point["step"] for point in curve] == [0, 10, 20]
  assert curve[0]["train_examples_per_second"] is None
  assert all(point["train_examples_per_second"] > 0 for point in curve[1:])
  assert all(0 <= point[key] <= 1 for point in curve for key in ("masked_lm_accuracy", "sentence_order_accuracy"))
  # An untrained model scores about ln(vocab) on masked tokens; 20 small LAMB steps must already move below it.
  assert abs(curve[0]["masked_lm_loss"] - math.log(1000)) < 1.0
  assert curve[-1]["masked_lm_loss"] < curve[0]["masked_lm_loss"] - 0.3

  baseline = summary["heldout_sentence_order_majority_baseline"]
  assert 0.5 <= baseline < 1
  end_accuracy = curve[-1]["sentence_order_accuracy"]
  assert summary["heldout_sentence_order_accuracy"] == [curve[0]["sentence_order_accuracy"], end_accuracy]
  independent_pairs = data["heldout_instances_evaluated"] / data["heldout_dupe_factor"]
  z = (end_accuracy - baseline) / math.sqrt(baseline * (1 - baseline) / independent_pairs)
  assert summary["sentence_order_z_against_majority"] == pytest.approx(z, abs=0.01)
  entropy = -(baseline * math.log(baseline) + (1 - baseline) * math.log(1 - baseline))
  assert summary["heldout_sentence_order_loss_of_class_frequencies"] == pytest.approx(entropy, abs=1e-4)
  assert summary["heldout_sentence_order_peak"]["sentence_order_accuracy"] == max(
      point["sentence_order_accuracy"] for point in curve)
  assert summary["sentence_order_above_majority_baseline"] == (end_accuracy > baseline)


@pytest.mark.parametrize("flag, message", [
    ("--dropout_prob=1.0", "flag --dropout_prob=1.0: must be in [0, 1)"),
    ("--seed=-1", "flag --seed=-1: must be in [0, 4294967295]"),
    ("--heldout_dupe_factor=0", "flag --heldout_dupe_factor=0: must be >= 1"),
])
def test_out_of_range_flags_stop_before_any_work(tmp_path, flag, message):
  output = tmp_path / "pretraining.json"
  result = subprocess.run([sys.executable, "benchmarks/pretraining.py", flag, f"--output_file={output}",
                           f"--work_dir={tmp_path / 'work'}"],
                          cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert not output.exists() and not (tmp_path / "work").exists()
