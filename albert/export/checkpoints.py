"""Pretrained models as exported files: loading a model directory and writing a slim checkpoint.

A model directory holds `albert_config.json` and a checkpoint with the original names
(docs/compatibility.md §2.7). The slim checkpoint holds the encoder, the MLM head and the SOP head with
`global_step` 0 and no optimizer slots (§12.3); a variable missing from the input is an error instead
of being written with its random initial value, and no `.meta` graph file is written.
"""

import os

import numpy as np
from absl import logging

from albert.core.errors import UserError, abbreviate, require_file
from albert.io import checkpoint
from albert.model.config import CONFIG_FILENAME, AlbertConfig
from albert.model.pretraining import AlbertPretrainingModel


def load_pretraining_model(albert_directory, checkpoint_name):
  """(config, AlbertPretrainingModel with every variable loaded, checkpoint prefix) from a model directory."""
  if not albert_directory:
    raise UserError("--albert_directory is required")
  if not os.path.isdir(albert_directory):
    raise UserError(f"--albert_directory: directory not found: {albert_directory}")
  config = AlbertConfig.from_json_file(
      require_file(os.path.join(albert_directory, CONFIG_FILENAME), f"albert_directory ({CONFIG_FILENAME})"))
  prefix = checkpoint.resolve_checkpoint(os.path.join(albert_directory, checkpoint_name), "checkpoint_name")
  model = AlbertPretrainingModel(config)
  report = checkpoint.load_variables(model.named_variables(), prefix)
  logging.info("%s", report.summary())
  if report.missing:
    raise UserError(f"checkpoint {prefix} lacks {len(report.missing)} variables of the pretraining model "
                    f"({abbreviate(report.missing)}); it needs the encoder, cls/predictions and cls/seq_relationship")
  return config, model, prefix


def export_checkpoint(albert_directory, checkpoint_name, export_path):
  """Writes the slim checkpoint at `export_path` and returns the input prefix."""
  if not export_path:
    raise UserError("--export_path is required")
  _, model, prefix = load_pretraining_model(albert_directory, checkpoint_name)
  checkpoint.save_checkpoint(export_path, {**model.named_variables(), checkpoint.GLOBAL_STEP: np.int64(0)})
  return prefix
