"""Benchmark: does a tiny ALBERT learn from run_pretraining's task and input pipeline on CPU?

WikiText-2 validation (one sentence per line, blank lines between documents) is split by document: the
last `--heldout_documents` documents are held out, the rest train. A SentencePiece model with the
original spm_train options (plus `<rare>`, see below) is trained on the training documents (`albert.train_spm`), both parts go
through `albert.create_pretraining_data` (SOP pairs, n-gram masking), and a tiny ALBERT is pretrained
with `run_pretraining`'s PretrainingTask and input pipeline under the Trainer for about
`--train_minutes`. Held-out masked-LM and sentence-order accuracy are measured at intervals; the curve
(steps, accuracies, losses, examples/sec of each interval) goes to benchmarks/results/pretraining.json.

WikiText marks rare words with `<unk>`, 13% of this file's words. SentencePiece reserves that string for
its own unknown piece and would split it into five pieces (`▁ < un k >`), so the benchmark writes it as
`<rare>`, a user-defined symbol: one piece, as a user preparing WikiText would do.

  python benchmarks/pretraining.py  # about 4 minutes on 2 CPU cores
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time

from absl import flags, logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from albert.cli import flags as albert_flags  # noqa: E402
from albert.cli.definer import definer  # noqa: E402
from albert.core import bounds, fileio  # noqa: E402
from albert.core.errors import run_main  # noqa: E402
from albert.model.config import AlbertConfig  # noqa: E402
from albert.tasks.pretraining import inputs as pretraining_inputs  # noqa: E402
from albert.tasks.pretraining.task import PretrainingTask  # noqa: E402
from albert.training import trainer  # noqa: E402

SHARED_DATA = os.environ.get("ALBERT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
CORPUS = os.path.join(SHARED_DATA, "corpus", "wikitext2-valid.txt")

RARE_WORD = "<rare>"
ORIGINAL_USER_SYMBOLS = '(,),",-,.,\u2013,\u00a3,\u20ac'

FLAGS = flags.FLAGS
_define = definer()
_define(flags.DEFINE_string, "output_file", os.path.join(REPO_ROOT, "benchmarks", "results", "pretraining.json"),
        "Where the results go.")
_define(flags.DEFINE_string, "work_dir", None, "Scratch directory (default: a new temporary directory).")
_define(flags.DEFINE_integer, "heldout_documents", 6, "Documents at the end of the corpus kept for evaluation.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "vocab_size", 2500, "SentencePiece pieces (this corpus allows about 2670).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "max_seq_length", 64, "Sequence length of the pretraining data.",
        bound=bounds.at_least(5))
_define(flags.DEFINE_integer, "max_predictions_per_seq", 10, "Masked-LM prediction slots.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "dupe_factor", 10, "Passes over the training documents (different masks each).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "heldout_dupe_factor", 4, "Passes over the held-out documents (more pairs and masks).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "train_batch_size", 64, "Training batch size.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "eval_batch_size", 64, "Evaluation batch size.", bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_enum, "optimizer", "lamb", ["adamw", "lamb"], "Optimizer.")
_define(flags.DEFINE_float, "learning_rate", 3e-3, "Peak learning rate.", bound=bounds.POSITIVE)
_define(flags.DEFINE_integer, "num_train_steps", 700, "Steps of the learning-rate schedule (decays to 0 there).",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_integer, "num_warmup_steps", 70, "Warmup steps.", bound=bounds.NON_NEGATIVE)
_define(flags.DEFINE_float, "train_minutes", 12.0, "Stop training after the interval that passes this budget.",
        bound=bounds.POSITIVE)
_define(flags.DEFINE_integer, "eval_every_steps", 100, "Training steps between held-out evaluations.",
        bound=bounds.AT_LEAST_ONE)
_define(flags.DEFINE_float, "dropout_prob", 0.0, "Hidden and attention-probability dropout of the model, in [0, 1).",
        bound=bounds.DROPOUT)
# NumPy's seeds are 32-bit unsigned.
_define(flags.DEFINE_integer, "seed", 1, "Seed of the initial weights and the training-data shuffle.",
        bound=bounds.Bound(low=0, high=2**32 - 1))

MODEL = dict(embedding_size=64, hidden_size=128, num_hidden_layers=4, num_hidden_groups=1,
             num_attention_heads=4, intermediate_size=512, inner_group_num=1, hidden_act="gelu",
             max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)


def model_settings():
  return dict(MODEL, hidden_dropout_prob=FLAGS.dropout_prob, attention_probs_dropout_prob=FLAGS.dropout_prob)


def split_documents(corpus, heldout_documents, work_dir):
  """Writes train.txt and heldout.txt: whole documents, the held-out ones from the end of the corpus."""
  with open(corpus, encoding="utf-8") as f:
    documents = [d.strip("\n") for d in f.read().replace("<unk>", RARE_WORD).split("\n\n") if d.strip()]
  if len(documents) <= heldout_documents:
    raise SystemExit(f"{corpus} has only {len(documents)} documents")
  parts = {"train": documents[:-heldout_documents], "heldout": documents[-heldout_documents:]}
  paths = {}
  for name, part in parts.items():
    paths[name] = os.path.join(work_dir, f"{name}.txt")
    fileio.write_text(paths[name], "\n\n".join(part) + "\n")
  return paths, {name: len(part) for name, part in parts.items()}


def run_module(module, **flag_values):
  """Runs one of the suite's command-line tools, failing loudly."""
  args = [sys.executable, "-m", module] + [f"--{name}={value}" for name, value in flag_values.items()]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
  result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
  if result.returncode:
    raise SystemExit(f"{module} failed:\n{result.stderr[-3000:]}")


