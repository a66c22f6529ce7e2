"""Tests for albert.text.in_graph: the in-graph tokenizer gives FullTokenizer's ids and raw character spans,
on the real SQuAD samples and on hand-picked hard cases, before and after a SavedModel round trip."""

import json
import unicodedata

import pytest
from conftest import shared_path, write_handmade_spm_model
from sentencepiece import sentencepiece_model_pb2

pytest.importorskip("tensorflow_text")
import tensorflow as tf  # noqa: E402

from albert.core.errors import UserError  # noqa: E402
from albert.text import in_graph  # noqa: E402
from albert.text.in_graph import InGraphTokenizer  # noqa: E402
from albert.text.tokenizer import FullTokenizer  # noqa: E402

U = "\u2581"

# Hard cases for preprocessing and alignment: accents (precomposed and combining, also before any base
# character), ligatures, compatibility characters, "¨" (NFKD gives a space, so SentencePiece's own alignment is
# used), Python-only whitespace (\x1c-\x1f, U+0085) and Unicode spaces, Greek final sigma, U+0130, Hangul,
# unknown characters, digits with commas, empty and blank texts.
HARD_TEXTS = [
    "", " ", " \t\n\u3000 ", "a", "Éric  Zürich Straße", "E\u0301ric", "\u0301\u0301a b", "ab\u0301\u0301 cd",
    "ﬁne ﬂower ﬃ", "½ ², № ㎏ Ⅻ", "in \u00a81990, the", "  a \t b\n\n c\u3000d\u00a0e  ",
    "x\x1cy\x1d z\x85w", "\u2028line\u2029para\u200bzero", "ΟΔΥΣΣΕΥΣ Σ aΣ. ΣΑΣ, ὈΔΥΣΣΕΎΣ",
    "İstanbul ǅemal Ǆ", "한국어 텍스트", "snow ☃☃ man ☃", "1,000, a90, 200,000 10,000,000.",
    "(\"quoted\") – £5 €6", "tab\tend\t", "ÅÅÅ Ångström", "\U0001d400\U0001d6ba bold",
    "naïve café résumé coöperate", "e\u0301\u0302\u0303 x",
]


