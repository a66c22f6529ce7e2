"""What every benchmark shares: FLOP counts, random batches, round-robin timing, threads and the machine.

Every result file records the machine it was measured on (CPU model and kind, the ISA extensions that
decide which precisions are fast, thread settings, oneDNN): figures compare only within one run.
"""

import multiprocessing
import os
import platform
import statistics
import time
import traceback
from typing import Callable, NamedTuple

import numpy as np

from albert.core import cpu


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


class Contender(NamedTuple):
  """One contender of a round-robin: its own process calls `factory(*args)`, which builds it and returns the
  no-argument callable that is timed. `frameworks` ("tensorflow", "torch") get the run's thread settings
  before the factory runs. Factory and args must pickle (module-level functions, plain data)."""
  factory: Callable
  args: tuple = ()
  frameworks: tuple = ("tensorflow",)


class _Stopped(Exception):
  """A contender that took longer than the time limit for one step, or failed; `record` goes in the results."""

  def __init__(self, record):
    super().__init__(record)
    self.record = record


def _serve(connection, contender, threads):
  """A contender's process: builds it, then answers "run"/"first" with (seconds, cpu seconds, value or None)."""
  try:
    if threads and contender.frameworks:
      configure_threads(threads, contender.frameworks)
    run = contender.factory(*contender.args)
    connection.send(("ok", None))
    while (command := connection.recv()) != "stop":
      started, cpu_started = time.perf_counter(), time.process_time()
      value = run()
      connection.send(("ok", (time.perf_counter() - started, time.process_time() - cpu_started,
                              value if command == "first" else None)))
  except EOFError:  # the parent is gone
    pass
  except Exception as e:  # the parent records it and goes on with the other contenders
    traceback.print_exc()
    connection.send(("failed", f"{type(e).__name__}: {e}"))


class _Worker:
  """The parent's end of one contender's process; `ask` waits at most `time_limit` seconds for an answer."""

  def __init__(self, contender, threads, time_limit):
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state forked from TF or torch
    self.connection, child_end = context.Pipe()
    self.process = context.Process(target=_serve, args=(child_end, contender, threads), daemon=True)
    self.process.start()
    child_end.close()
    self.time_limit, self.busy = time_limit, True  # building

  def ask(self, command, during):
    """Sends `command` (None: waits for the build) and returns the answer, or raises _Stopped."""
    if command is not None:
      self.connection.send(command)
      self.busy = True
    if not self.connection.poll(self.time_limit):
      raise _Stopped({"timed_out": self.time_limit, "during": during})
    try:
      status, answer = self.connection.recv()
    except EOFError:
      self.process.join(5)
      raise _Stopped({"failed": f"its process ended (exit code {self.process.exitcode})", "during": during}) from None
    self.busy = False
    if status == "failed":
      raise _Stopped({"failed": answer, "during": during})
    return answer

  def close(self):
    """Ends the process: told to stop when idle, killed (by its own handle) when still in a step."""
    if not self.busy and self.process.is_alive():
      try:
        self.connection.send("stop")
      except OSError:  # it has just ended by itself
        pass
      self.process.join(30)
    if self.process.is_alive():
      self.process.kill()
      self.process.join()
    self.connection.close()


