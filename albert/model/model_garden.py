"""Model Garden's TF2 ALBERT (tf-models-official): its Keras variable names, mapped to the original's.

Model Garden writes ALBERT in two forms users have (docs/compatibility.md §16.1, §16.2):
- TF2 encoder SavedModels, the `tensorflow/albert_en_{base,large,xlarge,xxlarge}` TF-Hub modules the
  TensorFlow tutorials use: called with `input_word_ids` / `input_mask` / `input_type_ids`, no
  `albert_config.json`, the SentencePiece model as the `sp_model_file` asset, optionally an `.mlm` object
  holding the masked-LM head;
- TF2 object-based checkpoints (`ckpt-N`, `bert_model.ckpt-N`) written by its converter and trainer.
Both are object-based bundles (a SavedModel's variables are `variables/variables`) whose object graph
records every variable's Keras name (`word_embeddings/embeddings`, `transformer/self_attention/query/kernel`,
...). `ObjectGraphReader` reads such a bundle by those names, translated through the one table below to the
original names and layouts, so `albert.io.checkpoint` loads them into `AlbertModel` by name like any
original checkpoint, and fine-tuned checkpoints come out in the original layout.

A module's config is inferred (`module_config`): the sizes from the variables' shapes, the layer count
from `len(encoder_outputs)` in the saved call's output signature, the heads from the query kernel's
middle dimension, the rest from the released size with that architecture. Versions 1 and 2 of the
modules return only [pooled_output, sequence_output]; their layer count comes from the released size
their shapes match.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core.errors import UserError, abbreviate, first_line
from albert.model import variables
from albert.model.config import CONFIG_FILENAME, PRESET_NAMES, AlbertConfig, preset
from albert.model.shapes import check_matches, config_from_sizes, describe_sizes, match_preset, module_sizes

if TYPE_CHECKING:
  from collections.abc import Mapping, Sequence

FLAG = "albert_hub_module_handle"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
SAVED_MODEL_FILE = "saved_model.pb"
SP_MODEL_ATTRIBUTE = "sp_model_file"

# ---- layouts: how a Model Garden (or keras-hub) tensor is stored, relative to the original 2-D one ----
SAME = "same"
HEADS_IN = "heads_in"      # q/k/v kernel [H, N, D] (original [H, N*D])
HEADS_BIAS = "heads_bias"  # q/k/v bias [N, D] (original [N*D])
HEADS_OUT = "heads_out"    # attention output kernel [N, D, H] (original [N*D, H])
TRANSPOSE = "transpose"    # sentence-order logits kernel [H, 2] (original output_weights [2, H])


def shape_to_original(shape: Sequence[int], layout: str) -> list[int]:
  """The original shape of a tensor stored in `layout` with `shape`."""
  shape = [int(d) for d in shape]
  if layout == HEADS_IN and len(shape) == 3:
    return [shape[0], shape[1] * shape[2]]
  if layout == HEADS_BIAS and len(shape) == 2:
    return [shape[0] * shape[1]]
  if layout == HEADS_OUT and len(shape) == 3:
    return [shape[0] * shape[1], shape[2]]
  if layout == TRANSPOSE and len(shape) == 2:
    return shape[::-1]
  return shape


def to_original(value: np.ndarray, layout: str) -> np.ndarray:
  """A stored tensor in the original layout (reshapes are row-major: head n, dimension d -> column n*D + d)."""
  value = np.asarray(value)
  if layout == TRANSPOSE and value.ndim == 2:
    return np.ascontiguousarray(value.T)
  return value.reshape(shape_to_original(value.shape, layout))


def from_original(value: np.ndarray, layout: str, num_heads: int) -> np.ndarray:
  """The inverse of `to_original` for a model with `num_heads` attention heads."""
  value = np.asarray(value)
  if layout == HEADS_IN:
    return value.reshape([value.shape[0], num_heads, value.shape[1] // num_heads])
  if layout == HEADS_BIAS:
    return value.reshape([num_heads, value.shape[0] // num_heads])
  if layout == HEADS_OUT:
    return value.reshape([num_heads, value.shape[0] // num_heads, value.shape[1]])
  if layout == TRANSPOSE:
    return np.ascontiguousarray(value.T)
  return value


# ---- the name table (docs/compatibility.md §16.1) ----

def _block_entries(prefix: str, block: str) -> list[tuple[str, str, str]]:
  """(foreign name, original name, layout) of one shared block's 16 variables; `prefix` is the foreign scope."""
  entries = []
  for part in ("query", "key", "value"):
    entries += [(f"{prefix}self_attention/{part}/kernel", f"{block}/attention_1/self/{part}/kernel", HEADS_IN),
                (f"{prefix}self_attention/{part}/bias", f"{block}/attention_1/self/{part}/bias", HEADS_BIAS)]
  output = f"{prefix}self_attention/attention_output"
  entries += [(f"{output}/kernel", f"{block}/attention_1/output/dense/kernel", HEADS_OUT),
              (f"{output}/bias", f"{block}/attention_1/output/dense/bias", SAME)]
  for scope, original in (("self_attention_layer_norm", "LayerNorm"), ("intermediate", "ffn_1/intermediate/dense"),
                          ("output", "ffn_1/intermediate/output/dense"), ("output_layer_norm", "LayerNorm_1")):
    leaves = ("gamma", "beta") if "norm" in scope else ("kernel", "bias")
    entries += [(f"{prefix}{scope}/{leaf}", f"{block}/{original}/{leaf}", SAME) for leaf in leaves]
  return entries


