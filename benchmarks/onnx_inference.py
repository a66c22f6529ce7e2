"""CPU inference of a SQuAD model: ours in TensorFlow and in ONNX Runtime (float32, INT8) against the
transformers model exported to ONNX and quantized the same way.

  python benchmarks/onnx_inference.py                 # albert-base, lengths 128 and 384, batches 1 and 8
  python benchmarks/onnx_inference.py --repeats=1 --onnx_lengths=384 --onnx_batch_sizes=8   # a short run
  python benchmarks/onnx_inference.py --quick         # tiny model: checks the harness end to end

Contenders, all with the same weights (a random SquadV1Task of the config, seed 0):
  ours_tensorflow_float32   the task's answer outputs in a tf.function (what run_squad_* and albert.answer run)
  ours_onnx_float32         `python -m albert.export_onnx`'s file in ONNX Runtime
  ours_onnx_int8            the same with `--quantize=int8` (dynamic quantization of the matmul weights)
  transformers_onnx_float32 transformers AlbertForQuestionAnswering holding our weights (albert.export.hf
                            names), exported with torch.onnx.export (the TorchScript exporter optimum uses)
  transformers_onnx_int8    that file through onnxruntime's quantization pre-processing, then the same
                            quantize_dynamic call as ours (`albert.export.onnx.quantize_int8`: MatMul
                            weights in int8, per column, 7 bits; optimum's CPU recipe without optimum).
                            The pre-processing removes the Identity nodes the exporter puts between the
                            shared weights and their MatMuls; without it only 8 of the 98 MatMuls are
                            quantized and the file grows (both recorded)
  ours_tensorflow_bfloat16  only on CPUs with AMX: our fastest TensorFlow path there
At the goals' shape two more contenders time the forward pass's matrix products alone, in isolated ONNX
Runtime sessions and nothing else (`matmul_contender`): matmuls_only_int8 (the projections quantized as our
INT8 file has them, the two products of activations per layer float32, as its QAttention keeps them) and
matmuls_only_float32. An INT8 forward cannot beat matmuls_only_int8, so our TensorFlow float32 time over it
is the most the first goal's ratio can reach on this CPU (`goals()["int8_ceiling"]`).
Each shape runs its contenders round-robin, one process each (`benchmarks.harness.round_robin`), with the
same intra-op threads (TF: --threads; ONNX Runtime: intra_op_num_threads). The JSON records the machine
(CPU model, kind, ISA extensions such as avx512_vnni and amx_int8, which decide INT8 speed), versions,
file sizes, per-pass seconds, examples/s, the agreement of every contender's start logits with ours in
TensorFlow, and the issue's two ratios at batch 8 x length 384. Only ratios within one run mean anything.
"""

import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from albert.cli.definer import definer  # noqa: E402  (importing albert first applies its oneDNN default)
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from benchmarks import run_all  # noqa: E402  (its flags --quick, --repeats, --threads, --model_config are shared)
from benchmarks.harness import Contender, load_average, machine, random_batch, round_robin  # noqa: E402

INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
HF_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
GOALS = {"int8_vs_tensorflow_float32": 2.0, "int8_vs_transformers_int8": 1.0}
GOAL_SHAPE = (8, 384)  # batch, length of the goals
FILES = ("ours_float32", "ours_int8", "transformers_float32", "transformers_int8")


# ---- the files every contender loads ----

def prepare(config, work_dir, opset=None):
  """Draws the weights once (seed 0), saves them as a checkpoint for the TensorFlow contenders and writes the
  four ONNX files. Returns ({name: path}, {name: bytes}, checkpoint prefix)."""
  import tensorflow as tf

  from albert.export import onnx as onnx_export
  from albert.io import checkpoint
  from albert.tasks.squad.task import SquadV1Task
  tf.random.set_seed(0)
  task = SquadV1Task(config)
  task.build()
  arrays = onnx_export.task_weights(task)
  prefix = checkpoint.save_checkpoint(os.path.join(work_dir, "ours", "model.ckpt"), arrays)
  opset = opset or onnx_export.DEFAULT_OPSET
  paths = {name: os.path.join(work_dir, f"{name}.onnx") for name in FILES}
  spec = onnx_export.spec_for(task)
  for name, quantize in (("ours_float32", "none"), ("ours_int8", "int8")):
    onnx_export.export(config, arrays, spec, paths[name], opset=opset, quantize=quantize)
  export_transformers(config, arrays, paths["transformers_float32"])
  quantize_with_preprocessing(paths["transformers_float32"], paths["transformers_int8"])
  return paths, {name: os.path.getsize(path) for name, path in paths.items()}, prefix


