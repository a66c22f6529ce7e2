"""One optimizer step of a task under a tf.distribute strategy: the part of training that does maths.

Forward and backward pass on each replica's batch, the all-reduce of the gradients, global-norm
clipping and the optimizer update; with float16, dynamic loss scaling that skips a step whose gradients
overflow. With gradient accumulation, one step takes `accumulation_steps` micro-batches in turn and sums
their gradients in float32 on each replica before the one all-reduce and update, so the step equals one
on the whole batch (clipping and LAMB's trust ratio see the summed gradient). The trainer's loop
(`albert.training.trainer`) calls a `TrainStep` once per optimizer step inside its tf.function;
everything here runs in graph mode.
"""

import tensorflow as tf

from albert.training import optimization


class TrainStep:
  """`step(iterator)` -> (mean loss, gradient norm before clipping, 1 if the update was applied).

  Args:
    task: the Task whose `compute_loss` is differentiated.
    strategy: the tf.distribute strategy.
    optimizer: an optimizer of `albert.training.optimization` built for `variables`.
    variables: the task's variables by original name (the order fixes the gradient indices).
    global_step: the int64 step variable, incremented after each step.
    clip_norm: the global-norm clip of the summed gradients (None: off).
    jit_compile: whether XLA compiles the forward and backward pass.
    loss_scale: a DynamicLossScale for float16, else None.
    accumulation_steps: micro-batches per optimizer step (each a 1/N share of the batch).
  """

  def __init__(self, task, strategy, optimizer, variables, global_step, clip_norm=1.0, jit_compile=False,
               loss_scale=None, accumulation_steps=1):
    self.task, self.strategy, self.optimizer = task, strategy, optimizer
    self.variables = list(variables.values())
    self.global_step, self.clip_norm, self.loss_scale = global_step, clip_norm, loss_scale
    self.accumulation_steps = accumulation_steps
    self._gradients = tf.function(self._local_gradients, jit_compile=True) if jit_compile else self._local_gradients

  def __call__(self, iterator):
    """One optimizer step on every replica, on the next `accumulation_steps` batches of the distributed
    `iterator`: returns (mean loss, gradient norm, 1 if the update was applied)."""
    features = tuple(next(iterator) for _ in range(self.accumulation_steps))
    if self.loss_scale is None:
      loss, norm = self.strategy.run(self._replica_step, args=(features,))
      applied = tf.constant(1)
    else:
      loss, norm, applied = self._loss_scaled_step(features)
    loss, norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None), self._first(norm)
    # After the step's results: an input that ends at this step must not count it.
    with tf.control_dependencies([loss, norm]):
      self.global_step.assign_add(1)
    return loss, norm, applied

  def _loss_scaled_step(self, features):
    """float16: the update runs only if the gradients are finite; the decision is taken in
    cross-replica context because optimizer updates (merge_call) cannot sit in a replica-side cond.
    """
    loss, grads, finite = self.strategy.run(self._replica_unscaled_gradients, args=(features,))
    finite = self._first(finite)
    norm = tf.cond(finite, lambda: self._first(self.strategy.run(self._apply, args=(grads,))),
                   lambda: tf.constant(0.0))
    self.loss_scale.update(finite)
    return loss, norm, tf.cast(finite, tf.int32)

  def _first(self, value):
    """The value of the first local replica (for values that are identical on every replica)."""
    return self.strategy.experimental_local_results(value)[0]

  def _replica_step(self, features):
    """float32/bfloat16: gradients, all-reduce and update on one replica; returns (loss, norm)."""
    loss, grads = self._replica_gradients(features)
    return loss, self._apply(grads)

  def _replica_unscaled_gradients(self, features):
    """float16: the all-reduced gradients divided by the loss scale, and whether all are finite
    (the same answer on every replica, as the gradients are already summed)."""
    loss, grads = self._replica_gradients(features)
    scale = self.loss_scale.scale
    grads = {index: grad / scale for index, grad in grads.items()}
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(grad)) for grad in grads.values()])
    return loss, grads, finite

  def _replica_gradients(self, micro_batches):
    """This replica's mean loss and the gradients summed over micro-batches and replicas, by variable index.

    Each loss is divided by the replica and micro-batch counts before differentiation, so the sum is
    the mean gradient of the global batch. Micro-batches run one after another (each waits for the sum
    so far), so only one micro-batch's activations are alive at a time. Variables without a gradient
    (e.g. an unused pooler) are left out.
    """
    scale = 1.0 / (self.strategy.num_replicas_in_sync * len(micro_batches))
    if self.loss_scale is not None:
      scale *= self.loss_scale.scale
    loss_sum, grads = self._gradients(micro_batches[0], scale)
    for features in micro_batches[1:]:
      with tf.control_dependencies([loss_sum, *grads.values()]):
        loss, more = self._gradients(features, scale)
      loss_sum += loss
      grads = {index: grads[index] + grad for index, grad in more.items()}
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return loss_sum / len(micro_batches), grads

  def _local_gradients(self, features, scale):
    """Forward and backward pass on this replica's batch (the part `jit_compile` hands to XLA).

    IndexedSlices (from embedding lookups) are made dense for the all-reduce and the optimizer.
    """
    with tf.GradientTape() as tape:
      loss = tf.cast(self.task.compute_loss(features, training=True), tf.float32)
      scaled_loss = loss * scale
    grads = tape.gradient(scaled_loss, self.variables)
    return loss, {index: tf.convert_to_tensor(grad) for index, grad in enumerate(grads) if grad is not None}

  def _apply(self, grads_by_index):
    """Clips the summed gradients by global norm (inside each variable's update) and applies them; returns
    the norm before clipping."""
    indices = sorted(grads_by_index)
    grads = [grads_by_index[index] for index in indices]
    if self.clip_norm:
      scale, norm = optimization.clip_scale(grads, self.clip_norm)
    else:
      scale, norm = None, tf.linalg.global_norm(grads)
    self.optimizer.apply_gradients(zip(grads, [self.variables[index] for index in indices]),
                                   self.global_step.read_value(), gradient_scale=scale)
    return norm
