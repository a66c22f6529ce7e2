"""Shared pytest fixtures: real data from ../shared/data, a tiny SentencePiece model, tiny configs."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))

# The original release's spm_train options (README): pad 0, unk 1, no bos/eos, three control symbols.
# The user-defined symbols are passed as a list: as one comma-separated string, SentencePiece's flag
# parser reads the '"' as a CSV quote and merges the last six symbols into one.
SPM_OPTIONS = {
    "pad_id": 0, "unk_id": 1, "eos_id": -1, "bos_id": -1,
    "control_symbols": ["[CLS]", "[SEP]", "[MASK]"],
    "user_defined_symbols": ["(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac"],
    "shuffle_input_sentence": True, "character_coverage": 0.99995, "model_type": "unigram",
}


def shared_path(*parts):
  """Path of a file under ../shared/data; skips the test when the folder is absent."""
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f"shared data not available: {path} (set ALBERT_SHARED_DATA)")
  return path


def run_cli(module, *args, check=True, timeout=900):
  """Runs `python -m <module> args...` from the repository root; raises with its stderr on failure."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  proc = subprocess.run([sys.executable, "-m", module, *args], check=False, cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc


def subset_file(source, target, num_questions):
  """A SQuAD file with the first `num_questions` questions of `source` (fast end-to-end runs); its path."""
  from benchmarks.harness import squad_subset
  squad_subset(source, target, num_questions)
  return str(target)


def train_spm(output_prefix, input_path, vocab_size):
  import sentencepiece as spm
  spm.SentencePieceTrainer.train(
      input=input_path, model_prefix=output_prefix, vocab_size=vocab_size,
      input_sentence_size=20000, minloglevel=2, num_threads=2, **SPM_OPTIONS)
  return output_prefix + ".model"


# The SQuAD command-line tests' model: small, but large enough to fit a few hundred real questions.
SQUAD_TINY_CONFIG = {"vocab_size": 2000, "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
                     "num_hidden_groups": 1, "num_attention_heads": 4, "intermediate_size": 128, "inner_group_num": 1,
                     "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                     "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02}


def write_handmade_spm_model(path, pieces, user_symbols=()):
  """Writes a unigram SentencePiece model with the ALBERT special pieces, then `user_symbols`, then exactly
  `pieces`; returns the path.

  Every ordinary piece scores -1, so the best segmentation is the one with the fewest pieces; the
  normalizer is the identity (plus dummy prefix and whitespace collapsing), so outputs can be worked out
  by hand.
  """
  from sentencepiece import sentencepiece_model_pb2
  model = sentencepiece_model_pb2.ModelProto()
  kind = sentencepiece_model_pb2.ModelProto.SentencePiece
  entries = [("<pad>", kind.CONTROL), ("<unk>", kind.UNKNOWN), ("[CLS]", kind.CONTROL),
             ("[SEP]", kind.CONTROL), ("[MASK]", kind.CONTROL)]
  entries += [(symbol, kind.USER_DEFINED) for symbol in user_symbols]
  entries += [(piece, kind.NORMAL) for piece in pieces]
  for piece, piece_type in entries:
    model.pieces.add(piece=piece, type=piece_type, score=-1.0 if piece_type == kind.NORMAL else 0.0)
  model.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.UNIGRAM
  model.trainer_spec.vocab_size = len(entries)
  model.trainer_spec.pad_id, model.trainer_spec.unk_id = 0, 1
  model.trainer_spec.bos_id = model.trainer_spec.eos_id = -1
  model.normalizer_spec.name = "identity"
  model.normalizer_spec.add_dummy_prefix = True
  model.normalizer_spec.remove_extra_whitespaces = True
  model.normalizer_spec.escape_whitespaces = True
  path.write_bytes(model.SerializeToString())
  return path


@pytest.fixture(scope="session")
def squad_assets(tmp_path_factory, spm_model_file):
  """The session's SentencePiece model and an albert_config.json of SQUAD_TINY_CONFIG."""
  config_file = tmp_path_factory.mktemp("squad_assets") / "albert_config.json"
  config_file.write_text(json.dumps(SQUAD_TINY_CONFIG))
  return {"spm": spm_model_file, "config": str(config_file)}


