"""Every speed figure of the suite against its peers, side by side in one run, into one JSON file.

  python benchmarks/run_all.py           # albert-base, batch 8, length 384 (~15 min on a quiet 2-core box)
  python benchmarks/run_all.py --quick   # tiny shapes: a smoke test of the harness, not a measurement

Sections (`--sections` picks some):
  matmul         float32 matrix-multiply GFLOP/s of this process (TF and torch): the machine's limit
  forward        encoder forward pass: ours (tf.function, XLA, bfloat16, float16) vs transformers
                 (PyTorch) and keras-hub AlbertBackbone (with and without XLA)
  train          SQuAD training step (encoder + span head, AdamW, clip at 1.0): ours (tf.function,
                 XLA, bfloat16) vs transformers
  squad_predict  `python -m albert.run_squad_v1 --do_predict` on the real SQuAD sample, tiny and base
                 configs, random weights: features/sec including conversion and post-processing
  features       SQuAD training-feature conversion: ours vs AlbertTokenizerFast with offsets and
                 stride windows (the transformers recipe), with the exact-answer-span rates
Machines are noisy: contenders of a section run round-robin in one process (one pass of each per
round, median over rounds), so only ratios within a run are meaningful. The JSON records versions,
thread settings and the load average before and after every section.
"""

import json
import os
import re
import subprocess
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
from benchmarks.harness import (configure_threads, forward_flops, load_average, machine, onednn_setting,  # noqa: E402
                                random_batch, round_robin, with_rates)

SECTIONS = ("matmul", "forward", "train", "squad_predict", "features")
SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
GOALS = {"forward_vs_best_peer": 1.15, "train_vs_transformers": 1.3, "features_vs_transformers": 1.0}

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
      "model_config": "tiny" if quick else "base",
      "matmul_size": 256 if quick else 2048,
      "squad_configs": ["tiny"] if quick else ["tiny", "base"],
      "squad_tiny_questions": 20 if quick else None,
      "squad_base_questions": FLAGS.squad_base_questions,
      "feature_questions": 60 if quick else FLAGS.feature_questions,
      "squad_max_seq_length": 128 if quick else 384,
  }
  return chosen


def model_config(name):
  """albert-base (v2), or a tiny config with room for 384-token SQuAD windows."""
  if name == "base":
    return preset("base")
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


def forward_section(run):
  import tensorflow as tf

  from benchmarks import peers
  config = model_config(run["model_config"])
  batch = random_batch(config, run["batch_size"], run["seq_length"])
  float32_model = _our_encoder(config, tf.float32)
  contenders = {
      "ours": our_forward(float32_model, False, batch),
      "ours_xla": our_forward(float32_model, True, batch),
      "ours_bfloat16": our_forward(_our_encoder(config, tf.bfloat16, float32_model), False, batch),
      "ours_float16": our_forward(_our_encoder(config, tf.float16, float32_model), False, batch),
  }
  torch_model = peers.TorchAlbert(config, training=False)
  contenders["transformers"] = lambda: torch_model.forward(batch)
  for jit in (False, True):
    keras_model = peers.KerasHubAlbert(config, jit_compile=jit)
    contenders[keras_model.name] = lambda m=keras_model: m.forward(batch)
  timings, outputs = round_robin(contenders, run["warmup"], run["repeats"])
  flops = forward_flops(config, run["batch_size"], run["seq_length"])
  results = {"gflop_per_pass": round(flops / 1e9, 3), "contenders": with_rates(timings, run["batch_size"], flops)}
  results["agreement_with_ours_float32"] = _agreement(outputs, batch["input_mask"])
  return results


def _agreement(outputs, mask):
  """Max abs difference of non-padding sequence outputs vs float32, and relative to its max value."""
  reference = outputs["ours"][mask.astype(bool)]
  scale = float(np.max(np.abs(reference)))
  agreement = {}
  for name in ("ours_xla", "ours_bfloat16", "ours_float16"):
    difference = float(np.max(np.abs(outputs[name][mask.astype(bool)] - reference)))
    agreement[name] = {"max_abs_diff": difference, "relative_to_max_abs": difference / scale}
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
    clipped, _ = optimization.clip_by_global_norm([grads[i] for i in indices], 1.0)
    optimizer.apply_gradients(zip(clipped, [variables[i] for i in indices]), step.read_value())
    step.assign_add(1)
    return loss

  return lambda: float(train_step(tensors))


