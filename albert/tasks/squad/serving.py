"""SQuAD serving export (`--export_dir`): a SavedModel over int32 ids (and over text), and the v1 TFLite file.

`<export_dir>/saved_model/<timestamp>` has a `serving_default` signature taking int32 [batch,
max_seq_length] `input_ids`, `input_mask` and `segment_ids` and returning the task's answer outputs
(v1: start/end logits; v2: the beam outputs and cls_logits, with p_mask rebuilt from the inputs).
With tensorflow-text installed (the `[serving]` extra) and a SentencePiece model, a second signature,
`serve_text`, takes `question` and `context` strings [batch] and returns the answers themselves
(`albert.tasks.squad.text_serving`).
"""

import os

import tensorflow as tf
from absl import logging

from albert.export import savedmodel
from albert.tasks.squad.text_serving import SquadTextAnswers
from albert.text import in_graph

SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "albert_model.tflite"


class SquadServing(tf.Module):
  """The exported model: float32 weights and a `serving_default` over int32 [batch, max_seq_length]
  input_ids, input_mask and segment_ids."""

  def __init__(self, task, seq_length, text_answers=None):
    super().__init__(name="albert_squad")
    self.model, self.head, self._task = task.model, task.head, task
    specs = [tf.TensorSpec([None, seq_length], tf.int32, name=name)
             for name in ("input_ids", "input_mask", "segment_ids")]
    self.serve = tf.function(self._serve, input_signature=specs)
    self.text_answers = text_answers
    if text_answers is not None:
      self.serve_text = tf.function(text_answers, input_signature=[
          tf.TensorSpec([None], tf.string, name="question"), tf.TensorSpec([None], tf.string, name="context")])

  def _serve(self, input_ids, input_mask, segment_ids):
    return self._task.answer_outputs(self._task.serving_features(input_ids, input_mask, segment_ids))

  def signatures(self):
    signatures = {"serving_default": self.serve}
    if self.text_answers is not None:
      signatures["serve_text"] = self.serve_text
    return signatures


def text_answers(task, tokenizer, windows):
  """The `serve_text` path, or None (logged) when tensorflow-text or a SentencePiece model is missing.

  Args:
    task: the loaded export task.
    tokenizer: the run's FullTokenizer.
    windows: dict of max_seq_length, doc_stride, max_query_length and rules (AnswerRules).
  """
  if tokenizer is None or tokenizer.sp_model is None:
    logging.info("no serve_text signature: it needs a SentencePiece model (WordPiece is not tokenized in-graph)")
    return None
  if not in_graph.available():
    logging.info("no serve_text signature: install the [serving] extra (tensorflow-text) for text-in serving")
    return None
  graph_tokenizer = in_graph.InGraphTokenizer(tokenizer.sp_model.serialized_model_proto(), tokenizer.do_lower_case)
  return SquadTextAnswers(task, graph_tokenizer, **windows)


def export(task, prefix, export_dir, seq_length, tokenizer=None, windows=None):
  """SavedModel of checkpoint `prefix` under <export_dir>/saved_model/, plus the TFLite file where the
  original wrote one (v1). With the run's `tokenizer` and `windows` settings (see `text_answers`) it also
  gets the `serve_text` signature. Returns the SavedModel directory."""
  export_task = savedmodel.load_task_for_export(task, prefix, "SQuAD model")
  answers = text_answers(export_task, tokenizer, windows) if windows else None
  module = SquadServing(export_task, seq_length, answers)
  path = savedmodel.save_timestamped(module, os.path.join(export_dir, SAVED_MODEL_DIR), module.signatures())
  logging.info("exported %s to %s", prefix, path)
  if task.exports_tflite:
    savedmodel.write_tflite(path, os.path.join(export_dir, TFLITE_FILE), signature="serving_default")
  return path
