"""run_classifier on your own data (`--task_name=custom`): a CSV classifier that learns a separable set,
a three-label JSONL text-pair classifier and a TSV regression through the command line; bad inputs as
one-line errors; the reader, the label sources, labels.json, the cache settings and the metrics in-process.

The command-line runs are mostly TensorFlow's start-up and tracing, so the fixture starts them together
(threads around conftest.run_cli) and the tests read what they left.
"""

import concurrent.futures
import csv
import json
import math
import random

import numpy as np
import pytest
from absl import flags
from conftest import run_cli

from albert.core.errors import UserError
from albert.tasks.classification import custom, metrics, runner
from albert.tasks.classification.glue import DEV, TEST, TRAIN

TINY = dict(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
            num_attention_heads=4, intermediate_size=64, inner_group_num=1, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64,
            type_vocab_size=2, initializer_range=0.02)

# Two topics with disjoint content words: a set a tiny model from scratch separates in a few dozen steps.
SUNNY = "sunny warm beach summer holiday sand swim ocean waves sunshine picnic garden".split()
LEGAL = "court judge law trial verdict police crime jury lawyer prison sentence appeal".split()
FILLER = "the a of and was on in with".split()


def sentence(rng, words):
  return " ".join(rng.choice(words if i % 2 else FILLER) for i in range(rng.randint(5, 9)))


def topic_items(rng, count):
  items = [(sentence(rng, SUNNY), "sunny") if i % 2 else (sentence(rng, LEGAL), "legal") for i in range(count)]
  rng.shuffle(items)
  return items


def write_csv(path, rows, bom=False):
  with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
    csv.writer(f).writerows(rows)
  return str(path)


def write_jsonl(path, records):
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(record) + "\n" for record in records)
  return str(path)


