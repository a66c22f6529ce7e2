"""The ONNX graph of an encoder and its task head, written from the weights, and the contract of the file.

`albert.export.onnx` (checks, quantization, the file) builds on it: see that module for why the graph is
written here rather than converted. The contract is what every reader of the file relies on: the task
names, the int32 inputs, each task's outputs, the opsets, and the metadata prefix.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from typing import TYPE_CHECKING

import numpy as np

from albert.core import bounds
from albert.core.errors import UserError, first_line
from albert.model import variables

if TYPE_CHECKING:
  from collections.abc import Mapping

  from albert.model.config import AlbertConfig

TASKS = ("squad_v1", "squad_v2", "classifier", "encoder")
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
TASK_OUTPUTS = {
    "squad_v1": ("start_logits", "end_logits"),
    "squad_v2": ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits"),
    "classifier": ("logits", "probabilities", "predictions"),
    "encoder": ("sequence_output", "pooled_output"),
}
# LayerNormalization is an ONNX operator from opset 17; 21 is the newest opset onnxruntime 1.20, the oldest
# release the [onnx] extra allows, loads.
MIN_OPSET, MAX_OPSET = 17, 21
DEFAULT_OPSET = 20  # the first with a Gelu operator (tanh approximation); 17-19 spell GELU out
OPSET_BOUND = bounds.Bound(low=MIN_OPSET, high=MAX_OPSET)
METADATA_PREFIX = "albert."
EXTRA_HINT = "pip install 'albert[onnx]'"
MASKED_LOGIT = 1e30            # albert.model.heads: positions that cannot hold an answer
ATTENTION_MASK_BIAS = -10000.0  # albert.model.encoder
LAYER_NORM_EPSILON = 1e-12
MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib operators (the fused Attention of INT8 files)


def require(module: str, needed_by: str):
  """Imports `module` of the `[onnx]` extra; its absence is a one-line UserError saying how to install it.

  Args:
    module: "onnx", "onnxruntime" or one of their submodules.
    needed_by: what needs it, as the message names it (e.g. "--engine=onnx").
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise UserError(f"{needed_by} needs the optional [onnx] extra (onnx, onnxruntime): {EXTRA_HINT} "
                    f"({first_line(e)})") from None


@dataclasses.dataclass(frozen=True)
class OnnxSpec:
  """What the exported graph computes after the encoder.

  Args:
    task: one of TASKS.
    start_n_top: SQuAD v2 beam: start candidates.
    end_n_top: SQuAD v2 beam: end candidates per start.
    num_labels: classifier outputs (1: a regression).
  """
  task: str
  start_n_top: int | None = None
  end_n_top: int | None = None
  num_labels: int | None = None

  def metadata(self) -> dict[str, str]:
    values = {"task": self.task, "start_n_top": self.start_n_top, "end_n_top": self.end_n_top,
              "num_labels": self.num_labels}
    return {key: str(value) for key, value in values.items() if value is not None}


def spec_for(task) -> OnnxSpec:
  """The OnnxSpec of a task object: SQuAD (`version`, v2's beam), a classifier (`num_labels`), else the encoder."""
  version = getattr(task, "version", None)
  if version == 1:
    return OnnxSpec("squad_v1")
  if version == 2:
    return OnnxSpec("squad_v2", start_n_top=task.start_n_top, end_n_top=task.end_n_top)
  if getattr(task, "num_labels", None) is not None:
    return OnnxSpec("classifier", num_labels=task.num_labels)
  return OnnxSpec("encoder")


def task_weights(task) -> dict[str, np.ndarray]:
  """{original name: float32 array} of a built task's (or encoder's) variables."""
  return {name: np.asarray(variable.numpy(), np.float32) for name, variable in task.named_variables().items()}


def check_opset(opset: int) -> int:
  if not OPSET_BOUND.contains(opset):
    raise UserError(bounds.violation("opset", opset, OPSET_BOUND.describe()) +
                    " (LayerNormalization needs 17; newer opsets are not tested with onnxruntime)")
  return opset


# ---- the graph ----