@pytest.fixture(scope="module")
def spm_bytes(spm_model_file):
  with open(spm_model_file, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def lower_pair(spm_bytes):
  return FullTokenizer.from_spm_bytes(spm_bytes, True), InGraphTokenizer(spm_bytes, True)


@pytest.fixture(scope="module")
def cased_pair(spm_bytes):
  return FullTokenizer.from_spm_bytes(spm_bytes, False), InGraphTokenizer(spm_bytes, False)


@pytest.fixture(scope="module")
def digits_pair(tmp_path_factory):
  # Hand-set pieces where digit-comma pieces exist, so the re-split fires.
  pieces = [U, ","] + list("0123456789abcdefghijklmnopqrstuvwxyz")
  pieces += [U + "in", U + "the", U + "x", U + "1990,", U + "1990", U + "1880,", "90,", "000,", U + "1", "0,"]
  model = write_handmade_spm_model(tmp_path_factory.mktemp("digits") / "digits.model", pieces).read_bytes()
  return FullTokenizer.from_spm_bytes(model, False), InGraphTokenizer(model, False)


def expected(reference, text):
  tokens = reference.tokenize_with_offsets(text)
  return (reference.convert_tokens_to_ids([token.piece for token in tokens]),
          [token.start for token in tokens], [token.end for token in tokens])


def assert_same(reference, tokenizer, texts):
  """Ids and spans of every text equal FullTokenizer's; `tokenize` gives the same ids."""
  ids, starts, ends = (x.to_list() for x in tokenizer.tokenize_with_offsets(tf.constant(texts)))
  only_ids = tokenizer.tokenize(tf.constant(texts)).to_list()
  mismatches = [text for i, text in enumerate(texts)
                if expected(reference, text) != (ids[i], starts[i], ends[i]) or only_ids[i] != ids[i]]
  assert not mismatches, mismatches[:3]


def squad_texts(name):
  with open(shared_path("squad", name), encoding="utf-8") as f:
    data = json.load(f)["data"]
  return [text for article in data for paragraph in article["paragraphs"]
          for text in [paragraph["context"]] + [qa["question"] for qa in paragraph["qas"]]]


@pytest.mark.parametrize("name", ["dev-v1.1-sample.json", "dev-v2.0-sample.json"])
def test_real_samples_equal_full_tokenizer(lower_pair, name):
  texts = squad_texts(name)
  assert len(texts) > 500
  assert_same(*lower_pair, texts)


def test_real_sample_cased(cased_pair):
  """do_lower_case False on the v1.1 sample's contexts and questions."""
  assert_same(*cased_pair, squad_texts("dev-v1.1-sample.json"))


def test_hard_cases(lower_pair, cased_pair):
  for pair in (lower_pair, cased_pair):
    assert_same(*pair, HARD_TEXTS)
  # The cases do what they are meant to: a final sigma, a text SentencePiece does not spell out, a run
  # of Python-only whitespace collapsed, an accent attached to the span before it.
  reference = lower_pair[0]
  assert "ς" in "".join(token.piece for token in reference.tokenize_with_offsets("ΣΑΣ x"))
  assert max(t.end for t in reference.tokenize_with_offsets("ab\u0301\u0301 cd") if t.start < 4) == 4
  assert unicodedata.normalize("NFKD", "\u00a8") == " \u0308"


def test_digit_comma_rule(digits_pair):
  reference, tokenizer = digits_pair
  texts = ["in 1990, the", "in 1880, the", "x90, y", "1,000, a90,", "a90,b 1990,1990,", "in  1880,\tthe",
           "in \u00a81990, the", "0, 00, 000,", "1,000,000,"]
  assert_same(reference, tokenizer, texts)
  ids, starts, ends = (x.to_list() for x in tokenizer.tokenize_with_offsets(tf.constant(["x90, x"])))
  assert reference.convert_ids_to_tokens(ids[0]) == [U + "x", U, "9", "0", ",", U + "x"]
  assert list(zip(starts[0], ends[0])) == [(0, 1), (1, 1), (1, 2), (2, 3), (3, 4), (5, 6)]


def test_tie_breaking_follows_python_sentencepiece(lower_pair, spm_bytes):
  """"0" "00" and "00" "0" score the same up to rounding; the Python package and the fast op pick the same."""
  import tensorflow_text
  reference, _ = lower_pair
  texts = [",000", "200,000 and 3,000", "how many had 200,000 residents?"]
  assert_same(*lower_pair, texts)
  # Why the fast op is used: tensorflow-text's SentencePiece op breaks this tie the other way.
  sentencepiece_op = tensorflow_text.SentencepieceTokenizer(model=spm_bytes).tokenize([texts[0]]).to_list()[0]
  assert sentencepiece_op != reference.sp_model.encode(texts[0])


def test_bpe_model(tmp_path):
  """A BPE model (not ALBERT's kind, which the fast op cannot read) goes through the SentencePiece op alone."""
  import sentencepiece as spm
  prefix = str(tmp_path / "bpe")
  spm.SentencePieceTrainer.train(input=shared_path("corpus", "wikitext2-valid.txt"), model_prefix=prefix,
                                 vocab_size=400, model_type="bpe", input_sentence_size=3000, minloglevel=2)
  with open(prefix + ".model", "rb") as f:
    model = f.read()
  texts = HARD_TEXTS + squad_texts("dev-v1.1-sample.json")[:40]
  assert_same(FullTokenizer.from_spm_bytes(model, True), InGraphTokenizer(model, True), texts)


def test_bytes_and_batches(lower_pair):
  reference, tokenizer = lower_pair
  latin1 = b"caf\xe9 ok"
  ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant([latin1, "café ok".encode()]))
  assert ids.to_list()[0] == expected(reference, latin1)[0] == ids.to_list()[1]
  assert starts.to_list()[0] == expected(reference, latin1)[1]
  empty = tokenizer.tokenize(tf.constant([], tf.string))
  assert empty.shape[0] == 0 and ids.dtype == tf.int32 and starts.dtype == tf.int32


def test_special_ids_and_errors(spm_bytes, lower_pair, tmp_path):
  reference, tokenizer = lower_pair
  assert (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.unk_id) == (len(reference.vocab), 0, 1)
  assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (reference.cls_id, reference.sep_id,
                                                                     reference.mask_id)
  assert in_graph.available()
  with pytest.raises(UserError, match="not a valid SentencePiece model"):
    InGraphTokenizer(b"not a model", True, source="--spm_model_file x.model")
  model = sentencepiece_model_pb2.ModelProto.FromString(spm_bytes)
  model.pieces[4].piece = "[NOMASK]"
  with pytest.raises(UserError, match=r"no \[MASK\] piece"):
    _ = InGraphTokenizer(model.SerializeToString(), True).mask_id


def test_saved_model_round_trip(lower_pair, tmp_path):
  reference, tokenizer = lower_pair
  texts = HARD_TEXTS + ["The Normans gave their name to Normandy, a region in France."]
  before = [x.to_list() for x in tokenizer.tokenize_with_offsets(tf.constant(texts))]
  tf.saved_model.save(tokenizer, str(tmp_path / "tok"))
  loaded = tf.saved_model.load(str(tmp_path / "tok"))
  after = [x.to_list() for x in loaded.tokenize_with_offsets(tf.constant(texts))]
  assert after == before
  assert loaded.tokenize(tf.constant(texts)).to_list() == before[0]
  assert before[0][-1] == expected(reference, texts[-1])[0]
  # tf.random.set_seed clears TensorFlow's eager caches; the tokenizer's SentencePiece model must outlive that
  tf.random.set_seed(7)
  assert [x.to_list() for x in tokenizer_after_seed(lower_pair[1], texts)] == before


def tokenizer_after_seed(tokenizer, texts):
  return tf.function(tokenizer.tokenize_with_offsets)(tf.constant(texts))
