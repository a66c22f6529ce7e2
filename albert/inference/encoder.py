"""A pretrained or fine-tuned ALBERT encoder plus its tokenizer, ready to embed texts in batches.

The inference tools (`fill_mask`, `extract_features`, `retrieve`) share this: loading weights by name
from a checkpoint (or a TF-Hub module), building `[CLS] a [SEP] (b [SEP])` inputs with pieces that know
their span in the raw text, running batches padded to their longest input, and pooling.

Shapes: B is the batch size, S the longest input of the batch in pieces, H `hidden_size`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core.errors import UserError, abbreviate
from albert.io import checkpoint
from albert.model import variables
from albert.model.pretraining import MaskedLMHead

if TYPE_CHECKING:
  from collections.abc import Iterable, Sequence

  from albert.cli.model_loader import ModelSetup
  from albert.model.config import AlbertConfig
  from albert.model.encoder import AlbertModel
  from albert.model.hub import HubAlbertModel
  from albert.text.spans import Token
  from albert.text.tokenizer import FullTokenizer

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"
POOLINGS = ("mean", "cls", "pooled")


class EncodedInput(NamedTuple):
  """One model input: pieces (specials included), their ids and segments, and where they came from.

  Args:
    tokens: the pieces, e.g. ["[CLS]", "▁hello", "[SEP]"].
    input_ids: their vocabulary ids, one per piece.
    segment_ids: 0 for [CLS], the first text and its [SEP]; 1 for the second text and its [SEP].
    offsets: per piece its (start, end) character span in the raw text of its own segment, or None for
      [CLS] and [SEP].
    truncated: whether pieces were dropped to fit `max_seq_length`.
  """
  tokens: list[str]  # pieces, e.g. ["[CLS]", "▁hello", "[SEP]"]
  input_ids: list[int]
  segment_ids: list[int]
  offsets: list[tuple[int, int] | None]  # per piece: (start, end) in its segment's raw text, or None for [CLS]/[SEP]
  truncated: bool


class BatchOutputs(NamedTuple):
  """numpy outputs of one batch; `layers` holds the requested encoder layers, each [B, S, H].

  Args:
    pooled: the pooler output, float32 [B, H].
    layers: the requested entries of `all_encoder_layers`, float32 [B, S, H] each, in request order.
    input_mask: int32 [B, S], 1 for real pieces ([CLS] and [SEP] included) and 0 for padding.
  """
  pooled: np.ndarray
  layers: tuple[np.ndarray, ...]
  input_mask: np.ndarray


class Encoder:
  """ALBERT model + tokenizer with the `[CLS] a [SEP] (b [SEP])` input layout of the original scripts.

  Build it with `load_encoder`, which also loads the weights. The forward passes are `tf.function`s
  traced once for any batch size and length; outputs come back as float32 numpy arrays.

  Args:
    config: the model's hyper-parameters.
    model: the encoder, with its weights loaded.
    tokenizer: the tokenizer the model was trained with.
    max_seq_length: the most pieces an input may have, [CLS] and [SEP] included.
    mlm_head: the masked-LM head tied to the model's word embeddings, needed only by
      `masked_lm_probabilities`; None without it.
    source: what identifies the model (flag values, checkpoint path), recorded in output files.
  """

  def __init__(self, config: AlbertConfig, model: AlbertModel | HubAlbertModel, tokenizer: FullTokenizer,
               max_seq_length: int, mlm_head: MaskedLMHead | None = None, source: dict | None = None) -> None:
    self.config = config
    self.model = model
    self.tokenizer = tokenizer
    self.max_seq_length = max_seq_length
    self.mlm_head = mlm_head
    self.source = source or {}
    self._forward = tf.function(self._forward_eager, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3)
    self._mlm = tf.function(self._mlm_eager, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 4)

  @property
  def hidden_size(self) -> int:
    """H, the width of every output vector."""
    return self.config.hidden_size

  @property
  def num_layers(self) -> int:
    """How many encoder layer outputs there are (`all_encoder_layers`: L * inner_group_num)."""
    return self.config.num_hidden_layers * self.config.inner_group_num

  def tokenize(self, text: str) -> list[Token]:
    """Pieces of raw `text` with their raw spans (preprocessing per --do_lower_case applied inside).

    Args:
      text: the user's text, not preprocessed.
    Returns:
      The tokens, each with its [start, end) span in `text`.
    """
    return self.tokenizer.tokenize_with_offsets(text)

  def build_input(self, tokens_a: Iterable[Token], tokens_b: Iterable[Token] | None = None) -> EncodedInput:
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` from `Token`s, truncated to --max_seq_length.

    Pairs lose pieces from the end of the longer side first, like the original classifier features.

    Args:
      tokens_a: the first segment's tokens (from `tokenize`).
      tokens_b: the second segment's tokens, or None for a single text.
    Returns:
      The EncodedInput; `truncated` tells whether pieces were dropped.
    """
    tokens_a, tokens_b = list(tokens_a), (None if tokens_b is None else list(tokens_b))
    budget = self.max_seq_length - (2 if tokens_b is None else 3)
    length = len(tokens_a) + len(tokens_b or ())
    truncated = length > budget
    if tokens_b is None:
      del tokens_a[budget:]
    else:
      while len(tokens_a) + len(tokens_b) > budget:
        (tokens_a if len(tokens_a) >= len(tokens_b) else tokens_b).pop()
    tokens, segments, offsets = [CLS], [0], [None]
    for segment, part in enumerate([tokens_a] if tokens_b is None else [tokens_a, tokens_b]):
      tokens += [t.piece for t in part] + [SEP]
      offsets += [(t.start, t.end) for t in part] + [None]
      segments += [segment] * (len(part) + 1)
    ids = self.tokenizer.convert_tokens_to_ids(tokens)
    return EncodedInput(tokens, ids, segments, offsets, truncated)

  def encode_text(self, text_a: str, text_b: str | None = None) -> EncodedInput:
    """`build_input` of the tokens of one raw text or a pair of raw texts.

    Args:
      text_a: the first text.
      text_b: the second text, or None.
    Returns:
      The EncodedInput, truncated to `max_seq_length` pieces.
    """
    return self.build_input(self.tokenize(text_a), None if text_b is None else self.tokenize(text_b))

  def _pad(self, inputs):
    """[B, S] int32 ids, mask and segments, padded with 0 to the batch's longest input."""
    length = max(len(x.input_ids) for x in inputs)
    ids = np.zeros([len(inputs), length], np.int32)
    mask = np.zeros_like(ids)
    segments = np.zeros_like(ids)
    for row, x in enumerate(inputs):
      n = len(x.input_ids)
      ids[row, :n], mask[row, :n], segments[row, :n] = x.input_ids, 1, x.segment_ids
    return ids, mask, segments

  def _forward_eager(self, ids, mask, segments):
    outputs = self.model(ids, mask, segments, training=False)
    cast = lambda x: tf.cast(x, tf.float32)
    return cast(outputs.pooled_output), tuple(cast(x) for x in outputs.all_encoder_layers)

  def run(self, inputs: Sequence[EncodedInput], layers: Sequence[int] = (-1,)) -> BatchOutputs:
    """Runs a batch of `EncodedInput`s; `layers` index `all_encoder_layers` (negative from the end).

    The batch is padded with 0 to its longest input, so S varies between batches.

    Args:
      inputs: a non-empty batch.
      layers: which layer outputs to return, e.g. (-1,) for the last; see `layer_indices`.
    Returns:
      The BatchOutputs, float32 numpy arrays.
    """
    ids, mask, segments = self._pad(inputs)
    pooled, all_layers = self._forward(ids, mask, segments)
    return BatchOutputs(pooled.numpy(), tuple(all_layers[i].numpy() for i in layers), mask)

  def embed(self, inputs: Sequence[EncodedInput], pooling: str) -> np.ndarray:
    """[B, H] float32 L2-normalised embeddings of a batch (`pooling`: mean, cls or pooled).

    Args:
      inputs: a non-empty batch.
      pooling: one of `POOLINGS`, applied to the last layer (see `pool`).
    Returns:
      float32 [B, H] unit vectors, so dot products are cosine similarities.
    """
    outputs = self.run(inputs)
    return l2_normalize(pool(outputs, pooling))

  def _mlm_eager(self, ids, mask, segments, positions):
    outputs = self.model(ids, mask, segments, training=False)
    return tf.nn.softmax(self.mlm_head(outputs.sequence_output, positions), axis=-1)

  def masked_lm_probabilities(self, inputs: Sequence[EncodedInput], positions: Sequence[Sequence[int]]) -> np.ndarray:
    """[B, P, V] float32 probabilities at `positions` (one list per input; shorter lists are padded).

    Needs the masked-LM head (`load_encoder(..., with_mlm_head=True)`), else ValueError.

    Args:
      inputs: a non-empty batch.
      positions: per input, the piece indices to predict (e.g. those of its [MASK] pieces).
    Returns:
      float32 [B, P, V], P the longest list; each row is a softmax over the vocabulary. Rows past the
      end of a shorter list hold the probabilities at position 0 and should be ignored.
    """
    if self.mlm_head is None:
      raise ValueError("this encoder was loaded without the masked-LM head")
    ids, mask, segments = self._pad(inputs)
    width = max(len(p) for p in positions)
    padded = np.zeros([len(inputs), width], np.int32)
    for row, p in enumerate(positions):
      padded[row, :len(p)] = p
    probabilities = self._mlm(ids, mask, segments, padded).numpy()
    return probabilities.reshape([len(inputs), width, -1])


