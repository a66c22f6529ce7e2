"""The SQuAD `serve_text` path answers like `albert.answer`: same text, offsets and probability.

A tiny model with random weights (v1 and v2) answers real questions of the SQuAD sample both ways: the
in-graph path (`SquadTextAnswers`: in-graph tokenizer, windows, head, n-best) and the command line's Python
path (`Answerer`: FullTokenizer, windows.py, postprocess.py). Short windows (64 pieces, stride 16) give
every context many overlapping windows, so the max-context rule and the choice across windows are
exercised; random weights make the candidates arbitrary, which is what an equivalence test wants.
"""

import json

import pytest
import tensorflow as tf
from conftest import SQUAD_TINY_CONFIG, shared_path

from albert.model.config import AlbertConfig
from albert.tasks.squad.answer import Answerer, AnswerOptions
from albert.tasks.squad.examples import SquadExample
from albert.tasks.squad.task import SquadV1Task, SquadV2Task, AnswerRules
from albert.text import in_graph
from albert.text.tokenizer import FullTokenizer

pytestmark = pytest.mark.skipif(not in_graph.available(), reason="tensorflow-text (the [serving] extra) is not "
                                "installed")

WINDOWS = dict(max_seq_length=64, doc_stride=16, max_query_length=24)
RULES = AnswerRules(n_best_size=20, max_answer_length=30)


def _questions(count, start=0):
  with open(shared_path("squad", "dev-v2.0-sample.json"), encoding="utf-8") as f:
    data = json.load(f)["data"]
  questions = [(qa["id"], qa["question"], paragraph["context"]) for article in data
               for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  return questions[start:start + count]


class BothWays:
  """One tiny random-weight task of `task_class` answering through the traced in-graph path and the Answerer."""

  def __init__(self, task_class, spm_model_file, seed):
    from albert.tasks.squad.text_serving import SquadTextAnswers
    tf.random.set_seed(seed)
    self.task = task_class(AlbertConfig.from_dict(dict(SQUAD_TINY_CONFIG, max_position_embeddings=64)))
    self.task.build()
    self.tokenizer = FullTokenizer(spm_model_file=spm_model_file, do_lower_case=True)
    graph_tokenizer = in_graph.InGraphTokenizer(self.tokenizer.sp_model.serialized_model_proto(), True)
    self.serve = tf.function(SquadTextAnswers(self.task, graph_tokenizer, rules=RULES, **WINDOWS),
                             input_signature=[tf.TensorSpec([None], tf.string)] * 2)

  def in_graph(self, questions):
    outputs = self.serve(tf.constant([q for _, q, _ in questions]), tf.constant([c for _, _, c in questions]))
    return {name: value.numpy() for name, value in outputs.items()}

  def command_line(self, questions):
    def run_batch(inputs):
      features = self.task.serving_features(*(tf.constant(inputs[n]) for n in ("input_ids", "input_mask",
                                                                                "segment_ids")))
      return {name: value.numpy() for name, value in self.task.answer_outputs(features).items()}

    options = AnswerOptions(max_seq_length=WINDOWS["max_seq_length"], doc_stride=WINDOWS["doc_stride"],
                            max_query_length=WINDOWS["max_query_length"], rules=RULES)
    answerer = Answerer(self.task, run_batch, self.tokenizer, WINDOWS["max_seq_length"], options)
    return list(answerer.answer([(qid, SquadExample(qas_id=qid, question_text=q, paragraph_text=c))
                                 for qid, q, c in questions]))


def _assert_same(in_graph_out, records):
  for i, record in enumerate(records):
    assert in_graph_out["answer"][i].decode("utf-8") == record["answer"], record["id"]
    start = None if in_graph_out["start"][i] < 0 else int(in_graph_out["start"][i])
    end = None if in_graph_out["end"][i] < 0 else int(in_graph_out["end"][i])
    assert (start, end) == (record["start"], record["end"]), record["id"]
    assert in_graph_out["probability"][i] == pytest.approx(record["probability"], abs=1e-5), record["id"]
    if "null_score_diff" in record:
      assert in_graph_out["null_score_diff"][i] == pytest.approx(record["null_score_diff"], abs=1e-5)


@pytest.fixture(scope="module")
def v1(spm_model_file):
  return BothWays(SquadV1Task, spm_model_file, seed=3)


@pytest.mark.parametrize("version", [1, 2])
def test_in_graph_answers_equal_the_command_lines(version, v1, spm_model_file):
  both = v1 if version == 1 else BothWays(SquadV2Task, spm_model_file, seed=3)
  questions = _questions(24)
  records = both.command_line(questions)
  assert len(records) == len(questions)
  assert max(len(c) for _, _, c in questions) > 300  # contexts spanning many 64-piece windows
  _assert_same(both.in_graph(questions), records)
  assert len({r["answer"] for r in records}) > 5  # answers differ between questions: nothing degenerate


def test_in_graph_answers_handle_odd_text_and_an_empty_context(v1):
  questions = [("a", "Who?", "Caf\u00e9  \u00c9mile paid 1,000, then  left\u00a0 early."),
               ("b", "What year?", "In 1990, the Normans (Norman: Nourmands) gave their name to Normandy."),
               ("c", "Why?", "word " * 80)]
  _assert_same(v1.in_graph(questions), v1.command_line(questions))
  # the command line refuses a context without pieces; the signature answers v1's fallback
  out = v1.in_graph([("d", "Anything?", "   "), ("e", "Who?", "Emile.")])
  assert out["answer"][0] == b"empty" and out["start"][0] == -1 and out["probability"][0] == 1.0
  start, end = out["start"][1], out["end"][1]
  assert 0 <= start < end and "Emile."[start:end] == out["answer"][1].decode("utf-8")
