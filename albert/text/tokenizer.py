"""`FullTokenizer`: the original release's tokenizer, SentencePiece or WordPiece, with raw-text offsets.

SentencePiece mode reproduces the original's preprocessing and digit-comma rule because both decide
the ids a released model was trained on (`albert.text.sentencepiece`); WordPiece mode is BERT's
(`albert.text.wordpiece`). Beyond the original, both modes report the raw span each piece came from
(`tokenize_with_offsets`), and the tokenizer has a `fingerprint` that feature caches record.
"""

from __future__ import annotations

import hashlib

import sentencepiece as spm

from albert.core.errors import UserError, require_file
from albert.text import wordpiece
from albert.text.sentencepiece import encode_pieces, pieces_with_raw_spans
from albert.text.spans import Token, to_text

# The SentencePiece files of the released models (archives and TF-Hub assets), and of our exports.
SPM_MODEL_FILENAME = "30k-clean.model"
SPM_VOCAB_FILENAME = "30k-clean.vocab"


def read_file_bytes(path: str, flag_name: str) -> bytes:
  """Reads a local file, or a remote one (gs://...) through TensorFlow's file system, as bytes.

  TensorFlow is imported only for remote paths, so local use stays free of it.

  Args:
    path: a local path or a URL with a scheme TensorFlow's file system knows.
    flag_name: the flag the path came from, named in the UserError for a missing file.
  Returns:
    The file's contents.
  """
  if "://" in path:
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
      raise UserError(f"--{flag_name}: file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  require_file(path, flag_name)
  with open(path, "rb") as f:
    return f.read()


def load_vocab(vocab_file: str) -> dict[str, int]:
  """Reads a WordPiece vocabulary file: {token: id}.

  Args:
    vocab_file: a UTF-8 file with one token per line (local or remote, see `read_file_bytes`).
  Returns:
    {token: id}, ids counting distinct tokens in file order (`albert.text.wordpiece.load_vocab`).
  """
  try:
    text = read_file_bytes(vocab_file, "vocab_file").decode("utf-8")
  except UnicodeDecodeError:
    raise UserError(f"--vocab_file: not UTF-8 text: {vocab_file}") from None
  return wordpiece.load_vocab(text, f"--vocab_file {vocab_file}")


class SpecialIds:
  """The ids of the special pieces, for tokenizers with a `_special_id(piece)` that raises a UserError when the
  vocabulary lacks the piece (FullTokenizer, and the in-graph tokenizer of `albert.text.in_graph`)."""

  @property
  def cls_id(self) -> int:
    """The id of the `[CLS]` piece that starts every input; a UserError if the vocabulary lacks it."""
    return self._special_id("[CLS]")

  @property
  def sep_id(self) -> int:
    """The id of the `[SEP]` piece that ends each segment; a UserError if the vocabulary lacks it."""
    return self._special_id("[SEP]")

  @property
  def mask_id(self) -> int:
    """The id of the `[MASK]` piece used for masked-LM; a UserError if the vocabulary lacks it."""
    return self._special_id("[MASK]")


class FullTokenizer(SpecialIds):
  """The original's tokenizer: SentencePiece when a model is given, else WordPiece from a vocab file.

  In SentencePiece mode `tokenize` expects preprocessed text (like the original) while
  `tokenize_with_offsets` takes raw text and preprocesses it per `do_lower_case` itself.

  Args:
    vocab_file: a WordPiece vocabulary (used when `spm_model_file` is not given).
    do_lower_case: whether text is lowercased (and, with SentencePiece, stripped of accents).
    spm_model_file: a SentencePiece model (`30k-clean.model`), local or on a TensorFlow filesystem.

  Attributes:
    vocab: {piece: id} of the whole vocabulary.
    inv_vocab: {id: piece}, the inverse of `vocab`.
    sp_model: the `SentencePieceProcessor`, or None in WordPiece mode.
    do_lower_case: the casing setting given.
  """

  def __init__(self, vocab_file: str | None = None, do_lower_case: bool = True,
               spm_model_file: str | None = None) -> None:
    self.do_lower_case = do_lower_case
    if spm_model_file:
      model = read_file_bytes(spm_model_file, "spm_model_file")
      self._init_sentencepiece(model, f"--spm_model_file {spm_model_file}")
    elif vocab_file:
      self._init_wordpiece(load_vocab(vocab_file), f"--vocab_file {vocab_file}")
    else:
      raise UserError("--spm_model_file or --vocab_file is required")

  @classmethod
  def from_spm_bytes(cls, model_proto: bytes, do_lower_case: bool, source: str = "model bytes") -> FullTokenizer:
    """A SentencePiece tokenizer from a serialized model (as shipped in a TF-Hub module's assets).

    Args:
      model_proto: the bytes of a `.model` file.
      do_lower_case: whether text is lowercased.
      source: how error messages name the model.
    Returns:
      A FullTokenizer in SentencePiece mode.
    """
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
    self._digest = hashlib.sha256(self.sp_model.serialized_model_proto()).hexdigest()

  def _init_wordpiece(self, vocab, source):
    self._source = source
    self.sp_model = None
    self.vocab = vocab
    self.inv_vocab = {i: token for token, i in vocab.items()}
    self._digest = hashlib.sha256("\n".join(sorted(vocab, key=vocab.get)).encode("utf-8")).hexdigest()

  @property
  def fingerprint(self) -> dict:
    """What identifies this tokenizer's output: its mode, model or vocabulary hash, and casing.

    Returns:
      {"mode": "sentencepiece" or "wordpiece", "sha256": hex digest of the model or vocabulary,
      "do_lower_case": bool}; two tokenizers with equal fingerprints produce the same ids.
    """
    mode = "wordpiece" if self.sp_model is None else "sentencepiece"
    return {"mode": mode, "sha256": self._digest, "do_lower_case": bool(self.do_lower_case)}

  @property
  def pad_id(self) -> int:
    """The id padding positions hold: always 0, like the original input pipelines."""
    return 0

  def _special_id(self, piece):
    if piece not in self.vocab:
      raise UserError(f"{self._source}: the vocabulary has no {piece} piece")
    return self.vocab[piece]

  def tokenize(self, text: str | bytes) -> list[str]:
    """Pieces of `text`: SentencePiece pieces of already preprocessed text, or BERT WordPiece tokens.

    Args:
      text: str, or bytes (UTF-8, else latin-1).
    Returns:
      A list of piece strings.
    """
    if self.sp_model is not None:
      return encode_pieces(self.sp_model, text)
    return wordpiece.wordpiece_pieces(to_text(text), self.vocab, self.do_lower_case)[0]

  def tokenize_with_offsets(self, text: str | bytes) -> list[Token]:
    """Pieces of raw `text` with the raw span each came from.

    In SentencePiece mode the pieces are exactly `tokenize(preprocess_text(text, lower=do_lower_case))`.
    A span excludes the word-boundary space; a bare "▁" gets an empty span at the next character; the
    pieces of a digit-comma re-split share their parent's span, the "," getting the comma. Spans never
    overlap and never go backwards.

    Args:
      text: raw str (or bytes).
    Returns:
      A list of `Token(piece, start, end)` with `text[start:end]` the piece's raw span.
    """
    text = to_text(text)
    if self.sp_model is None:
      pieces, starts, stops = wordpiece.wordpiece_pieces(text, self.vocab, self.do_lower_case)
    else:
      pieces, starts, stops = pieces_with_raw_spans(self.sp_model, text, self.do_lower_case)
    return list(map(Token._make, zip(pieces, starts, stops)))

  def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
    """Ids of `tokens`; SentencePiece maps unknown pieces to the unk id, WordPiece raises KeyError.

    Args:
      tokens: piece strings, e.g. from `tokenize`, special pieces such as "[CLS]" included.
    Returns:
      One id per token.
    """
    if self.sp_model is not None:
      return [self.vocab.get(token, self._unk_id) for token in tokens]
    return [self.vocab[token] for token in tokens]

  def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
    """Pieces of `ids`, the inverse of `convert_tokens_to_ids` for pieces in the vocabulary.

    Args:
      ids: vocabulary ids; an id outside the vocabulary raises KeyError.
    Returns:
      One piece string per id.
    """
    return [self.inv_vocab[i] for i in ids]
