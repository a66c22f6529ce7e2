"""SentencePiece mode as the original fed it: preprocessing, the digit-comma rule, and raw spans.

The preprocessing and the digit-comma re-split decide the ids a released model was trained on, so both
follow the original exactly (quirk included, docs/compatibility.md §4.2-4.3 and quirk 1). Beyond the
original, `pieces_with_raw_spans` reports the raw span each piece came from.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np
from sentencepiece import sentencepiece_pb2

from albert.text.spans import RawIndex, to_text

if TYPE_CHECKING:
  import sentencepiece as spm

SPIECE_UNDERLINE = "\u2581"

_WHITESPACE_RUN = re.compile(r"\s{2,}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def preprocess_text(inputs: str | bytes, remove_space: bool = True, lower: bool = False) -> str:
  """Normalizes text the way the original fed SentencePiece (§4.2).

  Strips and collapses whitespace, applies NFKD and drops combining characters (accents), and lowercases
  if asked. Quotes are left alone, unlike XLNet's variant.

  Args:
    inputs: the raw text; bytes are decoded as UTF-8, or latin-1 when not valid UTF-8.
    remove_space: strip the ends and turn every whitespace run into one space.
    lower: lowercase, as `do_lower_case` asks.
  Returns:
    The normalized text, ready for `encode_pieces`.
  """
  text = to_text(inputs)
  if remove_space:
    text = " ".join(text.split())
  if not text.isascii():
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
  if lower:
    text = text.lower()
  return text


def _is_digit_comma_piece(piece):
  return len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()


def encode_pieces(sp_model: spm.SentencePieceProcessor, text: str | bytes, return_unicode: bool = True,
                  sample: bool = False) -> list[str]:
  """Encodes `text` into SentencePiece pieces with the original's digit-comma rule (§4.3).

  A piece such as "▁1990," or "0," (longer than one character, ending in "," after a digit) is replaced
  by the pieces of its text without the comma and without "▁", followed by a "," piece. The original
  meant to drop the dummy "▁" that re-encoding adds when the piece did not start a word, but its test
  compared str with bytes and never fired under Python 3 (quirk 1, §14). Released models' inputs were made
  that way, so the "▁" is kept here too: a word-internal "90," becomes e.g. ["▁", "9", "0", ","] or
  ["▁90", ","], never ["9", "0", ","].

  The text is not preprocessed here; callers run `preprocess_text` first, as in the original.
  `return_unicode` is accepted for call compatibility: under Python 3 the pieces are always str.
  `sample` draws a segmentation (nbest 64, alpha 0.1) instead of the best one.

  Args:
    sp_model: a loaded SentencePiece model.
    text: preprocessed text (str, or bytes decoded as in `preprocess_text`).
    return_unicode: ignored.
    sample: draw a random segmentation (subword regularization) instead of the most likely one.
  Returns:
    The piece strings, "▁" marking the start of a word.
  """
  del return_unicode
  text = to_text(text)
  if sample:
    pieces = sp_model.encode(text, out_type=str, enable_sampling=True, nbest_size=64, alpha=0.1)
  else:
    pieces = sp_model.encode(text, out_type=str)
  result = []
  for piece in pieces:
    if _is_digit_comma_piece(piece):
      result.extend(sp_model.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str))
      result.append(",")
    else:
      result.append(piece)
  return result


def encode_ids(sp_model: spm.SentencePieceProcessor, text: str | bytes, sample: bool = False) -> list[int]:
  """`encode_pieces` followed by piece-to-id (unknown pieces map to the unk id).

  Args:
    sp_model: a loaded SentencePiece model.
    text: preprocessed text.
    sample: draw a random segmentation instead of the most likely one.
  Returns:
    The pieces' vocabulary ids.
  """
  return [sp_model.piece_to_id(piece) for piece in encode_pieces(sp_model, text, sample=sample)]


@functools.cache
def _decompose_char(char):
  """NFKD of one character without combining marks; per character this equals the whole-text result
  because canonical reordering only moves combining marks, which are all dropped."""
  return "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))


def _collapse_whitespace(text):
  """`" ".join(text.split())` with the raw index of each resulting character."""
  collapsed = " ".join(text.split())
  if len(collapsed) == len(text):
    return collapsed, range(len(text))
  begin = len(text) - len(text.lstrip())
  end = len(text.rstrip())
  index = []
  position = begin
  for run in _WHITESPACE_RUN.finditer(text, begin, end):
    index.extend(range(position, run.start() + 1))
    position = run.end()
  index.extend(range(position, end))
  return collapsed, index


def _decompose(text, index):
  """NFKD without combining marks, carrying each character's raw index to everything it yields."""
  if text.isascii():
    return text, index
  parts, new_index, done = [], [], 0
  for match in _NON_ASCII.finditer(text):
    char = match.group()
    expansion = _decompose_char(char)
    if expansion == char:
      continue
    position = match.start()
    parts.append(text[done:position])
    new_index.extend(index[done:position])
    parts.append(expansion)
    new_index.extend([index[position]] * len(expansion))
    done = position + 1
  if not done:
    return text, index
  parts.append(text[done:])
  new_index.extend(index[done:])
  return "".join(parts), new_index


