"""What training reports: the progress line in the log and the scalar summaries for TensorBoard.

`step 120/1000 loss 3.2104 lr 4.10e-05 12.3 examples/s ETA 0:12:30` every `--log_every_n_steps`, and
the same figures (plus the gradient norm and, with float16, the loss scale) as TensorBoard scalars.
"""

import time

import tensorflow as tf
from absl import logging

# tf.summary.scalar needs the tensorboard package; writing the same scalar event directly needs only TF.
from tensorflow.core.framework import summary_pb2

from albert.core.progress import eta_seconds, format_duration

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def write_scalars(writer, step, scalars):
  """Writes `{tag: value}` as TensorBoard scalar events of `step` and flushes."""
  with writer.as_default(step=step):
    for tag, value in scalars.items():
      tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)
  writer.flush()


class TrainingProgress:
  """Totals since the last report; turns them into the progress line and the summary scalars."""

  def __init__(self, total_steps, global_batch_size):
    self.total_steps = total_steps
    self.global_batch_size = global_batch_size
    self._reset(time.time())

  def _reset(self, now):
    self.steps, self.loss_sum, self.norm_sum, self.applied, self.since = 0, 0.0, 0.0, 0, now

  def add(self, steps, loss_sum, norm_sum, applied):
    self.steps += steps
    self.loss_sum += loss_sum
    self.norm_sum += norm_sum
    self.applied += applied

  def scalars_and_line(self, step, learning_rate, loss_scale=None):
    """({tag: value}, progress line) for the steps since the last report, then starts a new period."""
    now = time.time()
    steps_per_second = self.steps / max(now - self.since, 1e-9)
    loss = self.loss_sum / max(self.steps, 1)
    scalars = {
        "loss": loss,
        "learning_rate": learning_rate,
        "gradient_global_norm": self.norm_sum / max(self.applied, 1),
        "examples/sec": steps_per_second * self.global_batch_size,
        "global_step/sec": steps_per_second,
    }
    eta = format_duration(eta_seconds(step, self.total_steps, steps_per_second))
    line = (f"step {step}/{self.total_steps} loss {loss:.4f} lr {learning_rate:.2e} "
            f"{scalars['examples/sec']:.1f} examples/s ETA {eta}")
    if loss_scale is not None:
      scalars["loss_scale"] = loss_scale
      skipped = self.steps - self.applied
      line += f" loss scale {loss_scale:g}"
      if skipped:
        line += f" ({skipped} skipped step(s): non-finite gradients)"
    self._reset(now)
    return scalars, line

  def report(self, step, learning_rate, writer=None, loss_scale=None):
    """Logs the progress line and writes the scalars (chief only: `writer` None elsewhere)."""
    scalars, line = self.scalars_and_line(step, learning_rate, loss_scale)
    logging.info("%s", line)
    if writer is not None:
      write_scalars(writer, step, scalars)
