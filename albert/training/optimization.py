"""The original release's optimizers: AdamW and LAMB without bias correction, plus its lr schedule.

Keras optimizers do not fit: the original variants skip Adam's bias correction, decide weight decay by
the variable's checkpoint name, and store their slots as `<variable>/adam_m` and `<variable>/adam_v`,
which released checkpoints and resuming depend on. Neither optimizer increments the global step; the
trainer does that after `apply_gradients`, as the original `create_optimizer` did.
"""

import re

import tensorflow as tf

from albert.core import bounds
from albert.core.errors import UserError

OPTIMIZERS = ("adamw", "lamb")
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


class PolynomialWarmupSchedule:
  """Linear warmup, then polynomial decay from `init_lr` to 0 at `num_train_steps`.

  The decay is init_lr * (1 - min(step, num_train_steps) / num_train_steps) ** poly_power on the
  unshifted step. Warmup applies while s = step - start_warmup_step < num_warmup_steps and gives
  init_lr * s / num_warmup_steps.

  Deliberate difference from the original: before `start_warmup_step` (s < 0) the original yields a
  negative learning rate; here the rate is 0 there. With `num_train_steps=0` the decay counts as
  finished, so the rate after warmup is 0 instead of a division by zero.
  """

  def __init__(self, init_lr, num_train_steps, num_warmup_steps, poly_power=1.0,
               start_warmup_step=0):
    bounds.check("num_train_steps", num_train_steps, bounds.NON_NEGATIVE)
    bounds.check("num_warmup_steps", num_warmup_steps, bounds.NON_NEGATIVE)
    self.init_lr = float(init_lr)
    self.num_train_steps = int(num_train_steps)
    self.num_warmup_steps = int(num_warmup_steps)
    self.poly_power = float(poly_power)
    self.start_warmup_step = int(start_warmup_step)

  def __call__(self, step):
    """The float32 learning rate at `step` (python int or integer tensor)."""
    step = tf.cast(step, tf.int64)
    decayed = self._decayed(step)
    if self.num_warmup_steps == 0:
      return decayed
    warmup_step = step - self.start_warmup_step
    warmup_done = tf.cast(tf.maximum(warmup_step, 0), tf.float32) / float(self.num_warmup_steps)
    warmup_lr = tf.constant(self.init_lr, tf.float32) * warmup_done
    return tf.where(warmup_step < self.num_warmup_steps, warmup_lr, decayed)

  def _decayed(self, step):
    if self.num_train_steps == 0:
      return tf.constant(0.0, tf.float32)
    capped = tf.cast(tf.minimum(step, self.num_train_steps), tf.float32)
    remaining = 1.0 - capped / float(self.num_train_steps)
    return tf.constant(self.init_lr, tf.float32) * tf.pow(remaining, self.poly_power)


class _VariableIndex:
  """Maps model variables to their original names, and per-device components to slot components.

  A plain object rather than tracked attributes, so `tf.Module` does not list the model's variables
  among the optimizer's own.
  """

  def __init__(self):
    self._names = {}
    self._local_slots = {}

  def add(self, name, var, var_components, m_components, v_components):
    self._names[var.ref()] = name
    for component, m, v in zip(var_components, m_components, v_components):
      self._local_slots[component.ref()] = (m, v)

  def name_of(self, var):
    name = self._names.get(var.ref())
    if name is None:
      raise ValueError(f"variable {var.name} was not passed to the optimizer's build()")
    return name

  def local_slots(self, component, default):
    """The slots on the component's device; `default` when given the distributed variable itself."""
    return self._local_slots.get(component.ref(), default)


def _matches_any(name, patterns):
  return any(re.search(pattern, name) for pattern in patterns or ())


def _dense_float32(grad, var):
  """Densifies IndexedSlices: the original's update decays m and v of every row, touched or not."""
  if isinstance(grad, tf.IndexedSlices):
    grad = tf.math.unsorted_segment_sum(grad.values, grad.indices, var.shape[0])
  return tf.cast(grad, var.dtype)


def _check_build_context(var):
  if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
    raise ValueError("build() must be called under the strategy scope, not inside strategy.run")
  if isinstance(var, tf.distribute.DistributedValues) and not tf.distribute.has_strategy():
    raise ValueError("build() must be called under the scope of the strategy that created the "
                     "model variables, so the slots are mirrored like them")


