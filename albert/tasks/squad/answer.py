"""Answers from raw text with a fine-tuned SQuAD model (`python -m albert.answer`).

The SQuAD pipeline's own pieces do the work: a question and its context become windows exactly as in
run_squad_* (`albert.tasks.squad.windows`), the task object of the model's version (`albert.tasks.squad.task`)
computes the head's outputs, and its post-processing (`albert.tasks.squad.postprocess`) makes the n-best
list. So one model gives the same best answer here as in run_squad_*'s predictions.json.

An answer is `context[start:end]`: its character offsets in the context as given. Its probability is
the n-best softmax of the original post-processing. SQuAD 2.0 models also report the null score diff
(the lowest answer-class logit over the windows, as in null_odds.json) and its sigmoid, the head's
probability that the question has no answer; the answer is "" when the diff reaches the null threshold.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core.errors import UserError, require_file
from albert.core.progress import ProgressLog
from albert.core.streams import batched
from albert.inference import onnx_engine
from albert.tasks.fine_tuned import ServingSignature, checkpoint_head, load_weights, wrong_model
from albert.io import structure
from albert.io.files import json_lines, read_text
from albert.tasks.squad import postprocess, windows
from albert.tasks.squad.examples import SquadExample, read_squad_examples
from albert.tasks.squad.task import SQUAD_TASKS, AnswerRules
from albert.training.checkpoint_selection import EVAL_RESULTS_JSON

if TYPE_CHECKING:
  from collections.abc import Iterable, Iterator

  from albert.cli.model_source import ModelSource

SQUAD_INPUTS = ("input_ids", "input_mask", "segment_ids")
V1_OUTPUTS = ("start_logits", "end_logits")
V2_OUTPUTS = ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits")
EXPECTED = "a SQuAD model fine-tuned with run_squad_v1 or run_squad_v2"
ONNX_VERSIONS = {"squad_v1": 1, "squad_v2": 2}  # albert.export.onnx task names
DEFAULT_MAX_SEQ_LENGTH = 384  # albert.answer's --max_seq_length default
_EXAMPLES_PER_CHUNK = 256  # questions converted and post-processed at a time: memory stays flat for any file


# ---- inputs ----

def _example(where, qas_id, question, context):
  """A SquadExample of one question, or a UserError naming `where` for an empty question or context."""
  if not question.strip():
    raise UserError(f"{where}: the question is empty")
  if not context.strip():
    raise UserError(f"{where}: the context is empty")
  return where, SquadExample(qas_id=qas_id, question_text=question, paragraph_text=context)


def question_from_flags(question: str | None, context: str | None,
                        context_file: str | None) -> tuple[str, SquadExample]:
  """(where, example) of `--question` with `--context` or the text of `--context_file`."""
  if question is None:
    raise UserError("--question is required (or --input_file)")
  if (context is None) == (context_file is None):
    raise UserError("pass the context as --context or --context_file (one of them)")
  if context_file is not None:
    context = read_text(require_file(context_file, "context_file"))
  for name, text in (("question", question), ("context_file" if context_file else "context", context)):
    if not text.strip():
      raise UserError(f"--{name} is empty")
  return _example("--question", "1", question, context)


def read_questions(path: str) -> tuple[Iterator[tuple[str, SquadExample]], int | None]:
  """(where, example) per question of `--input_file`, and their count when it is known (for the progress line).

  A `.json` file is a SQuAD file, read by the SQuAD reader (questions it cannot use are skipped and logged,
  as in run_squad_*). Any other file holds JSON lines {"id"?, "question", "context"}, streamed; an id
  defaults to the line number.
  """
  require_file(path, "input_file")
  if path.lower().endswith(".json"):
    examples = read_squad_examples(path, is_training=False).examples
    return ((f"--input_file {path} question {example.qas_id}", example) for example in examples), len(examples)
  return _json_lines(path), None


def _json_lines(path):
  for where, number, record in json_lines(path, f"--input_file {path}",
                                          expected='a JSON object {"id", "question", "context"}'):
    qas_id = record.get("id", (str, int), default=number)
    yield _example(where, str(qas_id), record.get("question", str), record.get("context", str))


# ---- the model ----

@dataclasses.dataclass(frozen=True)
class AnswerOptions:
  """How questions are windowed, batched and answered (the flags of `albert.answer`).

  `max_seq_length` None takes the SavedModel's length; `max_query_length` None keeps whole questions
  (a question that leaves no room for the context is an error) where a number truncates longer ones
  like run_squad_*. `version_2` None takes the model's version. `null_score_diff_threshold` None takes
  the threshold the run tuned (its eval_results.json), else always answers a span.
  """
  max_seq_length: int | None = 384
  doc_stride: int = 128
  max_query_length: int | None = None
  batch_size: int = 8
  rules: AnswerRules = AnswerRules()
  version_2: bool | None = None
  start_n_top: int = 5
  end_n_top: int = 5
  compute_dtype: tf.DType = tf.float32


class Answerer:
  """A SQuAD model and its post-processing: `answer(labelled_examples)` yields one result dict per question.

  Build it with `load_answerer`.

  Args:
    task: the SQuAD task object of the model's version (its post-processing; built only for a checkpoint).
    run_batch: `(features dict of int32 [B, S] arrays) -> dict of numpy outputs [B, ...]`.
    tokenizer: the model's tokenizer.
    max_seq_length: window length in pieces.
    options: the AnswerOptions.
    threshold: the v2 null threshold, or None (always a span).
  """

  def __init__(self, task, run_batch, tokenizer, max_seq_length, options, threshold=None):
    self.task, self.run_batch, self.tokenizer = task, run_batch, tokenizer
    self.max_seq_length, self.options, self.threshold = max_seq_length, options, threshold
    self.query_room = max_seq_length - 4  # [CLS] question [SEP] at least one context piece [SEP]
    max_query_length = options.max_query_length or self.query_room
    self.builder = windows.make_builder(tokenizer, max_seq_length, options.doc_stride, max_query_length,
                                        is_training=False)
    self._document = (None, None)  # the last context and its tokens: SQuAD files ask several questions of one

  @property
  def version(self):
    return self.task.version

  def windows(self, where, example_index, example):
    """The windows of one question (features with unique_ids still unset)."""
    query_length = len(self.builder.query_ids(example.question_text))
    if self.options.max_query_length is None and query_length > self.query_room:
      raise UserError(f"{where}: the question has {query_length} pieces, too long for --max_seq_length="
                      f"{self.max_seq_length} with room for the context (at most {self.query_room}); shorten it or "
                      "raise --max_seq_length")
    if self._document[0] != example.paragraph_text:
      self._document = (example.paragraph_text, self.builder.tokenize_document(example.paragraph_text))
    features, _ = self.builder.build(example_index, example, self._document[1])
    if not features:
      raise UserError(f"{where}: the context has no pieces the tokenizer keeps")
    return features

  def _results(self, features):
    """One raw result dict per window, in feature order, with `unique_ids` as post-processing expects."""
    names = SQUAD_INPUTS + (("p_mask",) if self.task.uses_p_mask else ())
    for batch in batched(features, self.options.batch_size):
      inputs = {name: np.stack([getattr(f, name) for f in batch]).astype(np.int32) for name in names}
      outputs = self.run_batch(inputs)
      for row, feature in enumerate(batch):
        yield {"unique_ids": feature.unique_id, **{name: value[row] for name, value in outputs.items()}}

  def answer(self, labelled_examples: Iterable[tuple[str, SquadExample]], total: int | None = None) -> Iterator[dict]:
    """The result of every (where, example), in order; see `prediction_record` for its fields."""
    progress = ProgressLog("answering", "questions", total)
    done = 0
    for chunk in batched(labelled_examples, _EXAMPLES_PER_CHUNK):
      examples = [example for _, example in chunk]
      features = [f for index, (where, example) in enumerate(chunk) for f in self.windows(where, index, example)]
      for unique_id, feature in enumerate(features):
        feature.unique_id = unique_id
      predictions = self.task.predictions(examples, [f.meta() for f in features], self._results(features),
                                          self.options.rules)
      for example, prediction in zip(examples, predictions):
        yield prediction_record(example, prediction, self.threshold if self.version == 2 else None,
                                self.version == 2)
        done += 1
        progress.update(done)
    progress.update(done, force=True)


def load_answerer(source: ModelSource, options: AnswerOptions) -> Answerer:
  """The Answerer of a model source: its version from the model (checked against `options.version_2`)."""
  if source.saved_model:
    return _from_saved_model(source, options)
  if source.onnx_model:
    return _from_onnx(source, options, onnx_engine.OnnxEngine(source.onnx_model))
  head = checkpoint_head(source.checkpoint)
  if head.kind != "squad":
    raise wrong_model(source.name, head, EXPECTED, "albert.answer")
  _check_version(options, head.version, source)
  task = _task(head.version, options, source.setup.config, source.setup.create_encoder)
  load_weights(task, source.checkpoint, source.from_hub)
  if source.engine == "onnx":
    engine = onnx_engine.from_task(task, source.setup.config, source.name, source.onnx_quantize)
    return _from_onnx(source, options, engine, task)
  signature = {name: tf.TensorSpec([None, None], tf.int32, name=name)
               for name in SQUAD_INPUTS + (("p_mask",) if task.uses_p_mask else ())}
  forward = tf.function(task.answer_outputs, input_signature=[signature])

  def run_batch(inputs):
    return {name: value.numpy() for name, value in forward(inputs).items()}

  return Answerer(task, run_batch, source.tokenizer, options.max_seq_length, options,
                  _threshold(options, head.version, source))


def _task(version, options, config=None, create_encoder=None, beam=None):
  if version == 1:
    return SQUAD_TASKS[1](config, create_encoder, options.compute_dtype)
  start_n_top, end_n_top = beam or (options.start_n_top, options.end_n_top)
  return SQUAD_TASKS[2](config, create_encoder, options.compute_dtype, start_n_top, end_n_top)


def _check_version(options, version, source):
  if options.version_2 is not None and options.version_2 != (version == 2):
    raise UserError(f"--{'' if options.version_2 else 'no'}version_2_with_negative, but {source.name} is a SQuAD "
                    f"v{version} model")
  if version == 1 and options.rules.null_score_diff_threshold is not None:
    raise UserError(f"--null_score_diff_threshold is for SQuAD 2.0 models; {source.name} is a SQuAD v1 model")


def _threshold(options, version, source):
  """The v2 null threshold: the flag's, else the one the run tuned on its dev set (eval_results.json)."""
  if version != 2 or options.rules.null_score_diff_threshold is not None:
    return options.rules.null_score_diff_threshold
  path = source.side_file(EVAL_RESULTS_JSON)
  if path is None:
    return None
  threshold = structure.parse(read_text(path), path).get("null_score_diff_threshold", (int, float), default=None)
  if threshold is not None:
    logging.info("null threshold %s: tuned by the run (%s)", threshold, path)
  return threshold


