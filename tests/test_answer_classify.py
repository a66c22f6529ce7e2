"""albert.answer and albert.classify: the same model gives the runners' answers and labels, from every source.

run_squad_v1 fine-tunes a tiny SQuAD model (predictions.json, an export) while run_classifier predicts a test
set with a tiny classifier checkpoint (test_results.tsv, an export). Each command runs once through the
command line; the other model sources (--init_checkpoint, the SavedModel, a TF-Hub module with the
fine-tuned checkpoint) and the bad inputs run in this process through the commands' `run(flag_values)`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO_ROOT, SQUAD_TINY_CONFIG, shared_path, subset_file, write_tf1_hub_module

from albert import answer, classify
from albert.core.errors import UserError
from albert.io import checkpoint
from albert.model.config import AlbertConfig
from albert.tasks.classification.task import ClassifierTask
from albert.tasks.squad.task import SquadV2Task
from albert.text import in_graph
from albert.text.sentencepiece import preprocess_text
from albert.text.tokenizer import FullTokenizer

pytestmark = pytest.mark.slow

SQUAD_WINDOW = ["--max_seq_length=128", "--doc_stride=64", "--max_query_length=32"]
CLASSIFIER_CONFIG = dict(SQUAD_TINY_CONFIG, embedding_size=16, hidden_size=32, intermediate_size=64,
                         max_position_embeddings=64)
SEQ = "--max_seq_length=32"
NAMES = ["encyclopedia", "fairy tale"]
ONE_QUESTION = 3  # the question albert.answer answers through the command line


class Background:
  """A command line running while this process goes on; `stdout()` waits for it (once) and checks it succeeded.

  Its output goes to temporary files, not pipes, so a chatty command never blocks on a full pipe.
  """

  def __init__(self, module, *args):
    self.module, self._stdout = module, None
    self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    self.process = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=env,
                                    stdout=self._out, stderr=self._err, text=True)

  def stop(self):
    if self.process.poll() is None:
      self.process.kill()
      self.process.wait()

  def stdout(self):
    if self._stdout is None:
      self.process.wait(timeout=900)
      self._err.seek(0)
      assert self.process.returncode == 0, f"{self.module} failed:\n{self._err.read()[-4000:]}"
      self._out.seek(0)
      self._stdout = self._out.read()
    return self._stdout


def _texts():
  """Real sentences of two styles (WikiText, Grimm), alternating."""
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    wiki = [line.strip() for line in f if 60 <= len(line.strip()) <= 160 and not line.startswith(" =")][:6]
  with open(shared_path("corpus", "grimm-fairy-tales.txt"), encoding="utf-8") as f:
    words = f.read().split()[3000:8000]
  tales = [s.strip() + "." for s in " ".join(words).split(". ") if 60 <= len(s.strip()) <= 160][:6]
  return [text for pair in zip(wiki, tales) for text in pair]


def write_classifier_checkpoint(prefix, num_labels, seed):
  """A classifier checkpoint with the weights of a fresh ClassifierTask of CLASSIFIER_CONFIG; returns the task."""
  tf.random.set_seed(seed)
  task = ClassifierTask(AlbertConfig.from_dict(CLASSIFIER_CONFIG), num_labels)
  task.build()
  checkpoint.save_checkpoint(str(prefix), {name: v.numpy() for name, v in task.named_variables().items()})
  return task


@pytest.fixture(scope="module")
def runs(squad_assets, tmp_path_factory):
  """Three command lines at once: run_squad_v1 fine-tuning on 50 real questions (~9 steps), predicting them
  and exporting; run_classifier predicting an SST-2-layout test set with a classifier checkpoint and
  exporting it; albert.classify labelling the same texts with the same checkpoint, from a run directory
  holding it with albert_config.json and labels.json."""
  work = tmp_path_factory.mktemp("use_your_model")
  squad_file = subset_file(shared_path("squad", "dev-v1.1-sample.json"), work / "squad.json", 50)
  squad_out, squad_export = work / "squad_out", work / "squad_export"
  squad = Background("albert.run_squad_v1", f"--albert_config_file={squad_assets['config']}",
                     f"--spm_model_file={squad_assets['spm']}", f"--output_dir={squad_out}", *SQUAD_WINDOW,
                     f"--train_file={squad_file}", f"--predict_file={squad_file}", "--do_train", "--do_predict",
                     "--train_batch_size=16", "--num_train_epochs=3", "--learning_rate=1e-3", "--seed=1",
                     f"--export_dir={squad_export}")
  texts = _texts()
  (work / "glue" / "SST-2").mkdir(parents=True)
  (work / "glue" / "SST-2" / "test.tsv").write_text(
      "index\tsentence\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
  model = work / "classifier"
  write_classifier_checkpoint(model / "model.ckpt-1", num_labels=2, seed=1)
  (model / "albert_config.json").write_text(json.dumps(CLASSIFIER_CONFIG))
  (model / "labels.json").write_text(json.dumps({"labels": NAMES}))
  classifier_out, classifier_export = work / "classifier_out", work / "classifier_export"
  checkpoint.copy_checkpoint(str(model / "model.ckpt-1"), str(classifier_out / "model.ckpt-1"))
  run_classifier = Background("albert.run_classifier", f"--albert_config_file={model / 'albert_config.json'}",
                              f"--spm_model_file={squad_assets['spm']}", f"--data_dir={work / 'glue'}",
                              f"--output_dir={classifier_out}", "--task_name=SST-2", SEQ, "--do_predict",
                              f"--export_dir={classifier_export}")
  texts_file = work / "texts.jsonl"
  texts_file.write_text("".join(json.dumps({"id": str(i), "text_a": t}) + "\n" for i, t in enumerate(texts)),
                        encoding="utf-8")
  classify_cli = Background("albert.classify", f"--model_dir={model}", f"--spm_model_file={squad_assets['spm']}",
                            SEQ, f"--input_file={texts_file}", f"--output_file={work / 'labels.jsonl'}")
  squad.stdout()
  run_classifier.stdout()
  shutil.copy(squad_assets["config"], squad_out / "albert_config.json")  # the config beside the checkpoint
  with open(squad_file, encoding="utf-8") as f:
    questions = [(qa["id"], qa["question"], paragraph["context"]) for article in json.load(f)["data"]
                 for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  # One question from the run directory, checked by the last answer test while the others run here.
  _, question, context = questions[ONE_QUESTION]
  (work / "context.txt").write_text(context, encoding="utf-8")
  answer_cli = Background("albert.answer", f"--model_dir={squad_out}", f"--spm_model_file={squad_assets['spm']}",
                          *SQUAD_WINDOW, f"--question={question}", f"--context_file={work / 'context.txt'}",
                          f"--output_file={work / 'answer.jsonl'}")
  yield dict(work=work, spm=squad_assets["spm"], squad_config=squad_assets["config"], squad_file=squad_file,
             squad_out=squad_out, squad_export=squad_export, questions=questions,
             predictions=json.loads((squad_out / "predictions.json").read_text()),
             nbest=json.loads((squad_out / "nbest_predictions.json").read_text()),
             classifier=model, classifier_config=str(model / "albert_config.json"),
             classifier_export=classifier_export,
             texts=texts, test_results=np.loadtxt(classifier_out / "test_results.tsv", delimiter="\t"),
             classify_cli=classify_cli, classify_output=work / "labels.jsonl", answer_cli=answer_cli,
             answer_output=work / "answer.jsonl")
  for command in (classify_cli, answer_cli):  # left running only when a test failed before waiting for it
    command.stop()


def run_in_process(command, *args):
  """Runs `command.run` with a fresh FlagValues parsed from `args` (batches of 32 unless they say); returns
  the output file's records."""
  fv = flags.FlagValues()
  command.define_flags(fv)
  fv(["prog", "--batch_size=32", *map(str, args)])
  command.run(fv)
  return [json.loads(line) for line in open(fv.output_file, encoding="utf-8")] if fv.output_file else None


