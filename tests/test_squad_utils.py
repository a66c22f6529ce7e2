"""SQuAD reading, windowed features, TFRecords, caches and input pipelines (docs/compatibility.md §5.2, §6.1, §6.3)."""

import json
import os
import types

import numpy as np
import pytest
from conftest import subset_file, shared_path

from albert import squad_utils
from albert.core.errors import UserError

CLS, SEP = 2, 3


@pytest.fixture(scope="module")
def tokenizer(spm_model_file):
  from albert.tokenization import FullTokenizer
  return FullTokenizer(spm_model_file=spm_model_file, do_lower_case=True)


def write_squad(directory, paragraphs, name="data.json", title="T"):
  path = os.path.join(directory, name)
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"version": "v2.0", "data": [{"title": title, "paragraphs": paragraphs}]}, f,
              ensure_ascii=False)
  return path


def qa(qas_id, question, text=None, start=None, is_impossible=None):
  entry = {"id": qas_id, "question": question,
           "answers": [] if text is None else [{"text": text, "answer_start": start}]}
  if is_impossible is not None:
    entry["is_impossible"] = is_impossible
  return entry


def convert(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training, **kwargs):
  stats = squad_utils.ConversionStats()
  features = list(squad_utils.convert_examples_to_features(
      examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training, stats=stats,
      **kwargs))
  return features, stats


def pieces(tokenizer, text):
  return [token.piece for token in tokenizer.tokenize_with_offsets(text)]


def span_text(example, feature, start_position, end_position):
  """The contract's answer text of feature positions: the raw slice between their char spans."""
  spans = feature.doc_char_spans
  start, end = start_position - feature.doc_offset, end_position - feature.doc_offset
  return example.paragraph_text[spans[start][0]:spans[end][1]].strip()


# ---------------------------------------------------------------------------------------------------
# Reading


def test_reads_the_v2_sample():
  path = shared_path("squad", "dev-v2.0-sample.json")
  train = squad_utils.read_squad_examples(path, is_training=True)
  evaluation = squad_utils.read_squad_examples(path, is_training=False)
  assert len(train.examples) == len(evaluation.examples) == 950
  assert sum(train.skipped.values()) == 0 and train.repaired == 0
  impossible = [e for e in train.examples if e.is_impossible]
  assert 400 < len(impossible) < 550
  for example in impossible:
    assert (example.orig_answer_text, example.start_position) == ("", -1)
  for example in train.examples:
    if not example.is_impossible:
      start = example.start_position
      assert example.paragraph_text[start:start + len(example.orig_answer_text)] == \
          example.orig_answer_text
  first = evaluation.examples[0]
  assert (first.qas_id, first.title) == ("56ddde6b9a695914005b9628", "Normans")
  assert first.question_text == "In what country is Normandy located?"
  assert (first.orig_answer_text, first.start_position) == (None, None)
  assert [a["text"] for a in first.answers] == ["France"] * 4


def test_reads_v1_files_without_is_impossible():
  path = shared_path("squad", "dev-v1.1-sample.json")
  result = squad_utils.read_squad_examples(path, is_training=True)
  assert len(result.examples) == 473 and not result.skipped
  assert not any(e.is_impossible for e in result.examples)
  assert result.examples[0].orig_answer_text == "France"
  assert result.examples[0].start_position == 159


def test_malformed_json_names_file_line_and_column(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"data": [\n  {"title": "x",, }\n]}')
  with pytest.raises(UserError, match=r"bad\.json.*line 2 column"):
    squad_utils.read_squad_examples(str(path), is_training=True)


@pytest.mark.parametrize("document, where", [
    ([1, 2], "the top level must be an object, found a list"),
    ({"data": [{"title": "x"}]}, r'data\[0\]: "paragraphs" is missing \(expected a list\)'),
    ({"data": [{"paragraphs": [{"context": "c"}]}]},
     r'data\[0\]\.paragraphs\[0\]: "qas" is missing \(expected a list\)'),
])
def test_non_squad_layout_is_a_user_error(tmp_path, document, where):
  path = tmp_path / "layout.json"
  path.write_text(json.dumps(document))
  with pytest.raises(UserError, match=f"layout.json.*{where}"):
    squad_utils.read_squad_examples(str(path), is_training=False)


