"""Every speed figure of the suite against its peers, side by side in one run, into one JSON file.

  python benchmarks/run_all.py           # albert-base, batch 8, length 384 (~15 min on a quiet 2-core box)
  python benchmarks/run_all.py --quick   # tiny shapes: a smoke test of the harness, not a measurement
  python benchmarks/run_all.py --sections=forward --model_config=small   # hidden 256, 4 layers: minutes

Sections (`--sections` picks some):
  matmul         float32 matrix-multiply GFLOP/s of this process (TF and torch): the machine's limit
  forward        encoder forward pass: ours (tf.function, XLA, bfloat16, float16) vs transformers
                 (PyTorch, float32 and bfloat16 autocast) and keras-hub AlbertBackbone (with and
                 without XLA, and mixed_bfloat16; recorded as not installed when keras-hub is absent)
  train          SQuAD training step (encoder + span head, AdamW, clip at 1.0): ours (tf.function,
                 XLA, bfloat16) vs transformers (float32 and bfloat16 autocast)
  squad_predict  `python -m albert.run_squad_v1 --do_predict` on the real SQuAD sample, end to end
                 (conversion, model, post-processing), against transformers' run_qa recipe padded and
                 with dynamic padding, same random weights (benchmarks/squad_predict.py)
  features       SQuAD training-feature conversion: ours vs AlbertTokenizerFast with offsets and
                 stride windows (the transformers recipe), with the exact-answer-span rates
  onnx           SQuAD inference at lengths 128 and 384, batches 1 and 8: ours in TensorFlow float32, in
                 ONNX Runtime float32 and INT8, vs transformers AlbertForQuestionAnswering exported to ONNX
                 and quantized the same way (benchmarks/onnx_inference.py; needs onnx and onnxruntime)
Machines are noisy: contenders of a section run round-robin (one pass of each per round, median over
rounds), so only ratios within a run are meaningful. Each contender lives in its own process, and only
one works at a time: one that takes longer than --contender_time_limit for a step (its set-up or one
pass; float16 on some CPUs is a cliff) is killed, recorded as {"timed_out": limit, "during": step}, and
the run goes on. The JSON records the machine (CPU model, kind and ISA extensions), versions, thread
settings and the load average before and after every section.
"""

import dataclasses
import json
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from albert.cli.definer import attach_subset, definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from albert.model.config import AlbertConfig, preset  # noqa: E402
from albert.text.spm_training import ORIGINAL_OPTIONS  # noqa: E402
from benchmarks.harness import (Contender, configure_threads, forward_flops, load_average, machine,  # noqa: E402
                                onednn_setting, random_batch, round_robin, with_rates)

SECTIONS = ("matmul", "forward", "train", "squad_predict", "features", "onnx")
SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
GOALS = {"forward_vs_best_peer": 1.15, "train_vs_transformers": 1.3, "features_vs_transformers": 1.0,
         "squad_predict_vs_faster_peer": 1.5}
MODEL_CONFIGS = ("base", "small", "tiny")
# Who counts for the goals: our fastest float32 or bfloat16 contender against the fastest peer in either
# precision (bfloat16 is the fast one on CPUs with AMX or AVX-512 BF16, float32 elsewhere).
OURS = ("ours", "ours_xla", "ours_bfloat16")
FORWARD_PEERS = ("transformers", "transformers_bfloat16", "keras_hub", "keras_hub_xla", "keras_hub_bfloat16")
TRAIN_PEERS = ("transformers", "transformers_bfloat16")
KERAS_HUB_FORWARD = {"keras_hub": (False, None), "keras_hub_xla": (True, None),
                     "keras_hub_bfloat16": (False, "mixed_bfloat16")}

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_bool, "quick", False, "Tiny shapes and one repetition: checks the harness end to end.")
_define(flags.DEFINE_list, "sections", list(SECTIONS), f"Sections to run, from: {', '.join(SECTIONS)}.")
attach_subset(None, "sections", SECTIONS)
_define(flags.DEFINE_string, "output", None, "JSON results file (default: benchmarks/results/run_all.json, "
        "run_all_quick.json with --quick).")