def write_tsv(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
  return str(path)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("custom_config") / "albert_config.json"
  path.write_text(json.dumps(TINY))
  return str(path)


def classifier_args(config_file, spm_model_file, output_dir, *args):
  return ("albert.run_classifier", f"--albert_config_file={config_file}", f"--spm_model_file={spm_model_file}",
          f"--output_dir={output_dir}", "--task_name=custom", "--max_seq_length=32", "--seed=1", *args)


def run_together(jobs):
  """{name: job()} with the jobs run in parallel threads (each job runs one or more subprocesses)."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
    futures = {name: pool.submit(job) for name, job in jobs.items()}
    return {name: future.result() for name, future in futures.items()}


def assert_ran(proc):
  assert proc.returncode == 0, proc.stderr[-4000:]


# ---------------------------------------------------------------------------------------------------
# Command-line runs: CSV, JSONL (then predicting with its labels.json), TSV regression


@pytest.fixture(scope="module")
def runs(tmp_path_factory, config_file, spm_model_file):
  root = tmp_path_factory.mktemp("custom_runs")
  rng = random.Random(0)
  args = lambda out, *more: classifier_args(config_file, spm_model_file, root / out, *more)

  # CSV: a header with a byte order mark (as Excel writes it), an id column, quoted texts with commas,
  # quotes and a line break, a training row with an empty text (skipped); labels from the training file.
  train = topic_items(rng, 48) + [('The judge said, "guilty",\nand the jury agreed', "legal"), ("", "sunny")]
  dev, test = topic_items(rng, 16), topic_items(rng, 8)
  for name, items in (("train", train), ("dev", dev), ("test", test)):
    write_csv(root / f"{name}.csv", [["id", "review", "topic"]] + [[f"{name}-{i}", t, y] for i, (t, y) in
                                                                    enumerate(items)], bom=name == "train")
  csv_run = args("csv", f"--train_file={root / 'train.csv'}", f"--eval_file={root / 'dev.csv'}",
                 f"--predict_file={root / 'test.csv'}", "--text_a_column=review", "--label_column=topic",
                 "--id_column=id", "--do_train", "--do_eval", "--do_predict", "--train_step=60", "--warmup_step=10",
                 "--learning_rate=1e-3", "--train_batch_size=16", "--eval_batch_size=16",
                 "--save_checkpoints_steps=60")

  # JSONL: text pairs, three labels in --label_list's (unsorted) order, integer ids.
  labels = ["yes", "no", "maybe"]
  pair = lambda i: {"uid": 100 + i, "premise": sentence(rng, SUNNY), "hypothesis": sentence(rng, LEGAL),
                    "label": labels[i % 3]}
  for name, count in (("train", 12), ("dev", 9), ("test", 5)):
    write_jsonl(root / f"{name}.jsonl", [pair(i) for i in range(count)])
  jsonl_run = args("jsonl", f"--train_file={root / 'train.jsonl'}", f"--eval_file={root / 'dev.jsonl'}",
                   f"--predict_file={root / 'test.jsonl'}", "--text_a_column=premise", "--text_b_column=hypothesis",
                   "--id_column=uid", "--label_list=yes,no,maybe", "--do_train", "--do_eval", "--do_predict",
                   "--train_step=4", "--train_batch_size=4", "--save_checkpoints_steps=4")

  # TSV regression: the score is the number of sunny words.
  scored = lambda count: [[text, float(sum(word in SUNNY for word in text.split()))]
                          for text, _ in topic_items(rng, count)]
  for name, count in (("train", 16), ("dev", 8), ("test", 6)):
    write_tsv(root / f"{name}.tsv", [["sentence", "score"]] + scored(count))
  tsv_run = args("tsv", f"--train_file={root / 'train.tsv'}", f"--eval_file={root / 'dev.tsv'}",
                 f"--predict_file={root / 'test.tsv'}", "--text_a_column=sentence", "--label_column=score",
                 "--regression", "--do_train", "--do_eval", "--do_predict", "--train_step=4", "--train_batch_size=4",
                 "--save_checkpoints_steps=4")

  # A bad input: the one-line error of a run stopped in training (the others are checked in-process below).
  bad_args, bad_message = bad_input_cases(root)["label"]
  bad_run = classifier_args(config_file, spm_model_file, root / "bad", "--do_train", *bad_args)

  procs = run_together({name: (lambda run=run: run_cli(*run, check=False)) for name, run in (
      ("csv", csv_run), ("jsonl", jsonl_run), ("tsv", tsv_run), ("bad", bad_run))})
  return {"root": root, "procs": procs, "csv_test": test, "bad_message": bad_message}


def read_json(path):
  return json.loads(path.read_text(encoding="utf-8"))


def submit_rows(out):
  lines = (out / "submit_results.tsv").read_text(encoding="utf-8").splitlines()
  assert lines[0] == "index\tprediction"
  return [line.split("\t") for line in lines[1:]]


@pytest.mark.slow
def test_csv_classifier_learns_a_separable_set_and_names_its_labels(runs):
  assert_ran(runs["procs"]["csv"])
  out = runs["root"] / "csv"
  assert read_json(out / "labels.json") == {"labels": ["legal", "sunny"]}  # found in the training file, sorted
  results = read_json(out / "eval_results.json")
  assert set(results) >= {"eval_accuracy", "f1", "eval_loss", "global_step"} and "macro_f1" not in results
  assert results["eval_accuracy"] >= 0.9, results  # chance is 0.5
  assert (out / "best_trial.txt").read_text().startswith("60:60:")
  info = read_json(out / "custom_train.tf_record.info.json")
  assert info["count"] == 49  # 48 + the quoted multi-line text; the empty text skipped
  assert info["settings"]["labels"] == ["legal", "sunny"] and info["settings"]["file_format"] == "csv"
  assert info["settings"]["text_a_column"] == "review" and info["settings"]["label_column"] == "topic"

  probabilities = np.loadtxt(out / "test_results.tsv", delimiter="\t")  # the GLUE shape: one column per label
  test = runs["csv_test"]
  assert probabilities.shape == (len(test), 2)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  rows = submit_rows(out)
  assert [index for index, _ in rows] == [f"test-{i}" for i in range(len(test))]  # --id_column
  assert [label for _, label in rows] == [["legal", "sunny"][int(np.argmax(p))] for p in probabilities]
  assert np.mean([label == y for (_, label), (_, y) in zip(rows, test)]) >= 0.75


@pytest.mark.slow
def test_jsonl_text_pairs_with_a_label_list(runs):
  assert_ran(runs["procs"]["jsonl"])
  out = runs["root"] / "jsonl"
  assert read_json(out / "labels.json") == {"labels": ["yes", "no", "maybe"]}  # --label_list's order
  results = read_json(out / "eval_results.json")
  assert set(results) >= {"eval_accuracy", "macro_f1"} and "f1" not in results
  assert 0.0 <= results["macro_f1"] <= 1.0
  assert read_json(out / "custom_train.tf_record.info.json")["settings"]["text_b_column"] == "hypothesis"
  probabilities = np.loadtxt(out / "test_results.tsv", delimiter="\t")
  assert probabilities.shape == (5, 3)
  rows = submit_rows(out)
  assert [index for index, _ in rows] == [str(100 + i) for i in range(5)]
  assert [label for _, label in rows] == [["yes", "no", "maybe"][int(np.argmax(p))] for p in probabilities]


@pytest.mark.slow
def test_tsv_regression_reports_correlations_and_writes_scores(runs):
  assert_ran(runs["procs"]["tsv"])
  out = runs["root"] / "tsv"
  assert read_json(out / "labels.json") == {"regression": True}
  results = read_json(out / "eval_results.json")
  assert set(results) >= {"pearson", "spearman", "MSE", "eval_loss"} and "eval_accuracy" not in results
  assert -1.0 <= results["pearson"] <= 1.0 and -1.0 <= results["spearman"] <= 1.0
  _, _, value = (out / "best_trial.txt").read_text().split(":")
  assert float(value) == pytest.approx(results["pearson"])
  assert read_json(out / "custom_train.tf_record.info.json")["settings"]["regression"] is True
  scores = np.loadtxt(out / "test_results.tsv", delimiter="\t")
  assert scores.shape == (6,)
  rows = submit_rows(out)
  assert [index for index, _ in rows] == [str(i) for i in range(6)]  # no --id_column: record numbers
  np.testing.assert_allclose([float(value) for _, value in rows], scores, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Bad inputs: one line naming the file (and line) and the column


def bad_input_cases(root):
  """{case: (arguments after the model flags, expected message)}."""
  good = [["sentence", "label"], ["a sunny beach", "pos"], ["a court trial", "neg"]]
  column = write_csv(root / "column.csv", good)
  label = write_csv(root / "label.csv", good + [["a jury", "neutral"]])
  score = write_tsv(root / "score.tsv", [["sentence", "score"], ["a", "1.5"], ["b", "high"]])
  extension = write_csv(root / "data.txt", good)
  return {
      "column": ((f"--train_file={column}", "--text_a_column=review"),
                 f"{column}: no column 'review' (--text_a_column); the header has sentence, label"),
      "label": ((f"--train_file={label}", "--text_a_column=sentence", "--label_list=neg,pos"),
                f"{label} line 4: label 'neutral' is not in --label_list (neg, pos)"),
      "score": ((f"--train_file={score}", "--text_a_column=sentence", "--label_column=score", "--regression"),
                f"{score} line 3: the regression target 'high' (--label_column=score) is not a number"),
      "extension": ((f"--train_file={extension}",),
                    f"--train_file: cannot tell the format of {extension} from its extension (.txt); name it "
                    ".tsv, .csv or .jsonl, or pass --file_format"),
  }


@pytest.mark.parametrize("case", ["column", "label", "score", "extension"])
def test_bad_inputs_are_one_line_user_errors(tmp_path, config_file, spm_model_file, case):
  """The command's own path (flags, checks, data, model, training) in this process; see the next test
  for the process around it."""
  args, message = bad_input_cases(tmp_path)[case]
  _, *model_args = classifier_args(config_file, spm_model_file, tmp_path / "out", "--do_train", *args)
  fv = flags.FlagValues()
  runner.define_flags(fv)
  fv(["run_classifier", *model_args])
  with pytest.raises(UserError) as error:
    runner.ClassificationRun(fv, runner.GlueData).run()
  assert str(error.value) == message


@pytest.mark.slow
def test_a_bad_input_ends_the_command_with_one_line(runs):
  proc = runs["procs"]["bad"]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == "error: " + runs["bad_message"]


# ---------------------------------------------------------------------------------------------------
# The reader


def read(path, fmt, split=TRAIN, task=None, **columns):
  return custom.read_examples(str(path), fmt, custom.Columns(**{"text_a": "text", **columns}), split,
                              lambda text: text, task)


def test_csv_quoting_bom_and_the_line_of_a_record_after_a_multi_line_one(tmp_path):
  path = tmp_path / "data.csv"
  path.write_bytes(b'\xef\xbb\xbftext,label\r\n"one, ""two""",a\r\n"three\r\nfour",b\r\n\r\nfive,c\r\nsix\r\n')
  with pytest.raises(UserError, match=rf"^{path} line 7: expected 2 comma-separated columns like the header, "
                                      "found 1$"):
    read(path, "csv")
  path.write_bytes(path.read_bytes()[:-len(b"six\r\n")])
  examples = read(path, "csv")
  assert [(e.guid, e.text_a, e.label) for e in examples] == [
      ("0", 'one, "two"', "a"), ("1", "three\r\nfour", "b"), ("2", "five", "c")]
  assert custom.collect_labels(examples, str(path)) == ("a", "b", "c")


def test_tsv_is_unquoted_and_a_tab_in_a_text_is_named(tmp_path):
  path = write_tsv(tmp_path / "data.tsv", [["text", "label"], ['"quoted" start', "x"], ["a\tb", "y"]])
  with pytest.raises(UserError, match=r"line 3: expected 2 tab-separated columns like the header, found 3 \(a tab "
                                      "inside a text"):
    read(path, "tsv")
  path = write_tsv(tmp_path / "data.tsv", [["text", "label"], ['"quoted" start', "x"]])
  assert read(path, "tsv")[0].text_a == '"quoted" start'


def test_jsonl_records_keys_and_value_types(tmp_path):
  path = write_jsonl(tmp_path / "data.jsonl", [{"text": "a", "label": 1, "b": "x", "id": 7}, {"text": "b", "label": 0}])
  examples = read(path, "jsonl")
  assert [(e.guid, e.text_a, e.label) for e in examples] == [("0", "a", "1"), ("1", "b", "0")]  # integer labels
  with pytest.raises(UserError, match=rf"^{path} line 2: no key 'id' \(--id_column\)$"):
    read(path, "jsonl", id="id")
  with pytest.raises(UserError, match=rf"^{path} line 1: no key 'hypothesis' \(--text_b_column\)$"):
    read(path, "jsonl", text_b="hypothesis")
  bad = {"label": [3], "text": 5}
  for key, value in bad.items():
    write_jsonl(path, [{"text": "a", "label": "x", key: value}])
    with pytest.raises(UserError, match=rf"^{path} line 1: .*must be a string.*found"):
      read(path, "jsonl")
  (tmp_path / "data.jsonl").write_text('{"text": "a", "label": "x"}\n[1, 2]\n')
  with pytest.raises(UserError, match=rf"^{path} line 2: expected a JSON object \(one record per line\), found a "
                                      "list$"):
    read(path, "jsonl")


def test_predict_files_need_no_label_and_get_a_placeholder(tmp_path):
  path = write_csv(tmp_path / "test.csv", [["text"], ["a"], [""]])
  examples = read(path, "csv", TEST, custom.CustomTask(("neg", "pos")))
  assert [(e.text_a, e.label) for e in examples] == [("a", "neg"), ("", "neg")]  # empty texts kept for predictions
  assert read(path, "csv", TEST, custom.REGRESSION)[0].label == 0.0


def test_regression_targets_are_finite_numbers(tmp_path):
  path = write_jsonl(tmp_path / "data.jsonl", [{"text": "a", "label": 2}, {"text": "b", "label": " 1.5 "}])
  assert [e.label for e in read(path, "jsonl", DEV, custom.REGRESSION)] == [2.0, 1.5]
  for value, problem in (("nan", "is not a finite number"), (True, "must be a number, found true")):
    write_jsonl(path, [{"text": "a", "label": value}])
    with pytest.raises(UserError, match=rf"^{path} line 1: the regression target .*{problem}"):
      read(path, "jsonl", DEV, custom.REGRESSION)


def test_file_formats_come_from_extensions_unless_overridden():
  assert [custom.file_format(p, "train_file") for p in ("a.tsv", "B.CSV", "c.jsonl")] == ["tsv", "csv", "jsonl"]
  assert custom.file_format("data.txt", "train_file", "csv") == "csv"
  with pytest.raises(UserError, match=r"^--eval_file: cannot tell the format of dev from its extension \(none\)"):
    custom.file_format("dev", "eval_file")


# ---------------------------------------------------------------------------------------------------
# Labels: where they come from, labels.json


def test_label_lists_and_found_labels():
  assert custom.parse_label_list([" neg", "pos "]) == ("neg", "pos")
  for values, problem in ((["a", ""], "a label is empty"), (["a", "b", "a"], "label 'a' is listed twice"),
                          (["a"], "a classifier needs two or more labels, got 1")):
    with pytest.raises(UserError, match=f"^--label_list: {problem}"):
      custom.parse_label_list(values)
  assert custom.sorted_labels(["10", "2", "-1"]) == ("-1", "2", "10")  # integers sort as numbers
  assert custom.sorted_labels(["b", "10", "a"]) == ("10", "a", "b")
  with pytest.raises(UserError, match=r"^--train_file: t.csv has only the label 'x'; a classifier needs two or more"):
    custom.collect_labels([custom.InputExample("0", "a", None, "x")], "t.csv")


def custom_flags(tmp_path, *args):
  fv = flags.FlagValues()
  runner.define_flags(fv)
  fv(["prog", "--task_name=custom", f"--output_dir={tmp_path / 'out'}", *args])
  return fv


def test_label_sources_in_order(tmp_path):
  collect = lambda: ("found", "labels")
  choose = lambda *args: custom.choose_task(custom_flags(tmp_path, *args), collect)
  assert choose("--regression").is_regression
  assert choose("--label_list=b,a", "--do_train").labels == ("b", "a")
  assert choose("--do_train").labels == ("found", "labels")
  with pytest.raises(UserError, match="^--label_list is required without --do_train: no labels.json of a trained "
                                      "model in --output_dir or beside --init_checkpoint"):
    choose("--do_predict", f"--init_checkpoint={tmp_path / 'model' / 'model.ckpt-best'}")
  (tmp_path / "model").mkdir()
  (tmp_path / "model" / "labels.json").write_text('{"labels": ["x", "y"]}')
  init = f"--init_checkpoint={tmp_path / 'model' / 'model.ckpt-best'}"
  task = choose("--do_predict", init)
  assert task.labels == ("x", "y") and task.source == f"the model's labels in {tmp_path / 'model' / 'labels.json'}"
  assert choose("--do_predict", f"--init_checkpoint={tmp_path / 'model'}").labels == ("x", "y")  # a directory
  # The labels of the model the run uses: --output_dir's when it holds a checkpoint, else --init_checkpoint's.
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "labels.json").write_text('{"regression": true}')
  assert choose("--do_eval", init).labels == ("x", "y")
  fv = custom_flags(tmp_path, "--do_eval", init)
  assert custom.choose_task(fv, collect, output_dir_has_checkpoint=True).is_regression
  with pytest.raises(UserError, match="exclude each other"):
    choose("--regression", "--label_list=a,b")


