"""A fine-tuned model run on raw text, from a checkpoint or a SavedModel (`albert.answer`, `albert.classify`).

A checkpoint's head tells what it was fine-tuned for (`checkpoint_head`), so each command can refuse the
other's models with a one-line message; `load_weights` loads every variable of a task (a run from a TF-Hub
module may keep the module's encoder weights); `ServingSignature` calls the `serving_default` signature
of a runner's `--export_dir` SavedModel on numpy inputs; `write_json_lines` writes the results;
`load_for_export` builds the model of a checkpoint for `albert.export_onnx`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core import fileio
from albert.core.errors import UserError, abbreviate, first_line
from albert.io import checkpoint
from albert.model import variables
from albert.tasks.squad.task import SQUAD_TASKS
from albert.text import in_graph

if TYPE_CHECKING:
  from collections.abc import Iterable

  from albert.training.task import EncoderTask

EXPORT_TASKS = ("squad_v1", "squad_v2", "classifier", "encoder")  # albert.export.onnx.TASKS
CLASSIFIER_HEAD = "output_weights"  # the classifier head's [num_labels, H] weights (albert.model.heads.ClassifierHead)
SERVING_SIGNATURE = "serving_default"


class Head(NamedTuple):
  """What a model was fine-tuned for: "squad" (with its `version`) or "classifier" (with `num_labels`).

  Args:
    kind: "squad", "classifier" or None (no task head: a pretrained checkpoint).
    version: the SQuAD version, 1 or 2.
    num_labels: the classifier's outputs (1 for a regression).
  """
  kind: str | None
  version: int | None = None
  num_labels: int | None = None

  def describe(self) -> str:
    if self.kind == "squad":
      return f"a SQuAD v{self.version} model (albert.answer)"
    if self.kind == "classifier":
      return f"a classifier with {self.num_labels} output(s) (albert.classify)"
    return "no fine-tuned head"


def checkpoint_head(prefix: str) -> Head:
  """The head of a checkpoint, from the variables only that head has.

  Args:
    prefix: a checkpoint prefix.
  Returns:
    The Head; kind None when the checkpoint has no SQuAD or classifier head.
  """
  shapes = checkpoint.list_variables(prefix)
  for task_class in SQUAD_TASKS.values():
    if task_class.head_variable in shapes:
      return Head("squad", version=task_class.version)
  if CLASSIFIER_HEAD in shapes:
    return Head("classifier", num_labels=shapes[CLASSIFIER_HEAD][0])
  return Head(None)


def wrong_model(name: str, head: Head, expected: str, command: str) -> UserError:
  """The one-line error for a model fine-tuned for something else than the command runs."""
  if head.kind is None:
    return UserError(f"{name} has no fine-tuned head: {command} needs {expected}")
  return UserError(f"{name} is {head.describe()}, not {expected}")


def load_weights(task: EncoderTask, prefix: str, from_hub: bool = False) -> None:
  """Builds `task` and loads every variable of it from `prefix`; inference never runs on fresh weights.

  Args:
    task: an unbuilt task (encoder + head).
    prefix: the fine-tuned checkpoint.
    from_hub: the encoder came from a TF-Hub module, whose weights stand where the checkpoint has none.
  """
  task.build()
  report = checkpoint.load_variables(task.named_variables(), prefix)
  logging.info("%s", report.summary())
  missing = [name for name in report.missing
             if not (from_hub and name.startswith(variables.ENCODER_SCOPE + "/"))]
  if missing:
    raise UserError(f"checkpoint {prefix} lacks {len(missing)} variables of the model ({abbreviate(missing, 3)}); "
                    "is the config (--albert_config_file) the one it was trained with?")


def export_task_name(head: Head) -> str:
  """The albert.export_onnx --task a checkpoint's head makes (a checkpoint without one: its encoder)."""
  if head.kind == "squad":
    return f"squad_v{head.version}"
  return head.kind or "encoder"


