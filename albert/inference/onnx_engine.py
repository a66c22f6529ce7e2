"""A fine-tuned model as an ONNX file (`python -m albert.export_onnx`), run by ONNX Runtime.

`OnnxEngine` answers the calls our TensorFlow prediction answers, so the tasks' own windows, batching
and post-processing run unchanged on it:
- `engine(**inputs)`: int32 [batch, length] arrays in, the task's outputs by name (numpy) out, like
  `albert.tasks.fine_tuned.ServingSignature` calls a SavedModel;
- `engine.predict(dataset, batch_size)`: one dict per example in input order, with `unique_ids` passed
  through, like `albert.training.trainer.Trainer.predict` (run_squad_* `--engine=onnx`).
What the file computes (task, beam, labels, the tuned null threshold) comes from its metadata, which
`albert.export.onnx` writes. `from_task` exports a loaded task in memory, for `--engine=onnx` without a file.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from albert.core.errors import UserError, first_line
from albert.core.progress import ProgressLog
from albert.export import onnx as onnx_export

if TYPE_CHECKING:
  from collections.abc import Iterator

  from albert.model.config import AlbertConfig

ENGINES = ("tensorflow", "onnx")
PREDICT_LOG_SECONDS = 30.0
# ONNX Runtime graph rewrites the engine turns off because the result runs slower on CPU. SkipLayerNormFusion
# turns each residual Add + LayerNormalization into one SkipLayerNormalization node, which onnxruntime 1.23's CPU
# kernel runs 4x slower than the pair (6.9 against 1.7 ms at [8, 384, 768], 2 threads): 5% of an albert-base
# INT8 forward at batch 8 x 384 (benchmarks/README.md). Users running the file in their own session get the
# same with `disabled_optimizers=list(SLOW_FUSIONS)`.
SLOW_FUSIONS = ("SkipLayerNormFusion",)
TASK_DESCRIPTIONS = {"squad_v1": "a SQuAD v1 model (albert.answer)", "squad_v2": "a SQuAD v2 model (albert.answer)",
                     "classifier": "a classifier (albert.classify)", "encoder": "an encoder without a task head"}


class OnnxEngine:
  """An ONNX Runtime session of an exported model, with the file's metadata.

  Args:
    model: the .onnx file, or its bytes.
    name: how messages name the model (default: the file).
    threads: intra-op threads (default: ONNX Runtime's, one per physical core).
    flag_name: the flag messages about the file name.
  Attributes:
    task: one of `albert.export.onnx.TASKS`.
    metadata: {key: value} of the file's albert metadata (prefix removed).
    outputs: the output names, in the session's order.
  """

  def __init__(self, model: str | bytes, name: str | None = None, threads: int | None = None,
               flag_name: str = "onnx_model") -> None:
    ort = onnx_export.require("onnxruntime", "--engine=onnx")
    self.name = name or f"ONNX model {model}"
    if isinstance(model, str) and not os.path.isfile(model):
      raise UserError(f"--{flag_name}: file not found: {model}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
      options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
      self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"],
                                          disabled_optimizers=list(SLOW_FUSIONS))
    except Exception as e:  # onnxruntime raises its own exception types for unreadable or unsupported files
      raise UserError(f"--{flag_name}: {self.name} cannot be loaded by onnxruntime: {first_line(e)}") from None
    prefix = onnx_export.METADATA_PREFIX
    found = self.session.get_modelmeta().custom_metadata_map
    self.metadata = {key[len(prefix):]: value for key, value in found.items() if key.startswith(prefix)}
    self.task = self.metadata.get("task")
    inputs = [spec.name for spec in self.session.get_inputs()]
    if self.task not in onnx_export.TASKS or inputs != list(onnx_export.INPUT_NAMES):
      raise UserError(f"--{flag_name}: {self.name} was not written by albert.export_onnx (no albert.task metadata "
                      f"or inputs {', '.join(inputs)})")
    self.outputs = [spec.name for spec in self.session.get_outputs()]

  def _int(self, key):
    value = self.metadata.get(key)
    return None if value is None else int(value)

  @property
  def max_position_embeddings(self) -> int:
    return self._int("max_position_embeddings")

  @property
  def beam(self) -> tuple[int, int] | None:
    """(start_n_top, end_n_top) of a SQuAD v2 model."""
    return (self._int("start_n_top"), self._int("end_n_top")) if self.task == "squad_v2" else None

  @property
  def num_labels(self) -> int | None:
    return self._int("num_labels")

  @property
  def quantization(self) -> str:
    return self.metadata.get("quantization", "none")

  def json_value(self, key: str):
    """A metadata value stored as JSON (labels, the null threshold), or None."""
    value = self.metadata.get(key)
    return None if value is None else json.loads(value)

  def describe(self) -> str:
    return TASK_DESCRIPTIONS[self.task]

  def check_length(self, length: int, flag_name: str = "max_seq_length") -> None:
    """Inputs may not be longer than the position table the file was exported with."""
    limit = self.max_position_embeddings
    if limit is not None and length > limit:
      raise UserError(f"--{flag_name}={length} exceeds max_position_embeddings={limit} of {self.name}")

  def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs for int32 [batch, length] `input_ids`, `input_mask`, `segment_ids` (other keys ignored)."""
    feeds = {name: np.asarray(inputs[name], np.int32) for name in onnx_export.INPUT_NAMES}
    self.check_length(feeds["input_ids"].shape[1], "max_seq_length")
    return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

  def predict(self, dataset, global_batch_size: int = 0,
              passthrough: tuple[str, ...] = ("unique_ids",)) -> Iterator[dict]:
    """Yields one dict of numpy values per example, in input order, like `Trainer.predict`.

    Args:
      dataset: a batched `tf.data.Dataset` of feature dicts, or a `dataset_fn(input_context)` returning one.
      global_batch_size: unused (the batches run as the dataset makes them; any size and length runs).
      passthrough: features copied into each result (e.g. `unique_ids`).
    """
    del global_batch_size
    if callable(dataset):
      import tensorflow as tf
      dataset = dataset(tf.distribute.InputContext())
    progress, done = ProgressLog("predicting", "examples", every_seconds=PREDICT_LOG_SECONDS), 0
    for batch in dataset.as_numpy_iterator():
      outputs = self(**batch)
      size = len(batch["input_ids"])
      for row in range(size):
        result = {name: batch[name][row] for name in passthrough if name in batch}
        result.update((name, value[row]) for name, value in outputs.items())
        yield result
      done += size
      progress.update(done)
    progress.update(done, force=True)


def from_task(task, config: AlbertConfig, name: str, quantize: str = "none",
              opset: int = onnx_export.DEFAULT_OPSET, metadata: dict | None = None) -> OnnxEngine:
  """An engine of a built task with its weights loaded, exported in memory (`--engine=onnx` without a file).

  Args:
    task: a SQuAD or classifier task (or an encoder) whose variables hold the model.
    config: the model's config.
    name: how messages name the model (e.g. its checkpoint).
    quantize: "none" or "int8".
    opset: the ONNX opset.
    metadata: extra metadata for the graph.
  """
  spec = onnx_export.spec_for(task)
  arrays = onnx_export.task_weights(task)
  model = onnx_export.build_model(config, arrays, spec, opset, metadata, source=name)
  suffix = ", INT8" if quantize == "int8" else ""
  return OnnxEngine(onnx_export.to_bytes(model, quantize), name=f"{name} (as ONNX{suffix})")
