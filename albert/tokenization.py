"""Tokenization compatible with the original ALBERT release: SentencePiece or WordPiece.

SentencePiece mode reproduces the original's preprocessing and its digit-comma rule (quirk included),
because both decide the ids a released model was trained on. Beyond the original, both modes report the
span of the raw input each piece came from (`tokenize_with_offsets`), so SQuAD and attribution code can
map pieces back to text exactly instead of aligning characters after the fact.
"""

import functools
import itertools
import re
import unicodedata
from typing import NamedTuple

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_pb2

from albert.errors import UserError, require_file

SPIECE_UNDERLINE = "\u2581"
MAX_WORDPIECE_CHARS = 200
WORDPIECE_UNK = "[UNK]"

_WHITESPACE_RUN = re.compile(r"\s{2,}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


class Token(NamedTuple):
  """A piece and the span `text[start:end]` of the raw input it covers (empty for a bare "▁")."""
  piece: str
  start: int
  end: int


def _to_text(inputs):
  """Returns `inputs` as str; bytes are read as UTF-8, or as latin-1 when they are not valid UTF-8."""
  if isinstance(inputs, str):
    return inputs
  if isinstance(inputs, bytes):
    try:
      return inputs.decode("utf-8")
    except UnicodeDecodeError:
      return inputs.decode("latin-1")
  raise TypeError(f"expected str or bytes, got {type(inputs).__name__}")


def preprocess_text(inputs, remove_space=True, lower=False):
  """Normalizes text the way the original fed SentencePiece (§4.2).

  Strips and collapses whitespace, applies NFKD and drops combining characters (accents), and lowercases
  if asked. Quotes are left alone, unlike XLNet's variant.
  """
  text = _to_text(inputs)
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


def encode_pieces(sp_model, text, return_unicode=True, sample=False):
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
  """
  del return_unicode
  text = _to_text(text)
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


def encode_ids(sp_model, text, sample=False):
  """`encode_pieces` followed by piece-to-id (unknown pieces map to the unk id)."""
  return [sp_model.piece_to_id(piece) for piece in encode_pieces(sp_model, text, sample=sample)]


class _RawIndex:
  """For each character of a normalized text, the index of the raw character it came from.

  Raw characters that produced nothing (collapsed whitespace, dropped accents) have no entry; a raw
  character that expanded into several (a ligature) appears once per character it yielded.
  """

  def __init__(self, raw, index):
    self.raw = raw
    self.index = index

  def raw_spans(self, begins, ends):
    """Raw [start, end) spans of normalized [begin, end) spans, with trailing dropped accents attached.

    An expansion split across pieces belongs to the piece holding its first character, so spans never
    overlap. Vectorized: SQuAD conversion maps hundreds of pieces per context.
    """
    if isinstance(self.index, range):
      return begins, ends
    length = len(self.index)
    index = np.append(np.asarray(self.index, dtype=np.int64), len(self.raw))
    begins = np.asarray(begins, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    starts = index[begins]
    starts += (begins > 0) & (begins < length) & (index[np.maximum(begins - 1, 0)] == starts)
    stops = np.where(ends > begins, np.maximum(index[np.maximum(ends - 1, 0)] + 1, starts), starts)
    for k in np.flatnonzero((stops > starts) & (index[ends] > stops)):
      stops[k] = self._attach_dropped(int(stops[k]), int(index[ends[k]]))
    return starts.tolist(), stops.tolist()

  def _attach_dropped(self, stop, next_kept):
    """Extends a non-empty span over the dropped raw characters (accents) after it, up to whitespace."""
    while stop < next_kept and not self.raw[stop].isspace():
      stop += 1
    return stop


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
  """`preprocess_text(raw, lower=lower)` and a `_RawIndex` pointing from it back into `raw`."""
  text, index = _decompose(*_collapse_whitespace(raw))
  if lower:
    # NFKD has already split U+0130, the only character whose lowercase is longer, so this keeps the length.
    text = text.lower()
  return text, _RawIndex(raw, index)


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


def _is_cjk(code_point):
  return code_point >= 0x3400 and any(low <= code_point <= high for low, high in _CJK_RANGES)


def _is_punctuation(char):
  code_point = ord(char)
  if 33 <= code_point <= 47 or 58 <= code_point <= 64 or 91 <= code_point <= 96 or 123 <= code_point <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _is_dropped(char):
  """BasicTokenizer's cleaning: NUL, U+FFFD and control characters other than \\t, \\n, \\r vanish."""
  if " " <= char <= "~" or char in "\t\n\r":
    return False
  return char in "\x00\ufffd" or unicodedata.category(char) in ("Cc", "Cf")


def _strip_accents(text):
  return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _whitespace_tokens(text):
  """BasicTokenizer's cleaning, CJK isolation and whitespace split, as (token, raw indices) pairs."""
  tokens, chars, index = [], [], []
  for position, char in enumerate(text):
    if _is_dropped(char):
      continue
    isolated = _is_cjk(ord(char))
    if char.isspace() or isolated:
      if chars:
        tokens.append(("".join(chars), index))
        chars, index = [], []
      if isolated:
        tokens.append((char, [position]))
      continue
    chars.append(char)
    index.append(position)
  if chars:
    tokens.append(("".join(chars), index))
  return tokens


def _lower_strip_accents(token, index):
  """Lowercases the whole token (context-dependent, e.g. final sigma), then strips accents; each raw
  character keeps as many output characters as it yields on its own, which adds up to the same length."""
  if token.isascii():
    return token.lower(), index
  normalized = _strip_accents(token.lower())
  new_index = []
  for char, raw_index in zip(token, index):
    new_index.extend([raw_index] * len(_strip_accents(char.lower())))
  return normalized, new_index


def _split_punctuation(token):
  """Splits a token into runs of non-punctuation and single punctuation characters, as [begin, end)."""
  words, begin = [], 0
  for position, char in enumerate(token):
    if _is_punctuation(char):
      if begin < position:
        words.append((begin, position))
      words.append((position, position + 1))
      begin = position + 1
  if begin < len(token):
    words.append((begin, len(token)))
  return words


def _wordpiece(word, vocab):
  """Greedy longest-match-first sub-words of `word` as (piece, begin, end); [UNK] for the whole word if
  it is too long or any part cannot be matched."""
  if len(word) > MAX_WORDPIECE_CHARS:
    return [(WORDPIECE_UNK, 0, len(word))]
  pieces, begin = [], 0
  while begin < len(word):
    for end in range(len(word), begin, -1):
      candidate = word[begin:end] if begin == 0 else "##" + word[begin:end]
      if candidate in vocab:
        pieces.append((candidate, begin, end))
        begin = end
        break
    else:
      return [(WORDPIECE_UNK, 0, len(word))]
  return pieces


def _read_file_bytes(path, flag_name):
  """Reads a local file, or a remote one (gs://...) through TensorFlow's file system, as bytes."""
  if "://" in path:
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
      raise UserError(f"--{flag_name}: file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  require_file(path, flag_name)
  with open(path, "rb") as f:
    return f.read()


def load_vocab(vocab_file):
  """Reads a WordPiece vocab (§4.1): first field of each stripped line, " " for a blank line; a token
  keeps the id of its first occurrence and ids count distinct tokens."""
  try:
    text = _read_file_bytes(vocab_file, "vocab_file").decode("utf-8")
  except UnicodeDecodeError:
    raise UserError(f"--vocab_file: not UTF-8 text: {vocab_file}") from None
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  vocab = {}
  for line in lines:
    fields = line.strip().split()
    vocab.setdefault(fields[0] if fields else " ", len(vocab))
  if not vocab:
    raise UserError(f"--vocab_file: empty vocabulary: {vocab_file}")
  return vocab


class FullTokenizer:
  """The original's tokenizer: SentencePiece when a model is given, else WordPiece from a vocab file.

  In SentencePiece mode `tokenize` expects preprocessed text (like the original) while
  `tokenize_with_offsets` takes raw text and preprocesses it per `do_lower_case` itself.
  """

  def __init__(self, vocab_file=None, do_lower_case=True, spm_model_file=None):
    self.do_lower_case = do_lower_case
    if spm_model_file:
      model = _read_file_bytes(spm_model_file, "spm_model_file")
      self._init_sentencepiece(model, f"--spm_model_file {spm_model_file}")
    elif vocab_file:
      self._init_wordpiece(load_vocab(vocab_file), f"--vocab_file {vocab_file}")
    else:
      raise UserError("--spm_model_file or --vocab_file is required")

  @classmethod
  def from_spm_bytes(cls, model_proto, do_lower_case, source="model bytes"):
    """A SentencePiece tokenizer from a serialized model (as shipped in a TF-Hub module's assets)."""
    tokenizer = cls.__new__(cls)
    tokenizer.do_lower_case = do_lower_case
    tokenizer._init_sentencepiece(model_proto, source)
    return tokenizer

  def _init_sentencepiece(self, model_proto, source):
    self._source = source
    self.sp_model = spm.SentencePieceProcessor()
    try:
      self.sp_model.LoadFromSerializedProto(model_proto)
    except RuntimeError:
      raise UserError(f"{source}: not a valid SentencePiece model") from None
    self.vocab = {self.sp_model.id_to_piece(i): i for i in range(self.sp_model.get_piece_size())}
    self.inv_vocab = {i: piece for piece, i in self.vocab.items()}
    self._unk_id = self.sp_model.unk_id()

  def _init_wordpiece(self, vocab, source):
    self._source = source
    self.sp_model = None
    self.vocab = vocab
    self.inv_vocab = {i: token for token, i in vocab.items()}

  @property
  def pad_id(self):
    return 0

  @property
  def cls_id(self):
    return self._special_id("[CLS]")

  @property
  def sep_id(self):
    return self._special_id("[SEP]")

  @property
  def mask_id(self):
    return self._special_id("[MASK]")

  def _special_id(self, piece):
    if piece not in self.vocab:
      raise UserError(f"{self._source}: the vocabulary has no {piece} piece")
    return self.vocab[piece]

  def tokenize(self, text):
    """Pieces of `text`: SentencePiece pieces of already preprocessed text, or BERT WordPiece tokens."""
    if self.sp_model is not None:
      return encode_pieces(self.sp_model, text)
    return [token.piece for token in self._wordpiece_tokens(_to_text(text))]

  def tokenize_with_offsets(self, text):
    """Pieces of raw `text` with the raw span each came from.

    In SentencePiece mode the pieces are exactly `tokenize(preprocess_text(text, lower=do_lower_case))`.
    A span excludes the word-boundary space; a bare "▁" gets an empty span at the next character; the
    pieces of a digit-comma re-split share their parent's span, the "," getting the comma. Spans never
    overlap and never go backwards.
    """
    text = _to_text(text)
    if self.sp_model is None:
      return self._wordpiece_tokens(text)
    normalized, raw_index = _preprocess_indexed(text, self.do_lower_case)
    pieces, begins, ends = _pieces_with_spans(self.sp_model, normalized)
    starts, stops = raw_index.raw_spans(begins, ends)
    return list(map(Token._make, zip(pieces, starts, stops)))

  def _wordpiece_tokens(self, text):
    """BasicTokenizer then WordpieceTokenizer (§4.4), tracking raw spans through every step."""
    index, words = [], []
    for token, token_index in _whitespace_tokens(text):
      if self.do_lower_case:
        token, token_index = _lower_strip_accents(token, token_index)
      for begin, end in _split_punctuation(token):
        words.append((token[begin:end], len(index) + begin))
      index.extend(token_index)
    pieces, begins, ends = [], [], []
    for word, offset in words:
      for piece, begin, end in _wordpiece(word, self.vocab):
        pieces.append(piece)
        begins.append(offset + begin)
        ends.append(offset + end)
    starts, stops = _RawIndex(text, index).raw_spans(begins, ends)
    return list(map(Token._make, zip(pieces, starts, stops)))

  def convert_tokens_to_ids(self, tokens):
    """Ids of `tokens`; SentencePiece maps unknown pieces to the unk id, WordPiece raises KeyError."""
    if self.sp_model is not None:
      return [self.vocab.get(token, self._unk_id) for token in tokens]
    return [self.vocab[token] for token in tokens]

  def convert_ids_to_tokens(self, ids):
    return [self.inv_vocab[i] for i in ids]
