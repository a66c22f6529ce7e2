"""Fine-tuning from a TF-Hub ALBERT module (`--albert_hub_module_handle`).

A handle is a local directory or anything `tensorflow_hub.resolve` understands (a tfhub.dev URL, a
`gs://` archive); resolved modules are cached in `TFHUB_CACHE_DIR`, so a cached handle needs no network.
Two module formats are understood:
- TensorFlow 2 SavedModels written by `albert.export_to_tfhub`: loaded with `tf.saved_model.load`,
  which keeps the variables' original names (`bert/...`), so checkpoints written while fine-tuning
  them use the original names too;
- TF1 Hub modules of the original release (`tfhub_module.pb`): they cannot be fine-tuned through
  `hub.load`, so `AlbertModel` is built from the module's `albert_config.json` asset and loaded by name
  from the module's `variables/variables` checkpoint.

A runner swaps the model with one call, made under its strategy scope:
    config, model, tokenizer = hub.create_model_and_tokenizer(handle, spm_model_file, do_lower_case, dtype)
"""

import json
import os
import sys
import types
from typing import NamedTuple

import tensorflow as tf

from albert import checkpoint, convert
from albert.config import AlbertConfig
from albert.errors import UserError
from albert.modeling import AlbertModel, AlbertOutputs
from albert.tokenization import FullTokenizer

FLAG = "albert_hub_module_handle"
CONFIG_ASSET = "albert_config.json"
TF1_MODULE_MARKER = "tfhub_module.pb"
_ARCHITECTURE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                      "num_attention_heads", "intermediate_size", "inner_group_num", "hidden_act",
                      "max_position_embeddings", "type_vocab_size")


def tensorflow_hub():
  """Imports tensorflow_hub, which needs `pkg_resources.parse_version` that setuptools >= 81 removed.

  When pkg_resources is missing, a stand-in offering only `parse_version` (from `packaging`, a
  TensorFlow dependency) is visible during the import and removed afterwards.
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


def resolve(handle):
  """The local directory of a module: `handle` itself if it is a directory, else via tensorflow_hub."""
  if not handle:
    raise UserError(f"--{FLAG} is empty")
  if tf.io.gfile.isdir(handle):
    return handle
  try:
    path = tensorflow_hub().resolve(handle)
  except Exception as e:  # tensorflow_hub raises ValueError, OSError, URLError, ...
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"--{FLAG}: cannot resolve {handle}: {reason}") from None
  return path


def module_config(module_dir, expected=None):
  """The module's AlbertConfig (its `albert_config.json` asset); raises if `expected` differs in shape."""
  path = os.path.join(module_dir, "assets", CONFIG_ASSET)
  if not tf.io.gfile.exists(path):
    raise UserError(f"--{FLAG}: {module_dir} has no assets/{CONFIG_ASSET}; is it an ALBERT module?")
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      config = AlbertConfig.from_dict(json.loads(f.read()), source=path)
    except json.JSONDecodeError as e:
      raise UserError(f"{path}: not valid JSON: {e.msg}") from None
  if expected is not None:
    differences = [f"{key} {getattr(config, key)!r} vs {getattr(expected, key)!r}" for key in _ARCHITECTURE_KEYS
                   if getattr(config, key) != getattr(expected, key)]
    if differences:
      raise UserError(f"--{FLAG} does not match --albert_config_file (module vs file): {'; '.join(differences)}")
  return config


def is_tf1_module(module_dir):
  return tf.io.gfile.exists(os.path.join(module_dir, TF1_MODULE_MARKER))


