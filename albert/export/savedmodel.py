"""SavedModel export shared by the tasks: fresh weights from a checkpoint, written atomically.

Exporting from a fresh, strategy-free float32 copy of the task (`EncoderTask.for_export`) keeps
distributed (mirrored) variables and optimizer state out of the SavedModel.
"""

import os
import time

import tensorflow as tf
from absl import logging

from albert.core import fileio
from albert.core.errors import UserError
from albert.io import checkpoint as checkpoints


def load_task_for_export(task, checkpoint_prefix, what):
  """A float32, static-shape copy of `task` with every variable loaded from `checkpoint_prefix` (a
  partially trained model, e.g. an encoder-only checkpoint with a fresh head, is refused)."""
  task = task.for_export()
  task.build()
  report = checkpoints.load_variables(task.named_variables(), checkpoint_prefix)
  if report.missing:
    raise UserError(f"--export_dir: checkpoint {checkpoint_prefix} lacks {len(report.missing)} {what} "
                    f"variables (e.g. {report.missing[0]}); cannot export it")
  return task


def save_timestamped(module, export_dir, signatures):
  """Saves `module` to `<export_dir>/<timestamp>` (first free second, like the Estimator) through a temp
  directory in export_dir renamed into place, so readers never see a half-written SavedModel.
  Returns the SavedModel directory."""
  os.makedirs(export_dir, exist_ok=True)
  timestamp = int(time.time())
  while os.path.exists(os.path.join(export_dir, str(timestamp))):
    timestamp += 1
  path = os.path.join(export_dir, str(timestamp))
  with fileio.atomic_directory(path) as staging:
    tf.saved_model.save(module, staging, signatures=signatures)
  logging.info("exported SavedModel to %s", path)
  return path


def write_tflite(saved_model_dir, path, signature="serving_default"):
  """Converts the SavedModel's `signature` (the ids-in one: text-in needs ops TFLite lacks) to a float TFLite
  model at `path` (atomic)."""
  model = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature]).convert()
  with fileio.atomic_open(path, "wb") as f:
    f.write(model)
  logging.info("wrote TFLite model %s", path)
  return path
