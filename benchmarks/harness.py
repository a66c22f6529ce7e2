"""What every benchmark shares: FLOP counts, random batches, round-robin timing, threads and the machine.

Every result file records the machine it was measured on (CPU model, the ISA extensions that decide
which precisions are fast, thread settings, oneDNN): figures compare only within one run.
"""

import os
import platform
import statistics
import time

import numpy as np

# The instruction-set extensions that decide which kernels and precisions are fast on a CPU.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
             "amx_tile")


def forward_flops(config, batch_size, seq_length):
  """2 x multiply-adds of the encoder's matmuls (elementwise ops are a few percent at these sizes)."""
  e, h, i = config.embedding_size, config.hidden_size, config.intermediate_size
  tokens = batch_size * seq_length
  embedding_projection = 2 * tokens * e * h if e != h else 0
  per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * batch_size * seq_length * seq_length * h
  layers = config.num_hidden_layers * config.inner_group_num
  return embedding_projection + layers * per_layer + 2 * batch_size * h * h


def random_batch(config, batch_size, seq_length, seed=0):
  """Token ids, a mask with some padding, two segments and answer positions (numpy int32)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, config.vocab_size, (batch_size, seq_length)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, seq_length - seq_length // 8:] = 0
  segments = np.zeros_like(ids)
  segments[:, seq_length // 4:] = 1
  positions = rng.integers(seq_length // 4, seq_length - seq_length // 8, (2, batch_size)).astype(np.int32)
  return {"input_ids": ids, "input_mask": mask, "segment_ids": segments,
          "start_positions": np.minimum(positions[0], positions[1]),
          "end_positions": np.maximum(positions[0], positions[1])}


def round_robin(contenders, warmup, repeats):
  """Times `{name: run()}`: warmup passes of each (at least one), then `repeats` rounds of one pass
  of each. Interleaving spreads the machine's load changes over all contenders. Returns per-name timings and
  the value of each contender's first run (for agreement checks).
  """
  first, timings = {}, {name: {"seconds": []} for name in contenders}
  for name, run in contenders.items():
    started = time.perf_counter()
    for _ in range(max(warmup, 1)):
      first.setdefault(name, run())
    timings[name]["warmup_seconds"] = round(time.perf_counter() - started, 3)
    print(f"  warmed up {name} ({timings[name]['warmup_seconds']:.1f}s)", flush=True)
  for round_index in range(repeats):
    for name, run in contenders.items():
      started, cpu_started = time.perf_counter(), time.process_time()
      run()
      timings[name]["seconds"].append(round(time.perf_counter() - started, 4))
      timings[name].setdefault("cpu_seconds", []).append(round(time.process_time() - cpu_started, 3))
    print(f"  round {round_index + 1}/{repeats}: " + ", ".join(
        f"{name} {timings[name]['seconds'][-1]:.2f}s" for name in contenders), flush=True)
  for timing in timings.values():
    timing["median_seconds"] = statistics.median(timing["seconds"])
  return timings, first


def with_rates(timings, examples, flops):
  for timing in timings.values():
    timing["examples_per_sec"] = round(examples / timing["median_seconds"], 4)
    timing["gflop_per_sec"] = round(flops / timing["median_seconds"] / 1e9, 2)
  return timings


def load_average():
  return [round(x, 2) for x in os.getloadavg()]


def configure_threads(threads):
  import tensorflow as tf

  from benchmarks import peers
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  return {"tensorflow": {"intra_op": threads, "inter_op": 1}, "torch": peers.configure_torch_threads(threads)}


def onednn_setting():
  """TF_ENABLE_ONEDNN_OPTS as this process's TensorFlow read it (`import albert` sets "1" on x86-64)."""
  return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")


def machine():
  """The CPU model, its relevant ISA extensions, the core count and the platform."""
  model, flags = platform.processor(), set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name") and model == platform.processor():
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return {"cpu_count": os.cpu_count(), "cpu_model": model, "isa": [name for name in ISA_FLAGS if name in flags],
          "platform": platform.platform(), "python": platform.python_version()}