def _table() -> dict[str, tuple[str, str]]:
  """{Model Garden name: (original name, layout)} of the encoder, the masked-LM and the sentence-order heads."""
  bert = variables.ENCODER_SCOPE
  entries = [("word_embeddings/embeddings", f"{bert}/embeddings/word_embeddings", SAME),
             ("position_embedding/embeddings", f"{bert}/embeddings/position_embeddings", SAME),
             ("type_embeddings/embeddings", f"{bert}/embeddings/token_type_embeddings", SAME)]
  entries += [(f"embeddings/layer_norm/{leaf}", f"{bert}/embeddings/LayerNorm/{leaf}", SAME)
              for leaf in ("gamma", "beta")]
  entries += [(f"embedding_projection/{leaf}", f"{bert}/encoder/embedding_hidden_mapping_in/{leaf}", SAME)
              for leaf in ("kernel", "bias")]
  # One block, shared by every layer: the original's group_0/inner_group_0.
  entries += _block_entries("transformer/", variables.block_prefix(0, 0))
  entries += [(f"pooler_transform/{leaf}", f"{bert}/pooler/dense/{leaf}", SAME) for leaf in ("kernel", "bias")]
  mlm = variables.MLM_SCOPE
  entries += [(f"bert/{mlm}/transform/dense/{leaf}", f"{mlm}/transform/dense/{leaf}", SAME)
              for leaf in ("kernel", "bias")]
  entries += [(f"bert/{mlm}/transform/LayerNorm/{leaf}", f"{mlm}/transform/LayerNorm/{leaf}", SAME)
              for leaf in ("gamma", "beta")]
  entries += [(f"bert/{mlm}/output_bias/bias", f"{mlm}/output_bias", SAME),
              ("predictions/transform/logits/kernel", f"{variables.SOP_SCOPE}/output_weights", TRANSPOSE),
              ("predictions/transform/logits/bias", f"{variables.SOP_SCOPE}/output_bias", SAME)]
  return {foreign: (original, layout) for foreign, original, layout in entries}


NAMES = _table()
QUERY_KERNEL = "transformer/self_attention/query/kernel"
WORD_EMBEDDINGS = "word_embeddings/embeddings"
# Model Garden's BERT encoder keeps one block per layer (`transformer/layer_0/...`); ALBERT shares one.
_BERT_LAYER = re.compile(r"^transformer/layer_\d+/")


def is_bert_names(names: Sequence[str]) -> bool:
  """Whether Keras variable names are those of Model Garden's BERT encoder (one block per layer)."""
  return any(_BERT_LAYER.match(name) for name in names)


# ---- object-based bundles, read by their variables' names ----