@pytest.fixture(scope="session")
def spm_model_file(tmp_path_factory):
  """A 2000-piece unigram SentencePiece model trained on WikiText-2 with the original options."""
  corpus = shared_path("corpus", "wikitext2-valid.txt")
  prefix = str(tmp_path_factory.mktemp("spm") / "wiki2k")
  return train_spm(prefix, corpus, 2000)


@pytest.fixture
def tiny_config():
  """A tiny ALBERT config (E != H, so embedding_hidden_mapping_in exists)."""
  from albert.model.config import AlbertConfig
  return AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                      num_hidden_groups=1, num_attention_heads=4, intermediate_size=64,
                      inner_group_num=1, hidden_act="gelu", hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, max_position_embeddings=128,
                      type_vocab_size=2, initializer_range=0.02)


def write_tf1_hub_module(directory, config, spm_model_file, with_config=True, seed=0):
  """A module in the original TF1 Hub layout; returns the AlbertModel whose encoder weights it holds.

  A real TF1 SavedModel, laid out as TF 1.15's hub exporter lays it out: `saved_model.pb` with the
  `train` and the default tag sets and a `tokenization_info` signature, `variables/` with the encoder
  and both pretraining heads under their original names, `assets/` registered as asset files, and
  `tfhub_module.pb` (a ModuleDef of format 3). `with_config=False` gives the version-1 modules'
  layout, whose only asset is `30k-clean.model` (no albert_config.json, no .vocab).
  """
  import shutil
  import tempfile

  import numpy as np
  import tensorflow as tf

  from albert.model import variables
  from albert.modeling import AlbertModel
  model = AlbertModel(config)
  values = {name: variable.numpy() for name, variable in model.named_variables().items()}
  rng = np.random.default_rng(seed)
  for name, shape in {**variables.masked_lm_shapes(config), **variables.sentence_order_shapes(config)}.items():
    values[name] = rng.normal(0.0, 0.02, shape).astype(np.float32)
  v1 = tf.compat.v1
  with tempfile.TemporaryDirectory() as staging, tf.Graph().as_default():
    # The builder copies every asset file into <directory>/assets under its base name.
    asset_files = {"vocab_model": shutil.copy(spm_model_file, os.path.join(staging, "30k-clean.model"))}
    if with_config:
      asset_files["config_file"] = os.path.join(staging, "albert_config.json")
      config.to_json_file(asset_files["config_file"])
    for name, value in values.items():
      v1.get_variable(name, initializer=tf.constant(value))
    assets = {key: tf.constant(path, name=key) for key, path in asset_files.items()}
    for asset in assets.values():
      v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)
    info = v1.saved_model.build_signature_def(
        outputs={"vocab_file": v1.saved_model.build_tensor_info(assets["vocab_model"]),
                 "do_lower_case": v1.saved_model.build_tensor_info(tf.constant(True))})
    signatures = {"tokenization_info": info}
    with v1.Session() as session:
      session.run(v1.global_variables_initializer())
      builder = v1.saved_model.Builder(str(directory))
      builder.add_meta_graph_and_variables(session, ["train"], signature_def_map=signatures,
                                           assets_collection=list(assets.values()))
      builder.add_meta_graph([], signature_def_map=signatures, assets_collection=list(assets.values()))
      builder.save()
  (directory / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef{format: FORMAT_V3}
  return model


# ---- every command's flags ----

RUNNERS = ("run_squad_v1", "run_squad_v2", "run_classifier", "run_race", "run_pretraining")
TOOLS = ("create_pretraining_data", "prepare_corpus", "train_spm", "squad_eval", "analyze_squad", "export_to_tfhub",
         "export_checkpoints", "convert", "fill_mask", "extract_features", "retrieve", "quickstart", "answer", "classify",
         "export_onnx")
ENTRY_POINTS = RUNNERS + TOOLS


def flag_definers():
  """{command: define_flags(flag_values)} for every entry point (runners share their task's job module)."""
  import importlib

  from albert.tasks.classification import runner as classification
  from albert.tasks.pretraining import runner as pretraining
  from albert.tasks.squad import runner as squad
  definers = {"run_squad_v1": lambda fv: squad.define_flags(1, fv), "run_squad_v2": lambda fv: squad.define_flags(2, fv),
              "run_classifier": classification.define_flags,
              "run_race": lambda fv: classification.define_flags(fv, race_flags=True),
              "run_pretraining": pretraining.define_flags}
  for name in TOOLS:
    definers[name] = importlib.import_module(f"albert.{name}").define_flags
  return definers


# ---- the fault battery's table (tests/test_faults.py) and the mutation test's tally (tests/test_mutations.py) ----
# Tests fill FAULT_TABLE, MUTATION_TALLY (reader -> {outcome: count}) and MUTATION_EXAMPLES in the process that
# runs them. Under pytest-xdist (CI runs `-n 2`) that is a worker: each worker writes what it gathered to the
# controller's directory at its session's end, and the controller prints the merged tables.

FAULT_TABLE = []
MUTATION_TALLY = {}
MUTATION_EXAMPLES = {}
_TABLES_DIR = "ALBERT_TEST_TABLES_DIR"


def record_fault(family, command, case, outcome):
  """Adds a row to the fault battery's table."""
  FAULT_TABLE.append((family, command, case, outcome))


def pytest_configure(config):
  if not hasattr(config, "workerinput"):  # the controller (or a plain run): workers inherit the variable
    import tempfile
    os.environ[_TABLES_DIR] = tempfile.mkdtemp(prefix="albert_test_tables_")


def pytest_sessionfinish(session):
  directory = os.environ.get(_TABLES_DIR)
  if directory and hasattr(session.config, "workerinput") and (FAULT_TABLE or MUTATION_TALLY):
    with open(os.path.join(directory, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
      json.dump({"faults": FAULT_TABLE, "tally": MUTATION_TALLY, "examples": MUTATION_EXAMPLES}, f)


def _merged_tables():
  """(fault rows, tally, examples) of this process and of every worker."""
  faults, tally, examples = list(FAULT_TABLE), {}, {}
  parts = [{"tally": MUTATION_TALLY, "examples": MUTATION_EXAMPLES}]
  directory = os.environ.get(_TABLES_DIR)
  for name in sorted(os.listdir(directory)) if directory and os.path.isdir(directory) else ():
    with open(os.path.join(directory, name), encoding="utf-8") as f:
      part = json.load(f)
    faults += [tuple(row) for row in part["faults"]]
    parts.append(part)
  for part in parts:
    for reader, counts in part["tally"].items():
      merged = tally.setdefault(reader, dict.fromkeys(counts, 0))
      for outcome, count in counts.items():
        merged[outcome] = merged.get(outcome, 0) + count
    for reader, messages in part["examples"].items():
      examples.setdefault(reader, []).extend(messages)
  return faults, tally, examples


def _write_table(terminalreporter, title, header, rows):
  terminalreporter.write_sep("-", title)
  terminalreporter.write_line("| " + " | ".join(header) + " |")
  terminalreporter.write_line("|" + "---|" * len(header))
  for row in rows:
    terminalreporter.write_line("| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |")


def pytest_terminal_summary(terminalreporter):
  faults, tally, examples = _merged_tables()
  if faults:
    _write_table(terminalreporter, "fault battery: cases and outcomes", ("family", "command", "case", "outcome"),
                 faults)
  if tally:
    columns = next(iter(tally.values())).keys()
    rows = [(reader, *counts.values()) for reader, counts in tally.items()]
    totals = [sum(counts.get(column, 0) for counts in tally.values()) for column in columns]
    _write_table(terminalreporter, "mutation test: corruptions per reader", ("reader", *columns),
                 rows + [("**all**", *totals)])
    for reader, messages in examples.items():
      for message in messages:
        terminalreporter.write_line(f"{reader}: {message}")
