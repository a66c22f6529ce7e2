"""Dynamic loss scaling for float16 training: small gradients stay representable, overflows are skipped."""

import tensorflow as tf


class DynamicLossScale:
  """Multiplies the loss by `scale` before differentiation; the gradients are divided by it again.

  A step whose gradients are not finite is skipped and halves the scale (not below 1); after
  `growth_interval` finite steps in a row the scale doubles. The state is not checkpointed: a resumed
  run starts again from `initial_scale` and finds its level within a few steps.
  """

  def __init__(self, initial_scale=2.0 ** 15, growth_interval=2000):
    self.growth_interval = growth_interval
    self.scale = tf.Variable(initial_scale, dtype=tf.float32, trainable=False, name="loss_scale")
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="loss_scale_good_steps")

  def update(self, gradients_finite):
    """Adjusts the scale after a step (call in cross-replica context)."""
    zero = tf.constant(0, tf.int64)
    good_steps = tf.where(gradients_finite, self.good_steps + 1, zero)
    grow = good_steps >= self.growth_interval
    kept_or_grown = tf.where(grow, self.scale * 2.0, self.scale)
    self.scale.assign(tf.where(gradients_finite, kept_or_grown, tf.maximum(self.scale / 2.0, 1.0)))
    self.good_steps.assign(tf.where(grow, zero, good_steps))