def load_for_export(prefix: str, task_name: str | None, config, create_encoder=None, from_hub: bool = False,
                    beam: tuple[int, int] = (5, 5)):
  """The model `albert.export_onnx` exports: a built task (or, for "encoder", the encoder alone) holding the
  checkpoint's weights.

  Args:
    prefix: the checkpoint.
    task_name: one of EXPORT_TASKS; None takes the checkpoint's head. A head the checkpoint lacks is a UserError.
    config: the model's AlbertConfig.
    create_encoder: builds the encoder (default: a fresh AlbertModel); a TF-Hub module's for `from_hub`.
    from_hub: the encoder came from a TF-Hub module, whose weights stand where the checkpoint has none.
    beam: SQuAD v2 (start_n_top, end_n_top).
  Returns:
    (the task or encoder, its task name).
  """
  from albert.model.encoder import AlbertModel
  from albert.tasks.classification.task import ClassifierTask
  head = checkpoint_head(prefix)
  found = export_task_name(head)
  task_name = task_name or found
  if task_name != "encoder" and task_name != found:
    raise UserError(f"--task={task_name}: checkpoint {prefix} is {head.describe()}; export it with --task={found}"
                    + (" or --task=encoder" if found != "encoder" else ""))
  create_encoder = create_encoder or (lambda dtype: AlbertModel(config, dtype))
  if task_name == "encoder":
    model = create_encoder(tf.float32)
    report = checkpoint.load_variables(model.named_variables(), prefix)
    if report.missing and not from_hub:
      raise UserError(f"checkpoint {prefix} lacks {len(report.missing)} encoder variables "
                      f"({abbreviate(report.missing, 3)}); is --albert_config_file the one it was trained with?")
    return model, task_name
  if task_name == "classifier":
    task = ClassifierTask(config, head.num_labels, trim_inference=False, trim_training=False,
                          create_encoder=create_encoder)
  elif head.version == 1:
    task = SQUAD_TASKS[1](config, create_encoder)
  else:
    task = SQUAD_TASKS[2](config, create_encoder, tf.float32, *beam)
  load_weights(task, prefix, from_hub)
  return task, task_name


class ServingSignature:
  """The `serving_default` signature of a SavedModel, called on numpy inputs.

  Args:
    path: the SavedModel directory.
  Attributes:
    inputs: {name: TensorSpec} of the signature's inputs.
    outputs: {name: TensorSpec} of its outputs.
  """

  def __init__(self, path: str) -> None:
    in_graph.available()  # imports tensorflow-text if installed: a text-in signature's ops must be registered to load
    try:
      self._loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise UserError(f"--saved_model_dir: {path} is not a loadable SavedModel: {first_line(e)}") from None
    if SERVING_SIGNATURE not in self._loaded.signatures:
      raise UserError(f"--saved_model_dir: {path} has no {SERVING_SIGNATURE} signature (signatures: "
                      f"{', '.join(self._loaded.signatures) or 'none'})")
    self.path = path
    self._function = self._loaded.signatures[SERVING_SIGNATURE]
    self.inputs = dict(self._function.structured_input_signature[1])
    self.outputs = dict(self._function.structured_outputs)

  def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The signature's outputs as numpy arrays, for inputs given by name."""
    outputs = self._function(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}

  def parsed_length(self) -> int | None:
    """The length of the dense features a serialized-Example signature parses (all equal), or None."""
    lengths = set()
    graph = self._function.graph.as_graph_def()  # the parsing happens in a function the signature calls
    for node in [*graph.node, *(node for function in graph.library.function for node in function.node_def)]:
      if node.op in ("ParseExampleV2", "ParseExample"):
        lengths.update(tf.TensorShape(shape).as_list()[-1] for shape in node.attr["dense_shapes"].list.shape)
    return lengths.pop() if len(lengths) == 1 else None


def write_json_lines(path: str, records: Iterable[dict]) -> int:
  """Writes one JSON object per line, atomically (nothing is left at `path` if `records` fails); returns the count."""
  count = 0
  with fileio.atomic_open(path) as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
      count += 1
  return count