def test_labels_json_is_written_checked_and_validated(tmp_path):
  path = tmp_path / "labels.json"
  task = custom.CustomTask(("neg", "pos"))
  custom.check_and_save_labels(str(tmp_path), task, has_checkpoint=False, write=True)
  assert json.loads(path.read_text()) == {"labels": ["neg", "pos"]}
  custom.check_and_save_labels(str(tmp_path), task, has_checkpoint=True, write=True)  # the same labels: fine
  with pytest.raises(UserError, match=rf"^--output_dir: its checkpoints were trained with labels neg, pos \({path}\), "
                                      "but this run has a regression; use another --output_dir$"):
    custom.check_and_save_labels(str(tmp_path), custom.REGRESSION, has_checkpoint=True, write=True)
  custom.check_and_save_labels(str(tmp_path), custom.REGRESSION, has_checkpoint=False, write=True)  # no model: replaced
  assert json.loads(path.read_text()) == {"regression": True}
  for text in ('{"labels": ["a"]}', '{"labels": ["a", "a"]}', '{"labels": ["a", 1]}', '["a", "b"]',
               '{"regression": false}'):
    path.write_text(text)
    with pytest.raises(UserError, match=rf"^{path}: expected {{\"labels\": \[two or more distinct strings\]}}"):
      custom.read_labels_file(str(path))


