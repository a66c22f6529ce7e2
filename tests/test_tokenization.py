"""Tests for albert.tokenization: preprocessing, the digit-comma rule, special ids, WordPiece mode and
raw-text offsets, checked against hand-computed values, hand-built models and spec-following references."""

import collections
import json
import pickle
import random
import re
import unicodedata

import pytest
from conftest import shared_path, write_handmade_spm_model

from albert.core.errors import UserError
from albert.text import sentencepiece, wordpiece
from albert.tokenization import FullTokenizer, Token, encode_ids, encode_pieces, preprocess_text

U = "\u2581"
USER_SYMBOLS = ["(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac"]


@pytest.fixture(scope="module")
def spm_tokenizer(spm_model_file):
  return FullTokenizer(spm_model_file=spm_model_file, do_lower_case=True)


@pytest.fixture(scope="module")
def handmade_tokenizer(tmp_path_factory):
  """A model where "▁1990," and "90," are pieces, "▁1990" exists but "▁1880" does not."""
  pieces = [U, ","] + list("0123456789abcdefghijklmnopqrstuvwxyz")
  pieces += [U + "in", U + "the", U + "x", U + "y", U + "1990,", U + "1990", U + "1880,", "90,"]
  path = write_handmade_spm_model(tmp_path_factory.mktemp("handmade") / "digits.model", pieces, USER_SYMBOLS)
  return FullTokenizer(spm_model_file=str(path), do_lower_case=False)


# --- special ids and vocabulary -------------------------------------------------------------------


def test_special_ids_follow_the_released_layout(spm_tokenizer):
  expected = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"] + USER_SYMBOLS
  assert spm_tokenizer.convert_ids_to_tokens(range(13)) == expected
  assert spm_tokenizer.convert_tokens_to_ids(expected) == list(range(13))
  assert (spm_tokenizer.pad_id, spm_tokenizer.cls_id, spm_tokenizer.sep_id, spm_tokenizer.mask_id) == (0, 2, 3, 4)
  assert len(spm_tokenizer.vocab) == 2000
  assert spm_tokenizer.inv_vocab[13] == U


def test_ids_and_tokens_round_trip(spm_tokenizer):
  every_id = list(range(2000))
  assert spm_tokenizer.convert_tokens_to_ids(spm_tokenizer.convert_ids_to_tokens(every_id)) == every_id
  pieces = spm_tokenizer.tokenize(preprocess_text("The Normans gave their name to Normandy.", lower=True))
  ids = spm_tokenizer.convert_tokens_to_ids(pieces)
  assert spm_tokenizer.convert_ids_to_tokens(ids) == pieces
  assert ids == encode_ids(spm_tokenizer.sp_model, preprocess_text("The Normans gave their name to Normandy.",
                                                                   lower=True))
  assert spm_tokenizer.convert_tokens_to_ids(["no such piece", U + "龍龍"]) == [1, 1]


def test_spm_tokenize_does_not_preprocess(spm_tokenizer):
  pieces = spm_tokenizer.tokenize("ÉRIC  Smith")
  assert "".join(pieces).replace(U, " ").strip().split() == ["ÉRIC", "Smith"]


def test_sampling_spells_out_the_same_text(spm_tokenizer):
  text = "the old woman lived in the forest with her son"
  for _ in range(5):
    pieces = encode_pieces(spm_tokenizer.sp_model, text, sample=True)
    assert all(isinstance(piece, str) for piece in pieces)
    assert "".join(pieces).replace(U, " ").strip() == text


# --- preprocess_text ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, lower, expected", [
    ("Éric", False, "Eric"),
    ("Éric", True, "eric"),
    ("E\u0301ric", True, "eric"),
    ("ﬁne ﬂower", False, "fine flower"),
    ("  a \t b\n\n c\u3000d\u00a0e  ", False, "a b c d e"),
    ("The CAT", True, "the cat"),
    ("Zürich  Straße", True, "zurich straße"),
    ("\u201cquoted\u201d ``latex''", False, "\u201cquoted\u201d ``latex''"),
    ("½ ², №", False, "1\u20442 2, No"),
    ("", True, ""),
])
def test_preprocess_text(raw, lower, expected):
  assert preprocess_text(raw, lower=lower) == expected


def test_preprocess_text_keeps_spaces_when_asked_and_decodes_bytes():
  assert preprocess_text("  a \t é ", remove_space=False) == "  a \t e "
  assert preprocess_text("café".encode("utf-8")) == "cafe"
  assert preprocess_text(b"caf\xe9 ok", lower=True) == "cafe ok"  # latin-1 fallback


