"""ALBERT weights between Hugging Face folders and the original release's layout (`python -m albert.convert`).

An original-layout directory holds `albert_config.json`, `30k-clean.model` and a checkpoint
(`model.ckpt-best` by default) with the original names (docs/compatibility.md §2.7); a Hugging Face
folder holds `config.json`, `model.safetensors` (or `pytorch_model.bin`, read only when torch is
installed) and `spiece.model`.
The encoder, the MLM head and the SOP head convert; both directions are exact (float32 copies and
transposes), so a round trip reproduces every tensor bit for bit.
"""

import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core import fileio
from albert.core.errors import UserError, abbreviate, require_file
from albert.io import checkpoint, safetensors
from albert.model import variables
from albert.model.config import CONFIG_FILENAME as ORIGINAL_CONFIG
from albert.model.config import AlbertConfig
from albert.model.layers import LAYER_NORM_EPSILON
from albert.text.tokenizer import SPM_MODEL_FILENAME as ORIGINAL_SPM

ORIGINAL_CHECKPOINT = "model.ckpt-best"
HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_PYTORCH = "pytorch_model.bin"
HF_SPM = "spiece.model"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
HF_PREFIX = "albert."

# Buffers some transformers versions save beside the weights; they carry no learned values.
_HF_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Hugging Face activation names -> the original's. Exact-erf "gelu" differs from ALBERT's tanh GELU.
_HF_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu", "relu": "relu",
                   "tanh": "tanh", "linear": "linear"}
_ORIGINAL_ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear", "": "linear"}
# Transformers' AlbertConfig defaults, used for keys a config.json leaves out.
_HF_DEFAULTS = dict(vocab_size=30000, embedding_size=128, hidden_size=4096, num_hidden_layers=12,
                    num_hidden_groups=1, num_attention_heads=64, intermediate_size=16384, inner_group_num=1,
                    hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)
# Unused keys of the released albert_config.json files, carried through config.json unchanged.
_ORIGINAL_EXTRA_KEYS = ("down_scale_factor", "net_structure_type", "gap_size", "num_memory_blocks",
                        "layers_to_keep")


# ---- the name map ----
# Every original variable (albert.model.variables) has one Hugging Face tensor, found by these rules:
# whole tensors by name, layers by scope plus the leaf (a TF kernel [in, out] is a transposed torch
# Linear weight [out, in]).

_TENSORS = {"bert/embeddings/word_embeddings": "embeddings.word_embeddings.weight",
            "bert/embeddings/token_type_embeddings": "embeddings.token_type_embeddings.weight",
            "bert/embeddings/position_embeddings": "embeddings.position_embeddings.weight",
            "cls/predictions/output_bias": "predictions.bias",
            # [2, H] like a torch Linear weight: no transpose.
            "cls/seq_relationship/output_weights": "sop_classifier.classifier.weight",
            "cls/seq_relationship/output_bias": "sop_classifier.classifier.bias"}
_SCOPES = {"bert/embeddings/LayerNorm": "embeddings.LayerNorm",
           "bert/encoder/embedding_hidden_mapping_in": "encoder.embedding_hidden_mapping_in",
           "bert/pooler/dense": "pooler",
           "cls/predictions/transform/dense": "predictions.dense",
           "cls/predictions/transform/LayerNorm": "predictions.LayerNorm"}
_BLOCK_SCOPES = {"attention_1/self/query": "attention.query", "attention_1/self/key": "attention.key",
                 "attention_1/self/value": "attention.value", "attention_1/output/dense": "attention.dense",
                 "LayerNorm": "attention.LayerNorm", "ffn_1/intermediate/dense": "ffn",
                 "ffn_1/intermediate/output/dense": "ffn_output", "LayerNorm_1": "full_layer_layer_norm"}
_LEAVES = {"kernel": ("weight", True), "bias": ("bias", False), "gamma": ("weight", False), "beta": ("bias", False)}
_BLOCK = re.compile(r"^bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/(.+)$")


def hf_pair(original):
  """(original name, Hugging Face name without `albert.`, transpose) of one original variable."""
  if original in _TENSORS:
    return original, _TENSORS[original], False
  scope, leaf = original.rsplit("/", 1)
  hf_leaf, transpose = _LEAVES[leaf]
  block = _BLOCK.match(scope)
  if block:
    group, inner_group, block_scope = block.groups()
    module = f"encoder.albert_layer_groups.{group}.albert_layers.{inner_group}.{_BLOCK_SCOPES[block_scope]}"
  else:
    module = _SCOPES[scope]
  return original, f"{module}.{hf_leaf}", transpose


def encoder_pairs(config):
  """The pairs of every encoder tensor (the E->H projection only when E != H, as in the original)."""
  return [hf_pair(name) for name in variables.encoder_shapes(config)]