def object_graph_names(reader: tf.train.CheckpointReader) -> dict[str, str]:
  """{variable name recorded in the object graph: checkpoint key} of an object-based bundle.

  Optimizer slots are left out (their keys hold `.OPTIMIZER_SLOT`); a variable reachable along two paths
  (e.g. the word embeddings, also the masked-LM head's table) is stored once and listed once. A damaged
  object graph is a ValueError.
  """
  from tensorflow.core.protobuf import trackable_object_graph_pb2
  from google.protobuf.message import DecodeError
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  try:
    graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
  except DecodeError as e:
    raise ValueError(f"its object graph cannot be parsed: {e}") from None
  names = {}
  for node in graph.nodes:
    for attribute in node.attributes:
      key = attribute.checkpoint_key
      if attribute.name == "VARIABLE_VALUE" and "/.OPTIMIZER_SLOT/" not in key:
        names.setdefault(attribute.full_name or key, key)
  return names


class ObjectGraphReader:
  """A `tf.train.CheckpointReader` look-alike over an object-based bundle, keyed by original names.

  Each variable appears under its recorded name, translated through `NAMES` (with its reshape) when it is
  a Model Garden name; so a Model Garden checkpoint or SavedModel reads as an original checkpoint, and one
  of our own TF2 exports (whose variables already carry the original names) reads unchanged.

  Args:
    reader: the bundle's `tf.train.load_checkpoint` reader.
    source: how error messages name the bundle.
  """

  def __init__(self, reader: tf.train.CheckpointReader, source: str) -> None:
    self._reader = reader
    recorded = object_graph_names(reader)
    if is_bert_names(recorded):
      raise UserError(f"{source} holds a Model Garden BERT encoder (one transformer/layer_N block per layer), "
                      "not ALBERT (one shared transformer block)")
    stored_shapes = reader.get_variable_to_shape_map()
    stored_dtypes = reader.get_variable_to_dtype_map()
    self._sources = {}
    for name, key in recorded.items():
      original, layout = NAMES.get(name, (name, SAME))
      self._sources[original] = (key, layout)
    self._shapes = {name: shape_to_original(stored_shapes[key], layout)
                    for name, (key, layout) in self._sources.items()}
    self._dtypes = {name: stored_dtypes[key] for name, (key, _) in self._sources.items()}

  def get_variable_to_shape_map(self) -> dict[str, list[int]]:
    return dict(self._shapes)

  def get_variable_to_dtype_map(self) -> dict[str, tf.DType]:
    return dict(self._dtypes)

  def has_tensor(self, name: str) -> bool:
    return name in self._sources

  def get_tensor(self, name: str) -> np.ndarray:
    if name not in self._sources:
      raise ValueError(f"{name} is not in the checkpoint")
    key, layout = self._sources[name]
    return to_original(self._reader.get_tensor(key), layout)


# ---- TF2 encoder SavedModels ----

class ModuleFacts(NamedTuple):
  """What a TF2 SavedModel's `saved_model.pb` says about it, read without loading it (no ops needed).

  Args:
    attributes: the root object's attribute names (`sp_model_file`, `mlm`, `tokenize`, ...).
    num_layers: `len(encoder_outputs)` in the output signature of the root's `__call__`, or None.
    sp_model_file: the path of the `sp_model_file` asset, or None.
  """
  attributes: frozenset
  num_layers: int | None
  sp_model_file: str | None

  @property
  def is_preprocessor(self) -> bool:
    """A text preprocessing model (`albert_en_preprocess`): `tokenize` and `bert_pack_inputs`, no weights."""
    return {"tokenize", "bert_pack_inputs"} <= self.attributes


