"""Post-processing on synthetic examples, windows and model outputs with hand-computed predictions."""

import json
import math
import types

import numpy as np
import pytest

from albert.core.errors import UserError
from albert.tasks.squad import postprocess as post

PARAGRAPH = "The quick brown fox jumps over the lazy dog."
# Document tokens:   0 The  1 quick  2 brown  3 fox  4 jumps  5 over  6 the  7 lazy  8 dog  9 .
SPANS = [[0, 3], [4, 9], [10, 15], [16, 19], [20, 25], [26, 30], [31, 34], [35, 39], [40, 43], [43, 44]]
SEQ = 16
OFFSET = 4  # [CLS] q q [SEP]: the first document token sits at feature position 4
LOW = -20.0


def example(qas_id, paragraph=PARAGRAPH):
  return types.SimpleNamespace(qas_id=qas_id, paragraph_text=paragraph)


def meta(unique_id, example_index, first, last, max_context=None, spans=SPANS):
  """A window over document tokens first..last-1."""
  window = [list(s) for s in spans[first:last]]
  return types.SimpleNamespace(
      unique_id=unique_id, example_index=example_index, doc_span_index=0, doc_offset=OFFSET,
      doc_char_spans=window, token_is_max_context=max_context or [True] * len(window))


def logits(**values):
  """Feature-position logits: p<i>=value, LOW elsewhere."""
  array = np.full([SEQ], LOW, np.float32)
  for key, value in values.items():
    array[int(key[1:])] = value
  return array


def v1_result(unique_id, start, end):
  return {"unique_ids": np.int64(unique_id), "start_logits": start, "end_logits": end}


def v2_result(unique_id, start_index, start_lp, end_index, end_lp, cls):
  return {"unique_ids": np.array([unique_id]), "start_top_index": np.array(start_index, np.int32),
          "start_top_log_probs": np.array(start_lp, np.float32), "end_top_index": np.array(end_index, np.int32),
          "end_top_log_probs": np.array(end_lp, np.float32), "cls_logits": np.float32(cls)}


def softmax(scores):
  exps = [math.exp(s - max(scores)) for s in scores]
  return [e / sum(exps) for e in exps]


def entries(prediction):
  return [(e.text, e.probability, e.start_log_prob, e.end_log_prob) for e in prediction.nbest]


def assert_entries(prediction, expected_texts_and_scores):
  """expected: [(text, start, end)]; probabilities are the softmax of start + end."""
  probabilities = softmax([s + e for _, s, e in expected_texts_and_scores])
  expected = [(t, p, s, e) for (t, s, e), p in zip(expected_texts_and_scores, probabilities)]
  actual = entries(prediction)
  assert [x[0] for x in actual] == [x[0] for x in expected]
  assert np.allclose([x[1:] for x in actual], [x[1:] for x in expected], rtol=1e-12, atol=0)


# ---- v1 candidates ----

# starts: p1 query, p15 padding, p6 brown (rel 2), p4 The (rel 0); ends: p0 [CLS], p14 final [SEP]
# (rel 10 = window length), p5 quick (rel 1), p7 fox (rel 3).
FILTER_STARTS = logits(p1=9.0, p15=8.0, p6=5.0, p4=4.0)
FILTER_ENDS = logits(p0=9.0, p14=8.5, p5=8.0, p7=7.5)


def v1_predict(windows, n_best_size, max_answer_length, examples=None):
  metas = [m for m, _ in windows]
  results = [r for _, r in windows]
  return list(post.predict_v1(examples or [example("q")], metas, results, n_best_size, max_answer_length))


