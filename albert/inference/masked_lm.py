"""Masked-word filling with the pretraining MLM head: each literal `[MASK]` in a text is one piece.

The text around a `[MASK]` is tokenized as usual, so a `[MASK]` stands for exactly ONE piece: a word the
vocabulary splits into several pieces needs several `[MASK]`s. Probabilities are the masked-LM head's
softmax over the whole vocabulary at each mask, so the k shown sum to at most 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from albert.core.errors import UserError
from albert.core.streams import batched
from albert.inference.encoder import MASK
from albert.text.sentencepiece import SPIECE_UNDERLINE
from albert.text.spans import Token

if TYPE_CHECKING:
  from collections.abc import Sequence

  from albert.inference.encoder import Encoder


def read_texts(texts: Sequence[str] | None, input_file: str | None) -> list[tuple[str, str]]:
  """(label, text) pairs from `--text` values and `--input_file` lines; every text must hold a [MASK].

  Args:
    texts: the `--text` values, or None.
    input_file: a UTF-8 file with one text per non-blank line, or None.
  Returns:
    The texts with labels such as "--text #1" or "--input_file f.txt line 3" for error messages; no
    texts, a missing or undecodable file, or a text without [MASK] is a UserError.
  """
  labelled = [(f"--text #{i + 1}", text) for i, text in enumerate(texts or ())]
  if input_file:
    try:
      with open(input_file, encoding="utf-8") as f:
        labelled += [(f"--input_file {input_file} line {n}", line.rstrip("\n"))
                     for n, line in enumerate(f, 1) if line.strip()]
    except FileNotFoundError:
      raise UserError(f"--input_file: file not found: {input_file}") from None
    except UnicodeDecodeError as e:
      raise UserError(f"--input_file {input_file} is not UTF-8 text (byte {e.start})") from None
  if not labelled:
    raise UserError("no input: pass --text or --input_file")
  for label, text in labelled:
    if MASK not in text:
      raise UserError(f"{label}: no {MASK} in {text!r}")
  return labelled


def tokenize_masked(encoder: Encoder, text: str) -> list[Token]:
  """Tokens of `text` with each literal [MASK] as the mask piece (its span: the literal) in between.

  Text glued to the end of a [MASK] ("[MASK]s") continues that word, so its first piece loses the
  word-boundary marker SentencePiece adds to every text it sees.

  Args:
    encoder: supplies the tokenizer.
    text: raw text with one or more literal "[MASK]"s.
  Returns:
    The tokens, spans relative to `text`.
  """
  tokens, offset = [], 0
  for index, part in enumerate(text.split(MASK)):
    if index:
      tokens.append(Token(MASK, offset - len(MASK), offset))
    part_tokens = encoder.tokenize(part)
    if index and part[:1] and not part[:1].isspace():
      part_tokens = _continue_word(part_tokens, encoder.tokenizer.vocab)
    tokens += [Token(t.piece, t.start + offset, t.end + offset) for t in part_tokens]
    offset += len(part) + len(MASK)
  return tokens


def _continue_word(tokens, vocab):
  if not tokens or not tokens[0].piece.startswith(SPIECE_UNDERLINE):
    return tokens
  first, rest = tokens[0], tokens[1:]
  if first.piece == SPIECE_UNDERLINE:
    return rest
  stripped = first.piece[len(SPIECE_UNDERLINE):]
  return [first._replace(piece=stripped)] + rest if stripped in vocab else tokens


def predict(encoder: Encoder, labelled_texts: Sequence[tuple[str, str]], top_k: int, batch_size: int) -> list[dict]:
  """One result dict per text: its pieces and, per [MASK], the top-k pieces with probabilities.

  Args:
    encoder: an Encoder loaded with its masked-LM head.
    labelled_texts: (label, text) pairs from `read_texts`; a text longer than `max_seq_length` pieces
      is a UserError naming its label.
    top_k: predictions kept per [MASK].
    batch_size: texts per forward pass.
  Returns:
    Per text {"text", "tokens", "masks"}; each mask has its piece index, character span and
    `predictions`: dicts of the piece, its id, its surface text, its probability and the text with the
    [MASK] replaced, most probable first.
  """
  mask_id = encoder.tokenizer.mask_id
  results = []
  for batch in batched(labelled_texts, batch_size):
    inputs = [_build(encoder, label, text) for label, text in batch]
    positions = [[i for i, token_id in enumerate(x.input_ids) if token_id == mask_id] for x in inputs]
    probabilities = encoder.masked_lm_probabilities(inputs, positions)
    for (_, text), x, mask_positions, rows in zip(batch, inputs, positions, probabilities):
      masks = [_mask_result(encoder, text, x, position, row, top_k)
               for position, row in zip(mask_positions, rows)]
      results.append({"text": text, "tokens": x.tokens, "masks": masks})
  return results


def _build(encoder, label, text):
  x = encoder.build_input(tokenize_masked(encoder, text))
  if x.truncated:
    raise UserError(f"{label}: the text has more than --max_seq_length={encoder.max_seq_length} pieces "
                    "([CLS] and [SEP] included)")
  return x


def _mask_result(encoder, text, x, position, probabilities, top_k):
  start, end = x.offsets[position]
  order = probabilities.argsort()[::-1][:top_k]
  predictions = []
  for token_id in order:
    piece = encoder.tokenizer.inv_vocab[int(token_id)]
    surface = piece.replace(SPIECE_UNDERLINE, " ").strip() if encoder.tokenizer.sp_model else piece
    predictions.append({"token": piece, "token_id": int(token_id), "text": surface,
                        "probability": float(probabilities[token_id]),
                        "sequence": text[:start] + surface + text[end:]})
  return {"token_index": position, "char_start": start, "char_end": end, "predictions": predictions}


def format_table(results: list[dict]) -> str:
  """The human-readable report: per text, per [MASK], rank / piece / probability.

  Args:
    results: what `predict` returned.
  Returns:
    The report, lines joined by newlines, without a final newline.
  """
  lines = []
  for result in results:
    lines.append(result["text"])
    for number, mask in enumerate(result["masks"], 1):
      lines.append(f"  {MASK} #{number} (piece {mask['token_index']}, chars {mask['char_start']}-{mask['char_end']})")
      for rank, p in enumerate(mask["predictions"], 1):
        lines.append(f"    {rank:>3}  {p['token']:<20} {p['probability']:.4f}  {p['sequence']}")
  return "\n".join(lines)
