"""AlbertConfig: the model hyper-parameters, read and written as the original `albert_config.json`."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from typing import Any

from absl import logging

from albert.core import fileio
from albert.core.errors import UserError
from albert.io import structure

CONFIG_FILENAME = "albert_config.json"  # its name in released archives, TF-Hub assets and our exports
ACTIVATIONS = ("gelu", "relu", "tanh", "linear", "")
# The values that decide the model's shapes and function (a module must match a given config in these).
ARCHITECTURE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                     "num_attention_heads", "intermediate_size", "inner_group_num", "hidden_act",
                     "max_position_embeddings", "type_vocab_size")
_FIELD_KINDS = {"int": int, "float": float, "str": str}  # the fields' annotations, as JSON types
_MISSPELLING_CUTOFF = 0.85


@dataclasses.dataclass
class AlbertConfig:
  """Hyper-parameters of an ALBERT model; defaults are the original constructor's (xxlarge-like).

  Keys the model does not use (e.g. `net_structure_type`, `gap_size`, `layers_to_keep` in the
  released files) are kept in `extra` and written back, so a config round-trips unchanged. The
  constructor does not check the values; `from_dict`, `from_json_file` and `AlbertModel` call `validate`.

  Args:
    vocab_size: number of pieces in the vocabulary (V); the only required value.
    embedding_size: width E of the factorized word, position and token-type embeddings.
    hidden_size: width H of the transformer layers; must be a multiple of `num_attention_heads`.
    num_hidden_layers: number of transformer layers L applied in sequence.
    num_hidden_groups: number of distinct parameter groups G the L layers share (1: all layers share
      one set of weights, as in every released model).
    num_attention_heads: attention heads per layer; each head has `hidden_size // num_attention_heads`
      dimensions.
    intermediate_size: width of the feed-forward layer inside each block.
    inner_group_num: blocks per group K; each layer runs all K blocks of its group, so the encoder
      produces L * K layer outputs.
    down_scale_factor: unused by the model; kept because the released configs carry it.
    hidden_act: activation of the feed-forward layer and the MLM transform: "gelu" (tanh
      approximation), "relu", "tanh" or "linear" ("" also means linear).
    hidden_dropout_prob: dropout rate on the embeddings and on each attention and feed-forward output
      while training, in [0, 1).
    attention_probs_dropout_prob: dropout rate on the attention probabilities while training, in [0, 1).
    max_position_embeddings: size of the position table, i.e. the longest sequence the model accepts.
    type_vocab_size: number of segment (token type) ids, 2 for sentence pairs.
    initializer_range: standard deviation of the truncated-normal initializer of fresh weights.
    extra: keys of the JSON file the model does not use, written back unchanged by `to_dict`.
  """
  vocab_size: int
  embedding_size: int = 128
  hidden_size: int = 4096
  num_hidden_layers: int = 12
  num_hidden_groups: int = 1
  num_attention_heads: int = 64
  intermediate_size: int = 16384
  inner_group_num: int = 1
  down_scale_factor: int = 1
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.0
  attention_probs_dropout_prob: float = 0.0
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  extra: dict = dataclasses.field(default_factory=dict)

  # ---- JSON ----
  @classmethod
  def from_dict(cls, d: dict | structure.Node, source: str = "config") -> AlbertConfig:
    """Builds and validates a config from a parsed `albert_config.json` object.

    Every key is checked for its JSON type as it is read (`albert.io.structure`), so a corrupted file
    is one line naming the key. Like the original, a missing key takes the constructor's default (a
    warning names the model sizes that did); an unknown key that is nearly a missing one
    (`hiden_size`) is an error rather than a silently defaulted size.

    Args:
      d: the JSON object (or its `structure.Node`); `vocab_size` is required, missing keys take the
        defaults and unknown keys go to `extra`.
      source: how error messages name where `d` came from (usually the file path).
    Returns:
      The validated AlbertConfig.
    """
    node = d if isinstance(d, structure.Node) else structure.root(d, source)
    values = node.require(dict)
    fields = [f for f in dataclasses.fields(cls) if f.name != "extra"]
    _check_misspelled_keys(node, [f.name for f in fields if f.name not in values])
    kwargs = {f.name: node.get(f.name, _FIELD_KINDS[f.type], _default(f)) for f in fields}
    defaulted = [name for name in ARCHITECTURE_KEYS if values.get(name) is None]
    if defaulted:
      logging.warning("%s has no %s: using the defaults (%s), as the original did", source, ", ".join(defaulted),
                      ", ".join(str(kwargs[name]) for name in defaulted))
    config = cls(**kwargs, extra={k: v for k, v in values.items() if k not in kwargs})
    config.validate(source)
    return config

  @classmethod
  def from_json_file(cls, path: str) -> AlbertConfig:
    """Reads and validates an `albert_config.json` file; a missing or malformed file is a UserError.

    Args:
      path: a local path to the JSON file.
    Returns:
      The validated AlbertConfig.
    """
    return cls.from_dict(fileio.read_json(path, what="albert config file"), source=path)

  def to_dict(self) -> dict:
    """The config as the JSON object of `albert_config.json`: every field plus the keys in `extra`.

    Returns:
      A new dict; changing it does not change the config.
    """
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
    d.update(self.extra)
    return d

  def to_json_string(self) -> str:
    """The config as JSON text: indent 2, sorted keys, trailing newline: the original's format.

    Returns:
      The text `to_json_file` writes.
    """
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

  def to_json_file(self, path: str) -> None:
    """Writes `to_json_string()` to `path` atomically, so the file is never left half-written.

    Args:
      path: the file to write; missing parent directories are created.
    """
    fileio.write_text(path, self.to_json_string())

  def copy(self, **changes: Any) -> AlbertConfig:
    """A deep copy with some fields replaced, e.g. `config.copy(hidden_dropout_prob=0.0)`.

    The copy is not validated; call `validate` if the changes might make it inconsistent.

    Args:
      **changes: new values by field name; an unknown name raises AttributeError.
    Returns:
      The new AlbertConfig; this one is left unchanged.
    """
    c = copy.deepcopy(self)
    for k, v in changes.items():
      if not hasattr(c, k):
        raise AttributeError(f"AlbertConfig has no field {k!r}")
      setattr(c, k, v)
    return c

  # ---- checks ----
  def validate(self, source: str = "config") -> None:
    """Raises a UserError naming every inconsistent value (one line).

    Checks that sizes are positive integers, heads divide `hidden_size`, there are no more groups than
    layers, the activation is known and dropout rates lie in [0, 1), so a bad file fails before a
    model is built from it.

    Args:
      source: how the error message names the config (usually its file path).
    """
    problems = []
    for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                 "num_attention_heads", "intermediate_size", "inner_group_num", "max_position_embeddings",
                 "type_vocab_size"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        problems.append(f"{name} must be a positive integer (got {_shown(value)})")
    if not problems and self.hidden_size % self.num_attention_heads:
      problems.append(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                      f"{self.num_attention_heads}")
    if not problems and self.num_hidden_groups > self.num_hidden_layers:
      problems.append(f"num_hidden_groups {self.num_hidden_groups} > num_hidden_layers {self.num_hidden_layers}")
    if str(self.hidden_act).lower() not in ACTIVATIONS:
      problems.append(f"hidden_act {_shown(self.hidden_act)} is not one of gelu, relu, tanh, linear")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      value = getattr(self, name)
      if not structure.matches(value, float) or not 0.0 <= value < 1.0:
        problems.append(f"{name} must be in [0, 1) (got {_shown(value)})")
    if not structure.matches(self.initializer_range, float) or not self.initializer_range >= 0:
      problems.append(f"initializer_range must be a number >= 0 (got {_shown(self.initializer_range)})")
    if problems:
      raise UserError(f"{source}: " + "; ".join(problems))

  @property
  def head_size(self) -> int:
    """Dimensions per attention head: `hidden_size // num_attention_heads`."""
    return self.hidden_size // self.num_attention_heads

  def group_of_layer(self, layer_index: int) -> int:
    """The parameter group a layer uses: floor((l / L) * G), computed in double precision.

    Args:
      layer_index: the 0-based layer index l, below `num_hidden_layers`.
    Returns:
      The 0-based group index, below `num_hidden_groups`.
    """
    return int(layer_index / self.num_hidden_layers * self.num_hidden_groups)


def _default(field):
  return structure.REQUIRED if field.default is dataclasses.MISSING else field.default


def _shown(value, limit=40):
  """A value's repr, cut short: a corrupted file can hold a long string where a number belongs."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_misspelled_keys(node, missing):
  """An unknown key that is nearly a missing known one (`hiden_size`) is an error, not a silent default.

  Unknown keys are otherwise kept (`extra`): released files carry keys the model does not use.
  """
  for key in node.value:
    if key in missing or not isinstance(key, str):
      continue
    close = difflib.get_close_matches(key, missing, n=1, cutoff=_MISSPELLING_CUTOFF)
    if close:
      node.fail(f"is not a config key; is it a misspelled {json.dumps(close[0])}?", (key,))


