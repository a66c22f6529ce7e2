"""ALBERT weights from a TF-Hub module (`--albert_hub_module_handle`).

A handle is a local directory or anything `tensorflow_hub.resolve` understands (a tfhub.dev URL, a
`gs://` archive); resolved modules are cached in `TFHUB_CACHE_DIR`, so a cached handle needs no network.
Three module formats are understood (`module_format`):
- TensorFlow 2 SavedModels written by `albert.export_to_tfhub`: loaded with `tf.saved_model.load`,
  which keeps the variables' original names (`bert/...`), so checkpoints written while fine-tuning
  them use the original names too;
- TF1 Hub modules of the original release (`tfhub_module.pb`): they cannot be fine-tuned through
  `hub.load`, so `AlbertModel` is built from the module's `albert_config.json` asset and loaded by name
  from the module's `variables/variables` checkpoint. Version-1 modules (`albert_<size>/1`) carry only
  `assets/30k-clean.model`; their config is the one the caller gives (`--albert_config_file`), or else
  the released v1 size whose sizes match the variables' shapes (docs/compatibility.md §1.2, §12.1);
- Model Garden TF2 encoders (`tensorflow/albert_en_*`, `albert.model.model_garden`): no
  albert_config.json, Keras variable names; the config is inferred from their shapes and call, and
  `AlbertModel` is loaded from `variables/variables` through the Model Garden name table, so
  fine-tuning them writes original-layout checkpoints (docs/compatibility.md §16.1).

The one model loader (`albert.cli.model_loader`) calls `module_config`, `load_encoder` and
`create_tokenizer`; every runner and tool reaches TF-Hub modules through it.
"""

import os
import sys
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

import tensorflow as tf
from absl import logging

from albert.core.errors import UserError, abbreviate, first_line
from albert.io import checkpoint, structure
from albert.io.files import read_text
from albert.model import model_garden, variables
from albert.model.config import ARCHITECTURE_KEYS, CONFIG_FILENAME, AlbertConfig
from albert.model.shapes import check_matches, describe_sizes, match_preset, module_sizes, released_v1_presets
from albert.model.encoder import AlbertModel, AlbertOutputs
from albert.text.tokenizer import SPM_MODEL_FILENAME, FullTokenizer

FLAG = "albert_hub_module_handle"
TF1_MODULE_MARKER = "tfhub_module.pb"
# module_format's answers.
TF1, TF2, MODEL_GARDEN = "tf1", "tf2", "model_garden"


def tensorflow_hub() -> types.ModuleType:
  """Imports tensorflow_hub, which needs `pkg_resources.parse_version` that setuptools >= 81 removed.

  When pkg_resources is missing, a stand-in offering only `parse_version` (from `packaging`, a
  TensorFlow dependency) is visible during the import and removed afterwards.

  Returns:
    The `tensorflow_hub` module (imported once, then taken from `sys.modules`).
  """
  if "tensorflow_hub" in sys.modules:
    return sys.modules["tensorflow_hub"]
  try:
    import pkg_resources  # noqa: F401  (present with setuptools < 81)
  except ImportError:
    from packaging.version import parse
    sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    try:
      import tensorflow_hub
    finally:
      del sys.modules["pkg_resources"]
    return tensorflow_hub
  import tensorflow_hub
  return tensorflow_hub


def resolve(handle: str) -> str:
  """The local directory of a module: `handle` itself if it is a directory, else via tensorflow_hub.

  Args:
    handle: a directory, a tfhub.dev URL or anything else `tensorflow_hub.resolve` accepts; downloads
      land in (and are reused from) `TFHUB_CACHE_DIR`.
  Returns:
    The module's directory. An empty or unresolvable handle is a UserError.
  """
  if not handle:
    raise UserError(f"--{FLAG} is empty")
  if tf.io.gfile.isdir(handle):
    return handle
  try:
    path = tensorflow_hub().resolve(handle)
  except Exception as e:  # noqa: BLE001  (tensorflow_hub raises ValueError, OSError, URLError, ...)
    raise UserError(f"--{FLAG}: cannot resolve {handle}: {first_line(e)}") from None
  return path


