"""From nothing to SQuAD scores with one command: `python -m albert.quickstart [--output_dir=...]`.

Uses only the small data set shipped in `albert/data/quickstart/` (original text written for this
project) and runs the real command-line tools, with their original flags, one after another:
train a SentencePiece model, create pretraining data, pretrain a tiny ALBERT, fine-tune it on SQuAD 1.1
questions and score it on held-out paragraphs it never saw. Each tool runs as a subprocess so the
quickstart exercises exactly what users run; `<output_dir>/commands.sh` lists the commands and
`<output_dir>/logs/` keeps their full output.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time

from absl import flags

from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import UserError, run_main
from albert.core.progress import format_duration
from albert.model.config import CONFIG_FILENAME, AlbertConfig

FLAGS = flags.FLAGS

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "quickstart")
CORPUS = os.path.join(DATA_DIR, "corpus.txt")
SQUAD_TRAIN = os.path.join(DATA_DIR, "squad_train.json")
SQUAD_HELDOUT = os.path.join(DATA_DIR, "squad_heldout.json")

# Cased: the SentencePiece model is trained on the cased corpus, and capitals mark the names that many
# questions ask for.
DO_LOWER_CASE = False
VOCAB_SIZE = 1000
PRETRAIN_SEQ_LENGTH = 64
PRETRAIN_PREDICTIONS = 10
SQUAD_SEQ_LENGTH = 128
MODEL_CONFIG = AlbertConfig(
    vocab_size=VOCAB_SIZE, embedding_size=64, hidden_size=128, num_hidden_layers=4, num_hidden_groups=1,
    num_attention_heads=4, intermediate_size=512, inner_group_num=1, hidden_act="gelu",
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=SQUAD_SEQ_LENGTH,
    type_vocab_size=2, initializer_range=0.02)

# Lines of the tools' logs worth showing as progress (the absl prefix is stripped).
PROGRESS_LINE = re.compile(r"\] (step \d+/\d+ .*|wrote .*|training on .*|scores of .*)$")

RELEASED_MODELS_URL = "https://storage.googleapis.com/albert_models/"


def define_flags(flag_values=None):
  define = definer(flag_values)
  define(flags.DEFINE_string, "output_dir", "albert_quickstart",
         "New (or empty) directory for every artifact: vocabulary, data, checkpoints, scores, logs.")
  define(flags.DEFINE_integer, "pretrain_steps", 400, "Pretraining steps of the tiny ALBERT (batch size 32).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_float, "finetune_epochs", 40.0, "Epochs of SQuAD fine-tuning on the shipped training questions.",
         bound=bounds.POSITIVE)


@dataclasses.dataclass
class Stage:
  """One command-line tool run: its module and flags; `seconds` is its wall time once it ran."""
  name: str
  module: str
  args: list
  seconds: float = 0.0

  def command(self):
    return [sys.executable, "-m", self.module, *self.args]


def plan(output_dir, pretrain_steps, finetune_epochs):
  """The four stages, with the original flags of each tool."""
  paths = artifact_paths(output_dir)
  spm = [f"--spm_model_file={paths['spm_model']}", f"--do_lower_case={DO_LOWER_CASE}"]
  return [
      Stage("train SentencePiece model", "albert.train_spm", [
          f"--input={CORPUS}", f"--model_prefix={paths['spm_prefix']}", f"--vocab_size={VOCAB_SIZE}",
          f"--do_lower_case={DO_LOWER_CASE}"]),
      Stage("create pretraining data", "albert.create_pretraining_data", [
          f"--input_file={CORPUS}", f"--output_file={paths['pretraining_data']}", *spm,
          f"--max_seq_length={PRETRAIN_SEQ_LENGTH}", f"--max_predictions_per_seq={PRETRAIN_PREDICTIONS}",
          "--dupe_factor=10", "--random_seed=12345"]),
      Stage("pretrain ALBERT", "albert.run_pretraining", [
          f"--albert_config_file={paths['config']}", f"--input_file={paths['pretraining_data']}",
          f"--output_dir={paths['pretraining_dir']}", "--do_train", "--do_eval",
          f"--max_seq_length={PRETRAIN_SEQ_LENGTH}", f"--max_predictions_per_seq={PRETRAIN_PREDICTIONS}",
          "--train_batch_size=32", "--eval_batch_size=64", "--max_eval_steps=10", "--optimizer=lamb",
          "--learning_rate=0.005", f"--num_train_steps={pretrain_steps}",
          f"--num_warmup_steps={max(1, pretrain_steps // 10)}", f"--save_checkpoints_steps={pretrain_steps}",
          "--log_every_n_steps=50"]),
      Stage("fine-tune and evaluate on SQuAD 1.1", "albert.run_squad_v1", [
          f"--albert_config_file={paths['config']}", f"--init_checkpoint={paths['pretrained_checkpoint']}",
          *spm, f"--train_file={SQUAD_TRAIN}", f"--predict_file={SQUAD_HELDOUT}",
          f"--output_dir={paths['squad_dir']}", "--do_train", "--do_predict",
          f"--max_seq_length={SQUAD_SEQ_LENGTH}", "--doc_stride=64", "--max_query_length=32",
          "--train_batch_size=32", "--predict_batch_size=32", "--learning_rate=5e-4",
          f"--num_train_epochs={finetune_epochs}", "--warmup_proportion=0.1", "--save_checkpoints_steps=1000",
          "--n_best_size=20", "--max_answer_length=10", "--log_every_n_steps=50"]),
  ]


def artifact_paths(output_dir):
  pretraining_dir = os.path.join(output_dir, "pretraining")
  spm_prefix = os.path.join(output_dir, "spm")
  return {
      "spm_prefix": spm_prefix,
      "spm_model": spm_prefix + ".model",
      "config": os.path.join(output_dir, CONFIG_FILENAME),
      "pretraining_data": os.path.join(output_dir, "pretraining_data.tfrecord"),
      "pretraining_dir": pretraining_dir,
      "pretrained_checkpoint": os.path.join(pretraining_dir, "model.ckpt-best"),
      "squad_dir": os.path.join(output_dir, "squad"),
      "logs": os.path.join(output_dir, "logs"),
  }


def check_flags():
  bounds.check_output_directory("output_dir", FLAGS.output_dir)
  if os.path.isdir(FLAGS.output_dir) and os.listdir(FLAGS.output_dir):
    raise UserError(f"--output_dir={FLAGS.output_dir} is not empty; give a new directory or remove it, "
                    "so no earlier run is resumed")
  for path in (CORPUS, SQUAD_TRAIN, SQUAD_HELDOUT):
    if not os.path.isfile(path):
      raise UserError(f"quickstart data file missing: {path} (reinstall the albert package)")


def tool_environment():
  """The tools must import this same `albert`, installed or not, and keep TensorFlow's C++ logs quiet."""
  env = dict(os.environ)
  package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return env