def _from_saved_model(source, options):
  signature = ServingSignature(source.saved_model)
  if "serialized_example" in signature.inputs:
    raise UserError(f"{source.name} is a classifier export (serialized_example input), not {EXPECTED}: use "
                    "albert.classify")
  missing = [name for name in SQUAD_INPUTS if name not in signature.inputs]
  if missing:
    raise UserError(f"{source.name} does not take the SQuAD inputs {', '.join(SQUAD_INPUTS)} (its inputs: "
                    f"{', '.join(signature.inputs)}): not a run_squad_* --export_dir SavedModel")
  if all(name in signature.outputs for name in V1_OUTPUTS):
    version, beam = 1, None
  elif all(name in signature.outputs for name in V2_OUTPUTS):
    start_n_top = signature.outputs["start_top_index"].shape[-1]
    version, beam = 2, (start_n_top, signature.outputs["end_top_index"].shape[-1] // start_n_top)
  else:
    raise UserError(f"{source.name} returns {', '.join(signature.outputs)}, not the outputs of {EXPECTED}")
  _check_version(options, version, source)
  seq_length = signature.inputs["input_ids"].shape[-1]
  if options.max_seq_length is not None and options.max_seq_length != seq_length:
    raise UserError(f"--max_seq_length={options.max_seq_length}, but {source.name} takes inputs of {seq_length} pieces")
  task = _task(version, options, beam=beam)

  def run_batch(inputs):
    return signature(**{name: inputs[name] for name in SQUAD_INPUTS})

  return Answerer(task, run_batch, source.tokenizer, seq_length, options, _threshold(options, version, source))


def _from_onnx(source, options, engine, task=None):
  """The Answerer of an ONNX model (`--engine=onnx`): its version and v2 beam come from the file's metadata,
  the null threshold from the flag, the run's eval_results.json, else the one the export recorded."""
  if engine.task not in ONNX_VERSIONS:
    raise UserError(f"{source.name} is {engine.describe()}, not {EXPECTED}")
  version = ONNX_VERSIONS[engine.task]
  _check_version(options, version, source)
  max_seq_length = options.max_seq_length or DEFAULT_MAX_SEQ_LENGTH
  engine.check_length(max_seq_length)
  task = task or _task(version, options, beam=engine.beam)
  threshold = _threshold(options, version, source)
  if threshold is None and version == 2 and options.rules.null_score_diff_threshold is None:
    threshold = engine.json_value("null_score_diff_threshold")

  def run_batch(inputs):
    return engine(**inputs)

  return Answerer(task, run_batch, source.tokenizer, max_seq_length, options, threshold)


# ---- results ----

def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def prediction_record(example: SquadExample, prediction: postprocess.ExamplePrediction, threshold: float | None,
                      with_null: bool) -> dict:
  """A question's result: `id`, `question`, `answer` (= `context[start:end]`), `start`, `end`, `probability`
  and `nbest` (text, start, end, probability, start_log_prob, end_log_prob); SQuAD 2.0 adds
  `null_score_diff` and `null_probability`, and a null answer has answer "", start/end None and the null
  probability. The original's fallback answers ("empty" in v1) have start/end None.
  """
  nbest = [{"text": entry.text, "start": entry.char_start, "end": entry.char_end, "probability": entry.probability,
            "start_log_prob": entry.start_log_prob, "end_log_prob": entry.end_log_prob} for entry in prediction.nbest]
  best = nbest[0]
  record = {"id": example.qas_id, "question": example.question_text, "answer": best["text"], "start": best["start"],
            "end": best["end"], "probability": best["probability"]}
  if with_null:
    null_probability = _sigmoid(prediction.score_diff)
    record.update(null_score_diff=prediction.score_diff, null_probability=null_probability)
    if postprocess.null_answer_wins(prediction.score_diff, threshold):
      record.update(answer="", start=None, end=None, probability=null_probability)
  record["nbest"] = nbest
  return record


def format_record(record: dict, threshold: float | None = None) -> str:
  """The human-readable report of one result: the answer, where it is, and the n-best list."""
  where = "" if record["start"] is None else f"characters {record['start']}-{record['end']}, "
  lines = [f"question: {record['question']}",
           f"answer:   {record['answer']!r} ({where}probability {record['probability']:.4f})"]
  if "null_score_diff" in record:
    rule = "never answers ''" if threshold is None else f"threshold {threshold:g}"
    lines.append(f"no answer: null score diff {record['null_score_diff']:.4f}, probability "
                 f"{record['null_probability']:.4f} ({rule})")
  lines.append("n-best:")
  for rank, entry in enumerate(record["nbest"], 1):
    span = "" if entry["start"] is None else f"[{entry['start']}:{entry['end']}]"
    lines.append(f"  {rank:>3}  {entry['probability']:.4f}  {span:<12} {entry['text']}")
  return "\n".join(lines)