# --- the digit-comma rule (§4.3, quirk 1) ----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    # "▁1990," is a piece; "1990" re-encodes to "▁1990", then the comma.
    ("in 1990, the", [U + "in", U + "1990", ",", U + "the"]),
    # "▁1880," is a piece but "▁1880" is not: the dummy "▁" and single digits remain.
    ("in 1880, the", [U + "in", U, "1", "8", "8", "0", ",", U + "the"]),
    # "90," continues a word; Python 2 would have dropped the leading "▁" (-> 9, 0, ","), Python 3 keeps it.
    ("x90, y", [U + "x", U, "9", "0", ",", U + "y"]),
    ("in 1990,the", [U + "in", U + "1990", ",", "t", "h", "e"]),
    # Pieces that merely contain a comma are left alone.
    ("x, y", [U + "x", ",", U + "y"]),
])
def test_digit_comma_rule(handmade_tokenizer, text, expected):
  sp_model = handmade_tokenizer.sp_model
  assert encode_pieces(sp_model, text) == expected
  assert handmade_tokenizer.tokenize(text) == expected
  assert encode_ids(sp_model, text) == [handmade_tokenizer.vocab[piece] for piece in expected]


def test_digit_comma_rule_is_needed_for_those_examples(handmade_tokenizer):
  """Guards the test above: SentencePiece itself produces the merged pieces."""
  sp_model = handmade_tokenizer.sp_model
  assert sp_model.encode("in 1990, the", out_type=str) == [U + "in", U + "1990,", U + "the"]
  assert sp_model.encode("x90, y", out_type=str) == [U + "x", "90,", U + "y"]


@pytest.mark.parametrize("text, expected", [
    ("in 1990, the", [(U + "in", "in"), (U + "1990", "1990"), (",", ","), (U + "the", "the")]),
    ("x90, y", [(U + "x", "x"), (U, ""), ("9", "9"), ("0", "0"), (",", ","), (U + "y", "y")]),
    ("in  1880,\tthe", [(U + "in", "in"), (U, ""), ("1", "1"), ("8", "8"), ("8", "8"), ("0", "0"),
                        (",", ","), (U + "the", "the")]),
])
def test_digit_comma_offsets(handmade_tokenizer, text, expected):
  tokens = handmade_tokenizer.tokenize_with_offsets(text)
  assert [(token.piece, text[token.start:token.end]) for token in tokens] == expected
  assert_monotonic(text, tokens)


def test_offsets_by_hand(handmade_tokenizer):
  text = "in 1880, the"
  assert handmade_tokenizer.tokenize_with_offsets(text) == [
      Token(U + "in", 0, 2), Token(U, 3, 3), Token("1", 3, 4), Token("8", 4, 5), Token("8", 5, 6),
      Token("0", 6, 7), Token(",", 7, 8), Token(U + "the", 9, 12)]
  # "¨" decomposes to a space plus a combining mark: the preprocessed text has two spaces in a row, so
  # the pieces no longer spell it out and SentencePiece's own alignment is used.
  text = "in \u00a81990, the"
  assert preprocess_text(text) == "in  1990, the"
  assert handmade_tokenizer.tokenize_with_offsets(text) == [
      Token(U + "in", 0, 2), Token(U + "1990", 4, 8), Token(",", 8, 9), Token(U + "the", 10, 13)]


def test_both_alignment_routes_agree(handmade_tokenizer, spm_tokenizer):
  """The fast route (piece lengths) and SentencePiece's reported offsets give the same spans."""
  for tokenizer, text in [(handmade_tokenizer, "in 1990, the x90, y"),
                          (spm_tokenizer, "the king's 3 sons, aged 7, 9 and 12, said: \"no\".")]:
    fast = sentencepiece._content_spans(tokenizer.sp_model, text)
    reported = sentencepiece._content_spans_from_proto(tokenizer.sp_model, text)
    assert fast == reported
  assert sentencepiece._content_spans_from_proto(handmade_tokenizer.sp_model, "x  y") == (
      [U + "x", U + "y"], [0, 3], [1, 4])


# --- offsets in SentencePiece mode ------------------------------------------------------------------


def content(piece):
  return piece.replace(U, "")


def assert_monotonic(text, tokens):
  previous_end = 0
  for token in tokens:
    assert previous_end <= token.start <= token.end <= len(text), (text, tokens)
    previous_end = token.end