def read_module_facts(module_dir: str) -> ModuleFacts:
  """The `ModuleFacts` of the TF2 SavedModel in `module_dir`; an unreadable saved_model.pb is a UserError."""
  from tensorflow.core.protobuf import saved_model_pb2
  path = os.path.join(module_dir, SAVED_MODEL_FILE)
  saved_model = saved_model_pb2.SavedModel()
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      saved_model.ParseFromString(f.read())
  except Exception as e:  # noqa: BLE001  (gfile errors or protobuf's DecodeError)
    raise UserError(f"--{FLAG}: {path} cannot be read as a SavedModel: {first_line(e)}") from None
  if not saved_model.meta_graphs:
    raise UserError(f"--{FLAG}: {path} holds no MetaGraph")
  meta_graph = saved_model.meta_graphs[0]
  graph = meta_graph.object_graph_def
  if not graph.nodes:
    return ModuleFacts(frozenset(), None, None)
  children = {child.local_name: graph.nodes[child.node_id] for child in graph.nodes[0].children}
  num_layers = None
  call = children.get("__call__")
  if call is not None and call.WhichOneof("kind") == "function":
    for name in call.function.concrete_functions:
      output = graph.concrete_functions[name].output_signature
      if output.WhichOneof("kind") == "dict_value" and "encoder_outputs" in output.dict_value.fields:
        num_layers = len(output.dict_value.fields["encoder_outputs"].list_value.values)
        break
  sp_model_file = None
  asset = children.get(SP_MODEL_ATTRIBUTE)
  if asset is not None and asset.WhichOneof("kind") == "asset":
    filename = meta_graph.asset_file_def[asset.asset.asset_file_def_index].filename
    sp_model_file = os.path.join(module_dir, "assets", filename)
  return ModuleFacts(frozenset(children), num_layers, sp_model_file)


def variables_prefix(module_dir: str) -> str:
  return os.path.join(module_dir, "variables", "variables")


def module_variable_names(module_dir: str) -> dict[str, list[int]]:
  """{Keras variable name: stored shape} of a TF2 SavedModel's variables, {} when it has none."""
  prefix = variables_prefix(module_dir)
  if not tf.io.gfile.exists(prefix + ".index"):
    return {}
  try:
    reader = tf.train.load_checkpoint(prefix)
    if not reader.has_tensor(OBJECT_GRAPH_KEY):
      return {}
    names = object_graph_names(reader)
  except (tf.errors.OpError, ValueError) as e:
    raise UserError(f"--{FLAG}: the variables of {module_dir} cannot be read: {first_line(e)}") from None
  shapes = reader.get_variable_to_shape_map()
  return {name: list(shapes[key]) for name, key in names.items()}


def is_model_garden_module(module_dir: str) -> bool:
  """Whether a directory holds a TF2 SavedModel whose variables carry Model Garden ALBERT names.

  (Only the names are checked; `module_config` says what is wrong with anything else.)
  """
  if not tf.io.gfile.exists(os.path.join(module_dir, SAVED_MODEL_FILE)):
    return False
  names = module_variable_names(module_dir)
  return WORD_EMBEDDINGS in names and QUERY_KERNEL in names


def released_presets() -> dict[str, AlbertConfig]:
  """The released sizes the Model Garden modules were converted from (albert_en_base is albert_base v2)."""
  return {f"albert_{name}": preset(name, version=2) for name in PRESET_NAMES}


def module_config(module_dir: str, expected: AlbertConfig | None = None,
                  presets: Mapping[str, AlbertConfig] | None = None) -> AlbertConfig:
  """The config of a Model Garden encoder SavedModel, inferred and logged (or `expected`, checked).

  Args:
    module_dir: a resolved module directory holding a TF2 SavedModel without albert_config.json.
    expected: the config given by --albert_config_file, checked against everything the module shows
      (sizes, layers, heads), or None.
    presets: {name: config} whose dropout and initializer values a module of the same architecture takes;
      None means the released sizes (`released_presets`).
  Returns:
    The AlbertConfig. A directory that is no Model Garden ALBERT encoder (a BERT encoder, a preprocessing
    model, anything else) is a one-line UserError naming the module.
  """
  facts = read_module_facts(module_dir)
  names = module_variable_names(module_dir)
  _check_is_albert_encoder(module_dir, facts, names)
  original_shapes = {NAMES[name][0]: shape_to_original(shape, NAMES[name][1]) for name, shape in names.items()
                     if name in NAMES}
  sizes = module_sizes(original_shapes, f"--{FLAG}: {module_dir}")
  num_heads = int(names[QUERY_KERNEL][1])
  shown = {**sizes, "num_attention_heads": num_heads}
  if facts.num_layers is not None:
    shown["num_hidden_layers"] = facts.num_layers
  if expected is not None:
    check_matches(shown, expected, f"--{FLAG}: the Model Garden module {module_dir} does not match "
                  "--albert_config_file")
    logging.info("Model Garden module %s: using --albert_config_file, which matches its variables and "
                 "encoder_outputs", module_dir)
    return expected
  presets = released_presets() if presets is None else presets
  if facts.num_layers is None:
    return _config_of_released_size(module_dir, sizes, num_heads, presets)
  config, name = config_from_sizes(sizes, facts.num_layers, num_heads, presets)
  config.validate(f"the config inferred from {module_dir}")
  logging.warning("Model Garden module %s has no assets/%s: inferred %s from its variable shapes, "
                  "len(encoder_outputs) and the query kernel; %s (dropout %g, %s); pass --albert_config_file to "
                  "override", module_dir, CONFIG_FILENAME, describe_sizes(shown),
                  f"the other values of the {name} preset" if name else "no released size has this architecture, "
                  "so the other values are AlbertConfig's defaults", config.hidden_dropout_prob, config.hidden_act)
  return config


