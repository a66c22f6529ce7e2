"""Encoder outputs of texts as numpy arrays, written row by row (`python -m albert.extract_features`).

Each example is a text or a pair (segments 0 and 1). Outputs: `pooled.npy` [N, H]; `mean.npy` [N, K, H],
per requested layer the mean over the example's real pieces ([CLS] and [SEP] included); optionally
`sequence.npy` [N, K, max_seq_length, H] with zeros beyond each example's length; `examples.jsonl` with
the pieces, segment ids and raw spans. Layer indices count the outputs of every encoder block (0 is the
first, -1 the last).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from albert.core import fileio
from albert.core.errors import UserError, require_file
from albert.core.streams import batched
from albert.inference.encoder import masked_mean
from albert.io.npy import npy_row_writer

if TYPE_CHECKING:
  from collections.abc import Iterable, Iterator, Sequence

  from albert.inference.encoder import EncodedInput, Encoder

PAIR_SEPARATOR = "|||"


def read_examples(path: str) -> Iterator[tuple[str, str | None]]:
  """(text_a, text_b or None) per line of `path`, streamed; undecodable text is a UserError with its line.

  A line holding "|||" is a pair split at its first "|||"; both sides are stripped. Blank lines are
  examples too (an empty text), so row numbers match line numbers.

  Args:
    path: a local UTF-8 text file; a missing file is a UserError.
  Returns:
    An iterator over the examples in file order.
  """
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


def example_record(index: int, text_a: str, text_b: str | None, encoded: EncodedInput) -> dict:
  """The `examples.jsonl` line of one example: its texts and how they were encoded.

  Args:
    index: the example's row in the `.npy` outputs.
    text_a: the first text.
    text_b: the second text, or None (then the record has no `text_b` key).
    encoded: the model input built from the texts.
  Returns:
    A JSON-ready dict with `index`, `text_a`, maybe `text_b`, `tokens`, `segment_ids`, `offsets`
    ([start, end] lists or None) and `truncated`.
  """
  record = {"index": index, "text_a": text_a}
  if text_b is not None:
    record["text_b"] = text_b
  record.update(tokens=encoded.tokens, segment_ids=encoded.segment_ids,
                offsets=[None if o is None else list(o) for o in encoded.offsets], truncated=encoded.truncated)
  return record


def extract(encoder: Encoder, examples: Iterable[tuple[str, str | None]], output_dir: str, layers: Sequence[int],
            batch_size: int, write_token_vectors: bool, input_name: str = "input") -> int:
  """Runs every example through the encoder and writes the outputs; returns the example count.

  Nothing is left in `output_dir` when it fails (e.g. on an empty input, named `input_name` in the error).

  Args:
    encoder: the loaded Encoder.
    examples: (text_a, text_b or None) pairs, e.g. from `read_examples`; consumed once, streamed.
    output_dir: where `examples.jsonl`, `pooled.npy`, `mean.npy` and maybe `sequence.npy` go.
    layers: indices into `all_encoder_layers` (see `layer_indices`); K = len(layers).
    batch_size: examples per forward pass.
    write_token_vectors: also write `sequence.npy` [N, K, max_seq_length, H], which can be large.
    input_name: how the error for an empty input names it.
  Returns:
    N, the number of examples written.
  """
  hidden, seq_length = encoder.hidden_size, encoder.max_seq_length
  with fileio.atomic_open(os.path.join(output_dir, "examples.jsonl")) as records, \
      npy_row_writer(os.path.join(output_dir, "pooled.npy"), [hidden]) as pooled, \
      npy_row_writer(os.path.join(output_dir, "mean.npy"), [len(layers), hidden]) as means, \
      _optional_sequence_writer(output_dir, write_token_vectors, [len(layers), seq_length, hidden]) as sequences:
    count = 0
    for batch in batched(examples, batch_size):
      inputs = [encoder.encode_text(a, b) for a, b in batch]
      outputs = encoder.run(inputs, layers)
      pooled.append(outputs.pooled)
      means.append(_stack([masked_mean(layer, outputs.input_mask) for layer in outputs.layers]))
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
    return npy_row_writer(os.path.join(output_dir, "sequence.npy"), row_shape)
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
