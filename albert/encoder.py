"""A pretrained or fine-tuned ALBERT encoder plus its tokenizer, ready to embed texts in batches.

The inference tools (`fill_mask`, `extract_features`, `retrieve`) share this: the model flags, loading
weights by name from a checkpoint (or a TF-Hub module), building `[CLS] a [SEP] (b [SEP])` inputs with
pieces that know their span in the raw text, running batches padded to their longest input, pooling,
and writing `.npy` files row by row without holding a whole collection in memory.
"""

import contextlib
import struct
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from absl import flags, logging

from albert import checkpoint, hub, trainer
from albert.fileio import atomic_open
from albert.config import AlbertConfig
from albert.errors import UserError
from albert.flags import validate_seq_length
from albert.modeling import AlbertModel, MaskedLMHead
from albert.model_setup import tokenizer_from_flags

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"
POOLINGS = ("mean", "cls", "pooled")
ENCODER_PREFIX = "bert/"
MLM_PREFIX = "cls/predictions/"


def define_flags(max_seq_length=128, batch_size=8, flag_values=None):
  """The model, tokenizer and batching flags (original names and meanings; `--precision` is new)."""
  fv = flags.FLAGS if flag_values is None else flag_values

  def define(definer, name, *args):
    if name not in fv:
      definer(name, *args, flag_values=fv)

  define(flags.DEFINE_string, "albert_config_file", None,
         "The albert_config.json of the model; it specifies the model architecture.")
  define(flags.DEFINE_string, "init_checkpoint", None,
         "The checkpoint to load (a prefix such as model.ckpt-1000, or a directory: its latest one).")
  define(flags.DEFINE_string, "spm_model_file", None, "The SentencePiece model file of the model.")
  define(flags.DEFINE_string, "vocab_file", None,
         "The WordPiece vocabulary file (unused when --spm_model_file is given).")
  define(flags.DEFINE_bool, "do_lower_case", True, "Whether to lower case the input text; True for uncased models.")
  define(flags.DEFINE_string, "albert_hub_module_handle", None,
         "A TF-Hub ALBERT module to use instead of --albert_config_file and --init_checkpoint.")
  define(flags.DEFINE_integer, "max_seq_length", max_seq_length,
         "Maximum pieces per model input, [CLS] and [SEP] included; longer texts are truncated.")
  define(flags.DEFINE_integer, "batch_size", batch_size, "Texts per model call.")
  define(flags.DEFINE_enum, "precision", "float32", list(trainer.PRECISIONS),
         "Compute dtype of activations; weights stay float32.")


class EncodedInput(NamedTuple):
  """One model input: pieces (specials included), their ids and segments, and where they came from."""
  tokens: list        # pieces, e.g. ["[CLS]", "▁hello", "[SEP]"]
  input_ids: list
  segment_ids: list
  offsets: list       # per piece: (start, end) in the raw text of its segment, or None for [CLS]/[SEP]
  truncated: bool


class BatchOutputs(NamedTuple):
  """numpy outputs of one batch; `layers` holds the requested encoder layers, each [B, S, H]."""
  pooled: np.ndarray
  layers: tuple
  input_mask: np.ndarray