def read_records(path):
  return [json.loads(line) for line in open(path, encoding="utf-8")]


# ---- answers ----

def assert_run_squads_answers(runs, records, ids=None):
  """Same best answers as predictions.json, offsets into the context, n-best as nbest_predictions.json."""
  contexts = {qid: context for qid, _, context in runs["questions"]}
  ids = ids or [qid for qid, _, _ in runs["questions"]]
  assert [record["id"] for record in records] == ids
  for record in records:
    qid = record["id"]
    assert record["answer"] == runs["predictions"][qid], qid
    for entry in [record] + [dict(e, answer=e["text"]) for e in record["nbest"]]:
      if entry["start"] is not None:
        assert contexts[qid][entry["start"]:entry["end"]] == entry["answer"]
    assert sum(e["probability"] for e in record["nbest"]) == pytest.approx(1.0, abs=1e-5)
    assert [e["text"] for e in record["nbest"]] == [e["text"] for e in runs["nbest"][qid]]
    np.testing.assert_allclose([e["probability"] for e in record["nbest"]],
                               [e["probability"] for e in runs["nbest"][qid]], atol=1e-4)


def test_answer_from_init_checkpoint_saved_model_and_hub_module_match_run_squad(runs, tmp_path):
  common = [f"--spm_model_file={runs['spm']}", *SQUAD_WINDOW]
  # --init_checkpoint with --albert_config_file, on the SQuAD file itself.
  prefix = checkpoint.latest_checkpoint(str(runs["squad_out"]))
  records = run_in_process(answer, f"--init_checkpoint={prefix}", f"--albert_config_file={runs['squad_config']}",
                           *common, f"--input_file={runs['squad_file']}", f"--output_file={tmp_path / 'a.jsonl'}")
  assert_run_squads_answers(runs, records)
  # The exported SavedModel (its length is its own), on JSON lines.
  lines = tmp_path / "questions.jsonl"
  lines.write_text("".join(json.dumps({"id": qid, "question": q, "context": c}) + "\n"
                           for qid, q, c in runs["questions"]), encoding="utf-8")
  records = run_in_process(answer, f"--saved_model_dir={runs['squad_export']}", f"--spm_model_file={runs['spm']}",
                           "--max_query_length=32", "--doc_stride=64", f"--input_file={lines}",
                           f"--output_file={tmp_path / 'b.jsonl'}")
  assert_run_squads_answers(runs, records)
  # A TF1 Hub module of the same architecture supplies config, tokenizer and encoder; the run's checkpoint
  # supplies the fine-tuned weights.
  module = tmp_path / "hub_module"
  write_tf1_hub_module(module, AlbertConfig.from_dict(SQUAD_TINY_CONFIG), runs["spm"])
  records = run_in_process(answer, f"--albert_hub_module_handle={module}", f"--model_dir={runs['squad_out']}",
                           *SQUAD_WINDOW, f"--input_file={lines}", f"--output_file={tmp_path / 'c.jsonl'}")
  assert_run_squads_answers(runs, records)