def train_section(run):
  import tensorflow as tf

  from benchmarks import peers
  config = model_config(run["model_config"])
  batch = random_batch(config, run["batch_size"], run["seq_length"])
  torch_model = peers.TorchAlbert(config, training=True)
  contenders = {
      "ours": _our_train_step(config, tf.float32, False, batch),
      "ours_xla": _our_train_step(config, tf.float32, True, batch),
      "ours_bfloat16": _our_train_step(config, tf.bfloat16, False, batch),
      "transformers": lambda: torch_model.train_step(batch),
  }
  timings, first_losses = round_robin(contenders, run["warmup"], run["repeats"])
  flops = 3 * forward_flops(config, run["batch_size"], run["seq_length"])  # forward + 2x backward
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


def squad_subset(source, path, max_questions):
  """The first `max_questions` questions of a SQuAD file (whole file if None); returns their count."""
  data = fileio.read_json(source, "SQuAD sample")
  articles, count = [], 0
  for article in data["data"]:
    paragraphs = []
    for paragraph in article["paragraphs"]:
      if max_questions is not None and count >= max_questions:
        break
      qas = paragraph["qas"][:None if max_questions is None else max_questions - count]
      paragraphs.append(dict(paragraph, qas=qas))
      count += len(qas)
    if paragraphs:
      articles.append(dict(article, paragraphs=paragraphs))
  fileio.write_json(path, dict(data, data=articles), indent=None)
  return count


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
  """Times the whole `run_squad_v1 --do_predict` command per config (a fresh process each)."""
  from albert import modeling
  from albert.io import checkpoint
  from albert.model import heads
  spm_model = train_spm_model(work_dir)
  sample = os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json")
  results = {}
  for name in run["squad_configs"]:
    directory = os.path.join(work_dir, f"squad_{name}")
    os.makedirs(directory, exist_ok=True)
    config = model_config(name)
    config_file = os.path.join(directory, "albert_config.json")
    config.to_json_file(config_file)
    model, head = modeling.AlbertModel(config), heads.SquadV1Head(config)
    prefix = checkpoint.save_checkpoint(os.path.join(directory, "random", "model.ckpt"),
                                        {**model.named_variables(), **head.named_variables()})
    del model, head
    limit = run["squad_base_questions"] if name == "base" else run["squad_tiny_questions"]
    predict_file = os.path.join(directory, "predict.json")
    questions = squad_subset(sample, predict_file, limit)
    output_dir = os.path.join(directory, "output")
    command = [sys.executable, "-m", "albert.run_squad_v1", f"--albert_config_file={config_file}",
               f"--spm_model_file={spm_model}", f"--init_checkpoint={prefix}",
               f"--predict_file={predict_file}", f"--output_dir={output_dir}", "--do_predict",
               f"--max_seq_length={run['squad_max_seq_length']}", "--doc_stride=128",
               "--max_query_length=64", "--predict_batch_size=8"]
    load_before = load_average()
    started = time.perf_counter()
    child = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - started
    if child.returncode != 0:
      raise RuntimeError(f"run_squad_v1 failed for the {name} config:\n{child.stderr[-3000:]}")
    features = fileio.read_json(os.path.join(output_dir, "predict.tf_record.info.json"),
                                "feature cache sidecar")["num_features"]
    predicted = re.findall(r"predicted (\d+) examples in ([\d.]+) s", child.stderr)
    results[name] = {
        "questions": questions, "features": features, "max_seq_length": run["squad_max_seq_length"],
        "command_seconds": round(seconds, 2),
        "features_per_sec_end_to_end": round(features / seconds, 3),
        "model_seconds": float(predicted[-1][1]) if predicted else None,
        "predictions_written": os.path.exists(os.path.join(output_dir, "predictions.json")),
        "load_before": load_before, "load_after": load_average(),
    }
    print(f"  {name}: {features} features in {seconds:.1f}s", flush=True)
  return results