def mlm_pairs(config):
  """The MLM head; its output matrix is tied to the word embeddings on both sides."""
  return [hf_pair(name) for name in variables.masked_lm_shapes(config)]


def sop_pairs(config):
  return [hf_pair(name) for name in variables.sentence_order_shapes(config)]


def original_shapes(config):
  """The shape of every variable this converter knows (the pretraining graph), by original name."""
  return variables.pretraining_shapes(config)


# ---- configs ----

def hf_config_to_albert(hf_config, source):
  """An AlbertConfig from a transformers `config.json` dict (its defaults fill missing keys)."""
  model_type = hf_config.get("model_type", "albert")
  if model_type != "albert":
    raise UserError(f"{source}: model_type is {model_type!r}, not 'albert'")
  if hf_config.get("position_embedding_type", "absolute") != "absolute":
    raise UserError(f"{source}: position_embedding_type {hf_config['position_embedding_type']!r} is not "
                    "supported; ALBERT uses absolute position embeddings")
  epsilon = hf_config.get("layer_norm_eps", LAYER_NORM_EPSILON)
  if not np.isclose(epsilon, LAYER_NORM_EPSILON, rtol=1e-3, atol=0):
    raise UserError(f"{source}: layer_norm_eps {epsilon} is not supported; ALBERT uses {LAYER_NORM_EPSILON}")
  values = {key: hf_config.get(key, default) for key, default in _HF_DEFAULTS.items()}
  activation = str(values["hidden_act"])
  if activation not in _HF_ACTIVATIONS:
    raise UserError(f"{source}: hidden_act {activation!r} has no ALBERT equivalent "
                    f"(supported: {', '.join(sorted(_HF_ACTIVATIONS))})")
  if activation == "gelu":
    logging.warning("%s: hidden_act 'gelu' is the exact (erf) GELU in transformers; ALBERT computes the tanh "
                    "approximation ('gelu_new'), so outputs will differ slightly (about 1e-3)", source)
  values["hidden_act"] = _HF_ACTIVATIONS[activation]
  values.update({key: hf_config[key] for key in _ORIGINAL_EXTRA_KEYS if key in hf_config})
  return AlbertConfig.from_dict(values, source=source)


def albert_config_to_hf(config, architectures):
  """A transformers `config.json` dict for `config`; unused original keys ride along unchanged."""
  hf_config = {"architectures": list(architectures), "model_type": "albert"}
  hf_config.update({key: getattr(config, key) for key in _HF_DEFAULTS})
  hf_config["hidden_act"] = _ORIGINAL_ACTIVATIONS[str(config.hidden_act).lower()]
  hf_config.update(layer_norm_eps=LAYER_NORM_EPSILON, position_embedding_type="absolute",
                   classifier_dropout_prob=0.1, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                   torch_dtype="float32", down_scale_factor=config.down_scale_factor)
  hf_config.update({key: value for key, value in config.extra.items() if key in _ORIGINAL_EXTRA_KEYS})
  return hf_config


# ---- reading and writing Hugging Face folders ----

def read_hf_tensors(hf_dir):
  """`{name: numpy array}` from model.safetensors (sharded or not), else pytorch_model.bin (needs torch)."""
  single = os.path.join(hf_dir, HF_SAFETENSORS)
  index = os.path.join(hf_dir, HF_SAFETENSORS_INDEX)
  pytorch = os.path.join(hf_dir, HF_PYTORCH)
  if os.path.isfile(single):
    return safetensors.read_file(single)[0]
  if os.path.isfile(index):
    return _read_sharded(hf_dir, index)
  if os.path.isfile(pytorch):
    return _read_pytorch(pytorch)
  raise UserError(f"--input_dir: {hf_dir} has no {HF_SAFETENSORS}, {HF_SAFETENSORS_INDEX} or {HF_PYTORCH}")


def _read_sharded(hf_dir, index_path):
  weight_map = fileio.read_json(index_path, what="safetensors index").get("weight_map")
  if not isinstance(weight_map, dict):
    raise UserError(f"{index_path}: no 'weight_map' object")
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    tensors.update(safetensors.read_file(os.path.join(hf_dir, shard))[0])
  return tensors


def _read_pytorch(path):
  try:
    import torch
  except ImportError:
    raise UserError(f"{path}: reading pytorch_model.bin needs torch (pip install torch), or save the model "
                    "with safetensors (save_pretrained's default)") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for unreadable files
    raise UserError(f"{path}: cannot be read by torch: {str(e).splitlines()[0]}") from None
  return {name: _torch_to_numpy(value) for name, value in state.items()}


