"""Pieces that know where they came from: the raw-text span of every token, through normalization.

Both tokenizer modes rewrite the text before splitting it (whitespace collapsed, accents dropped,
lowercasing). They carry, for every character of the rewritten text, the index of the raw character it
came from, so SQuAD answers, fill-mask replacements and attributions map back to the user's exact text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
  from collections.abc import Sequence


class Token(NamedTuple):
  """A piece and the span `text[start:end]` of the raw input it covers (empty for a bare "▁").

  Args:
    piece: the vocabulary piece, e.g. "▁hello" or "##ing".
    start: offset of the span's first character in the raw text (a str index, not a byte offset).
    end: offset just past the span's last character; equal to `start` for an empty span.
  """
  piece: str
  start: int
  end: int


def to_text(inputs: str | bytes) -> str:
  """Returns `inputs` as str; bytes are read as UTF-8, or as latin-1 when they are not valid UTF-8.

  Args:
    inputs: str (returned as is) or bytes; anything else raises TypeError.
  Returns:
    The text.
  """
  if isinstance(inputs, str):
    return inputs
  if isinstance(inputs, bytes):
    try:
      return inputs.decode("utf-8")
    except UnicodeDecodeError:
      return inputs.decode("latin-1")
  raise TypeError(f"expected str or bytes, got {type(inputs).__name__}")


class RawIndex:
  """For each character of a normalized text, the index of the raw character it came from.

  Raw characters that produced nothing (collapsed whitespace, dropped accents) have no entry; a raw
  character that expanded into several (a ligature) appears once per character it yielded.

  Args:
    raw: the raw text.
    index: for each character of the normalized text, its raw character's offset, non-decreasing; a
      `range` means normalization changed nothing, which `raw_spans` short-cuts.
  """

  def __init__(self, raw: str, index: Sequence[int]) -> None:
    self.raw = raw
    self.index = index

  def raw_spans(self, begins: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    """Raw [start, end) spans of normalized [begin, end) spans, with trailing dropped accents attached.

    An expansion split across pieces belongs to the piece holding its first character, so spans never
    overlap. Vectorized: SQuAD conversion maps hundreds of pieces per context.

    Args:
      begins: span starts in the normalized text, one per piece.
      ends: span ends (exclusive) in the normalized text, one per piece.
    Returns:
      (starts, stops) in the raw text, one per piece; with a `range` index, `begins` and `ends` as given.
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
