"""The shipped quickstart data is valid SQuAD 1.1 / pretraining text, and `python -m albert.quickstart`
runs the whole pipeline to held-out scores clearly above chance."""

import collections
import json
import os
import re
import string
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "albert", "data", "quickstart")


def load_squad(name):
  with open(os.path.join(DATA_DIR, name), encoding="utf-8") as f:
    return json.load(f)


def paragraphs(dataset):
  return [paragraph for article in dataset["data"] for paragraph in article["paragraphs"]]


def questions(dataset):
  return [qa for paragraph in paragraphs(dataset) for qa in paragraph["qas"]]


def sentence_count(text):
  return len(re.findall(r"[.!?](?:\s|$)", text))


@pytest.fixture(scope="module", params=["squad_train.json", "squad_heldout.json"])
def squad_file(request):
  return load_squad(request.param)


def test_files_are_squad_1_1(squad_file):
  assert squad_file["version"] == "1.1"
  for article in squad_file["data"]:
    assert set(article) == {"title", "paragraphs"} and article["title"]
    for paragraph in article["paragraphs"]:
      assert set(paragraph) == {"context", "qas"}
      for qa in paragraph["qas"]:
        assert set(qa) == {"id", "question", "answers"}
        assert qa["question"].endswith("?")
        assert len(qa["answers"]) == 1 and set(qa["answers"][0]) == {"text", "answer_start"}


def test_every_answer_start_points_at_its_text(squad_file):
  for paragraph in paragraphs(squad_file):
    context = paragraph["context"]
    for qa in paragraph["qas"]:
      answer = qa["answers"][0]
      start = answer["answer_start"]
      assert context[start:start + len(answer["text"])] == answer["text"], qa["id"]
      assert answer["text"] == answer["text"].strip() and answer["text"], qa["id"]


def test_paragraph_and_question_counts(squad_file):
  for paragraph in paragraphs(squad_file):
    assert 3 <= sentence_count(paragraph["context"]) <= 6, paragraph["context"][:60]
    assert 3 <= len(paragraph["qas"]) <= 5, paragraph["context"][:60]


def test_enough_paragraphs_and_short_answers():
  train, heldout = load_squad("squad_train.json"), load_squad("squad_heldout.json")
  assert len(paragraphs(train)) >= 32 and len(paragraphs(heldout)) >= 8
  assert len(paragraphs(train)) + len(paragraphs(heldout)) >= 40
  all_questions = questions(train) + questions(heldout)
  short = [qa for qa in all_questions if len(qa["answers"][0]["text"].split()) <= 3]
  assert len(short) >= 0.7 * len(all_questions)
  # Wh-questions (possibly after a preposition: "In which...", "For how long..."), not yes/no ones.
  wh_words = {"what", "who", "whom", "whose", "when", "where", "which", "how"}
  wh_questions = [qa for qa in all_questions if wh_words & set(qa["question"].lower().split()[:3])]
  assert len(wh_questions) >= 0.95 * len(all_questions)


def test_ids_unique_and_heldout_disjoint_from_train():
  train, heldout = load_squad("squad_train.json"), load_squad("squad_heldout.json")
  ids = [qa["id"] for qa in questions(train) + questions(heldout)]
  assert len(ids) == len(set(ids))
  assert not {a["title"] for a in train["data"]} & {a["title"] for a in heldout["data"]}
  assert not {p["context"] for p in paragraphs(train)} & {p["context"] for p in paragraphs(heldout)}
  assert not {q["question"] for q in questions(train)} & {q["question"] for q in questions(heldout)}


def read_corpus_documents():
  with open(os.path.join(DATA_DIR, "corpus.txt"), encoding="utf-8") as f:
    text = f.read()
  assert text.endswith("\n") and not text.startswith("\n") and "\n\n\n" not in text
  return [block.split("\n") for block in text.strip("\n").split("\n\n")]


def test_corpus_is_one_sentence_per_line_with_documents():
  documents = read_corpus_documents()
  sentences = [line for document in documents for line in document]
  assert len(documents) >= 80
  assert len(sentences) >= 1400
  for line in sentences:
    assert line == line.strip() and line, repr(line)
    assert line[0].isupper() or line[0].isdigit(), line
    assert line[-1] in ".!?", line
    assert sentence_count(line) == 1, line


def test_corpus_contains_every_paragraph_and_the_readme_says_original():
  corpus = "\n".join(" ".join(document) for document in read_corpus_documents())
  for name in ("squad_train.json", "squad_heldout.json"):
    for paragraph in paragraphs(load_squad(name)):
      assert paragraph["context"] in corpus
  with open(os.path.join(DATA_DIR, "README.md"), encoding="utf-8") as f:
    assert "Original text written for this project" in f.read()


def run_quickstart(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "albert.quickstart", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=3600)