def _torch_to_numpy(tensor):
  import torch
  if tensor.dtype == torch.bfloat16:
    tensor = tensor.float()
  return tensor.detach().cpu().numpy()


def hf_to_original_tensors(config, hf_tensors, source):
  """Original-named float32 arrays from Hugging Face tensors; unknown, missing or misshapen ones raise.

  Encoder names may carry the `albert.` prefix (a task model) or not (AlbertModel saved alone);
  messages name tensors as the file does.
  """
  prefix = HF_PREFIX if any(name.startswith(HF_PREFIX) for name in hf_tensors) else ""
  file_name = {(name[len(HF_PREFIX):] if name.startswith(HF_PREFIX) else name): name for name in hf_tensors}
  tensors = {name: hf_tensors[original] for name, original in file_name.items()}
  for buffer in _HF_BUFFERS:
    tensors.pop(buffer, None)
  shapes = original_shapes(config)
  _take_tied_decoder(tensors, source)
  groups = [(encoder_pairs(config), prefix)]
  groups += [(head, "") for head in (mlm_pairs(config), sop_pairs(config))
             if any(hf in tensors for _, hf, _ in head)]
  converted = {}
  missing = []
  for pairs, group_prefix in groups:
    for original, hf, transpose in pairs:
      if hf not in tensors:
        missing.append(group_prefix + hf)
        continue
      value = np.asarray(tensors.pop(hf), dtype=np.float32)
      expected = shapes[original][::-1] if transpose else shapes[original]
      if list(value.shape) != expected:
        raise UserError(f"{source}: {file_name[hf]} has shape {list(value.shape)}, but config.json implies {expected}")
      converted[original] = np.ascontiguousarray(value.T if transpose else value)
  if missing:
    raise UserError(f"{source}: missing tensors for this config.json: {abbreviate(missing)}")
  _drop_identity_projection(config, tensors, source)
  if tensors:
    unknown = sorted(file_name[name] for name in tensors)
    raise UserError(f"{source}: tensors with no ALBERT counterpart: {abbreviate(unknown)}")
  return converted


def _take_tied_decoder(tensors, source):
  """Removes the decoder copies of tied MLM tensors; an untied decoder matrix cannot be represented."""
  decoder_bias = tensors.pop("predictions.decoder.bias", None)
  if decoder_bias is not None:
    tensors.setdefault("predictions.bias", decoder_bias)
  decoder = tensors.pop("predictions.decoder.weight", None)
  embeddings = tensors.get("embeddings.word_embeddings.weight")
  if decoder is not None and (embeddings is None or not np.array_equal(decoder, embeddings)):
    raise UserError(f"{source}: predictions.decoder.weight differs from the word embeddings; ALBERT ties "
                    "them, so an untied decoder cannot be converted")


def _drop_identity_projection(config, tensors, source):
  """Transformers always has the E->H projection; with E == H the original has none, so it must be identity."""
  if config.embedding_size != config.hidden_size:
    return
  weight = tensors.pop("encoder.embedding_hidden_mapping_in.weight", None)
  bias = tensors.pop("encoder.embedding_hidden_mapping_in.bias", None)
  identity = (weight is None or np.array_equal(weight, np.eye(config.hidden_size))) and (
      bias is None or not np.any(bias))
  if not identity:
    raise UserError(f"{source}: embedding_size == hidden_size but encoder.embedding_hidden_mapping_in is "
                    "not the identity; the original model has no such projection")


def original_to_hf_tensors(config, named_arrays):
  """Hugging Face tensors (with the `albert.` prefix on the encoder) from original-named arrays."""
  tensors = {}
  for pairs, prefix in ((encoder_pairs(config), HF_PREFIX), (mlm_pairs(config), ""), (sop_pairs(config), "")):
    for original, hf, transpose in pairs:
      if original in named_arrays:
        value = np.asarray(named_arrays[original], dtype=np.float32)
        tensors[prefix + hf] = np.ascontiguousarray(value.T if transpose else value)
  if config.embedding_size == config.hidden_size:
    tensors[HF_PREFIX + "encoder.embedding_hidden_mapping_in.weight"] = np.eye(config.hidden_size, dtype=np.float32)
    tensors[HF_PREFIX + "encoder.embedding_hidden_mapping_in.bias"] = np.zeros(config.hidden_size, np.float32)
  return tensors


# ---- reading and writing original-layout directories ----