_define(flags.DEFINE_string, "work_dir", None, "Scratch directory (default: a new temporary directory).")
_define(flags.DEFINE_integer, "threads", 2, "Intra-op threads of TensorFlow and PyTorch (inter-op: 1).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "repeats", None, "Timed rounds per section; the median counts (default 3, quick 1).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "warmup", 1, "Untimed passes per contender before timing (tracing, XLA compiles); "
        "at least one always runs.", bound=bounds.NON_NEGATIVE)
_define(flags.DEFINE_integer, "batch_size", None, "Examples per forward pass / training step (default 8, quick 2).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "seq_length", None, "Tokens per example (default 384, quick 64).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_enum, "model_config", None, list(MODEL_CONFIGS), "Model of the forward and train sections: "
        "albert-base; small (hidden 256, 4 layers, a few minutes); tiny (default with --quick).")
_define(flags.DEFINE_float, "contender_time_limit", 300, "Seconds a contender may take for one step (its set-up, "
        "one pass, or a whole squad_predict command) before it is killed and recorded as timed out.",
        bound=bounds.POSITIVE)
_define(flags.DEFINE_integer, "squad_base_questions", 100, "Questions of the SQuAD sample the base-config "
        "prediction run uses (the tiny config uses all of them).", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "feature_questions", 2000, "Questions of the feature-conversion benchmark (the "
        "sample tiled, contexts made distinct per copy).", bound=bounds.AT_LEAST_ONE)


# ---- settings ----

def settings():
  """The shapes and counts of this run, from the flags and --quick."""
  quick = FLAGS.quick
  chosen = {
      "repeats": FLAGS.repeats or (1 if quick else 3),
      "warmup": FLAGS.warmup,
      "batch_size": FLAGS.batch_size or (2 if quick else 8),
      "seq_length": FLAGS.seq_length or (64 if quick else 384),
      "model_config": FLAGS.model_config or ("tiny" if quick else "base"),
      "threads": FLAGS.threads,
      "contender_time_limit": FLAGS.contender_time_limit,
      "matmul_size": 256 if quick else 2048,
      "squad_configs": ["tiny"] if quick else ["base"],
      "squad_tiny_questions": 20,
      "squad_base_questions": FLAGS.squad_base_questions,
      "feature_questions": 60 if quick else FLAGS.feature_questions,
      "squad_max_seq_length": 128 if quick else 384,
      "squad_doc_stride": 32 if quick else 128,  # at most max_seq_length - max_query_length (64) - 3
  }
  return chosen


def model_config(name):
  """albert-base (v2); small: base's embeddings and vocabulary, hidden 256 and 4 layers; or a tiny config
  with room for 384-token SQuAD windows."""
  if name == "base":
    return preset("base")
  if name == "small":
    return dataclasses.replace(preset("base"), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=1024)
  return AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                      num_hidden_groups=1, num_attention_heads=4, intermediate_size=64, inner_group_num=1,
                      hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)


# ---- sections ----

def matmul_section(run):
  """Best-of-5 float32 matmul GFLOP/s of TensorFlow (graph mode) and PyTorch in this process."""
  import tensorflow as tf
  import torch
  n = run["matmul_size"]
  flop = 2 * n ** 3
  a = tf.random.normal([n, n])
  tf_matmul = tf.function(lambda x: tf.matmul(x, x))
  ta = torch.randn(n, n)
  results = {"size": n}
  for name, step in (("tensorflow", lambda: tf_matmul(a).numpy()), ("torch", lambda: torch.mm(ta, ta))):
    step()
    seconds = []
    for _ in range(5):
      started = time.perf_counter()
      step()
      seconds.append(time.perf_counter() - started)
    results[f"{name}_gflop_per_sec"] = round(flop / min(seconds) / 1e9, 2)
  results["limit_gflop_per_sec"] = max(results["tensorflow_gflop_per_sec"], results["torch_gflop_per_sec"])
  return results


def _our_encoder(config, dtype, source=None):
  """AlbertModel in `dtype`, with the weights of `source` when given (for agreement checks)."""
  from albert import modeling
  model = modeling.AlbertModel(config, compute_dtype=dtype)
  if source is not None:
    source_variables = source.named_variables()
    for name, variable in model.named_variables().items():
      variable.assign(source_variables[name])
  return model


