"""albert.create_pretraining_data: SOP pairs, n-gram masking, TFRecords, determinism, errors."""

import collections
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, shared_path

from albert.core.errors import UserError
from albert.tasks.pretraining import instances as building
from albert.tasks.pretraining import masking, writer

MASK = "[MASK]"


# --------------------------------------------------------------------------------------------------
# Start-piece rule, word groups, budget
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("piece,expected", [
    ("\u2581the", True), ("\u2581", True), ("<unk>", True), ("<", True),
    (",", True), (".", True), ("(", True), ("~", True),
    ("ing", False), ("ing.", False), ("-ing", False), ("..", False), ("s,", False),
    # Not in the original's punctuation list, so they count as "other" characters: start pieces.
    ("'s", True), ("'", True), ("=", True), (">", True),
    ("9", True), ("th9", True), ("\u00e9t\u00e9", True),
    # Quirk 2: the intended "\u20ac"/"\u00a3" entries never matched; they are start pieces only as non-ASCII.
    ("\u20ac", True), ("\u00a3", True),
])
def test_sentencepiece_start_piece_rule(piece, expected):
  assert masking.is_start_piece_sentencepiece(piece) is expected


def test_wordpiece_start_piece_rule():
  assert masking.is_start_piece_wordpiece("play")
  assert not masking.is_start_piece_wordpiece("##ing")


def _masker(vocab=("a", "b"), prob=0.15, max_predictions=20, spm=True, **kwargs):
  start = masking.is_start_piece_sentencepiece if spm else masking.is_start_piece_wordpiece
  return masking.Masker(list(vocab), start, prob, max_predictions, **kwargs)


def test_word_groups_follow_start_pieces_and_cross_sep():
  tokens = ["[CLS]", "\u2581the", "\u2581dog", "s", "[SEP]", "ing", "\u2581ran", ".", "[SEP]"]
  groups, boundary = _masker().word_groups(tokens)
  # Quirk 17: "ing" after [SEP] continues the word "▁dog s".
  assert groups == [[1], [2, 3, 5], [6], [7]]
  assert boundary == [1, 1, 1, 0, 1, 0, 1, 1, 1]
  groups, boundary = _masker(do_whole_word_mask=False).word_groups(tokens)
  assert groups == [[1], [2], [3], [5], [6], [7]]
  assert boundary == [1, 1, 1, 0, 1, 0, 1, 1, 1]


def test_number_of_predictions_rounds_like_python3():
  masker = _masker(prob=0.15, max_predictions=20)
  assert masker.num_to_predict(10) == 2     # round(1.5) = 2
  assert masker.num_to_predict(30) == 4     # round(4.5) = 4 (banker's rounding)
  assert masker.num_to_predict(3) == 1      # at least one
  assert masker.num_to_predict(512) == 20   # capped


def test_ngram_probabilities():
  np.testing.assert_allclose(masking.ngram_cumulative_probabilities(3, True), np.cumsum([6 / 11, 3 / 11, 2 / 11]))
  np.testing.assert_allclose(masking.ngram_cumulative_probabilities(3, False), np.cumsum([2 / 11, 3 / 11, 6 / 11]))


@pytest.mark.parametrize("favor_shorter,expected", [(True, [6 / 11, 3 / 11, 2 / 11]),
                                                    (False, [2 / 11, 3 / 11, 6 / 11])])
def test_ngram_length_distribution_over_whole_word_groups(favor_shorter, expected):
  masker = _masker(favor_shorter_ngram=favor_shorter)
  groups = [[1, 2], [3], [4, 5, 6]]
  candidates = [[groups[:1], groups[:2], groups[:3]]]
  ngram_rng = random.Random(7)
  size_to_n = {2: 1, 3: 2, 6: 3}
  counts = collections.Counter(
      size_to_n[len(masker.select_positions(candidates, 100, set(), ngram_rng))] for _ in range(6000))
  observed = [counts[n] / 6000 for n in (1, 2, 3)]
  np.testing.assert_allclose(observed, expected, atol=0.025)


