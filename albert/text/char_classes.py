"""Python's character classes, as sorted code-point arrays that TensorFlow ops can look up.

The original's preprocessing (docs/compatibility.md §4.2) depends on Python's whitespace, NFKD without
combining marks, lowercasing with its final-sigma rule, and digits. `albert.text.in_graph` reads them from
Python's own `unicodedata` and `str` here, once, so its graph agrees with the Python tokenizer rather than
with ICU's or RE2's idea of them. Each table is computed on first use and cached.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from albert.text.sentencepiece import _decompose_char

MAX_CODE_POINT = 0x110000
SPACE = 0x20


def _text_of(code_points):
  return np.ascontiguousarray(code_points, dtype=np.uint32).tobytes().decode("utf-32-le")


def _code_points_of(text):
  return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int32)


@functools.cache
def _all_code_points():
  """Every code point but the surrogates and U+0130 (the one whose lowercase is longer, so it would shift
  the positions of a lowered text)."""
  code_points = np.arange(MAX_CODE_POINT, dtype=np.int32)
  return code_points[((code_points < 0xD800) | (code_points >= 0xE000)) & (code_points != 0x130)]


def _all_characters():
  return _text_of(_all_code_points())


def _interleave(*columns):
  """One text of the rows (c0, c1, ...) for each character c, the columns being arrays or single code points."""
  code_points = _all_code_points()
  rows = np.empty((code_points.size, len(columns)), np.uint32)
  for k, column in enumerate(columns):
    rows[:, k] = code_points if column is None else column
  return _text_of(rows)


def _ranges(members):
  """Sorted bounds [start0, stop0, start1, stop1, ...] of a set of code points: x is a member when the
  number of bounds <= x is odd (`albert.text.in_graph._is_member`)."""
  members = np.unique(np.asarray(members, dtype=np.int32))
  if not members.size:
    return np.asarray([MAX_CODE_POINT, MAX_CODE_POINT + 1], np.int32)
  breaks = np.flatnonzero(np.diff(members) != 1)
  starts = np.concatenate(([members[0]], members[breaks + 1]))
  stops = np.concatenate((members[breaks], [members[-1]])) + 1
  return np.stack([starts, stops], axis=1).reshape(-1).astype(np.int32)


@functools.cache
def whitespace():
  """What Python's `str.split()` splits on (it is `str.isspace`, not RE2's `\\s`)."""
  return _ranges([ord(c) for c in _all_characters() if c.isspace()])


@functools.cache
def digits():
  """`str.isdigit`, which the digit-comma rule tests."""
  return _ranges([ord(c) for c in _all_characters() if c.isdigit()] + [0x130] * "\u0130".isdigit())


@functools.cache
def decompositions():
  """(keys, splits, values): each code point that NFKD-without-combining-marks changes, and what it becomes
  (`values[splits[i]:splits[i + 1]]`, empty for a combining mark).

  NFKD changes a character only if it has a decomposition mapping or is a precomposed Hangul syllable.
  """
  keys, splits, values = [], [0], []
  for c in range(0x80, MAX_CODE_POINT):
    char = chr(c)
    if (0xD800 <= c < 0xE000 or not (unicodedata.decomposition(char) or unicodedata.combining(char)
                                      or 0xAC00 <= c <= 0xD7A3)):
      continue
    expansion = _decompose_char(char)
    if expansion != char:
      keys.append(c)
      values.extend(map(ord, expansion))
      splits.append(len(values))
  return (np.asarray(keys, np.int32), np.asarray(splits, np.int32), np.asarray(values, np.int32))


@functools.cache
def lowercase():
  """(keys, values): `str.lower` of each code point it changes. U+0130, the one character whose lowercase
  is longer, is left out: NFKD has split it before lowering (as albert/text/sentencepiece.py notes)."""
  text = _all_characters()
  before, after = _code_points_of(text), _code_points_of(text.lower())
  changed = before != after
  return before[changed], after[changed]


@functools.cache
def sigma_context():
  """(ignorable, cased): the classes `str.lower` consults to turn a capital sigma into a final one.

  Python lowers "Σ" to "ς" when the nearest character before it that is not case-ignorable is cased, and
  the nearest such character after it (if any) is not. Both classes are read off `str.lower` itself, all
  characters at once: in "xΣ " the sigma is final exactly when x is cased and not case-ignorable; in
  "AΣxA " it stays "σ" exactly when x is case-ignorable or cased.
  """
  characters = _all_code_points()
  sigma, final = "\u03a3", ord("\u03c2")
  cased = _code_points_of(_interleave(None, ord(sigma), SPACE).lower()[1::3]) == final
  stops_uncased = _code_points_of(_interleave(ord("A"), ord(sigma), None, ord("A"), SPACE).lower()[1::5]) == final
  ignorable = characters[~cased & ~stops_uncased].tolist()
  cased = characters[cased].tolist()
  dotted_i = "\u0130"  # left out of `text`; probed on its own
  if (dotted_i + sigma).lower()[-1] == chr(final):
    cased.append(0x130)
  elif ("A" + sigma + dotted_i + "A").lower()[1] == "\u03c3":
    ignorable.append(0x130)
  return _ranges(ignorable), _ranges(cased)