def test_missing_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="nope.json"):
    squad_utils.read_squad_examples(str(tmp_path / "nope.json"), is_training=True)


def test_bad_questions_are_counted_skips(tmp_path):
  context = "The river is near the old city. The river is long."
  paragraphs = [
      {"context": context, "qas": [
          qa("ok", "Where is the river?", "near the old city", 13),
          {"question": "No id?", "answers": []},
          {"id": "no-question", "answers": []},
          qa("ok", "Same id again?", "river", 4),
          qa("no-answer", "Possible but unanswered?"),
          qa("bad-start", "Where?", "the old city", 99),
          qa("far-off", "Which city?", "old city", 3),
          qa("unrepairable", "What?", "a mountain", 3),
          qa("impossible", "Who?", is_impossible=True),
          qa("empty-text", "What?", "  ", 3),
          qa("text-start", "What?", "river", "4"),
          qa("odd-flag", "What?", "river", 4, is_impossible="no"),
          "not a dict",
      ]},
      {"context": "   ", "qas": [qa("blank", "Anything?", "x", 0)]},
      {"qas": [qa("no-context", "Anything?", "x", 0)]},
  ]
  path = write_squad(str(tmp_path), paragraphs)
  train = squad_utils.read_squad_examples(path, is_training=True)
  assert [e.qas_id for e in train.examples] == ["ok", "bad-start", "far-off", "impossible"]
  assert train.skipped == {
      "missing id": 1, "missing question": 1, "duplicate id": 1,
      "no answer for a possible question (training)": 1,
      "answer_start does not match answer text": 1, "malformed question entry": 1,
      "empty context": 1, "missing context": 1, "empty answer text (training)": 1,
      "malformed answer_start (training)": 1, "malformed is_impossible (training)": 1}
  assert train.repaired == 2
  by_id = {e.qas_id: e for e in train.examples}
  # "the old city" occurs once (at 18); "old city" is nearest to 3 at its only occurrence, 22.
  assert by_id["bad-start"].start_position == 18
  assert by_id["far-off"].start_position == 22
  evaluation = squad_utils.read_squad_examples(path, is_training=False)
  # Answers do not matter for prediction: only id/question/context problems skip.
  assert [e.qas_id for e in evaluation.examples] == [
      "ok", "no-answer", "bad-start", "far-off", "unrepairable", "impossible", "empty-text",
      "text-start", "odd-flag"]
  assert evaluation.examples[5].is_impossible and not evaluation.examples[-1].is_impossible


def test_repair_picks_the_nearest_occurrence(tmp_path):
  context = "the river and the river and the river"
  path = write_squad(str(tmp_path), [{"context": context, "qas": [qa("a", "Which?", "river", 20)]}])
  example = squad_utils.read_squad_examples(path, is_training=True).examples[0]
  # Occurrences at 4, 18 and 32; 20 is nearest to 18.
  assert example.start_position == 18


def test_non_ascii_questions_and_contexts(tmp_path, tokenizer):
  context = "Zürich is a café city. Tōkyō (東京) is larger."
  paragraphs = [{"context": context, "qas": [
      qa("z", "Wer gründete Zürich?", "Zürich", 0),
      qa("c", "What kind of city?", "café city", 12),
      qa("t", "Which is larger?", "Tōkyō (東京)", 23)]}]
  path = write_squad(str(tmp_path), paragraphs)
  examples = squad_utils.read_squad_examples(path, is_training=True).examples
  assert [e.orig_answer_text for e in examples] == ["Zürich", "café city", "Tōkyō (東京)"]
  features, stats = convert(examples, tokenizer, 64, 32, 16, is_training=True)
  assert stats.answers_exact == 3 and not stats.answers_inexact
  for feature in features:
    example = examples[feature.example_index]
    assert span_text(example, feature, feature.start_position, feature.end_position) == \
        example.orig_answer_text


# ---------------------------------------------------------------------------------------------------
# Features