def prepare_data(work_dir):
  texts, documents = split_documents(CORPUS, FLAGS.heldout_documents, work_dir)
  prefix = os.path.join(work_dir, "spm")
  run_module("albert.train_spm", input=texts["train"], model_prefix=prefix, vocab_size=FLAGS.vocab_size,
             num_threads=2, user_defined_symbols=f"{ORIGINAL_USER_SYMBOLS},{RARE_WORD}")
  records = {}
  for name, dupe_factor in (("train", FLAGS.dupe_factor), ("heldout", FLAGS.heldout_dupe_factor)):
    records[name] = os.path.join(work_dir, f"{name}.tfrecord")
    run_module("albert.create_pretraining_data", input_file=texts[name], output_file=records[name],
               spm_model_file=prefix + ".model", max_seq_length=FLAGS.max_seq_length,
               max_predictions_per_seq=FLAGS.max_predictions_per_seq, dupe_factor=dupe_factor,
               random_seed=12345)
  return records, documents


def label_counts(path, limit=None):
  """(records, records with SOP label 1, masked-LM label counts) of the first `limit` records of a file."""
  import collections

  import tensorflow as tf
  spec = {"next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
          "masked_lm_ids": tf.io.FixedLenFeature([FLAGS.max_predictions_per_seq], tf.int64),
          "masked_lm_weights": tf.io.FixedLenFeature([FLAGS.max_predictions_per_seq], tf.float32)}
  records, swapped, masked = 0, 0, collections.Counter()
  for record in tf.data.TFRecordDataset(path).take(-1 if limit is None else limit):
    parsed = tf.io.parse_single_example(record, spec)
    records += 1
    swapped += int(parsed["next_sentence_labels"][0])
    masked.update(int(i) for i, w in zip(parsed["masked_lm_ids"].numpy(), parsed["masked_lm_weights"].numpy()) if w)
  return records, swapped, masked


def pretrain(records, work_dir):
  """Trains in intervals of eval_every_steps and evaluates the whole held-out set after each."""
  config = AlbertConfig(vocab_size=FLAGS.vocab_size, **model_settings())
  task = PretrainingTask(config)
  import tensorflow as tf
  albert_flags.set_seed(FLAGS.seed)
  pretrainer = trainer.Trainer(
      task, tf.distribute.get_strategy(), os.path.join(work_dir, "model"), learning_rate=FLAGS.learning_rate,
      num_train_steps=FLAGS.num_train_steps, num_warmup_steps=FLAGS.num_warmup_steps,
      optimizer=FLAGS.optimizer, save_checkpoints_steps=FLAGS.num_train_steps, keep_checkpoint_max=1,
      iterations_per_loop=FLAGS.eval_every_steps, log_every_n_steps=FLAGS.eval_every_steps)
  pretrainer.initialize()
  sizes = (FLAGS.max_seq_length, FLAGS.max_predictions_per_seq)
  train_input = pretraining_inputs.input_fn_builder([records["train"]], *sizes, FLAGS.train_batch_size,
                                                 is_training=True, seed=FLAGS.seed)
  eval_input = pretraining_inputs.input_fn_builder([records["heldout"]], *sizes, FLAGS.eval_batch_size,
                                                is_training=False)
  eval_steps = label_counts(records["heldout"])[0] // FLAGS.eval_batch_size
  curve = [evaluation_point(pretrainer, eval_input, eval_steps, None)]
  started = time.time()
  while pretrainer.global_step < FLAGS.num_train_steps and time.time() - started < 60 * FLAGS.train_minutes:
    interval_start, first_step = time.time(), pretrainer.global_step
    # The schedule keeps num_train_steps; only this call's stopping step moves forward.
    pretrainer.num_train_steps = min(first_step + FLAGS.eval_every_steps, FLAGS.num_train_steps)
    pretrainer.train(train_input, FLAGS.train_batch_size)
    speed = (pretrainer.global_step - first_step) * FLAGS.train_batch_size / (time.time() - interval_start)
    curve.append(evaluation_point(pretrainer, eval_input, eval_steps, speed))
  return curve, time.time() - started, eval_steps * FLAGS.eval_batch_size


