"""Benchmark: SQuAD prediction end to end (conversion, model, post-processing) against the transformers recipe.

  python benchmarks/squad_predict.py                      # albert-base shapes, first 100 questions, 3 rounds
  python benchmarks/squad_predict.py --questions=473      # the whole real dev-v1.1 sample
  python benchmarks/squad_predict.py --config=tiny --repeats=1   # a smoke test of the harness

Every contender is one whole command in a fresh process, timed from start to exit, on the same questions,
weights, SentencePiece model, batch size (8) and threads (2):
- `ours`: `python -m albert.run_squad_v1 --do_predict` (length-bucketed windows, the default), into a new
  output directory each round so the feature cache never helps;
- `ours_padded`: the same with `--bucket_prediction=false` (every window at 384, like the original);
- `run_qa_padded` and `run_qa_dynamic`: the question-answering recipe of transformers' examples
  (`run_qa.py`), written here against the public API: `AlbertTokenizerFast` windows (384, stride 128,
  only the context truncated, offsets), `AlbertForQuestionAnswering` in batches of 8, then its n-best
  post-processing (20 start x 20 end candidates, answers of at most 30 tokens, text from the offsets,
  softmax over the n-best). `padded` pads every window to 384 (the recipe's default); `dynamic` pads each
  batch to its longest window (`--pad_to_max_length False`), the faster setting, which the goal counts
  against. transformers 5 removed `pipeline("question-answering")`, so the recipe is what a transformers
  user runs on raw text today.

Weights are random (albert-base shapes, or tiny), drawn once in transformers and written in the original
layout for us, so both sides answer with the same model; the JSON records how many of the answers agree.
The SentencePiece model is trained here on the WikiText-2 and Grimm corpora (6000 pieces, the original's
options): the released 30k model cannot be downloaded, and fewer pieces would make windows longer than
real ones. Rounds are round-robin (one command of each per round); the median counts. Results, with the
machine's CPU model, ISA and load, go to benchmarks/results/squad_predict.json.
"""

import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from albert.cli.definer import attach_subset, definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from benchmarks.harness import load_average, machine, squad_subset  # noqa: E402

SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
CONTENDERS = ("ours", "ours_padded", "run_qa_padded", "run_qa_dynamic")
PEERS = ("run_qa_padded", "run_qa_dynamic")
GOAL = 1.5  # ours against the faster peer
N_BEST, MAX_ANSWER_LENGTH, MAX_QUERY_LENGTH = 20, 30, 64

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_enum, "config", "base", ["base", "tiny"], "Model shapes (random weights).")
_define(flags.DEFINE_integer, "questions", 100, "First questions of dev-v1.1-sample.json (473 in all).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_list, "contenders", list(CONTENDERS), f"From: {', '.join(CONTENDERS)}.")
attach_subset(None, "contenders", CONTENDERS)
_define(flags.DEFINE_integer, "repeats", 3, "Rounds; the median counts.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "batch_size", 8, "Windows per model call, for every contender.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "max_seq_length", 384, "Window length.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "doc_stride", 128, "Window stride.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "threads", 2, "Intra-op threads of TensorFlow and PyTorch (inter-op 1).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "vocab_size", 6000, "Pieces of the SentencePiece model trained here.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_float, "time_limit", 1800, "Seconds one command may take before it is killed and recorded.",
        bound=bounds.POSITIVE)
_define(flags.DEFINE_string, "work_dir", None, "Scratch directory (default: a new temporary directory).")
_define(flags.DEFINE_string, "output", os.path.join(REPO_ROOT, "benchmarks", "results", "squad_predict.json"),
        "Where the results go.")
_define(flags.DEFINE_string, "run_qa", None, "Internal: run the transformers recipe as described by this JSON.")


# ---- set-up: one model, written for both sides ----

def model_config(name, vocab_size):
  import dataclasses

  from albert.model.config import AlbertConfig, preset
  if name == "base":
    return dataclasses.replace(preset("base"), vocab_size=vocab_size)
  return AlbertConfig(vocab_size=vocab_size, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                      num_hidden_groups=1, num_attention_heads=4, intermediate_size=64, inner_group_num=1,
                      hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)


def train_spm(work_dir, vocab_size):
  """A unigram model with the original options on the WikiText-2 and Grimm corpora (cached in work_dir)."""
  import sentencepiece as spm

  from albert.text.spm_training import ORIGINAL_OPTIONS
  prefix = os.path.join(work_dir, f"spm{vocab_size}")
  if not os.path.exists(prefix + ".model"):
    corpus = os.path.join(work_dir, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as out:
      for name in ("wikitext2-valid.txt", "grimm-fairy-tales.txt"):
        with open(os.path.join(SHARED_DATA, "corpus", name), encoding="utf-8") as f:
          out.write(f.read())
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=vocab_size, minloglevel=2,
                                   num_threads=2, **ORIGINAL_OPTIONS)
  return prefix + ".model"


def write_models(config, spm_model, work_dir):
  """Random `AlbertForQuestionAnswering` weights as a transformers folder and as an original-layout
  checkpoint (encoder by albert.export.hf's table, `qa_outputs` as `cls/squad/output_*`). Returns
  (albert directory with albert_config.json and the checkpoint prefix, transformers folder)."""
  import shutil

  import torch
  import transformers

  from albert.export import hf
  from albert.io import checkpoint
  torch.manual_seed(0)
  hf_dir, albert_dir = os.path.join(work_dir, "transformers_qa"), os.path.join(work_dir, "albert_qa")
  model = transformers.AlbertForQuestionAnswering(
      transformers.AlbertConfig(**hf.albert_config_to_hf(config, ["AlbertForQuestionAnswering"]))).eval()
  model.save_pretrained(hf_dir)
  shutil.copyfile(spm_model, os.path.join(hf_dir, "spiece.model"))
  transformers.AlbertTokenizerFast.from_pretrained(hf_dir, do_lower_case=True).save_pretrained(hf_dir)
  tensors = {name: value.detach().numpy() for name, value in model.state_dict().items()}
  # transformers' QA model has no pooler; ours always carries one (unused by the span head)
  tensors["albert.pooler.weight"] = np.zeros([config.hidden_size, config.hidden_size], np.float32)
  tensors["albert.pooler.bias"] = np.zeros([config.hidden_size], np.float32)
  named = hf.hf_to_original_tensors(config, {k: v for k, v in tensors.items() if not k.startswith("qa_outputs.")},
                                    "benchmark model")
  named["cls/squad/output_weights"] = tensors["qa_outputs.weight"]
  named["cls/squad/output_bias"] = tensors["qa_outputs.bias"]
  os.makedirs(albert_dir, exist_ok=True)
  config.to_json_file(os.path.join(albert_dir, "albert_config.json"))
  prefix = checkpoint.save_checkpoint(os.path.join(albert_dir, "model.ckpt"), named)
  return albert_dir, prefix, hf_dir


# ---- the transformers recipe (a worker process) ----

def run_qa(spec):
  """The run_qa recipe on spec["predict_file"]; writes predictions.json and phase times to spec["output_dir"]."""
  started = time.perf_counter()
  import torch
  import transformers

  from benchmarks.peers import configure_torch_threads
  configure_torch_threads(spec["threads"])
  tokenizer = transformers.AlbertTokenizerFast.from_pretrained(spec["model_dir"])
  if tokenizer.vocab_size != spec["vocab_size"]:
    raise RuntimeError(f"the tokenizer has {tokenizer.vocab_size} pieces, not {spec['vocab_size']}")
  model = transformers.AlbertForQuestionAnswering.from_pretrained(spec["model_dir"]).eval()
  phases = {"start_up": time.perf_counter() - started}

  started = time.perf_counter()
  data = json.load(open(spec["predict_file"], encoding="utf-8"))["data"]
  examples = [(qa["id"], qa["question"].lstrip(), paragraph["context"])
              for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  encoded = tokenizer([q for _, q, _ in examples], [c for _, _, c in examples], truncation="only_second",
                      max_length=spec["max_seq_length"], stride=spec["doc_stride"], return_overflowing_tokens=True,
                      return_offsets_mapping=True, return_token_type_ids=True,
                      padding="max_length" if spec["padded"] else False)
  owners = encoded["overflow_to_sample_mapping"]
  offsets = [[span if kind == 1 else None for span, kind in zip(encoded["offset_mapping"][i], encoded.sequence_ids(i))]
             for i in range(len(owners))]
  phases["conversion"] = time.perf_counter() - started

  started = time.perf_counter()
  starts, ends = [], []
  names = ("input_ids", "attention_mask", "token_type_ids")
  with torch.no_grad():
    for first in range(0, len(owners), spec["batch_size"]):
      rows = range(first, min(first + spec["batch_size"], len(owners)))
      longest = max(len(encoded["input_ids"][i]) for i in rows)
      batch = {name: torch.tensor([encoded[name][i] + [0] * (longest - len(encoded[name][i])) for i in rows])
               for name in names}
      output = model(**batch)
      for k, i in enumerate(rows):
        length = len(encoded["input_ids"][i])
        starts.append(output.start_logits[k, :length].numpy())
        ends.append(output.end_logits[k, :length].numpy())
  phases["model"] = time.perf_counter() - started

  started = time.perf_counter()
  windows = collections.defaultdict(list)
  for i, owner in enumerate(owners):
    windows[owner].append(i)
  predictions, nbest = {}, {}
  for index, (qas_id, _, context) in enumerate(examples):
    nbest[qas_id] = _nbest(context, [(starts[i], ends[i], offsets[i]) for i in windows[index]])
    predictions[qas_id] = nbest[qas_id][0]["text"]
  fileio.write_json(os.path.join(spec["output_dir"], "predictions.json"), predictions)
  fileio.write_json(os.path.join(spec["output_dir"], "nbest_predictions.json"), nbest)
  phases["post_processing"] = time.perf_counter() - started
  fileio.write_json(os.path.join(spec["output_dir"], "phases.json"),
                    {"windows": len(owners), **{k: round(v, 3) for k, v in phases.items()}})


def _nbest(context, windows):
  """The recipe's n-best: top-20 starts x top-20 ends per window, valid spans of <= 30 tokens inside the
  context, ranked by start + end logit, with text from the offsets and softmax probabilities."""
  candidates = []
  for start_logits, end_logits, offsets in windows:
    top_starts = np.argsort(start_logits)[-1:-N_BEST - 1:-1]
    top_ends = np.argsort(end_logits)[-1:-N_BEST - 1:-1]
    for s in top_starts:
      for e in top_ends:
        if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > MAX_ANSWER_LENGTH:
          continue
        candidates.append((float(start_logits[s] + end_logits[e]), offsets[s][0], offsets[e][1]))
  best = sorted(candidates, reverse=True)[:N_BEST] or [(0.0, 0, 0)]  # the recipe's empty fallback
  scores = np.array([score for score, _, _ in best])
  probabilities = np.exp(scores - scores.max())
  probabilities /= probabilities.sum()
  return [{"text": context[start:end], "probability": float(p), "score": score}
          for (score, start, end), p in zip(best, probabilities)]


# ---- timing ----

def command(name, setup, round_dir):
  """The command line of contender `name`, writing into `round_dir`."""
  if name.startswith("ours"):
    return [sys.executable, "-m", "albert.run_squad_v1",
            f"--albert_config_file={os.path.join(setup['albert_dir'], 'albert_config.json')}",
            f"--spm_model_file={setup['spm_model']}", f"--init_checkpoint={setup['prefix']}",
            f"--predict_file={setup['predict_file']}", f"--output_dir={round_dir}", "--do_predict",
            f"--max_seq_length={setup['max_seq_length']}", f"--doc_stride={setup['doc_stride']}",
            f"--max_query_length={MAX_QUERY_LENGTH}", f"--predict_batch_size={setup['batch_size']}",
            f"--n_best_size={N_BEST}", f"--max_answer_length={MAX_ANSWER_LENGTH}",
            f"--bucket_prediction={name == 'ours'}"]
  spec = dict(predict_file=setup["predict_file"], model_dir=setup["hf_dir"], output_dir=round_dir,
              padded=name == "run_qa_padded", threads=setup["threads"], batch_size=setup["batch_size"],
              max_seq_length=setup["max_seq_length"], doc_stride=setup["doc_stride"], vocab_size=setup["vocab_size"])
  return [sys.executable, os.path.abspath(__file__), f"--run_qa={json.dumps(spec)}"]


def run_command(name, setup, round_dir, time_limit):
  """Runs one contender's command; returns {"seconds"} (plus phases for the recipe) or a failure record."""
  os.makedirs(round_dir, exist_ok=True)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT,
             OMP_NUM_THREADS=str(setup["threads"]), TF_NUM_INTRAOP_THREADS=str(setup["threads"]),
             TF_NUM_INTEROP_THREADS="1")
  started = time.perf_counter()
  try:
    child = subprocess.run(command(name, setup, round_dir), cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=time_limit)
  except subprocess.TimeoutExpired:
    return {"timed_out": time_limit}
  seconds = time.perf_counter() - started
  if child.returncode != 0:
    return {"failed": child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}"}
  record = {"seconds": round(seconds, 2)}
  phases = os.path.join(round_dir, "phases.json")
  if os.path.exists(phases):
    record["phases"] = fileio.read_json(phases, "phase times")
  return record


def agreement(work_dir, names):
  """Share of questions whose answer text equals ours, per other contender (same weights: should be ~1)."""
  def answers(name):
    return fileio.read_json(os.path.join(work_dir, f"{name}_round1", "predictions.json"), "predictions")
  if "ours" not in names:
    return {}
  ours = answers("ours")
  result = {}
  for name in names:
    if name != "ours" and os.path.exists(os.path.join(work_dir, f"{name}_round1", "predictions.json")):
      theirs = answers(name)
      same = sum(ours[qid].strip() == theirs.get(qid, "").strip() for qid in ours)
      result[name] = {"same_answers": same, "questions": len(ours)}
  return result


def compare(config_name, questions, contenders, repeats, batch_size, threads, work_dir, time_limit,
            max_seq_length=384, doc_stride=128, vocab_size=6000):
  """The whole comparison; returns the result dict (also used by run_all.py's squad_predict section)."""
  import tensorflow  # noqa: F401  (TensorFlow before torch in one process, the order they load cleanly in)
  config = model_config(config_name, vocab_size)
  spm_model = train_spm(work_dir, vocab_size)
  albert_dir, prefix, hf_dir = write_models(config, spm_model, work_dir)
  predict_file = os.path.join(work_dir, "predict.json")
  count = squad_subset(os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json"), predict_file, questions)
  setup = dict(albert_dir=albert_dir, prefix=prefix, hf_dir=hf_dir, spm_model=spm_model, predict_file=predict_file,
               threads=threads, batch_size=batch_size, max_seq_length=max_seq_length, doc_stride=doc_stride,
               vocab_size=vocab_size)
  timings = {name: {"seconds": []} for name in contenders}
  for round_index in range(repeats):
    for name in contenders:
      if "seconds" not in timings[name]:
        continue  # timed out or failed earlier
      record = run_command(name, setup, os.path.join(work_dir, f"{name}_round{round_index + 1}"), time_limit)
      if "seconds" not in record:
        timings[name] = record
        continue
      timings[name]["seconds"].append(record["seconds"])
      if "phases" in record:
        timings[name].setdefault("phases", []).append(record["phases"])
    print(f"  round {round_index + 1}/{repeats}: " + ", ".join(
        f"{name} {t['seconds'][-1]:.1f}s" if "seconds" in t else f"{name} {t}" for name, t in timings.items()),
        flush=True)
  features = fileio.read_json(os.path.join(work_dir, f"{contenders[0]}_round1", "predict.tf_record.info.json"),
                              "feature cache sidecar")["num_features"] if contenders[0].startswith("ours") else None
  for timing in timings.values():
    if timing.get("seconds"):
      timing["median_seconds"] = statistics.median(timing["seconds"])
      timing["questions_per_sec"] = round(count / timing["median_seconds"], 3)
      if timing.get("phases"):
        timing["features"] = timing["phases"][0]["windows"]
      windows = timing.get("features", features)
      if windows:
        timing["features_per_sec"] = round(windows / timing["median_seconds"], 3)
  result = {"config": config_name, "questions": count, "features_ours": features, "batch_size": batch_size,
            "threads": threads, "max_seq_length": max_seq_length, "doc_stride": doc_stride,
            "spm_vocab_size": vocab_size, "contenders": timings, "same_answers_as_ours": agreement(work_dir, contenders)}
  peers = [timings[name]["median_seconds"] for name in PEERS if "median_seconds" in timings.get(name, {})]
  if "median_seconds" in timings.get("ours", {}) and peers:
    result["goal"] = {"ours_vs_faster_peer": round(min(peers) / timings["ours"]["median_seconds"], 3),
                      "target": GOAL}
    result["goal"]["met"] = result["goal"]["ours_vs_faster_peer"] >= GOAL
  return result


def main(_):
  if FLAGS.run_qa:
    run_qa(json.loads(FLAGS.run_qa))
    return
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="squad_predict_")
  os.makedirs(work_dir, exist_ok=True)
  report = {"benchmark": "SQuAD prediction end to end", "machine": machine(), "load_before": load_average()}
  report.update(compare(FLAGS.config, FLAGS.questions, FLAGS.contenders, FLAGS.repeats, FLAGS.batch_size,
                        FLAGS.threads, work_dir, FLAGS.time_limit, FLAGS.max_seq_length, FLAGS.doc_stride,
                        FLAGS.vocab_size))
  report["load_after"] = load_average()
  fileio.write_json(FLAGS.output, report)
  print(json.dumps({key: report.get(key) for key in ("goal", "same_answers_as_ours")}))
  print(", ".join(f"{name}: {t.get('median_seconds')} s" for name, t in report["contenders"].items()))


if __name__ == "__main__":
  run_main(main)
