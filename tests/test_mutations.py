"""Seeded corruptions of every file users hand the suite, run through each reader's public entry point.

Each corruption (truncation, bit flips, junk bytes, trailing junk, invalid UTF-8, a JSON node replaced
by a value of another type, a deleted key) must end in one of two ways: accepted (the damaged file is
still valid input, e.g. a string replaced by another string, or a question skipped and counted), or a
`UserError` of one line that names the file and carries no raw Python exception text. Memory stays
bounded, and a damaged feature cache is never used: it is rebuilt from its source, or refused without
one. A few cases go through the command line. The tally per reader is printed at the end of the session.
"""

import copy
import json
import os
import random
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import MUTATION_EXAMPLES, MUTATION_TALLY, REPO_ROOT, SQUAD_TINY_CONFIG, shared_path, write_tf1_hub_module

from albert.core.errors import UserError

SEED = 24
# Text of Python's own exceptions that must never reach the user.
RAW_EXCEPTION_TEXT = re.compile(
    r"Traceback|KeyError|TypeError|ValueError|AttributeError|IndexError|RecursionError|"
    r"object is not subscriptable|string indices|list indices|NoneType|unhashable|not iterable|"
    r"has no attribute|not supported between|object is not callable|unsupported operand")
MEMORY_SLACK = 20 << 20


# ---- corruptions ----

def _position(data, rng):
  return rng.randrange(len(data) + 1)


def truncate(data, rng):
  return data[:rng.randrange(len(data))]


def flip_bits(data, rng):
  flipped = bytearray(data)
  for _ in range(rng.randint(1, 3)):
    flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
  return bytes(flipped)


def insert_junk(data, rng):
  at = _position(data, rng)
  return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]


def trailing_junk(data, rng):
  junk = rng.choice([b"\x00" * 7, b"}{\n", b"garbage\tgarbage\n", bytes(rng.randrange(256) for _ in range(12))])
  return data + junk


def invalid_unicode(data, rng):
  at = _position(data, rng)
  return data[:at] + b"\xff\xfe" + data[at:]


BYTE_CORRUPTIONS = (truncate, flip_bits, insert_junk, trailing_junk, invalid_unicode)
REPLACEMENTS = (None, 0, -3, 2.5, "", [], {}, "x" * 5000, True, "word")


def _nodes(value, path=()):
  """(path, value) of every node below the root."""
  children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
  for key, child in children:
    yield path + (key,), child
    yield from _nodes(child, path + (key,))


def _pick(nodes, rng):
  """A node at a depth drawn first, so that the few top-level nodes are picked as often as deep ones."""
  depths = sorted({len(path) for path, _ in nodes})
  depth = rng.choice(depths)
  return rng.choice([node for node in nodes if len(node[0]) == depth])


def _parent(tree, path):
  for key in path[:-1]:
    tree = tree[key]
  return tree


def replace_node(tree, rng):
  tree = copy.deepcopy(tree)
  path, old = _pick(list(_nodes(tree)), rng)
  new = rng.choice([value for value in REPLACEMENTS if type(value) is not type(old)])
  _parent(tree, path)[path[-1]] = copy.deepcopy(new)
  return tree


def delete_key(tree, rng):
  tree = copy.deepcopy(tree)
  keyed = [node for node in _nodes(tree) if isinstance(node[0][-1], str)]
  path, _ = _pick(keyed, rng)
  del _parent(tree, path)[path[-1]]
  return tree


TREE_CORRUPTIONS = (replace_node, replace_node, replace_node, delete_key, delete_key)


def json_bytes(tree):
  return json.dumps(tree, ensure_ascii=False).encode("utf-8")


def corruption(data, index, rng, tree=None, encode=json_bytes):
  """(kind, corrupted bytes): the `index`-th kind in turn; with a parsed `tree`, half are tree edits."""
  kinds = BYTE_CORRUPTIONS + (TREE_CORRUPTIONS if tree is not None else ())
  kind = kinds[index % len(kinds)]
  if kind in TREE_CORRUPTIONS:
    return kind.__name__, encode(kind(tree, rng))
  return kind.__name__, kind(data, rng)


def corruptions(data, count, rng, tree=None, encode=json_bytes):
  """`count` corrupted versions of `data`."""
  for index in range(count):
    yield corruption(data, index, rng, tree, encode)


# ---- running a reader and judging the outcome ----

