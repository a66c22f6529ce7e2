"""Forward-pass throughput of AlbertModel on this machine: eager vs tf.function vs XLA.

  python -m benchmarks.model_throughput                       # albert-base, batch 8, seq 384
  python -m benchmarks.model_throughput --config=base --batch_size=1 --seq_length=32 --repeats=2

Each mode runs `--warmup` untimed passes (tracing/compilation happens there), then `--repeats` timed
ones; the figure is the median. Results go to `--output` as JSON, with the machine and its load.
"""

import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from albert.cli.definer import attach_subset, definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from albert.core.precision import PRECISIONS  # noqa: E402
from albert.model.config import PRESET_NAMES, AlbertConfig, preset  # noqa: E402
from benchmarks import harness  # noqa: E402

MODES = ("eager", "function", "xla")

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_string, "config", "base", f"A preset ({', '.join(PRESET_NAMES)}) or an albert_config.json path.")
_define(flags.DEFINE_integer, "batch_size", 8, "Examples per forward pass.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "seq_length", 384, "Tokens per example.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "warmup", 1, "Untimed passes per mode before timing.", bound=bounds.NON_NEGATIVE)
_define(flags.DEFINE_integer, "repeats", 5, "Timed passes per mode; the median is reported.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_list, "modes", list(MODES), "Modes to run, from: eager, function, xla.")
attach_subset(None, "modes", MODES)
_define(flags.DEFINE_enum, "compute_dtype", "float32", list(PRECISIONS), "Activation dtype.")
_define(flags.DEFINE_string, "output", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                    "model_throughput.json"), "Where to write the JSON results.")
_define(flags.DEFINE_string, "note", "The machine's 2 cores were shared with other jobs while this ran; figures are "
        "noisy lower bounds.", "Free text stored with the results.")


def load_config(spec):
  if spec in PRESET_NAMES:
    return preset(spec)
  return AlbertConfig.from_json_file(spec)


def time_mode(model, mode, input_ids, input_mask):
  """Runs warmup + timed passes of one mode; returns wall and CPU seconds of each timed pass."""
  import tensorflow as tf

  def forward(ids, mask):
    outputs = model(ids, mask)
    return outputs.sequence_output, outputs.pooled_output

  run = {"eager": forward, "function": tf.function(forward),
         "xla": tf.function(forward, jit_compile=True)}[mode]
  warmup_start = time.perf_counter()
  for _ in range(FLAGS.warmup):
    [t.numpy() for t in run(input_ids, input_mask)]
  warmup_seconds = time.perf_counter() - warmup_start
  wall, cpu = [], []
  for _ in range(FLAGS.repeats):
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    [t.numpy() for t in run(input_ids, input_mask)]
    wall.append(time.perf_counter() - wall_start)
    cpu.append(time.process_time() - cpu_start)
  return warmup_seconds, wall, cpu


def main(argv):
  del argv
  import tensorflow as tf

  from albert import modeling

  config = load_config(FLAGS.config)
  bounds.require(FLAGS.seq_length <= config.max_position_embeddings, "seq_length", FLAGS.seq_length,
                 f"<= max_position_embeddings={config.max_position_embeddings} of --config")
  model = modeling.AlbertModel(config, compute_dtype=FLAGS.compute_dtype)
  rng = np.random.default_rng(0)
  input_ids = tf.constant(rng.integers(0, config.vocab_size, (FLAGS.batch_size, FLAGS.seq_length)), tf.int32)
  input_mask = tf.ones_like(input_ids)
  flops = harness.forward_flops(config, FLAGS.batch_size, FLAGS.seq_length)

  results = {}
  for mode in FLAGS.modes:
    warmup_seconds, wall, cpu = time_mode(model, mode, input_ids, input_mask)
    median = statistics.median(wall)
    results[mode] = {
        "examples_per_sec": FLAGS.batch_size / median,
        "best_examples_per_sec": FLAGS.batch_size / min(wall),
        "median_seconds": median,
        "seconds": wall,
        "cpu_seconds": cpu,
        "warmup_seconds": warmup_seconds,
        "gflop_per_sec": flops / median / 1e9,
    }
    print(f"{mode:>8}: {results[mode]['examples_per_sec']:.3f} examples/s "
          f"(median {median:.3f}s, best {min(wall):.3f}s, {results[mode]['gflop_per_sec']:.1f} GFLOP/s)", flush=True)

  report = {
      "benchmark": "AlbertModel forward pass",
      "config": FLAGS.config,
      "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
      "batch_size": FLAGS.batch_size, "seq_length": FLAGS.seq_length, "compute_dtype": FLAGS.compute_dtype,
      "warmup": FLAGS.warmup, "repeats": FLAGS.repeats,
      "gflop_per_forward": flops / 1e9,
      "machine": {**harness.machine(), "tensorflow": tf.__version__,
                  "TF_ENABLE_ONEDNN_OPTS": harness.onednn_setting(), "load_average_after": harness.load_average()},
      "note": FLAGS.note,
      "modes": results,
  }
  fileio.write_json(FLAGS.output, report)
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  run_main(main)