class _Graph:
  """Nodes and initializers under construction; every helper returns the name of its output."""

  def __init__(self, onnx, opset, fused_attention=False):
    self.onnx, self.helper, self.opset = onnx, onnx.helper, opset
    self.fused_attention = fused_attention
    self.nodes, self.initializers, self._count = [], {}, 0

  def _name(self, hint):
    self._count += 1
    return f"{hint}_{self._count}"

  def weight(self, name, array):
    """A float32 initializer under the variable's name, stored once however many nodes read it."""
    if name not in self.initializers:
      array = np.ascontiguousarray(array, np.float32)
      self.initializers[name] = self.onnx.numpy_helper.from_array(array, name)
    return name

  def const(self, values, dtype=np.int64):
    """A small constant (shapes, axes, scalars), shared by value."""
    array = np.asarray(values, dtype)
    name = f"const_{array.dtype.name}_{'_'.join(str(v) for v in array.ravel())}".replace("-", "m")
    if array.ndim == 0:
      name += "_scalar"
    return self.weight(name, array) if dtype == np.float32 else self._const(name, array)

  def _const(self, name, array):
    if name not in self.initializers:
      self.initializers[name] = self.onnx.numpy_helper.from_array(array, name)
    return name

  def op(self, op_type, *inputs, hint=None, outputs=1, **attributes):
    names = [self._name(hint or op_type.lower()) for _ in range(outputs)]
    self.nodes.append(self.helper.make_node(op_type, list(inputs), names, **attributes))
    return names[0] if outputs == 1 else names

  # ---- layers (albert.model.layers) ----

  def dense(self, x, kernel, bias=None, hint="dense"):
    y = self.op("MatMul", x, kernel, hint=hint)
    return y if bias is None else self.op("Add", y, bias, hint=hint)

  def layer_norm(self, x, gamma, beta):
    return self.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=LAYER_NORM_EPSILON, hint="layer_norm")

  def activation(self, x, name):
    """The config's hidden_act; GELU is the tanh approximation (docs/compatibility.md §2.6)."""
    name = (name or "").lower()
    if name in ("", "linear"):
      return x
    if name in ("relu", "tanh"):
      return self.op(name.capitalize(), x)
    if self.opset >= 20:
      return self.op("Gelu", x, approximate="tanh")
    # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), the form onnxruntime fuses into one kernel.
    cube = self.op("Mul", self.op("Mul", x, x), x)
    inner = self.op("Add", x, self.op("Mul", cube, self.const(0.044715, np.float32)))
    tanh = self.op("Tanh", self.op("Mul", inner, self.const(math.sqrt(2.0 / math.pi), np.float32)))
    half_x = self.op("Mul", x, self.const(0.5, np.float32))
    return self.op("Mul", half_x, self.op("Add", tanh, self.const(1.0, np.float32)), hint="gelu")

  def squeeze_last(self, x):
    return self.op("Squeeze", x, self.const([-1]))

  def mask_logits(self, logits, answerable):
    """logits where an answer may be, -1e30 elsewhere (albert.model.heads._mask_logits with p_mask = 1 - answerable)."""
    kept = self.op("Mul", logits, answerable)
    p_mask = self.op("Sub", self.const(1.0, np.float32), answerable)
    return self.op("Sub", kept, self.op("Mul", p_mask, self.const(MASKED_LOGIT, np.float32)))


class _Weights:
  """The checkpoint's arrays by original name; a missing one is a one-line error."""

  def __init__(self, arrays, source):
    self.arrays, self.source = arrays, source

  def __getitem__(self, name):
    if name not in self.arrays:
      raise UserError(f"{self.source} lacks {name}: not a model of this config and task")
    return self.arrays[name]