class WhitespaceTokenizer:
  sp_model = None  # WordPiece-like: the reader leaves texts as they are


def test_the_feature_cache_is_keyed_by_labels_columns_and_format(tmp_path):
  train = write_csv(tmp_path / "train.csv", [["text", "label"], ["a", "x"], ["b", "y"]])
  settings = lambda *args: runner.CustomData(custom_flags(tmp_path, f"--train_file={train}", "--do_train", *args),
                                             WhitespaceTokenizer()).cache(TRAIN)[2]
  found = settings()
  assert found == {"task": "custom", "split": "train", "max_seq_length": 512, "file_format": "csv",
                   "text_a_column": "text", "text_b_column": None, "label_column": "label", "labels": ["x", "y"]}
  assert settings("--label_list=y,x")["labels"] == ["y", "x"]
  assert settings("--regression")["regression"] is True and "labels" not in settings("--regression")
  # (with --label_list the file is not read here, so its columns and format need not fit these flags)
  assert settings("--label_list=x,y", "--text_b_column=b")["text_b_column"] == "b"
  assert settings("--label_list=x,y", "--file_format=tsv")["file_format"] == "tsv"


def test_flag_mistakes_are_one_line_before_any_work(tmp_path):
  def refused(task_name, *args):
    fv = flags.FlagValues()
    runner.define_flags(fv)
    fv(["prog", f"--task_name={task_name}", f"--output_dir={tmp_path / 'out'}", *args])
    with pytest.raises(UserError) as error:
      runner.ClassificationRun(fv, runner.GlueData)
    return str(error.value)

  assert refused("RTE", "--train_file=x.tsv") == ("--train_file is for --task_name=custom (your own files); the "
                                                  "GLUE tasks read --data_dir")
  assert refused("custom", "--do_train") == "--do_train with --task_name=custom needs --train_file (a .tsv, .csv or " \
                                            ".jsonl file)"
  assert refused("custom", "--do_eval", f"--eval_file={tmp_path / 'dev.csv'}") == (
      f"--eval_file: file not found: {tmp_path / 'dev.csv'}")
  assert refused("custom", "--do_train", "--data_dir=glue").startswith("--data_dir is for the GLUE tasks")
  assert refused("custom", "--do_predict", "--predict_file=x.csv", "--label_column=").startswith(
      "--label_column must name a column")
  assert "or custom for your own files" in refused("squad", "--do_train")
  assert not tmp_path.joinpath("out").exists()