class HubAlbertModel:
  """A loaded TF2 ALBERT module behind `AlbertModel`'s interface (call, outputs, `named_variables`).

  The module computes in float32; outputs are cast to `compute_dtype` so heads see what `AlbertModel`
  would give them.
  """

  def __init__(self, loaded, config, compute_dtype=tf.float32, source="module"):
    self.config = config
    self.compute_dtype = tf.as_dtype(compute_dtype)
    self.module = loaded
    module_variables = _named_variables(loaded, source)
    _check_variables(module_variables, config, source)
    # Only the encoder's: the module's MLM/SOP head variables are not on `__call__`'s path.
    self._variables = {name: module_variables[name] for name in _reference_shapes(config)}

  @property
  def word_embeddings(self):
    return self._variables["bert/embeddings/word_embeddings"]

  def named_variables(self):
    """The encoder variables `__call__` uses, by original name (exactly `AlbertModel`'s names)."""
    return dict(self._variables)

  def __call__(self, input_ids, input_mask=None, token_type_ids=None, training=False):
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
  reference = _reference_shapes(config)
  missing = sorted(set(reference) - set(named))
  if missing:
    raise UserError(f"--{FLAG}: {source} lacks variables of the ALBERT encoder its config describes: "
                    f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
  wrong = [f"{name} {named[name].shape.as_list()} vs {shape}" for name, shape in reference.items()
           if named[name].shape.as_list() != shape]
  if wrong:
    raise UserError(f"--{FLAG}: {source} variables do not match its {CONFIG_ASSET}: {'; '.join(wrong[:5])}")


def _reference_shapes(config):
  """The §2.7 shapes of the encoder's variables for `config`."""
  shapes = convert.original_shapes(config)
  return {name: shapes[name] for name, _, _ in convert.encoder_pairs(config)}


def _load_tf1_module(module_dir, config, compute_dtype):
  """An AlbertModel loaded by name from a TF1 Hub module's variables (their names are the §2.7 ones)."""
  model = AlbertModel(config, compute_dtype)
  prefix = os.path.join(module_dir, "variables", "variables")
  report = checkpoint.load_variables(model.named_variables(), prefix)
  if report.missing:
    raise UserError(f"--{FLAG}: {module_dir} lacks {len(report.missing)} encoder variables "
                    f"({', '.join(report.missing[:5])})")
  return model


def load_model(handle, compute_dtype=tf.float32, expected_config=None):
  """(config, model) for a module handle; call under the strategy scope, the variables are created here."""
  module_dir = resolve(handle)
  config = module_config(module_dir, expected_config)
  if is_tf1_module(module_dir):
    return config, _load_tf1_module(module_dir, config, compute_dtype)
  return config, HubAlbertModel(_load_saved_model(module_dir), config, compute_dtype, source=module_dir)


def _load_saved_model(module_dir):
  try:
    return tf.saved_model.load(module_dir)
  except (OSError, ValueError, tf.errors.OpError) as e:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"--{FLAG}: {module_dir} is not a loadable SavedModel: {reason}") from None


def _tokenization_info(module_dir, loaded=None):
  """(SentencePiece model path, do_lower_case) from the module's `tokenization_info` signature."""
  if is_tf1_module(module_dir):
    return os.path.join(module_dir, "assets", "30k-clean.model"), None
  loaded = loaded or _load_saved_model(module_dir)
  if "tokenization_info" not in loaded.signatures:
    raise UserError(f"--{FLAG}: {module_dir} has no tokenization_info signature; pass --spm_model_file")
  info = loaded.signatures["tokenization_info"]()
  return info["vocab_file"].numpy().decode("utf-8"), bool(info["do_lower_case"].numpy())


def create_tokenizer(handle, spm_model_file=None, do_lower_case=None, loaded=None):
  """`FullTokenizer` from `spm_model_file` if given, else from the module's SentencePiece asset.

  `do_lower_case=None` takes the module's own setting; `loaded` saves loading the module again.
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
  config: AlbertConfig
  model: object  # HubAlbertModel or AlbertModel
  tokenizer: FullTokenizer


def create_model_and_tokenizer(handle, spm_model_file=None, do_lower_case=None, compute_dtype=tf.float32,
                               expected_config=None):
  """Everything a runner needs from a hub handle; call under the strategy scope."""
  config, model = load_model(handle, compute_dtype, expected_config)
  loaded = model.module if isinstance(model, HubAlbertModel) else None
  return HubModel(config, model, create_tokenizer(handle, spm_model_file, do_lower_case, loaded))
