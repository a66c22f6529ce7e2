"""The one training, evaluation and prediction loop every runner uses.

It keeps the Estimator's semantics without the Estimator (gone from TF 2.16+): `output_dir` holds the
run; a run with checkpoints there resumes from the latest one (weights, optimizer slots, global_step);
`init_checkpoint` only seeds a fresh run; `save_checkpoints_steps`, `keep_checkpoint_max` and
`iterations_per_loop` mean what they meant. Steps run in a `tf.function` under any tf.distribute
strategy, and checkpoints use the original variable names.

Like the Estimator, a resumed run restarts its input pipeline: the data position is not checkpointed.
"""

import abc
import datetime
import itertools
import signal
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging
# tf.summary.scalar needs the tensorboard package; writing the same scalar event directly needs only TF.
from tensorflow.core.framework import summary_pb2

from albert import checkpoint as checkpoints
from albert import distribute, optimization
from albert.errors import UserError

PRECISIONS = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}
GLOBAL_STEP = "global_step"
PREDICT_LOG_SECONDS = 30.0

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def compute_dtype_for(precision):
  """The activation dtype a task builds its model with for `--precision` (weights stay float32)."""
  if precision not in PRECISIONS:
    raise UserError(f"--precision: unknown value {precision!r}; expected one of {', '.join(PRECISIONS)}")
  return PRECISIONS[precision]


def num_train_steps_from_epochs(num_examples, batch_size, epochs):
  """int(#examples / batch size * epochs), the original SQuAD scripts' step count."""
  return int(num_examples / batch_size * epochs)


def num_warmup_steps(num_train_steps, warmup_proportion):
  """int(num_train_steps * warmup_proportion), as the original SQuAD scripts compute warmup."""
  return int(num_train_steps * warmup_proportion)


class NonFiniteLossError(UserError):
  """The training loss became NaN or infinite; training stopped without checkpointing that state."""


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