def test_v1_filters_out_of_window_backwards_and_top_n():
  windows = [(meta(1000000000, 0, 0, 10), v1_result(1000000000, FILTER_STARTS, FILTER_ENDS))]
  [prediction] = v1_predict(windows, n_best_size=4, max_answer_length=30)
  # Valid pairs: (brown, fox) 5 + 7.5, (The, quick) 4 + 8, (The, fox) 4 + 7.5; everything else is
  # outside the document, past its end or ends before it starts.
  assert_entries(prediction, [("brown fox", 5.0, 7.5), ("The quick", 4.0, 8.0),
                              ("The quick brown fox", 4.0, 7.5)])
  # n_best_size 3 drops p4 from the starts and p7 from the ends: nothing valid is left.
  [prediction] = v1_predict(windows, n_best_size=3, max_answer_length=30)
  assert entries(prediction) == [("empty", 1.0, 0.0, 0.0)]


def test_v1_max_answer_length():
  windows = [(meta(1000000000, 0, 0, 10), v1_result(1000000000, FILTER_STARTS, FILTER_ENDS))]
  [prediction] = v1_predict(windows, n_best_size=4, max_answer_length=2)
  assert_entries(prediction, [("brown fox", 5.0, 7.5), ("The quick", 4.0, 8.0)])
  [prediction] = v1_predict(windows, n_best_size=4, max_answer_length=1)
  assert entries(prediction) == [("empty", 1.0, 0.0, 0.0)]


def test_equal_logits_prefer_earlier_positions_and_earlier_candidates():
  words = [f"w{i}" for i in range(60)]
  spans = [[3 * i, 3 * i + len(w)] for i, w in enumerate(words)]
  window = meta(1000000000, 0, 0, 60, spans=spans)
  flat = np.concatenate([np.zeros([OFFSET], np.float32), np.ones([60], np.float32)])
  [prediction] = post.predict_v1([example("q", " ".join(words))], [window],
                                 [v1_result(1000000000, flat, flat)], n_best_size=2, max_answer_length=30)
  # Top-2 starts and ends are the first two document positions; all three valid pairs score 2.
  assert [entry.text for entry in prediction.nbest] == ["w0", "w0 w1"]


def test_v1_start_must_be_max_context():
  not_max_at_brown = [True, True, False] + [True] * 7
  windows = [(meta(1000000000, 0, 0, 10, not_max_at_brown), v1_result(1000000000, FILTER_STARTS, FILTER_ENDS))]
  [prediction] = v1_predict(windows, n_best_size=4, max_answer_length=30)
  assert_entries(prediction, [("The quick", 4.0, 8.0), ("The quick brown fox", 4.0, 7.5)])


def test_max_context_decides_which_window_answers():
  # Window A covers tokens 0-6 and is not max-context for 5-6; window B covers tokens 3-9.
  window_a = meta(1000000000, 0, 0, 7, [True] * 5 + [False] * 2)
  window_b = meta(1000000001, 0, 3, 10, [False] * 2 + [True] * 5)
  result_a = v1_result(1000000000, logits(p9=6.0), logits(p10=6.0))  # over .. the, start not max-context
  result_b = v1_result(1000000001, logits(p6=3.0), logits(p9=3.0))   # over .. dog in B's local positions
  [prediction] = v1_predict([(window_a, result_a), (window_b, result_b)], n_best_size=1, max_answer_length=30)
  assert entries(prediction) == [("over the lazy dog", 1.0, 3.0, 3.0)]


def test_nbest_dedups_by_text_across_windows_and_softmaxes_kept_scores():
  window_a = meta(1000000000, 0, 0, 7)
  window_b = meta(1000000001, 0, 2, 10)  # local 0 = brown
  result_a = v1_result(1000000000, logits(p6=4.0), logits(p7=4.0))                 # brown fox: 8
  result_b = v1_result(1000000001, logits(p4=3.0, p8=1.0), logits(p5=2.0, p10=1.5))
  # B: brown fox 5 (duplicate text, skipped), brown .. dog 4.5, the lazy dog 2.5 (beyond n_best_size 2).
  [prediction] = v1_predict([(window_a, result_a), (window_b, result_b)], n_best_size=2, max_answer_length=30)
  assert_entries(prediction, [("brown fox", 4.0, 4.0), ("brown fox jumps over the lazy dog", 3.0, 1.5)])
  assert prediction.nbest[0].probability == pytest.approx(1 / (1 + math.exp(-3.5)))