def test_feature_layout_hand_checked(tokenizer):
  question, context = "where is the river?", "the river is near the old city."
  query_pieces = ["▁where", "▁is", "▁the", "▁river", "?"]
  doc_pieces = ["▁the", "▁river", "▁is", "▁near", "▁the", "▁old", "▁cit", "y", "."]
  assert pieces(tokenizer, question) == query_pieces, "tokenizer changed; update this example"
  assert pieces(tokenizer, context) == doc_pieces, "tokenizer changed; update this example"
  example = squad_utils.SquadExample("q1", question, context, "near the old city", 13)
  (feature,), stats = convert([example], tokenizer, 24, 4, 8, is_training=True)
  query_ids = tokenizer.convert_tokens_to_ids(query_pieces)
  doc_ids = tokenizer.convert_tokens_to_ids(doc_pieces)
  # 1 [CLS] + 5 query + 1 [SEP] + 9 document + 1 [SEP] = 17 real positions, 7 padding.
  assert feature.input_ids.tolist() == [CLS] + query_ids + [SEP] + doc_ids + [SEP] + [0] * 7
  assert feature.input_mask.tolist() == [1] * 17 + [0] * 7
  assert feature.segment_ids.tolist() == [0] * 7 + [1] * 10 + [0] * 7
  assert feature.p_mask.tolist() == [0] + [1] * 6 + [0] * 9 + [1] * 8
  assert feature.doc_offset == 7
  # "near the old city" = ▁near ▁the ▁old ▁cit y = document tokens 3..7 = positions 10..14.
  assert (feature.start_position, feature.end_position, feature.is_impossible) == (10, 14, False)
  assert feature.doc_char_spans.tolist() == [[0, 3], [4, 9], [10, 12], [13, 17], [18, 21], [22, 25],
                                             [26, 29], [29, 30], [30, 31]]
  assert feature.token_is_max_context.tolist() == [True] * 9
  assert (feature.unique_id, feature.example_index, feature.doc_span_index) == (1000000000, 0, 0)
  meta = feature.meta()
  assert meta.doc_char_spans[3] == [13, 17] and meta.token_is_max_context == [True] * 9
  assert stats.examples == 1 and stats.features == 1 and stats.answers_exact == 1