def test_selection_falls_back_to_shorter_ngrams_and_skips_covered():
  masker = _masker()
  groups = [[1, 2], [3], [4, 5, 6]]
  candidates = [[groups[:1], groups[:2], groups[:3]]]
  for seed in range(30):
    # A budget of 3 tokens fits the 1- or 2-gram (2 or 3 tokens), never the 3-gram (6 tokens).
    assert masker.select_positions(candidates, 3, set(), random.Random(seed)) in ([1, 2], [1, 2, 3])
    assert masker.select_positions(candidates, 1, set(), random.Random(seed)) == []
    assert masker.select_positions(candidates, 10, {2}, random.Random(seed)) == []


# --------------------------------------------------------------------------------------------------
# Masking statistics on real text
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wiki_lines():
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    return f.read().split("\n")[:1200]


@pytest.fixture(scope="module")
def wiki_instances(spm_model_file, wiki_lines):
  """Instances (not serialized) from real text with the 2000-piece model: seq 64, 10 predictions."""
  settings = writer.Settings(vocab_file=None, spm_model_file=spm_model_file, max_seq_length=64,
                          max_predictions_per_seq=10, dupe_factor=3, random_seed=3)
  processor = writer.ChunkProcessor(settings)
  documents = processor.documents(wiki_lines)
  rng, ngram_rng = building.chunk_rngs(3, 0)
  instances = building.create_training_instances(documents, processor.builder, 3, rng, ngram_rng)
  return processor, instances


def _original_tokens(instance):
  tokens = list(instance.tokens)
  for position, label in zip(instance.masked_lm_positions, instance.masked_lm_labels):
    tokens[position] = label
  return tokens


def test_masked_share_and_cap(wiki_instances):
  _, instances = wiki_instances
  assert len(instances) > 1000
  predicted = expected = 0
  for instance in instances:
    budget = min(10, max(1, round(len(instance.tokens) * 0.15)))
    assert 1 <= len(instance.masked_lm_positions) <= budget
    assert instance.masked_lm_positions == sorted(set(instance.masked_lm_positions))
    predicted += len(instance.masked_lm_positions)
    expected += budget
  assert predicted / expected > 0.95


def test_replacements_are_80_10_10(wiki_instances):
  processor, instances = wiki_instances
  outcomes = collections.Counter()
  for instance in instances:
    for position, label in zip(instance.masked_lm_positions, instance.masked_lm_labels):
      token = instance.tokens[position]
      outcome = "mask" if token == MASK else "kept" if token == label else "random"
      outcomes[outcome] += 1
      assert outcome != "random" or token in processor.tokenizer.vocab
  total = sum(outcomes.values())
  assert total > 5000
  assert abs(outcomes["mask"] / total - 0.8) < 0.02
  assert abs(outcomes["kept"] / total - 0.1) < 0.015
  assert abs(outcomes["random"] / total - 0.1) < 0.015


def test_masks_cover_whole_words_and_never_specials(wiki_instances):
  _, instances = wiki_instances
  for instance in instances[:300]:
    tokens = _original_tokens(instance)
    masked = set(instance.masked_lm_positions)
    assert not masked & {i for i, t in enumerate(tokens) if t in ("[CLS]", "[SEP]")}
    for position in masked:
      # A continuation piece is masked only together with the piece before it (skipping [SEP]),
      # unless it is the first piece after [CLS] and so starts the first group.
      previous = position - 1 if tokens[position - 1] != "[SEP]" else position - 2
      if not masking.is_start_piece_sentencepiece(tokens[position]) and previous > 0:
        assert previous in masked


def test_token_boundary_marks_word_starts(wiki_instances):
  _, instances = wiki_instances
  for instance in instances[:300]:
    tokens = _original_tokens(instance)
    expected = [1 if t in ("[CLS]", "[SEP]") or t.startswith("\u2581") or t.startswith("<")
                or not all(c.isascii() and (c.isalpha() or c in "!\"#$%&()*+,-./:;?@[\\]^_`{|}~") for c in t)
                or (len(t) == 1 and t in "!\"#$%&()*+,-./:;?@[\\]^_`{|}~") else 0
                for t in tokens]
    assert instance.token_boundary == expected


# --------------------------------------------------------------------------------------------------
# SOP pairs
# --------------------------------------------------------------------------------------------------