def check_offsets(tokenizer, text):
  """Checks the offsets of `text` and returns the pieces of split expansions (exception 2 below).

  The pieces must equal the plain route's, and each piece's text (without "▁") must equal the
  preprocessed raw span it reports. Exceptions, precisely:
  - pieces mapped to <unk>: their text is SentencePiece's own normalization of the characters;
  - one raw character that preprocessing expands into several (e.g. "″" -> "′′", "ﬁ" -> "fi") split
    across pieces: the first piece gets the raw character, the following ones an empty span at its end,
    so only the group as a whole matches.
  """
  lower = tokenizer.do_lower_case
  tokens = tokenizer.tokenize_with_offsets(text)
  assert [token.piece for token in tokens] == tokenizer.tokenize(preprocess_text(text, lower=lower))
  assert_monotonic(text, tokens)
  exceptions = []
  i = 0
  while i < len(tokens):
    first = tokens[i]
    if tokenizer.convert_tokens_to_ids([first.piece]) == [1]:
      i += 1
      continue
    j = i
    while preprocess_text(text[first.start:first.end], lower=lower) != "".join(
        content(token.piece) for token in tokens[i:j + 1]):
      j += 1
      assert j < len(tokens) and tokens[j].start == tokens[j].end == first.end, (text, tokens[i:j + 1])
    if j > i:
      assert first.end - first.start == 1, (text, tokens[i:j + 1])
      exceptions.extend(token.piece for token in tokens[i:j + 1])
    i = j + 1
  return exceptions


def test_offsets_on_every_line_of_a_raw_book(spm_tokenizer):
  with open(shared_path("corpus", "grimm-fairy-tales.txt"), encoding="utf-8") as f:
    lines = f.read().split("\n")
  exceptions = []
  for line in lines:
    exceptions += check_offsets(spm_tokenizer, line)
  assert not exceptions


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_offsets_on_squad_contexts(spm_model_file, do_lower_case):
  tokenizer = FullTokenizer(spm_model_file=spm_model_file, do_lower_case=do_lower_case)
  with open(shared_path("squad", "dev-v2.0-sample.json"), encoding="utf-8") as f:
    data = json.load(f)["data"]
  contexts = [paragraph["context"] for article in data for paragraph in article["paragraphs"]]
  exceptions = []
  for context in contexts:
    exceptions += check_offsets(tokenizer, context)
  assert exceptions == ["′", "′"]  # "35° 47′ 28″": the "″" becomes two "′" pieces


@pytest.mark.parametrize("text", [
    "Éric  went\tto Zürich,\n\nin 1990, with £5 and 3,000 €.",
    "E\u0301ric said \u201chello\u201d  \u2014 ``twice''",
    "ﬁne ﬂowers, the ﬁrst ½ of 1,000,000, ok",
    "Straße ΣΟΦΙΑ naïve café Ångström",
    "東京 is 龍 and 한국어 text",
    "  leading and trailing spaces \t ",
    "",
])
def test_offsets_on_hand_written_text(spm_tokenizer, text):
  check_offsets(spm_tokenizer, text)
  tokens = spm_tokenizer.tokenize_with_offsets(text)
  covered = "".join(text[token.start:token.end] for token in tokens)
  assert covered == "".join(text.split()), tokens  # every non-space character exactly once, in order


def test_offsets_keep_accents_and_expansions_with_their_piece(spm_tokenizer):
  text = "Cafe\u0301 ﬁ"
  tokens = spm_tokenizer.tokenize_with_offsets(text)
  spans = [text[token.start:token.end] for token in tokens]
  assert "".join(spans) == "Cafe\u0301ﬁ"
  assert spans[-1] in ("ﬁ", "")  # "ﬁ" -> "fi": the piece with "f" owns it
  assert any(span.endswith("e\u0301") for span in spans)


def test_characters_removed_by_sentencepiece_stay_outside_spans(spm_tokenizer):
  for text in ["the \u200bking", "the\u200b king", "the king\u200b"]:
    spans = [text[token.start:token.end] for token in spm_tokenizer.tokenize_with_offsets(text)]
    assert "".join(spans) == "theking", spans


def test_unknown_characters_keep_their_raw_span(spm_tokenizer):
  text = "a 龍 b"
  tokens = spm_tokenizer.tokenize_with_offsets(text)
  unknown = [token for token in tokens if spm_tokenizer.convert_tokens_to_ids([token.piece]) == [1]]
  assert [text[token.start:token.end] for token in unknown] == ["龍"]


