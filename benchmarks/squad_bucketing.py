"""Benchmark: SQuAD prediction features/sec, padded to max_seq_length vs length-bucketed (--bucket_prediction).

  python benchmarks/squad_bucketing.py                  # base config, first 100 questions, ~5 min on 2 cores
  python benchmarks/squad_bucketing.py --config=tiny --questions=473

The real dev-v1.1 sample is converted once at 384/128/64 (the SentencePiece model is trained here with
the original options, 6000 pieces on the WikiText-2 and Grimm corpora, like benchmarks/squad_features.py;
fewer pieces would make windows longer than the released 30k vocabulary does). One v1 model with random
weights predicts every window both ways through `albert.tasks.squad.records.predict_windows`, the
call run_squad makes; only the model part is timed (conversion and post-processing are the same for
both). Both ways first predict one window of each bucket (tracing: one shape padded, one per bucket
bucketed), then they run round-robin, one pass of each per round; the median
counts. The figures and
the machine (CPU model, ISA, load average) go to benchmarks/results/squad_bucketing.json.
"""

import collections
import json
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from albert.cli.definer import definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from albert.text.spm_training import ORIGINAL_OPTIONS  # noqa: E402
from benchmarks.harness import configure_threads, load_average, machine, onednn_setting, squad_subset  # noqa: E402

SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
SEQ_LENGTH, DOC_STRIDE, QUERY_LENGTH = 384, 128, 64

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_enum, "config", "base", ["base", "tiny"], "Model size (random weights).")
_define(flags.DEFINE_integer, "questions", 100, "First questions of dev-v1.1-sample.json to predict.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "vocab_size", 6000, "Pieces of the SentencePiece model trained here on the WikiText-2 "
        "and Grimm corpora (as benchmarks/squad_features.py; the released 30k model cannot be downloaded).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "batch_size", 8, "--predict_batch_size.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "repeats", 1, "Timed rounds; the median counts.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "threads", 2, "TensorFlow intra-op threads (inter-op: 1).", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_string, "output", os.path.join(REPO_ROOT, "benchmarks", "results", "squad_bucketing.json"),
        "Where the results go.")


def model_config(name):
  from albert.model.config import AlbertConfig, preset
  if name == "base":
    return preset("base")
  return AlbertConfig(vocab_size=FLAGS.vocab_size, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
                      num_attention_heads=4, intermediate_size=64, inner_group_num=1, hidden_act="gelu",
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=512,
                      type_vocab_size=2, initializer_range=0.02)


def prepare(work_dir, tokenizer, questions, name):
  from albert.tasks.squad import records
  predict_file = os.path.join(work_dir, f"{name}.json")
  count = squad_subset(os.path.join(SHARED_DATA, "squad", "dev-v1.1-sample.json"), predict_file, questions)
  features = records.prepare_predict_features(
      predict_file, os.path.join(work_dir, f"{name}.tf_record"), os.path.join(work_dir, f"{name}_left.jsonl"),
      tokenizer, SEQ_LENGTH, DOC_STRIDE, QUERY_LENGTH)
  return count, features


def window_records(feature_file):
  """(serialized record, real length) of every window of a feature file."""
  import tensorflow as tf
  for record in tf.data.TFRecordDataset(feature_file):
    example = tf.train.Example.FromString(record.numpy())
    yield record.numpy(), sum(example.features.feature["input_mask"].int64_list.value)


def warmup_file(feature_file, bucketing, path):
  """A feature file with the first window of each length bucket: predicting it traces every shape."""
  import tensorflow as tf
  firsts = {}
  for record, length in window_records(feature_file):
    firsts.setdefault(int(bucketing.length_of(length)), record)
  with tf.io.TFRecordWriter(path) as writer:
    for record in firsts.values():
      writer.write(record)
  return path


def timed_rounds(contenders, repeats):
  """`repeats` rounds of one pass of each contender (interleaved, like harness.round_robin, but without
  its full warmup pass: the warmup file traced every shape); returns timings and each first output."""
  timings, outputs = {name: {"seconds": [], "cpu_seconds": []} for name in contenders}, {}
  for round_index in range(repeats):
    for name, run in contenders.items():
      started, cpu_started = time.perf_counter(), time.process_time()
      outputs.setdefault(name, run())
      timings[name]["seconds"].append(round(time.perf_counter() - started, 3))
      timings[name]["cpu_seconds"].append(round(time.process_time() - cpu_started, 3))
    print(f"  round {round_index + 1}/{repeats}: " + ", ".join(
        f"{name} {timings[name]['seconds'][-1]:.1f}s" for name in contenders), flush=True)
  for timing in timings.values():
    timing["median_seconds"] = statistics.median(timing["seconds"])
  return timings, outputs