def _answer_error(runs, tmp_path, *args):
  with pytest.raises(UserError) as error:
    run_in_process(answer, f"--spm_model_file={runs['spm']}", "--max_seq_length=128",
                   f"--output_file={tmp_path / 'out.jsonl'}", *args)
  message = str(error.value)
  assert "\n" not in message and not (tmp_path / "out.jsonl").exists()
  return message


def test_answer_bad_inputs_are_one_line_errors(runs, tmp_path):
  model = f"--model_dir={runs['squad_out']}"
  assert _answer_error(runs, tmp_path, model, "--question=Who?", "--context=  \n") == "--context is empty"
  long_question = "Which " + " ".join(["very"] * 200) + " long question is this?"
  message = _answer_error(runs, tmp_path, model, f"--question={long_question}", "--context=A short context.")
  assert message.startswith("--question: the question has ") and "--max_seq_length=128" in message
  (tmp_path / "empty_run").mkdir()
  assert _answer_error(runs, tmp_path, f"--model_dir={tmp_path / 'empty_run'}", "--question=Who?",
                       "--context=Her.") == (f"--model_dir: no checkpoint in {tmp_path / 'empty_run'} (expected "
                                             "model.ckpt-best or model.ckpt-<step>)")
  message = _answer_error(runs, tmp_path, f"--model_dir={runs['classifier']}", "--question=Who?", "--context=Her.",
                          SEQ)
  assert message.endswith("is a classifier with 2 output(s) (albert.classify), not a SQuAD model fine-tuned with "
                          "run_squad_v1 or run_squad_v2")
  message = _answer_error(runs, tmp_path, f"--saved_model_dir={runs['classifier_export']}", "--question=Who?",
                          "--context=Her.")
  assert "is a classifier export (serialized_example input)" in message and message.endswith("use albert.classify")
  message = _answer_error(runs, tmp_path, model, "--question=Who?", "--context=Her.", "--version_2_with_negative")
  assert message.endswith("is a SQuAD v1 model")


