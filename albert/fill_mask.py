"""Top-k predictions for `[MASK]` in texts from a pretraining checkpoint: `python -m albert.fill_mask`.

    python -m albert.fill_mask --albert_config_file=albert_config.json --init_checkpoint=model.ckpt-best \
        --spm_model_file=30k-clean.model --text="Hello I'm a [MASK] model." --top_k=5

Each literal `[MASK]` in a text becomes the [MASK] piece; the text around it is tokenized as usual, so a
`[MASK]` stands for exactly ONE piece: a word the vocabulary splits into several pieces needs several
`[MASK]`s. Probabilities are the masked-LM head's softmax over the whole vocabulary at each mask, so the
k shown sum to at most 1. The checkpoint must contain that head (`cls/predictions/*`), as pretraining
checkpoints do; fine-tuned ones do not. Results go to stdout as a table and, with `--output_file`, to a
JSON list with one entry per text.
"""

from absl import flags

from albert import encoder as encoders
from albert import fileio
from albert.errors import UserError, run_main
from albert.tokenization import SPIECE_UNDERLINE, Token

FLAGS = flags.FLAGS
MASK = encoders.MASK


def define_flags():
  encoders.define_flags(max_seq_length=128, batch_size=8)
  flags.DEFINE_multi_string("text", None, "A text containing one or more [MASK]; may be repeated.")
  flags.DEFINE_string("input_file", None, "A file with one text per line (blank lines are skipped).")
  flags.DEFINE_integer("top_k", 5, "How many predictions to show per [MASK].")
  flags.DEFINE_string("output_file", None, "Also write the predictions here as JSON.")


def read_texts(texts, input_file):
  """(label, text) pairs from `--text` values and `--input_file` lines; every text must hold a [MASK]."""
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


def tokenize_masked(encoder, text):
  """Tokens of `text` with each literal [MASK] as the mask piece (its span: the literal) in between.

  Text glued to the end of a [MASK] ("[MASK]s") continues that word, so its first piece loses the
  word-boundary marker SentencePiece adds to every text it sees.
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


def predict(encoder, labelled_texts, top_k, batch_size):
  """One result dict per text: its pieces and, per [MASK], the top-k pieces with probabilities."""
  mask_id = encoder.tokenizer.mask_id
  results = []
  for batch in encoders.batched(labelled_texts, batch_size):
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


def format_table(results):
  """The human-readable report: per text, per [MASK], rank / piece / probability."""
  lines = []
  for result in results:
    lines.append(result["text"])
    for number, mask in enumerate(result["masks"], 1):
      lines.append(f"  {MASK} #{number} (piece {mask['token_index']}, chars {mask['char_start']}-{mask['char_end']})")
      for rank, p in enumerate(mask["predictions"], 1):
        lines.append(f"    {rank:>3}  {p['token']:<20} {p['probability']:.4f}  {p['sequence']}")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.top_k <= 0:
    raise UserError(f"--top_k must be positive, got {FLAGS.top_k}")
  labelled = read_texts(FLAGS.text, FLAGS.input_file)
  encoder = encoders.load_encoder(FLAGS, with_mlm_head=True)
  if FLAGS.top_k > encoder.config.vocab_size:
    raise UserError(f"--top_k={FLAGS.top_k} exceeds the vocabulary size {encoder.config.vocab_size}")
  results = predict(encoder, labelled, FLAGS.top_k, FLAGS.batch_size)
  print(format_table(results), flush=True)
  if FLAGS.output_file:
    fileio.write_json(FLAGS.output_file, results)


if __name__ == "__main__":
  define_flags()
  run_main(main)
