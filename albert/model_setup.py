"""Where a fine-tuning runner's encoder and tokenizer come from, decided once from the shared flags.

Either `--albert_config_file` (+ `--spm_model_file`/`--vocab_file`, weights from `--init_checkpoint`)
or `--albert_hub_module_handle` (a TF-Hub module: its own weights, config and SentencePiece model,
unless `--spm_model_file`/`--albert_config_file` are also given, which are then checked against it).
"""

from typing import Callable, NamedTuple

from absl import logging
import tensorflow as tf

from albert import hub
from albert.config import AlbertConfig
from albert.errors import UserError, require_file
from albert.modeling import AlbertModel
from albert.tokenization import FullTokenizer


class ModelSetup(NamedTuple):
  config: AlbertConfig
  tokenizer: FullTokenizer
  create_encoder: Callable  # (compute_dtype) -> AlbertModel-like; call under the strategy scope
  hub_handle: str = None


def tokenizer_from_flags(fv):
  """FullTokenizer from `--spm_model_file`, else the WordPiece `--vocab_file`."""
  if fv.spm_model_file:
    return FullTokenizer(do_lower_case=fv.do_lower_case, spm_model_file=fv.spm_model_file)
  if fv.vocab_file:
    return FullTokenizer(vocab_file=fv.vocab_file, do_lower_case=fv.do_lower_case)
  raise UserError("--spm_model_file (or --vocab_file for a WordPiece model) is required")


def model_setup_from_flags(fv):
  """The config, tokenizer and encoder factory the model flags describe."""
  handle = fv.albert_hub_module_handle
  if not handle:
    config = AlbertConfig.from_json_file(require_file(fv.albert_config_file, "albert_config_file"))
    return ModelSetup(config, tokenizer_from_flags(fv), lambda dtype: AlbertModel(config, dtype))
  expected = (AlbertConfig.from_json_file(require_file(fv.albert_config_file, "albert_config_file"))
              if fv.albert_config_file else None)
  config = hub.module_config(hub.resolve(handle), expected)
  # Like the original, a hub run takes the tokenizer from the module unless an spm model file is given;
  # --do_lower_case still applies when it is set explicitly.
  # The original Colab passes a dummy --spm_model_file=from_tf_hub: only an existing file overrides.
  lower_case = fv.do_lower_case if fv["do_lower_case"].present else None
  spm_model_file = fv.spm_model_file if fv.spm_model_file and tf.io.gfile.exists(fv.spm_model_file) else None
  if fv.spm_model_file and spm_model_file is None:
    logging.info("--spm_model_file=%s is not a file: using the module's SentencePiece model", fv.spm_model_file)
  tokenizer = hub.create_tokenizer(handle, spm_model_file, lower_case)
  logging.info("encoder from TF-Hub module %s (do_lower_case=%s)", handle, tokenizer.do_lower_case)

  def create_encoder(dtype):
    return hub.load_model(handle, dtype, config)[1]

  return ModelSetup(config, tokenizer, create_encoder, handle)