# ---------------------------------------------------------------------------------------------------
# Metrics


def test_macro_f1_matches_hand_computed_values():
  # class 0: tp 1, 1 predicted, 1 true -> 1; class 1: tp 1, 1 predicted, 2 true -> 2/3; class 2: tp 1, 2, 1 -> 2/3
  assert metrics.macro_f1([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
  assert metrics.macro_f1([0, 0], [1, 1]) == 0.0  # classes 0 and 1 both score 0
  assert math.isnan(metrics.macro_f1([], []))


def test_custom_tasks_report_f1_for_two_labels_and_macro_f1_for_more():
  outputs = {"logits": np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
             "predictions": np.array([0, 1, 2]), "label_ids": np.array([0, 1, 1]), "is_real_example": np.ones(3)}
  scores = metrics.classifier_scores(custom.CustomTask(("a", "b", "c")), outputs, batch_size=8)
  assert scores["eval_accuracy"] == pytest.approx(2 / 3) and "f1" not in scores
  assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
  binary = {key: value[:, :2] if key == "logits" else value for key, value in outputs.items()}
  binary["predictions"] = np.array([0, 1, 1])
  scores = metrics.classifier_scores(custom.CustomTask(("a", "b")), binary, batch_size=8)
  assert scores["f1"] == 1.0 and "macro_f1" not in scores
  assert custom.REGRESSION.key_metric == "pearson" and custom.CustomTask(("a", "b")).key_metric == "eval_accuracy"