def test_offsets_on_random_text(spm_tokenizer):
  """Seeded random strings of tricky characters: the same pieces as the plain route, ordered spans."""
  alphabet = list("abcXYZ 019,.'\"-") + [
      "  ", "\t", "\n", "é", "e\u0301", "ﬁ", "″", "¨", "\u200b", "İ", "Σ", "ß", "한", "龍", "…", "½",
      "\u3000", "\u2581", "\u0301", "\u0f73", "ﾞ", "２", "，", "\u00a0", "Ⅻ", "㎏", "ǅ", "\ufb03"]
  rng = random.Random(7)
  for do_lower_case in (True, False):
    spm_tokenizer_variant = FullTokenizer.from_spm_bytes(
        spm_tokenizer.sp_model.serialized_model_proto(), do_lower_case)
    for _ in range(1500):
      text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
      tokens = spm_tokenizer_variant.tokenize_with_offsets(text)
      expected = encode_pieces(spm_tokenizer.sp_model, preprocess_text(text, lower=do_lower_case))
      assert [token.piece for token in tokens] == expected, text
      assert_monotonic(text, tokens)


# --- constructors, pickling, errors ----------------------------------------------------------------


def test_from_spm_bytes_and_pickling(spm_model_file, spm_tokenizer):
  with open(spm_model_file, "rb") as f:
    from_bytes = FullTokenizer.from_spm_bytes(f.read(), do_lower_case=True)
  text = "The Normans (Norman: Nourmands) gave their name to Normandy, a region in France."
  expected = spm_tokenizer.tokenize_with_offsets(text)
  assert from_bytes.tokenize_with_offsets(text) == expected
  restored = pickle.loads(pickle.dumps(spm_tokenizer))
  assert restored.tokenize_with_offsets(text) == expected
  assert restored.vocab == spm_tokenizer.vocab


def test_model_through_tensorflow_file_system(spm_model_file, spm_tokenizer):
  tokenizer = FullTokenizer(spm_model_file="file://" + spm_model_file)
  assert tokenizer.vocab == spm_tokenizer.vocab
  with pytest.raises(UserError, match="file:///no/such/model"):
    FullTokenizer(spm_model_file="file:///no/such/model")


def test_missing_or_invalid_files_raise_user_errors(tmp_path):
  missing = str(tmp_path / "missing.model")
  with pytest.raises(UserError, match=f"spm_model_file.*{re.escape(missing)}"):
    FullTokenizer(spm_model_file=missing)
  with pytest.raises(UserError, match="vocab_file.*missing.txt"):
    FullTokenizer(vocab_file=str(tmp_path / "missing.txt"))
  garbage = tmp_path / "garbage.model"
  garbage.write_bytes(b"this is not a model")
  with pytest.raises(UserError, match=re.escape(f"spm_model_file {garbage}: not a valid SentencePiece model")):
    FullTokenizer(spm_model_file=str(garbage))
  with pytest.raises(UserError, match="required"):
    FullTokenizer()


def test_missing_special_piece_is_a_user_error(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
  tokenizer = FullTokenizer(vocab_file=str(vocab))
  assert (tokenizer.cls_id, tokenizer.sep_id) == (2, 3)
  with pytest.raises(UserError, match=r"vocab.txt.*\[MASK\]"):
    _ = tokenizer.mask_id


# --- WordPiece mode --------------------------------------------------------------------------------

WORDPIECE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jump",
                   "##s", "##ed", "un", "##aff", "##able", ",", ".", "!", "'", "cafe", "naive", "龍", "a",
                   "##a", "The", "é", "οδος", "istanbul"]


@pytest.fixture
def vocab_file(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(WORDPIECE_VOCAB) + "\n", encoding="utf-8")
  return str(path)


