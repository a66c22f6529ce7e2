"""A pretrained ALBERT as a TensorFlow 2 SavedModel for `hub.load` and `hub.KerasLayer`.

The module keeps the original's interface (docs/compatibility.md §12.1) where TensorFlow 2 can express it:
- signatures `tokens`, `sop` and `mlm` (inputs `input_ids`, `input_mask`, `segment_ids` [, `mlm_positions`],
  int32 [batch, seq]; `mlm_logits` flattened to [batch * positions, vocab]) and `tokenization_info`
  (`vocab_file`: the asset path of the SentencePiece model, `do_lower_case`);
- the assets `albert_config.json`, `30k-clean.model` and, if present, `30k-clean.vocab`;
- the variables under their original names (`bert/...`, `cls/...`), which `tf.saved_model.load` keeps.
It adds the interface of Model Garden's TF2 encoders (`tensorflow/albert_en_base/3`), so code written for them
runs on it: a reusable `__call__(inputs, training)` taking a dict of int32 [batch, seq] `input_word_ids`,
`input_mask`, `input_type_ids` and returning `pooled_output` [B, H], `default` (the same), `sequence_output`
[B, S, H] and `encoder_outputs` (one [B, S, H] per layer, in order), plus our `embedding_output` and
`word_embedding_output`; `variables`/`trainable_variables`, so `hub.KerasLayer(path, trainable=True)`
fine-tunes it; and a `serving_default` signature with the same inputs and outputs, the layers flattened to
`encoder_outputs_<i>` (signatures cannot return lists). `training=True` applies the config's dropout; the
signatures never do (the TF1 `train` tag variant has no TF2 counterpart). `albert.export.preprocess` writes
the matching text preprocessing model.
"""

import os

import tensorflow as tf

from albert.core import fileio
from albert.core.errors import UserError, require_file
from albert.export.checkpoints import load_pretraining_model
from albert.model.config import CONFIG_FILENAME
from albert.text.tokenizer import SPM_MODEL_FILENAME, SPM_VOCAB_FILENAME


def _ids(name):
  return tf.TensorSpec([None, None], tf.int32, name=name)


ENCODER_INPUT_SPEC = {"input_word_ids": _ids("input_word_ids"), "input_mask": _ids("input_mask"),
                      "input_type_ids": _ids("input_type_ids")}


class AlbertHubModule(tf.Module):
  """The exported object. `variables` and friends are plain attributes here because tf.Module's
  properties of the same names are not saved, and hub.KerasLayer reads them from the loaded object.
  """
  variables = None
  trainable_variables = None
  regularization_losses = None

  def __init__(self, pretraining_model, albert_directory, do_lower_case):
    super().__init__(name="albert_hub_module")
    self.pretraining = pretraining_model
    named = pretraining_model.named_variables()
    self.variables = [named[name] for name in sorted(named)]
    self.trainable_variables = list(self.variables)
    self.regularization_losses = []
    self.config_file = tf.saved_model.Asset(os.path.join(albert_directory, CONFIG_FILENAME))
    self.vocab_model = tf.saved_model.Asset(
        require_file(os.path.join(albert_directory, SPM_MODEL_FILENAME), f"albert_directory ({SPM_MODEL_FILENAME})"))
    vocab = os.path.join(albert_directory, SPM_VOCAB_FILENAME)
    self.vocab_file = tf.saved_model.Asset(vocab) if os.path.isfile(vocab) else None
    self.do_lower_case = bool(do_lower_case)

  def _encode(self, input_ids, input_mask, segment_ids, training=False):
    return self.pretraining.model(input_ids, input_mask, segment_ids, training=training)

  @tf.function
  def __call__(self, inputs, training=False):
    """The TF2 encoder interface; also returns the embeddings (albert.model.hub reads them)."""
    outputs = self._encode(inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"], training)
    return {"pooled_output": outputs.pooled_output, "default": outputs.pooled_output,
            "sequence_output": outputs.sequence_output, "encoder_outputs": list(outputs.all_encoder_layers),
            "embedding_output": outputs.embedding_output, "word_embedding_output": outputs.word_embedding_output}

  @tf.function(input_signature=[ENCODER_INPUT_SPEC])
  def serving_default(self, inputs):
    outputs = self.__call__(inputs, training=False)
    flat = {key: value for key, value in outputs.items() if key != "encoder_outputs"}
    flat.update({f"encoder_outputs_{i}": layer for i, layer in enumerate(outputs["encoder_outputs"])})
    return flat

  @tf.function(input_signature=[_ids("input_ids"), _ids("input_mask"), _ids("segment_ids")])
  def tokens(self, input_ids, input_mask, segment_ids):
    outputs = self._encode(input_ids, input_mask, segment_ids)
    return {"sequence_output": outputs.sequence_output, "pooled_output": outputs.pooled_output}

  @tf.function(input_signature=[_ids("input_ids"), _ids("input_mask"), _ids("segment_ids")])
  def sop(self, input_ids, input_mask, segment_ids):
    outputs = self._encode(input_ids, input_mask, segment_ids)
    logits = self.pretraining.sentence_order(outputs.pooled_output)
    return {"sequence_output": outputs.sequence_output, "pooled_output": outputs.pooled_output,
            "sop_log_probs": tf.nn.log_softmax(logits, axis=-1)}

  @tf.function(input_signature=[_ids("input_ids"), _ids("input_mask"), _ids("segment_ids"), _ids("mlm_positions")])
  def mlm(self, input_ids, input_mask, segment_ids, mlm_positions):
    outputs = self._encode(input_ids, input_mask, segment_ids)
    return {"sequence_output": outputs.sequence_output, "pooled_output": outputs.pooled_output,
            "mlm_logits": self.pretraining.masked_lm(outputs.sequence_output, mlm_positions)}

  @tf.function(input_signature=[])
  def tokenization_info(self):
    return {"vocab_file": self.vocab_model.asset_path, "do_lower_case": tf.constant(self.do_lower_case)}

  def signature_functions(self):
    return {"serving_default": self.serving_default, "tokens": self.tokens, "sop": self.sop, "mlm": self.mlm,
            "tokenization_info": self.tokenization_info}

  def trace_call(self):
    """Traces `__call__` for both values of `training`, so the loaded module offers both."""
    for training in (False, True):
      self.__call__.get_concrete_function(ENCODER_INPUT_SPEC, training=training)


def export_module(albert_directory, checkpoint_name, export_path, do_lower_case=True):
  """Writes the SavedModel to `export_path` (replacing an earlier export only once the new one is complete)."""
  if not export_path:
    raise UserError("--export_path is required")
  _, model, _ = load_pretraining_model(albert_directory, checkpoint_name)
  module = AlbertHubModule(model, albert_directory, do_lower_case)
  module.trace_call()
  with fileio.atomic_directory(export_path) as staging:
    tf.saved_model.save(module, staging, signatures=module.signature_functions())
  return export_path
