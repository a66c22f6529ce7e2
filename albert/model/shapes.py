"""What a module's variable shapes say about its config, and the released sizes they are matched against.

Modules without albert_config.json: the version-1 TF1 modules (`albert.model.hub`), whose shapes show
neither layers nor heads, and the Model Garden TF2 encoders (`albert.model.model_garden`), whose shapes and
call show both.
"""

import re
from collections.abc import Mapping, Sequence

from albert.core.errors import UserError, abbreviate
from albert.model import variables
from albert.model.config import CONFIG_FILENAME, PRESET_NAMES, AlbertConfig, preset

# The encoder variables (docs/compatibility.md §2.7) whose shapes give a module's sizes.
_WORD_EMBEDDINGS = f"{variables.ENCODER_SCOPE}/embeddings/word_embeddings"
_POSITION_EMBEDDINGS = f"{variables.ENCODER_SCOPE}/embeddings/position_embeddings"
_TOKEN_TYPE_EMBEDDINGS = f"{variables.ENCODER_SCOPE}/embeddings/token_type_embeddings"
_FIRST_FFN_KERNEL = f"{variables.block_prefix(0, 0)}/ffn_1/intermediate/dense/kernel"
_BLOCK_PATTERN = re.compile(re.escape(variables.ENCODER_SCOPE) + r"/encoder/transformer/group_(\d+)/inner_group_(\d+)/")
# Sizes a preset must have to match a module's shapes; the other shape sizes are taken from the module.
_PRESET_KEYS = ("hidden_size", "intermediate_size", "num_hidden_groups", "inner_group_num")
_MODULE_KEYS = ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size")


def released_v1_presets() -> dict[str, AlbertConfig]:
  """The released sizes as version 1 shipped them (docs/compatibility.md §1.2), by name ("albert_base v1").

  Returns:
    A new {name: AlbertConfig} dict with vocab_size 30000; `match_preset` replaces the sizes that
    variable shapes show.
  """
  return {f"albert_{name} v1": preset(name, version=1) for name in PRESET_NAMES}


def module_sizes(shapes: Mapping[str, Sequence[int]], source: str = "module") -> dict[str, int]:
  """The config values a module's variable shapes determine (docs/compatibility.md §2.7 names).

  The shapes show the vocabulary, embedding, hidden, feed-forward, position and token-type sizes and
  the number of groups and blocks per group; not the layer count (layers share a group's variables)
  nor the number of attention heads.

  Args:
    shapes: {variable name: shape}, e.g. `checkpoint.list_variables` of the module's variables.
    source: how the error message names the module (flag and directory).
  Returns:
    {config key: value} for the keys of `_MODULE_KEYS` and `_PRESET_KEYS`. A missing embedding table or
    first feed-forward kernel is a UserError.
  """
  missing = [name for name in (_WORD_EMBEDDINGS, _POSITION_EMBEDDINGS, _TOKEN_TYPE_EMBEDDINGS, _FIRST_FFN_KERNEL)
             if name not in shapes]
  if missing:
    raise UserError(f"{source} has no assets/{CONFIG_FILENAME} and its variables lack the ALBERT "
                    f"encoder's {abbreviate(missing)}; is it an ALBERT module?")
  blocks = [tuple(int(i) for i in m.groups()) for m in map(_BLOCK_PATTERN.match, shapes) if m]
  vocab_size, embedding_size = shapes[_WORD_EMBEDDINGS]
  hidden_size, intermediate_size = shapes[_FIRST_FFN_KERNEL]
  return {"vocab_size": int(vocab_size), "embedding_size": int(embedding_size), "hidden_size": int(hidden_size),
          "intermediate_size": int(intermediate_size),
          "max_position_embeddings": int(shapes[_POSITION_EMBEDDINGS][0]),
          "type_vocab_size": int(shapes[_TOKEN_TYPE_EMBEDDINGS][0]),
          "num_hidden_groups": 1 + max(group for group, _ in blocks),
          "inner_group_num": 1 + max(inner for group, inner in blocks if group == 0)}


def match_preset(sizes: Mapping[str, int],
                 presets: Mapping[str, AlbertConfig]) -> tuple[str, AlbertConfig] | None:
  """The first preset whose hidden and feed-forward sizes, groups and blocks equal `sizes`'.

  Args:
    sizes: a module's sizes (`module_sizes`).
    presets: {name: config} to choose from, in order of preference.
  Returns:
    (name, the preset's config with the vocabulary, embedding, position and token-type sizes of
    `sizes`), or None when no preset matches.
  """
  for name, config in presets.items():
    if all(getattr(config, key) == sizes[key] for key in _PRESET_KEYS):
      return name, config.copy(**{key: sizes[key] for key in _MODULE_KEYS})
  return None


def config_from_sizes(sizes: Mapping[str, int], num_hidden_layers: int, num_attention_heads: int,
                      presets: Mapping[str, AlbertConfig]) -> tuple[AlbertConfig, str | None]:
  """The whole config of a module whose shapes also show its layers and heads (Model Garden encoders).

  Dropout, activation and initializer come from the first preset of the same architecture (sizes of
  `_PRESET_KEYS`, layers and heads); without one, from AlbertConfig's defaults (no dropout, GELU).

  Args:
    sizes: a module's sizes (`module_sizes`).
    num_hidden_layers: the number of layers the module runs.
    num_attention_heads: its attention heads.
    presets: {name: config} to choose from, in order of preference.
  Returns:
    (config, the matching preset's name or None).
  """
  for name, config in presets.items():
    if (all(getattr(config, key) == sizes[key] for key in _PRESET_KEYS)
        and (config.num_hidden_layers, config.num_attention_heads) == (num_hidden_layers, num_attention_heads)):
      return config.copy(**{key: sizes[key] for key in _MODULE_KEYS}), name
  return AlbertConfig(**sizes, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads), None


def check_matches(found: Mapping[str, object], expected: AlbertConfig, what: str) -> None:
  """A UserError listing every value of `found` that differs from `expected`'s (module vs file), where `what`
  begins the message, e.g. "--albert_hub_module_handle: the variables of DIR do not match --albert_config_file"."""
  differences = [f"{key} {value!r} vs {getattr(expected, key)!r}" for key, value in found.items()
                 if value != getattr(expected, key)]
  if differences:
    raise UserError(f"{what} (module vs file): {'; '.join(differences)}")


def describe_sizes(sizes):
  return ", ".join(f"{key} {value}" for key, value in sizes.items())
