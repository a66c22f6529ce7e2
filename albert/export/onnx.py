"""ONNX export of a fine-tuned model, and ONNX Runtime's dynamic INT8 quantization of its matmul weights.

The graph is written from the model's weights with the `onnx` helper API (`albert.export.onnx_graph`, which
also holds the file's contract: tasks, inputs, outputs, opsets) rather than converted from a TensorFlow
graph (tf2onnx). Both give the same numbers; writing it ourselves gives
- every parameter stored once: the shared block (docs/compatibility.md §2.3) is one set of initializers
  that every layer's nodes read, so the file is the size of the parameter count, not L times it;
- a graph of the operators ONNX Runtime has fast kernels for (LayerNormalization, Gelu, one fused
  query/key/value MatMul) instead of the elementwise chains a converter leaves behind, so the unchanged
  graph is also the one dynamic quantization rewrites;
- no converter between the model and the file: only `onnx` and `onnxruntime` (the `[onnx]` extra).
INT8 files, which only onnxruntime runs anyway, take its fused `com.microsoft.Attention` node (quantized to
`QAttention`) in place of the standard-operator attention: 8% faster at batch 8 x 384 (benchmarks/README.md).
The math is the TensorFlow model's (`albert.model.encoder`, `albert.model.heads`); the tests hold the
float32 file to TensorFlow's outputs within 1e-4 for every task.

Inputs are int32 `input_ids`, `input_mask`, `segment_ids` [batch, length], both dynamic (length at most
max_position_embeddings). Outputs per task (`TASK_OUTPUTS`): SQuAD v1 start/end logits [B, S]; SQuAD v2
the beam outputs and cls_logits of the serving export (p_mask rebuilt from the inputs, like it);
classifier logits, probabilities (the raw logit for a regression) and predictions; encoder
sequence_output [B, S, H] and pooled_output [B, H]. What the file is for travels in its metadata
(`METADATA_PREFIX` keys), so the commands that run it need no other file.
"""

from __future__ import annotations

import logging as std_logging
import os
import tempfile
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from albert.core import fileio
from albert.core.errors import UserError, first_line
from albert.export.onnx_graph import (  # noqa: F401  (the file's contract, used through this module)
    DEFAULT_OPSET,
    INPUT_NAMES,
    METADATA_PREFIX,
    OPSET_BOUND,
    TASK_OUTPUTS,
    TASKS,
    OnnxSpec,
    build_model,
    check_opset,
    require,
    spec_for,
    task_weights,
)
from albert.model import variables

if TYPE_CHECKING:
  from collections.abc import Mapping

  from albert.model.config import AlbertConfig

QUANTIZATIONS = ("none", "int8")


# ---- checks, quantization, files ----

class ExportSummary(NamedTuple):
  """What was written: the file, its size, and the float parameters it stores against the model's count."""
  path: str
  bytes: int
  parameters: int         # parameters of the exported graph's variables (each tensor counted once)
  stored_parameters: int  # float32 values in the file's initializers (int8 ones counted as values too)
  quantization: str

  def describe(self) -> str:
    return (f"{self.path}: {self.bytes / 1e6:.2f} MB, {self.stored_parameters:,} stored weights for "
            f"{self.parameters:,} parameters ({self.quantization})")


def stored_values(model) -> tuple[int, int]:
  """(float values, int8 values) of a ModelProto's weights. Shape constants (int64) are not weights, nor are
  the quantizer's per-column scales and zero points (`<weight>_scale`, `<weight>_zero_point` beside
  `<weight>_quantized`)."""
  onnx = require("onnx", "the ONNX export")
  quantized_weights = {initializer.name[:-len("_quantized")] for initializer in model.graph.initializer
                       if initializer.name.endswith("_quantized")}
  floats = quantized = 0
  for initializer in model.graph.initializer:
    name = initializer.name
    if any(name.endswith(suffix) and name[:-len(suffix)] in quantized_weights for suffix in ("_scale", "_zero_point")):
      continue
    count = int(np.prod(initializer.dims, dtype=np.int64))
    if initializer.data_type == onnx.TensorProto.FLOAT:
      floats += count
    elif initializer.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
      quantized += count
  return floats, quantized


def check_weights_stored_once(model, parameters: int) -> int:
  """The float (and int8) values the file stores, at most the exported parameters plus a few scalars: a
  graph that copied the shared block per layer would store L times them. Returns the count."""
  floats, quantized = stored_values(model)
  stored = floats + quantized
  if stored > parameters * 1.001 + 4096:
    raise AssertionError(f"the ONNX graph stores {stored:,} weights for {parameters:,} parameters: shared weights "
                         "were copied")
  return stored