def _synthetic_documents(num_documents=40, seed=0):
  """Documents whose every token names its document and sentence: "d3s7" is sentence 7 of document 3."""
  rng = random.Random(seed)
  return [[[f"d{d}s{s}"] * rng.randint(3, 12) for s in range(rng.randint(1, 15))] for d in range(num_documents)]


def _sentence_ids(tokens):
  """(document, sentence) of each token, in order."""
  return [tuple(int(x) for x in token[1:].split("s")) for token in tokens]


def _segments(instance):
  tokens = _original_tokens(instance)
  first_sep = tokens.index("[SEP]")
  return _sentence_ids(tokens[1:first_sep]), _sentence_ids(tokens[first_sep + 1:-1])


def _instances(documents, max_seq_length=48, random_next_sentence=False, dupe_factor=5, seed=1):
  vocab = sorted({token for document in documents for sentence in document for token in sentence})
  masker = masking.Masker(vocab, lambda piece: True, 0.15, 5)
  builder = building.InstanceBuilder(masker, max_seq_length, short_seq_prob=0.1, random_next_sentence=random_next_sentence)
  rng, ngram_rng = building.chunk_rngs(seed, 0)
  return building.create_training_instances(documents, builder, dupe_factor, rng, ngram_rng)


def test_sop_labels_are_balanced_and_swaps_reverse_the_order():
  instances = _instances(_synthetic_documents(), dupe_factor=15)
  same_document = collections.Counter()
  for instance in instances:
    a, b = _segments(instance)
    assert a and b and len(a) + len(b) <= 48 - 3
    assert instance.segment_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    if {d for d, _ in a} == {d for d, _ in b}:
      same_document[instance.is_random_next] += 1
      if instance.is_random_next:
        assert max(s for _, s in b) < min(s for _, s in a)   # swapped: B came first in the document
      else:
        assert max(s for _, s in a) < min(s for _, s in b)   # in order
    else:
      assert instance.is_random_next                         # random-document B
  share_swapped = same_document[True] / sum(same_document.values())
  assert sum(same_document.values()) > 800
  assert abs(share_swapped - 0.5) < 0.06


def test_single_sentence_chunks_get_a_random_document_b_with_label_1():
  # Quirk 4: every sentence fills the target length, so every chunk holds one sentence.
  documents = [[[f"d{d}s{s}"] * 50 for s in range(3)] for d in range(10)]
  instances = _instances(documents, max_seq_length=32, dupe_factor=2)
  assert instances
  for instance in instances:
    a, b = _segments(instance)
    assert instance.is_random_next
    assert {d for d, _ in a} != {d for d, _ in b}
    assert len({s for _, s in a}) == 1


def test_random_next_sentence_mode_uses_other_documents_for_negatives():
  instances = _instances(_synthetic_documents(), random_next_sentence=True)
  swapped = 0
  for instance in instances:
    a, b = _segments(instance)
    same = {d for d, _ in a} == {d for d, _ in b}
    if same and instance.is_random_next:
      swapped += 1
    if same and not instance.is_random_next:
      assert max(s for _, s in a) < min(s for _, s in b)
  assert swapped < 0.02 * len(instances)   # only when the 10 tries keep hitting the same document


def test_pair_truncation_trims_the_longer_side_b_on_ties():
  for seed in range(20):
    rng = random.Random(seed)
    a, b = list(range(10)), list(range(100, 104))
    building.truncate_seq_pair(a, b, 8, rng)
    assert b == [100, 101, 102, 103] and len(a) == 4
    assert a == list(range(a[0], a[0] + 4))   # a contiguous slice: tokens leave from either end
    a, b = list(range(5)), list(range(100, 105))
    building.truncate_seq_pair(a, b, 9, rng)
    assert a == list(range(5)) and len(b) == 4


# --------------------------------------------------------------------------------------------------
# Files: TFRecords, determinism, chunks and workers
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, wiki_lines):
  path = tmp_path_factory.mktemp("corpus") / "wiki.txt"
  path.write_text("\n".join(wiki_lines[:500]) + "\n", encoding="utf-8")
  return str(path)


