r"""Exports a pretrained ALBERT as a TensorFlow 2 SavedModel for `hub.load` and `hub.KerasLayer`.

    python -m albert.export_to_tfhub --albert_directory=albert_base \
      --checkpoint_name=model.ckpt-best --export_path=hub/albert_base

The module keeps the original's interface (spec §12.1) where TensorFlow 2 can express it:
- signatures `tokens`, `sop` and `mlm` (inputs `input_ids`, `input_mask`, `segment_ids` [, `mlm_positions`],
  int32 [batch, seq]; `mlm_logits` flattened to [batch * positions, vocab]) and `tokenization_info`
  (`vocab_file`: the asset path of the SentencePiece model, `do_lower_case`);
- the assets `albert_config.json`, `30k-clean.model` and, if present, `30k-clean.vocab`;
- the variables under their original names (`bert/...`, `cls/...`), which `tf.saved_model.load` keeps.
It adds the common TF2 encoder interface: a `serving_default` signature (`input_word_ids`,
`input_mask`, `input_type_ids` -> `pooled_output`, `sequence_output`) and a reusable `__call__(inputs,
training)` with `variables`/`trainable_variables`, so `hub.KerasLayer(path, trainable=True)` fine-tunes
it. `training=True` applies the config's dropout; the signatures never do (the TF1 `train` tag variant
has no TF2 counterpart).
"""

import os
import shutil
import uuid

from absl import flags
import tensorflow as tf

from albert.errors import UserError, require_file, run_main
from albert.export_checkpoints import CONFIG_FILENAME, load_pretraining_model

SPM_FILENAME = "30k-clean.model"
SPM_VOCAB_FILENAME = "30k-clean.vocab"


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
        require_file(os.path.join(albert_directory, SPM_FILENAME), f"albert_directory ({SPM_FILENAME})"))
    vocab = os.path.join(albert_directory, SPM_VOCAB_FILENAME)
    self.vocab_file = tf.saved_model.Asset(vocab) if os.path.isfile(vocab) else None
    self.do_lower_case = bool(do_lower_case)

  def _encode(self, input_ids, input_mask, segment_ids, training=False):
    return self.pretraining.model(input_ids, input_mask, segment_ids, training=training)

  @tf.function
  def __call__(self, inputs, training=False):
    """The TF2 encoder interface; also returns every layer and the embeddings (see hub.HubAlbertModel)."""
    outputs = self._encode(inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"], training)
    return {"pooled_output": outputs.pooled_output, "sequence_output": outputs.sequence_output,
            "encoder_outputs": list(outputs.all_encoder_layers), "embedding_output": outputs.embedding_output,
            "word_embedding_output": outputs.word_embedding_output}

  @tf.function(input_signature=[ENCODER_INPUT_SPEC])
  def serving_default(self, inputs):
    outputs = self._encode(inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"])
    return {"pooled_output": outputs.pooled_output, "sequence_output": outputs.sequence_output}

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
  parent = os.path.dirname(os.path.abspath(export_path))
  os.makedirs(parent, exist_ok=True)
  temporary = os.path.join(parent, f".{os.path.basename(export_path)}.tmp-{uuid.uuid4().hex}")
  try:
    tf.saved_model.save(module, temporary, signatures=module.signature_functions())
    _replace_directory(temporary, export_path)
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  return export_path


def _replace_directory(source, target):
  if os.path.exists(target) and not os.path.isdir(target):
    raise UserError(f"--export_path: {target} exists and is not a directory")
  if os.path.isdir(target):
    retired = f"{source}.old"
    os.replace(target, retired)
    os.replace(source, target)
    shutil.rmtree(retired, ignore_errors=True)
  else:
    os.replace(source, target)


def define_flags():
  flags.DEFINE_string("albert_directory", None,
                      "Directory with albert_config.json, 30k-clean.model, 30k-clean.vocab (optional) and the "
                      "checkpoint.")
  flags.DEFINE_string("checkpoint_name", "model.ckpt-best", "Name of the checkpoint under albert_directory.")
  flags.DEFINE_bool("do_lower_case", True, "Whether the module's tokenizer lower-cases (tokenization_info).")
  flags.DEFINE_bool("use_einsum", True, "Accepted for compatibility; the exported graph uses plain matmuls, "
                    "which every TensorFlow 2 runtime and converter supports.")
  flags.DEFINE_string("export_path", None, "Output directory of the SavedModel.")


def main(argv):
  del argv
  fv = flags.FLAGS
  path = export_module(fv.albert_directory, fv.checkpoint_name, fv.export_path, fv.do_lower_case)
  print(f"exported the TF-Hub module to {path}")


if __name__ == "__main__":
  define_flags()
  run_main(main)