def module_config(module_dir: str, expected: AlbertConfig | None = None,
                  presets: Mapping[str, AlbertConfig] | None = None) -> AlbertConfig:
  """The module's AlbertConfig: its `albert_config.json` asset, else `expected`, else a released size.

  A module with the asset is checked against `expected` (if given). A TF1 module without it (the
  version-1 modules of the original release carry only `assets/30k-clean.model`) takes `expected` after
  checking it against the variables' shapes; without `expected`, the layer and head counts come from
  the preset whose sizes match those shapes (`module_sizes`, `match_preset`), and a log line says so.

  Args:
    module_dir: a resolved module directory (`resolve`).
    expected: a config the module must match in every architecture value (sizes, layers, activation;
      only the sizes the variables' shapes show when there is no asset); dropout and initializer
      values may differ. None skips the check.
    presets: {name: config} a module without the asset is matched against; None means the released
      version-1 sizes (`released_v1_presets`).
  Returns:
    The validated AlbertConfig. A missing or invalid asset with no way to infer the config, or a
    mismatch, is a UserError.
  """
  path = os.path.join(module_dir, "assets", CONFIG_FILENAME)
  if not tf.io.gfile.exists(path):
    return _config_without_asset(module_dir, expected, presets)
  config = AlbertConfig.from_dict(structure.parse(read_text(path), path), source=path)
  if expected is not None:
    check_matches({key: getattr(config, key) for key in ARCHITECTURE_KEYS}, expected,
                  f"--{FLAG}: {path} does not match --albert_config_file")
  return config


def _config_without_asset(module_dir, expected, presets):
  """`module_config` for a module without albert_config.json: `expected`, or the preset its shapes match.

  A TF2 SavedModel is a Model Garden encoder (or a one-line error saying what else it is); `presets`
  applies to TF1 modules only.
  """
  if not is_tf1_module(module_dir):
    if tf.io.gfile.exists(os.path.join(module_dir, model_garden.SAVED_MODEL_FILE)):
      return model_garden.module_config(module_dir, expected)
    raise UserError(f"--{FLAG}: {module_dir} has no assets/{CONFIG_FILENAME}; is it an ALBERT module?")
  prefix = os.path.join(module_dir, "variables", "variables")
  if not checkpoint.checkpoint_exists(prefix):
    raise UserError(f"--{FLAG}: {module_dir} has neither assets/{CONFIG_FILENAME} nor a variables/variables "
                    "checkpoint; is it an ALBERT module?")
  sizes = module_sizes(checkpoint.list_variables(prefix), f"--{FLAG}: {module_dir}")
  if expected is not None:
    check_matches(sizes, expected, f"--{FLAG}: the variables of {module_dir} do not match --albert_config_file")
    logging.info("module %s has no assets/%s: using the config given (--albert_config_file), whose sizes match "
                 "its variable shapes", module_dir, CONFIG_FILENAME)
    return expected
  presets = released_v1_presets() if presets is None else presets
  match = match_preset(sizes, presets)
  if match is None:
    raise UserError(f"--{FLAG}: {module_dir} has no assets/{CONFIG_FILENAME} and its variable shapes "
                    f"({describe_sizes(sizes)}) match no known ALBERT size ({', '.join(presets)}); "
                    "pass --albert_config_file")
  name, config = match
  config.validate(f"the {name} preset with the sizes of {module_dir}")
  logging.warning("module %s has no assets/%s: using the %s preset (hidden %d, %d layers, %d heads, dropout %g) "
                  "matched by its variable shapes (%s); pass --albert_config_file to override", module_dir,
                  CONFIG_FILENAME, name, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                  config.hidden_dropout_prob, describe_sizes(sizes))
  return config