def quantize_with_preprocessing(source, target):
  """onnxruntime's recommended pre-processing (ONNX shape inference and graph optimizations; its symbolic shape
  inference does not finish on this graph), then `albert.export.onnx.quantize_int8`."""
  import onnx
  from onnxruntime.quantization.shape_inference import quant_pre_process

  from albert.export import onnx as onnx_export
  preprocessed = target + ".pre.onnx"
  quant_pre_process(source, preprocessed, skip_symbolic_shape=True)
  onnx_export.quantize_int8(onnx.load(preprocessed), target)
  os.remove(preprocessed)


def matmul_counts(path):
  """How many MatMuls a file computes in float32, how many in int8 (MatMulInteger), and its fused attention
  nodes (Attention in float32, QAttention with int8 q/k/v weights)."""
  import collections

  import onnx
  counts = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
  return {"float32": counts["MatMul"], "int8": counts["MatMulInteger"],
          "fused_attention": counts["Attention"] + counts["QAttention"]}


def export_transformers(config, arrays, path, opset=17):
  """transformers AlbertForQuestionAnswering with our weights, through torch.onnx.export (TorchScript), with
  dynamic batch and length like optimum's export."""
  import warnings

  import torch
  import transformers

  from albert.export.hf import original_to_hf_tensors
  from benchmarks.peers import _hf_config
  model = transformers.AlbertForQuestionAnswering(_hf_config(config)).eval()
  tensors = original_to_hf_tensors(config, arrays)
  tensors["qa_outputs.weight"] = arrays["cls/squad/output_weights"]  # [2, H], a torch Linear's layout
  tensors["qa_outputs.bias"] = arrays["cls/squad/output_bias"]
  expected = set(model.state_dict())
  missing = expected - set(tensors)
  if missing:
    raise RuntimeError(f"no weights for {sorted(missing)[:5]}")
  model.load_state_dict({name: torch.as_tensor(np.asarray(value)) for name, value in tensors.items()
                         if name in expected}, strict=True)
  example = torch.ones(2, 16, dtype=torch.long)
  axes = {name: {0: "batch", 1: "length"} for name in (*HF_INPUT_NAMES, "start_logits", "end_logits")}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
    torch.onnx.export(model, (example, torch.ones_like(example), torch.zeros_like(example)), path,
                      input_names=list(HF_INPUT_NAMES), output_names=["start_logits", "end_logits"],
                      dynamic_axes=axes, opset_version=opset, dynamo=False)


# ---- contenders (each runs in its own process) ----

def _batch(config_dict, batch_size, length):
  from albert.model.config import AlbertConfig
  batch = random_batch(AlbertConfig.from_dict(config_dict), batch_size, length)
  return {name: batch[name] for name in INPUT_NAMES}


def tensorflow_contender(config_dict, prefix, batch_size, length, precision):
  """Our SQuAD task in TensorFlow: start logits of one batch per call."""
  import tensorflow as tf

  from albert.io import checkpoint
  from albert.model.config import AlbertConfig
  from albert.tasks.squad.task import SquadV1Task
  task = SquadV1Task(AlbertConfig.from_dict(config_dict), compute_dtype=tf.as_dtype(precision))
  task.build()
  checkpoint.load_variables(task.named_variables(), prefix)
  specs = [tf.TensorSpec([None, None], tf.int32)] * 3
  forward = tf.function(lambda ids, mask, segments: task.answer_outputs(
      {"input_ids": ids, "input_mask": mask, "segment_ids": segments})["start_logits"], input_signature=specs)
  tensors = [tf.constant(value) for value in _batch(config_dict, batch_size, length).values()]
  return lambda: forward(*tensors).numpy()


def ours_onnx_contender(path, config_dict, batch_size, length, threads):
  from albert.inference.onnx_engine import OnnxEngine
  engine = OnnxEngine(path, threads=threads)
  batch = _batch(config_dict, batch_size, length)
  return lambda: engine(**batch)["start_logits"]


