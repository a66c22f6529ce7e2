"""Benchmark: SQuAD training-feature conversion speed, memory and answer recovery, 1 vs 2 workers.

The 473-question dev-v1.1 sample is tiled to about 20k questions (each copy's contexts get a distinct
suffix so every context is tokenized, like the ~4.6 questions per context of the real train set).
The SentencePiece model is trained here with the original spm_train options (6000 pieces on the
WikiText-2 and Grimm corpora; the released 30k model cannot be downloaded on these machines) unless
--spm_model_file is given. Each worker count runs in a fresh process so peak RSS is its own; the
conversion is the full `prepare_train_features` path (read JSON, shuffle, convert, write TFRecord)
with the original defaults max_seq_length 384, doc_stride 128, max_query_length 64.

  python benchmarks/squad_features.py  # writes benchmarks/results/squad_features.json
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from albert.cli.definer import definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from albert.text.spm_training import ORIGINAL_OPTIONS  # noqa: E402

SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_string, "output_file", os.path.join(REPO_ROOT, "benchmarks", "results", "squad_features.json"),
        "Where the results go.")
_define(flags.DEFINE_string, "work_dir", None, "Scratch directory (default: a new temporary directory).")
_define(flags.DEFINE_string, "spm_model_file", None, "Use this SentencePiece model instead of training one.")
_define(flags.DEFINE_integer, "vocab_size", 6000, "Pieces of the SentencePiece model trained here (the two "
        "corpora support at most ~6500).", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "target_questions", 20000, "Tile the sample to about this many questions.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_list, "num_workers", ["1", "2"], "Worker counts to time.")
_define(flags.DEFINE_integer, "max_seq_length", 384, "Window length.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "doc_stride", 128, "Distance between window starts.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "max_query_length", 64, "Question pieces kept.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "measure_workers", None, "Internal: run one measurement in this process.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_string, "train_file", None, "Internal: the tiled train file of a measurement.")


def train_spm_model(work_dir, vocab_size):
  import sentencepiece as spm
  corpus = os.path.join(work_dir, "corpus.txt")
  with open(corpus, "w", encoding="utf-8") as out:
    for name in ("wikitext2-valid.txt", "grimm-fairy-tales.txt"):
      with open(os.path.join(SHARED_DATA, "corpus", name), encoding="utf-8") as f:
        out.write(f.read())
  prefix = os.path.join(work_dir, f"spm{vocab_size}")
  spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=vocab_size,
                                 input_sentence_size=1000000, minloglevel=2, num_threads=2,
                                 **ORIGINAL_OPTIONS)
  return prefix + ".model"


def tile_sample(work_dir, target_questions):
  """Copies of the v1.1 sample with distinct ids and contexts; returns (path, questions)."""
  sample = fileio.read_json(os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json"), "SQuAD sample")
  per_copy = sum(len(p["qas"]) for a in sample["data"] for p in a["paragraphs"])
  copies = max(1, round(target_questions / per_copy))
  articles = []
  for copy in range(copies):
    for article in sample["data"]:
      paragraphs = [{"context": p["context"] + f" (copy {copy})",
                     "qas": [dict(qa, id=f"{qa['id']}-{copy}") for qa in p["qas"]]}
                    for p in article["paragraphs"]]
      articles.append({"title": article["title"], "paragraphs": paragraphs})
  path = os.path.join(work_dir, "train-tiled.json")
  fileio.write_json(path, {"version": "1.1", "data": articles}, indent=None)
  return path, copies * per_copy


def current_rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_peak_rss_mb(parent_pid):
  """Largest VmHWM (peak RSS since exec) among the live child processes of `parent_pid`."""
  peak = 0.0
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      if ppid != parent_pid:
        continue
      with open(f"/proc/{entry}/status") as f:
        for line in f:
          if line.startswith("VmHWM:"):
            peak = max(peak, int(line.split()[1]) / 1024)
    except (OSError, IndexError, ValueError):
      continue  # the process ended while being read
  return peak


class WorkerMemoryWatcher(threading.Thread):
  """Samples the workers' peak RSS while they live (ru_maxrss of children is inflated by fork)."""

  def __init__(self):
    super().__init__(daemon=True)
    self.peak_mb = 0.0
    self.stopped = threading.Event()

  def run(self):
    while not self.stopped.wait(0.2):
      self.peak_mb = max(self.peak_mb, child_peak_rss_mb(os.getpid()))


