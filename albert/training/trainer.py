"""The one training, evaluation and prediction loop every runner uses.

It keeps the Estimator's semantics without the Estimator (gone from TF 2.16+): `output_dir` holds the
run; a run with checkpoints there resumes from the latest one (weights, optimizer slots, global_step);
`init_checkpoint` only seeds a fresh run; `save_checkpoints_steps`, `keep_checkpoint_max` and
`iterations_per_loop` mean what they meant. Steps run in a `tf.function` under any tf.distribute
strategy, and checkpoints use the original variable names.

Like the Estimator, a resumed run restarts its input pipeline: the data position is not checkpointed.
"""

import itertools

import numpy as np
import tensorflow as tf
from absl import logging

from albert.core import bounds
from albert.core.errors import UserError, abbreviate
from albert.core.precision import compute_dtype
from albert.core.progress import ProgressLog
from albert.core.signals import StopRequest
from albert.io import checkpoint as checkpoints
from albert.training import distribute, memory, optimization
from albert.training.loss_scale import DynamicLossScale
from albert.training.step import TrainStep
from albert.training.summaries import TrainingProgress

PREDICT_LOG_SECONDS = 30.0


def num_train_steps_from_epochs(num_examples, batch_size, epochs):
  """int(#examples / batch size * epochs), the original SQuAD scripts' step count."""
  return int(num_examples / batch_size * epochs)


def num_warmup_steps(num_train_steps, warmup_proportion):
  """int(num_train_steps * warmup_proportion), as the original SQuAD scripts compute warmup."""
  return int(num_train_steps * warmup_proportion)


class NonFiniteLossError(UserError):
  """The training loss became NaN or infinite; training stopped without checkpointing that state."""


def check_batch_split(global_batch_size, accumulation_steps, replicas):
  """The global batch must split into `accumulation_steps` micro-batches and each into `replicas` parts."""
  if global_batch_size % (accumulation_steps * replicas):
    parts = [f"--gradient_accumulation_steps={accumulation_steps}"] if accumulation_steps > 1 else []
    parts += [f"the {replicas} replicas"] if replicas > 1 else []
    raise UserError(f"--train_batch_size={global_batch_size} is not divisible by {' x '.join(parts)} "
                    f"(needs a multiple of {accumulation_steps * replicas})")
  return global_batch_size // accumulation_steps