def test_doc_spans_follow_the_stride_rule():
  assert squad_utils.doc_spans(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
  assert squad_utils.doc_spans(11, 4, 3) == [(0, 4), (3, 4), (6, 4), (9, 2)]
  assert squad_utils.doc_spans(10, 4, 5) == [(0, 4), (4, 4), (8, 2)]  # advance = min(length, stride)
  assert squad_utils.doc_spans(3, 4, 2) == [(0, 3)]
  assert squad_utils.doc_spans(0, 4, 2) == []


def test_max_context_ties_go_to_the_earliest_span():
  # Spans 0..3, 1..4, 2..5. Position 2 scores min(2,1)=1 in span 0 and min(1,2)=1 in span 1: span 0.
  # Position 3: 0 in span 0, min(2,1)=1 in span 1, min(1,2)=1 in span 2: span 1.
  flags = squad_utils.max_context_flags([(0, 4), (1, 4), (2, 4)], 6)
  assert [f.tolist() for f in flags] == [[True, True, True, False], [False, False, True, False],
                                         [False, False, True, True]]


def test_windows_max_context_and_labels_on_a_long_context(tokenizer):
  context = " ".join(["the"] * 10)  # ten "▁the" tokens, token k at characters 4k..4k+3
  assert pieces(tokenizer, context) == ["▁the"] * 10
  one_token = squad_utils.SquadExample("a", "the", context, "the", 20)  # token 5
  three_tokens = squad_utils.SquadExample("b", "the", context, "the the the", 12)  # tokens 3..5
  # max_seq_length 8 - 1 query token - 3 = 4 document tokens per window; stride 2.
  features, stats = convert([one_token, three_tokens], tokenizer, 8, 2, 4, is_training=True)
  assert [(f.example_index, f.doc_span_index) for f in features] == \
      [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
  assert [f.unique_id for f in features] == list(range(1000000000, 1000000008))
  window_starts = [0, 2, 4, 6]
  for feature in features:
    start = window_starts[feature.doc_span_index]
    assert feature.doc_char_spans.tolist() == [[4 * k, 4 * k + 3] for k in range(start, start + 4)]
    assert feature.doc_offset == 3
  # Hand-computed max-context (score = min(left, right) + 0.01 * 4 per containing window).
  assert [f.token_is_max_context.tolist() for f in features[:4]] == [
      [True, True, True, False], [False, True, True, False], [False, True, True, False],
      [False, True, True, True]]
  # Token 5 lies in windows 1 (2..5) and 2 (4..7): positions 5 - 2 + 3 and 5 - 4 + 3.
  assert [(f.start_position, f.end_position, f.is_impossible) for f in features[:4]] == [
      (0, 0, True), (6, 6, False), (4, 4, False), (0, 0, True)]
  # Tokens 3..5 fit only window 1; windows that cut the answer are kept as impossible.
  assert [(f.start_position, f.end_position, f.is_impossible) for f in features[4:]] == [
      (0, 0, True), (4, 6, False), (0, 0, True), (0, 0, True)]
  assert stats.windows_without_answer == 5 and stats.answers_exact == 2


def test_predict_features_carry_no_labels(tokenizer):
  context = " ".join(["the"] * 10)
  example = squad_utils.SquadExample("a", "the", context)
  features, _ = convert([example], tokenizer, 8, 2, 4, is_training=False)
  assert len(features) == 4
  assert all(f.start_position is None and f.is_impossible is None for f in features)


def test_long_questions_are_truncated_and_counted(tokenizer):
  question = " ".join(["the"] * 12)
  example = squad_utils.SquadExample("a", question, "the river is near the old city.", "near", 13)
  (feature,), stats = convert([example], tokenizer, 32, 8, 5, is_training=True)
  assert stats.truncated_questions == 1
  assert feature.input_ids[:7].tolist() == [CLS] + [tokenizer.vocab["▁the"]] * 5 + [SEP]
  assert feature.doc_offset == 7 and feature.start_position == 7 + 3


def test_impossible_questions_point_at_cls(tokenizer):
  path = shared_path("squad", "dev-v2.0-sample.json")
  examples = [e for e in squad_utils.read_squad_examples(path, True).examples if e.is_impossible][:40]
  features, stats = convert(examples, tokenizer, 128, 64, 32, is_training=True)
  assert len(features) >= 40
  assert all((f.start_position, f.end_position, f.is_impossible) == (0, 0, True) for f in features)
  assert stats.answers_exact == 0 and not stats.answers_inexact and stats.windows_without_answer == 0


@pytest.mark.parametrize("name", ["dev-v1.1-sample.json", "dev-v2.0-sample.json"])
def test_training_labels_map_back_to_the_answers(tokenizer, name):
  examples = squad_utils.read_squad_examples(shared_path("squad", name), is_training=True).examples
  features, stats = convert(examples, tokenizer, 128, 64, 32, is_training=True)
  possible = [e for e in examples if not e.is_impossible]
  print(f"{name}: exact answer recovery {stats.answers_exact}/{len(possible)} "
        f"({100 * stats.exact_answer_rate:.2f}%), inexact: {dict(stats.answers_inexact)}")
  assert stats.answers_exact + sum(stats.answers_inexact.values()) == len(possible)
  assert stats.exact_answer_rate >= 0.99
  labelled, recovered = 0, 0
  for feature in features:
    example = examples[feature.example_index]
    if not feature.is_impossible:
      labelled += 1
      recovered += span_text(example, feature, feature.start_position, feature.end_position) == \
          example.orig_answer_text.strip()
  assert labelled >= len(possible)  # every answer fits in at least one 128-token window here
  assert recovered / labelled >= 0.99
  assert stats.features == len(features) and stats.examples == len(examples)


def test_answer_span_and_recovery_reasons():
  # Raw "ab cde  fg.": tokens "ab" [0,2), a bare "▁" [3,3), "cde" [3,6), "fg" [8,10); "." dropped.
  text = "ab cde  fg."
  document = types.SimpleNamespace(starts=np.array([0, 3, 3, 8]), ends=np.array([2, 3, 6, 10]))
  assert squad_utils.answer_token_span(document, 3, "cde  fg") == (2, 3)
  assert squad_utils.answer_token_span(document, 2, " cde") == (2, 2)  # starts in the gap
  assert squad_utils.answer_token_span(document, 10, ".") is None
  cases = {(3, "cde  fg"): "exact", (4, "de"): "answer starts inside a token",
           (0, "a"): "answer ends inside a token", (4, "d"): "answer starts and ends inside tokens",
           (8, "fg."): "answer text contains characters the tokenizer dropped"}
  for (start, answer), reason in cases.items():
    span = squad_utils.answer_token_span(document, start, answer)
    assert squad_utils.answer_recovery(text, document, span, start, answer) == reason, answer


def test_inexact_answers_are_counted_with_a_reason(tokenizer):
  context = "the river flows into the sea."  # ▁flow s: "low" starts inside "▁flow"
  examples = [squad_utils.SquadExample("a", "what?", context, "flows", 10),
              squad_utils.SquadExample("b", "what?", context, "low", 11)]
  features, stats = convert(examples, tokenizer, 32, 8, 8, is_training=True)
  assert stats.answers_exact == 1
  assert stats.answers_inexact == {"answer starts inside a token": 1}
  assert span_text(examples[1], features[1], features[1].start_position,
                   features[1].end_position) == "flow"


@pytest.mark.parametrize("flags, message", [
    ((20, 8, 17), "--max_seq_length"), ((64, 0, 16), "--doc_stride"), ((64, 8, 0), "--max_query_length")])
def test_window_flags_are_checked(tokenizer, flags, message):
  with pytest.raises(UserError, match=message):
    squad_utils.convert_examples_to_features([], tokenizer, *flags, is_training=True)


def test_multiprocessing_gives_identical_features(tokenizer):
  examples = squad_utils.read_squad_examples(
      shared_path("squad", "dev-v2.0-sample.json"), is_training=True).examples[:300]
  serial, serial_stats = convert(examples, tokenizer, 96, 48, 24, is_training=True)
  parallel, parallel_stats = convert(examples, tokenizer, 96, 48, 24, is_training=True, num_workers=2)
  assert len(serial) == len(parallel) > len(examples)
  for a, b in zip(serial, parallel):
    assert a.meta() == b.meta()
    for key in ("input_ids", "input_mask", "segment_ids", "p_mask"):
      assert getattr(a, key).tolist() == getattr(b, key).tolist()
    assert (a.start_position, a.end_position, a.is_impossible) == \
        (b.start_position, b.end_position, b.is_impossible)
  assert serial_stats.as_dict() == parallel_stats.as_dict()


def test_written_files_are_identical_with_two_workers(tmp_path, tokenizer):
  examples = squad_utils.read_squad_examples(
      shared_path("squad", "dev-v2.0-sample.json"), is_training=False).examples[:200]
  outputs = []
  for num_workers in (1, 2):
    record_file, left_file = tmp_path / f"{num_workers}.tf_record", tmp_path / f"{num_workers}.jsonl"
    stats = squad_utils.write_features(examples, tokenizer, 96, 48, 24, False, str(record_file),
                                       str(left_file), num_workers=num_workers)
    outputs.append((record_file.read_bytes(), left_file.read_bytes(), stats.as_dict()))
  assert outputs[0] == outputs[1]
  # The same bytes as the object route: FeatureWriter + write_feature_metas.
  features = convert(examples, tokenizer, 96, 48, 24, is_training=False)[0]
  with squad_utils.FeatureWriter(str(tmp_path / "objects.tf_record"), False) as writer:
    for feature in features:
      writer.process_feature(feature)
  squad_utils.write_feature_metas(str(tmp_path / "objects.jsonl"), (f.meta() for f in features))
  assert (tmp_path / "objects.tf_record").read_bytes() == outputs[0][0]
  assert (tmp_path / "objects.jsonl").read_bytes() == outputs[0][1]


# ---------------------------------------------------------------------------------------------------
# Files


def test_record_encoding_matches_tensorflow():
  import tensorflow as tf
  ids = np.array([2, 0, 127, 128, 16383, 16384, 29999, 2**31 - 1], np.int32)
  ones = np.ones(8, np.int32)
  feature = squad_utils.SquadFeature(
      unique_id=None, example_index=0, doc_span_index=0, input_ids=ids, input_mask=ones,
      segment_ids=ones * 0, p_mask=ones, doc_offset=2, doc_char_spans=np.zeros((4, 2), np.int32),
      token_is_max_context=np.ones(4, bool), start_position=300, end_position=70000,
      is_impossible=False)
  expected = {"unique_ids": [1000000123], "input_ids": ids.tolist(), "input_mask": [1] * 8,
              "segment_ids": [0] * 8, "p_mask": [1] * 8, "start_positions": [300],
              "end_positions": [70000], "is_impossible": [0]}
  reference = tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(int64_list=tf.train.Int64List(value=value))
      for key, value in expected.items()}))
  encoded = squad_utils.encode_example(1000000123, squad_utils.encode_feature_body(feature, True))
  assert tf.train.Example.FromString(encoded) == reference
  predict = tf.train.Example.FromString(
      squad_utils.encode_example(7, squad_utils.encode_feature_body(feature, False)))
  assert set(predict.features.feature) == {"unique_ids", "input_ids", "input_mask", "segment_ids",
                                           "p_mask"}