def round_robin(contenders, warmup, repeats, time_limit=None, threads=None):
  """Times `{name: Contender}`, each in its own process: each is built and runs `warmup` untimed passes (at
  least one), then `repeats` rounds of one pass of each. Only one process works at a time, and interleaving
  spreads the machine's load changes over all contenders. A contender that takes longer than `time_limit`
  seconds (None: no limit) for one step, building or one pass, is killed and recorded as
  `{"timed_out": time_limit, "during": step}`, one that fails as `{"failed": message, "during": step}`; the
  others go on. Returns per-name timings and the value of each contender's first pass (agreement checks).
  """
  first, timings, workers = {}, {}, {}
  try:
    for name, contender in contenders.items():
      worker = workers[name] = _Worker(contender, threads, time_limit)
      try:
        started = time.perf_counter()
        worker.ask(None, "set-up")
        timing = {"setup_seconds": round(time.perf_counter() - started, 3)}
        started = time.perf_counter()
        first[name] = worker.ask("first", "warm-up")[2]
        for _ in range(max(warmup, 1) - 1):
          worker.ask("run", "warm-up")
        timing["warmup_seconds"] = round(time.perf_counter() - started, 3)
        timings[name] = timing
        print(f"  warmed up {name} (set-up {timing['setup_seconds']:.1f}s, warm-up {timing['warmup_seconds']:.1f}s)",
              flush=True)
      except _Stopped as stopped:
        _stop(name, stopped, timings, workers)
    for round_index in range(repeats):
      for name in list(workers):
        try:
          seconds, cpu_seconds, _ = workers[name].ask("run", f"round {round_index + 1}")
        except _Stopped as stopped:
          _stop(name, stopped, timings, workers)
          continue
        timings[name].setdefault("seconds", []).append(round(seconds, 4))
        timings[name].setdefault("cpu_seconds", []).append(round(cpu_seconds, 3))
      print(f"  round {round_index + 1}/{repeats}: " + ", ".join(
          f"{name} {timings[name]['seconds'][-1]:.2f}s" for name in workers), flush=True)
  finally:
    for worker in workers.values():
      worker.close()
  for timing in timings.values():
    if "seconds" in timing:
      timing["median_seconds"] = statistics.median(timing["seconds"])
  return {name: timings[name] for name in contenders}, first


def _stop(name, stopped, timings, workers):
  timings[name] = stopped.record
  workers.pop(name).close()
  print(f"  {name}: {', '.join(f'{key} {value}' for key, value in stopped.record.items())}; going on without it",
        flush=True)


def with_rates(timings, examples, flops):
  for timing in timings.values():
    if "median_seconds" not in timing:  # timed out, failed or not installed
      continue
    timing["examples_per_sec"] = round(examples / timing["median_seconds"], 4)
    timing["gflop_per_sec"] = round(flops / timing["median_seconds"] / 1e9, 2)
  return timings


def squad_subset(source, path, questions):
  """Writes the first `questions` questions of SQuAD file `source` to `path`; returns their count."""
  import json
  with open(source, encoding="utf-8") as f:
    data = json.load(f)
  articles, left = [], questions
  for article in data["data"]:
    paragraphs = []
    for paragraph in article["paragraphs"]:
      if left > 0:
        paragraphs.append(dict(paragraph, qas=paragraph["qas"][:left]))
        left -= len(paragraphs[-1]["qas"])
    if paragraphs:
      articles.append(dict(article, paragraphs=paragraphs))
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(data, data=articles), f)
  return questions - max(left, 0)


def load_average():
  return [round(x, 2) for x in os.getloadavg()]


def configure_threads(threads, frameworks=("tensorflow", "torch")):
  """`threads` intra-op threads and one inter-op thread for each of `frameworks` (imports them)."""
  configured = {}
  if "tensorflow" in frameworks:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    configured["tensorflow"] = {"intra_op": threads, "inter_op": 1}
  if "torch" in frameworks:
    from benchmarks import peers
    configured["torch"] = peers.configure_torch_threads(threads)
  return configured


def onednn_setting():
  """TF_ENABLE_ONEDNN_OPTS as this process's TensorFlow read it (`import albert` sets "1" on x86-64)."""
  return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")


def machine():
  """The CPU model and kind, its relevant ISA extensions (albert.core.cpu), the core count and the platform."""
  return {"cpu_count": os.cpu_count(), "cpu_model": cpu.model(), "cpu_kind": cpu.kind(), "isa": cpu.isa(),
          "platform": platform.platform(), "python": platform.python_version()}
