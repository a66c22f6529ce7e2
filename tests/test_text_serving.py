"""Text-in serving signatures (issue 17 part 6). Classifier: run_classifier's SavedModel gains `serve_text`,
which gives, in a fresh process, the labels and probabilities `python -m albert.classify` gives on the same
texts (same preprocessing, truncation and layout)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from absl import flags
from conftest import REPO_ROOT, SQUAD_TINY_CONFIG, shared_path

pytest.importorskip("tensorflow_text")
import tensorflow as tf  # noqa: E402

from albert import classify  # noqa: E402
from albert.io import checkpoint  # noqa: E402
from albert.model.config import AlbertConfig  # noqa: E402
from albert.tasks.classification import features, serving  # noqa: E402
from albert.tasks.classification.glue import InputExample  # noqa: E402
from albert.tasks.classification.task import ClassifierTask  # noqa: E402

# Large initial weights, so that the outputs depend clearly on the input pieces (at 0.02 they barely do).
CLASSIFIER_CONFIG = dict(SQUAD_TINY_CONFIG, embedding_size=16, hidden_size=32, intermediate_size=64,
                         num_attention_heads=4, max_position_embeddings=64, initializer_range=0.5)
SEQ_LENGTH = 24  # short, so that most pairs are truncated
RTE_LABELS = ["entailment", "not_entailment"]


def _environment():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)


def _start(module, *args):
  return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=_environment(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process):
  _, stderr = process.communicate(timeout=900)
  assert process.returncode == 0, stderr[-4000:]


def _examples():
  """(text_a, text_b or None): real questions and contexts (long, so truncated), pairs and single texts,
  accents and digit-commas, and a second text without pieces."""
  with open(shared_path("squad", "dev-v1.1-sample.json"), encoding="utf-8") as f:
    paragraphs = [paragraph for article in json.load(f)["data"] for paragraph in article["paragraphs"]]
  examples = [(qa["question"], paragraph["context"]) for paragraph in paragraphs[:6] for qa in paragraph["qas"][:2]]
  examples += [(paragraph["context"], None) for paragraph in paragraphs[6:9]]
  examples += [("Éric  lives in Zürich, 1,000 km away.", "He was born in 1990, in Straße ﬁve."),
               ("A short one.", "A much longer second text that keeps going and going with many more words."),
               ("Just one sentence here.", None), ("Two texts", " "), ("naïve café", "résumé")]
  return examples


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, spm_model_file):
  """A random-weight RTE classifier as a run directory; run_classifier exports it and predicts its test set
  (the pairs), while albert.classify labels all the texts from the run directory."""
  work = tmp_path_factory.mktemp("text_serving")
  run_dir = work / "run"
  tf.random.set_seed(5)
  task = ClassifierTask(AlbertConfig.from_dict(CLASSIFIER_CONFIG), len(RTE_LABELS))
  task.build()
  weights = {name: variable.numpy() for name, variable in task.named_variables().items()}
  checkpoint.save_checkpoint(str(run_dir / "model.ckpt-1"), weights)
  (run_dir / "albert_config.json").write_text(json.dumps(CLASSIFIER_CONFIG))
  (run_dir / "labels.json").write_text(json.dumps({"labels": RTE_LABELS}))
  examples = _examples()
  texts_file = work / "texts.jsonl"
  with open(texts_file, "w", encoding="utf-8") as f:
    for i, (text_a, text_b) in enumerate(examples):
      f.write(json.dumps({"id": str(i), "text_a": text_a, **({} if text_b is None else {"text_b": text_b})}) + "\n")
  (work / "glue" / "RTE").mkdir(parents=True)
  pairs = [i for i, (_, text_b) in enumerate(examples) if text_b and text_b.strip()]
  (work / "glue" / "RTE" / "test.tsv").write_text("index\tsentence1\tsentence2\n" + "".join(
      f"{i}\t{examples[i][0]}\t{examples[i][1]}\n" for i in pairs), encoding="utf-8")
  export_dir = work / "export"
  export = _start("albert.run_classifier", f"--albert_config_file={run_dir / 'albert_config.json'}",
                  f"--spm_model_file={spm_model_file}", f"--output_dir={run_dir}", "--task_name=RTE",
                  f"--data_dir={work / 'glue'}", f"--max_seq_length={SEQ_LENGTH}", "--do_predict",
                  f"--export_dir={export_dir}")
  # albert.classify's command line, run in this process while the export runs in its own.
  fv = flags.FlagValues()
  classify.define_flags(fv)
  fv(["albert.classify", f"--model_dir={run_dir}", f"--spm_model_file={spm_model_file}",
      f"--max_seq_length={SEQ_LENGTH}", f"--input_file={texts_file}", f"--output_file={work / 'labels.jsonl'}"])
  classify.run(fv)
  _finish(export)
  (saved_model,) = [str(path) for path in export_dir.iterdir()]
  with open(work / "labels.jsonl", encoding="utf-8") as f:
    cli = [json.loads(line) for line in f]
  test_results = np.loadtxt(run_dir / "test_results.tsv", delimiter="\t", ndmin=2)
  return {"saved_model": saved_model, "examples": examples, "cli": cli, "work": work, "pairs": pairs,
          "test_results": test_results}


SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the text signature uses)
saved_model, examples_file = sys.argv[1:3]
examples = json.load(open(examples_file, encoding="utf-8"))
serve = tf.saved_model.load(saved_model).signatures["serve_text"]
outputs = serve(text_a=tf.constant([a for a, _ in examples]), text_b=tf.constant([b or "" for _, b in examples]))
print(json.dumps({key: value.numpy().tolist() if key != "labels" else [x.decode() for x in value.numpy()]
                  for key, value in outputs.items()}))
"""


