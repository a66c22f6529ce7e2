"""keras-hub ALBERT presets and the original layout, in both directions (`python -m albert.convert`).

A preset is a directory (docs/compatibility.md §16.3): `config.json` (the `AlbertBackbone` class and its
arguments), `model.weights.h5` (a Keras 3 weights file whose paths follow the layers' classes and
attributes, not their names), `tokenizer.json`, `metadata.json` and the SentencePiece model at
`assets/tokenizer/vocabulary.spm`. keras-hub reads Hugging Face weights but not original checkpoints;
this module is that missing mapping. The attention kernels are stored as [H, N, D] and [N, D, H] like
Model Garden's and are reshaped by the same rules (`albert.model.model_garden`). Conversions are exact
float32 copies and reshapes.
"""

from __future__ import annotations

import datetime
import os
import re

import numpy as np

from albert.core import fileio
from albert.core.errors import UserError, abbreviate, first_line, require_file
from albert.io import checkpoint
from albert.model import variables
from albert.model.config import CONFIG_FILENAME, AlbertConfig
from albert.model.model_garden import (HEADS_BIAS, HEADS_IN, HEADS_OUT, SAME, from_original, shape_to_original,
                                       to_original)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
TOKENIZER_FILE = "tokenizer.json"
METADATA_FILE = "metadata.json"
SPM_ASSET = os.path.join("assets", "tokenizer", "vocabulary.spm")
BACKBONE_CLASS = "AlbertBackbone"
# The pieces keras-hub's AlbertTokenizer looks up when it is built.
REQUIRED_PIECES = ("[CLS]", "[SEP]", "<pad>", "[MASK]")
FLAG = "keras_hub_dir"

# AlbertBackbone's arguments and the AlbertConfig keys they hold (dropout also sets the attention dropout).
_ARGUMENTS = {"vocabulary_size": "vocab_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
              "num_groups": "num_hidden_groups", "num_inner_repetitions": "inner_group_num",
              "embedding_dim": "embedding_size", "hidden_dim": "hidden_size", "intermediate_dim": "intermediate_size",
              "dropout": "hidden_dropout_prob", "max_sequence_length": "max_position_embeddings",
              "num_segments": "type_vocab_size"}

# ---- the name table (docs/compatibility.md §16.3): (h5 layer path, variable index, original name, layout) ----

_EMBEDDING_ENTRIES = (
    ("layers/reversible_embedding", 0, "bert/embeddings/word_embeddings", SAME),
    ("layers/position_embedding", 0, "bert/embeddings/position_embeddings", SAME),
    ("layers/embedding", 0, "bert/embeddings/token_type_embeddings", SAME),
    ("layers/layer_normalization", 0, "bert/embeddings/LayerNorm/gamma", SAME),
    ("layers/layer_normalization", 1, "bert/embeddings/LayerNorm/beta", SAME),
)
_PROJECTION = (("layers/dense", 0, "bert/encoder/embedding_hidden_mapping_in/kernel", SAME),
               ("layers/dense", 1, "bert/encoder/embedding_hidden_mapping_in/bias", SAME))
_POOLER = (("layers/dense_1", 0, "bert/pooler/dense/kernel", SAME),
           ("layers/dense_1", 1, "bert/pooler/dense/bias", SAME))
# Inside one transformer_encoder: (sub-layer, index, suffix after the block prefix, layout).
_BLOCK_ENTRIES = tuple(
    [(f"_self_attention_layer/{part}_dense", 0, f"attention_1/self/{part}/kernel", HEADS_IN)
     for part in ("query", "key", "value")]
    + [(f"_self_attention_layer/{part}_dense", 1, f"attention_1/self/{part}/bias", HEADS_BIAS)
       for part in ("query", "key", "value")]
    + [("_self_attention_layer/output_dense", 0, "attention_1/output/dense/kernel", HEADS_OUT),
       ("_self_attention_layer/output_dense", 1, "attention_1/output/dense/bias", SAME),
       ("_self_attention_layer_norm", 0, "LayerNorm/gamma", SAME),
       ("_self_attention_layer_norm", 1, "LayerNorm/beta", SAME),
       ("_feedforward_intermediate_dense", 0, "ffn_1/intermediate/dense/kernel", SAME),
       ("_feedforward_intermediate_dense", 1, "ffn_1/intermediate/dense/bias", SAME),
       ("_feedforward_output_dense", 0, "ffn_1/intermediate/output/dense/kernel", SAME),
       ("_feedforward_output_dense", 1, "ffn_1/intermediate/output/dense/bias", SAME),
       ("_feedforward_layer_norm", 0, "LayerNorm_1/gamma", SAME),
       ("_feedforward_layer_norm", 1, "LayerNorm_1/beta", SAME)])