def _encoder(g, config, weights, with_pooler):
  """Embeddings, the shared blocks and (`with_pooler`) the pooler; returns (sequence_output [B, S, H],
  pooled_output [B, H] or None)."""
  scope = variables.ENCODER_SCOPE
  ids, mask, segments = INPUT_NAMES
  emb = f"{scope}/embeddings"
  words = g.op("Gather", g.weight(f"{emb}/word_embeddings", weights[f"{emb}/word_embeddings"]), ids)
  types = g.op("Gather", g.weight(f"{emb}/token_type_embeddings", weights[f"{emb}/token_type_embeddings"]),
               segments)
  length = g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2]))
  positions = g.op("Slice", g.weight(f"{emb}/position_embeddings", weights[f"{emb}/position_embeddings"]),
                   g.const([0]), length, g.const([0]))  # [S, E]
  summed = g.op("Add", g.op("Add", words, types), positions)
  x = g.layer_norm(summed, g.weight(f"{emb}/LayerNorm/gamma", weights[f"{emb}/LayerNorm/gamma"]),
                   g.weight(f"{emb}/LayerNorm/beta", weights[f"{emb}/LayerNorm/beta"]))
  if config.embedding_size != config.hidden_size:
    mapping = f"{scope}/encoder/embedding_hidden_mapping_in"
    x = g.dense(x, g.weight(f"{mapping}/kernel", weights[f"{mapping}/kernel"]),
                g.weight(f"{mapping}/bias", weights[f"{mapping}/bias"]), hint="embedding_projection")
  mask_bias = None
  if not g.fused_attention:  # [B, 1, 1, S]: 0 where a position may be attended to, -10000 at padding.
    padding = g.op("Sub", g.const(1.0, np.float32), g.op("Cast", mask, to=g.onnx.TensorProto.FLOAT))
    mask_bias = g.op("Unsqueeze", g.op("Mul", padding, g.const(ATTENTION_MASK_BIAS, np.float32)), g.const([1, 2]))
  blocks = [[_block_weights(g, config, weights, group, inner) for inner in range(config.inner_group_num)]
            for group in range(config.num_hidden_groups)]
  for layer in range(config.num_hidden_layers):
    for block in blocks[config.group_of_layer(layer)]:
      x = _block(g, config, x, block, mask_bias)
  if not with_pooler:
    return x, None
  first = g.op("Gather", x, g.const(0), axis=1)  # [B, H]: the [CLS] position
  pooler = f"{scope}/pooler/dense"
  pooled = g.op("Tanh", g.dense(first, g.weight(f"{pooler}/kernel", weights[f"{pooler}/kernel"]),
                                g.weight(f"{pooler}/bias", weights[f"{pooler}/bias"]), hint="pooler"))
  return x, pooled


def _block_weights(g, config, weights, group, inner):
  """One block's initializers: query, key and value fused into one [H, 3H] kernel, the query pre-scaled by
  1/sqrt(head size) as `albert.model.encoder` does (docs/compatibility.md §2.4)."""
  prefix = variables.block_prefix(group, inner)
  attention = f"{prefix}/attention_1/self"
  scale = np.float32(1.0 / math.sqrt(config.head_size))
  kernel = np.concatenate([weights[f"{attention}/query/kernel"] * scale, weights[f"{attention}/key/kernel"],
                           weights[f"{attention}/value/kernel"]], axis=1)
  bias = np.concatenate([weights[f"{attention}/query/bias"] * scale, weights[f"{attention}/key/bias"],
                         weights[f"{attention}/value/bias"]], axis=0)
  named = {suffix: g.weight(f"{prefix}/{suffix}", weights[f"{prefix}/{suffix}"])
           for suffix in variables.block_shapes(config) if not suffix.startswith("attention_1/self/")}
  named["qkv/kernel"] = g.weight(f"{attention}/qkv/kernel", kernel)
  named["qkv/bias"] = g.weight(f"{attention}/qkv/bias", bias)
  return named