def test_wordpiece_vocab_file_rules(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("[PAD]\t0\n  [UNK]  -1.5\n\nhello\n[PAD]\nworld\n", encoding="utf-8")
  tokenizer = FullTokenizer(vocab_file=str(path))
  assert tokenizer.vocab == {"[PAD]": 0, "[UNK]": 1, " ": 2, "hello": 3, "world": 4}
  assert tokenizer.inv_vocab[3] == "hello"
  assert tokenizer.sp_model is None and tokenizer.pad_id == 0


def test_wordpiece_lowercase(vocab_file):
  tokenizer = FullTokenizer(vocab_file=vocab_file, do_lower_case=True)
  text = "The  QUICK,brown fox jumped! Unaffable CAFÉ naïve zebra 龍fox ΟΔΟΣ İstanbul"
  tokens = tokenizer.tokenize_with_offsets(text)
  assert [(token.piece, text[token.start:token.end]) for token in tokens] == [
      ("the", "The"), ("quick", "QUICK"), (",", ","), ("brown", "brown"), ("fox", "fox"),
      ("jump", "jump"), ("##ed", "ed"), ("!", "!"), ("un", "Un"), ("##aff", "aff"), ("##able", "able"),
      ("cafe", "CAFÉ"), ("naive", "naïve"), ("[UNK]", "zebra"), ("龍", "龍"), ("fox", "fox"),
      ("οδος", "ΟΔΟΣ"), ("istanbul", "İstanbul")]  # final sigma needs the whole word lowercased
  assert tokenizer.tokenize(text) == [token.piece for token in tokens]
  assert tokenizer.convert_tokens_to_ids(["the", "[UNK]", "龍"]) == [5, 1, 21]
  with pytest.raises(KeyError):
    tokenizer.convert_tokens_to_ids(["zebra"])


def test_wordpiece_cased_keeps_case_and_accents(vocab_file):
  tokenizer = FullTokenizer(vocab_file=vocab_file, do_lower_case=False)
  assert tokenizer.tokenize("The the THE café é") == ["The", "the", "[UNK]", "[UNK]", "é"]


def test_wordpiece_cleaning_and_long_words(vocab_file):
  tokenizer = FullTokenizer(vocab_file=vocab_file, do_lower_case=True)
  text = "fo\u200bx\x00 the\ufffd a" + "a" * 199 + " " + "a" * 201 + " A\u0301!"
  tokens = tokenizer.tokenize_with_offsets(text)
  pieces = [token.piece for token in tokens]
  assert pieces == ["fox", "the", "a"] + ["##a"] * 199 + ["[UNK]", "a", "!"]
  spans = [text[token.start:token.end] for token in tokens]
  assert spans[:2] == ["fo\u200bx\x00", "the\ufffd"]  # dropped characters stay with the piece before them
  assert spans[-3:] == ["a" * 201, "A\u0301", "!"]
  assert_monotonic(text, tokens)


def _reference_basic_wordpiece(text, vocab, lower):
  """BERT's BasicTokenizer + WordpieceTokenizer written straight from docs/compatibility.md §4.4, without offsets."""
  def is_cjk(char):
    return any(low <= ord(char) <= high for low, high in wordpiece._CJK_RANGES)

  def is_punctuation(char):
    cp = ord(char)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
            or unicodedata.category(char).startswith("P"))

  cleaned = ""
  for char in text:
    if char in "\x00\ufffd" or (char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")):
      continue
    if char in " \t\n\r" or unicodedata.category(char) == "Zs":
      cleaned += " "
    else:
      cleaned += f" {char} " if is_cjk(char) else char
  words = []
  for token in cleaned.split():
    if lower:
      token = "".join(c for c in unicodedata.normalize("NFD", token.lower())
                      if unicodedata.category(c) != "Mn")
    current = ""
    for char in token:
      if is_punctuation(char):
        words += [current, char]
        current = ""
      else:
        current += char
    words.append(current)
  pieces = []
  for word in " ".join(words).split():
    if len(word) > 200:
      pieces.append("[UNK]")
      continue
    sub_words, start = [], 0
    while start < len(word):
      end = len(word)
      while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab:
        end -= 1
      if end == start:
        sub_words = ["[UNK]"]
        break
      sub_words.append(word[start:end] if start == 0 else "##" + word[start:end])
      start = end
    pieces += sub_words
  return pieces


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_wordpiece_matches_reference_on_a_raw_book(tmp_path, do_lower_case):
  with open(shared_path("corpus", "grimm-fairy-tales.txt"), encoding="utf-8") as f:
    lines = f.read().split("\n")[::8]
  counts = collections.Counter(word for line in lines for word in line.lower().split())
  characters = sorted({char for line in lines for char in line if not char.isspace()})
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [word for word, _ in counts.most_common(300)]
  vocab += characters + ["##" + char for char in characters] + ["##ed", "##ing", "##ly", "##s"]
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
  tokenizer = FullTokenizer(vocab_file=str(path), do_lower_case=do_lower_case)
  for line in lines:
    tokens = tokenizer.tokenize_with_offsets(line)
    assert [token.piece for token in tokens] == _reference_basic_wordpiece(line, tokenizer.vocab, do_lower_case)
    assert_monotonic(line, tokens)
    for token in tokens:
      if token.piece != "[UNK]":
        span = line[token.start:token.end]
        if do_lower_case:
          span = "".join(c for c in unicodedata.normalize("NFD", span.lower()) if unicodedata.category(c) != "Mn")
        assert span == token.piece.removeprefix("##"), (line, token)