def test_text_is_the_stripped_raw_slice_and_dedup_happens_after_stripping():
  paragraph = "Héllo   World "
  spans = [[0, 5], [8, 8], [8, 13]]  # a bare "▁" piece has an empty span
  window = meta(1000000000, 0, 0, 3, spans=spans)
  result = v1_result(1000000000, logits(p4=2.0), logits(p5=1.0, p4=0.5, p6=0.0))
  [prediction] = v1_predict([(window, result)], n_best_size=3, max_answer_length=30,
                            examples=[example("q", paragraph)])
  # (0, 1) -> "Héllo   " -> "Héllo"; (0, 0) -> "Héllo" again (skipped); (0, 2) -> "Héllo   World".
  assert_entries(prediction, [("Héllo", 2.0, 1.0), ("Héllo   World", 2.0, 0.0)])


def test_examples_without_windows_get_fallbacks():
  examples = [example("a"), example("skipped"), example("c")]
  metas = [meta(1000000000, 0, 0, 10), meta(1000000001, 2, 0, 10)]
  v1_results = [v1_result(1000000000, logits(p6=1.0), logits(p7=1.0)), v1_result(1000000001, logits(), logits())]
  predictions = list(post.predict_v1(examples, metas, v1_results, 20, 30))
  assert [p.qas_id for p in predictions] == ["a", "skipped", "c"]
  assert predictions[0].nbest[0].text == "brown fox"
  assert entries(predictions[1]) == [("empty", 1.0, 0.0, 0.0)]
  v2_results = [v2_result(1000000000, [6], [-0.5], [7], [-0.25], 0.5),
                v2_result(1000000001, [1], [-0.5], [2], [-0.25], -1.5)]  # question positions: no valid span
  predictions = list(post.predict_v2(examples, metas, v2_results, 20, 30, start_n_top=1, end_n_top=1))
  assert entries(predictions[1]) == [("", 1.0, -1e6, -1e6)]
  assert predictions[1].score_diff == 1000000.0
  assert entries(predictions[2]) == [("", 1.0, -1e6, -1e6)]
  assert predictions[2].score_diff == -1.5


# ---- v2 candidates ----

def test_v2_beam_pairs_end_i_times_end_n_top_plus_j_with_start_i():
  # Start candidates: brown (p6), over (p9), [CLS] (p0). Ends of start i are entries 2i, 2i + 1.
  result = v2_result(1000000000, start_index=[6, 9, 0], start_lp=[-0.5, -1.0, -0.125],
                     end_index=[7, 12, 8, 12, 0, 7], end_lp=[-0.25, -0.875, -0.125, -0.375, -0.0625, -0.25],
                     cls=0.25)
  [prediction] = post.predict_v2([example("q")], [meta(1000000000, 0, 0, 10)], [result], 20, 30,
                                 start_n_top=3, end_n_top=2)
  # brown+fox -0.75; brown+dog -1.375; over+jumps ends first; over+dog -1.375; [CLS] starts are never
  # answers in v2. Equal scores keep beam order.
  assert_entries(prediction, [("brown fox", -0.5, -0.25),
                              ("brown fox jumps over the lazy dog", -0.5, -0.875),
                              ("over the lazy dog", -1.0, -0.375)])
  assert prediction.score_diff == 0.25


def _two_window_v2():
  metas = [meta(1000000000, 0, 0, 7), meta(1000000001, 0, 3, 10)]
  results = [v2_result(1000000000, [6], [-0.5], [7], [-0.25], 0.75),
             v2_result(1000000001, [4], [-1.0], [5], [-1.0], -0.25)]
  return [example("q")], metas, results