def our_forward(model, jit_compile, batch):
  """A no-argument callable: the encoder's sequence output for `batch` (float32 numpy)."""
  import tensorflow as tf
  tensors = {name: tf.constant(value) for name, value in batch.items()}
  call = tf.function(lambda ids, mask, segments: model(ids, mask, segments).sequence_output,
                     jit_compile=jit_compile)
  return lambda: tf.cast(call(tensors["input_ids"], tensors["input_mask"], tensors["segment_ids"]),
                         tf.float32).numpy()


def _section_batch(config_name, batch_size, seq_length):
  config = model_config(config_name)
  return config, random_batch(config, batch_size, seq_length)


def ours_forward_contender(config_name, batch_size, seq_length, precision, jit_compile):
  """Our encoder's forward pass in `precision`, with the float32 weights every process draws from seed 0."""
  import tensorflow as tf
  config, batch = _section_batch(config_name, batch_size, seq_length)
  tf.random.set_seed(0)
  model = _our_encoder(config, tf.float32)
  if precision != "float32":
    model = _our_encoder(config, tf.as_dtype(precision), model)
  return our_forward(model, jit_compile, batch)


def transformers_forward_contender(config_name, batch_size, seq_length, autocast):
  from benchmarks import peers
  config, batch = _section_batch(config_name, batch_size, seq_length)
  model = peers.TorchAlbert(config, training=False, autocast=autocast)
  return lambda: model.forward(batch)


def keras_hub_forward_contender(config_name, batch_size, seq_length, jit_compile, dtype):
  from benchmarks import peers
  config, batch = _section_batch(config_name, batch_size, seq_length)
  model = peers.KerasHubAlbert(config, jit_compile=jit_compile, dtype=dtype)
  return lambda: model.forward(batch)


def _round_robin(run, contenders):
  return round_robin(contenders, run["warmup"], run["repeats"], run["contender_time_limit"], run["threads"])


def forward_section(run):
  from benchmarks import peers
  shape = (run["model_config"], run["batch_size"], run["seq_length"])
  contenders = {
      "ours": Contender(ours_forward_contender, (*shape, "float32", False)),
      "ours_xla": Contender(ours_forward_contender, (*shape, "float32", True)),
      "ours_bfloat16": Contender(ours_forward_contender, (*shape, "bfloat16", False)),
      "ours_float16": Contender(ours_forward_contender, (*shape, "float16", False)),
      "transformers": Contender(transformers_forward_contender, (*shape, None), ("torch",)),
      "transformers_bfloat16": Contender(transformers_forward_contender, (*shape, "bfloat16"), ("torch",)),
  }
  keras_hub = peers.installed("keras_hub")
  if keras_hub:
    contenders.update({name: Contender(keras_hub_forward_contender, (*shape, *options))
                       for name, options in KERAS_HUB_FORWARD.items()})
  timings, outputs = _round_robin(run, contenders)
  if not keras_hub:
    timings.update({name: {"not_installed": "keras-hub"} for name in KERAS_HUB_FORWARD})
  config = model_config(run["model_config"])
  flops = forward_flops(config, run["batch_size"], run["seq_length"])
  results = {"gflop_per_pass": round(flops / 1e9, 3), "contenders": with_rates(timings, run["batch_size"], flops)}
  mask = random_batch(config, run["batch_size"], run["seq_length"])["input_mask"]
  results["agreement_with_float32"] = _agreement(outputs, mask)
  return results


# A reduced-precision or compiled contender and the float32 one with the same weights.
_SAME_WEIGHTS = {"ours_xla": "ours", "ours_bfloat16": "ours", "ours_float16": "ours",
                 "transformers_bfloat16": "transformers", "keras_hub_bfloat16": "keras_hub"}


def _agreement(outputs, mask):
  """Max abs difference of non-padding sequence outputs vs the float32 contender with the same weights,
  and relative to its max value (pairs with a contender missing are left out)."""
  agreement = {}
  for name, reference_name in _SAME_WEIGHTS.items():
    if name not in outputs or reference_name not in outputs:
      continue
    reference = outputs[reference_name][mask.astype(bool)]
    difference = float(np.max(np.abs(outputs[name][mask.astype(bool)] - reference)))
    agreement[name] = {"reference": reference_name, "max_abs_diff": difference,
                       "relative_to_max_abs": difference / float(np.max(np.abs(reference)))}
  return agreement