def _create(spm_model_file, corpus_file, outputs, seed=5, num_workers=1, max_documents=0, **changes):
  settings = writer.Settings(vocab_file=None, spm_model_file=spm_model_file, max_seq_length=64,
                          max_predictions_per_seq=10, dupe_factor=2, random_seed=seed, **changes)
  return writer.create_pretraining_data(settings, [corpus_file], [str(path) for path in outputs],
                                     num_workers=num_workers, max_documents_in_memory=max_documents)


def _read_bytes(paths):
  return [open(path, "rb").read() for path in paths]


def _parse(paths, seq_length, slots):
  import tensorflow as tf
  spec = {
      "input_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
      "input_mask": tf.io.FixedLenFeature([seq_length], tf.int64),
      "segment_ids": tf.io.FixedLenFeature([seq_length], tf.int64),
      "token_boundary": tf.io.FixedLenFeature([seq_length], tf.int64),
      "masked_lm_positions": tf.io.FixedLenFeature([slots], tf.int64),
      "masked_lm_ids": tf.io.FixedLenFeature([slots], tf.int64),
      "masked_lm_weights": tf.io.FixedLenFeature([slots], tf.float32),
      "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
  }
  records = []
  for path in paths:
    for serialized in tf.data.TFRecordDataset(str(path)):
      example = tf.train.Example.FromString(serialized.numpy())
      assert set(example.features.feature) == set(spec)
      records.append({k: v.numpy() for k, v in tf.io.parse_single_example(serialized, spec).items()})
  return records