class AdamWeightDecay(tf.Module):
  """The original AdamW: Adam without bias correction, plus decoupled weight decay.

  Per variable: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2, update = m / (sqrt(v) + eps),
  update += weight_decay_rate * w unless the original name matches `exclude_from_weight_decay`
  (regex search), then w -= lr * update.
  """

  def __init__(self, learning_rate, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
               exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
               name="AdamWeightDecayOptimizer"):
    super().__init__(name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = tuple(exclude_from_weight_decay or ())
    self._adam_m = {}
    self._adam_v = {}
    self._index = _VariableIndex()

  def build(self, named_variables):
    """Creates zero slots `<name>/adam_m` and `<name>/adam_v` per variable; idempotent.

    Call it under the strategy scope (cross-replica context) so the slots live where the variables do.
    """
    strategy = tf.distribute.get_strategy()
    for name, var in named_variables.items():
      _check_build_context(var)
      if name not in self._adam_m:
        with strategy.extended.colocate_vars_with(var):
          self._adam_m[name] = self._zeros_slot(f"{name}/adam_m", var)
          self._adam_v[name] = self._zeros_slot(f"{name}/adam_v", var)
      self._index.add(name, var, strategy.experimental_local_results(var),
                      strategy.experimental_local_results(self._adam_m[name]),
                      strategy.experimental_local_results(self._adam_v[name]))

  @staticmethod
  def _zeros_slot(name, var):
    return tf.Variable(tf.zeros(var.shape, tf.float32), name=name, trainable=False)

  def named_slot_variables(self):
    """Slot variables keyed by their checkpoint names (`<var>/adam_m`, `<var>/adam_v`)."""
    slots = {}
    for name in self._adam_m:
      slots[f"{name}/adam_m"] = self._adam_m[name]
      slots[f"{name}/adam_v"] = self._adam_v[name]
    return slots

  def apply_gradients(self, grads_and_vars, step, gradient_scale=None):
    """Updates variables and slots with already aggregated gradients.

    Call it in replica context (inside `strategy.run`) or without a strategy. `step` (the global step
    before this update) selects the scheduled learning rate. None gradients are skipped.
    `gradient_scale` (a scalar, e.g. `clip_scale`'s) multiplies each gradient inside its variable's
    update, which saves the scaled copy of every gradient that clipping first would hold. Variables are
    updated one after another, so only one variable's temporaries are alive at a time.
    """
    updates = []
    for grad, var in grads_and_vars:
      if grad is not None:
        updates.append((self._index.name_of(var), var, _dense_float32(grad, var)))
    if not updates:
      return
    learning_rate = self._learning_rate_at(step)
    grads = [grad for _, _, grad in updates]
    scale = None if gradient_scale is None else tf.cast(gradient_scale, tf.float32)

    def apply_all(strategy, grads, learning_rate, scale):
      done = []
      for (name, var, _), grad in zip(updates, grads):
        with tf.control_dependencies(done):
          result = strategy.extended.update(var, self._update_component, args=(grad, learning_rate, scale),
                                            kwargs={"name": name}, group=False)
        done = [op for op in tf.nest.flatten(result) if op is not None]

    strategy = tf.distribute.get_strategy()
    if tf.distribute.in_cross_replica_context():
      apply_all(strategy, grads, learning_rate, scale)
    else:
      # Usually a merge_call: `apply_all` runs once in cross-replica context and `extended.update`
      # updates every mirrored copy. Strategies that skip merge_call (XLA on GPUs) run it per
      # replica, and `extended.update` then updates this replica's copies.
      tf.__internal__.distribute.interim.maybe_merge_call(apply_all, strategy, grads, learning_rate, scale)

  def _learning_rate_at(self, step):
    if callable(self.learning_rate):
      return tf.cast(self.learning_rate(step), tf.float32)
    return tf.constant(self.learning_rate, tf.float32)

  def _update_component(self, var, grad, learning_rate, scale, name):
    """Applies one step to `var` (one device's copy) and the slot copies on the same device; returns the
    last assignment (the next variable's update waits for it). The slots are assigned before the update
    is formed from them, so their new values are not held twice."""
    m, v = self._index.local_slots(var, default=(self._adam_m[name], self._adam_v[name]))
    if scale is not None:
      grad = grad * scale
    m.assign(self.beta_1 * m + (1.0 - self.beta_1) * grad)
    v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad))
    update = m.read_value() / (tf.sqrt(v.read_value()) + self.epsilon)
    if self._uses_weight_decay(name):
      update += self.weight_decay_rate * var
    step_size = self._step_size(name, var, update, learning_rate)
    return var.assign_sub(step_size * update)

  def _uses_weight_decay(self, name):
    return bool(self.weight_decay_rate) and not _matches_any(name, self.exclude_from_weight_decay)

  def _step_size(self, name, var, update, learning_rate):
    del name, var, update  # AdamW scales every update by the learning rate alone.
    return learning_rate