def _attention(g, config, x, w, mask_bias):
  """Multi-head self-attention in standard ONNX operators; returns the merged contexts [B, S, H]."""
  heads, head_size, hidden = config.num_attention_heads, config.head_size, config.hidden_size
  qkv = g.op("Reshape", g.dense(x, w["qkv/kernel"], w["qkv/bias"], hint="qkv"),
             g.const([0, 0, 3, heads, head_size]))  # [B, S, 3, N, D]
  # A Split, not three Gathers: onnxruntime 1.20 fuses such Gathers into Splits that share one node name.
  parts = [g.op("Reshape", part, g.const([0, 0, heads, head_size]))  # [B, S, N, D] each
           for part in g.op("Split", qkv, g.const([1, 1, 1]), axis=2, outputs=3)]
  query = g.op("Transpose", parts[0], perm=[0, 2, 1, 3])  # [B, N, S, D]
  key = g.op("Transpose", parts[1], perm=[0, 2, 3, 1])    # [B, N, D, S]
  value = g.op("Transpose", parts[2], perm=[0, 2, 1, 3])  # [B, N, S, D]
  scores = g.op("Add", g.op("MatMul", query, key, hint="scores"), mask_bias)  # [B, N, S, S], already scaled
  probs = g.op("Softmax", scores, axis=-1)
  context = g.op("Transpose", g.op("MatMul", probs, value, hint="context"), perm=[0, 2, 1, 3])
  return g.op("Reshape", context, g.const([0, 0, hidden]))


def _fused_attention(g, config, x, w):
  """The same in one onnxruntime `com.microsoft.Attention` node: the q/k/v projection, the scores with the
  padding mask (its default mask value is the encoder's -10000), softmax and the contexts. `scale` is 1: the
  query kernel is pre-scaled. Dynamic quantization turns it into `QAttention` (int8 q/k/v weights)."""
  return g.op("Attention", x, w["qkv/kernel"], w["qkv/bias"], INPUT_NAMES[1], domain=MS_DOMAIN,
              num_heads=config.num_attention_heads, scale=1.0, hint="attention")


def _block(g, config, x, w, mask_bias):
  """One post-LN block on [B, S, H]: self-attention, then the feed-forward part (albert.model.encoder._block)."""
  context = _fused_attention(g, config, x, w) if g.fused_attention else _attention(g, config, x, w, mask_bias)
  projected = g.dense(context, w["attention_1/output/dense/kernel"], w["attention_1/output/dense/bias"],
                      hint="attention_output")
  attended = g.layer_norm(g.op("Add", projected, x), w["LayerNorm/gamma"], w["LayerNorm/beta"])
  inner = g.activation(g.dense(attended, w["ffn_1/intermediate/dense/kernel"], w["ffn_1/intermediate/dense/bias"],
                               hint="ffn"), config.hidden_act)
  ffn = g.dense(inner, w["ffn_1/intermediate/output/dense/kernel"], w["ffn_1/intermediate/output/dense/bias"],
                hint="ffn_output")
  return g.layer_norm(g.op("Add", ffn, attended), w["LayerNorm_1/gamma"], w["LayerNorm_1/beta"])


def _squad_v1(g, weights, sequence):
  """start/end logits [B, S] from one [H, 2] projection (docs/compatibility.md §3.3)."""
  kernel = g.weight("cls/squad/output_weights", weights["cls/squad/output_weights"].T)
  logits = g.dense(sequence, kernel, g.weight("cls/squad/output_bias", weights["cls/squad/output_bias"]))
  start, end = g.op("Split", logits, g.const([1, 1]), axis=-1, outputs=2)
  return {"start_logits": g.squeeze_last(start), "end_logits": g.squeeze_last(end)}


def _answerable(g):
  """1.0 on [CLS] and on the document window (segment 1 before the final [SEP]), 0.0 elsewhere: 1 - p_mask
  as `albert.tasks.squad.task.answer_mask` rebuilds it from the serving inputs. [B, S] float."""
  ids, mask, segments = INPUT_NAMES
  length = g.op("Gather", g.op("Shape", ids), g.const(1))
  positions = g.op("Unsqueeze", g.op("Range", g.const(0), length, g.const(1)), g.const([0]))  # [1, S] int64
  mask64 = g.op("Cast", mask, to=g.onnx.TensorProto.INT64)
  final_sep = g.op("Sub", g.op("ReduceSum", mask64, g.const([1]), keepdims=1), g.const(1))  # [B, 1]
  in_document = g.op("And", g.op("Equal", g.op("Cast", segments, to=g.onnx.TensorProto.INT64), g.const(1)),
                     g.op("Less", positions, final_sep))
  answerable = g.op("Or", g.op("Equal", positions, g.const(0)), in_document)
  return g.op("Cast", answerable, to=g.onnx.TensorProto.FLOAT)