def sample_features(tokenizer, is_training, count=12):
  path = shared_path("squad", "dev-v2.0-sample.json")
  examples = squad_utils.read_squad_examples(path, is_training).examples[:count]
  return convert(examples, tokenizer, 64, 32, 16, is_training)[0]


def collect(dataset):
  batches = [{key: value.numpy() for key, value in batch.items()} for batch in dataset]
  return batches


@pytest.mark.parametrize("is_training", [True, False])
def test_tfrecord_round_trip(tmp_path, tokenizer, is_training):
  import tensorflow as tf
  features = sample_features(tokenizer, is_training)
  path = str(tmp_path / "features.tf_record")
  with squad_utils.FeatureWriter(path, is_training) as writer:
    for feature in features:
      writer.process_feature(feature)
  assert writer.num_features == len(features) and os.listdir(tmp_path) == ["features.tf_record"]
  raw = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
  label_keys = {"start_positions", "end_positions", "is_impossible"}
  expected_keys = {"unique_ids", "input_ids", "input_mask", "segment_ids", "p_mask"}
  assert set(raw[0].features.feature) == expected_keys | (label_keys if is_training else set())
  # Prediction: file order, last partial batch kept, everything int32.
  dataset_fn = squad_utils.input_fn_builder(path, 64, is_training=False, drop_remainder=False,
                                            batch_size=5)
  batches = collect(dataset_fn())
  assert len(features) % 5 != 0, "pick a sample whose last batch is partial"
  assert [len(b["unique_ids"]) for b in batches] == [5] * (len(features) // 5) + [len(features) % 5]
  assert all(v.dtype == np.int32 for v in batches[0].values())
  assert "start_positions" not in batches[0]
  merged = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
  assert merged["input_ids"].shape == (len(features), 64)
  for row, feature in enumerate(features):
    assert merged["unique_ids"][row] == feature.unique_id
    for key in ("input_ids", "input_mask", "segment_ids", "p_mask"):
      assert merged[key][row].tolist() == getattr(feature, key).tolist()
  if is_training:
    train_fn = squad_utils.input_fn_builder(path, 64, is_training=True, drop_remainder=True,
                                            batch_size=4, seed=1)
    batch = next(iter(train_fn()))
    assert {key: tuple(value.shape) for key, value in batch.items()} == {
        "unique_ids": (4,), "input_ids": (4, 64), "input_mask": (4, 64), "segment_ids": (4, 64),
        "p_mask": (4, 64), "start_positions": (4,), "end_positions": (4,), "is_impossible": (4,)}
    by_id = {f.unique_id: f for f in features}
    for uid, start, end, impossible in zip(*(batch[k].numpy() for k in (
        "unique_ids", "start_positions", "end_positions", "is_impossible"))):
      feature = by_id[uid]
      assert (start, end, impossible) == (feature.start_position, feature.end_position,
                                          int(feature.is_impossible))
    v1_fn = squad_utils.input_fn_builder(path, 64, True, True, batch_size=4, use_p_mask=False)
    assert "p_mask" not in next(iter(v1_fn()))


def written_features(tmp_path, tokenizer, is_training):
  """The sample's features and the TFRecord FeatureWriter wrote them to."""
  features = sample_features(tokenizer, is_training)
  path = str(tmp_path / ("train.tf_record" if is_training else "predict.tf_record"))
  with squad_utils.FeatureWriter(path, is_training) as writer:
    for feature in features:
      writer.process_feature(feature)
  return features, path


def test_training_pipeline_repeats_and_drops_the_remainder(tmp_path, tokenizer):
  features, path = written_features(tmp_path, tokenizer, True)
  dataset = squad_utils.input_fn_builder(path, 64, True, True, batch_size=5, seed=3)()
  batches = collect(dataset.take(2 * len(features)))
  assert all(len(b["unique_ids"]) == 5 for b in batches)
  seen = np.concatenate([b["unique_ids"] for b in batches])
  assert set(seen) == {f.unique_id for f in features}  # ten epochs' worth covers every record


def test_input_context_shards_and_batches_per_replica(tmp_path, tokenizer):
  import tensorflow as tf
  features, path = written_features(tmp_path, tokenizer, False)
  dataset_fn = squad_utils.input_fn_builder(path, 64, False, False, batch_size=4)
  shards = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    batches = collect(dataset_fn(context))
    assert max(len(b["unique_ids"]) for b in batches) == 2
    shards.append(np.concatenate([b["unique_ids"] for b in batches]).tolist())
  ids = [f.unique_id for f in features]
  assert shards == [ids[0::2], ids[1::2]]


def test_feature_writer_is_atomic(tmp_path, tokenizer):
  features = sample_features(tokenizer, True, count=2)
  path = tmp_path / "train.tf_record"
  with pytest.raises(RuntimeError):
    with squad_utils.FeatureWriter(str(path), True) as writer:
      writer.process_feature(features[0])
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []


def test_missing_feature_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="missing.tf_record"):
    squad_utils.input_fn_builder(str(tmp_path / "missing.tf_record"), 64, False, False, 8)


