"""`InGraphTokenizer`: FullTokenizer's SentencePiece mode as TensorFlow ops, so a SavedModel can take raw text.

It gives the same ids and the same raw character spans as `FullTokenizer.tokenize_with_offsets`: the
original's preprocessing (docs/compatibility.md §4.2), SentencePiece through tensorflow-text's ops (see
`InGraphTokenizer._content_spans` for which one segments), the digit-comma re-split with its quirk (§4.3,
quirk 1), and the raw-span rules of `albert.text.spans.RawIndex`.
The character classes that preprocessing depends on come from `albert.text.char_classes` (Python's own,
read when the tokenizer is built) and are stored as sorted constant arrays. Everything works on the flat
values of ragged tensors.

tensorflow-text is an optional dependency (the `[serving]` extra); `available()` says whether it is there.
"""

from __future__ import annotations

import sentencepiece as spm
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from albert.core.errors import UserError
from albert.text import char_classes
from albert.text.sentencepiece import SPIECE_UNDERLINE
from albert.text.tokenizer import SpecialIds

_CAPITAL_SIGMA, _FINAL_SIGMA = 0x3A3, 0x3C2


def available() -> bool:
  """Whether tensorflow-text (the `[serving]` extra) can be imported, which the text-in signatures need.

  Importing it registers its ops, without which a SavedModel using them cannot even be loaded: call this
  before `tf.saved_model.load` of a model that may have a text-in signature.
  """
  try:
    import tensorflow_text  # noqa: F401
  except ImportError:
    return False
  return True


# --- graph helpers on flat values ------------------------------------------------------------------------


def _is_member(bounds, code_points):
  """bool [n]: whether each code point is in the set `_ranges` made."""
  return tf.math.floormod(tf.searchsorted(bounds, code_points, side="right"), 2) == 1


def _find(keys, code_points):
  """(found bool [n], slot int32 [n]): each code point's slot in the sorted `keys`, valid where found."""
  slot = tf.minimum(tf.searchsorted(keys, code_points, side="left"), tf.size(keys) - 1)
  return tf.gather(keys, slot) == code_points, slot


def _next_true(flags, limits, strict=False):
  """int32 [n]: the flat position of the first true flag at or after (`strict`: after) each position, or
  `limits` (the end of that position's row) when the rest of the row has none."""
  positions = tf.concat([tf.cast(tf.where(flags)[:, 0], tf.int32), [tf.size(flags)]], 0)
  rank = tf.cumsum(tf.cast(flags, tf.int32), exclusive=not strict)
  return tf.minimum(tf.gather(positions, rank), limits)


def _prev_true(flags, starts):
  """int32 [n]: the flat position of the last true flag before each position, or `starts - 1` (one before
  that position's row) when the row has none before it."""
  positions = tf.concat([[-1], tf.cast(tf.where(flags)[:, 0], tf.int32)], 0)
  rank = tf.cumsum(tf.cast(flags, tf.int32), exclusive=True)
  return tf.maximum(tf.gather(positions, rank), starts - 1)


def _expand(lengths):
  """(owner, k): for each slot of a concatenation where element i takes `lengths[i]` slots, the element it
  belongs to and its position among that element's slots."""
  owner = tf.repeat(tf.range(tf.size(lengths)), lengths)
  first = tf.cumsum(lengths, exclusive=True)
  return owner, tf.range(tf.size(owner)) - tf.gather(first, owner)


def _row_bounds(ragged):
  """(starts, limits) int32 [n]: the flat start and end of the row of each value of `ragged`."""
  rows = ragged.value_rowids()
  return (tf.cast(tf.gather(ragged.row_starts(), rows), tf.int32),
          tf.cast(tf.gather(ragged.row_limits(), rows), tf.int32))


def _column(values):
  """A ragged [n, 1] of a vector, to append one item to each row of a ragged tensor."""
  return tf.RaggedTensor.from_row_lengths(values, tf.ones([tf.size(values)], tf.int64), validate=False)