class Encoder:
  """ALBERT model + tokenizer with the `[CLS] a [SEP] (b [SEP])` input layout of the original scripts."""

  def __init__(self, config, model, tokenizer, max_seq_length, mlm_head=None, source=None):
    self.config = config
    self.model = model
    self.tokenizer = tokenizer
    self.max_seq_length = max_seq_length
    self.mlm_head = mlm_head
    self.source = source or {}
    self._forward = tf.function(self._forward_eager, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3)
    self._mlm = tf.function(self._mlm_eager, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 4)

  @property
  def hidden_size(self):
    return self.config.hidden_size

  @property
  def num_layers(self):
    """How many encoder layer outputs there are (`all_encoder_layers`: L * inner_group_num)."""
    return self.config.num_hidden_layers * self.config.inner_group_num

  def tokenize(self, text):
    """Pieces of raw `text` with their raw spans (preprocessing per --do_lower_case applied inside)."""
    return self.tokenizer.tokenize_with_offsets(text)

  def build_input(self, tokens_a, tokens_b=None):
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` from `Token`s, truncated to --max_seq_length.

    Pairs lose pieces from the end of the longer side first, like the original classifier features.
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

  def encode_text(self, text_a, text_b=None):
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

  def run(self, inputs, layers=(-1,)):
    """Runs a batch of `EncodedInput`s; `layers` index `all_encoder_layers` (negative from the end)."""
    ids, mask, segments = self._pad(inputs)
    pooled, all_layers = self._forward(ids, mask, segments)
    return BatchOutputs(pooled.numpy(), tuple(all_layers[i].numpy() for i in layers), mask)

  def embed(self, inputs, pooling):
    """[B, H] float32 L2-normalised embeddings of a batch (`pooling`: mean, cls or pooled)."""
    outputs = self.run(inputs)
    return l2_normalize(pool(outputs, pooling))

  def _mlm_eager(self, ids, mask, segments, positions):
    outputs = self.model(ids, mask, segments, training=False)
    return tf.nn.softmax(self.mlm_head(outputs.sequence_output, positions), axis=-1)

  def masked_lm_probabilities(self, inputs, positions):
    """[B, P, V] float32 probabilities at `positions` (one list per input; shorter lists are padded)."""
    if self.mlm_head is None:
      raise ValueError("this encoder was loaded without the masked-LM head")
    ids, mask, segments = self._pad(inputs)
    width = max(len(p) for p in positions)
    padded = np.zeros([len(inputs), width], np.int32)
    for row, p in enumerate(positions):
      padded[row, :len(p)] = p
    probabilities = self._mlm(ids, mask, segments, padded).numpy()
    return probabilities.reshape([len(inputs), width, -1])


def layer_indices(spec, num_layers, flag_name="layers"):
  """Parses "-1,-2" into indices of `all_encoder_layers` (0-based or negative), checking the range."""
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


def pool(outputs, pooling, layer=0):
  """[B, H] from a batch: the mean over real tokens of a layer, its [CLS] vector, or the pooler output."""
  if pooling == "pooled":
    return outputs.pooled
  sequence = outputs.layers[layer]
  if pooling == "cls":
    return sequence[:, 0, :]
  return masked_mean(sequence, outputs.input_mask)


def masked_mean(sequence, input_mask):
  """Mean of [B, S, H] over the positions where `input_mask` is 1 ([CLS] and [SEP] included)."""
  weights = input_mask.astype(np.float32)[:, :, None]
  return (sequence * weights).sum(axis=1) / weights.sum(axis=1)


def l2_normalize(vectors):
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def batched(items, size):
  """Lists of `size` consecutive items (the last one shorter), consuming `items` lazily."""
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


# ---- loading ----

def load_encoder(flag_values=None, with_mlm_head=False):
  """The Encoder the model flags describe; `with_mlm_head` also loads `cls/predictions` (fill_mask)."""
  fv = flags.FLAGS if flag_values is None else flag_values
  if fv.batch_size <= 0:
    raise UserError(f"--batch_size must be positive, got {fv.batch_size}")
  compute_dtype = trainer.compute_dtype_for(fv.precision)
  if fv.albert_hub_module_handle:
    return _load_from_hub(fv, compute_dtype, with_mlm_head)
  if not fv.albert_config_file:
    raise UserError("--albert_config_file is required (or --albert_hub_module_handle)")
  config = AlbertConfig.from_json_file(fv.albert_config_file)
  validate_seq_length(fv.max_seq_length, config)
  tokenizer = tokenizer_from_flags(fv)
  _check_vocab(tokenizer, config)
  prefix = checkpoint.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
  model = AlbertModel(config, compute_dtype)
  mlm_head = MaskedLMHead(config, model.word_embeddings) if with_mlm_head else None
  named = dict(model.named_variables())
  if mlm_head is not None:
    named.update(mlm_head.named_variables())
  report = checkpoint.load_variables(named, prefix)
  logging.info("%s", report.summary())
  _require_loaded(report, prefix, with_mlm_head)
  source = {"albert_config_file": fv.albert_config_file, "init_checkpoint": prefix}
  return Encoder(config, model, tokenizer, fv.max_seq_length, mlm_head, _with_tokenizer_source(source, fv))


def _load_from_hub(fv, compute_dtype, with_mlm_head):
  if with_mlm_head:
    raise UserError("--albert_hub_module_handle is not supported here: the masked-LM head is read from a "
                    "pretraining checkpoint; pass --albert_config_file and --init_checkpoint")
  expected = AlbertConfig.from_json_file(fv.albert_config_file) if fv.albert_config_file else None
  lower_case = fv.do_lower_case if fv["do_lower_case"].present else None
  config, model, tokenizer = hub.create_model_and_tokenizer(
      fv.albert_hub_module_handle, fv.spm_model_file, lower_case, compute_dtype, expected)
  validate_seq_length(fv.max_seq_length, config)
  _check_vocab(tokenizer, config)
  source = {"albert_hub_module_handle": fv.albert_hub_module_handle}
  if fv.init_checkpoint:
    prefix = checkpoint.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
    report = checkpoint.load_variables(model.named_variables(), prefix)
    logging.info("%s", report.summary())
    _require_loaded(report, prefix, False)
    source["init_checkpoint"] = prefix
  source["do_lower_case"] = tokenizer.do_lower_case
  if fv.spm_model_file:
    source["spm_model_file"] = fv.spm_model_file
  return Encoder(config, model, tokenizer, fv.max_seq_length, None, source)


def _with_tokenizer_source(source, fv):
  if fv.spm_model_file:
    source["spm_model_file"] = fv.spm_model_file
  else:
    source["vocab_file"] = fv.vocab_file
  source["do_lower_case"] = fv.do_lower_case
  return source


def _check_vocab(tokenizer, config):
  if len(tokenizer.vocab) > config.vocab_size:
    raise UserError(f"the vocabulary has {len(tokenizer.vocab)} pieces but the model's vocab_size is "
                    f"{config.vocab_size}; are --spm_model_file/--vocab_file the model's own?")


def _require_loaded(report, prefix, with_mlm_head):
  """Inference on random weights is never what the user wants: every variable must come from `prefix`."""
  encoder_missing = [n for n in report.missing if n.startswith(ENCODER_PREFIX)]
  if encoder_missing:
    raise UserError(f"--init_checkpoint {prefix} lacks {len(encoder_missing)} ALBERT encoder variables "
                    f"({', '.join(encoder_missing[:3])}{', ...' if len(encoder_missing) > 3 else ''}); "
                    "is it an ALBERT checkpoint of this --albert_config_file?")
  if with_mlm_head and any(n.startswith(MLM_PREFIX) for n in report.missing):
    raise UserError(f"--init_checkpoint {prefix} has no masked-LM head (cls/predictions/*); fill_mask needs "
                    "a pretraining checkpoint, not a fine-tuned one")


# ---- .npy files written row by row ----

_NPY_HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + a space-padded dict ending in "\n"


def _npy_header(shape, dtype):
  """A version 1.0 .npy header of a fixed size, so it can be rewritten once the row count is known."""
  text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str, tuple(shape))
  room = _NPY_HEADER_BYTES - 10 - 1
  if len(text) > room:
    raise ValueError(f"shape {shape} does not fit a {_NPY_HEADER_BYTES}-byte .npy header")
  body = (text.ljust(room) + "\n").encode("latin1")
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


class NpyRowWriter:
  """Appends rows of a fixed shape to an open binary file holding an .npy array."""

  def __init__(self, file, row_shape, dtype=np.float32):
    self.file, self.row_shape, self.dtype = file, tuple(row_shape), np.dtype(dtype)
    self.count = 0
    file.write(_npy_header((0,) + self.row_shape, self.dtype))

  def append(self, rows):
    rows = np.ascontiguousarray(rows, dtype=self.dtype)
    if rows.shape[1:] != self.row_shape:
      raise ValueError(f"rows of shape {rows.shape[1:]} appended to an array of rows {self.row_shape}")
    self.file.write(rows.tobytes())
    self.count += rows.shape[0]

  def finish(self):
    self.file.seek(0)
    self.file.write(_npy_header((self.count,) + self.row_shape, self.dtype))
    self.file.seek(0, 2)


@contextlib.contextmanager
def npy_row_writer(path, row_shape, dtype=np.float32):
  """Writes `path` (.npy) atomically from rows appended one batch at a time; memory stays one batch."""
  with atomic_open(path, "wb") as f:
    writer = NpyRowWriter(f, row_shape, dtype)
    yield writer
    writer.finish()