def test_feature_metas_round_trip(tmp_path, tokenizer):
  features = sample_features(tokenizer, False)
  path = str(tmp_path / "left.jsonl")
  assert squad_utils.write_feature_metas(path, (f.meta() for f in features)) == len(features)
  metas = list(squad_utils.read_feature_metas(path))
  assert metas == [f.meta() for f in features]
  first = json.loads(open(path, encoding="utf-8").readline())
  assert set(first) == {"unique_id", "example_index", "doc_span_index", "doc_offset",
                        "doc_char_spans", "token_is_max_context"}
  assert isinstance(first["doc_char_spans"][0], list) and isinstance(first["token_is_max_context"][0],
                                                                     bool)


def test_malformed_feature_metas_are_user_errors(tmp_path):
  path = tmp_path / "left.jsonl"
  path.write_text('{"unique_id": 1}\n')
  with pytest.raises(UserError, match="left.jsonl line 1"):
    list(squad_utils.read_feature_metas(str(path)))
  with pytest.raises(UserError, match="absent.jsonl"):
    squad_utils.read_feature_metas(str(tmp_path / "absent.jsonl"))


# ---------------------------------------------------------------------------------------------------
# Caches


def test_train_features_are_cached_with_the_example_count(tmp_path, tokenizer):
  train_file = shared_path("squad", "dev-v1.1-sample.json")
  output_dir = str(tmp_path / "out")
  prepare = lambda **changes: squad_utils.prepare_train_features(**{
      "train_file": train_file, "train_feature_file": None, "tokenizer": tokenizer,
      "max_seq_length": 64, "doc_stride": 32, "max_query_length": 16, "output_dir": output_dir,
      **changes})
  assert prepare() == 473
  feature_file = os.path.join(output_dir, "train.tf_record")
  info = json.load(open(feature_file + ".info.json"))
  assert info["num_examples"] == 473 and info["settings"]["max_seq_length"] == 64
  assert info["conversion"]["exact_answer_rate"] >= 0.99
  assert info["tokenizer"] == tokenizer.fingerprint and info["sources"][0]["size"] == os.path.getsize(train_file)
  stamp = os.stat(feature_file).st_mtime_ns
  assert prepare(train_file=None) == 473  # reused: the sidecar knows the count
  assert prepare() == 473  # reused: same settings, tokenizer and train file
  assert os.stat(feature_file).st_mtime_ns == stamp
  sidecar = feature_file + ".info.json"
  with open(sidecar) as f:
    edited = f.read().replace('"num_examples": 473', '"num_examples": 474')
  with open(sidecar, "w") as f:
    f.write(edited)  # still valid JSON, but no longer what was written: its digest tells
  with pytest.raises(UserError, match="sidecar .* was changed or damaged after it was written; pass --train_file"):
    prepare(train_file=None)
  os.remove(feature_file + ".info.json")
  # Without its sidecar nothing says how the cache was built: never reused, rebuilt when the source is at hand.
  with pytest.raises(UserError, match="--train_file"):
    prepare(train_file=None)
  assert prepare() == 473
  assert os.stat(feature_file).st_mtime_ns != stamp
  with pytest.raises(UserError, match="--train_feature_file or --output_dir"):
    prepare(output_dir=None)