def _row_choice(use_first, first, second):
  """A function that takes two ragged [N, (k)] tensors shaped like `first` and `second` and returns, for each
  row i, its row from the first where `use_first[i]`, else from the second."""
  lengths = tf.where(use_first, first.row_lengths(), second.row_lengths())
  owner, k = _expand(tf.cast(lengths, tf.int32))
  first_starts = tf.cast(tf.gather(first.row_starts(), owner), tf.int32)
  second_starts = tf.cast(tf.gather(second.row_starts(), owner), tf.int32) + tf.size(first.values)
  index = tf.where(tf.gather(use_first, owner), first_starts, second_starts) + k

  def choose(a, b):
    values = tf.gather(tf.concat([a.values, b.values], 0), index)
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)
  return choose


def _utf8_widths(code_points):
  return 1 + tf.cast(code_points >= 0x80, tf.int32) + tf.cast(code_points >= 0x800, tf.int32) + tf.cast(
      code_points >= 0x10000, tf.int32)


def _decode(texts):
  """Code points [B, (chars)] of each text: UTF-8, or latin-1 when not valid UTF-8, like `spans.to_text`."""
  kept = tf.strings.unicode_decode(texts, "UTF-8", errors="ignore")
  valid = tf.strings.length(tf.strings.unicode_encode(kept, "UTF-8")) == tf.strings.length(texts)
  as_latin1 = tf.strings.unicode_transcode(texts, "ISO-8859-1", "UTF-8")
  return tf.strings.unicode_decode(tf.where(valid, texts, as_latin1), "UTF-8")


def _named_model_resource(model_proto):
  """tensorflow-text's SentencePiece model resource under a name of its own.

  Its own resource is private to the eager kernel that made it, and TensorFlow drops that kernel (and the
  model) whenever the eager caches are cleared, e.g. by `tf.random.set_seed`: later calls then fail with
  "Resource ... SentencepieceOp ... does not exist". A named resource lives in the resource manager instead.
  (Reaches into tensorflow-text's `_SentencepieceModelResource`; the op itself is public and takes the name.)
  """
  import uuid

  from tensorflow_text.python.ops import sentencepiece_tokenizer

  class NamedModelResource(sentencepiece_tokenizer._SentencepieceModelResource):
    def __init__(self, model, shared_name):
      self._shared_name = shared_name
      super().__init__(model, None)

    def _create_resource(self):
      return sentencepiece_tokenizer.gen_sentencepiece_tokenizer.sentencepiece_op(
          model=self._model, shared_name=self._shared_name)

  return NamedModelResource(model_proto, f"albert_sentencepiece_{uuid.uuid4().hex}")