def _session(model, threads):
  """An ONNX Runtime session with the run's threads and every graph optimization (its defaults otherwise)."""
  import onnxruntime as ort
  options = ort.SessionOptions()
  options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def transformers_onnx_contender(path, config_dict, batch_size, length, threads):
  session = _session(path, threads)
  batch = _batch(config_dict, batch_size, length)
  feeds = {hf: batch[ours].astype(np.int64) for hf, ours in zip(HF_INPUT_NAMES, INPUT_NAMES)}
  return lambda: session.run(["start_logits"], feeds)[0]


def _matmul_models(config, batch_size, length):
  """(name, ModelProto, {input: array}, times per forward) of every matrix product of the forward pass: each
  projection as one MatMul of an activation [B, S, K] by a [K, N] weight, and one graph of a layer's two
  products of activations (scores [B, N, S, D] x [B, N, D, S], contexts [B, N, S, S] x [B, N, S, D])."""
  from onnx import TensorProto, helper, numpy_helper

  from albert.export.onnx_graph import DEFAULT_OPSET
  opsets = [helper.make_opsetid("", DEFAULT_OPSET)]
  rng = np.random.default_rng(0)
  h, i, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
  layers = config.num_hidden_layers * config.inner_group_num
  random = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  projections = {"qkv": (h, 3 * h, layers), "attention_output": (h, h, layers), "ffn": (h, i, layers),
                 "ffn_output": (i, h, layers)}
  if config.embedding_size != h:
    projections["embedding_projection"] = (config.embedding_size, h, 1)
  models = []
  for name, (k, n, times) in projections.items():
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_size, length, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(random(k, n) * 0.02, "w")])
    models.append((name, helper.make_model(graph, opset_imports=opsets),
                   {"x": random(batch_size, length, k)}, times))
  d = config.head_size
  shapes = {"query": [batch_size, heads, length, d], "key_t": [batch_size, heads, d, length],
            "probs": [batch_size, heads, length, length], "value": [batch_size, heads, length, d]}
  values = lambda names, shaped: [
      helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name] if shaped else None) for name in names]
  graph = helper.make_graph([helper.make_node("MatMul", ["query", "key_t"], ["scores"]),
                             helper.make_node("MatMul", ["probs", "value"], ["contexts"])], "attention_products",
                            values(shapes, True), values(("scores", "contexts"), False))
  models.append(("attention_products", helper.make_model(graph, opset_imports=opsets),
                 {name: random(*shape) for name, shape in shapes.items()}, layers))
  return models


def matmul_models(config_dict, batch_size, length, precision):
  """`_matmul_models` as serialized models, the projections quantized when `precision` is "int8"
  (`albert.export.onnx.to_bytes`, as our INT8 file has them); the products of activations stay float32
  (our INT8 file's QAttention keeps them float32). Returns [(name, bytes, feeds, times per forward)]."""
  from albert.export import onnx as onnx_export
  from albert.model.config import AlbertConfig
  found = []
  for name, model, feeds, times in _matmul_models(AlbertConfig.from_dict(config_dict), batch_size, length):
    quantize = "int8" if precision == "int8" and name != "attention_products" else "none"
    found.append((name, onnx_export.to_bytes(model, quantize), feeds, times))
  return found


def matmul_contender(config_dict, batch_size, length, threads, precision):
  """The forward pass's matrix products alone, each as often as the forward computes it, in their own sessions
  (`matmul_models`); nothing else runs."""
  runs = [(_session(model, threads), feeds, times)
          for _, model, feeds, times in matmul_models(config_dict, batch_size, length, precision)]

  def run():
    for session, feeds, times in runs:
      for _ in range(times):
        session.run(None, feeds)
  return run


def contenders(config_dict, paths, prefix, batch_size, length, threads, amx, matmuls_only=False):
  shape = (config_dict, batch_size, length)
  chosen = {
      "ours_tensorflow_float32": Contender(tensorflow_contender, (config_dict, prefix, batch_size, length, "float32")),
      "ours_onnx_float32": Contender(ours_onnx_contender, (paths["ours_float32"], *shape, threads), ()),
      "ours_onnx_int8": Contender(ours_onnx_contender, (paths["ours_int8"], *shape, threads), ()),
      "transformers_onnx_float32": Contender(transformers_onnx_contender,
                                             (paths["transformers_float32"], *shape, threads), ()),
      "transformers_onnx_int8": Contender(transformers_onnx_contender, (paths["transformers_int8"], *shape, threads),
                                          ()),
  }
  if matmuls_only:
    for precision in ("int8", "float32"):
      chosen[f"matmuls_only_{precision}"] = Contender(matmul_contender, (*shape, threads, precision), ())
  if amx:
    chosen["ours_tensorflow_bfloat16"] = Contender(tensorflow_contender,
                                                   (config_dict, prefix, batch_size, length, "bfloat16"))
  return chosen