def test_a_cache_of_another_tokenizer_or_an_edited_train_file_is_rebuilt(tmp_path, tokenizer, spm_model_file):
  from albert.tokenization import FullTokenizer
  train_file = subset_file(shared_path("squad", "dev-v1.1-sample.json"), tmp_path / "train.json", 40)
  feature_file = str(tmp_path / "train.tf_record")
  prepare = lambda source, tok: squad_utils.prepare_train_features(source, feature_file, tok, 64, 32, 16)
  assert prepare(train_file, tokenizer) == 40
  stamp = os.stat(feature_file).st_mtime_ns
  cased = FullTokenizer(do_lower_case=False, spm_model_file=spm_model_file)
  assert prepare(train_file, cased) == 40
  assert os.stat(feature_file).st_mtime_ns != stamp
  with pytest.raises(UserError, match="another tokenizer"):
    prepare(None, tokenizer)
  subset_file(shared_path("squad", "dev-v1.1-sample.json"), tmp_path / "train.json", 30)  # edited in place
  assert prepare(train_file, cased) == 30


def test_train_examples_are_shuffled_with_the_original_seed(tmp_path, tokenizer):
  import random

  import tensorflow as tf
  train_file = shared_path("squad", "dev-v1.1-sample.json")
  feature_file = str(tmp_path / "train.tf_record")
  squad_utils.prepare_train_features(train_file, feature_file, tokenizer, 64, 32, 16)
  examples = squad_utils.read_squad_examples(train_file, True).examples
  random.Random(12345).shuffle(examples)
  first = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(feature_file))).numpy())
  from albert.tokenization import preprocess_text
  question = preprocess_text(examples[0].question_text, lower=True)
  query_ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(question))[:16]
  assert list(first.features.feature["input_ids"].int64_list.value[1:1 + len(query_ids)]) == query_ids


