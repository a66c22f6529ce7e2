"""The package's shape as users meet it: entry points that import together, the original module names,
flags defined through the guard, and one model loader with the same rules for runners and tools."""

import importlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from conftest import ENTRY_POINTS, REPO_ROOT, RUNNERS, TOOLS, flag_definers, run_cli, write_tf1_hub_module

# The public names users' scripts know from each original module name.
ORIGINAL_NAMES = {
    "modeling": ("AlbertConfig", "AlbertModel", "AlbertPretrainingModel", "MaskedLMHead", "SentenceOrderHead",
                 "gelu", "layer_norm", "dense", "masked_lm_loss", "sentence_order_loss", "get_activation"),
    "tokenization": ("FullTokenizer", "preprocess_text", "encode_pieces", "encode_ids", "load_vocab",
                     "convert_to_unicode"),
    "optimization": ("AdamWeightDecay", "LAMB", "create_optimizer", "PolynomialWarmupSchedule"),
    "classifier_utils": ("TASKS", "InputExample", "InputFeatures", "ClassifierTask", "read_examples",
                         "convert_example", "input_fn_builder", "serialize_features", "get_task"),
    "squad_utils": ("SquadExample", "read_squad_examples", "convert_examples_to_features", "FeatureWriter",
                    "input_fn_builder", "write_predictions_v1", "write_predictions_v2", "evaluate_v1", "evaluate_v2"),
    "race_utils": ("RaceExample", "read_race_examples", "convert_example", "RaceTask"),
}


def test_every_entry_point_imports_into_one_process():
  code = "; ".join(f"import albert.{name}" for name in ENTRY_POINTS) + "; print('imported')"
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT), timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "imported"


@pytest.mark.parametrize("name", TOOLS)
def test_tool_flags_go_through_the_guard(name):
  module = importlib.import_module(f"albert.{name}")
  fv = flags.FlagValues()
  module.define_flags(fv)
  module.define_flags(fv)  # a second definition is skipped, not a DuplicateFlagError
  assert len(list(fv)) > 0


def test_runner_flags_go_through_the_guard():
  definers = flag_definers()
  for name in RUNNERS:
    fv = flags.FlagValues()
    definers[name](fv)
    definers[name](fv)
    fv(["prog"])


def test_original_module_names_give_their_public_names():
  for module_name, names in ORIGINAL_NAMES.items():
    module = importlib.import_module(f"albert.{module_name}")
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"albert.{module_name} lacks {missing}"


def test_bad_output_dir_is_one_line_before_any_work(tmp_path):
  a_file = tmp_path / "not_a_directory"
  a_file.write_text("x")
  result = run_cli("albert.run_squad_v1", f"--output_dir={a_file}", "--do_predict", check=False, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: flag --output_dir={a_file}: is a file, but a directory is needed")


def test_bad_flag_values_are_rejected_while_parsing(tmp_path):
  result = run_cli("albert.run_squad_v1", f"--output_dir={tmp_path / 'out'}", "--do_train", "--learning_rate=-0.001",
                   check=False, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == "error: flag --learning_rate=-0.001: must be > 0"
  assert not (tmp_path / "out").exists()


# ---- one model loader: a TF1 Hub module with the Colab's dummy --spm_model_file works everywhere ----

def test_runners_and_tools_load_a_hub_module_by_the_same_rules(tmp_path, tiny_config, spm_model_file):
  from albert.cli import model_loader
  from albert.tasks.squad import runner as squad_runner
  module_dir = tmp_path / "tf1_module"
  model = write_tf1_hub_module(module_dir, tiny_config, spm_model_file)
  hub_flags = [f"--albert_hub_module_handle={module_dir}", "--spm_model_file=from_tf_hub"]
  runner_flags, tool_flags = flags.FlagValues(), flags.FlagValues()
  squad_runner.define_flags(1, runner_flags)
  model_loader.define_encoder_flags(tool_flags)
  setups = []
  for fv in (runner_flags, tool_flags):
    fv(["prog", *hub_flags])
    setups.append(model_loader.load_model(fv))
  assert setups[0].config == setups[1].config == tiny_config
  assert setups[0].tokenizer.fingerprint == setups[1].tokenizer.fingerprint
  # The tool end to end: its pooled output is the module's encoder on the module's tokenizer.
  texts = tmp_path / "texts.txt"
  texts.write_text("the hub module and the checkpoint agree.\n", encoding="utf-8")
  run_cli("albert.extract_features", *hub_flags, f"--input_file={texts}", f"--output_dir={tmp_path / 'features'}",
          "--max_seq_length=32", timeout=300)
  pooled = np.load(tmp_path / "features" / "pooled.npy")
  record = json.loads((tmp_path / "features" / "examples.jsonl").read_text().splitlines()[0])
  ids = setups[1].tokenizer.convert_tokens_to_ids(record["tokens"])
  expected = model(np.asarray([ids], np.int32), np.ones([1, len(ids)], np.int32),
                   np.zeros([1, len(ids)], np.int32)).pooled_output
  np.testing.assert_allclose(pooled, expected, atol=1e-5)


def test_conversion_workers_stay_free_of_tensorflow():
  """SQuAD and pretraining workers import these modules in every spawned process; TensorFlow would cost
  each worker seconds of start-up and hundreds of MB."""
  code = ("import sys, albert.tasks.squad.records, albert.tasks.pretraining.writer; "
          "print('tensorflow' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=120)
  assert result.stdout.strip() == "False", result.stderr[-2000:]


# ---- a quiet start: the first lines a user sees are ours ----

def _without_log_level(**extra):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return dict(env, PYTHONPATH=REPO_ROOT, **extra)


def test_every_entry_point_imports_the_quiet_start_first():
  import ast
  for name in ENTRY_POINTS:
    with open(os.path.join(REPO_ROOT, "albert", f"{name}.py"), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    first = next(node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    assert isinstance(first, ast.ImportFrom) and first.module == "albert.cli" and first.names[0].name == "startup", name


def test_tensorflow_start_up_notices_are_kept_off_the_terminal_unless_asked_for(tmp_path):
  command = [sys.executable, "-m", "albert.convert", "--from=hf", f"--input_dir={tmp_path / 'missing'}",
             f"--output_dir={tmp_path / 'out'}"]
  quiet = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=_without_log_level(),
                         timeout=300)
  assert quiet.returncode == 2
  assert quiet.stderr.splitlines() == [f"error: --input_dir: directory not found: {tmp_path / 'missing'}"]

  # A level the user sets is theirs: TensorFlow's own start-up lines come through as without the suite.
  from albert.cli.startup import START_UP_NOISE
  bare = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                        capture_output=True, text=True, env=_without_log_level(TF_CPP_MIN_LOG_LEVEL="0"), timeout=300)
  asked = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                         env=_without_log_level(TF_CPP_MIN_LOG_LEVEL="0"), timeout=300)
  noise = lambda text: sorted(re.sub(r"^\S+ \S+ +\d+ ", "", line) for line in text.splitlines()
                              if START_UP_NOISE.search(line))
  assert noise(asked.stderr) == noise(bare.stderr)