def layer_indices(spec: str, num_layers: int, flag_name: str = "layers") -> list[int]:
  """Parses "-1,-2" into indices of `all_encoder_layers` (0-based or negative), checking the range.

  Args:
    spec: comma-separated integers, as given on the command line.
    num_layers: the number of layer outputs (`Encoder.num_layers`).
    flag_name: the flag named in the UserError for a malformed, empty or out-of-range spec.
  Returns:
    The indices as given (negative ones are not converted), in order.
  """
  try:
    indices = [int(part) for part in spec.split(",") if part.strip()]
  except ValueError:
    raise UserError(f"--{flag_name}: expected comma-separated integers such as -1,-2, got {spec!r}") from None
  if not indices:
    raise UserError(f"--{flag_name} is empty")
  for index in indices:
    if not -num_layers <= index < num_layers:
      raise UserError(f"--{flag_name}: layer {index} does not exist; the model has {num_layers} layers "
                      f"(0..{num_layers - 1} or -1..-{num_layers})")
  return indices


def pool(outputs: BatchOutputs, pooling: str, layer: int = 0) -> np.ndarray:
  """[B, H] from a batch: the mean over real tokens of a layer, its [CLS] vector, or the pooler output.

  Args:
    outputs: a batch's outputs from `Encoder.run`.
    pooling: "mean", "cls" or "pooled"; any other value means "mean".
    layer: which entry of `outputs.layers` "mean" and "cls" use (ignored for "pooled").
  Returns:
    float32 [B, H], not normalised.
  """
  if pooling == "pooled":
    return outputs.pooled
  sequence = outputs.layers[layer]
  if pooling == "cls":
    return sequence[:, 0, :]
  return masked_mean(sequence, outputs.input_mask)