def module_format(module_dir: str) -> str:
  """`TF1` (the original's Hub format), `MODEL_GARDEN` (a Model Garden TF2 encoder) or `TF2` (our exports).

  Args:
    module_dir: a resolved module directory.
  Returns:
    One of the three constants; a TF2 SavedModel with albert_config.json is `TF2` whatever its names.
  """
  if is_tf1_module(module_dir):
    return TF1
  if not tf.io.gfile.exists(os.path.join(module_dir, "assets", CONFIG_FILENAME)) and \
      model_garden.is_model_garden_module(module_dir):
    return MODEL_GARDEN
  return TF2


def is_tf1_module(module_dir: str) -> bool:
  """Whether a module is in the TF1 Hub format of the original release rather than a TF2 SavedModel.

  Args:
    module_dir: a resolved module directory.
  Returns:
    True when the directory holds `tfhub_module.pb`.
  """
  return tf.io.gfile.exists(os.path.join(module_dir, TF1_MODULE_MARKER))


class HubAlbertModel:
  """A loaded TF2 ALBERT module behind `AlbertModel`'s interface (call, outputs, `named_variables`).

  The module computes in float32; outputs are cast to `compute_dtype` so heads see what `AlbertModel`
  would give them.

  Args:
    loaded: the object `tf.saved_model.load` returned for the module; it must be callable and hold the
      encoder's variables under their original names.
    config: the module's config (`module_config`); the variables are checked against it.
    compute_dtype: the dtype outputs are cast to.
    source: how error messages name the module (usually its directory).
  """

  def __init__(self, loaded: Any, config: AlbertConfig, compute_dtype: tf.DType | str = tf.float32,
               source: str = "module") -> None:
    self.config = config
    self.compute_dtype = tf.as_dtype(compute_dtype)
    self.module = loaded
    module_variables = _named_variables(loaded, source)
    _check_variables(module_variables, config, source)
    # Only the encoder's: the module's MLM/SOP head variables are not on `__call__`'s path.
    self._variables = {name: module_variables[name] for name in variables.encoder_shapes(config)}

  @property
  def word_embeddings(self) -> tf.Variable:
    """The module's [V, E] word embedding table, the variable an MLM head would be tied to."""
    return self._variables["bert/embeddings/word_embeddings"]

  def named_variables(self) -> dict[str, tf.Variable]:
    """The encoder variables `__call__` uses, by original name (exactly `AlbertModel`'s names).

    Returns:
      A new dict; the variables are the module's own, so training or loading them changes the module.
    """
    return dict(self._variables)

  def __call__(self, input_ids: tf.Tensor, input_mask: tf.Tensor | None = None,
               token_type_ids: tf.Tensor | None = None, training: bool = False) -> AlbertOutputs:
    """Runs the module with `AlbertModel.__call__`'s arguments and returns its outputs.

    Args:
      input_ids: piece ids [B, S], int32 or int64.
      input_mask: [B, S], 1 for real pieces and 0 for padding; None means every position is real.
      token_type_ids: segment ids [B, S]; None means all 0.
      training: a Python bool passed to the module (dropout, if the module has any).
    Returns:
      AlbertOutputs cast to `compute_dtype`.
    """
    input_ids = tf.cast(input_ids, tf.int32)
    if input_mask is None:
      input_mask = tf.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = tf.zeros_like(input_ids)
    outputs = self.module({"input_word_ids": input_ids, "input_mask": tf.cast(input_mask, tf.int32),
                            "input_type_ids": tf.cast(token_type_ids, tf.int32)}, training=bool(training))
    cast = lambda x: tf.cast(x, self.compute_dtype)
    return AlbertOutputs(sequence_output=cast(outputs["sequence_output"]),
                         pooled_output=cast(outputs["pooled_output"]),
                         all_encoder_layers=tuple(cast(x) for x in outputs["encoder_outputs"]),
                         embedding_output=cast(outputs["embedding_output"]),
                         word_embedding_output=cast(outputs["word_embedding_output"]))


def _named_variables(loaded, source):
  variables = getattr(loaded, "trainable_variables", None)
  if not variables or not callable(loaded):
    raise UserError(f"--{FLAG}: {source} is not a reusable TF2 module (no __call__ or trainable_variables); "
                    "export it with albert.export_to_tfhub")
  return {variable.name.split(":")[0]: variable for variable in variables}


