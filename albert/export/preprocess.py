"""The text preprocessing SavedModel that goes with an exported encoder, with the interface of Model Garden's
`albert_en_preprocess/3`, so code written for the TF-Hub tutorials runs on our exports unchanged:

    preprocess = hub.load(P)                      # or hub.KerasLayer(P)
    preprocess(strings)                           # {input_word_ids, input_mask, input_type_ids}: int32 [B, 128]
    preprocess.tokenize(strings)                  # int32 RaggedTensor [B, (pieces)]
    preprocess.tokenize.get_special_tokens_dict() # vocab_size, start_of_sequence_id, end_of_segment_id, ...
    preprocess.bert_pack_inputs([a, b], seq_length=N)

Tokenization is `albert.text.in_graph.InGraphTokenizer`: the original's preprocessing, SentencePiece and
digit-comma rule (docs/compatibility.md §4.2-4.3), so the ids equal what our own runners feed the model.
Packing is [CLS] a [SEP] (b [SEP]) with type ids 0 then 1, both segments trimmed round-robin to fit, and
padding with 0 (docs/compatibility.md §4.6). It needs tensorflow-text, the `[serving]` extra.
"""

from __future__ import annotations

import os

import tensorflow as tf

from albert.core import fileio
from albert.core.errors import UserError
from albert.text import in_graph
from albert.text.tokenizer import SPM_MODEL_FILENAME, read_file_bytes

DEFAULT_SEQ_LENGTH = 128
_MAX_SEGMENTS = 2


def _tf_text():
  import tensorflow_text
  return tensorflow_text


_SEGMENT_SPEC = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1, row_splits_dtype=tf.int64)


class _Tokenize(tf.Module):
  """`preprocess.tokenize`: callable on strings, with `get_special_tokens_dict` as Model Garden's has."""

  def __init__(self, tokenizer):
    super().__init__(name="tokenize")
    self.tokenizer = tokenizer
    self._special = {"vocab_size": tokenizer.vocab_size, "start_of_sequence_id": tokenizer.cls_id,
                     "end_of_segment_id": tokenizer.sep_id, "padding_id": tokenizer.pad_id,
                     "mask_id": tokenizer.mask_id}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, strings):
    return self.tokenizer.tokenize(strings)

  @tf.function(input_signature=[])
  def get_special_tokens_dict(self):
    return {key: tf.constant(value, tf.int32) for key, value in self._special.items()}


class AlbertPreprocessModule(tf.Module):
  """The exported preprocessing object (see the module docstring for its calls).

  Args:
    tokenizer: an `InGraphTokenizer` of the encoder's SentencePiece model and casing.
  """

  def __init__(self, tokenizer: in_graph.InGraphTokenizer) -> None:
    super().__init__(name="albert_preprocess")
    self.tokenize = _Tokenize(tokenizer)
    self._cls_id, self._sep_id = tokenizer.cls_id, tokenizer.sep_id

  def _pack(self, segments, seq_length):
    """[CLS] a [SEP] (b [SEP]) as dense int32 [B, seq_length] ids, mask and type ids."""
    segments = [tf.cast(segment, tf.int32) for segment in segments]
    budget = seq_length - (len(segments) + 1)
    trimmed = _tf_text().RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    ids, type_ids = _tf_text().combine_segments(trimmed, start_of_sequence_id=self._cls_id,
                                               end_of_segment_id=self._sep_id)
    word_ids, mask = _tf_text().pad_model_inputs(tf.cast(ids, tf.int32), max_seq_length=seq_length)
    type_ids, _ = _tf_text().pad_model_inputs(tf.cast(type_ids, tf.int32), max_seq_length=seq_length)
    return {"input_word_ids": word_ids, "input_mask": tf.cast(mask, tf.int32), "input_type_ids": type_ids}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, strings):
    """One text per example, packed at length 128 (Model Garden's default call)."""
    return self._pack([self.tokenize.tokenizer.tokenize(strings)], DEFAULT_SEQ_LENGTH)

  @tf.function
  def bert_pack_inputs(self, inputs, seq_length=DEFAULT_SEQ_LENGTH):
    """Packs a list of one or two tokenized segments (int32 ragged [B, (pieces)], as `tokenize` returns them)
    into model inputs of length `seq_length`."""
    return self._pack(list(inputs), seq_length)

  def trace(self):
    """Traces `bert_pack_inputs` for one and two segments as `tokenize` returns them, `seq_length` a scalar."""
    for count in range(1, _MAX_SEGMENTS + 1):
      self.bert_pack_inputs.get_concrete_function([_SEGMENT_SPEC] * count, seq_length=tf.TensorSpec([], tf.int32))


def export_preprocess_module(albert_directory: str, export_path: str, do_lower_case: bool) -> str:
  """Writes the preprocessing SavedModel for the encoder in `albert_directory` to `export_path` (replacing an
  earlier one only once the new one is complete).

  Args:
    albert_directory: the model directory; its `30k-clean.model` is the tokenizer's.
    export_path: the output directory.
    do_lower_case: the encoder's casing.
  Returns:
    `export_path`.
  """
  if not albert_directory:
    raise UserError("--albert_directory is required")
  if not in_graph.available():
    raise UserError("--export_preprocess_path: needs tensorflow-text, which the [serving] extra installs "
                    "(pip install 'albert[serving]')")
  spm_file = os.path.join(albert_directory, SPM_MODEL_FILENAME)
  model_proto = read_file_bytes(spm_file, f"albert_directory ({SPM_MODEL_FILENAME})")
  module = AlbertPreprocessModule(in_graph.InGraphTokenizer(model_proto, do_lower_case, source=spm_file))
  module.trace()
  with fileio.atomic_directory(export_path) as staging:
    tf.saved_model.save(module, staging, signatures={"serving_default": module.__call__})
  return export_path