def main(_):
  import sentencepiece as spm
  import tensorflow as tf

  from albert.io.input_pipeline import Bucketing
  from albert.tasks.squad import records
  from albert.tasks.squad.task import SquadV1Task
  from albert.tokenization import FullTokenizer
  from albert.training.trainer import Trainer

  threads = configure_threads(FLAGS.threads)["tensorflow"]
  work_dir = tempfile.mkdtemp(prefix="squad_bucketing_")
  corpus = os.path.join(work_dir, "corpus.txt")
  with open(corpus, "w", encoding="utf-8") as out:
    for name in ("wikitext2-valid.txt", "grimm-fairy-tales.txt"):
      with open(os.path.join(SHARED_DATA, "corpus", name), encoding="utf-8") as f:
        out.write(f.read())
  spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(work_dir, "spm"),
                                 vocab_size=FLAGS.vocab_size, minloglevel=2, num_threads=2, **ORIGINAL_OPTIONS)
  tokenizer = FullTokenizer(spm_model_file=os.path.join(work_dir, "spm.model"), do_lower_case=True)
  questions, features = prepare(work_dir, tokenizer, FLAGS.questions, "predict")

  tf.random.set_seed(0)
  trainer = Trainer(SquadV1Task(model_config(FLAGS.config)), tf.distribute.get_strategy(), work_dir,
                    learning_rate=1e-5, num_train_steps=1, num_warmup_steps=0)
  trainer.initialize()  # fresh random weights: speed does not depend on them
  bucketing = Bucketing(SEQ_LENGTH)

  def predictor(feature_file, buckets):
    return lambda: {int(r["unique_ids"]): r["start_logits"] for r in records.predict_windows(
        trainer, feature_file, SEQ_LENGTH, FLAGS.batch_size, use_p_mask=False, bucketing=buckets)}

  warmup = warmup_file(features.feature_file, bucketing, os.path.join(work_dir, "warmup.tf_record"))
  for name, buckets in (("padded", None), ("bucketed", bucketing)):
    started = time.perf_counter()
    predictor(warmup, buckets)()
    print(f"  traced {name} ({time.perf_counter() - started:.1f}s)", flush=True)
  load_before = load_average()
  contenders = {"padded": predictor(features.feature_file, None),
                "bucketed": predictor(features.feature_file, bucketing)}
  timings, outputs = timed_rounds(contenders, FLAGS.repeats)
  difference = max(float(np.abs(outputs["bucketed"][uid] - logits[:len(outputs["bucketed"][uid])]).max())
                   for uid, logits in outputs["padded"].items())
  lengths = [length for _, length in window_records(features.feature_file)]
  buckets = collections.Counter(int(bucketing.length_of(n)) for n in lengths)
  for timing in timings.values():
    timing["features_per_sec"] = round(features.num_features / timing["median_seconds"], 3)
  results = {
      "machine": machine(), "threads": threads, "onednn": onednn_setting(), "tensorflow": tf.__version__,
      "config": FLAGS.config, "questions": questions, "features": features.num_features,
      "max_seq_length": SEQ_LENGTH, "doc_stride": DOC_STRIDE, "max_query_length": QUERY_LENGTH,
      "batch_size": FLAGS.batch_size, "mean_window_length": round(float(np.mean(lengths)), 1),
      "padding_share_padded": round(1 - float(np.mean(lengths)) / SEQ_LENGTH, 3),
      "windows_per_bucket": dict(sorted(buckets.items())),
      "timings": timings,
      "speedup": round(timings["padded"]["median_seconds"] / timings["bucketed"]["median_seconds"], 3),
      "max_abs_logit_difference": difference,
      "load_before": load_before, "load_after": load_average(),
  }
  fileio.write_json(FLAGS.output, results)
  print(json.dumps({key: results[key] for key in ("features", "mean_window_length", "windows_per_bucket",
                                                   "speedup", "max_abs_logit_difference")}))
  print(", ".join(f"{name}: {t['features_per_sec']} features/s" for name, t in timings.items()))


if __name__ == "__main__":
  run_main(main)