class Trainer:
  """Trains, evaluates and predicts with a `Task` under a tf.distribute strategy (see module doc).

  The arguments mirror the runners' flags: the optimizer and its schedule (`create_optimizer`),
  checkpoint cadence and count (`keep_checkpoint_max` 0 or None keeps all), steps per tf.function
  call, progress/summary cadence, compute precision, XLA, the global-norm clip (None: off), gradient
  accumulation (the training input then yields micro-batches of `global batch / N`; steps, schedule,
  clipping, summaries and checkpoints count optimizer steps) and recomputation of the encoder's blocks
  in the backward pass.
  """

  def __init__(self, task, strategy, output_dir, *, learning_rate, num_train_steps, num_warmup_steps,
               optimizer="adamw", poly_power=1.0, start_warmup_step=0, save_checkpoints_steps=1000,
               keep_checkpoint_max=5, iterations_per_loop=1000, log_every_n_steps=100,
               precision="float32", jit_compile=False, clip_norm=1.0, gradient_accumulation_steps=1,
               recompute_grad=False):
    for name, value in (("save_checkpoints_steps", save_checkpoints_steps),
                        ("gradient_accumulation_steps", gradient_accumulation_steps),
                        ("iterations_per_loop", iterations_per_loop), ("log_every_n_steps", log_every_n_steps)):
      bounds.check(name, value, bounds.AT_LEAST_ONE)
    bounds.check("keep_checkpoint_max", keep_checkpoint_max, bounds.NON_NEGATIVE)
    if not output_dir:
      raise UserError("--output_dir is required")
    self.task = task
    self.strategy = strategy
    self.output_dir = output_dir
    self.num_train_steps = int(num_train_steps)
    self.save_checkpoints_steps = save_checkpoints_steps
    self.iterations_per_loop = iterations_per_loop
    self.log_every_n_steps = log_every_n_steps
    self.compute_dtype = compute_dtype(precision)
    self.jit_compile = jit_compile
    self.clip_norm = clip_norm
    self.gradient_accumulation_steps = gradient_accumulation_steps
    self.recompute_grad = recompute_grad
    self.optimizer, self.learning_rate_schedule = optimization.create_optimizer(
        learning_rate, num_train_steps, num_warmup_steps, optimizer=optimizer, poly_power=poly_power,
        start_warmup_step=start_warmup_step)
    self.is_chief = distribute.is_chief(strategy)
    self.loss_scale = None
    self.checkpoint_manager = checkpoints.CheckpointManager(output_dir, max_to_keep=keep_checkpoint_max)
    self._global_step = None
    self._variables = None
    self._step = None
    self._weights_ready = False
    self._last_saved_step = None
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
        if self.recompute_grad:
          self.task.enable_recompute_grad()
        self._variables = self.task.named_variables()
        self._global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name=checkpoints.GLOBAL_STEP)
      if for_training and self._step is None:
        self.optimizer.build(self._variables)
        if self.compute_dtype == tf.float16:
          self.loss_scale = DynamicLossScale()
        self._step = TrainStep(self.task, self.strategy, self.optimizer, self._variables, self._global_step,
                               self.clip_norm, self.jit_compile, self.loss_scale, self.gradient_accumulation_steps)

  def _training_state(self):
    """Everything a checkpoint holds to resume exactly: weights, optimizer slots and global_step."""
    state = dict(self._variables)
    for name, variable in {**self.optimizer.named_slot_variables(), checkpoints.GLOBAL_STEP: self._global_step}.items():
      if name in state:
        raise ValueError(f"two variables are named {name!r}")
      state[name] = variable
    return state

  def initialize(self, init_checkpoint=None, num_of_group=0):
    """Resumes from the latest checkpoint in output_dir, else seeds from `init_checkpoint`, else keeps
    the fresh initialization. Returns a one-line description (also logged).
    """
    self._build(for_training=True)
    if self.is_chief:
      leftovers = self.checkpoint_manager.remove_leftovers()
      if leftovers:
        logging.info("removed %d file(s) of a checkpoint save that did not finish: %s", len(leftovers),
                     abbreviate(leftovers))
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
      raise UserError(f"checkpoint {prefix} lacks {len(report.missing)} variables of this model "
                      f"({abbreviate(report.missing)}); was it trained for another task or config?")
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
    if not self._weights_ready or self._step is None:
      self.initialize()
    if self.global_step >= self.num_train_steps:
      logging.info("global step %d has reached num_train_steps=%d: nothing to train", self.global_step,
                   self.num_train_steps)
      return self.global_step
    check_batch_split(global_batch_size, self.gradient_accumulation_steps, self.strategy.num_replicas_in_sync)
    specs = []  # the element spec of the pipeline as distribution builds it, for the memory estimate

    def recording_dataset_fn(input_context):
      dataset = dataset_fn(input_context)
      specs.append(dataset.element_spec)
      return dataset
    iterator = iter(self.strategy.distribute_datasets_from_function(recording_dataset_fn))
    self._log_memory_estimate(specs[0] if specs else None, global_batch_size)
    writer = tf.summary.create_file_writer(self.output_dir) if self.is_chief else None
    stop = StopRequest()
    try:
      with stop:
        self._host_loops(iterator, TrainingProgress(self.num_train_steps, global_batch_size), writer, stop)
    finally:
      if writer is not None:
        writer.close()
    # The chief has written the final checkpoint; other workers that go on to evaluate or predict
    # from --output_dir must not look for it before it exists.
    distribute.barrier(self.strategy)
    stop.deliver()
    return self.global_step

  def _log_memory_estimate(self, spec, global_batch_size):
    """Logs what a step will need in memory (albert/training/memory.py), when the model's config and the
    input's sequence length (from the batches' element `spec`) are known."""
    config = getattr(self.task, "config", None)
    ids = spec.get("input_ids") if isinstance(spec, dict) else None
    seq_length = ids.shape[-1] if ids is not None and ids.shape.rank else None
    if config is None or not seq_length:
      return
    micro_batch = global_batch_size // (self.gradient_accumulation_steps * self.strategy.num_replicas_in_sync)
    logging.info("%s", memory.describe(config, seq_length, micro_batch, self.gradient_accumulation_steps,
                                       self.recompute_grad))

  def _host_loops(self, iterator, progress, writer, stop):
    """Runs tf.function loops of steps, each ending at a checkpoint, log or final step at the latest."""
    while self.global_step < self.num_train_steps and not stop.requested:
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
    progress.report(step, learning_rate, writer, loss_scale)

  def _run_steps(self, iterator, count):
    """Up to `count` steps in one graph; stops early after a step with a non-finite loss."""

    def body(done, loss_sum, norm_sum, applied, last_loss):
      loss, norm, was_applied = self._step(iterator)
      return done + 1, loss_sum + loss, norm_sum + norm, applied + was_applied, loss

    def keep_going(done, loss_sum, norm_sum, applied, last_loss):
      return tf.logical_and(done < count, tf.math.is_finite(last_loss))

    zero = tf.constant(0.0)
    start = (tf.constant(0), zero, zero, tf.constant(0), zero)
    return tf.while_loop(keep_going, body, start, parallel_iterations=1)

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
    results[checkpoints.GLOBAL_STEP] = self.global_step
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
    progress, done = ProgressLog("predicting", "examples", every_seconds=PREDICT_LOG_SECONDS), 0
    for batch in batches:
      size = int(tf.nest.flatten(batch)[0].shape[0])
      outputs = self._predict_fn(self._split_across_replicas(_pad_rows(batch, batch_size), batch_size))
      outputs = {name: value.numpy()[:size] for name, value in outputs.items()}
      for row in range(size):
        yield {name: value[row] for name, value in outputs.items()}
      done += size
      progress.update(done)
    progress.update(done, force=True)

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
