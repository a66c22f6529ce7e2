"""Peak memory and time of one SQuAD training step, per ALBERT size, batch and variant, against transformers.

  python benchmarks/memory.py                                   # base .. xxlarge at length 384
  python benchmarks/memory.py --sizes=base --batches=1,2 --quick_peers=false

Every measurement runs in a fresh process (so its peak resident memory, `ru_maxrss`, belongs to that
step alone): the model and AdamW are built, then `--steps` training steps run on a random batch (the
first one traces the graph). Variants of ours: `plain`, `recompute` (`--recompute_grad`) and
`accumulate` (`--gradient_accumulation_steps` = the batch, i.e. micro-batches of one example). The peers
are transformers' `AlbertForQuestionAnswering` with and without `gradient_checkpointing_enable()` (which
current transformers refuses for ALBERT, "does not support activation checkpointing": recorded as
unsupported, and our peaks are then compared with plain transformers).

Our contenders run with the CPU allocator our entry points choose (`albert/cli/startup.py`); set
`TF_CPU_ALLOCATOR_USE_BFC=false` to measure the C library's instead. Sizes measured by separate
invocations are merged into one JSON (each size keeps its own machine load and date).

Per size and contender the peaks at the measured batches are fitted as `peak = fixed + per_example x
batch`; `per_example` is the activation memory of one example, and the largest batch that fits the
budget (`--budget_gb`) follows from the fit (measured there too with `--measure_largest`). The JSON goes
to benchmarks/results/memory.json; docs/scaling.md's table is computed from it.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from albert.cli.definer import attach_subset, definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from benchmarks.harness import load_average, machine  # noqa: E402

SIZES = ("base", "large", "xlarge", "xxlarge")
OURS = ("plain", "recompute", "accumulate")
PEERS = ("transformers", "transformers_checkpointing")
GiB = 1024 ** 3

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_list, "sizes", list(SIZES), f"Model sizes (v2 presets), from: {', '.join(SIZES)}.")
attach_subset(None, "sizes", SIZES)
_define(flags.DEFINE_list, "contenders", list(OURS + PEERS), f"From: {', '.join(OURS + PEERS)}.")
attach_subset(None, "contenders", OURS + PEERS)
_define(flags.DEFINE_list, "batches", ["1", "2"], "The small batches measured for every contender (>= 2 of them "
        "give the fit).")
_define(flags.DEFINE_integer, "seq_length", 384, "Tokens per example.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "steps", 2, "Training steps per measurement (the first traces); the last is timed.",
        bound=bounds.at_least(2))
_define(flags.DEFINE_float, "budget_gb", 20.0, "Memory budget for the largest batch (GiB).", bound=bounds.POSITIVE)
_define(flags.DEFINE_bool, "measure_largest", False, "Also measure each contender at the largest batch the fit "
        "says fits the budget (slow for the large sizes).")
_define(flags.DEFINE_integer, "time_limit", 3600, "Seconds one measurement may take; a slower one is recorded "
        "as timed out.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "threads", 2, "Intra-op threads of TensorFlow and PyTorch.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_string, "output", os.path.join(REPO_ROOT, "benchmarks", "results", "memory.json"),
        "The JSON results file.")
_define(flags.DEFINE_bool, "write_doc", False, "Only rewrite docs/scaling.md's table of what fits from the results "
        "file (no measurement).")
_define(flags.DEFINE_integer, "interleaved_rounds", 0, "Only time plain against recompute: this many rounds, each "
        "one fresh process per contender in turn, at the first of --sizes and of --batches (the step-time goal's "
        "figure; run it on a quiet machine).", bound=bounds.NON_NEGATIVE)
_define(flags.DEFINE_string, "worker", None, "Internal: a JSON measurement spec to run in this process.")


# ---- one measurement, in its own process ----

def _peak_bytes():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _config(size, seq_length):
  from albert.model.config import preset
  return preset(size).copy(max_position_embeddings=max(512, seq_length))


def _our_step(spec):
  """One contender of ours: returns (built bytes, a function running one training step)."""
  import tensorflow as tf

  from albert.tasks.squad.task import SquadV1Task
  from albert.training import optimization
  from albert.training.step import TrainStep
  from benchmarks.harness import random_batch
  config = _config(spec["size"], spec["seq_length"])
  task = SquadV1Task(config)
  task.build()
  if spec["contender"] == "recompute":
    task.enable_recompute_grad()
  variables = task.named_variables()
  optimizer, _ = optimization.create_optimizer(1e-5, 1000, 0)
  optimizer.build(variables)
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
  accumulation = spec["batch"] if spec["contender"] == "accumulate" else 1
  step = TrainStep(task, tf.distribute.get_strategy(), optimizer, variables, global_step, clip_norm=1.0,
                   accumulation_steps=accumulation)
  batch = random_batch(config, spec["batch"], spec["seq_length"])
  batch = {name: batch[name] for name in ("input_ids", "input_mask", "segment_ids", "start_positions",
                                          "end_positions")}
  iterator = iter(tf.data.Dataset.from_tensor_slices(batch).batch(spec["batch"] // accumulation).repeat())
  run = tf.function(lambda: step(iterator))
  return lambda: float(run()[0])


def _peer_step(spec):
  """transformers' SQuAD step as the other benchmarks run it (`peers.TorchAlbert`), checkpointing optional."""
  from benchmarks import peers
  from benchmarks.harness import random_batch
  peers.configure_torch_threads(spec["threads"])
  config = _config(spec["size"], spec["seq_length"])
  peer = peers.TorchAlbert(config, training=True)
  if spec["contender"] == "transformers_checkpointing":
    peer.model.gradient_checkpointing_enable()
  batch = random_batch(config, spec["batch"], spec["seq_length"])
  return lambda: peer.train_step(batch)