class InGraphTokenizer(tf.Module, SpecialIds):
  """FullTokenizer's SentencePiece mode in TensorFlow ops, savable in a SavedModel.

  Args:
    model_proto: the bytes of a SentencePiece `.model` file.
    do_lower_case: lowercase during preprocessing, as `FullTokenizer(do_lower_case=...)`.
    source: how error messages name the model (e.g. "--spm_model_file 30k-clean.model").

  Attributes:
    vocab_size, pad_id, unk_id: Python ints; cls_id, sep_id and mask_id raise a UserError when the
      vocabulary lacks the piece, like FullTokenizer's.
    do_lower_case: the casing setting given.
  """

  def __init__(self, model_proto: bytes, do_lower_case: bool, source: str = "model bytes", name=None) -> None:
    super().__init__(name=name)
    import tensorflow_text
    processor = spm.SentencePieceProcessor()
    try:
      processor.LoadFromSerializedProto(model_proto)
    except RuntimeError:
      raise UserError(f"{source}: not a valid SentencePiece model") from None
    self._source = source
    self.do_lower_case = bool(do_lower_case)
    self.vocab_size = processor.get_piece_size()
    self.pad_id = 0
    self.unk_id = processor.unk_id()
    vocab = {processor.id_to_piece(i): i for i in range(self.vocab_size)}
    self._special = {piece: vocab.get(piece) for piece in ("[CLS]", "[SEP]", "[MASK]")}
    self._sp = tensorflow_text.SentencepieceTokenizer(model=model_proto, out_type=tf.string)
    self._sp._model_resource = _named_model_resource(model_proto)
    # The fast op reads every model as a unigram one, so only those use it (see `_content_spans`).
    unigram = sentencepiece_model_pb2.ModelProto.FromString(model_proto).trainer_spec.model_type == \
        sentencepiece_model_pb2.TrainerSpec.UNIGRAM
    self._fast = tensorflow_text.FastSentencepieceTokenizer(model_proto) if unigram else None
    self._whitespace = char_classes.whitespace()
    self._digits = char_classes.digits()
    self._decompositions = char_classes.decompositions()
    if self.do_lower_case:
      self._lowercase = char_classes.lowercase()
      self._sigma_context = char_classes.sigma_context()

  def _special_id(self, piece):
    if self._special[piece] is None:
      raise UserError(f"{self._source}: the vocabulary has no {piece} piece")
    return self._special[piece]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def tokenize(self, texts):
    """Ids of raw texts, as `FullTokenizer.convert_tokens_to_ids(tokenize(preprocess_text(text)))`.

    Args:
      texts: string [B], raw text (UTF-8, or latin-1 when not valid UTF-8).
    Returns:
      int32 RaggedTensor [B, (pieces)].
    """
    normalized, _ = self._normalize(texts)
    pieces, _, _ = self._pieces(normalized, with_spans=False)
    return self._sp.string_to_id(pieces)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def tokenize_with_offsets(self, texts):
    """Ids of raw texts with each piece's raw character span, as `FullTokenizer.tokenize_with_offsets`.

    Args:
      texts: string [B], raw text (UTF-8, or latin-1 when not valid UTF-8).
    Returns:
      (ids, starts, ends), int32 RaggedTensors [B, (pieces)]; starts and ends count characters (code
      points) of the raw text, `ends` exclusive; a bare "▁" has an empty span.
    """
    normalized, raw_index = self._normalize(texts)
    pieces, begins, ends = self._pieces(normalized, with_spans=True)
    starts, stops = self._raw_spans(raw_index, begins, ends)
    return self._sp.string_to_id(pieces), starts, stops

  # --- preprocessing: `sentencepiece.preprocess_text`, keeping each character's raw index ---------------

  def _normalize(self, texts):
    """(normalized texts string [B], raw_index int32 ragged [B, (normalized chars)] with raw `chars`)."""
    chars = _decode(texts)
    code_points = chars.values
    starts, limits = _row_bounds(chars)
    positions = tf.range(tf.size(code_points))
    # " ".join(text.split()): a whitespace run between words becomes one space at the run's first character.
    space = _is_member(self._whitespace, code_points)
    word = ~space
    after_space = tf.concat([[False], space], 0)[:-1] & (positions > starts)
    between_words = (_prev_true(word, starts) >= starts) & (_next_true(word, limits, strict=True) < limits)
    kept_space = space & ~after_space & between_words
    # NFKD without combining marks, character by character (see `sentencepiece._decompose_char`).
    keys, splits, values = self._decompositions
    found, slot = _find(keys, code_points)
    first = tf.gather(splits, slot)
    lengths = tf.where(space, tf.cast(kept_space, tf.int32), tf.where(found, tf.gather(splits, slot + 1) - first, 1))
    owner, k = _expand(lengths)
    expanded = tf.gather(values, tf.minimum(tf.gather(first, owner) + k, tf.size(values) - 1))
    normalized = tf.where(tf.gather(space, owner), char_classes.SPACE,
                          tf.where(tf.gather(found, owner), expanded, tf.gather(code_points, owner)))
    row_lengths = tf.math.unsorted_segment_sum(tf.cast(lengths, tf.int64), chars.value_rowids(), tf.size(texts))
    if self.do_lower_case:
      normalized = self._lower(tf.RaggedTensor.from_row_lengths(normalized, row_lengths, validate=False))
    raw_index = tf.gather(positions - starts, owner)
    normalized = tf.RaggedTensor.from_row_lengths(normalized, row_lengths, validate=False)
    raw_index = tf.RaggedTensor.from_row_lengths(raw_index, row_lengths, validate=False)
    return tf.strings.unicode_encode(normalized, "UTF-8"), (raw_index, chars, space)

  def _lower(self, rows):
    """`str.lower` of the normalized texts' code points (ragged [B, (chars)]), with its final-sigma rule."""
    code_points = rows.values
    keys, values = self._lowercase
    found, slot = _find(keys, code_points)
    lowered = tf.where(found, tf.gather(values, slot), code_points)
    ignorable, cased = self._sigma_context
    starts, limits = _row_bounds(rows)
    stop = ~_is_member(ignorable, code_points)
    is_cased = _is_member(cased, code_points)
    last = tf.size(code_points) - 1
    before = _prev_true(stop, starts)
    cased_before = (before >= starts) & tf.gather(is_cased, tf.maximum(before, 0))
    after = _next_true(stop, limits, strict=True)
    cased_after = (after < limits) & tf.gather(is_cased, tf.minimum(after, last))
    final = (code_points == _CAPITAL_SIGMA) & cased_before & ~cased_after
    return tf.where(final, _FINAL_SIGMA, lowered)

  # --- SentencePiece and the digit-comma rule: `sentencepiece._pieces_with_spans` ------------------------

  def _content_spans(self, texts, with_spans):
    """SentencePiece pieces of `texts` [N] and, per piece, the [begin, end) character span of its content
    in the text, without the word-boundary space (`sentencepiece._content_spans`).

    Two tensorflow-text ops segment. The fast one picks the same pieces as the Python sentencepiece package
    where two segmentations score the same up to rounding (e.g. "0" "00" and "00" "0"); the SentencePiece
    op also reports where each piece's surface lies in the text but may break such ties the other way.
    Like the Python code, a text that its pieces spell out gets the fast op's pieces with spans from their
    lengths; any other text gets the SentencePiece op's pieces and surfaces. The fast op handles unigram
    models only (ALBERT's kind); other models use the SentencePiece op alone.
    """
    if self._fast is None:
      if with_spans:
        return self._surface_spans(texts)
      return self._sp.tokenize(texts).with_row_splits_dtype(tf.int64), None, None
    fast_ids = self._fast.tokenize(texts).with_row_splits_dtype(tf.int64)
    fast_pieces = self._sp.id_to_string(fast_ids)
    lengths = tf.strings.length(fast_pieces.values, unit="UTF8_CHAR")
    spelled = tf.strings.regex_replace(tf.strings.reduce_join(fast_pieces, axis=1), SPIECE_UNDERLINE, " ")
    known = tf.math.unsorted_segment_sum(tf.cast(fast_ids.values == self.unk_id, tf.int32),
                                         fast_ids.value_rowids(), tf.size(texts)) == 0
    use_fast = ((spelled == texts) | (spelled == tf.strings.join([" ", texts]))) & known
    if not with_spans:
      pieces = self._sp.tokenize(texts).with_row_splits_dtype(tf.int64)
      return _row_choice(use_fast, fast_pieces, pieces)(fast_pieces, pieces), None, None
    # Spans from lengths: the pieces tile the text, less the dummy "▁" SentencePiece puts in front.
    rows = fast_ids.value_rowids()
    initial = tf.strings.length(texts, unit="UTF8_CHAR") - tf.math.unsorted_segment_sum(lengths, rows, tf.size(texts))
    total = tf.cumsum(lengths)
    before_row = tf.gather(tf.concat([[0], total], 0), tf.gather(fast_ids.row_starts(), rows))
    ends = tf.gather(initial, rows) + total - before_row
    underlined = tf.strings.substr(fast_pieces.values, 0, 1, unit="UTF8_CHAR") == SPIECE_UNDERLINE
    fast_begins = fast_pieces.with_values(ends - lengths + tf.cast(underlined, tf.int32))
    fast_ends = fast_pieces.with_values(ends)
    pieces, begins, ends = self._surface_spans(texts)
    choose = _row_choice(use_fast, fast_pieces, pieces)
    return choose(fast_pieces, pieces), choose(fast_begins, begins), choose(fast_ends, ends)

  def _surface_spans(self, texts):
    """The SentencePiece op's pieces of `texts` [N] with content spans narrowed from the surfaces it reports
    (`sentencepiece._content_spans_from_proto`)."""
    pieces, byte_begins, byte_ends = self._sp.tokenize_with_offsets(texts)
    pieces = pieces.with_row_splits_dtype(tf.int64)
    chars = tf.strings.unicode_decode(texts, "UTF-8")
    _, char_limits = _row_bounds(chars)
    # Byte offsets -> character offsets: the number of the row's characters that start before the byte.
    byte_starts = tf.cumsum(_utf8_widths(chars.values), exclusive=True)
    row_base = tf.concat([[0], tf.cumsum(tf.strings.length(texts))], 0)
    piece_rows = pieces.value_rowids()
    base = tf.gather(row_base, piece_rows)
    first_char = tf.cast(tf.gather(chars.row_starts(), piece_rows), tf.int32)
    begin_bytes, end_bytes = tf.cast(byte_begins.values, tf.int32), tf.cast(byte_ends.values, tf.int32)
    begins = tf.searchsorted(byte_starts, base + begin_bytes, side="left") - first_char
    ends = tf.searchsorted(byte_starts, base + end_bytes, side="left") - first_char
    # _narrow_to_content: the content is the piece without its "▁"; it ends the surface, or else leading
    # whitespace is skipped.
    piece = pieces.values
    content = tf.strings.regex_replace(piece, "^" + SPIECE_UNDERLINE, "", replace_global=False)
    content_bytes = tf.strings.length(content)
    surface = tf.strings.substr(tf.gather(texts, piece_rows), begin_bytes, end_bytes - begin_bytes)
    surface_bytes = end_bytes - begin_bytes
    suffix = tf.strings.substr(surface, tf.maximum(surface_bytes - content_bytes, 0), content_bytes)
    ends_with_content = (surface_bytes >= content_bytes) & (suffix == content)
    word = ~_is_member(self._whitespace, chars.values)
    next_word = tf.concat([_next_true(word, char_limits), [tf.size(word)]], 0)
    skipped = tf.gather(next_word, first_char + begins) - first_char
    begins = tf.where(content_bytes == 0, ends, tf.where(
        ends_with_content, ends - tf.strings.length(content, unit="UTF8_CHAR"), tf.minimum(skipped, ends)))
    return pieces, pieces.with_values(begins), pieces.with_values(ends)

  def _pieces(self, texts, with_spans):
    """`encode_pieces` of normalized texts [B] as ragged strings, with content spans when asked: a
    digit-comma piece becomes the pieces of its text without the comma and the "▁" (each spanning what it
    re-encodes, capped at the comma), then a "," spanning the comma (docs/compatibility.md §4.3, quirk 1)."""
    pieces, begins, ends = self._content_spans(texts, with_spans)
    piece = pieces.values
    chars = tf.strings.unicode_decode(piece, "UTF-8")
    lengths = tf.cast(chars.row_lengths(), tf.int32)
    last = tf.cast(chars.row_limits(), tf.int32) - 1
    before_last = tf.gather(chars.values, tf.maximum(last - 1, 0))
    digit_comma = (lengths > 1) & (tf.strings.substr(piece, -1, 1) == ",") & _is_member(self._digits, before_last)
    parents = tf.boolean_mask(piece, digit_comma)
    parent_bytes = tf.strings.length(parents)
    without_comma = tf.strings.substr(parents, tf.zeros_like(parent_bytes), parent_bytes - 1)
    sub_texts = tf.strings.regex_replace(without_comma, SPIECE_UNDERLINE, "", replace_global=True)
    sub_pieces, sub_begins, sub_ends = self._content_spans(sub_texts, with_spans)
    sub_pieces = tf.concat([sub_pieces, _column(tf.fill([tf.size(parents)], ","))], axis=1)
    # Every piece becomes itself, or its re-split followed by ","; `source` indexes [pieces; re-split pieces].
    counts = tf.where(digit_comma, 1, 0)
    rank = tf.cumsum(counts, exclusive=True)
    # Row splits of the re-splits, so that rank r (and r + 1, the sentinel) always indexes them.
    sub_splits = tf.cast(sub_pieces.row_splits, tf.int32)
    sizes = tf.where(digit_comma, tf.gather(sub_splits, rank + counts) - tf.gather(sub_splits, rank), 1)
    owner, k = _expand(sizes)
    source = tf.where(tf.gather(digit_comma, owner),
                      tf.size(piece) + tf.gather(sub_splits, tf.gather(rank, owner)) + k, owner)
    row_lengths = tf.math.unsorted_segment_sum(tf.cast(sizes, tf.int64), pieces.value_rowids(), pieces.nrows())
    out = tf.gather(tf.concat([piece, sub_pieces.values], 0), source)
    out = tf.RaggedTensor.from_row_lengths(out, row_lengths, validate=False)
    if not with_spans:
      return out, None, None
    parent_begins = tf.boolean_mask(begins.values, digit_comma)
    parent_ends = tf.boolean_mask(ends.values, digit_comma)
    comma = tf.maximum(parent_begins, parent_ends - 1)
    sub_rows = sub_begins.value_rowids()
    offset, cap = tf.gather(parent_begins, sub_rows), tf.gather(comma, sub_rows)
    sub_begins = tf.concat([sub_begins.with_values(tf.minimum(offset + sub_begins.values, cap)), _column(comma)], 1)
    sub_ends = tf.concat([sub_ends.with_values(tf.minimum(offset + sub_ends.values, cap)), _column(parent_ends)], 1)
    out_begins = tf.gather(tf.concat([begins.values, sub_begins.values], 0), source)
    out_ends = tf.gather(tf.concat([ends.values, sub_ends.values], 0), source)
    return out, out.with_values(out_begins), out.with_values(out_ends)

  # --- normalized spans -> raw spans: `spans.RawIndex.raw_spans` ---------------------------------------

  def _raw_spans(self, raw_index, begins, ends):
    """Raw [start, stop) character spans of normalized [begin, end) spans; a non-empty span takes the
    dropped characters (accents) after it up to the next whitespace or kept character."""
    index, chars, space = raw_index
    # index[p] for p in [0, len]: the raw character of normalized character p, len(raw) past the end.
    index = tf.concat([index, _column(tf.cast(chars.row_lengths(), tf.int32))], axis=1)
    length = tf.cast(tf.gather(index.row_lengths(), begins.value_rowids()), tf.int32) - 1
    first = tf.cast(tf.gather(index.row_starts(), begins.value_rowids()), tf.int32)
    flat = index.values
    b, e = begins.values, ends.values

    def at(p):
      return tf.gather(flat, first + p)

    starts = at(b)
    starts += tf.cast((b > 0) & (b < length) & (at(tf.maximum(b - 1, 0)) == starts), tf.int32)
    stops = tf.where(e > b, tf.maximum(at(tf.maximum(e - 1, 0)) + 1, starts), starts)
    next_kept = at(e)
    raw_first = tf.cast(tf.gather(chars.row_starts(), begins.value_rowids()), tf.int32)
    _, raw_limits = _row_bounds(chars)
    next_space = tf.concat([_next_true(space, raw_limits), [tf.size(space)]], 0)
    attached = tf.minimum(next_kept, tf.gather(next_space, tf.minimum(raw_first + stops, tf.size(space))) - raw_first)
    stops = tf.where((stops > starts) & (next_kept > stops), attached, stops)
    return begins.with_values(starts), begins.with_values(stops)