# ---- one run ----

def agreement(outputs, mask):
  """Every contender's start logits against ours in TensorFlow float32, on real (non-padding) positions:
  the largest difference and the share of examples whose best start position is the same."""
  reference = outputs.get("ours_tensorflow_float32")
  if reference is None:
    return {}
  real = mask.astype(bool)
  found = {}
  for name, logits in outputs.items():
    if name == "ours_tensorflow_float32" or logits is None:
      continue
    logits = np.asarray(logits, np.float32)
    best = np.argmax(np.where(real, logits, -np.inf), axis=1) == np.argmax(np.where(real, reference, -np.inf), axis=1)
    found[name] = {"max_abs_diff": float(np.max(np.abs(logits[real] - reference[real]))),
                   "same_best_start": float(np.mean(best))}
  return found


def measure(config, work_dir, lengths, batch_sizes, repeats, warmup, threads, time_limit=None, opset=None):
  """The whole benchmark: the files, then every shape's round-robin. Returns the results dict."""
  from albert.core import cpu
  started = time.perf_counter()
  paths, sizes, prefix = prepare(config, work_dir, opset)
  parameters = sum(int(np.prod(shape)) for shape in _shapes(config).values())
  results = {"model": {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                       "parameters": parameters, "float32_megabytes": round(4 * parameters / 1e6, 2)},
             "file_megabytes": {name: round(size / 1e6, 2) for name, size in sizes.items()},
             "matmuls": {name: matmul_counts(path) for name, path in paths.items()},
             "prepare_seconds": round(time.perf_counter() - started, 1), "shapes": {}}
  amx = "amx_int8" in cpu.isa() or "amx_bf16" in cpu.isa()
  config_dict = config.to_dict()
  for length in lengths:
    for batch_size in batch_sizes:
      key = f"batch_{batch_size}_length_{length}"
      print(f"{key}:", flush=True)
      load_before = load_average()
      chosen = contenders(config_dict, paths, prefix, batch_size, length, threads, amx,
                          matmuls_only=(batch_size, length) == GOAL_SHAPE)
      timings, outputs = round_robin(chosen, warmup, repeats, time_limit, threads)
      for timing in timings.values():
        if "median_seconds" in timing:
          timing["examples_per_sec"] = round(batch_size / timing["median_seconds"], 3)
          timing["milliseconds_per_batch"] = round(1000 * timing["median_seconds"], 1)
          # CPU seconds of the process: on a loaded machine a truer measure of work than wall time.
          timing["examples_per_cpu_sec"] = round(batch_size / float(np.median(timing["cpu_seconds"])), 3)
      mask = random_batch(config, batch_size, length)["input_mask"]
      results["shapes"][key] = {"batch_size": batch_size, "length": length, "contenders": timings,
                                "agreement_with_tensorflow_float32": agreement(outputs, mask),
                                "load_before": load_before, "load_after": load_average()}
  results["goals"] = goals(results)
  return results


def _shapes(config):
  from albert.model import variables
  shapes = {name: shape for name, shape in variables.encoder_shapes(config).items() if "/pooler/" not in name}
  shapes.update({"cls/squad/output_weights": [2, config.hidden_size], "cls/squad/output_bias": [2]})
  return shapes