def _check_variables(named, config, source):
  """Every AlbertModel variable must be in the module, under its original name and shape."""
  reference = variables.encoder_shapes(config)
  missing = sorted(set(reference) - set(named))
  if missing:
    raise UserError(f"--{FLAG}: {source} lacks variables of the ALBERT encoder its config describes: "
                    f"{abbreviate(missing)}")
  wrong = [f"{name} {named[name].shape.as_list()} vs {shape}" for name, shape in reference.items()
           if named[name].shape.as_list() != shape]
  if wrong:
    raise UserError(f"--{FLAG}: {source} variables do not match its {CONFIG_FILENAME}: {abbreviate(wrong)}")


def _load_from_variables(module_dir, config, compute_dtype):
  """An AlbertModel loaded by name from a module's `variables/variables`: a TF1 module's original names
  (docs/compatibility.md §2.7), or a Model Garden module's Keras names read through its object graph (§16.1)."""
  model = AlbertModel(config, compute_dtype)
  report = checkpoint.load_variables(model.named_variables(), model_garden.variables_prefix(module_dir))
  if report.missing:
    raise UserError(f"--{FLAG}: {module_dir} lacks {len(report.missing)} encoder variables "
                    f"({abbreviate(report.missing)})")
  logging.info("%s", report.summary())
  return model


def load_heads(module_dir: str, named_variables: Mapping[str, tf.Variable], what: str) -> None:
  """Loads pretraining-head variables (e.g. the masked-LM head's `cls/predictions/*`) from a module.

  Args:
    module_dir: a resolved module directory of a TF1 or Model Garden module (`module_format`).
    named_variables: the head's variables by original name.
    what: how the message names the head when the module lacks it, e.g. "masked-LM head".
  Raises:
    UserError naming the module when any of the variables is not in it.
  """
  report = checkpoint.load_variables(dict(named_variables), model_garden.variables_prefix(module_dir))
  if report.missing:
    hint = " (Model Garden modules have it when exported with_mlm=True)" if module_format(module_dir) == MODEL_GARDEN \
        else ""
    raise UserError(f"--{FLAG}: {module_dir} has no {what}{hint}: it lacks {abbreviate(report.missing, 3)}")


def load_model(handle: str, compute_dtype: tf.DType | str = tf.float32,
               expected_config: AlbertConfig | None = None) -> tuple[AlbertConfig, AlbertModel | HubAlbertModel]:
  """(config, model) for a module handle; call under the strategy scope, the variables are created here.

  Args:
    handle: the module handle (see `resolve`).
    compute_dtype: the dtype of the model's activations and outputs.
    expected_config: a config the module must match, or the config of one without albert_config.json
      (`module_config`); or None.
  Returns:
    The module's config and its encoder: an `AlbertModel` loaded from a TF1 module's variables, or a
    `HubAlbertModel` wrapping a TF2 SavedModel.
  """
  module_dir = resolve(handle)
  config = module_config(module_dir, expected_config)
  return config, load_encoder(module_dir, config, compute_dtype)


def load_encoder(module_dir: str, config: AlbertConfig,
                 compute_dtype: tf.DType | str = tf.float32) -> AlbertModel | HubAlbertModel:
  """The encoder of a resolved module, for the config `module_config` gave; call under the strategy scope.

  Args:
    module_dir: a resolved module directory (`resolve`).
    config: the module's config (`module_config`).
    compute_dtype: the dtype of the model's activations and outputs.
  Returns:
    An `AlbertModel` loaded from a TF1 or Model Garden module's variables, or a `HubAlbertModel` wrapping one
    of our TF2 SavedModels.
  """
  if module_format(module_dir) in (TF1, MODEL_GARDEN):
    return _load_from_variables(module_dir, config, compute_dtype)
  return HubAlbertModel(_load_saved_model(module_dir), config, compute_dtype, source=module_dir)


def _load_saved_model(module_dir):
  try:
    return tf.saved_model.load(module_dir)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise UserError(f"--{FLAG}: {module_dir} is not a loadable SavedModel: {first_line(e)}") from None


