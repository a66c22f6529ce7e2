"""Where a training step's or a forward pass's time goes, by TensorFlow op type (profile evidence).

Builds the same computation as `run_all.py`'s `train` section (albert-base encoder + span head, loss,
gradients, clipping at 1.0, AdamW) or its `forward` section (the encoder), runs it under
`tf.profiler`, and adds up the time of every executed op by its type. Matrix products (MatMul,
BatchMatMul and their oneDNN/fused forms) are separated from everything else, so the result says how
much of the step is arithmetic the CPU's matmul units bound and how much is left for fusion or layout
work. Shapes and threads come from `run_all.py`'s flags (`--batch_size`, `--seq_length`, `--threads`,
`--quick` for the tiny config).

  python benchmarks/step_profile.py                  # training step, base, batch 8, length 384, ~1 minute
  python benchmarks/step_profile.py --step=forward   # the forward pass
  python benchmarks/step_profile.py --jit_compile    # XLA (its ops show as one compiled cluster)

Writes benchmarks/results/step_profile_<step>.json (op types, milliseconds, share of the step).
"""

import collections
import glob
import json
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from absl import flags  # noqa: E402

from albert.cli.definer import definer  # noqa: E402  (importing albert first applies its oneDNN default)
from albert.core import fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from benchmarks import harness, run_all  # noqa: E402

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_enum, "step", "train", ["train", "forward"], "What to profile.")
_define(flags.DEFINE_bool, "jit_compile", False, "Compile with XLA (training: the gradients, as --jit_compile does).")
_define(flags.DEFINE_string, "profile_output", None, "Where to write the JSON results "
        "(default: benchmarks/results/step_profile_<step>.json).")

MATMUL_OPS = ("MatMul", "BatchMatMul", "FusedMatMul", "Einsum")


def is_matmul(op_type):
  return any(name in op_type for name in MATMUL_OPS)


def op_times(profile_dir):
  """{op type: (milliseconds, count)} summed over the host compute threads of the captured trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = glob.glob(os.path.join(profile_dir, "**", "*.xplane.pb"), recursive=True)
  space = xplane_pb2.XSpace()
  with open(paths[-1], "rb") as f:
    space.ParseFromString(f.read())
  milliseconds, counts = collections.Counter(), collections.Counter()
  for plane in space.planes:
    if "/host:CPU" not in plane.name:
      continue
    names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        op_type = names.get(event.metadata_id, "?").rsplit(":", 1)[-1]
        milliseconds[op_type] += event.duration_ps / 1e9
        counts[op_type] += 1
  return {op_type: (milliseconds[op_type], counts[op_type]) for op_type in milliseconds}


def main(argv):
  del argv
  import tensorflow as tf
  run = run_all.settings()
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  config = run_all.model_config(run["model_config"])
  batch_size, seq_length = run["batch_size"], run["seq_length"]
  batch = harness.random_batch(config, batch_size, seq_length)
  if FLAGS.step == "train":
    step = run_all._our_train_step(config, tf.float32, FLAGS.jit_compile, batch)
  else:
    step = run_all.our_forward(run_all._our_encoder(config, tf.float32), FLAGS.jit_compile, batch)
  step()
  step()  # tracing, compilation and oneDNN primitive caches are warm now
  started = time.perf_counter()
  step()
  step_seconds = time.perf_counter() - started
  with tempfile.TemporaryDirectory(prefix="albert_profile_") as profile_dir:
    tf.profiler.experimental.start(profile_dir)
    step()
    tf.profiler.experimental.stop()
    times = op_times(profile_dir)
  # "Process" is the executor's span around the whole function: the step's busy time, not an op.
  ops = {op_type: value for op_type, value in times.items() if op_type not in ("Process", "?")}
  busy = sum(ms for ms, _ in ops.values())
  matmul = sum(ms for op_type, (ms, _) in ops.items() if is_matmul(op_type))
  flops = harness.forward_flops(config, batch_size, seq_length) * (3 if FLAGS.step == "train" else 1)
  what = {"train": "one SQuAD training step (encoder + span head, AdamW, clipping)",
          "forward": "one forward pass of the encoder"}[FLAGS.step]
  result = {
      "what": what + " profiled by op type", "step": FLAGS.step,
      "config": run["model_config"], "batch_size": batch_size, "seq_length": seq_length,
      "threads": FLAGS.threads, "jit_compile": FLAGS.jit_compile,
      "tf_enable_onednn_opts": harness.onednn_setting(),
      "step_seconds_unprofiled": round(step_seconds, 3),
      "op_milliseconds_total": round(busy, 1),
      "matmul_milliseconds": round(matmul, 1),
      "matmul_share": round(matmul / busy, 3) if busy else None,
      "matmul_gflop_per_sec": round(flops / (matmul / 1e3) / 1e9, 1) if matmul else None,
      "ops": {op_type: {"milliseconds": round(ms, 1), "count": count, "share": round(ms / busy, 4),
                        "matmul": is_matmul(op_type)}
              for op_type, (ms, count) in sorted(ops.items(), key=lambda item: -item[1][0])},
      "load_average": [round(x, 2) for x in os.getloadavg()],
  }
  output = FLAGS.profile_output or os.path.join(run_all.RESULTS_DIR, f"step_profile_{FLAGS.step}.json")
  fileio.write_json(output, result)
  top = list(result["ops"].items())[:8]
  print(json.dumps({key: value for key, value in result.items() if key != "ops"}, indent=2))
  print("\n".join(f"  {op_type:28s} {v['milliseconds']:9.1f} ms  {100 * v['share']:5.1f}%" for op_type, v in top))
  print(f"wrote {output}")


if __name__ == "__main__":
  run_main(main)