@pytest.mark.slow
def test_serve_text_gives_what_classify_gives(classifier_run):
  run = classifier_run
  examples_file = run["work"] / "examples.json"
  examples_file.write_text(json.dumps(run["examples"]), encoding="utf-8")
  script = run["work"] / "serve.py"
  script.write_text(textwrap.dedent(SERVE))
  env = {key: value for key, value in _environment().items() if key != "PYTHONPATH"}
  proc = subprocess.run([sys.executable, str(script), run["saved_model"], str(examples_file)], cwd=str(run["work"]),
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert set(served) == {"probabilities", "predictions", "labels"}
  cli = run["cli"]
  assert len(cli) == len(run["examples"]) == len(served["labels"])
  expected = np.array([[record["probabilities"][name] for name in RTE_LABELS] for record in cli])
  np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)
  assert served["labels"] == [record["label"] for record in cli]
  assert served["labels"] == [RTE_LABELS[i] for i in served["predictions"]]
  assert len(set(map(tuple, np.round(expected, 4)))) > len(cli) // 2  # the texts reach the model differently
  # run_classifier's own predictions of the pairs (its test set) agree too.
  np.testing.assert_allclose(np.array(served["probabilities"])[run["pairs"]], run["test_results"], atol=1e-5)


@pytest.mark.slow
def test_serving_default_still_takes_examples(classifier_run):
  loaded = tf.saved_model.load(classifier_run["saved_model"])
  assert set(loaded.signatures) == {"serving_default", "serve_text"}
  assert list(loaded.signatures["serving_default"].structured_input_signature[1]) == ["serialized_example"]


class _LengthTokenizer:
  """Text "n" has n pieces (ids 100, 101, ...); text "" has none."""
  cls_id, sep_id = 2, 3

  def tokenize(self, texts):
    lengths = tf.strings.to_number(tf.where(texts == "", "0", texts), tf.int64)
    return tf.cast(tf.ragged.range(lengths) + 100, tf.int32)


def test_truncation_and_layout_equal_convert_example():
  """Every pair of lengths up to 9 ("0" a second text without pieces, "" a single text) at several lengths,
  against convert_example (truncate_pair and pack_ids)."""
  tokenizer = _LengthTokenizer()

  class Pieces:  # what convert_example needs of a tokenizer, on the same "n" texts
    def tokenize(self, text):
      return [100 + i for i in range(int(text))] if text else []

    def convert_tokens_to_ids(self, tokens):
      return [{"[CLS]": 2, "[SEP]": 3}.get(token, token) for token in tokens]

  class Task:
    is_regression, labels = False, ("x",)

  for seq_length in (3, 4, 7, 12):
    cases = [(str(a), b) for a in range(10) for b in ["", *map(str, range(10))]]
    got = serving.text_features(tokenizer, tf.constant([a for a, _ in cases]), tf.constant([b for _, b in cases]),
                                seq_length)
    for i, (a, b) in enumerate(cases):
      want = features.convert_example(InputExample("0", a, b or None, "x"), Task(), seq_length, Pieces())
      assert got["input_ids"][i].numpy().tolist() == want.input_ids, (seq_length, a, b)
      assert got["input_mask"][i].numpy().tolist() == want.input_mask, (seq_length, a, b)
      assert got["segment_ids"][i].numpy().tolist() == want.segment_ids, (seq_length, a, b)


def test_regression_returns_only_scores(spm_model_file):
  from albert.text.in_graph import InGraphTokenizer
  task = ClassifierTask(AlbertConfig.from_dict(CLASSIFIER_CONFIG), 1)
  task.build()
  with open(spm_model_file, "rb") as f:
    tokenizer = InGraphTokenizer(f.read(), True)
  module = serving.ClassifierServing(task, SEQ_LENGTH, None, tokenizer)
  outputs = module.serve_text(tf.constant(["a cat", "a dog"]), tf.constant(["", "sat"]))
  assert set(outputs) == {"predictions"} and outputs["predictions"].shape == (2,)
  assert outputs["predictions"].dtype == tf.float32