def _tokenization_info(module_dir, loaded=None):
  """(SentencePiece model path, do_lower_case) from the module's `tokenization_info` signature."""
  if is_tf1_module(module_dir):
    # The SentencePiece model alone; the `.vocab` asset is only for people to read (docs/compatibility.md §12.1).
    return os.path.join(module_dir, "assets", SPM_MODEL_FILENAME), None
  if module_format(module_dir) == MODEL_GARDEN:
    # The sp_model_file asset; lowercasing is implied, as for every released ALBERT (docs/compatibility.md §16.1).
    return model_garden.spm_model_path(module_dir), None
  loaded = loaded or _load_saved_model(module_dir)
  if "tokenization_info" not in loaded.signatures:
    raise UserError(f"--{FLAG}: {module_dir} has no tokenization_info signature; pass --spm_model_file")
  info = loaded.signatures["tokenization_info"]()
  return info["vocab_file"].numpy().decode("utf-8"), bool(info["do_lower_case"].numpy())


def create_tokenizer(handle: str, spm_model_file: str | None = None, do_lower_case: bool | None = None,
                     loaded: Any = None) -> FullTokenizer:
  """`FullTokenizer` from `spm_model_file` if given, else from the module's SentencePiece asset.

  `do_lower_case=None` takes the module's own setting; `loaded` saves loading the module again.

  Args:
    handle: the module handle (see `resolve`); not resolved when `spm_model_file` is given.
    spm_model_file: a SentencePiece model that overrides the module's, or None.
    do_lower_case: whether to lowercase; None uses the module's `tokenization_info` (True for TF1
      and Model Garden modules, and with `spm_model_file`).
    loaded: the already loaded TF2 module (`tf.saved_model.load`), or None to load it when needed.
  Returns:
    A FullTokenizer in SentencePiece mode.
  """
  if spm_model_file:
    return FullTokenizer(do_lower_case=True if do_lower_case is None else do_lower_case,
                         spm_model_file=spm_model_file)
  module_dir = resolve(handle)
  spm_path, module_lower_case = _tokenization_info(module_dir, loaded)
  if not tf.io.gfile.exists(spm_path):
    raise UserError(f"--{FLAG}: the module's SentencePiece model is missing: {spm_path}")
  with tf.io.gfile.GFile(spm_path, "rb") as f:
    model_proto = f.read()
  if do_lower_case is None:
    do_lower_case = True if module_lower_case is None else module_lower_case
  return FullTokenizer.from_spm_bytes(model_proto, do_lower_case, source=f"--{FLAG} asset {spm_path}")


class HubModel(NamedTuple):
  """Everything loaded from one module handle.

  Args:
    config: the module's config.
    model: the encoder, an `AlbertModel` (TF1 module) or a `HubAlbertModel` (TF2 module).
    tokenizer: the tokenizer the module was trained with (or the override given).
  """
  config: AlbertConfig
  model: AlbertModel | HubAlbertModel
  tokenizer: FullTokenizer


def create_model_and_tokenizer(handle: str, spm_model_file: str | None = None, do_lower_case: bool | None = None,
                               compute_dtype: tf.DType | str = tf.float32,
                               expected_config: AlbertConfig | None = None) -> HubModel:
  """Everything a runner needs from a hub handle; call under the strategy scope.

  Args:
    handle: the module handle (see `resolve`).
    spm_model_file: a SentencePiece model that overrides the module's, or None.
    do_lower_case: whether to lowercase; None uses the module's own setting.
    compute_dtype: the dtype of the model's activations and outputs.
    expected_config: a config the module must match, or the config of one without albert_config.json
      (`module_config`); or None.
  Returns:
    The module's config, encoder and tokenizer.
  """
  config, model = load_model(handle, compute_dtype, expected_config)
  loaded = model.module if isinstance(model, HubAlbertModel) else None
  return HubModel(config, model, create_tokenizer(handle, spm_model_file, do_lower_case, loaded))