class Tally:
  """Outcomes of one reader's corruptions, added to conftest's MUTATION_TALLY for the summary table."""

  def __init__(self, reader):
    self.reader = reader
    self.counts = MUTATION_TALLY.setdefault(reader, dict.fromkeys(
        ("corruptions", "one clear line", "accepted", "unclear line", "traceback", "memory", "cache reused"), 0))
    self.examples = MUTATION_EXAMPLES.setdefault(reader, [])
    self.failures = []

  def run(self, case, path, call, input_size):
    """Runs `call()` on the corrupted file `path`; returns "accepted", "error" or "failed"."""
    self.counts["corruptions"] += 1
    tracemalloc.start()
    try:
      call()
      outcome = "accepted"
    except UserError as e:
      outcome = self._judge_message(case, path, str(e))
    except Exception as e:  # noqa: BLE001 - what the test looks for
      self.counts["traceback"] += 1
      self.failures.append(f"{case}: {type(e).__name__}: {str(e)[:300]}")
      outcome = "failed"
    finally:
      peak = tracemalloc.get_traced_memory()[1]
      tracemalloc.stop()
    if peak > 20 * input_size + MEMORY_SLACK:
      self.counts["memory"] += 1
      self.failures.append(f"{case}: peak memory {peak} bytes for {input_size} input bytes")
    if outcome == "accepted":
      self.counts["accepted"] += 1
    return outcome

  def _judge_message(self, case, path, message):
    problems = []
    if not message.strip() or "\n" in message.strip():
      problems.append("not one line")
    if os.path.basename(path) not in message:
      problems.append("does not name the file")
    if RAW_EXCEPTION_TEXT.search(message):
      problems.append("raw exception text")
    if problems:
      self.counts["unclear line"] += 1
      self.failures.append(f"{case}: {', '.join(problems)}: {message[:300]!r}")
      return "failed"
    self.counts["one clear line"] += 1
    if len(self.examples) < 3 and message not in self.examples:
      self.examples.append(message[:400])
    return "error"

  def cache_reused(self, case, detail):
    self.counts["cache reused"] += 1
    self.failures.append(f"{case}: {detail}")

  def check(self):
    assert not self.failures, f"{self.reader}: {len(self.failures)} bad outcomes:\n" + "\n".join(self.failures[:15])


def write_bytes(path, data):
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


# ---- SQuAD JSON ----

def squad_cut(source, num_paragraphs):
  """The first `num_paragraphs` paragraphs of the first article of a SQuAD file (small: fast reads)."""
  with open(source, encoding="utf-8") as f:
    data = json.load(f)
  article = data["data"][0]
  return dict(data, data=[dict(article, paragraphs=article["paragraphs"][:num_paragraphs])])