def test_tfrecords_have_the_original_keys_shapes_and_padding(spm_model_file, corpus_file, tmp_path):
  outputs = [tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"]
  documents, instances = _create(spm_model_file, corpus_file, outputs)
  first, second = (_parse([path], 64, 10) for path in outputs)
  assert abs(len(first) - len(second)) <= 1   # round-robin
  records = first + second
  assert len(records) == instances and documents >= 3
  labels = []
  for record in records:
    length = int(record["input_mask"].sum())
    assert record["input_mask"].tolist() == [1] * length + [0] * (64 - length)
    for key in ("input_ids", "segment_ids", "token_boundary"):
      assert not record[key][length:].any()
    ids = record["input_ids"][:length]
    num = int(record["masked_lm_weights"].sum())
    positions = record["masked_lm_positions"][:num]
    unmasked = np.ones(length, bool)
    unmasked[positions] = False   # a random replacement may be any vocabulary entry, [SEP] included
    assert ids[0] == 2 and ids[-1] == 3 and ((ids == 3) & unmasked).sum() == 2
    first_sep = int(np.flatnonzero((ids == 3) & unmasked)[0])
    assert record["segment_ids"][:length].tolist() == [0] * (first_sep + 1) + [1] * (length - first_sep - 1)
    assert record["masked_lm_weights"].tolist() == [1.0] * num + [0.0] * (10 - num)
    assert (np.diff(positions) > 0).all() and positions.max() < length
    assert not record["masked_lm_positions"][num:].any() and not record["masked_lm_ids"][num:].any()
    labels.append(int(record["next_sentence_labels"][0]))
  assert 0.4 < np.mean(labels) < 0.75   # swaps (half of multi-sentence chunks) plus random-document pairs


def test_permutation_doubles_the_prediction_slots(spm_model_file, corpus_file, tmp_path):
  outputs = [tmp_path / "perm.tfrecord"]
  _create(spm_model_file, corpus_file, outputs, do_permutation=True)
  records = _parse(outputs, 64, 20)
  assert max(int(r["masked_lm_weights"].sum()) for r in records) > 10
  for record in records[:200]:
    num = int(record["masked_lm_weights"].sum())
    positions = record["masked_lm_positions"][:num]
    assert (np.diff(positions) > 0).all()


def test_same_seed_same_bytes_other_seed_other_bytes(spm_model_file, corpus_file, tmp_path):
  first, second, other = ([tmp_path / f"{name}{i}.tfrecord" for i in range(2)] for name in ("x", "y", "z"))
  _create(spm_model_file, corpus_file, first, seed=11)
  _create(spm_model_file, corpus_file, second, seed=11)
  _create(spm_model_file, corpus_file, other, seed=12)
  assert _read_bytes(first) == _read_bytes(second)
  assert _read_bytes(first)[0] != _read_bytes(other)[0]
  assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


@pytest.mark.slow
def test_workers_do_not_change_the_output(spm_model_file, corpus_file, tmp_path):
  one, two, whole = [tmp_path / "one.tfrecord"], [tmp_path / "two.tfrecord"], [tmp_path / "whole.tfrecord"]
  documents, _ = _create(spm_model_file, corpus_file, one, max_documents=2)
  assert documents >= 4   # several chunks
  _create(spm_model_file, corpus_file, two, num_workers=2, max_documents=2)
  _create(spm_model_file, corpus_file, whole)
  assert _read_bytes(one) == _read_bytes(two)
  assert _read_bytes(one) != _read_bytes(whole)   # chunking changes which documents pair up


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def _cli(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "albert.create_pretraining_data", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_end_to_end_without_vocab_file(spm_model_file, corpus_file, tmp_path):
  output = tmp_path / "out" / "train.tfrecord"
  result = _cli([f"--input_file={corpus_file}", f"--output_file={output}", f"--spm_model_file={spm_model_file}",
                 "--max_seq_length=64", "--max_predictions_per_seq=10", "--dupe_factor=1"])
  assert result.returncode == 0, result.stderr
  assert "*** Example ***" in result.stderr and "instances" in result.stderr
  records = _parse([output], 64, 10)
  assert records and all(r["input_ids"][0] == 2 for r in records)


def test_cli_errors_are_one_line(spm_model_file, corpus_file, tmp_path):
  output = f"--output_file={tmp_path / 'o.tfrecord'}"
  empty = tmp_path / "empty.txt"
  empty.write_text("\n  \n\n", encoding="utf-8")
  cases = [
      ([f"--input_file={tmp_path}/none*.txt", output, f"--spm_model_file={spm_model_file}"],
       f"error: --input_file: no file matches {tmp_path}/none*.txt"),
      ([f"--input_file={corpus_file}", output, f"--spm_model_file={tmp_path}/missing.model"],
       f"error: --spm_model_file: file not found: {tmp_path}/missing.model"),
      ([f"--input_file={corpus_file}", output], "error: --spm_model_file or --vocab_file is required"),
      ([f"--input_file={corpus_file}", output, f"--spm_model_file={spm_model_file}", "--max_seq_length=4"],
       "error: flag --max_seq_length=4: must be >= 5"),
      ([f"--input_file={empty}", output, f"--spm_model_file={spm_model_file}"],
       f"error: --input_file: no text in {empty}"),
      ([f"--input_file={corpus_file}", output, f"--spm_model_file={spm_model_file}", "--input_file_mode=w"],
       "error: flag --input_file_mode=w: value should be one of <r|rb>"),
  ]
  for args, expected in cases:
    result = _cli(args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == expected
  assert not [name for name in os.listdir(tmp_path) if name.startswith("o.tfrecord")]


def test_input_file_mode_decides_how_non_utf8_lines_are_read(tmp_path):
  path = tmp_path / "latin1.txt"
  path.write_bytes(b"First line.\nCaf\xe9 au lait.\n\nSecond document.\n")
  with pytest.raises(UserError, match=r"^--input_file: .*latin1.txt line 2 is not UTF-8 text"):
    list(writer.read_chunks([str(path)], 0, "r"))
  (chunk,) = writer.read_chunks([str(path)], 0, "rb")
  assert chunk.lines == ["First line.\n", "Caf\u00e9 au lait.\n", "\n", "Second document.\n", ""]


def test_chunks_end_at_document_boundaries_and_files_end_documents(tmp_path):
  first, second = tmp_path / "1.txt", tmp_path / "2.txt"
  first.write_text("a1\na2\n\nb1\n\n\nc1\n", encoding="utf-8")
  second.write_text("d1\n", encoding="utf-8")
  chunks = list(writer.read_chunks([str(first), str(second)], 2, "r"))
  assert [chunk.index for chunk in chunks] == [0, 1]
  assert chunks[0].lines == ["a1\n", "a2\n", "\n", "b1\n", "\n"]
  assert chunks[1].lines == ["\n", "c1\n", "", "d1\n", ""]
  assert sum(chunk.num_bytes for chunk in chunks) == first.stat().st_size + second.stat().st_size