def _our_train_step(config, dtype, jit_compile, batch):
  """SQuAD training step like the Trainer's: loss, gradients (XLA when jit), clip at 1.0, AdamW."""
  import tensorflow as tf

  from albert.model import heads
  from albert.modeling import AlbertModel
  from albert.training import optimization
  model = AlbertModel(config, compute_dtype=dtype)
  head = heads.SquadV1Head(config)
  named = {**model.named_variables(), **head.named_variables()}
  variables = list(named.values())
  optimizer, _ = optimization.create_optimizer(1e-5, 10000, 0)
  optimizer.build(named)
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  tensors = {name: tf.constant(value) for name, value in batch.items()}

  def gradients(features):
    with tf.GradientTape() as tape:
      sequence = model(features["input_ids"], features["input_mask"], features["segment_ids"],
                       training=True).sequence_output
      start_logits, end_logits = head(sequence)
      loss = heads.squad_v1_loss(start_logits, end_logits, features["start_positions"],
                                 features["end_positions"])
    grads = tape.gradient(loss, variables)
    # The pooler gets no gradient from a span head; like the Trainer, it is left out.
    return loss, {index: tf.convert_to_tensor(g) for index, g in enumerate(grads) if g is not None}

  compute_gradients = tf.function(gradients, jit_compile=True) if jit_compile else gradients

  @tf.function
  def train_step(features):
    loss, grads = compute_gradients(features)
    indices = sorted(grads)
    scale, _ = optimization.clip_scale([grads[i] for i in indices], 1.0)
    optimizer.apply_gradients(zip([grads[i] for i in indices], [variables[i] for i in indices]), step.read_value(),
                              gradient_scale=scale)
    step.assign_add(1)
    return loss

  return lambda: float(train_step(tensors))


def ours_train_contender(config_name, batch_size, seq_length, precision, jit_compile):
  import tensorflow as tf
  config, batch = _section_batch(config_name, batch_size, seq_length)
  tf.random.set_seed(0)
  return _our_train_step(config, tf.as_dtype(precision), jit_compile, batch)


def transformers_train_contender(config_name, batch_size, seq_length, autocast):
  from benchmarks import peers
  config, batch = _section_batch(config_name, batch_size, seq_length)
  model = peers.TorchAlbert(config, training=True, autocast=autocast)
  return lambda: model.train_step(batch)


def train_section(run):
  shape = (run["model_config"], run["batch_size"], run["seq_length"])
  contenders = {
      "ours": Contender(ours_train_contender, (*shape, "float32", False)),
      "ours_xla": Contender(ours_train_contender, (*shape, "float32", True)),
      "ours_bfloat16": Contender(ours_train_contender, (*shape, "bfloat16", False)),
      "transformers": Contender(transformers_train_contender, (*shape, None), ("torch",)),
      "transformers_bfloat16": Contender(transformers_train_contender, (*shape, "bfloat16"), ("torch",)),
  }
  timings, first_losses = _round_robin(run, contenders)
  flops = 3 * forward_flops(model_config(run["model_config"]), run["batch_size"], run["seq_length"])  # + 2x backward
  return {"gflop_per_step_approx": round(flops / 1e9, 3), "first_losses": first_losses,
          "contenders": with_rates(timings, run["batch_size"], flops)}


def train_spm_model(work_dir):
  """A 2000-piece unigram model on WikiText-2 with the original options (the released 30k model
  cannot be downloaded here; tokenization speed per character barely depends on the vocabulary)."""
  import sentencepiece as spm
  prefix = os.path.join(work_dir, "wiki2k")
  if not os.path.exists(prefix + ".model"):
    spm.SentencePieceTrainer.train(
        input=os.path.join(SHARED_DATA, "corpus", "wikitext2-valid.txt"), model_prefix=prefix,
        vocab_size=2000, input_sentence_size=20000, minloglevel=2, num_threads=2, **ORIGINAL_OPTIONS)
  return prefix + ".model"