class DynamicLossScale:
  """Dynamic loss scaling for float16: keeps small gradients representable, skips overflowing steps.

  The loss is multiplied by `scale` before differentiation and the gradients are divided by it. A step
  whose gradients are not finite is skipped and halves the scale (not below 1); after
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


class Trainer:
  """Trains, evaluates and predicts with a `Task` under a tf.distribute strategy (see module doc).

  The arguments mirror the runners' flags: the optimizer and its schedule (`create_optimizer`),
  checkpoint cadence and count (`keep_checkpoint_max` 0 or None keeps all), steps per tf.function
  call, progress/summary cadence, compute precision, XLA, and the global-norm clip (None: off).
  """

  def __init__(self, task, strategy, output_dir, *, learning_rate, num_train_steps, num_warmup_steps,
               optimizer="adamw", poly_power=1.0, start_warmup_step=0, save_checkpoints_steps=1000,
               keep_checkpoint_max=5, iterations_per_loop=1000, log_every_n_steps=100,
               precision="float32", jit_compile=False, clip_norm=1.0):
    for flag, value in (("save_checkpoints_steps", save_checkpoints_steps),
                        ("iterations_per_loop", iterations_per_loop),
                        ("log_every_n_steps", log_every_n_steps)):
      if value <= 0:
        raise UserError(f"--{flag} must be positive, got {value}")
    if keep_checkpoint_max is not None and keep_checkpoint_max < 0:
      raise UserError(f"--keep_checkpoint_max must be >= 0 (0 keeps all), got {keep_checkpoint_max}")
    if not output_dir:
      raise UserError("--output_dir is required")
    self.task = task
    self.strategy = strategy
    self.output_dir = output_dir
    self.num_train_steps = int(num_train_steps)
    self.save_checkpoints_steps = save_checkpoints_steps
    self.iterations_per_loop = iterations_per_loop
    self.log_every_n_steps = log_every_n_steps
    self.compute_dtype = compute_dtype_for(precision)
    self.jit_compile = jit_compile
    self.clip_norm = clip_norm
    self.optimizer, self.learning_rate_schedule = optimization.create_optimizer(
        learning_rate, num_train_steps, num_warmup_steps, optimizer=optimizer, poly_power=poly_power,
        start_warmup_step=start_warmup_step)
    self.is_chief = distribute.is_chief(strategy)
    self.loss_scale = None
    self.checkpoint_manager = checkpoints.CheckpointManager(output_dir, max_to_keep=keep_checkpoint_max)
    self._global_step = None
    self._variables = None
    self._optimizer_built = False
    self._weights_ready = False
    self._last_saved_step = None
    gradients = self._local_gradients
    self._gradients = tf.function(gradients, jit_compile=True) if jit_compile else gradients
    self._train_loop = tf.function(self._run_steps)
    self._predict_fn = tf.function(self._distributed_predict)
    self._eval_fn = tf.function(self._distributed_eval, reduce_retracing=True)

  # ---- variables and checkpoints ----

  @property
  def global_step(self):
    """The number of training steps taken (0 before the model is built)."""
    return 0 if self._global_step is None else int(self._global_step.numpy())

  def _build(self, for_training):
    """Creates the task's variables and global_step once, and the optimizer slots for training."""
    with self.strategy.scope():
      if self._global_step is None:
        self.task.build()
        self._variables = self.task.named_variables()
        self._global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name=GLOBAL_STEP)
      if for_training and not self._optimizer_built:
        self.optimizer.build(self._variables)
        if self.compute_dtype == tf.float16:
          self.loss_scale = DynamicLossScale()
        self._optimizer_built = True

  def _training_state(self):
    """Everything a checkpoint holds to resume exactly: weights, optimizer slots and global_step."""
    state = dict(self._variables)
    for name, variable in {**self.optimizer.named_slot_variables(), GLOBAL_STEP: self._global_step}.items():
      if name in state:
        raise ValueError(f"two variables are named {name!r}")
      state[name] = variable
    return state

  def initialize(self, init_checkpoint=None, num_of_group=0):
    """Resumes from the latest checkpoint in output_dir, else seeds from `init_checkpoint`, else keeps
    the fresh initialization. Returns a one-line description (also logged).
    """
    self._build(for_training=True)
    latest = checkpoints.latest_checkpoint(self.output_dir)
    if latest:
      checkpoints.restore_all(self._training_state(), latest)
      description = f"resumed from {latest} at step {self.global_step}"
      if init_checkpoint:
        description += f" (--init_checkpoint {init_checkpoint} ignored: it only seeds a fresh run)"
      self._last_saved_step = self.global_step
    elif init_checkpoint:
      prefix = checkpoints.resolve_checkpoint(init_checkpoint, "init_checkpoint")
      report = checkpoints.load_variables(self._variables, prefix, num_of_group=num_of_group)
      logging.info("%s", report.summary())
      description = (f"initialized {len(report.loaded)} of {len(self._variables)} variables from "
                     f"{prefix}; {len(report.missing)} left fresh")
    else:
      description = "fresh initialization (no checkpoint in --output_dir, no --init_checkpoint)"
    logging.info("%s", description)
    self._weights_ready = True
    return description

  def restore_for_inference(self, checkpoint=None, init_checkpoint=None):
    """Loads the model weights for evaluation or prediction and returns the checkpoint prefix used.

    An explicit `checkpoint` (e.g. `model.ckpt-best`) wins, then the latest checkpoint of output_dir,
    then `init_checkpoint` (by name; heads it lacks stay fresh).
    """
    self._build(for_training=False)
    if checkpoint:
      if not checkpoints.checkpoint_exists(checkpoint):
        raise UserError(f"checkpoint not found: {checkpoint} (no {checkpoint}.index)")
      self._load_trained(checkpoint)
      prefix = checkpoint
    elif prefix := checkpoints.latest_checkpoint(self.output_dir):
      self._load_trained(prefix)
    elif init_checkpoint:
      prefix = checkpoints.resolve_checkpoint(init_checkpoint, "init_checkpoint")
      report = checkpoints.load_variables(self._variables, prefix)
      logging.info("%s", report.summary())
    else:
      raise UserError(f"no checkpoint in --output_dir ({self.output_dir}) and no --init_checkpoint")
    logging.info("restored %s for inference (global step %d)", prefix, self.global_step)
    self._weights_ready = True
    return prefix

  def _load_trained(self, prefix):
    """Loads a checkpoint this task trained: every model variable must be in it."""
    report = checkpoints.load_variables(self._variables, prefix)
    if report.missing:
      shown = ", ".join(report.missing[:5]) + (", ..." if len(report.missing) > 5 else "")
      raise UserError(f"checkpoint {prefix} lacks {len(report.missing)} variables of this model "
                      f"({shown}); was it trained for another task or config?")
    step = checkpoints.checkpoint_step(prefix)
    self._global_step.assign(step or 0)

  def _ensure_weights(self):
    if not self._weights_ready:
      self.restore_for_inference()

  def _save(self):
    """Writes a checkpoint of the current step (chief only; other workers never write)."""
    step = self.global_step
    if step == self._last_saved_step:
      return
    self._last_saved_step = step
    if self.is_chief:
      prefix = self.checkpoint_manager.save(step, self._training_state())
      logging.info("saved %s", prefix)

  # ---- training ----

  def train(self, dataset_fn, global_batch_size):
    """Trains until num_train_steps, checkpointing every save_checkpoints_steps and at the end.

    `dataset_fn(input_context)` returns this input pipeline's dataset of per-replica batches
    (`input_context.get_per_replica_batch_size(global_batch_size)`). A first SIGINT/SIGTERM stops
    after the running loop of steps, saves a checkpoint of that step, then takes its usual effect.
    Returns the final global step.
    """
    if not self._weights_ready or not self._optimizer_built:
      self.initialize()
    if self.global_step >= self.num_train_steps:
      logging.info("global step %d has reached num_train_steps=%d: nothing to train", self.global_step,
                   self.num_train_steps)
      return self.global_step
    replicas = self.strategy.num_replicas_in_sync
    if global_batch_size % replicas:
      raise UserError(f"--train_batch_size={global_batch_size} is not divisible by the {replicas} "
                      "replicas")
    iterator = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
    writer = tf.summary.create_file_writer(self.output_dir) if self.is_chief else None
    stop = _StopRequest()
    try:
      with stop:
        self._host_loops(iterator, _Progress(self.num_train_steps, global_batch_size), writer, stop)
    finally:
      if writer is not None:
        writer.close()
    # The chief has written the final checkpoint; other workers that go on to evaluate or predict
    # from --output_dir must not look for it before it exists.
    distribute.barrier(self.strategy)
    if stop.signum is not None:
      stop.deliver()
    return self.global_step

  def _host_loops(self, iterator, progress, writer, stop):
    """Runs tf.function loops of steps, each ending at a checkpoint, log or final step at the latest."""
    while self.global_step < self.num_train_steps and stop.signum is None:
      count = self._loop_length(self.global_step)
      try:
        outputs = self._train_loop(iterator, tf.constant(count, tf.int32))
      except tf.errors.OutOfRangeError:
        logging.warning("the training input ended at step %d, before num_train_steps=%d",
                        self.global_step, self.num_train_steps)
        break
      steps, loss_sum, norm_sum, applied, last_loss = (x.numpy() for x in outputs)
      step = self.global_step
      if not np.isfinite(last_loss):
        raise NonFiniteLossError(
            f"training loss is {last_loss} at step {step}; stopped without saving it (last checkpoint: "
            f"{self.checkpoint_manager.latest() or 'none'}); lower --learning_rate or check the input data")
      progress.add(int(steps), float(loss_sum), float(norm_sum), int(applied))
      if step % self.log_every_n_steps == 0:
        self._report(progress, step, writer)
      if step % self.save_checkpoints_steps == 0:
        self._save()
    # The last step, a stop request or the end of the input.
    if progress.steps:
      self._report(progress, self.global_step, writer)
    self._save()

  def _loop_length(self, step):
    """Steps in the next tf.function call: never past a checkpoint, a log line or the last step."""
    to_next = lambda every: every - step % every
    return min(self.iterations_per_loop, self.num_train_steps - step,
               to_next(self.save_checkpoints_steps), to_next(self.log_every_n_steps))

  def _report(self, progress, step, writer):
    learning_rate = float(self.learning_rate_schedule(max(step - 1, 0)))
    loss_scale = None if self.loss_scale is None else float(self.loss_scale.scale.numpy())
    line, scalars = progress.report(step, learning_rate, loss_scale)
    logging.info("%s", line)
    if writer is not None:
      with writer.as_default(step=step):
        for tag, value in scalars.items():
          tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)
      writer.flush()

  def _run_steps(self, iterator, count):
    """Up to `count` steps in one graph; stops early after a step with a non-finite loss."""

    def body(done, loss_sum, norm_sum, applied, last_loss):
      loss, norm, was_applied = self._distributed_step(next(iterator))
      return done + 1, loss_sum + loss, norm_sum + norm, applied + was_applied, loss

    def keep_going(done, loss_sum, norm_sum, applied, last_loss):
      return tf.logical_and(done < count, tf.math.is_finite(last_loss))

    zero = tf.constant(0.0)
    start = (tf.constant(0), zero, zero, tf.constant(0), zero)
    return tf.while_loop(keep_going, body, start, parallel_iterations=1)

  def _distributed_step(self, features):
    """One step on every replica: returns (mean loss, gradient norm, 1 if the update was applied)."""
    if self.loss_scale is None:
      loss, norm = self.strategy.run(self._replica_step, args=(features,))
      applied = tf.constant(1)
    else:
      loss, norm, applied = self._loss_scaled_step(features)
    loss, norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None), self._first(norm)
    # After the step's results: an input that ends at this step must not count it.
    with tf.control_dependencies([loss, norm]):
      self._global_step.assign_add(1)
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

  def _replica_gradients(self, features):
    """This replica's loss and the gradients summed over replicas, keyed by variable index.

    The loss is divided by the replica count before differentiation, so the sum is the mean gradient
    of the global batch. Variables without a gradient (e.g. an unused pooler) are left out.
    """
    scale = 1.0 / self.strategy.num_replicas_in_sync
    if self.loss_scale is not None:
      scale *= self.loss_scale.scale
    loss, grads = self._gradients(features, scale)
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return loss, grads

  def _local_gradients(self, features, scale):
    """Forward and backward pass on this replica's batch (the part `jit_compile` hands to XLA).

    IndexedSlices (from embedding lookups) are made dense for the all-reduce and the optimizer.
    """
    variables = list(self._variables.values())
    with tf.GradientTape() as tape:
      loss = tf.cast(self.task.compute_loss(features, training=True), tf.float32)
      scaled_loss = loss * scale
    grads = tape.gradient(scaled_loss, variables)
    return loss, {index: tf.convert_to_tensor(grad) for index, grad in enumerate(grads) if grad is not None}

  def _apply(self, grads_by_index):
    """Clips the summed gradients by global norm and applies them; returns the norm before clipping."""
    variables = list(self._variables.values())
    indices = sorted(grads_by_index)
    grads = [grads_by_index[index] for index in indices]
    if self.clip_norm:
      grads, norm = optimization.clip_by_global_norm(grads, self.clip_norm)
    else:
      norm = tf.linalg.global_norm(grads)
    self.optimizer.apply_gradients(zip(grads, [variables[index] for index in indices]),
                                   self._global_step.read_value())
    return norm

  # ---- evaluation and prediction ----

  def evaluate(self, dataset_fn, steps=None):
    """Runs the task's `eval_step` over the data (at most `steps` batches) and returns its metrics.

    `(sum, weight)` metrics become sum / weight over all batches, plain sums stay totals; the result
    also holds `global_step`. Uses the current weights, else `restore_for_inference()`.
    """
    self._ensure_weights()
    dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
    totals = None
    for features in itertools.islice(dataset, steps):
      sums = tf.nest.map_structure(lambda t: np.asarray(t.numpy(), np.float64), self._eval_fn(features))
      totals = sums if totals is None else tf.nest.map_structure(np.add, totals, sums)
    if totals is None:
      raise UserError("the evaluation input is empty")
    results = {name: _metric_value(value) for name, value in totals.items()}
    results[GLOBAL_STEP] = self.global_step
    return results

  def _distributed_eval(self, features):
    outputs = self.strategy.run(self.task.eval_step, args=(features,))
    return tf.nest.map_structure(
        lambda value: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None), outputs)

  def predict(self, dataset, global_batch_size):
    """Yields one dict of numpy values per example, in input order.

    `dataset` is a batched `tf.data.Dataset` (any batch size) or a `dataset_fn(input_context)`
    returning one (called with a one-pipeline, one-replica context: every worker reads everything).
    It is re-batched to `global_batch_size` (rounded up to a multiple of the replica count); the
    last, partial batch is padded by repeating its final example and the padding is dropped. Uses the
    current weights, else `restore_for_inference()`.
    """
    self._ensure_weights()
    if callable(dataset):
      dataset = dataset(tf.distribute.InputContext())
    replicas = self.strategy.num_replicas_in_sync
    batch_size = -(-global_batch_size // replicas) * replicas
    return self._predictions(dataset.unbatch().batch(batch_size), batch_size)

  def _predictions(self, batches, batch_size):
    done, started, last_log = 0, time.time(), time.time()
    for batch in batches:
      size = int(tf.nest.flatten(batch)[0].shape[0])
      outputs = self._predict_fn(self._split_across_replicas(_pad_rows(batch, batch_size), batch_size))
      outputs = {name: value.numpy()[:size] for name, value in outputs.items()}
      for row in range(size):
        yield {name: value[row] for name, value in outputs.items()}
      done += size
      if time.time() - last_log >= PREDICT_LOG_SECONDS:
        last_log = time.time()
        logging.info("predicted %d examples (%.1f examples/s)", done, done / (last_log - started))
    logging.info("predicted %d examples in %.1f s", done, time.time() - started)

  def _split_across_replicas(self, batch, batch_size):
    """Gives replica r rows [r * n, (r + 1) * n) of the padded global batch."""
    rows = batch_size // self.strategy.num_replicas_in_sync

    def replica_rows(context):
      start = context.replica_id_in_sync_group * rows
      return tf.nest.map_structure(lambda t: t[start:start + rows], batch)

    return self.strategy.experimental_distribute_values_from_function(replica_rows)

  def _distributed_predict(self, features):
    outputs = self.strategy.run(self.task.predict_step, args=(features,))
    return {name: self.strategy.gather(value, axis=0) for name, value in outputs.items()}


def _pad_rows(batch, size):
  """Pads every tensor of a batch to `size` rows by repeating its last row."""
  def pad(tensor):
    missing = size - tensor.shape[0]
    return tf.concat([tensor, tf.repeat(tensor[-1:], missing, axis=0)], axis=0) if missing else tensor
  return tf.nest.map_structure(pad, batch)


def _metric_value(total):
  """sum / weight for a (sum, weight) pair (NaN without weight); a plain sum as a number or array."""
  if isinstance(total, tuple):
    value_sum, weight = total
    return float(value_sum / weight) if weight else float("nan")
  return float(total) if np.ndim(total) == 0 else total


class _Progress:
  """Totals since the last progress line; turns them into the line and the summary scalars."""

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

  def report(self, step, learning_rate, loss_scale=None):
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
    eta = datetime.timedelta(seconds=round((self.total_steps - step) / max(steps_per_second, 1e-9)))
    line = (f"step {step}/{self.total_steps} loss {loss:.4f} lr {learning_rate:.2e} "
            f"{scalars['examples/sec']:.1f} examples/s ETA {eta}")
    if loss_scale is not None:
      scalars["loss_scale"] = loss_scale
      skipped = self.steps - self.applied
      line += f" loss scale {loss_scale:g}"
      if skipped:
        line += f" ({skipped} skipped step(s): non-finite gradients)"
    self._reset(now)
    return line, scalars


class _StopRequest:
  """Turns the first SIGINT/SIGTERM during training into a request to stop after the running loop.

  A tf.function loop does not return to Python until it ends, so that is when the request is seen. A
  second signal is handled as if training were not running (Ctrl-C twice aborts at once).
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
    return self

  def __exit__(self, *exc_info):
    self._restore()

  def _restore(self):
    for signum, handler in self._previous.items():
      if handler is not None:
        signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      self._restore()
      signal.raise_signal(signum)
      return
    self.signum = signum
    logging.warning("received %s: stopping after the running loop of steps to save a checkpoint",
                    signal.Signals(signum).name)

  def deliver(self):
    """Lets the signal take its usual effect (KeyboardInterrupt, termination) now that it is safe."""
    signal.raise_signal(self.signum)