def first_answers(tree):
  return {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "")
          for article in tree["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]}


def _squad_consumers(path, predictions_file):
  """Everything that reads a SQuAD file: the example reader (both modes) and the official scoring."""
  from albert.tasks.squad.evaluate import evaluate_files
  from albert.tasks.squad.examples import read_squad_examples

  def call():
    read_squad_examples(path, is_training=True)
    read_squad_examples(path, is_training=False)
    evaluate_files(path, predictions_file)
  return call


@pytest.mark.parametrize("version, sample, count", [
    ("1.1", "dev-v1.1-sample.json", 40), ("2.0", "dev-v2.0-sample.json", 40)])
def test_squad_json(tmp_path, version, sample, count):
  rng = random.Random(f"{SEED}:squad:{version}")
  tree = squad_cut(shared_path("squad", sample), 3)
  predictions_file = write_bytes(tmp_path / "predictions.json", json_bytes(first_answers(tree)))
  tally = Tally(f"SQuAD {version} JSON")
  for number, (kind, data) in enumerate(corruptions(json_bytes(tree), count, rng, tree)):
    path = write_bytes(tmp_path / f"dev-{number}.json", data)
    tally.run(f"{kind} #{number}", path, _squad_consumers(path, predictions_file), len(data))
  tally.check()


# ---- RACE ----

def race_passages():
  """Three passages of real text in the RACE layout."""
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    lines = [line.strip() for line in f if len(line.strip()) > 80][:6]
  return [{"answers": ["B", "D"], "options": [["red", "green", "blue", "black"], ["one", "two", "three", "four"]],
           "questions": ["What colour is _ ?", "How many were there?"],
           "article": lines[2 * n] + " " + lines[2 * n + 1], "id": f"high{n}.txt"} for n in range(3)]


def test_race_json(tmp_path, spm_model_file):
  from albert.tasks.classification.features import text_normalizer
  from albert.tasks.classification.race import read_race_examples
  from albert.text.tokenizer import FullTokenizer
  normalize = text_normalizer(FullTokenizer(spm_model_file=spm_model_file))
  rng = random.Random(f"{SEED}:race")
  passages = race_passages()
  tally = Tally("RACE JSON")
  for number, (kind, data) in enumerate(corruptions(json_bytes(passages[0]), 30, rng, passages[0])):
    root = tmp_path / f"race{number}"
    high, middle = root / "RACE" / "train" / "high", root / "RACE" / "train" / "middle"
    high.mkdir(parents=True)
    middle.mkdir(parents=True)
    if number % 2:  # the official layout: one passage per file
      path = write_bytes(high / "1.txt", data)
      for index, other in enumerate(passages[1:], 2):
        write_bytes(high / f"{index}.txt", json_bytes(other))
      write_bytes(middle / "1.txt", json_bytes(passages[1]))
    else:  # all.txt: one passage per line
      path = write_bytes(middle / "all.txt", b"\n".join([json_bytes(passages[1]), data, json_bytes(passages[2])]))
      write_bytes(high / "1.txt", json_bytes(passages[1]))
    tally.run(f"{kind} #{number}", path, lambda: read_race_examples(str(root), "train", normalize),
              os.path.getsize(path))
  tally.check()


# ---- GLUE TSV ----

def glue_sentences(count):
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    return [line.strip() for line in f if 40 < len(line.strip()) < 200][:count]


def glue_files(task_name):
  """{split: TSV bytes} in the task's official layout, from real sentences."""
  sentences = glue_sentences(24)
  files = {}
  for split, rows in (("train", range(0, 16)), ("dev", range(16, 24))):
    if task_name == "mrpc":
      lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"] + [
          f"{i % 2}\t{1000 + i}\t{2000 + i}\t{sentences[i]}\t{sentences[(i + 1) % 24]}" for i in rows]
    else:
      lines = ["sentence\tlabel"] + [f"{sentences[i]}\t{i % 2}" for i in rows]
    files[split] = ("\n".join(lines) + "\n").encode("utf-8")
  return files