def goals(results):
  """The issue's ratios at batch 8 x length 384 (absent when that shape did not run or a contender did not finish)."""
  shape = results["shapes"].get(f"batch_{GOAL_SHAPE[0]}_length_{GOAL_SHAPE[1]}")
  if shape is None:
    return {}
  finished = {name: timing for name, timing in shape["contenders"].items() if "examples_per_sec" in timing}
  summary = {}
  for goal, (ours, other) in {"int8_vs_tensorflow_float32": ("ours_onnx_int8", "ours_tensorflow_float32"),
                              "int8_vs_transformers_int8": ("ours_onnx_int8", "transformers_onnx_int8")}.items():
    if ours in finished and other in finished:
      rate, other_rate = finished[ours]["examples_per_sec"], finished[other]["examples_per_sec"]
      ratio = round(rate / other_rate, 3)
      summary[goal] = {"ours": rate, "other": other, "other_rate": other_rate, "ratio": ratio,
                       "ratio_in_cpu_seconds": round(finished[ours]["examples_per_cpu_sec"]
                                                     / finished[other]["examples_per_cpu_sec"], 3),
                       "target": GOALS[goal], "met": ratio >= GOALS[goal]}
  seconds = {name: finished[name]["median_seconds"] for name in
             ("ours_tensorflow_float32", "ours_onnx_int8", "matmuls_only_int8", "matmuls_only_float32")
             if name in finished}
  if len(seconds) == 4:
    # An INT8 forward computes at least its matrix products: our TensorFlow float32 time over theirs alone is
    # the most the first goal's ratio can be with these kernels on this CPU.
    summary["int8_ceiling"] = {
        "most_int8_vs_tensorflow_float32": round(seconds["ours_tensorflow_float32"] / seconds["matmuls_only_int8"], 3),
        "matmuls_int8_vs_float32": round(seconds["matmuls_only_float32"] / seconds["matmuls_only_int8"], 3),
        "share_of_int8_forward_in_its_matmuls": round(seconds["matmuls_only_int8"] / seconds["ours_onnx_int8"], 3),
        "share_of_tensorflow_float32_in_float32_matmuls":
            round(seconds["matmuls_only_float32"] / seconds["ours_tensorflow_float32"], 3)}
  return summary


def versions():
  import importlib.metadata
  found = {}
  for name in ("tensorflow", "onnx", "onnxruntime", "torch", "transformers"):
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


# ---- the command ----

def define_flags():
  define = definer()
  define(flags.DEFINE_list, "onnx_lengths", None, "Sequence lengths (default 128,384; --quick: 64).")
  define(flags.DEFINE_list, "onnx_batch_sizes", None, "Batch sizes (default 1,8; --quick: 2).")
  define(flags.DEFINE_integer, "opset", None, "The ONNX opset of our files (default: albert.export_onnx's).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_string, "onnx_output", None, "JSON results file (default: benchmarks/results/"
         "onnx_inference.json, onnx_inference_quick.json with --quick).")


def settings(fv, run):
  """Lengths and batch sizes of a run from the flags (`run`: `run_all.settings()`)."""
  quick = fv.quick
  lengths = [int(value) for value in fv.onnx_lengths or (["64"] if quick else ["128", "384"])]
  batch_sizes = [int(value) for value in fv.onnx_batch_sizes or (["2"] if quick else ["1", "8"])]
  for name, values in (("onnx_lengths", lengths), ("onnx_batch_sizes", batch_sizes)):
    for value in values:
      bounds.check(name, value, bounds.AT_LEAST_ONE)
  return lengths, batch_sizes


def main(argv):
  del argv
  fv = flags.FLAGS
  run = run_all.settings()
  lengths, batch_sizes = settings(fv, run)
  output = fv.onnx_output or os.path.join(run_all.RESULTS_DIR, "onnx_inference_quick.json" if fv.quick
                                          else "onnx_inference.json")
  work_dir = fv.work_dir or tempfile.mkdtemp(prefix="albert_onnx_")
  report = {"benchmark": "SQuAD inference: TensorFlow vs ONNX Runtime float32/INT8, ours vs transformers",
            "machine": machine(), "versions": versions(), "threads": run["threads"],
            "settings": {"model_config": run["model_config"], "lengths": lengths, "batch_sizes": batch_sizes,
                         "repeats": run["repeats"], "warmup": run["warmup"]},
            "load_average_start": load_average()}
  cpu = report["machine"]
  print(f"machine: {cpu['cpu_model']} ({cpu['cpu_kind']}: {' '.join(cpu['isa'])}), {cpu['cpu_count']} CPUs", flush=True)
  report.update(measure(run_all.model_config(run["model_config"]), work_dir, lengths, batch_sizes, run["repeats"],
                        run["warmup"], run["threads"], run["contender_time_limit"], fv.opset))
  report["load_average_end"] = load_average()
  fileio.write_json(output, report)
  print(f"goals: {report['goals']}\nwrote {output}", flush=True)


if __name__ == "__main__":
  define_flags()
  run_main(main)