_ENCODER_LAYER = re.compile(r"^transformer_encoder(?:_(\d+))?$")
_BLOCK_NAME = re.compile(r"^group_(\d+)_inner_layer_(\d+)$")


def _encoder_path(n: int) -> str:
  """Keras names the n-th TransformerEncoder (creation order: group by group, block by block) after its class."""
  return "layers/transformer_encoder" + (f"_{n}" if n else "")


def weight_table(config: AlbertConfig, block_paths: dict[tuple[int, int], str] | None = None) -> list[tuple]:
  """(h5 layer path, variable index, original name, layout) of every backbone weight.

  Args:
    config: gives the groups and blocks per group.
    block_paths: {(group, block): h5 path of its transformer_encoder} as read from a file's layer names;
      None means keras-hub's creation order.
  Returns:
    The entries; the E->H projection is always there (keras-hub has it even when E == H).
  """
  entries = list(_EMBEDDING_ENTRIES + _PROJECTION)
  for group in range(config.num_hidden_groups):
    for inner in range(config.inner_group_num):
      path = (block_paths or {}).get((group, inner), _encoder_path(group * config.inner_group_num + inner))
      prefix = variables.block_prefix(group, inner)
      entries += [(f"{path}/{sub}", index, f"{prefix}/{suffix}", layout)
                  for sub, index, suffix, layout in _BLOCK_ENTRIES]
  return entries + list(_POOLER)


# ---- configs ----

def preset_config(preset: dict, source: str) -> AlbertConfig:
  """The AlbertConfig of a parsed preset `config.json`; another backbone class is a one-line UserError."""
  class_name = preset.get("class_name") if isinstance(preset, dict) else None
  if class_name != BACKBONE_CLASS:
    registered = preset.get("registered_name") if isinstance(preset, dict) else None
    raise UserError(f"--{FLAG}: {source} describes a {registered or class_name or 'non-keras-hub object'}, not a "
                    f"keras_hub>{BACKBONE_CLASS}; convert an ALBERT preset")
  arguments = preset.get("config")
  if not isinstance(arguments, dict):
    raise UserError(f"--{FLAG}: {source} has no 'config' object with the backbone's arguments")
  missing = [key for key in _ARGUMENTS if key not in arguments]
  if missing:
    raise UserError(f"--{FLAG}: {source} lacks the {BACKBONE_CLASS} arguments {', '.join(missing)}")
  values = {key: arguments[argument] for argument, key in _ARGUMENTS.items()}
  values["attention_probs_dropout_prob"] = values["hidden_dropout_prob"]
  # keras-hub fixes these: tanh-approximated GELU, TruncatedNormal(0.02), LayerNorm epsilon 1e-12.
  values.update(hidden_act="gelu", initializer_range=0.02)
  return AlbertConfig.from_dict(values, source=source)