def squad_tiled(source, path, target_questions):
  """Copies of the sample, each copy's contexts made distinct (so every context is tokenized anew),
  cut to `target_questions`; answers keep their offsets."""
  data = fileio.read_json(source, "SQuAD sample")
  articles, count, copy = [], 0, 0
  while count < target_questions:
    for article in data["data"]:
      paragraphs = []
      for paragraph in article["paragraphs"]:
        qas = [dict(qa, id=f"{qa['id']}_{copy}") for qa in paragraph["qas"]][:target_questions - count]
        if qas:
          paragraphs.append({"context": f"{paragraph['context']} [{copy}]", "qas": qas})
          count += len(qas)
      if paragraphs:
        articles.append({"title": article["title"], "paragraphs": paragraphs})
    copy += 1
  fileio.write_json(path, {"version": "1.1", "data": articles}, indent=None)
  return count


def squad_predict_section(run, work_dir):
  """`run_squad_v1 --do_predict` end to end against the transformers run_qa recipe, whole commands in fresh
  processes, same weights (benchmarks/squad_predict.py)."""
  from benchmarks import squad_predict
  directory = os.path.join(work_dir, "squad_predict")
  os.makedirs(directory, exist_ok=True)
  config = run["squad_configs"][-1]
  questions = run["squad_base_questions"] if config == "base" else run["squad_tiny_questions"]
  return squad_predict.compare(config, questions, list(squad_predict.CONTENDERS), run["repeats"], 8,
                               run["threads"], directory, run["contender_time_limit"] * 6,
                               run["squad_max_seq_length"], run["squad_doc_stride"])


def ours_features_contender(squad_file, spm_model):
  """Ours (read + convert, in memory, one process): counts and exact-answer rate per pass."""
  from albert import squad_utils
  from albert.tokenization import FullTokenizer
  tokenizer = FullTokenizer(spm_model_file=spm_model, do_lower_case=True)

  def ours():
    stats = squad_utils.ConversionStats()
    examples = squad_utils.read_squad_examples(squad_file, is_training=True).examples
    for _ in squad_utils.convert_examples_to_features(examples, tokenizer, 384, 128, 64, is_training=True,
                                                      stats=stats, log_every_seconds=1e9):
      pass
    return {"questions": stats.examples, "features": stats.features,
            "exact_answer_rate": stats.exact_answer_rate, "answers_exact": stats.answers_exact,
            "answers_inexact": sum(stats.answers_inexact.values())}
  return ours


def transformers_features_contender(squad_file, spm_model, work_dir):
  from benchmarks import peers
  hf_tokenizer = peers.hf_tokenizer(spm_model, work_dir)
  return lambda: peers.hf_squad_features(hf_tokenizer, squad_file, 384, 128)


def features_section(run, work_dir):
  """Ours vs the transformers recipe, interleaved."""
  spm_model = train_spm_model(work_dir)
  squad_file = os.path.join(work_dir, "features_train.json")
  questions = squad_tiled(os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json"), squad_file,
                          run["feature_questions"])
  contenders = {"ours": Contender(ours_features_contender, (squad_file, spm_model), ()),
                "transformers": Contender(transformers_features_contender, (squad_file, spm_model, work_dir), ())}
  timings, counts = _round_robin(run, contenders)
  for name, timing in timings.items():
    if "median_seconds" in timing:
      timing["questions_per_sec"] = round(questions / timing["median_seconds"], 1)
      timing["features_per_sec"] = round(counts[name]["features"] / timing["median_seconds"], 1)
      timing.update(counts[name])
  return {"questions": questions, "spm_model": "2000-piece unigram, WikiText-2, original options",
          "settings": {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64},
          "contenders": timings}


def onnx_section(run, work_dir):
  """benchmarks/onnx_inference.py's measurement with this run's model, rounds and threads."""
  from benchmarks import onnx_inference, peers
  missing = [name for name in ("onnx", "onnxruntime") if not peers.installed(name)]
  if missing:
    return {"not_installed": ", ".join(missing)}
  lengths, batch_sizes = ([64], [2]) if FLAGS.quick else ([128, 384], [1, 8])
  return onnx_inference.measure(model_config(run["model_config"]), os.path.join(work_dir, "onnx"), lengths,
                                batch_sizes, run["repeats"], run["warmup"], run["threads"],
                                run["contender_time_limit"])


# ---- summary ----

def _fastest(section, names, key="examples_per_sec"):
  """(name, rate) of the fastest of `names` that ran to the end in `section`, or None."""
  rates = {name: section["contenders"][name][key] for name in names
           if key in section["contenders"].get(name, {})}
  return max(rates.items(), key=lambda item: item[1]) if rates else None


