"""The one contract between a task and the trainer, and the set-up every encoder-based task shares.

A `Task` answers what the trainer asks: build the variables, name them, compute the loss, predict,
evaluate. An `EncoderTask` is an ALBERT encoder plus one head (SQuAD, GLUE, RACE): it owns the shared
part, building the encoder (from a config, a TF-Hub module, ...), naming the variables, running the
encoder with optional trimming of padding, and making an export copy.
"""

import abc
import copy

import tensorflow as tf

from albert.io.input_pipeline import longest_real_length


class Task(abc.ABC):
  """What a runner plugs into the Trainer: its model and heads, loss, predictions and metrics.

  The trainer calls `build()` once under the strategy scope. The step methods run inside
  `strategy.run` (replica context, traced by tf.function) on one replica's batch of features.
  """

  @abc.abstractmethod
  def build(self):
    """Creates every variable of the model and its heads."""

  @abc.abstractmethod
  def named_variables(self):
    """The trainable variables keyed by original checkpoint name (no `:0`)."""

  @abc.abstractmethod
  def compute_loss(self, features, training):
    """Scalar float32 loss, the mean over this replica's batch (the trainer averages the replicas)."""

  def predict_step(self, features):
    """A dict of batch-major tensors; may pass inputs such as `unique_ids` through."""
    raise NotImplementedError(f"{type(self).__name__} does not support prediction")

  def eval_step(self, features):
    """Metric sums of this batch: `{name: (weighted sum, sum of weights)}` for averages and
    `{name: sum}` for totals (e.g. counts). Sums, so batches and replicas combine exactly and an
    empty batch (the end of the data under several replicas) adds nothing.
    """
    raise NotImplementedError(f"{type(self).__name__} does not support evaluation")

  def encoder(self):
    """The ALBERT encoder the task trains (an `AlbertModel`), for settings such as recomputation."""
    return self.model

  def enable_recompute_grad(self):
    """Makes training passes recompute the encoder's blocks in the backward pass (after `build()`)."""
    from albert.core.errors import UserError
    encoder = self.encoder()
    if not hasattr(encoder, "recompute_grad"):
      raise UserError(f"--recompute_grad needs an encoder built by this suite; {type(encoder).__name__} (a "
                      "TF2 SavedModel from TF-Hub) runs as one opaque call")
    encoder.recompute_grad = True


def trim_padding(input_ids, input_mask, segment_ids):
  """Cuts [N, S] inputs to the longest real sequence among the N (padding always sits at the end), so
  a batch of short examples does not pay for max_seq_length. Attention never looks at padding, so the
  outputs are those of the padded batch. (The input pipeline's length buckets,
  `albert.io.input_pipeline.Bucketing`, cut whole batches to a few fixed lengths instead.)
  """
  length = longest_real_length(input_mask)
  return input_ids[:, :length], input_mask[:, :length], segment_ids[:, :length]


def shapes_may_vary(strategy):
  """Whether batches may come in several sequence lengths: not on TPUs, whose programs need static shapes."""
  return not isinstance(strategy, tf.distribute.TPUStrategy)


def padding_trim_settings(trim_flag, strategy, jit_compile):
  """(trim in evaluation/prediction, trim in training) for a trimming flag such as --trim_padding or
  --bucket_prediction: off on TPUs, and in-graph trimming (`trim_padding`) is off in training under XLA,
  which compiles the step for one static shape. (Batches that the input pipeline cuts to length buckets
  keep a static shape each, so XLA only compiles one program per bucket.)"""
  inference = trim_flag and shapes_may_vary(strategy)
  return inference, inference and not jit_compile


class EncoderTask(Task):
  """An ALBERT encoder plus the head that `build_head()` makes.

  `create_encoder(compute_dtype)` builds the encoder (default: a fresh `AlbertModel` of `config`;
  the model loader passes TF-Hub or other sources). `trim_inference`/`trim_training` run each batch
  only up to its longest real sequence (`trim_padding`).
  """

  def __init__(self, config, create_encoder=None, compute_dtype=tf.float32, trim_inference=False,
               trim_training=False):
    self.config, self.compute_dtype = config, compute_dtype
    self.create_encoder = create_encoder or self._fresh_encoder
    self.trim_inference, self.trim_training = trim_inference, trim_training
    self.model = self.head = None

  def _fresh_encoder(self, compute_dtype):
    from albert.model.encoder import AlbertModel
    return AlbertModel(self.config, compute_dtype)

  @abc.abstractmethod
  def build_head(self):
    """The task head (a `albert.model.heads.Head`)."""

  def build(self):
    self.model = self.create_encoder(self.compute_dtype)
    self.head = self.build_head()

  def named_variables(self):
    return {**self.model.named_variables(), **self.head.named_variables()}

  def encode(self, input_ids, input_mask, segment_ids, training):
    """The encoder's outputs for a batch, with padding trimmed when this phase asks for it."""
    inputs = input_ids, input_mask, segment_ids
    if self.trim_training if training else self.trim_inference:
      inputs = trim_padding(*inputs)
    return self.model(*inputs, training=training)

  def for_export(self):
    """An unbuilt copy computing in float32 with static shapes, for a SavedModel. Its encoder is a
    plain AlbertModel (even when training started from a TF-Hub module): the export loads every
    weight from a checkpoint."""
    clone = copy.copy(self)
    clone.create_encoder = clone._fresh_encoder
    clone.compute_dtype = tf.float32
    clone.trim_inference = clone.trim_training = False
    clone.model = clone.head = None
    return clone