class LAMB(AdamWeightDecay):
  """The original LAMB: the AdamW update scaled per variable by the trust ratio ||w|| / ||update||.

  The ratio is 1 when either norm is 0 and for variables whose original name matches
  `exclude_from_layer_adaptation` (default: the weight-decay exclusions). Slots are `adam_m`/`adam_v`.
  """

  def __init__(self, learning_rate, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
               exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
               exclude_from_layer_adaptation=None, name="LAMBOptimizer"):
    super().__init__(learning_rate, weight_decay_rate, beta_1, beta_2, epsilon,
                     exclude_from_weight_decay, name=name)
    if exclude_from_layer_adaptation is None:
      exclude_from_layer_adaptation = self.exclude_from_weight_decay
    self.exclude_from_layer_adaptation = tuple(exclude_from_layer_adaptation)

  def _step_size(self, name, var, update, learning_rate):
    if _matches_any(name, self.exclude_from_layer_adaptation):
      return learning_rate
    weight_norm = tf.norm(var)
    update_norm = tf.norm(update)
    both_positive = tf.logical_and(weight_norm > 0.0, update_norm > 0.0)
    safe_update_norm = tf.where(both_positive, update_norm, 1.0)
    trust_ratio = tf.where(both_positive, weight_norm / safe_update_norm, 1.0)
    return trust_ratio * learning_rate


def clip_scale(grads, clip_norm=1.0):
  """What clipping by global norm multiplies every gradient by, and the norm: (scale, global norm).

  scale = clip_norm / max(norm, clip_norm), NaN when the norm is not finite (as `tf.clip_by_global_norm`).
  IndexedSlices (embedding gradients, one row per token) are densified first, so repeated rows are
  summed before the norm is taken: the norm is that of the true gradient, as on TPU where the
  original used one-hot embeddings. (On CPU/GPU the original took the norm over the unsummed rows.)
  None entries are ignored.
  """
  dense = [tf.convert_to_tensor(grad) for grad in grads if grad is not None]
  if not dense:
    return tf.constant(1.0, tf.float32), tf.constant(0.0, tf.float32)
  norm = tf.linalg.global_norm(dense)
  scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm)
  return tf.where(tf.math.is_finite(norm), scale, float("nan")), norm


def clip_by_global_norm(grads, clip_norm=1.0):
  """Scales gradients so their joint L2 norm is at most `clip_norm` (`clip_scale`); None entries stay None.

  Returns (clipped gradients, global norm before clipping). The trainer passes `clip_scale`'s factor to
  the optimizer instead, which scales each gradient inside its update.
  """
  scale, norm = clip_scale(grads, clip_norm)
  return [None if grad is None else tf.convert_to_tensor(grad) * scale for grad in grads], norm


def create_optimizer(init_lr, num_train_steps, num_warmup_steps, optimizer="adamw", poly_power=1.0,
                     start_warmup_step=0, weight_decay_rate=0.01):
  """The optimizer named by `--optimizer` with the original schedule; returns (optimizer, schedule)."""
  if optimizer not in OPTIMIZERS:
    raise UserError(f"--optimizer: unsupported optimizer {optimizer!r}; expected one of "
                    f"{', '.join(OPTIMIZERS)}")
  schedule = PolynomialWarmupSchedule(init_lr, num_train_steps, num_warmup_steps,
                                      poly_power=poly_power, start_warmup_step=start_warmup_step)
  optimizer_class = AdamWeightDecay if optimizer == "adamw" else LAMB
  return optimizer_class(schedule, weight_decay_rate=weight_decay_rate), schedule