def features_section(run, work_dir):
  """Ours (read + convert, in memory, one process) vs the transformers recipe, interleaved."""
  from albert import squad_utils
  from albert.tokenization import FullTokenizer
  from benchmarks import peers
  spm_model = train_spm_model(work_dir)
  squad_file = os.path.join(work_dir, "features_train.json")
  questions = squad_tiled(os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json"), squad_file,
                          run["feature_questions"])
  tokenizer = FullTokenizer(spm_model_file=spm_model, do_lower_case=True)
  hf_tokenizer = peers.hf_tokenizer(spm_model, work_dir)

  def ours():
    stats = squad_utils.ConversionStats()
    examples = squad_utils.read_squad_examples(squad_file, is_training=True).examples
    for _ in squad_utils.convert_examples_to_features(examples, tokenizer, 384, 128, 64, is_training=True,
                                                      stats=stats, log_every_seconds=1e9):
      pass
    return {"questions": stats.examples, "features": stats.features,
            "exact_answer_rate": stats.exact_answer_rate, "answers_exact": stats.answers_exact,
            "answers_inexact": sum(stats.answers_inexact.values())}

  contenders = {"ours": ours,
                "transformers": lambda: peers.hf_squad_features(hf_tokenizer, squad_file, 384, 128)}
  timings, counts = round_robin(contenders, run["warmup"], run["repeats"])
  for name, timing in timings.items():
    timing["questions_per_sec"] = round(questions / timing["median_seconds"], 1)
    timing["features_per_sec"] = round(counts[name]["features"] / timing["median_seconds"], 1)
    timing.update(counts[name])
  return {"questions": questions, "spm_model": "2000-piece unigram, WikiText-2, original options",
          "settings": {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64},
          "contenders": timings}


# ---- summary ----

def _rate(section, name, key="examples_per_sec"):
  return section["contenders"][name][key]


def goals(report):
  """The issue's ratios from this run's sections (absent sections are left out)."""
  summary = {}
  forward, train = report.get("forward"), report.get("train")
  if forward:
    ours = max(_rate(forward, "ours"), _rate(forward, "ours_xla"))
    peer_name = max(("transformers", "keras_hub", "keras_hub_xla"), key=lambda n: _rate(forward, n))
    summary["forward_vs_best_peer"] = {"ours": ours, "best_peer": peer_name,
                                       "ratio": round(ours / _rate(forward, peer_name), 3)}
    if "matmul" in report:
      best = max(forward["contenders"][n]["gflop_per_sec"] for n in ("ours", "ours_xla"))
      summary["forward_share_of_matmul_limit"] = round(best / report["matmul"]["limit_gflop_per_sec"], 3)
  if train:
    ours = max(_rate(train, "ours"), _rate(train, "ours_xla"))
    summary["train_vs_transformers"] = {"ours": ours,
                                        "ratio": round(ours / _rate(train, "transformers"), 3)}
  if "features" in report:
    features = report["features"]
    summary["features_vs_transformers"] = {
        "ratio": round(_rate(features, "ours", "questions_per_sec")
                       / _rate(features, "transformers", "questions_per_sec"), 3),
        "exact_answer_rate_ours": _rate(features, "ours", "exact_answer_rate"),
        "exact_answer_rate_transformers": _rate(features, "transformers", "exact_answer_rate")}
  for name, target in GOALS.items():
    if name in summary:
      summary[name]["target"] = target
      summary[name]["met"] = summary[name]["ratio"] >= target
  if "squad_predict" in report:
    summary["squad_predict_features_per_sec"] = {
        name: values["features_per_sec_end_to_end"] for name, values in report["squad_predict"].items()}
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
  sections = {"matmul": lambda: matmul_section(run), "forward": lambda: forward_section(run),
              "train": lambda: train_section(run),
              "squad_predict": lambda: squad_predict_section(run, work_dir),
              "features": lambda: features_section(run, work_dir)}
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