def exported_parameters(config: AlbertConfig, arrays: Mapping[str, np.ndarray], spec: OnnxSpec) -> int:
  """Parameters of the variables the graph of `spec` uses (SQuAD heads do not use the pooler)."""
  names = set(variables.encoder_shapes(config))
  if spec.task.startswith("squad"):
    names -= set(variables.pooler_shapes(config))
  head = [name for name in arrays if name not in variables.encoder_shapes(config)]
  if spec.task in ("squad_v1", "squad_v2", "classifier"):
    names |= set(head)
  return sum(int(np.asarray(arrays[name]).size) for name in names if name in arrays)


def validate(model_bytes: bytes, opset: int) -> None:
  """Loads the graph into onnxruntime, which refuses an operator or opset it cannot run: a one-line error."""
  ort = require("onnxruntime", "the ONNX export")
  try:
    ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
  except Exception as e:  # onnxruntime raises its own exception types for unsupported graphs
    raise UserError(f"--opset={opset}: onnxruntime {ort.__version__} cannot run the exported graph: "
                    f"{first_line(e)}") from None


def quantize_int8(model, target: str) -> None:
  """ONNX Runtime's dynamic quantization of the MatMul and fused Attention weights: the weights are stored as
  int8, symmetric, one scale per output column, in 7 bits (`reduce_range`); activations are quantized to uint8
  per call. MatMuls of two activations (attention scores) and everything else stay float32.

  7 bits because CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) multiply uint8 by int8 in pairs summed
  into 16 bits (VPMADDUBSW), which saturate when both products of a pair are large. With 8-bit weights, a
  small projection's outputs were off by up to 31% of their largest value there, and a fine-tuned model's
  start logits by 0.015 on average (0.010 with 7 bits per column; 0.042 with 8 bits per column, which
  saturate more). The speed is the same (albert-base, 8 x 384). CPUs with VNNI sum in 32 bits; there the
  7 bits cost one bit of weight precision.

  Args:
    model: the float32 ModelProto.
    target: the file to write (not atomic: write into a temporary name).
  """
  quantization = require("onnxruntime.quantization", "--quantize=int8")
  root = std_logging.getLogger()
  level = root.level
  root.setLevel(std_logging.ERROR)  # the quantizer logs a pre-processing hint that concerns image models
  # DefaultTensorType: the quantizer's type inference does not know the outputs of com.microsoft nodes.
  options = {"MatMulConstBOnly": True, "DefaultTensorType": require("onnx", "--quantize=int8").TensorProto.FLOAT}
  try:
    quantization.quantize_dynamic(model, target, op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
                                  reduce_range=True, weight_type=quantization.QuantType.QInt8, extra_options=options)
  finally:
    root.setLevel(level)


def to_bytes(model, quantize: str = "none") -> bytes:
  """The serialized model, quantized when `quantize` is "int8" (through a temporary file)."""
  if quantize != "int8":
    return model.SerializeToString()
  with tempfile.TemporaryDirectory(prefix="albert_onnx_") as directory:
    path = os.path.join(directory, "model_int8.onnx")
    quantize_int8(model, path)
    with open(path, "rb") as f:
      return _mark_quantized(f.read())


def _mark_quantized(data):
  onnx = require("onnx", "the ONNX export")
  model = onnx.load_model_from_string(data)
  for entry in model.metadata_props:
    if entry.key == METADATA_PREFIX + "quantization":
      entry.value = "int8"
  return model.SerializeToString()


def export(config: AlbertConfig, arrays: Mapping[str, np.ndarray], spec: OnnxSpec, path: str, *,
           opset: int = DEFAULT_OPSET, quantize: str = "none", metadata: Mapping[str, object] | None = None,
           source: str = "the model") -> ExportSummary:
  """Writes the ONNX file of a model (atomically), checked: weights stored once, runnable by onnxruntime.

  Args:
    config: the model's config.
    arrays: {original variable name: float32 array}.
    spec: the task the graph ends in.
    path: the .onnx file to write.
    opset: the ONNX opset.
    quantize: "none" or "int8" (dynamic quantization of the MatMul weights).
    metadata: extra metadata (labels, the tuned null threshold, the checkpoint).
    source: how messages name the weights' origin.
  Returns:
    The ExportSummary.
  """
  if quantize not in QUANTIZATIONS:
    raise UserError(f"--quantize={quantize}: not one of {', '.join(QUANTIZATIONS)}")
  # INT8 files run in onnxruntime only (its quantized kernels), so they also take its fused attention.
  model = build_model(config, arrays, spec, opset, metadata, source, fused_attention=quantize == "int8")
  parameters = exported_parameters(config, arrays, spec)
  check_weights_stored_once(model, parameters)
  data = to_bytes(model, quantize)
  validate(data, opset)
  onnx = require("onnx", "the ONNX export")
  stored = check_weights_stored_once(onnx.load_model_from_string(data), parameters)
  with fileio.atomic_open(path, "wb") as f:
    f.write(data)
  return ExportSummary(path, len(data), parameters, stored, quantize)