def backbone_config(config: AlbertConfig) -> dict:
  """A preset's `config.json` for `config`; what AlbertBackbone cannot express is a UserError."""
  if config.hidden_act != "gelu":
    raise UserError(f"hidden_act {config.hidden_act!r} cannot be expressed: keras-hub's AlbertBackbone always uses "
                    "GELU")
  if config.num_hidden_layers % config.num_hidden_groups:
    raise UserError(f"num_hidden_layers {config.num_hidden_layers} is not a multiple of num_hidden_groups "
                    f"{config.num_hidden_groups}, which keras-hub's AlbertBackbone requires")
  if config.attention_probs_dropout_prob != config.hidden_dropout_prob:
    raise UserError(f"attention_probs_dropout_prob {config.attention_probs_dropout_prob} differs from "
                    f"hidden_dropout_prob {config.hidden_dropout_prob}; keras-hub's AlbertBackbone has one dropout "
                    "rate")
  arguments = {"name": "albert_backbone", "trainable": True,
               "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                         "registered_name": None}}
  arguments.update({argument: getattr(config, key) for argument, key in _ARGUMENTS.items()})
  return {"module": "keras_hub.src.models.albert.albert_backbone", "class_name": BACKBONE_CLASS, "config": arguments,
          "registered_name": f"keras_hub>{BACKBONE_CLASS}"}


def tokenizer_config() -> dict:
  """The preset's `tokenizer.json`: keras-hub's AlbertTokenizer, its model read from the assets."""
  return {"module": "keras_hub.src.models.albert.albert_tokenizer", "class_name": "AlbertTokenizer",
          "config": {"name": "albert_tokenizer", "trainable": True,
                     "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "int32"},
                               "registered_name": None},
                     "config_file": TOKENIZER_FILE, "proto": None, "sequence_length": None, "add_bos": False,
                     "add_eos": False},
          "registered_name": "keras_hub>AlbertTokenizer"}


# ---- reading ----

def _h5py():
  try:
    import h5py
  except ImportError:  # TensorFlow depends on h5py, so this is a broken installation
    raise UserError("reading and writing keras-hub presets needs h5py (pip install h5py)") from None
  return h5py


def _block_paths(layers_group) -> dict[tuple[int, int], str]:
  """{(group, block): h5 path} from the transformer encoders' recorded layer names (`group_0_inner_layer_0`)."""
  found = {}
  for key in layers_group:
    if not _ENCODER_LAYER.match(key):
      continue
    vars_group = layers_group[key].get("vars")
    name = vars_group.attrs.get("name") if vars_group is not None else None
    name = name.decode() if isinstance(name, bytes) else name
    match = _BLOCK_NAME.match(name or "")
    if match:
      found[(int(match[1]), int(match[2]))] = f"layers/{key}"
  return found