def test_v2_score_null_is_min_cls_logit_and_threshold_equality_means_null(tmp_path):
  examples, metas, results = _two_window_v2()
  [prediction] = post.predict_v2(examples, metas, results, 20, 30, start_n_top=1, end_n_top=1)
  assert prediction.score_diff == -0.25
  for threshold, expected in [(None, "brown fox"), (-0.25, ""), (-0.2, "brown fox"), (-1.0, "")]:
    written = post.write_predictions_v2(str(tmp_path), *_two_window_v2(), start_n_top=1, end_n_top=1,
                                        null_score_diff_threshold=threshold)
    assert json.loads((tmp_path / "predictions.json").read_text()) == {"q": expected}
    assert written.answers(threshold) == {"q": expected}


# ---- streaming and joining ----

def test_results_are_joined_by_unique_id_and_consumed_lazily():
  examples = [example("a"), example("b")]
  metas = [meta(1000000000, 0, 0, 10), meta(1000000001, 1, 0, 10)]
  results = [v1_result(1000000000, logits(p6=1.0), logits(p7=1.0)),
             v1_result(1000000001, logits(p4=1.0), logits(p5=1.0))]
  consumed = []

  def stream(items):
    for item in items:
      consumed.append(int(item["unique_ids"]))
      yield item

  predictions = post.predict_v1(examples, iter(metas), stream(results), 20, 30)
  assert next(predictions).nbest[0].text == "brown fox"
  assert consumed == [1000000000]
  assert next(predictions).nbest[0].text == "The quick"
  reordered = list(post.predict_v1(examples, metas, [results[1], {"unique_ids": 7}, results[0]], 20, 30))
  assert [p.nbest[0].text for p in reordered] == ["brown fox", "The quick"]


def test_missing_result_or_misordered_meta_is_a_user_error():
  metas = [meta(1000000000, 0, 0, 10), meta(1000000001, 1, 0, 10)]
  results = [v1_result(1000000000, logits(), logits())]
  with pytest.raises(UserError, match="no model output for feature unique_id 1000000001"):
    list(post.predict_v1([example("a"), example("b")], metas, results, 20, 30))
  with pytest.raises(UserError, match="refers to example 1, but there are only 1 examples"):
    list(post.predict_v1([example("a")], metas, results, 20, 30))
  results.append(v1_result(1000000001, logits(), logits()))
  with pytest.raises(UserError, match="out of example order"):
    list(post.predict_v1([example("a"), example("b")], metas[::-1], results, 20, 30))


# ---- files ----

def test_output_files_have_the_original_shapes(tmp_path):
  examples = [example("q"), example("none")]
  metas = [meta(1000000000, 0, 0, 10)]
  results = [v2_result(1000000000, [6], [-0.5], [7, 12], [-0.25, -0.75], 0.5)]
  written = post.write_predictions_v2(str(tmp_path), examples, metas, results, start_n_top=1, end_n_top=2)
  nbest_text = (tmp_path / "nbest_predictions.json").read_text()
  nbest = json.loads(nbest_text)
  assert nbest_text == json.dumps(nbest, indent=4, ensure_ascii=False) + "\n"
  assert list(nbest) == ["q", "none"]
  assert [list(entry) for entry in nbest["q"]] == [["text", "probability", "start_log_prob", "end_log_prob"]] * 2
  assert [entry["text"] for entry in nbest["q"]] == ["brown fox", "brown fox jumps over the lazy dog"]
  assert nbest["q"][0]["probability"] == pytest.approx(1 / (1 + math.exp(-0.5)))
  assert nbest["none"] == [{"text": "", "probability": 1.0, "start_log_prob": -1e6, "end_log_prob": -1e6}]
  predictions_text = (tmp_path / "predictions.json").read_text()
  assert predictions_text == '{\n    "q": "brown fox",\n    "none": ""\n}\n'
  assert json.loads((tmp_path / "null_odds.json").read_text()) == {"q": 0.5, "none": 1000000.0}
  assert written.score_diffs == {"q": 0.5, "none": 1000000.0}