def _squad_v2(g, weights, sequence, spec, hidden):
  """The XLNet-style beam of `albert.model.heads.SquadV2Head.predict` (docs/compatibility.md §3.4)."""
  ks, ke = spec.start_n_top, spec.end_n_top
  answerable = _answerable(g)
  w = lambda name: g.weight(name, weights[name])
  start_logits = g.mask_logits(g.squeeze_last(g.dense(sequence, w("start_logits/dense/kernel"),
                                                      w("start_logits/dense/bias"), hint="start")), answerable)
  start_top_log_probs, start_top_index = g.op("TopK", g.op("LogSoftmax", start_logits, axis=-1), g.const([ks]),
                                              axis=-1, outputs=2)  # [B, ks]
  # The hidden states of the start candidates [B, ks, H].
  start_features = g.op("GatherND", sequence, g.op("Unsqueeze", start_top_index, g.const([-1])), batch_dims=1)
  end_kernel_0 = weights["end_logits/dense_0/kernel"]  # [2H, H]: rows for the hidden state, then the start's
  hidden_part = g.dense(sequence, g.weight("end_logits/dense_0/kernel/hidden", end_kernel_0[:hidden]), hint="end")
  start_part = g.dense(start_features, g.weight("end_logits/dense_0/kernel/start", end_kernel_0[hidden:]),
                       w("end_logits/dense_0/bias"), hint="end")
  x = g.op("Tanh", g.op("Add", g.op("Unsqueeze", hidden_part, g.const([1])),
                        g.op("Unsqueeze", start_part, g.const([2]))))  # [B, ks, S, H]
  x = g.layer_norm(x, w("end_logits/LayerNorm/gamma"), w("end_logits/LayerNorm/beta"))
  end_logits = g.squeeze_last(g.dense(x, w("end_logits/dense_1/kernel"), w("end_logits/dense_1/bias"), hint="end"))
  end_logits = g.mask_logits(end_logits, g.op("Unsqueeze", answerable, g.const([1])))  # [B, ks, S]
  end_top_log_probs, end_top_index = g.op("TopK", g.op("LogSoftmax", end_logits, axis=-1), g.const([ke]),
                                          axis=-1, outputs=2)  # [B, ks, ke]
  # The answer class from [softmax-weighted start feature, hidden state of [CLS]].
  start_probs = g.op("Unsqueeze", g.op("Softmax", start_logits, axis=-1), g.const([1]))  # [B, 1, S]
  start_feature = g.op("Squeeze", g.op("MatMul", start_probs, sequence), g.const([1]))  # [B, H]
  cls_hidden = g.op("Gather", sequence, g.const(0), axis=1)
  answer = g.op("Tanh", g.dense(g.op("Concat", start_feature, cls_hidden, axis=-1),
                                w("answer_class/dense_0/kernel"), w("answer_class/dense_0/bias"), hint="answer_class"))
  cls_logits = g.squeeze_last(g.dense(answer, w("answer_class/dense_1/kernel"), hint="answer_class"))
  int32 = g.onnx.TensorProto.INT32
  return {"start_top_log_probs": start_top_log_probs,
          "start_top_index": g.op("Cast", start_top_index, to=int32),
          "end_top_log_probs": g.op("Reshape", end_top_log_probs, g.const([0, ks * ke])),
          "end_top_index": g.op("Cast", g.op("Reshape", end_top_index, g.const([0, ks * ke])), to=int32),
          "cls_logits": cls_logits}