# Values of the released v2 archives (v1 differs only in dropout: 0.1 for base/large/xlarge).
_PRESETS = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "xlarge": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
    "xxlarge": dict(hidden_size=4096, num_hidden_layers=12, num_attention_heads=64, intermediate_size=16384),
}
PRESET_NAMES = tuple(_PRESETS)


def preset(name: str, version: int = 2, vocab_size: int = 30000) -> AlbertConfig:
  """The config of a released model: `preset("base")` is albert_base_v2's albert_config.json.

  Args:
    name: one of `PRESET_NAMES`: "base", "large", "xlarge" or "xxlarge".
    version: the release, 1 or 2; version 1 used dropout 0.1 except for xxlarge.
    vocab_size: the vocabulary size; 30000 matches the released `30k-clean` SentencePiece model.
  Returns:
    A new AlbertConfig with the released values, including the unused keys of the released files.
  """
  if name not in _PRESETS:
    raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
  if version not in (1, 2):
    raise UserError(f"unknown ALBERT version {version!r}; choose 1 or 2")
  dropout = 0.1 if version == 1 and name != "xxlarge" else 0.0
  return AlbertConfig(
      vocab_size=vocab_size, embedding_size=128, num_hidden_groups=1, inner_group_num=1,
      down_scale_factor=1, hidden_act="gelu", hidden_dropout_prob=dropout,
      attention_probs_dropout_prob=dropout, max_position_embeddings=512, type_vocab_size=2,
      initializer_range=0.02, extra={"net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0},
      **_PRESETS[name])
