"""The tf.distribute strategy a run uses, chosen from flags: one device, several GPUs, hosts or TPUs.

The same runner and flags work on a laptop, a GPU box, several hosts (`TF_CONFIG`) and Cloud TPUs; this
module is the only place that decides how.
"""

import json
import os

import tensorflow as tf
from absl import logging

from albert.core import bounds
from albert.core.errors import UserError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def get_strategy(distribution_strategy="auto", num_gpus=None, use_tpu=False, tpu_name=None,
                 tpu_zone=None, gcp_project=None, master=None, num_tpu_cores=8):
  """Builds the strategy named by `--distribution_strategy` ("auto" picks one from the machine).

  "auto" means: TPU if `use_tpu`; MultiWorkerMirrored when TF_CONFIG lists more than one worker;
  Mirrored when more than one GPU is used; otherwise the default strategy (one device).
  `num_gpus` limits the GPUs used (None: all visible ones).
  """
  name = (distribution_strategy or "auto").strip().lower()
  if name not in STRATEGIES:
    raise UserError(f"--distribution_strategy: unknown value {distribution_strategy!r}; expected one "
                    f"of {', '.join(STRATEGIES)}")
  if use_tpu and name not in ("auto", "tpu"):
    raise UserError(f"--use_tpu conflicts with --distribution_strategy={name}; use 'tpu' or 'auto'")
  gpus = _gpu_devices(num_gpus)
  if name == "auto":
    name = _automatic_choice(use_tpu, gpus)
  if name == "tpu":
    strategy = _tpu_strategy(tpu_name, tpu_zone, gcp_project, master, num_tpu_cores)
  elif name == "multi_worker_mirrored":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  elif name == "mirrored":
    strategy = tf.distribute.MirroredStrategy(devices=gpus or _cpu_devices())
  elif name == "one_device":
    strategy = tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
  else:
    strategy = tf.distribute.get_strategy()
  logging.info("distribution strategy: %s (%s) with %d replica(s)", name, type(strategy).__name__,
               strategy.num_replicas_in_sync)
  return strategy


def _automatic_choice(use_tpu, gpus):
  if use_tpu:
    return "tpu"
  if _tf_config_worker_count() > 1:
    return "multi_worker_mirrored"
  if len(gpus) > 1:
    return "mirrored"
  return "default"


def _tf_config_worker_count():
  """Number of chief + worker tasks in the TF_CONFIG cluster (0 without TF_CONFIG)."""
  raw = os.environ.get("TF_CONFIG", "")
  if not raw.strip():
    return 0
  try:
    cluster = json.loads(raw).get("cluster", {})
  except (json.JSONDecodeError, AttributeError):
    raise UserError("TF_CONFIG: not a JSON object with a 'cluster' entry") from None
  return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def _gpu_devices(num_gpus):
  """Device names of the GPUs to use: the first `num_gpus` visible ones, or all of them."""
  available = tf.config.list_physical_devices("GPU")
  if num_gpus is None:
    count = len(available)
  elif bounds.check("num_gpus", num_gpus, bounds.NON_NEGATIVE) > len(available):
    raise UserError(f"--num_gpus={num_gpus} but only {len(available)} GPU(s) are visible")
  else:
    count = num_gpus
  return [f"/gpu:{i}" for i in range(count)]


def _cpu_devices():
  """All logical CPU devices, so Mirrored runs without GPUs use the ones `configure_logical_cpus` made."""
  return [device.name for device in tf.config.list_logical_devices("CPU")]


def _tpu_strategy(tpu_name, tpu_zone, gcp_project, master, num_tpu_cores):
  """Connects to the TPU named by the flags and builds a TPUStrategy over `num_tpu_cores` cores."""
  target = tpu_name or master
  tried = f"TPUClusterResolver(tpu={target!r}, zone={tpu_zone!r}, project={gcp_project!r})"
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=target, zone=tpu_zone, project=gcp_project)
    if resolver.master():
      tf.config.experimental_connect_to_cluster(resolver)
    topology = tf.tpu.experimental.initialize_tpu_system(resolver)
  except Exception as e:  # Any failure here means the same to the user: there is no usable TPU.
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"--use_tpu: no TPU available (tried {tried}; set --tpu_name, --tpu_zone and "
                    f"--gcp_project, or --master): {type(e).__name__}: {reason}") from None
  total_cores = topology.num_tasks * topology.num_tpus_per_task
  if not 0 < num_tpu_cores <= total_cores:
    raise UserError(f"--num_tpu_cores={num_tpu_cores} but the TPU has {total_cores} cores")
  assignment = None
  if num_tpu_cores < total_cores:
    assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=num_tpu_cores)
  return tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)


def is_chief(strategy):
  """True on the worker that writes checkpoints and summaries (every single-host strategy)."""
  return bool(strategy.extended.should_checkpoint)


def is_multi_worker(strategy):
  """True when the strategy spans several processes (MultiWorkerMirrored with a TF_CONFIG cluster)."""
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and _tf_config_worker_count() > 1


def barrier(strategy):
  """Blocks every worker of a multi-worker strategy until all of them reach this call (an all-reduce of
  a constant); a no-op in one process. Used after the chief writes files the other workers read."""
  if not is_multi_worker(strategy):
    return
  ones = strategy.run(tf.function(lambda: tf.constant(1.0)))
  strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def configure_logical_cpus(count):
  """Splits the CPU into `count` logical devices (tests and benchmarks of multi-replica code).

  Must run before TensorFlow initializes its devices, i.e. before the first op or device query
  that creates them; TensorFlow allows this once per process.
  """
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError:
    if len(tf.config.list_logical_devices("CPU")) != count:
      raise RuntimeError(f"configure_logical_cpus({count}) must run before TensorFlow initializes "
                         "its devices") from None
  return tf.config.list_logical_devices("CPU")