def measure(num_workers):
  """One timed prepare_train_features run in this process; prints a JSON result line."""
  import tensorflow as tf  # noqa: F401  (imported up front so its memory is in the baseline)

  from albert import squad_utils
  from albert.tokenization import FullTokenizer
  tokenizer = FullTokenizer(spm_model_file=FLAGS.spm_model_file, do_lower_case=True)
  feature_file = os.path.join(FLAGS.work_dir, f"train-{num_workers}.tf_record")
  for stale in (feature_file, feature_file + ".info.json"):  # a cache would be reused, not timed
    if os.path.exists(stale):
      os.remove(stale)
  rss_before = current_rss_mb()
  watcher = WorkerMemoryWatcher()
  watcher.start()
  cpu_before = os.times()
  started = time.perf_counter()
  num_examples = squad_utils.prepare_train_features(
      FLAGS.train_file, feature_file, tokenizer, FLAGS.max_seq_length, FLAGS.doc_stride,
      FLAGS.max_query_length, num_workers=num_workers)
  seconds = time.perf_counter() - started
  cpu = os.times()
  watcher.stopped.set()
  stats = fileio.read_json(feature_file + ".info.json", "cache sidecar")["conversion"]
  print(json.dumps({
      "num_workers": num_workers, "seconds": round(seconds, 2), "questions": num_examples,
      "features": stats["features"], "questions_per_sec": round(num_examples / seconds, 1),
      "features_per_sec": round(stats["features"] / seconds, 1),
      "rss_before_conversion_mb": round(rss_before, 1),
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "peak_worker_rss_mb": round(watcher.peak_mb, 1) if num_workers > 1 else None,
      "cpu_seconds_main": round(cpu.user + cpu.system - cpu_before.user - cpu_before.system, 2),
      "cpu_seconds_workers": round(cpu.children_user + cpu.children_system
                                   - cpu_before.children_user - cpu_before.children_system, 2),
      "exact_answer_rate": stats["exact_answer_rate"], "answers_exact": stats["answers_exact"],
      "answers_inexact": stats["answers_inexact"], "truncated_questions": stats["truncated_questions"],
  }))


def main(argv):
  del argv
  if FLAGS.measure_workers:
    measure(FLAGS.measure_workers)
    return
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="squad_features_bench_")
  spm_model = FLAGS.spm_model_file
  spm_seconds = None
  if not spm_model:
    started = time.perf_counter()
    spm_model = train_spm_model(work_dir, FLAGS.vocab_size)
    spm_seconds = round(time.perf_counter() - started, 1)
  train_file, questions = tile_sample(work_dir, FLAGS.target_questions)
  runs = []
  for num_workers in FLAGS.num_workers:
    command = [sys.executable, os.path.abspath(__file__), f"--measure_workers={num_workers}",
               f"--work_dir={work_dir}", f"--spm_model_file={spm_model}", f"--train_file={train_file}",
               f"--max_seq_length={FLAGS.max_seq_length}", f"--doc_stride={FLAGS.doc_stride}",
               f"--max_query_length={FLAGS.max_query_length}"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    runs.append(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps(runs[-1]), flush=True)
  results = {
      "benchmark": "SQuAD training-feature conversion (prepare_train_features: read, shuffle, "
                   "convert, write TFRecord)",
      "data": f"dev-v1.1-sample.json tiled to {questions} questions, contexts distinct per copy",
      "spm_model": spm_model if FLAGS.spm_model_file else
                   f"{FLAGS.vocab_size}-piece unigram, original spm_train options, trained on "
                   "wikitext2-valid + grimm-fairy-tales",
      "spm_training_seconds": spm_seconds,
      "settings": {"max_seq_length": FLAGS.max_seq_length, "doc_stride": FLAGS.doc_stride,
                   "max_query_length": FLAGS.max_query_length},
      "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
      "runs": runs,
  }
  fileio.write_json(FLAGS.output_file, results)
  print(f"wrote {FLAGS.output_file}")


if __name__ == "__main__":
  run_main(main)
