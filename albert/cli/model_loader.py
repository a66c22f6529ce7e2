"""The one place that decides, from the model flags, which ALBERT a command runs and how it tokenizes.

Every runner (SQuAD, GLUE, RACE, analysis) and every tool (fill_mask, extract_features, retrieve) calls
`load_model(flag_values)`, so the rules are the same everywhere:
- `--albert_config_file` (+ `--spm_model_file` or `--vocab_file`): a fresh encoder of that config,
  whose weights come from `--init_checkpoint`;
- `--albert_hub_module_handle`: the module's encoder, config and SentencePiece model. An
  `--albert_config_file` given as well is checked against the module's config; a version-1 module,
  which has no `albert_config.json`, takes it (checked against its variable shapes) or else the
  released size its shapes match, and a Model Garden TF2 encoder's config is inferred from its
  variables and call (`hub.module_config`). `--spm_model_file` overrides the
  module's model only when it names an existing file (the original Colab passes the dummy
  `--spm_model_file=from_tf_hub`); `--do_lower_case` applies only when given explicitly.
The tokenizer's vocabulary must fit the model's `vocab_size`.
"""

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf
from absl import logging

from albert.cli import flags as flag_groups
from albert.core.errors import UserError, require_file
from albert.core.precision import compute_dtype
from albert.inference import encoder as inference_encoder
from albert.model import hub
from albert.model.config import AlbertConfig
from albert.model.encoder import AlbertModel
from albert.text.tokenizer import FullTokenizer


class ModelSetup(NamedTuple):
  """What the model flags describe.

  Attributes:
    config: the AlbertConfig.
    tokenizer: the FullTokenizer.
    create_encoder: `(compute_dtype) -> encoder` with AlbertModel's interface; call it under the
      strategy scope, where it creates (or loads) the variables.
    hub_handle: the TF-Hub handle, or None.
    source: flag values that identify the model, for files that record where results came from.
    load_heads: `(named_variables, what) -> None` loading pretraining-head variables (by original name) from
      the module, for modules whose heads load by name (TF1 and Model Garden); None otherwise.
  """
  config: AlbertConfig
  tokenizer: FullTokenizer
  create_encoder: Callable
  hub_handle: str | None = None
  source: dict | None = None
  load_heads: Callable | None = None


def tokenizer_from_flags(fv):
  """FullTokenizer from `--spm_model_file`, else the WordPiece `--vocab_file`."""
  if fv.spm_model_file:
    return FullTokenizer(do_lower_case=fv.do_lower_case, spm_model_file=fv.spm_model_file)
  if fv.vocab_file:
    return FullTokenizer(vocab_file=fv.vocab_file, do_lower_case=fv.do_lower_case)
  raise UserError("--spm_model_file (or --vocab_file for a WordPiece model) is required")


def _config_file(fv):
  return AlbertConfig.from_json_file(require_file(fv.albert_config_file, "albert_config_file"))


def _check_vocab(tokenizer, config):
  if len(tokenizer.vocab) > config.vocab_size:
    raise UserError(f"the vocabulary has {len(tokenizer.vocab)} pieces but the model's vocab_size is "
                    f"{config.vocab_size}; are --spm_model_file/--vocab_file the model's own?")


def _from_checkpoint_flags(fv):
  config = _config_file(fv)
  tokenizer = tokenizer_from_flags(fv)
  source = {"albert_config_file": fv.albert_config_file}
  source.update({"spm_model_file": fv.spm_model_file} if fv.spm_model_file else {"vocab_file": fv.vocab_file})
  return ModelSetup(config, tokenizer, lambda dtype: AlbertModel(config, dtype), None, source)


def _from_hub_flags(fv):
  handle = fv.albert_hub_module_handle
  expected = _config_file(fv) if fv.albert_config_file else None
  module_dir = hub.resolve(handle)
  config = hub.module_config(module_dir, expected)
  lower_case = fv.do_lower_case if fv["do_lower_case"].present else None
  spm_model_file = fv.spm_model_file if fv.spm_model_file and tf.io.gfile.exists(fv.spm_model_file) else None
  if fv.spm_model_file and spm_model_file is None:
    logging.info("--spm_model_file=%s is not a file: using the module's SentencePiece model", fv.spm_model_file)
  tokenizer = hub.create_tokenizer(handle, spm_model_file, lower_case)
  logging.info("encoder from TF-Hub module %s (do_lower_case=%s)", handle, tokenizer.do_lower_case)
  source = {"albert_hub_module_handle": handle}
  if spm_model_file:
    source["spm_model_file"] = spm_model_file

  def create_encoder(dtype):
    return hub.load_encoder(module_dir, config, dtype)

  def load_heads(named_variables, what):
    hub.load_heads(module_dir, named_variables, what)

  loads_heads = hub.module_format(module_dir) in (hub.TF1, hub.MODEL_GARDEN)  # heads by name in variables/
  return ModelSetup(config, tokenizer, create_encoder, handle, source, load_heads if loads_heads else None)


def load_model(fv) -> ModelSetup:
  """The config, tokenizer and encoder factory the model flags `fv` describe (see module doc).

  Args:
    fv: parsed absl FlagValues holding the model flags (`albert.cli.flags.define_model_flags`).
  Returns:
    A ModelSetup.
  """
  setup = _from_hub_flags(fv) if fv.albert_hub_module_handle else _from_checkpoint_flags(fv)
  _check_vocab(setup.tokenizer, setup.config)
  setup.source["do_lower_case"] = setup.tokenizer.do_lower_case
  return setup


def define_encoder_flags(flag_values=None, *, max_seq_length=128, batch_size=8):
  """The model flags of the inference tools plus their batching and precision flags."""
  flag_groups.define_model_flags(flag_values, output_dir=False)
  flag_groups.define_inference_flags(flag_values, max_seq_length=max_seq_length, batch_size=batch_size)


def load_encoder(fv, with_mlm_head=False):
  """The inference Encoder the flags of `define_encoder_flags` describe, with its weights loaded."""
  setup = load_model(fv)
  flag_groups.validate_seq_length(fv.max_seq_length, setup.config)
  return inference_encoder.load_encoder(setup, fv.init_checkpoint, fv.max_seq_length, compute_dtype(fv.precision),
                                        with_mlm_head)