def read_preset(preset_dir: str) -> tuple[AlbertConfig, dict[str, np.ndarray], str]:
  """(config, original-named float32 arrays of the encoder, path of the SentencePiece model) of a preset.

  Every weight of the table must be in model.weights.h5 with the shape config.json implies, and nothing
  else may be; an E == H preset's projection must be the identity (the original has none).
  """
  if not os.path.isdir(preset_dir):
    raise UserError(f"--{FLAG}: directory not found: {preset_dir}")
  config_path = os.path.join(preset_dir, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise UserError(f"--{FLAG}: {preset_dir} has no {CONFIG_FILE}; is it a keras-hub preset?")
  config = preset_config(fileio.read_json(config_path, what="keras-hub config.json"), config_path)
  weights_path = os.path.join(preset_dir, WEIGHTS_FILE)
  if not os.path.isfile(weights_path):
    raise UserError(f"--{FLAG}: {preset_dir} has no {WEIGHTS_FILE} (the backbone's weights); download the whole preset")
  spm_path = os.path.join(preset_dir, SPM_ASSET)
  if not os.path.isfile(spm_path):
    raise UserError(f"--{FLAG}: {preset_dir} has no {SPM_ASSET} (the SentencePiece model)")
  h5py = _h5py()
  try:
    with h5py.File(weights_path, "r") as f:
      arrays = _read_weights(f, config, weights_path, h5py.Dataset)
  except OSError as e:
    raise UserError(f"--{FLAG}: {weights_path} cannot be read as HDF5: {first_line(e)}") from None
  return config, arrays, spm_path


def _read_weights(f, config, source, dataset_type):
  layers = f.get("layers")
  if layers is None:
    raise UserError(f"{source} has no 'layers' group; is it a Keras 3 weights file?")
  expected = variables.encoder_shapes(config)
  projection = {"kernel": [config.embedding_size, config.hidden_size], "bias": [config.hidden_size]}
  expected.update({name: projection[name.rsplit("/", 1)[1]] for _, _, name, _ in _PROJECTION})
  arrays, missing, wrong = {}, [], []
  used = set()
  for path, index, name, layout in weight_table(config, _block_paths(layers)):
    dataset = f.get(f"{path}/vars/{index}")
    if dataset is None:
      missing.append(f"{path}/vars/{index}")
      continue
    used.add(dataset.name.lstrip("/"))
    if shape_to_original(dataset.shape, layout) != expected[name]:
      wrong.append(f"{path}/vars/{index} {list(dataset.shape)} (config.json implies {expected[name]} as {name})")
      continue
    arrays[name] = to_original(np.asarray(dataset, dtype=np.float32), layout)
  if missing:
    raise UserError(f"{source} lacks weights config.json implies: {abbreviate(missing, 3)}")
  if wrong:
    raise UserError(f"{source} does not fit its config.json: {abbreviate(wrong, 3)}")
  unknown = []
  f.visititems(lambda name, item: unknown.append(name) if isinstance(item, dataset_type) and name not in used else None)
  if unknown:
    raise UserError(f"{source} has weights with no ALBERT counterpart: {abbreviate(sorted(unknown), 3)}")
  _drop_identity_projection(config, arrays, source)
  return arrays


def _drop_identity_projection(config, arrays, source):
  """keras-hub always projects E -> H; the original has no projection when E == H, so it must be the identity."""
  if config.embedding_size != config.hidden_size:
    return
  kernel = arrays.pop(_PROJECTION[0][2])
  bias = arrays.pop(_PROJECTION[1][2])
  if not (np.array_equal(kernel, np.eye(config.hidden_size)) and not np.any(bias)):
    raise UserError(f"{source}: embedding_dim == hidden_dim but the embedding projection is not the identity; the "
                    "original ALBERT has no such projection")


# ---- writing ----

# Layers without weights that Keras records (empty) beside the weighted ones, and their layer names.
_EMPTY_LAYERS = {"layers/add": "embeddings_add", "layers/dropout": "embeddings_dropout",
                 "layers/input_layer": "token_ids", "layers/input_layer_1": "segment_ids",
                 "layers/input_layer_2": "padding_mask"}
_LAYER_NAMES = {"layers/reversible_embedding": "token_embedding", "layers/position_embedding": "position_embedding",
                "layers/embedding": "segment_embedding", "layers/layer_normalization": "embeddings_layer_norm",
                "layers/dense": "embedding_projection", "layers/dense_1": "pooled_dense"}
_BLOCK_LAYER_NAMES = {"_self_attention_layer": "self_attention_layer", "_self_attention_layer/query_dense": "query",
                      "_self_attention_layer/key_dense": "key", "_self_attention_layer/value_dense": "value",
                      "_self_attention_layer/output_dense": "attention_output",
                      "_self_attention_layer/_softmax": "softmax", "_self_attention_layer/_dropout_layer": "dropout",
                      "_self_attention_layer_norm": "self_attention_layer_norm",
                      "_self_attention_dropout": "self_attention_dropout",
                      "_feedforward_intermediate_dense": "feedforward_intermediate_dense",
                      "_feedforward_output_dense": "feedforward_output_dense",
                      "_feedforward_layer_norm": "feedforward_layer_norm",
                      "_feedforward_dropout": "feedforward_dropout"}


def write_weights(path: str, config: AlbertConfig, arrays: dict[str, np.ndarray]) -> int:
  """Writes model.weights.h5 in the layout Keras saves an AlbertBackbone in; returns the parameter count."""
  arrays = dict(arrays)
  if config.embedding_size == config.hidden_size:
    arrays[_PROJECTION[0][2]] = np.eye(config.hidden_size, dtype=np.float32)
    arrays[_PROJECTION[1][2]] = np.zeros([config.hidden_size], np.float32)
  h5py = _h5py()
  count = 0
  with fileio.atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
    f.create_group("vars").attrs["name"] = "albert_backbone"
    for layer, name in {**_EMPTY_LAYERS, **_LAYER_NAMES}.items():
      f.require_group(f"{layer}/vars").attrs["name"] = name
    for n in range(config.num_hidden_groups * config.inner_group_num):
      group, inner = divmod(n, config.inner_group_num)
      f.require_group(f"{_encoder_path(n)}/vars").attrs["name"] = f"group_{group}_inner_layer_{inner}"
      for sub, name in _BLOCK_LAYER_NAMES.items():
        f.require_group(f"{_encoder_path(n)}/{sub}/vars").attrs["name"] = name
    for layer, index, name, layout in weight_table(config):
      value = from_original(np.asarray(arrays[name], np.float32), layout, config.num_attention_heads)
      f[f"{layer}/vars"].create_dataset(str(index), data=value)
      count += value.size
  return count


def write_preset(preset_dir: str, config: AlbertConfig, arrays: dict[str, np.ndarray], spm_path: str) -> None:
  """Writes a keras-hub preset of the encoder `arrays` (original names) with the SentencePiece model `spm_path`."""
  _check_pieces(spm_path)
  config_json = backbone_config(config)
  os.makedirs(os.path.join(preset_dir, os.path.dirname(SPM_ASSET)), exist_ok=True)
  count = write_weights(os.path.join(preset_dir, WEIGHTS_FILE), config, arrays)
  fileio.write_json(os.path.join(preset_dir, CONFIG_FILE), config_json)
  fileio.write_json(os.path.join(preset_dir, TOKENIZER_FILE), tokenizer_config())
  fileio.copy_file(spm_path, os.path.join(preset_dir, SPM_ASSET))
  fileio.write_json(os.path.join(preset_dir, METADATA_FILE), {
      "parameter_count": int(count), "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
      "tasks": ["MaskedLM", "TextClassifier"]})


def _check_pieces(spm_path):
  import sentencepiece as spm
  processor = spm.SentencePieceProcessor(model_file=spm_path)
  missing = [piece for piece in REQUIRED_PIECES if processor.piece_to_id(piece) == processor.unk_id()]
  if missing:
    raise UserError(f"{spm_path} lacks the pieces {', '.join(missing)} keras-hub's AlbertTokenizer needs")


# ---- the two conversions ----

def preset_to_original(preset_dir: str, output_dir: str, checkpoint_name: str, spm_name: str) -> str:
  """Writes `checkpoint_name` (global_step 0), albert_config.json and `spm_name` in `output_dir` from a preset.

  Returns:
    The checkpoint prefix written.
  """
  config, arrays, spm_path = read_preset(preset_dir)
  os.makedirs(output_dir, exist_ok=True)
  prefix = os.path.join(output_dir, checkpoint_name)
  checkpoint.save_checkpoint(prefix, {**arrays, checkpoint.GLOBAL_STEP: np.int64(0)})
  config.to_json_file(os.path.join(output_dir, CONFIG_FILENAME))
  fileio.copy_file(spm_path, os.path.join(output_dir, spm_name))
  return prefix


def original_to_preset(albert_directory: str, checkpoint_name: str, spm_name: str, preset_dir: str) -> str:
  """Writes a keras-hub preset of an original-layout directory's encoder (pretraining heads stay behind).

  Returns:
    The checkpoint prefix read.
  """
  config = AlbertConfig.from_json_file(
      require_file(os.path.join(albert_directory, CONFIG_FILENAME), "input_dir (albert_config.json)"))
  spm_path = require_file(os.path.join(albert_directory, spm_name), f"input_dir ({spm_name})")
  prefix = checkpoint.resolve_checkpoint(os.path.join(albert_directory, checkpoint_name), "checkpoint_name")
  backbone_config(config)  # what the backbone cannot express fails before anything is read or written
  available = checkpoint.list_variables(prefix)
  wanted = variables.encoder_shapes(config)
  missing = [name for name in wanted if name not in available]
  if missing:
    raise UserError(f"checkpoint {prefix} lacks encoder variables albert_config.json implies: {abbreviate(missing)}")
  mismatched = [f"{name} {available[name]} (config implies {shape})" for name, shape in wanted.items()
                if available[name] != shape]
  if mismatched:
    raise UserError(f"checkpoint {prefix} does not fit albert_config.json: {abbreviate(mismatched)}")
  arrays = {name: value.astype(np.float32) for name, value in checkpoint.read_tensors(prefix, wanted).items()}
  write_preset(preset_dir, config, arrays, spm_path)
  return prefix