def _preprocess_indexed(raw, lower):
  """`preprocess_text(raw, lower=lower)` and a `RawIndex` pointing from it back into `raw`."""
  text, index = _decompose(*_collapse_whitespace(raw))
  if lower:
    # NFKD has already split U+0130, the only character whose lowercase is longer, so this keeps the length.
    text = text.lower()
  return text, RawIndex(raw, index)


def _content_spans(sp_model, text):
  """SentencePiece pieces of `text` and, per piece, the [begin, end) span of `text` holding its content.

  A span leaves out the word-boundary space; a bare "▁" gets an empty span at the next character. When
  the pieces spell out the text (SentencePiece changed nothing but the dummy "▁" prefix), their lengths
  give the spans; otherwise SentencePiece's own alignment does.
  """
  pieces = sp_model.encode(text, out_type=str)
  spelled = "".join(pieces).replace(SPIECE_UNDERLINE, " ")
  if spelled == text or spelled == " " + text:
    ends = list(itertools.accumulate(map(len, pieces), initial=len(text) - len(spelled)))
    begins = [end + (piece[0] == SPIECE_UNDERLINE) for end, piece in zip(ends, pieces)]
    return pieces, begins, ends[1:]
  return _content_spans_from_proto(sp_model, text)


def _content_spans_from_proto(sp_model, text):
  """`_content_spans` from the begin/end offsets SentencePiece reports for each piece's surface."""
  proto = sentencepiece_pb2.SentencePieceText.FromString(
      sp_model.encode(text, out_type="serialized_proto"))
  char_at = range(len(text) + 1) if text.isascii() else _char_offsets_of_bytes(text)
  pieces, begins, ends = [], [], []
  for piece in proto.pieces:
    begin, end = _narrow_to_content(piece.piece, text, char_at[piece.begin], char_at[piece.end])
    pieces.append(piece.piece)
    begins.append(begin)
    ends.append(end)
  return pieces, begins, ends


def _char_offsets_of_bytes(text):
  """A list mapping each UTF-8 byte offset of `text` (at a character boundary) to a character offset."""
  data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
  return np.concatenate(([0], np.cumsum((data & 0xC0) != 0x80))).tolist()


def _narrow_to_content(piece, text, begin, end):
  """Narrows a piece's surface `text[begin:end]` to its content, without the word-boundary space."""
  content = piece[1:] if piece.startswith(SPIECE_UNDERLINE) else piece
  if not content:
    return end, end
  if text.endswith(content, begin, end):
    return end - len(content), end
  while begin < end and text[begin].isspace():
    begin += 1
  return begin, end


def _pieces_with_spans(sp_model, text):
  """`encode_pieces(sp_model, text)` with content spans; the pieces of a digit-comma re-split get spans
  inside their parent's, the "," the comma itself."""
  pieces, begins, ends = _content_spans(sp_model, text)
  if not any(map(_is_digit_comma_piece, pieces)):
    return pieces, begins, ends
  spans = []
  for piece, begin, end in zip(pieces, begins, ends):
    if not _is_digit_comma_piece(piece):
      spans.append((piece, begin, end))
      continue
    comma = max(begin, end - 1)
    sub_pieces, sub_begins, sub_ends = _content_spans(sp_model, piece[:-1].replace(SPIECE_UNDERLINE, ""))
    for sub_piece, sub_begin, sub_end in zip(sub_pieces, sub_begins, sub_ends):
      spans.append((sub_piece, min(begin + sub_begin, comma), min(begin + sub_end, comma)))
    spans.append((",", comma, end))
  pieces, begins, ends = map(list, zip(*spans))
  return pieces, begins, ends




def pieces_with_raw_spans(sp_model: spm.SentencePieceProcessor, raw: str | bytes,
                          lower: bool) -> tuple[list[str], list[int], list[int]]:
  """(pieces, starts, stops): `encode_pieces` of `preprocess_text(raw, lower=lower)` with each piece's
  [start, stop) span in `raw`.

  Args:
    sp_model: a loaded SentencePiece model.
    raw: the user's text, not preprocessed (bytes are decoded as in `preprocess_text`).
    lower: lowercase during preprocessing, as `do_lower_case` asks.
  Returns:
    Three lists of equal length: the pieces, and the character offsets into the decoded `raw` where
    each piece's span starts and stops (see `FullTokenizer.tokenize_with_offsets` for the rules).
  """
  normalized, raw_index = _preprocess_indexed(to_text(raw), lower)
  pieces, begins, ends = _pieces_with_spans(sp_model, normalized)
  starts, stops = raw_index.raw_spans(begins, ends)
  return pieces, starts, stops