def masked_mean(sequence: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
  """Mean of [B, S, H] over the positions where `input_mask` is 1 ([CLS] and [SEP] included).

  Args:
    sequence: float [B, S, H].
    input_mask: [B, S] of 0 and 1; every row needs at least one 1.
  Returns:
    [B, H], float32 for float32 `sequence`.
  """
  weights = input_mask.astype(np.float32)[:, :, None]
  return (sequence * weights).sum(axis=1) / weights.sum(axis=1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
  """Scales each vector along the last axis to unit length, so dot products become cosines.

  Args:
    vectors: float [..., H]; an all-zero vector stays zero instead of becoming NaN.
  Returns:
    float32 array of the same shape.
  """
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


# ---- loading ----

def load_encoder(setup: ModelSetup, init_checkpoint: str | None, max_seq_length: int,
                 compute_dtype: tf.DType | str = tf.float32, with_mlm_head: bool = False) -> Encoder:
  """An Encoder with every weight loaded: from `init_checkpoint`, or from the TF-Hub module of `setup`.

  Args:
    setup: the `albert.cli.model_loader.ModelSetup` of the model flags.
    init_checkpoint: a checkpoint prefix or directory (optional with a TF-Hub module).
    max_seq_length: pieces per input, [CLS] and [SEP] included.
    compute_dtype: the activation dtype.
    with_mlm_head: also load the masked-LM head `cls/predictions` (fill_mask).
  Returns:
    The Encoder. A checkpoint that lacks encoder variables (or, with `with_mlm_head`, the head) is a
    UserError: inference never runs on random weights.
  """
  if with_mlm_head and setup.hub_handle and setup.load_heads is None:
    raise UserError("--albert_hub_module_handle is not supported here: the masked-LM head is read from a "
                    "pretraining checkpoint; pass --albert_config_file and --init_checkpoint")
  if not init_checkpoint and not setup.hub_handle:
    raise UserError("--init_checkpoint is required (or --albert_hub_module_handle)")
  model = setup.create_encoder(compute_dtype)
  mlm_head = MaskedLMHead(setup.config, model.word_embeddings) if with_mlm_head else None
  if mlm_head is not None and setup.hub_handle and not init_checkpoint:
    setup.load_heads(mlm_head.named_variables(), "masked-LM head")
  source = dict(setup.source)
  if init_checkpoint:
    prefix = checkpoint.resolve_checkpoint(init_checkpoint, "init_checkpoint")
    named = {**model.named_variables(), **(mlm_head.named_variables() if mlm_head else {})}
    report = checkpoint.load_variables(named, prefix)
    logging.info("%s", report.summary())
    _require_loaded(report, prefix, with_mlm_head)
    source["init_checkpoint"] = prefix
  return Encoder(setup.config, model, setup.tokenizer, max_seq_length, mlm_head, source)


def _require_loaded(report, prefix, with_mlm_head):
  """Inference on random weights is never what the user wants: every variable must come from `prefix`."""
  encoder_missing = [n for n in report.missing if n.startswith(variables.ENCODER_SCOPE + "/")]
  if encoder_missing:
    raise UserError(f"--init_checkpoint {prefix} lacks {len(encoder_missing)} ALBERT encoder variables "
                    f"({abbreviate(encoder_missing, 3)}); is it an ALBERT checkpoint of this --albert_config_file?")
  if with_mlm_head and any(n.startswith(variables.MLM_SCOPE + "/") for n in report.missing):
    raise UserError(f"--init_checkpoint {prefix} has no masked-LM head (cls/predictions/*); fill_mask needs "
                    "a pretraining checkpoint, not a fine-tuned one")
