"""A fine-tuned model run on raw text, from a checkpoint or a SavedModel (`albert.answer`, `albert.classify`).

A checkpoint's head tells what it was fine-tuned for (`checkpoint_head`), so each command can refuse the
other's models with a one-line message; `load_weights` loads every variable of a task (a run from a TF-Hub
module may keep the module's encoder weights); `ServingSignature` calls the `serving_default` signature
of a runner's `--export_dir` SavedModel on numpy inputs; `write_json_lines` writes the results.
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

if TYPE_CHECKING:
  from collections.abc import Iterable

  from albert.training.task import EncoderTask

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


class ServingSignature:
  """The `serving_default` signature of a SavedModel, called on numpy inputs.

  Args:
    path: the SavedModel directory.
  Attributes:
    inputs: {name: TensorSpec} of the signature's inputs.
    outputs: {name: TensorSpec} of its outputs.
  """

  def __init__(self, path: str) -> None:
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