def evaluation_point(pretrainer, eval_input, eval_steps, examples_per_second):
  scores = pretrainer.evaluate(eval_input, steps=eval_steps)
  point = {"step": pretrainer.global_step, **{name: round(float(scores[name]), 4) for name in (
      "masked_lm_accuracy", "sentence_order_accuracy", "masked_lm_loss", "sentence_order_loss")}}
  point["train_examples_per_second"] = None if examples_per_second is None else round(examples_per_second, 1)
  logging.info("held-out at step %d: %s", point["step"], point)
  return point


def z_against_baseline(accuracy, baseline, examples):
  """Standard scores of `accuracy` over `examples` above a constant predictor that scores `baseline`.

  Under the null hypothesis that the model is no better than always answering the majority class,
  the number correct is binomial(examples, baseline); z > 2 is unlikely (p < 0.023) by chance.
  The held-out instances of the `--heldout_dupe_factor` passes repeat the same sentence pairs, so
  the caller passes their number divided by the passes: a conservative count of independent ones.
  """
  return round((accuracy - baseline) / math.sqrt(baseline * (1 - baseline) / examples), 2)


def binary_entropy(p):
  """Cross-entropy (nats) of always predicting the class frequencies: the loss a model that learned
  nothing about sentence order reaches on the held-out set."""
  return round(-(p * math.log(p) + (1 - p) * math.log(1 - p)), 4)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="albert_pretraining_bench_")
  os.makedirs(work_dir, exist_ok=True)
  started = time.time()
  records, documents = prepare_data(work_dir)
  data_seconds = time.time() - started
  curve, train_seconds, heldout_examples = pretrain(records, work_dir)
  start, end = curve[0], curve[-1]
  peak = max(curve, key=lambda point: point["sentence_order_accuracy"])
  # Evaluation reads the held-out file in order, so its first `heldout_examples` records were scored.
  heldout_records, heldout_swapped, heldout_masked = label_counts(records["heldout"], heldout_examples)
  # Label 1 (swapped, or a random-document B for single-sentence chunks) is the majority class, so
  # always answering 1 already beats 0.5; the baseline tells how much SOP accuracy is learned.
  # Likewise answering the most frequent piece for every masked token is the first plateau of MLM.
  mlm_baseline = round(heldout_masked.most_common(1)[0][1] / sum(heldout_masked.values()), 4)
  sop_baseline = round(max(heldout_swapped, heldout_records - heldout_swapped) / heldout_records, 4)
  results = {
      "what": "tiny ALBERT pretrained on WikiText-2 valid (train documents), evaluated on held-out documents",
      "model": {"vocab_size": FLAGS.vocab_size, **model_settings()},
      "data": {"train_documents": documents["train"], "heldout_documents": documents["heldout"],
               "train_instances": label_counts(records["train"])[0],
               "heldout_instances_evaluated": heldout_examples,
               "max_seq_length": FLAGS.max_seq_length, "max_predictions_per_seq": FLAGS.max_predictions_per_seq,
               "dupe_factor": FLAGS.dupe_factor, "heldout_dupe_factor": FLAGS.heldout_dupe_factor,
               "seconds_to_prepare": round(data_seconds, 1)},
      "training": {"optimizer": FLAGS.optimizer, "learning_rate": FLAGS.learning_rate,
                   "train_batch_size": FLAGS.train_batch_size, "num_train_steps": FLAGS.num_train_steps,
                   "num_warmup_steps": FLAGS.num_warmup_steps, "seed": FLAGS.seed, "steps_done": end["step"],
                   "seconds": round(train_seconds, 1), "cpu_count": os.cpu_count(),
                   "load_average_1min_at_end": round(os.getloadavg()[0], 1)},
      "curve": curve,
      "summary": {"heldout_masked_lm_accuracy": [start["masked_lm_accuracy"], end["masked_lm_accuracy"]],
                  "heldout_sentence_order_accuracy": [start["sentence_order_accuracy"],
                                                      end["sentence_order_accuracy"]],
                  "heldout_sentence_order_majority_baseline": sop_baseline,
                  "heldout_masked_lm_most_frequent_piece_baseline": mlm_baseline,
                  "masked_lm_above_start": end["masked_lm_accuracy"] > 2 * start["masked_lm_accuracy"] + 0.05,
                  "masked_lm_above_most_frequent_piece": end["masked_lm_accuracy"] > mlm_baseline,
                  "sentence_order_above_0.5": end["sentence_order_accuracy"] > 0.5,
                  "sentence_order_above_majority_baseline": end["sentence_order_accuracy"] > sop_baseline,
                  "sentence_order_z_against_majority": z_against_baseline(
                      end["sentence_order_accuracy"], sop_baseline, heldout_records / FLAGS.heldout_dupe_factor),
                  # Read off the whole curve with hindsight (not a stopping rule): where SOP was best.
                  "heldout_sentence_order_peak": {key: peak[key] for key in (
                      "step", "sentence_order_accuracy", "sentence_order_loss")},
                  "heldout_sentence_order_loss_of_class_frequencies": binary_entropy(sop_baseline)},
  }
  fileio.write_json(FLAGS.output_file, results)
  print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
  run_main(main)