def read_original_checkpoint(config, prefix):
  """Original-named float32 arrays of the encoder and any complete pretraining heads in a checkpoint.

  Optimizer slots and global_step are skipped; any other unknown tensor or a missing or misshapen
  variable raises.
  """
  available = checkpoint.list_variables(prefix)
  shapes = original_shapes(config)
  wanted = [original for original, _, _ in encoder_pairs(config)]
  for head in (variables.masked_lm_shapes(config), variables.sentence_order_shapes(config)):
    if any(name in available for name in head):
      wanted += list(head)
  missing = [name for name in wanted if name not in available]
  if missing:
    raise UserError(f"checkpoint {prefix} lacks variables this config needs: {abbreviate(missing)}")
  mismatched = [f"{name} {available[name]} (config implies {shapes[name]})" for name in wanted
                if available[name] != shapes[name]]
  if mismatched:
    raise UserError(f"checkpoint {prefix} does not fit --albert_config_file: {abbreviate(mismatched)}")
  unknown = [name for name in available if name not in wanted and not checkpoint.is_training_state(name)]
  if unknown:
    raise UserError(f"checkpoint {prefix} has variables with no Hugging Face counterpart: {abbreviate(unknown)}")
  try:
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name).astype(np.float32) for name in wanted}
  except tf.errors.OpError as e:
    raise UserError(f"checkpoint {prefix} cannot be read: {e.message.splitlines()[0]}") from None


def _architectures(named_arrays):
  has_mlm = f"{variables.MLM_SCOPE}/output_bias" in named_arrays
  if has_mlm and f"{variables.SOP_SCOPE}/output_weights" in named_arrays:
    return ["AlbertForPreTraining"]
  return ["AlbertForMaskedLM"] if has_mlm else ["AlbertModel"]


# ---- the two conversions ----

def hf_to_original(hf_dir, output_dir):
  """Writes albert_config.json, 30k-clean.model and model.ckpt-best (global_step 0) from a HF folder."""
  if not os.path.isdir(hf_dir):
    raise UserError(f"--input_dir: directory not found: {hf_dir}")
  config_path = os.path.join(hf_dir, HF_CONFIG)
  spm_path = os.path.join(hf_dir, HF_SPM)
  hf_config = fileio.read_json(require_file(config_path, "input_dir (config.json)"), what="config.json")
  if not isinstance(hf_config, dict):
    raise UserError(f"{config_path}: expected a JSON object")
  require_file(spm_path, "input_dir (spiece.model, the SentencePiece model)")
  config = hf_config_to_albert(hf_config, config_path)
  named_arrays = hf_to_original_tensors(config, read_hf_tensors(hf_dir), source=hf_dir)
  os.makedirs(output_dir, exist_ok=True)
  prefix = os.path.join(output_dir, ORIGINAL_CHECKPOINT)
  checkpoint.save_checkpoint(prefix, {**named_arrays, checkpoint.GLOBAL_STEP: np.int64(0)})
  config.to_json_file(os.path.join(output_dir, ORIGINAL_CONFIG))
  fileio.copy_file(spm_path, os.path.join(output_dir, ORIGINAL_SPM))
  tokenizer_config = os.path.join(hf_dir, HF_TOKENIZER_CONFIG)
  if os.path.isfile(tokenizer_config):
    lower = fileio.read_json(tokenizer_config, what="tokenizer_config.json").get("do_lower_case")
    if lower is not None:
      logging.info("the Hugging Face tokenizer has do_lower_case=%s; pass --do_lower_case=%s to the runners",
                   lower, str(bool(lower)).lower())
  return prefix


def original_to_hf(albert_directory, checkpoint_name, output_dir, do_lower_case=True):
  """Writes config.json, model.safetensors, spiece.model and tokenizer_config.json from an original dir."""
  config = AlbertConfig.from_json_file(
      require_file(os.path.join(albert_directory, ORIGINAL_CONFIG), "input_dir (albert_config.json)"))
  spm_path = require_file(os.path.join(albert_directory, ORIGINAL_SPM), "input_dir (30k-clean.model)")
  prefix = checkpoint.resolve_checkpoint(os.path.join(albert_directory, checkpoint_name), "checkpoint_name")
  named_arrays = read_original_checkpoint(config, prefix)
  os.makedirs(output_dir, exist_ok=True)
  safetensors.write_file(os.path.join(output_dir, HF_SAFETENSORS), original_to_hf_tensors(config, named_arrays),
                            metadata={"format": "pt"})
  fileio.write_json(os.path.join(output_dir, HF_CONFIG), albert_config_to_hf(config, _architectures(named_arrays)),
                    indent=2)
  fileio.write_json(os.path.join(output_dir, HF_TOKENIZER_CONFIG),
                    {"tokenizer_class": "AlbertTokenizer", "do_lower_case": bool(do_lower_case),
                     "remove_space": True, "keep_accents": False,
                     "model_max_length": config.max_position_embeddings}, indent=2)
  fileio.copy_file(spm_path, os.path.join(output_dir, HF_SPM))
  return prefix
