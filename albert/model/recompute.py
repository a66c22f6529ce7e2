"""Activation recomputation for a stack of shared-weight blocks (`--recompute_grad`).

The forward pass keeps only each step's input; the backward pass runs one step again, takes its
gradients, and frees its tensors before it starts the step below. What sets ALBERT apart is that
every step of a shared group uses the same weights: left to the tape, each step's weight gradients
are separate tensors that are summed only once the last of them exists, so a 12-layer xxlarge held
up to 12 gradient copies of its 805 MB block. Here each block's weight gradients are added to one
float32 running sum as each step produces them, so at most a sum and one step's gradients are alive.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf


def recompute_layers_in_backward_pass(block: Callable, x: tf.Tensor, weights: Sequence[Sequence[tf.Tensor]],
                                      schedule: Sequence[int],
                                      extras: Sequence[Sequence[tf.Tensor]]) -> list[tf.Tensor]:
  """Runs `x = block(x, weights[schedule[i]], *extras[i])` for every step i; returns every step's output.

  Gradients flow to `x` and to `weights` (summed over the steps that share them); `extras` (attention
  mask, dropout seeds) get none. Control dependencies fix the order the memory saving relies on: a
  step's recomputation waits for the gradient from above and for the step above to have added its
  weight gradients to the sums, so the graph executor cannot run the input-gradient chain ahead and
  leave every step's weight gradients, and the tensors they need, for the end.

  Args:
    block: `block(x, weights, *extras) -> y`; it must take only tensors and read no variable (pass
      variable values in `weights`), so nothing outside the arguments needs a gradient.
    x: the first step's input.
    weights: one sequence of tensors per distinct block; a shared block appears once.
    schedule: for each step, the index into `weights` of the block it runs.
    extras: for each step, tensors that need no gradient.
  Returns:
    The output of every step, in order.
  """
  sizes = [len(w) for w in weights]
  flat_weights = [t for w in weights for t in w]
  flat_extras = [t for e in extras for t in e]
  extras_per_step = [len(e) for e in extras]

  def split(flat, lengths):
    parts, start = [], 0
    for length in lengths:
      parts.append(list(flat[start:start + length]))
      start += length
    return parts

  @tf.custom_gradient
  def run(x, *args):
    block_weights = split(args[:len(flat_weights)], sizes)
    step_extras = split(args[len(flat_weights):], extras_per_step)
    outputs, h = [], x
    for step, index in enumerate(schedule):
      h = block(h, block_weights[index], *step_extras[step])
      outputs.append(h)

    def backward(*upstream):
      sums = [None] * len(block_weights)
      grad_h = upstream[-1]
      for step in reversed(range(len(schedule))):
        index = schedule[step]
        with tf.control_dependencies([grad_h]):
          replayed = [tf.identity(t) for t in [x if step == 0 else outputs[step - 1], *block_weights[index]]]
        with tf.GradientTape() as tape:
          tape.watch(replayed)
          output = block(replayed[0], replayed[1:], *step_extras[step])
        grads = tape.gradient(output, replayed, output_gradients=grad_h,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        weight_grads = [tf.cast(g, tf.float32) for g in grads[1:]]
        sums[index] = weight_grads if sums[index] is None else [s + g for s, g in zip(sums[index], weight_grads)]
        with tf.control_dependencies(sums[index]):  # the step below waits until this one's tensors can go
          grad_h = tf.identity(grads[0])
        if step > 0:
          grad_h += upstream[step - 1]
      weight_grads = []
      for index, tensors in enumerate(block_weights):
        if sums[index] is None:  # a block no step runs
          weight_grads += [tf.zeros_like(t) for t in tensors]
        else:
          weight_grads += [tf.cast(s, t.dtype) for s, t in zip(sums[index], tensors)]
      return [grad_h, *weight_grads, *([None] * len(flat_extras))]

    return outputs, backward

  return run(x, *flat_weights, *flat_extras)