@pytest.mark.parametrize("task_name, folder", [("mrpc", "MRPC"), ("sst-2", "SST-2")])
def test_glue_tsv(tmp_path, task_name, folder):
  from albert.tasks.classification.glue import get_task, read_examples
  task = get_task(task_name)
  rng = random.Random(f"{SEED}:glue:{task_name}")
  files = glue_files(task_name)
  tally = Tally(f"GLUE TSV ({task_name})")
  for number in range(26):
    split = ("train", "dev")[number % 2]
    kind, data = corruption(files[split], number // 2, rng)
    root = tmp_path / f"glue{number}"
    (root / folder).mkdir(parents=True)
    path = write_bytes(root / folder / f"{split}.tsv", data)
    tally.run(f"{kind} #{number} ({split})", path, lambda: read_examples(task, str(root), split, lambda t: t),
              len(data))
  tally.check()


# ---- albert_config.json (a file, and a TF-Hub module's asset) ----

def test_albert_config_json(tmp_path):
  from albert.model.config import AlbertConfig
  rng = random.Random(f"{SEED}:config")
  tally = Tally("albert_config.json")
  for number, (kind, data) in enumerate(corruptions(json_bytes(SQUAD_TINY_CONFIG), 30, rng, SQUAD_TINY_CONFIG)):
    path = write_bytes(tmp_path / f"albert_config-{number}.json", data)
    tally.run(f"{kind} #{number}", path, lambda: AlbertConfig.from_json_file(path), len(data))
  tally.check()


def test_hub_module_config_asset(tmp_path, spm_model_file):
  from albert.model import hub
  from albert.model.config import AlbertConfig
  config = AlbertConfig(vocab_size=2000, embedding_size=8, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
  module_dir = tmp_path / "module"
  write_tf1_hub_module(module_dir, config, spm_model_file)
  asset = module_dir / "assets" / "albert_config.json"
  tree = json.loads(asset.read_text(encoding="utf-8"))
  rng = random.Random(f"{SEED}:hub")
  tally = Tally("TF-Hub assets/albert_config.json")
  for number, (kind, data) in enumerate(corruptions(json_bytes(tree), 24, rng, tree)):
    write_bytes(asset, data)
    expected = config if number % 2 else None
    tally.run(f"{kind} #{number}", str(asset), lambda: hub.module_config(str(module_dir), expected), len(data))
  tally.check()


# ---- SentencePiece model ----

def test_sentencepiece_model(tmp_path, spm_model_file):
  from albert.text.tokenizer import FullTokenizer
  with open(spm_model_file, "rb") as f:
    model = f.read()
  rng = random.Random(f"{SEED}:spm")
  tally = Tally("SentencePiece model")

  def use(path):
    tokenizer = FullTokenizer(spm_model_file=path)
    tokenizer.convert_tokens_to_ids(tokenizer.tokenize("The Normans gave their name to Normandy, 1,000 years ago."))
  for number, (kind, data) in enumerate(corruptions(model, 25, rng)):
    path = write_bytes(tmp_path / f"30k-clean-{number}.model", data)
    tally.run(f"{kind} #{number}", path, lambda: use(path), len(data))
  tally.check()


# ---- pretraining corpus text ----

def corpus_cut(name, num_bytes):
  with open(shared_path("corpus", name), "rb") as f:
    data = f.read(num_bytes)
  return data[:data.rindex(b"\n") + 1]


def test_pretraining_corpus(tmp_path, spm_model_file):
  """Both readers of corpus text: prepare_corpus (raw books) and create_pretraining_data (lines)."""
  from albert.prepare_corpus import read_input
  from albert.tasks.pretraining.writer import Settings, create_pretraining_data
  from albert.text.corpus import prepare

  def read(path, output):
    prepare(read_input(path))
    create_pretraining_data(settings, [path], [output], log_every_seconds=1e9)
  settings = Settings(vocab_file=None, spm_model_file=spm_model_file, max_seq_length=48, max_predictions_per_seq=6,
                      dupe_factor=1)
  rng = random.Random(f"{SEED}:corpus")
  sources = [corpus_cut("wikitext2-valid.txt", 6000), corpus_cut("grimm-fairy-tales.txt", 6000)]
  tally = Tally("pretraining corpus text")
  for number in range(20):
    kind, data = corruption(sources[number % 2], number // 2, rng)
    path = write_bytes(tmp_path / f"corpus-{number}.txt", data)
    output = str(tmp_path / f"corpus-{number}.tf_record")
    tally.run(f"{kind} #{number}", path, lambda: read(path, output), len(data))
  tally.check()


# ---- a SQuAD train feature cache ----

def test_squad_train_feature_cache(tmp_path, spm_model_file):
  from albert.io.feature_cache import sidecar_path
  from albert.io.tfrecord import scan_records
  from albert.tasks.squad.records import prepare_train_features
  from albert.text.tokenizer import FullTokenizer
  tokenizer = FullTokenizer(spm_model_file=spm_model_file)
  source_tree = squad_cut(shared_path("squad", "dev-v1.1-sample.json"), 2)
  train_file = write_bytes(tmp_path / "train.json", json_bytes(source_tree))
  feature_file = str(tmp_path / "train.tf_record")
  sidecar = sidecar_path(feature_file)

  def prepare(source):
    return prepare_train_features(source, feature_file, tokenizer, max_seq_length=64, doc_stride=32,
                                  max_query_length=16)
  num_examples = prepare(train_file)
  with open(feature_file, "rb") as f:
    pristine_records = f.read()
  with open(sidecar, "rb") as f:
    pristine_sidecar = f.read()
  pristine_count = scan_records(feature_file)
  sidecar_tree = json.loads(pristine_sidecar)
  rng = random.Random(f"{SEED}:cache")
  tally = Tally("SQuAD train feature cache")
  for number in range(24):
    damaged = "sidecar" if number % 3 == 2 else "records"
    if damaged == "sidecar":
      kind, data = corruption(pristine_sidecar, number // 3, rng, sidecar_tree)
    else:
      kind, data = corruption(pristine_records, number, rng)
    write_bytes(feature_file, data if damaged == "records" else pristine_records)
    target = write_bytes(sidecar, data) if damaged == "sidecar" else feature_file
    if damaged == "records":
      write_bytes(sidecar, pristine_sidecar)
    source = train_file if number % 2 == 0 else None
    case = f"{kind} #{number} of the {damaged}, {'with' if source else 'without'} --train_file"
    result = {}
    outcome = tally.run(case, target, lambda: result.setdefault("examples", prepare(source)), len(data))
    if outcome == "error" and source:
      tally.failures.append(f"{case}: refused although --train_file was given")
    if outcome == "accepted":
      _check_rebuilt(tally, case, target, data, (pristine_count, num_examples),
                     (_record_count(feature_file), result["examples"]))
  tally.check()


def _record_count(path):
  from albert.io.tfrecord import DamagedRecords, scan_records
  try:
    return scan_records(path)
  except DamagedRecords as damage:
    return f"damaged ({damage})"


def _check_rebuilt(tally, case, target, corrupted, expected, found):
  """A cache that was not refused must have been rebuilt whole: never the corrupted file as it was."""
  with open(target, "rb") as f:
    if f.read() == corrupted:
      tally.cache_reused(case, "the corrupted file was used as it was")
    elif found != expected:
      tally.cache_reused(case, f"the rebuilt cache holds (records, examples) {found}, expected {expected}")


# ---- safetensors ----

def test_safetensors(tmp_path):
  import struct

  from albert.io import safetensors as safetensors_io
  pristine_path = str(tmp_path / "model.safetensors")
  safetensors_io.write_file(pristine_path, {"bert/embeddings/word_embeddings": np.ones((8, 4), np.float32),
                                            "cls/predictions/output_bias": np.arange(8, dtype=np.int64),
                                            "flag": np.array([True, False])}, {"format": "np"})
  with open(pristine_path, "rb") as f:
    pristine = f.read()
  length = struct.unpack("<Q", pristine[:8])[0]
  header, body = json.loads(pristine[8:8 + length]), pristine[8 + length:]

  def encode(tree):
    raw = json.dumps(tree).encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + body
  rng = random.Random(f"{SEED}:safetensors")
  tally = Tally("safetensors")
  for number, (kind, data) in enumerate(corruptions(pristine, 30, rng, header, encode)):
    path = write_bytes(tmp_path / f"model-{number}.safetensors", data)
    tally.run(f"{kind} #{number}", path, lambda: safetensors_io.read_file(path), len(data))
  tally.check()


# ---- through the command line ----

def _cli(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_command_line_cases(tmp_path, squad_assets):
  """Three corrupted inputs through their commands, side by side: exit 2, one `error:` line, no traceback."""
  tree = squad_cut(shared_path("squad", "dev-v1.1-sample.json"), 2)
  predictions = write_bytes(tmp_path / "predictions.json", json_bytes(first_answers(tree)))
  tree["data"][0]["paragraphs"][1]["qas"][2]["answers"][0]["text"] = 1066
  dev = write_bytes(tmp_path / "dev.json", json_bytes(tree))
  broken = copy.deepcopy(tree)
  broken["data"][0]["paragraphs"][0]["qas"] = {"id": "x"}
  predict = write_bytes(tmp_path / "predict.json", json_bytes(broken))
  book = write_bytes(tmp_path / "book.txt", invalid_unicode(corpus_cut("grimm-fairy-tales.txt", 4000),
                                                            random.Random(SEED)))
  runs = {
      dev: _cli("albert.squad_eval", f"--data_file={dev}", f"--predictions_file={predictions}"),
      book: _cli("albert.prepare_corpus", f"--input_file={book}", f"--output_file={tmp_path / 'out.txt'}"),
      predict: _cli("albert.run_squad_v1", f"--albert_config_file={squad_assets['config']}",
                    f"--spm_model_file={squad_assets['spm']}", f"--output_dir={tmp_path / 'out'}",
                    f"--predict_file={predict}", "--do_predict", "--max_seq_length=64", "--doc_stride=32",
                    "--max_query_length=16"),
  }
  tally = Tally("command line (3 commands)")
  for path, proc in runs.items():
    _, stderr = proc.communicate(timeout=600)
    tally.counts["corruptions"] += 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if proc.returncode != 2 or len(errors) != 1 or "Traceback" in stderr:
      tally.counts["traceback" if "Traceback" in stderr else "unclear line"] += 1
      tally.failures.append(f"{path}: exit {proc.returncode}: {stderr[-1500:]}")
    else:
      tally._judge_message(path, path, errors[0])
  tally.check()