def measure(spec):
  """Builds the contender, runs its steps; returns its figures (run in a fresh process)."""
  if spec["contender"] in PEERS:
    import torch  # noqa: F401  (the runtime's own footprint, before any model)
  else:
    from albert.cli import startup
    startup.use_pooled_cpu_allocator()  # as every entry point does before TensorFlow starts
    import tensorflow as tf  # threads set here, not via harness.configure_threads: that imports torch too
    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.constant(0)
  runtime = _peak_bytes()
  try:
    step = _peer_step(spec) if spec["contender"] in PEERS else _our_step(spec)
  except ValueError as error:  # transformers refuses gradient checkpointing for some models
    return {**spec, "unsupported": str(error).splitlines()[0]}
  built = _peak_bytes()
  seconds = []
  for _ in range(spec["steps"]):
    started = time.perf_counter()
    loss = step()
    seconds.append(time.perf_counter() - started)
  return {**spec, "peak_bytes": _peak_bytes(), "runtime_peak_bytes": runtime, "built_peak_bytes": built,
          "step_seconds": round(seconds[-1], 3), "timed_step_seconds": [round(t, 3) for t in seconds[1:]],
          "first_step_seconds": round(seconds[0], 3), "loss": loss}


def worker_spec(size, contender, batch):
  """What one measurement process is told: the size, contender and batch, with this run's settings."""
  return {"size": size, "contender": contender, "batch": batch, "seq_length": FLAGS.seq_length,
          "steps": FLAGS.steps, "threads": FLAGS.threads, "time_limit": FLAGS.time_limit}


def run_worker(spec):
  """`measure(spec)` in a fresh interpreter, within the time limit."""
  command = [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(spec)}"]
  started = time.perf_counter()
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=spec["time_limit"],
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT))
  except subprocess.TimeoutExpired:
    return {**spec, "timed_out": True}
  lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
  if result.returncode != 0 or not lines:
    tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {**spec, "failed": tail[:300], "returncode": result.returncode}
  figures = json.loads(lines[-1][len("RESULT "):])
  figures["wall_seconds"] = round(time.perf_counter() - started, 1)
  return figures


# ---- fits and the whole run ----

def fit(points):
  """Least squares `peak = fixed + per_example x batch` over [(batch, peak bytes)]."""
  n = len(points)
  mean_b = sum(b for b, _ in points) / n
  mean_p = sum(p for _, p in points) / n
  spread = sum((b - mean_b) ** 2 for b, _ in points)
  slope = sum((b - mean_b) * (p - mean_p) for b, p in points) / spread if spread else 0.0
  return {"fixed_bytes": round(mean_p - slope * mean_b), "per_example_bytes": round(slope)}