def test_non_empty_output_dir_is_a_user_error(tmp_path):
  (tmp_path / "old_run.txt").write_text("earlier run")
  result = run_quickstart(f"--output_dir={tmp_path}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(f"error: --output_dir={tmp_path} is not empty")


def test_non_positive_steps_are_a_user_error(tmp_path):
  result = run_quickstart(f"--output_dir={tmp_path / 'out'}", "--pretrain_steps=0")
  assert result.returncode == 2
  assert "error: flag --pretrain_steps=0: must be >= 1" in result.stderr
  assert not (tmp_path / "out").exists()


def normalize(text):
  """SQuAD's answer normalization, restated: lower case, no punctuation, no articles, single spaces."""
  text = "".join(c for c in text.lower() if c not in set(string.punctuation))
  return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def f1(gold, prediction):
  gold_words, predicted_words = normalize(gold).split(), normalize(prediction).split()
  common = sum((collections.Counter(gold_words) & collections.Counter(predicted_words)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(predicted_words), common / len(gold_words)
  return 2 * precision * recall / (precision + recall)


def random_span_f1(dataset, max_words):
  """Expected F1 (percent) of answering with a uniformly random span of 1..max_words context words:
  what a model that learned nothing about the questions scores at best (its spans are arbitrary)."""
  total, count = 0.0, 0
  for paragraph in paragraphs(dataset):
    words = paragraph["context"].split()
    spans = [" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(i + max_words, len(words)) + 1)]
    for qa in paragraph["qas"]:
      total += sum(f1(qa["answers"][0]["text"], span) for span in spans) / len(spans)
      count += 1
  return 100 * total / count


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
  output_dir = tmp_path_factory.mktemp("quickstart") / "qs"
  # Few steps: this checks the pipeline and its outputs; the README's quality figures come from runs
  # with the defaults on named machines.
  result = run_quickstart(f"--output_dir={output_dir}", "--pretrain_steps=50", "--finetune_epochs=5")
  return output_dir, result


@pytest.mark.slow
def test_quickstart_end_to_end(quickstart_run):
  output_dir, result = quickstart_run
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  out = result.stdout
  for stage in range(1, 5):
    assert f"[{stage}/4]" in out
  exact_match = float(re.search(r"exact match\s+([\d.]+)", out).group(1))
  f1_score = float(re.search(r"F1\s+([\d.]+)", out).group(1))

  with open(output_dir / "squad" / "eval_results.json") as f:
    scores = json.load(f)
  assert round(scores["exact_match"], 2) == exact_match and round(scores["f1"], 2) == f1_score
  for relative in ("spm.model", "spm.vocab", "albert_config.json", "pretraining_data.tfrecord",
                   "commands.sh", "pretraining/model.ckpt-best.index", "pretraining/eval_results.txt",
                   "squad/predictions.json", "squad/nbest_predictions.json", "logs/4_run_squad_v1.log"):
    assert (output_dir / relative).exists(), relative
    assert str(output_dir / relative.split("/")[0]) in out, relative
  next_steps = out[out.index("Next, with real data"):]
  assert "albert_models/albert_base_v2.tar.gz" in next_steps
  assert "python -m albert.run_squad_v1" in next_steps and "--max_seq_length=384" in next_steps

  heldout = load_squad("squad_heldout.json")
  with open(output_dir / "squad" / "predictions.json") as f:
    predictions = json.load(f)
  assert set(predictions) == {qa["id"] for qa in questions(heldout)}
  # Our own F1 of the predictions agrees with the printed one (squad_eval is not trusted blindly).
  own_f1 = 100 * sum(f1(qa["answers"][0]["text"], predictions[qa["id"]]) for qa in questions(heldout)) / len(questions(heldout))
  assert abs(own_f1 - f1_score) < 0.5


def test_the_readme_chance_level_is_the_random_span_f1():
  """The README measures the quickstart against answering with a random span of up to 10 words (the
  run's --max_answer_length in pieces allows at most that many words): F1 3.8 on the held-out file."""
  chance = random_span_f1(load_squad("squad_heldout.json"), max_words=10)
  assert round(chance, 1) == 3.8
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    assert "a random span of up to 10 words scores F1 3.8" in " ".join(f.read().split())


def test_a_failing_tool_stops_with_its_log(tmp_path, capsys):
  from albert import quickstart
  from albert.core.errors import UserError
  stage = quickstart.Stage("broken tool", "albert.no_such_tool", ["--flag=1"])
  with pytest.raises(UserError, match=r"albert.no_such_tool failed \(exit 1\); full log: .*3_no_such_tool.log"):
    quickstart.run_stage(3, 4, stage, str(tmp_path), quickstart.tool_environment())
  assert "No module named albert.no_such_tool" in (tmp_path / "3_no_such_tool.log").read_text()
  assert "No module named albert.no_such_tool" in capsys.readouterr().err