def goals(report):
  """The issue's ratios from this run's sections (absent sections, and ratios whose contenders all timed out
  or failed, are left out)."""
  summary = {}
  forward, train, features = report.get("forward"), report.get("train"), report.get("features")
  if forward and _fastest(forward, OURS) and _fastest(forward, FORWARD_PEERS):
    (ours_name, ours), (peer_name, peer) = _fastest(forward, OURS), _fastest(forward, FORWARD_PEERS)
    summary["forward_vs_best_peer"] = {"ours": ours, "ours_contender": ours_name, "best_peer": peer_name,
                                       "ratio": round(ours / peer, 3)}
  if forward and "matmul" in report and _fastest(forward, ("ours", "ours_xla"), "gflop_per_sec"):
    best = _fastest(forward, ("ours", "ours_xla"), "gflop_per_sec")[1]  # float32, like the matmul limit
    summary["forward_share_of_matmul_limit"] = round(best / report["matmul"]["limit_gflop_per_sec"], 3)
  if train and _fastest(train, OURS) and _fastest(train, TRAIN_PEERS):
    (ours_name, ours), (peer_name, peer) = _fastest(train, OURS), _fastest(train, TRAIN_PEERS)
    summary["train_vs_transformers"] = {"ours": ours, "ours_contender": ours_name, "transformers": peer_name,
                                        "ratio": round(ours / peer, 3)}
  if features and all("questions_per_sec" in features["contenders"][n] for n in ("ours", "transformers")):
    ours, peer = features["contenders"]["ours"], features["contenders"]["transformers"]
    summary["features_vs_transformers"] = {
        "ratio": round(ours["questions_per_sec"] / peer["questions_per_sec"], 3),
        "exact_answer_rate_ours": ours["exact_answer_rate"],
        "exact_answer_rate_transformers": peer["exact_answer_rate"]}
  for name, target in GOALS.items():
    if name in summary:
      summary[name]["target"] = target
      summary[name]["met"] = summary[name]["ratio"] >= target
  for name, goal in report.get("onnx", {}).get("goals", {}).items():
    summary[f"onnx_{name}"] = goal
  if "goal" in report.get("squad_predict", {}):
    summary["squad_predict_vs_faster_peer"] = {"ratio": report["squad_predict"]["goal"]["ours_vs_faster_peer"]}
  return summary


def main(argv):
  del argv
  run = settings()
  from benchmarks import peers
  output = FLAGS.output or os.path.join(RESULTS_DIR, "run_all_quick.json" if FLAGS.quick else "run_all.json")
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="albert_run_all_")
  os.makedirs(work_dir, exist_ok=True)
  report = {"benchmark": "albert vs peers, one run", "quick": FLAGS.quick, "settings": run,
            "machine": machine(), "versions": peers.versions(), "tf_enable_onednn_opts": onednn_setting(),
            "threads": configure_threads(FLAGS.threads),
            "load_average_start": load_average(), "section_load": {}}
  cpu = report["machine"]
  print(f"machine: {cpu['cpu_model']} ({cpu['cpu_kind']}: {' '.join(cpu['isa']) or 'extensions unknown'}), "
        f"{cpu['cpu_count']} CPUs", flush=True)
  sections = {"matmul": lambda: matmul_section(run), "forward": lambda: forward_section(run),
              "train": lambda: train_section(run),
              "squad_predict": lambda: squad_predict_section(run, work_dir),
              "features": lambda: features_section(run, work_dir), "onnx": lambda: onnx_section(run, work_dir)}
  for name in SECTIONS:
    if name not in FLAGS.sections:
      continue
    print(f"{name}:", flush=True)
    before, started = load_average(), time.perf_counter()
    report[name] = sections[name]()
    report["section_load"][name] = {"before": before, "after": load_average(),
                                    "seconds": round(time.perf_counter() - started, 1)}
    report["goals"] = goals(report)
    fileio.write_json(output, report)  # partial results survive a later failure
  report["load_average_end"] = load_average()
  fileio.write_json(output, report)
  print(json.dumps(report["goals"], indent=2))
  print(f"wrote {output}")


if __name__ == "__main__":
  run_main(main)
