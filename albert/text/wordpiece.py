"""WordPiece mode (the BERT-compatible path, docs/compatibility.md §4.4): BasicTokenizer cleaning,
CJK isolation, lowercasing without accents, punctuation splits, then greedy longest-match sub-words,
with each piece's raw span tracked through every step.
"""

import unicodedata

from albert.core.errors import UserError
from albert.text.spans import RawIndex

MAX_WORDPIECE_CHARS = 200
WORDPIECE_UNK = "[UNK]"
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


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


def wordpiece_pieces(text: str, vocab: dict[str, int],
                     do_lower_case: bool) -> tuple[list[str], list[int], list[int]]:
  """(pieces, starts, stops) of raw `text`: BasicTokenizer then WordpieceTokenizer.

  Args:
    text: the raw text.
    vocab: {token: id}; continuation pieces carry the "##" prefix.
    do_lower_case: lowercase and strip accents before splitting.
  Returns:
    Three lists of equal length: the pieces ("[UNK]" for a word that cannot be split) and the
    [start, stop) character span in `text` of each.
  """
  index, words = [], []
  for token, token_index in _whitespace_tokens(text):
    if do_lower_case:
      token, token_index = _lower_strip_accents(token, token_index)
    for begin, end in _split_punctuation(token):
      words.append((token[begin:end], len(index) + begin))
    index.extend(token_index)
  pieces, begins, ends = [], [], []
  for word, offset in words:
    for piece, begin, end in _wordpiece(word, vocab):
      pieces.append(piece)
      begins.append(offset + begin)
      ends.append(offset + end)
  starts, stops = RawIndex(text, index).raw_spans(begins, ends)
  return pieces, starts, stops


def load_vocab(text: str, source: str) -> dict[str, int]:
  """A WordPiece vocab from the text of a vocab file (docs/compatibility.md §4.1): first field of each
  stripped line, " " for a blank line; a token keeps the id of its first occurrence and ids count
  distinct tokens.

  Args:
    text: the file's decoded contents.
    source: how the UserError for an empty vocabulary names the file.
  Returns:
    {token: id}, ids 0..len-1.
  """
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  vocab = {}
  for line in lines:
    fields = line.strip().split()
    vocab.setdefault(fields[0] if fields else " ", len(vocab))
  if not vocab:
    raise UserError(f"{source}: empty vocabulary")
  return vocab