def test_changed_window_flags_rebuild_a_stale_cache_or_refuse_it_without_source(tmp_path, tokenizer):
  train_file = shared_path("squad", "dev-v1.1-sample.json")
  feature_file = str(tmp_path / "train.tf_record")
  squad_utils.prepare_train_features(train_file, feature_file, tokenizer, 64, 32, 16)
  with pytest.raises(UserError, match="max_seq_length=64.*max_seq_length=96"):
    squad_utils.prepare_train_features(None, feature_file, tokenizer, 96, 32, 16)
  assert squad_utils.prepare_train_features(train_file, feature_file, tokenizer, 96, 32, 16) == 473
  assert json.load(open(feature_file + ".info.json"))["settings"]["max_seq_length"] == 96


def test_predict_features_are_reused_only_as_a_pair(tmp_path, tokenizer):
  predict_file = shared_path("squad", "dev-v1.1-sample.json")
  output_dir = str(tmp_path)
  prepare = lambda: squad_utils.prepare_predict_features(
      predict_file, None, None, tokenizer, 128, 64, 32, output_dir=output_dir)
  first = prepare()
  assert len(first.examples) == 473
  assert first.feature_file == os.path.join(output_dir, "predict.tf_record")
  assert first.feature_left_file == os.path.join(output_dir, "predict_left.jsonl")
  metas = list(squad_utils.read_feature_metas(first.feature_left_file))
  assert len(metas) == first.num_features
  assert [m.unique_id for m in metas] == list(range(1000000000, 1000000000 + len(metas)))
  assert metas[-1].example_index == 472
  stamps = [os.stat(p).st_mtime_ns for p in (first.feature_file, first.feature_left_file)]
  again = prepare()
  assert again.num_features == first.num_features
  assert [os.stat(p).st_mtime_ns for p in (first.feature_file, first.feature_left_file)] == stamps
  os.remove(first.feature_left_file)
  regenerated = prepare()
  assert os.stat(first.feature_file).st_mtime_ns != stamps[0]
  assert list(squad_utils.read_feature_metas(regenerated.feature_left_file)) == metas