def largest_batch(model, budget_bytes):
  if model["per_example_bytes"] <= 0:
    return None
  return max(int((budget_bytes - model["fixed_bytes"]) // model["per_example_bytes"]), 0)


def main(argv):
  del argv
  if FLAGS.worker:
    print("RESULT " + json.dumps(measure(json.loads(FLAGS.worker))), flush=True)
    return
  if FLAGS.write_doc:
    with open(FLAGS.output, encoding="utf-8") as f:
      write_doc(json.load(f))
    return
  if FLAGS.interleaved_rounds:
    interleaved_step_times(FLAGS.sizes[0], int(FLAGS.batches[0]), FLAGS.interleaved_rounds)
    return
  batches = sorted({int(b) for b in FLAGS.batches})
  settings = _settings()
  report = None
  for size in FLAGS.sizes:
    entry = {"batches": batches, "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load_average()}
    for contender in FLAGS.contenders:
      runs = []
      for batch in batches:
        print(f"{size} {contender} batch {batch} ...", flush=True)
        runs.append(run_worker(worker_spec(size, contender, batch)))
        print("  " + json.dumps({k: runs[-1][k] for k in ("peak_bytes", "step_seconds", "timed_out", "failed",
                                                                 "unsupported") if k in runs[-1]}), flush=True)
        if "unsupported" in runs[-1]:
          break
      good = [(r["batch"], r["peak_bytes"]) for r in runs if "peak_bytes" in r]
      result = {"runs": runs}
      if len(good) >= 2:
        result["fit"] = fit(good)
        result["largest_batch_in_budget"] = largest_batch(result["fit"], FLAGS.budget_gb * GiB)
        if FLAGS.measure_largest and result["largest_batch_in_budget"]:
          result["largest_run"] = run_worker(worker_spec(size, contender, result["largest_batch_in_budget"]))
      entry[contender] = result
    entry["load_average_after"] = load_average()
    entry["estimate"] = estimate_check(size, entry)
    # Read again just before writing: sizes another invocation wrote meanwhile are kept.
    report = _earlier_report(settings) or {"machine": machine(), "settings": settings, "sizes": {}}
    earlier = report["sizes"].get(size, {})
    if earlier:  # contenders not measured this time keep their earlier runs, with their own date and load
      kept = {name: {"date": earlier.get("date"), "load_average_before": earlier.get("load_average_before"),
                     **earlier[name]} for name in OURS + PEERS if name in earlier and name not in FLAGS.contenders}
      entry = {**kept, **entry, "batches": sorted(set(batches) | set(earlier.get("batches", [])))}
    report["sizes"][size] = entry
    report["ratios"] = ratios(report)
    fileio.write_json(FLAGS.output, report, indent=2)  # after every size: a long run keeps what it has
  if report:
    print(json.dumps(report["ratios"], indent=2))


def interleaved_step_times(size, batch, rounds, contenders=("plain", "recompute")):
  """Step times of plain and recompute in alternating fresh processes (load drifts hit both alike); each
  process's steps after the first (which traces) are timed. Stored under the report's
  `step_time_interleaved` as `<size>_batch_<batch>`."""
  seconds = {contender: [] for contender in contenders}
  entry = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load_average(), "rounds": rounds,
           "steps_per_process": FLAGS.steps}
  for round_index in range(rounds):
    for contender in contenders:
      result = run_worker(worker_spec(size, contender, batch))
      if "timed_step_seconds" not in result:
        raise RuntimeError(f"{size} {contender} batch {batch}: {result}")
      seconds[contender] += result["timed_step_seconds"]
      print(f"round {round_index + 1} {contender}: {result['timed_step_seconds']}", flush=True)
  entry["load_average_after"] = load_average()
  entry.update({f"{contender}_seconds": times for contender, times in seconds.items()})
  medians = {contender: statistics.median(times) for contender, times in seconds.items()}
  entry["recompute_over_plain"] = round(medians["recompute"] / medians["plain"], 3)
  # Steps per process are this entry's own (recorded in it), not the peak measurements' setting.
  report = _earlier_report(_settings(), ignore=("steps",)) or {"machine": machine(), "settings": _settings(),
                                                               "sizes": {}}
  report.setdefault("step_time_interleaved", {})[f"{size}_batch_{batch}"] = entry
  fileio.write_json(FLAGS.output, report, indent=2)
  print(json.dumps({"recompute_over_plain": entry["recompute_over_plain"]}))


def _settings():
  return {"seq_length": FLAGS.seq_length, "steps": FLAGS.steps, "budget_gb": FLAGS.budget_gb,
          "threads": FLAGS.threads, "optimizer": "AdamW, clip 1.0", "task": "SQuAD v1 span head",
          "cpu_allocator": f"pooled (TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC', 'true')})"}


def _earlier_report(settings, ignore=()):
  """The results file of an earlier invocation on this machine with the same settings (but those named in
  `ignore`), to merge into."""
  try:
    with open(FLAGS.output, encoding="utf-8") as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    return None
  def kept(values):
    return {key: value for key, value in values.items() if key not in ignore}
  if kept(earlier.get("settings", {})) != kept(settings):
    return None
  if earlier.get("machine", {}).get("cpu_model") != machine()["cpu_model"]:
    return None
  return earlier


def estimate_check(size, entry):
  """The memory model the runners print (albert/training/memory.py) against this size's fitted peaks."""
  from albert.training import memory
  config = _config(size, FLAGS.seq_length)
  out = {}
  for contender, recompute in (("plain", False), ("recompute", True)):
    if "fit" in entry.get(contender, {}):
      model = memory.step_memory(config, FLAGS.seq_length, recompute)
      fitted = entry[contender]["fit"]
      out[contender] = {"fixed_bytes": round(model.fixed), "per_example_bytes": round(model.per_example),
                        "fixed_over_measured": round(model.fixed / fitted["fixed_bytes"], 3),
                        "per_example_over_measured": round(model.per_example / fitted["per_example_bytes"], 3)}
  return out


def ratios(report):
  """The issue's goals per size: activation memory plain / recompute (>= 3), our recompute peak / the
  checkpointing peer's peak at the same batch (<= 1), recompute step time / plain (<= 1.35)."""
  out = {}
  for size, entry in report["sizes"].items():
    figures = {}
    plain, recompute = entry.get("plain", {}), entry.get("recompute", {})
    if "fit" in plain and "fit" in recompute and recompute["fit"]["per_example_bytes"] > 0:
      if plain["fit"]["per_example_bytes"] > 0:
        figures["activation_memory_plain_over_recompute"] = round(
            plain["fit"]["per_example_bytes"] / recompute["fit"]["per_example_bytes"], 2)
      else:  # plain peaks that do not grow with the batch: no activation slope to compare
        figures["activation_memory_plain_over_recompute"] = None
    for plain_run, recompute_run in zip(plain.get("runs", []), recompute.get("runs", [])):
      if "peak_bytes" in plain_run and "peak_bytes" in recompute_run:
        figures[f"peak_plain_over_recompute_batch_{plain_run['batch']}"] = round(
            plain_run["peak_bytes"] / recompute_run["peak_bytes"], 3)
    for peer_name in PEERS:
      for ours_run, peer_run in zip(recompute.get("runs", []), entry.get(peer_name, {}).get("runs", [])):
        if "peak_bytes" in ours_run and "peak_bytes" in peer_run:
          figures[f"peak_recompute_over_{peer_name}_batch_{ours_run['batch']}"] = round(
              ours_run["peak_bytes"] / peer_run["peak_bytes"], 3)
    for plain_run, recompute_run in zip(plain.get("runs", []), recompute.get("runs", [])):
      if "step_seconds" in plain_run and "step_seconds" in recompute_run:
        figures[f"step_time_recompute_over_plain_batch_{plain_run['batch']}"] = round(
            recompute_run["step_seconds"] / plain_run["step_seconds"], 3)
    out[size] = figures
  return out


# ---- docs/scaling.md: what fits ----

DOC_FILE = os.path.join(REPO_ROOT, "docs", "scaling.md")
DOC_BEGIN, DOC_END = "<!-- fits table: python benchmarks/memory.py --write_doc -->", "<!-- end of fits table -->"
BUDGETS_GB = (16, 24, 40, 80)
DOC_LENGTHS = (384, 512)
EFFECTIVE_BATCH = 48  # the published SQuAD fine-tuning batch (docs/compatibility.md)


def step_models(report, size, seq_length):
  """(plain, recompute) StepMemory for a size and length, and whether they come from measurements.

  At the measured length the fitted peaks are used as they are; at another length the fitted
  per-example bytes are scaled by the model's ratio between the lengths (extrapolated).
  """
  from albert.training import memory
  measured = report["sizes"].get(size, {})
  config = _config(size, max(seq_length, report["settings"]["seq_length"]))
  models, from_measurements = [], True
  for contender, recompute in (("plain", False), ("recompute", True)):
    model = memory.step_memory(config, seq_length, recompute)
    fitted = measured.get(contender, {}).get("fit")
    at_length = memory.step_memory(config, report["settings"]["seq_length"], recompute).per_example
    if fitted is not None and fitted["per_example_bytes"] < at_length:
      # A slope from two small batches is noisy where the allocator's pool, not activations, decides the
      # peaks (xxlarge's plain peaks even fell with the batch; large's and xlarge's plain slopes came out
      # 0.6x and 0.5x the counted activations): keep the counted per-example bytes and the smallest fixed
      # part that covers every measured peak.
      points = [(run["batch"], run["peak_bytes"]) for run in measured[contender]["runs"] if "peak_bytes" in run]
      fitted = {"fixed_bytes": max(peak - at_length * batch for batch, peak in points),
                "per_example_bytes": at_length}
    if fitted is None:
      from_measurements = False
    else:
      scale = model.per_example / at_length
      model = memory.StepMemory(fitted["fixed_bytes"], fitted["per_example_bytes"] * scale)
    models.append(model)
  exact = from_measurements and seq_length == report["settings"]["seq_length"]
  return models, "measured" if exact else ("extrapolated" if from_measurements else "model only")


def fits_cell(plain, recompute, budget_bytes, effective_batch=EFFECTIVE_BATCH):
  """`micro-batch x accumulation` reaching the effective batch in the budget, plain if it fits."""
  for model, note in ((plain, ""), (recompute, ", recompute")):
    largest = model.largest_micro_batch(budget_bytes)
    if largest >= 1:
      steps = next(n for n in range(1, effective_batch + 1)
                   if effective_batch % n == 0 and effective_batch // n <= largest)
      return f"{effective_batch // steps} x {steps}{note}"
  return "does not fit"


def write_doc(report):
  """Rewrites the table between the markers of docs/scaling.md from the results."""
  lines = [DOC_BEGIN, "", f"Effective batch {EFFECTIVE_BATCH} (SQuAD), AdamW, float32. Cells: micro-batch x "
           "`--gradient_accumulation_steps`; `recompute` means `--recompute_grad` is needed. Source: `measured` (the "
           "size's fitted peaks), `extrapolated` (per-example part scaled to the length by the model), `model "
           "only` (no measurement of the size: albert/training/memory.py).", "",
           "| size | length | source | " + " | ".join(f"{b} GB" for b in BUDGETS_GB) + " |",
           "|---|---|---|" + "---|" * len(BUDGETS_GB)]
  for size in SIZES:
    for seq_length in DOC_LENGTHS:
      (plain, recompute), source = step_models(report, size, seq_length)
      cells = [fits_cell(plain, recompute, budget * GiB) for budget in BUDGETS_GB]
      lines.append(f"| {size} | {seq_length} | {source} | " + " | ".join(cells) + " |")
  lines += ["", DOC_END]
  with open(DOC_FILE, encoding="utf-8") as f:
    text = f.read()
  start, end = text.index(DOC_BEGIN), text.index(DOC_END) + len(DOC_END)
  with fileio.atomic_open(DOC_FILE, "w") as f:
    f.write(text[:start] + "\n".join(lines) + text[end:])


if __name__ == "__main__":
  run_main(main)