def test_answer_squad_v2_model_null_answers_and_threshold(runs, tmp_path):
  """A v2 checkpoint (fresh weights) is told by its head; the null answer follows the run's tuned threshold."""
  tf.random.set_seed(3)
  task = SquadV2Task(AlbertConfig.from_dict(SQUAD_TINY_CONFIG))
  task.build()
  model = tmp_path / "v2"
  checkpoint.save_checkpoint(str(model / "model.ckpt-1"),
                             {name: v.numpy() for name, v in task.named_variables().items()})
  shutil.copy(runs["squad_config"], model / "albert_config.json")
  (model / "eval_results.json").write_text(json.dumps({"null_score_diff_threshold": 1.0}))  # as a v2 run tunes it
  questions = runs["questions"][:6]
  lines = tmp_path / "questions.jsonl"
  lines.write_text("".join(json.dumps({"id": qid, "question": q, "context": c}) + "\n" for qid, q, c in questions),
                   encoding="utf-8")
  common = [f"--model_dir={model}", f"--spm_model_file={runs['spm']}", *SQUAD_WINDOW, f"--input_file={lines}"]
  # A threshold no null score diff reaches: always a span (the flag wins over the run's threshold).
  spans = run_in_process(answer, *common, "--null_score_diff_threshold=1e9", f"--output_file={tmp_path / 'a.jsonl'}")
  for record, (_, _, context) in zip(spans, questions):
    assert record["answer"] and context[record["start"]:record["end"]] == record["answer"]
    assert record["null_probability"] == pytest.approx(1 / (1 + np.exp(-record["null_score_diff"])))
  # The run's threshold, set between the diffs so that both sides are seen.
  diffs = sorted(record["null_score_diff"] for record in spans)
  (model / "eval_results.json").write_text(json.dumps({"null_score_diff_threshold": diffs[3]}))
  records = run_in_process(answer, *common, f"--output_file={tmp_path / 'b.jsonl'}")
  for record, span in zip(records, spans):
    if span["null_score_diff"] >= diffs[3]:
      assert (record["answer"], record["start"], record["probability"]) == ("", None, span["null_probability"])
    else:
      assert record == span
  with pytest.raises(UserError, match=r"^--noversion_2_with_negative, but checkpoint .* is a SQuAD v2 model$"):
    run_in_process(answer, *common, "--noversion_2_with_negative", f"--output_file={tmp_path / 'c.jsonl'}")


# ---- labels ----