def run_stage(index, total, stage, log_dir, env):
  """Runs the tool, keeps its whole output in a log, echoes progress lines; fails with the log's tail."""
  print(f"[{index}/{total}] {stage.name}: python -m {stage.module}", flush=True)
  log_path = os.path.join(log_dir, f"{index}_{stage.module.split('.')[-1]}.log")
  started = time.monotonic()
  tail = []
  with open(log_path, "w", encoding="utf-8") as log:
    process = subprocess.Popen(stage.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    for line in process.stdout:
      log.write(line)
      tail = (tail + [line.rstrip()])[-5:]
      progress = PROGRESS_LINE.search(line)
      if progress:
        print(f"      {progress.group(1)}", flush=True)
    returncode = process.wait()
  stage.seconds = time.monotonic() - started
  if returncode != 0:
    print("\n".join(f"      | {line}" for line in tail), file=sys.stderr, flush=True)
    raise UserError(f"{stage.module} failed (exit {returncode}); full log: {log_path}")
  print(f"      done in {format_duration(stage.seconds)}", flush=True)


def write_commands(path, stages):
  """A shell script repeating the run, so users can adapt each step to their own data."""
  lines = ["#!/usr/bin/env bash",
           "# The commands albert.quickstart ran, in order (it wrote albert_config.json itself).",
           "set -euo pipefail"]
  for stage in stages:
    lines.append(f"# {stage.name}")
    lines.append(" \\\n  ".join([f"python -m {stage.module}", *(shlex.quote(arg) for arg in stage.args)]))
  fileio.write_text(path, "\n".join(lines) + "\n")


def count_questions(path):
  dataset = fileio.read_json(path, what="quickstart data")
  return sum(len(paragraph["qas"]) for article in dataset["data"] for paragraph in article["paragraphs"])


def report(output_dir, stages, scores, total_seconds):
  paths = artifact_paths(output_dir)
  squad_dir = paths["squad_dir"]
  print()
  print(f"Quickstart finished in {format_duration(total_seconds)}.")
  print(f"Held-out SQuAD 1.1 questions ({count_questions(SQUAD_HELDOUT)} questions on paragraphs never "
        "seen in fine-tuning):")
  print(f"  exact match {scores['exact_match']:6.2f}")
  print(f"  F1          {scores['f1']:6.2f}")
  print("Time per stage:")
  for stage in stages:
    print(f"  {stage.name:<38} {format_duration(stage.seconds):>7}")
  print("Artifacts:")
  for label, where in (
      ("SentencePiece model", f"{paths['spm_model']} (+ .vocab)"),
      ("model config", paths["config"]),
      ("pretraining data", paths["pretraining_data"]),
      ("pretrained checkpoint", f"{paths['pretrained_checkpoint']} (scores: "
                                f"{os.path.join(paths['pretraining_dir'], 'eval_results.txt')})"),
      ("fine-tuned checkpoints", os.path.join(squad_dir, "model.ckpt-*")),
      ("predictions", f"{os.path.join(squad_dir, 'predictions.json')}, nbest_predictions.json"),
      ("SQuAD scores", os.path.join(squad_dir, "eval_results.json")),
      ("TensorBoard summaries", f"tensorboard --logdir {output_dir}"),
      ("commands that were run", os.path.join(output_dir, "commands.sh")),
      ("full logs", paths["logs"])):
    print(f"  {label:<24} {where}")
  print(NEXT_STEPS.format(url=RELEASED_MODELS_URL))


NEXT_STEPS = """
Next, with real data:
  1. Download a released model, e.g. {url}albert_base_v2.tar.gz (also albert_large_v2,
     albert_xlarge_v2, albert_xxlarge_v2; TF-Hub: https://tfhub.dev/google/albert_base/3), and
     SQuAD 1.1 (train-v1.1.json, dev-v1.1.json).
  2. Fine-tune it with the original README's command:
     python -m albert.run_squad_v1 \\
       --albert_config_file=albert_base/albert_config.json \\
       --init_checkpoint=albert_base/model.ckpt-best \\
       --spm_model_file=albert_base/30k-clean.model \\
       --train_file=train-v1.1.json --predict_file=dev-v1.1.json \\
       --output_dir=squad_out --do_lower_case --do_train --do_predict \\
       --max_seq_length=384 --doc_stride=128 --max_query_length=64 \\
       --train_batch_size=48 --predict_batch_size=8 --learning_rate=5e-5 --num_train_epochs=2.0 \\
       --warmup_proportion=.1 --save_checkpoints_steps=5000 --n_best_size=20 --max_answer_length=30
  3. To pretrain on your own text instead, run the commands in commands.sh on your corpus
     (one sentence per line, blank line between documents) with the released sizes: --vocab_size=30000,
     --max_seq_length=512, --max_predictions_per_seq=20, --train_batch_size=4096 --num_train_steps=125000."""


def main(argv):
  del argv
  check_flags()
  output_dir = FLAGS.output_dir
  paths = artifact_paths(output_dir)
  os.makedirs(paths["logs"], exist_ok=True)
  MODEL_CONFIG.to_json_file(paths["config"])
  stages = plan(output_dir, FLAGS.pretrain_steps, FLAGS.finetune_epochs)
  write_commands(os.path.join(output_dir, "commands.sh"), stages)
  print(f"albert quickstart: everything goes to {os.path.abspath(output_dir)}", flush=True)
  env = tool_environment()
  started = time.monotonic()
  for index, stage in enumerate(stages, start=1):
    run_stage(index, len(stages), stage, paths["logs"], env)
  scores = fileio.read_json(os.path.join(paths["squad_dir"], "eval_results.json"), what="SQuAD scores")
  report(output_dir, stages, scores, time.monotonic() - started)


if __name__ == "__main__":
  define_flags()
  run_main(main)