def _config_of_released_size(module_dir, sizes, num_heads, presets):
  """Modules whose call returns no encoder_outputs (versions 1 and 2 return [pooled, sequence]): the layer count
  comes from the released size whose shapes and heads match, as for the original's version-1 modules."""
  match = match_preset(sizes, presets)
  if match is None or match[1].num_attention_heads != num_heads:
    raise UserError(f"--{FLAG}: {module_dir} has Model Garden ALBERT variables but its call returns no "
                    f"encoder_outputs, and its shapes ({describe_sizes(sizes)}, num_attention_heads {num_heads}) match "
                    f"no known ALBERT size ({', '.join(presets)}); pass --albert_config_file")
  name, config = match
  config.validate(f"the {name} preset with the sizes of {module_dir}")
  logging.warning("Model Garden module %s has no assets/%s and its call returns no encoder_outputs: using the %s "
                  "preset (%d layers, %d heads, dropout %g) matched by its variable shapes (%s); pass "
                  "--albert_config_file to override", module_dir, CONFIG_FILENAME, name, config.num_hidden_layers,
                  config.num_attention_heads, config.hidden_dropout_prob, describe_sizes(sizes))
  return config


def _check_is_albert_encoder(module_dir, facts, names):
  """One line for what users pass by mistake: a BERT encoder, a preprocessing model, another model."""
  if is_bert_names(names):
    raise UserError(f"--{FLAG}: {module_dir} is a Model Garden BERT encoder (one transformer/layer_N block per "
                    "layer), not ALBERT; use an albert_en_* module")
  if facts.is_preprocessor:
    raise UserError(f"--{FLAG}: {module_dir} is a text preprocessing model (tokenize, bert_pack_inputs), not an "
                    "encoder; pass the encoder module (e.g. albert_en_base) here")
  if WORD_EMBEDDINGS not in names or QUERY_KERNEL not in names:
    shown = abbreviate(sorted(names), 3) if names else "none"
    raise UserError(f"--{FLAG}: {module_dir} has no assets/{CONFIG_FILENAME} and is no Model Garden ALBERT encoder "
                    f"(its variables: {shown}); is it an ALBERT module?")


def spm_model_path(module_dir: str) -> str:
  """The SentencePiece model of a Model Garden module: its `sp_model_file` asset, else the one `.model` in assets/."""
  path = read_module_facts(module_dir).sp_model_file
  if path is not None:
    return path
  assets = os.path.join(module_dir, "assets")
  models = sorted(name for name in (tf.io.gfile.listdir(assets) if tf.io.gfile.isdir(assets) else [])
                  if name.endswith(".model"))
  if len(models) == 1:
    return os.path.join(assets, models[0])
  raise UserError(f"--{FLAG}: the Model Garden module {module_dir} has no {SP_MODEL_ATTRIBUTE} asset and "
                  f"{len(models)} SentencePiece models in assets/; pass --spm_model_file")