def assert_run_classifiers_labels(runs, records, names=NAMES):
  assert [record["id"] for record in records] == [str(i) for i in range(len(runs["texts"]))]
  probabilities = np.array([[record["probabilities"][name] for name in names] for record in records])
  np.testing.assert_allclose(probabilities, runs["test_results"], atol=2e-5)
  assert [record["label"] for record in records] == [names[i] for i in runs["test_results"].argmax(axis=1)]
  for record in records:
    assert record["probability"] == max(record["probabilities"].values())


def test_classify_texts_from_the_run_directory_through_the_command_line(runs):
  stdout = runs["classify_cli"].stdout()
  assert_run_classifiers_labels(runs, read_records(runs["classify_output"]))
  assert stdout.strip() == f"classified {len(runs['texts'])} texts: {runs['classify_output']}"


def test_classify_from_saved_model_and_init_checkpoint_with_label_names(runs, tmp_path):
  tsv = tmp_path / "texts.tsv"
  tsv.write_text("id\ttext_a\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(runs["texts"])), encoding="utf-8")
  # The export (its input length read from it); labels.json is not beside it, so the outputs are indices.
  records = run_in_process(classify, f"--saved_model_dir={runs['classifier_export']}",
                           f"--spm_model_file={runs['spm']}", f"--input_file={tsv}",
                           f"--output_file={tmp_path / 'a.jsonl'}")
  assert_run_classifiers_labels(runs, records, ["0", "1"])
  # A checkpoint copied away from its run: labels from --task_name (RTE's), else indices.
  copy = tmp_path / "elsewhere" / "model.ckpt-1"
  checkpoint.copy_checkpoint(str(runs["classifier"] / "model.ckpt-1"), str(copy))
  common = [f"--init_checkpoint={copy}", f"--albert_config_file={runs['classifier_config']}",
            f"--spm_model_file={runs['spm']}", SEQ, f"--input_file={tsv}"]
  records = run_in_process(classify, *common, "--task_name=RTE", f"--output_file={tmp_path / 'b.jsonl'}")
  assert_run_classifiers_labels(runs, records, ["entailment", "not_entailment"])
  with pytest.raises(UserError, match=r"^--task_name=mnli names labels contradiction, entailment, neutral, but "
                                      r"checkpoint .* has 2 output\(s\)$"):
    run_in_process(classify, *common, "--task_name=MNLI", f"--output_file={tmp_path / 'c.jsonl'}")
  (copy.parent / "labels.json").write_text(json.dumps({"regression": True}))
  with pytest.raises(UserError, match="names a regression, but checkpoint"):
    run_in_process(classify, *common, f"--output_file={tmp_path / 'd.jsonl'}")


def test_classify_regression_gives_the_score_and_bad_inputs_are_one_line(runs, tmp_path):
  regression = tmp_path / "regression"
  task = write_classifier_checkpoint(regression / "model.ckpt-1", num_labels=1, seed=2)
  (regression / "labels.json").write_text(json.dumps({"regression": True}))
  common = [f"--albert_config_file={runs['classifier_config']}", f"--spm_model_file={runs['spm']}", SEQ]
  text = runs["texts"][1]  # 80 pieces: truncated
  (record,) = run_in_process(classify, f"--model_dir={regression}", *common, f"--text_a={text}",
                             f"--output_file={tmp_path / 'score.jsonl'}")
  tokenizer = FullTokenizer(do_lower_case=True, spm_model_file=runs["spm"])
  pieces = tokenizer.tokenize(preprocess_text(text, lower=True))[:30]  # run_classifier's input: 32 with [CLS], [SEP]
  assert len(pieces) == 30
  ids = tokenizer.convert_tokens_to_ids(["[CLS]", *pieces, "[SEP]"])
  expected = task.logits({"input_ids": tf.constant([ids]), "input_mask": tf.ones([1, len(ids)], tf.int32),
                          "segment_ids": tf.zeros([1, len(ids)], tf.int32)}, training=False)
  assert set(record) == {"id", "score"}
  assert record["score"] == pytest.approx(float(expected[0, 0]), abs=1e-5)

  def error(*args):
    with pytest.raises(UserError) as raised:
      run_in_process(classify, f"--spm_model_file={runs['spm']}", f"--output_file={tmp_path / 'x.jsonl'}", *args)
    assert "\n" not in str(raised.value) and not (tmp_path / "x.jsonl").exists()
    return str(raised.value)

  assert error(f"--model_dir={regression}", "--text_a= ") == "--text_a: the text is empty"
  assert error(f"--model_dir={runs['squad_out']}", "--text_a=Hello.", "--max_seq_length=128").endswith(
      "is a SQuAD v1 model (albert.answer), not a classifier fine-tuned with run_classifier")
  assert "takes token ids, like a SQuAD export" in error(f"--saved_model_dir={runs['squad_export']}", "--text_a=Hi.")
  assert error("--text_a=Hi.") == ("no model: pass --model_dir (a run's output directory), --init_checkpoint or "
                                   "--saved_model_dir")


# ---- the answer command line, last: it ran while the tests above did ----

def test_answer_one_question_from_the_run_directory_through_the_command_line(runs):
  stdout = runs["answer_cli"].stdout()
  qid, question, _ = runs["questions"][ONE_QUESTION]
  (record,) = read_records(runs["answer_output"])
  assert_run_squads_answers(runs, [dict(record, id=qid)], [qid])
  assert stdout.startswith(f"question: {question}\n")
  assert f"answer:   {record['answer']!r} (characters {record['start']}-{record['end']}, " in stdout


SERVE_TEXT_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece op the signature uses)
questions = json.load(open(sys.argv[2], encoding="utf-8"))
serve = tf.saved_model.load(sys.argv[1]).signatures["serve_text"]
out = serve(question=tf.constant([q["question"] for q in questions]),
            context=tf.constant([q["context"] for q in questions]))