def _classifier(g, weights, pooled, spec):
  """Logits of the classifier head (docs/compatibility.md §3.1) and the original predict outputs."""
  logits = g.dense(pooled, g.weight("output_weights", weights["output_weights"].T),
                   g.weight("output_bias", weights["output_bias"]), hint="classifier")
  if spec.num_labels == 1:  # a regression: the score itself (albert.tasks.classification.task.prediction_outputs)
    return {"logits": logits, "probabilities": g.op("Identity", logits), "predictions": g.squeeze_last(logits)}
  predictions = g.op("Cast", g.op("ArgMax", logits, axis=-1, keepdims=0), to=g.onnx.TensorProto.INT32)
  return {"logits": logits, "probabilities": g.op("Softmax", logits, axis=-1), "predictions": predictions}


def build_model(config: AlbertConfig, arrays: Mapping[str, np.ndarray], spec: OnnxSpec, opset: int = DEFAULT_OPSET,
                metadata: Mapping[str, object] | None = None, source: str = "the model", fused_attention: bool = False):
  """The ONNX ModelProto of an encoder and its task head.

  Args:
    config: the model's config.
    arrays: {original variable name: float32 array}, e.g. `task_weights(task)`.
    spec: the task the graph ends in.
    opset: the ONNX opset, in [MIN_OPSET, MAX_OPSET].
    metadata: extra {key: value} for the file's metadata (stored under METADATA_PREFIX).
    source: how messages name the weights' origin.
    fused_attention: self-attention as onnxruntime's `com.microsoft.Attention` (runs only in onnxruntime;
      what INT8 files use), not standard operators.
  Returns:
    An `onnx.ModelProto`; every float initializer is one parameter tensor of `arrays`, stored once.
  """
  onnx = require("onnx", "the ONNX export")
  check_opset(opset)
  if spec.task not in TASKS:
    raise UserError(f"--task={spec.task}: not one of {', '.join(TASKS)}")
  g = _Graph(onnx, opset, fused_attention)
  weights = _Weights(arrays, source)
  sequence, pooled = _encoder(g, config, weights, with_pooler=spec.task in ("classifier", "encoder"))
  if spec.task == "squad_v1":
    outputs = _squad_v1(g, weights, sequence)
  elif spec.task == "squad_v2":
    outputs = _squad_v2(g, weights, sequence, spec, config.hidden_size)
  elif spec.task == "classifier":
    outputs = _classifier(g, weights, pooled, spec)
  else:
    outputs = {"sequence_output": sequence, "pooled_output": pooled}
  # Name the outputs: an Identity per output keeps node outputs unique and the names the task's own.
  for name in TASK_OUTPUTS[spec.task]:
    g.nodes.append(onnx.helper.make_node("Identity", [outputs[name]], [name]))
  helper, tensor = onnx.helper, onnx.TensorProto
  inputs = [helper.make_tensor_value_info(name, tensor.INT32, ["batch", "length"]) for name in INPUT_NAMES]
  graph = helper.make_graph(g.nodes, f"albert_{spec.task}", inputs,
                            [helper.make_tensor_value_info(name, _output_type(onnx, spec, name), None)
                             for name in TASK_OUTPUTS[spec.task]],
                            initializer=list(g.initializers.values()))
  opset_ids = [helper.make_opsetid("", opset)]
  if fused_attention:
    opset_ids.append(helper.make_opsetid(MS_DOMAIN, 1))
  model = helper.make_model(graph, opset_imports=opset_ids, producer_name="albert",
                            doc_string="ALBERT fine-tuned model (python -m albert.export_onnx)")
  model.ir_version = helper.find_min_ir_version_for(opset_ids[:1])
  values = {**spec.metadata(), "max_position_embeddings": config.max_position_embeddings,
            "hidden_size": config.hidden_size, "quantization": "none", **(metadata or {})}
  for key, value in values.items():
    if value is not None:
      entry = model.metadata_props.add()
      entry.key, entry.value = METADATA_PREFIX + key, value if isinstance(value, str) else json.dumps(value)
  return model


def _output_type(onnx, spec, name):
  if name in ("start_top_index", "end_top_index") or (name == "predictions" and spec.num_labels != 1):
    return onnx.TensorProto.INT32
  return onnx.TensorProto.FLOAT
