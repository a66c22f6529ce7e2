"""Performance defaults and tools: the oneDNN default of the package, and the op-type step profiler."""

import json
import os
import platform
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def onednn_setting_after_import(environment_value):
  """TF_ENABLE_ONEDNN_OPTS as seen by a fresh process after `import albert` (and by TensorFlow)."""
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if environment_value is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = environment_value
  code = "import os, albert; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=True)
  return result.stdout.strip()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the default is for x86-64 only")
def test_importing_albert_turns_onednn_on_unless_the_user_chose():
  assert onednn_setting_after_import(None) == "1"
  assert onednn_setting_after_import("0") == "0"


@pytest.mark.parametrize("step", ["train", "forward"])
def test_step_profile_accounts_for_the_step_by_op_type(tmp_path, step):
  output = tmp_path / "profile.json"
  result = subprocess.run(
      [sys.executable, "benchmarks/step_profile.py", f"--step={step}", "--quick", f"--profile_output={output}"],
      cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(output.read_text())
  ops = report["ops"]
  assert any(op["matmul"] for op in ops.values()) and any(not op["matmul"] for op in ops.values())
  assert sum(op["share"] for op in ops.values()) == pytest.approx(1.0, abs=0.01)
  matmul = sum(op["milliseconds"] for op in ops.values() if op["matmul"])
  assert matmul == pytest.approx(report["matmul_milliseconds"], abs=0.1 * len(ops))
  assert 0 < report["matmul_share"] < 1 and report["step_seconds_unprofiled"] > 0
  assert report["step"] == step
  assert report["tf_enable_onednn_opts"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