print(json.dumps({key: value.numpy().tolist() for key, value in out.items()}, default=lambda b: b.decode("utf-8")))
"""


@pytest.mark.skipif(not in_graph.available(), reason="tensorflow-text (the [serving] extra) is not installed")
def test_squad_export_answers_raw_text_in_a_fresh_process_like_the_command_line(runs, tmp_path):
  """The export's serve_text signature, loaded by a process without albert, answers questions the model never
  trained on exactly as albert.answer does from the run directory."""
  held_out = [(qa["id"], qa["question"], paragraph["context"])
              for article in json.load(open(shared_path("squad", "dev-v1.1-sample.json"), encoding="utf-8"))["data"]
              for paragraph in article["paragraphs"] for qa in paragraph["qas"]][60:90]
  lines = tmp_path / "held_out.jsonl"
  lines.write_text("".join(json.dumps({"id": qid, "question": q, "context": c}) + "\n" for qid, q, c in held_out),
                   encoding="utf-8")
  records = run_in_process(answer, f"--model_dir={runs['squad_out']}", f"--spm_model_file={runs['spm']}",
                           *SQUAD_WINDOW, f"--input_file={lines}", f"--output_file={tmp_path / 'cli.jsonl'}")
  (tmp_path / "questions.json").write_text(json.dumps([{"question": q, "context": c} for _, q, c in held_out]))
  export = os.path.join(runs["squad_export"], "saved_model", os.listdir(runs["squad_export"] / "saved_model")[0])
  child = subprocess.run([sys.executable, "-c", SERVE_TEXT_SCRIPT, export, str(tmp_path / "questions.json")],
                         cwd=tmp_path, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=""),
                         capture_output=True, text=True, timeout=600)
  assert child.returncode == 0, child.stderr[-3000:]
  served = json.loads(child.stdout.strip().splitlines()[-1])
  assert served["answer"] == [record["answer"] for record in records]
  assert served["start"] == [record["start"] for record in records]
  assert served["end"] == [record["end"] for record in records]
  np.testing.assert_allclose(served["probability"], [record["probability"] for record in records], atol=1e-5)