def test_v1_files_have_raw_logits_and_no_null_odds(tmp_path):
  windows = [(meta(1000000000, 0, 0, 10), v1_result(1000000000, logits(p6=1.25), logits(p7=0.5)))]
  post.write_predictions_v1(str(tmp_path), [example("q")], [windows[0][0]], [windows[0][1]], n_best_size=1)
  assert json.loads((tmp_path / "nbest_predictions.json").read_text()) == {
      "q": [{"text": "brown fox", "probability": 1.0, "start_log_prob": 1.25, "end_log_prob": 0.5}]}
  assert json.loads((tmp_path / "predictions.json").read_text()) == {"q": "brown fox"}
  assert not (tmp_path / "null_odds.json").exists()


def test_no_examples_write_empty_objects(tmp_path):
  post.write_predictions_v2(str(tmp_path), [], [], [])
  for name in ("predictions.json", "nbest_predictions.json", "null_odds.json"):
    assert (tmp_path / name).read_text() == "{}\n"


# ---- v2 threshold tuning ----

def _tuning_case():
  qas = [("q1", ["fox"]), ("q2", []), ("q3", ["lazy dog"]), ("q4", []), ("q5", ["brown"])]
  dataset = [{"title": "t", "paragraphs": [{"context": PARAGRAPH, "qas": [
      {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in texts]}
      for qid, texts in qas]}]}]
  written = post.WrittenPredictions(
      best_texts={"q1": "fox", "q2": "dog", "q3": "lazy dog", "q4": "jumps", "q5": "brown"},
      score_diffs={"q1": 2.0, "q2": 3.0, "q3": -1.0, "q4": 5.0, "q5": 1.5})
  return dataset, written


def test_tune_threshold_v2_original_rule(tmp_path):
  dataset, written = _tuning_case()
  scores = post.tune_threshold_v2(str(tmp_path), written, dataset)
  # Pass 1 (ascending null score, start 2): q3 +1, q5 +1, q1 +1 -> 5/5 at 2.0, then q2, q4 -1 each.
  assert scores["best_f1"] == 100.0 and scores["best_f1_thresh"] == 2.0 == scores["null_score_diff_threshold"]
  assert scores["best_exact"] == 100.0 and scores["best_exact_thresh"] == 2.0
  # Pass 2 with "< 2.0": q1 sits exactly at the threshold and becomes null.
  assert json.loads((tmp_path / "predictions.json").read_text()) == {
      "q1": "", "q2": "", "q3": "lazy dog", "q4": "", "q5": "brown"}
  # Plain scoring of those answers: q2, q3, q4, q5 right -> 80. The original also scores null
  # scores > 1.0 as null: q5 (1.5) turns wrong -> 60.
  assert scores["tuned_exact"] == scores["tuned_f1"] == pytest.approx(80.0)
  assert scores["original_exact"] == scores["original_f1"] == pytest.approx(60.0)
  assert scores["exact"] == scores["f1"] == pytest.approx(60.0)
  assert scores["total"] == 5
  assert scores["HasAns_exact"] == pytest.approx(100 / 3) and scores["NoAns_exact"] == 100.0


def test_tune_threshold_v2_tuned_rule(tmp_path):
  dataset, written = _tuning_case()
  scores = post.tune_threshold_v2(str(tmp_path), written, dataset, threshold_rule="tuned")
  assert scores["exact"] == scores["f1"] == pytest.approx(80.0)
  assert scores["HasAns_exact"] == pytest.approx(200 / 3)
  assert scores["original_f1"] == pytest.approx(60.0)
  with pytest.raises(UserError, match="threshold_rule"):
    post.tune_threshold_v2(str(tmp_path), written, dataset, threshold_rule="best")
