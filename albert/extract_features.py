"""Encoder outputs of texts as numpy arrays: `python -m albert.extract_features`.

    python -m albert.extract_features --albert_config_file=albert_config.json \
        --init_checkpoint=model.ckpt-best --spm_model_file=30k-clean.model \
        --input_file=texts.txt --output_dir=features --layers=-1,-2

`--input_file` holds one example per line: a text, or a pair `text_a ||| text_b` (segments 0 and 1, as
in BERT's extract_features). Row i of every output is line i+1 of the input (blank lines included).
`--output_dir` receives, each written atomically:
- `pooled.npy`   float32 [N, H]: the pooler output ([CLS] through dense + tanh);
- `mean.npy`     float32 [N, K, H]: per `--layers` entry (in flag order), the mean over the example's
                 real pieces ([CLS] and [SEP] included);
- `sequence.npy` float32 [N, K, max_seq_length, H], only with `--write_token_vectors`: every piece's
                 vector, zero beyond the example's length (large: N * K * S * H * 4 bytes);
- `examples.jsonl`: per example its text(s), pieces, segment ids, each piece's [start, end) span in the
                 raw text of its segment (null for [CLS]/[SEP]) and whether it was truncated;
- `features.json`: the layers (as 0-based indices), shapes and the model the features came from.
Layer indices count the outputs of every encoder block (0 is the first, -1 the last).
"""

import contextlib
import json
import os

import numpy as np
from absl import flags, logging

from albert import encoder as encoders
from albert import fileio
from albert.errors import UserError, require_file, run_main

FLAGS = flags.FLAGS
PAIR_SEPARATOR = "|||"


def define_flags():
  encoders.define_flags(max_seq_length=128, batch_size=8)
  flags.DEFINE_string("input_file", None, "Texts, one per line; `text_a ||| text_b` for a pair.")
  flags.DEFINE_string("output_dir", None, "Where pooled.npy, mean.npy, examples.jsonl (...) are written.")
  flags.DEFINE_string("layers", "-1", "Comma-separated encoder layers for mean.npy/sequence.npy; -1 is the last.")
  flags.DEFINE_bool("write_token_vectors", False, "Also write every piece's vectors to sequence.npy.")


def read_examples(path):
  """(text_a, text_b or None) per line of `path`, streamed; undecodable text is a UserError with its line."""
  require_file(path, "input_file")
  with open(path, encoding="utf-8") as f:
    line_number = 0
    try:
      for line_number, line in enumerate(f, 1):
        text = line.rstrip("\n").rstrip("\r")
        if PAIR_SEPARATOR in text:
          text_a, _, text_b = text.partition(PAIR_SEPARATOR)
          yield text_a.strip(), text_b.strip()
        else:
          yield text.strip(), None
    except UnicodeDecodeError as e:
      raise UserError(f"--input_file {path} is not UTF-8 text (near line {line_number + 1}: {e.reason})") from None


def example_record(index, text_a, text_b, encoded):
  record = {"index": index, "text_a": text_a}
  if text_b is not None:
    record["text_b"] = text_b
  record.update(tokens=encoded.tokens, segment_ids=encoded.segment_ids,
                offsets=[None if o is None else list(o) for o in encoded.offsets], truncated=encoded.truncated)
  return record


def extract(encoder, examples, output_dir, layers, batch_size, write_token_vectors, input_name="input"):
  """Runs every example through the encoder and writes the outputs; returns the example count.

  Nothing is left in `output_dir` when it fails (e.g. on an empty input, named `input_name` in the error).
  """
  hidden, seq_length = encoder.hidden_size, encoder.max_seq_length
  with fileio.atomic_open(os.path.join(output_dir, "examples.jsonl")) as records, \
      encoders.npy_row_writer(os.path.join(output_dir, "pooled.npy"), [hidden]) as pooled, \
      encoders.npy_row_writer(os.path.join(output_dir, "mean.npy"), [len(layers), hidden]) as means, \
      _optional_sequence_writer(output_dir, write_token_vectors, [len(layers), seq_length, hidden]) as sequences:
    count = 0
    for batch in encoders.batched(examples, batch_size):
      inputs = [encoder.encode_text(a, b) for a, b in batch]
      outputs = encoder.run(inputs, layers)
      pooled.append(outputs.pooled)
      means.append(_stack([encoders.masked_mean(layer, outputs.input_mask) for layer in outputs.layers]))
      if sequences is not None:
        sequences.append(_padded_sequences(outputs, seq_length))
      for (text_a, text_b), encoded in zip(batch, inputs):
        records.write(json.dumps(example_record(count, text_a, text_b, encoded), ensure_ascii=False) + "\n")
        count += 1
      logging.info("extracted features of %d examples", count)
    if not count:
      raise UserError(f"{input_name} has no lines")
  return count


def _optional_sequence_writer(output_dir, enabled, row_shape):
  if enabled:
    return encoders.npy_row_writer(os.path.join(output_dir, "sequence.npy"), row_shape)
  return contextlib.nullcontext()


def _stack(per_layer):
  """[K] arrays [B, H] -> [B, K, H]."""
  return np.stack(per_layer, axis=1)


def _padded_sequences(outputs, seq_length):
  """[B, K, seq_length, H]: the selected layers with padding positions zeroed."""
  stacked = np.stack(outputs.layers, axis=1) * outputs.input_mask[:, None, :, None]
  batch, layers, length, hidden = stacked.shape
  padded = np.zeros([batch, layers, seq_length, hidden], np.float32)
  padded[:, :, :length] = stacked
  return padded


def main(argv):
  del argv
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  require_file(FLAGS.input_file, "input_file")
  encoder = encoders.load_encoder(FLAGS)
  layers = encoders.layer_indices(FLAGS.layers, encoder.num_layers)
  count = extract(encoder, read_examples(FLAGS.input_file), FLAGS.output_dir, layers, FLAGS.batch_size,
                  FLAGS.write_token_vectors, input_name=f"--input_file {FLAGS.input_file}")
  resolved = [index % encoder.num_layers for index in layers]
  fileio.write_json(os.path.join(FLAGS.output_dir, "features.json"), {
      "count": count, "hidden_size": encoder.hidden_size, "layers": resolved,
      "max_seq_length": encoder.max_seq_length, "token_vectors": FLAGS.write_token_vectors,
      "model": encoder.source})
  print(f"wrote features of {count} examples to {FLAGS.output_dir}", flush=True)


if __name__ == "__main__":
  define_flags()
  run_main(main)
