"""Why does a fine-tuned SQuAD model fail? Per-example loss, latent map, clusters, attributions, labels.

    python -m albert.analyze_squad --albert_config_file=... --init_checkpoint=<fine-tuned> \
        --spm_model_file=... --predict_file=dev-v1.1.json --output_dir=analysis

writes to --output_dir:
- records.jsonl / records.csv: per question id, title, question, references, prediction, EM, F1,
  loss, confidence, cluster and 2-D map coordinates;
- latent_pooled.tsv, latent_mean.tsv, projector_metadata.tsv, projector_config.pbtxt: the latent
  vectors for the TensorBoard Projector (`tensorboard --logdir <output_dir>`);
- summary.json: scores, clusters, per-title ranking, suspicious labels, near-misses, similar examples;
- attributions.jsonl and attributions/*.html: gradient x input heat maps of question and context;
- report.html: everything above on one page that opens offline.

Definitions (also in summary.json):
- An example's *window* is the first window of its context that contains the first reference answer
  (the first window when none does, or for unanswerable questions). Its loss, latent vectors and
  attributions are the example's. The loss is the fine-tuning loss of that window alone: v1
  (start CE + end CE) / 2, v2 0.5·(start NLL + end NLL) + 0.5·answer-class CE.
- *Confidence* is the n-best probability of the predicted span (v1); in v2 it is multiplied by
  sigmoid(-null score) for a span, and is sigmoid(null score) for a null answer.
- v2 predictions use the null-score threshold that maximizes F1 on the analyzed file.
"""

import json
import os
import re

from absl import flags, logging
import numpy as np
import tensorflow as tf

from albert import checkpoint, fileio, model_setup, squad_eval, squad_postprocess, squad_utils, trainer
from albert import flags as shared_flags
from albert.analysis import attribution, exports, findings, latent, report
from albert.analysis.inference import LABEL_KEYS, AnalysisTask
from albert.errors import UserError, require_file, run_main

FLAGS = flags.FLAGS
LATENTS = ("mean", "pooled")
CLUSTER_CANDIDATES = range(2, 11)
HIGHEST_LOSS_SHOWN = 15
SUMMARY_FILE = "summary.json"
ATTRIBUTIONS_FILE = "attributions.jsonl"
ATTRIBUTIONS_DIR = "attributions"
REPORT_FILE = "report.html"
V1_HEAD_VARIABLE = "cls/squad/output_weights"
V2_HEAD_VARIABLE = "start_logits/dense/kernel"


def define_flags():
  shared_flags.define_model_flags()
  flags.DEFINE_string("predict_file", None, "SQuAD 1.1 or 2.0 json WITH answers to analyze (e.g. dev-v1.1.json).")
  flags.DEFINE_enum("version", "auto", ["auto", "1", "2"],
                    "SQuAD head of the fine-tuned checkpoint; 'auto' reads it from --init_checkpoint.")
  flags.DEFINE_integer("max_seq_length", 384, "Window length; use the fine-tuning value.")
  flags.DEFINE_integer("doc_stride", 128, "How far apart consecutive windows of a long document start.")
  flags.DEFINE_integer("max_query_length", 64, "Questions longer than this many tokens are truncated.")
  flags.DEFINE_integer("predict_batch_size", 8, "Windows per prediction batch.")
  flags.DEFINE_integer("n_best_size", 20, "The total number of n-best predictions to generate.")
  flags.DEFINE_integer("max_answer_length", 30, "The maximum length of an answer that can be generated.")
  flags.DEFINE_integer("start_n_top", 5, "v2: beam size for the start position.")
  flags.DEFINE_integer("end_n_top", 5, "v2: beam size for the end position.")
  flags.DEFINE_enum("latent", "mean", list(LATENTS),
                    "Latent vectors for the map, clusters and neighbours: 'mean' (mask-weighted mean of "
                    "the sequence output) or 'pooled' (the pooler output). Both are exported.")
  flags.DEFINE_integer("num_clusters", 0, "k-means clusters; 0 chooses k in 2..10 by silhouette.")
  flags.DEFINE_list("similar_to", [], "Question ids whose nearest examples (cosine, latent space) to list.")
  flags.DEFINE_integer("num_similar", 5, "How many nearest examples to list per --similar_to id.")
  flags.DEFINE_list("attribution_ids", [], "Question ids to compute token attributions for "
                    "(default: the --num_attributions highest-loss examples).")
  flags.DEFINE_integer("num_attributions", 5, "Highest-loss examples to attribute when --attribution_ids is empty.")
  flags.DEFINE_float("suspicious_min_confidence", 0.5, "Suspicious labels: minimum model confidence.")
  flags.DEFINE_float("suspicious_loss_quantile", 0.75, "Suspicious labels: minimum loss, as a quantile of all losses.")
  flags.DEFINE_integer("num_suspicious", 20, "Suspicious labels listed at most.")
  flags.DEFINE_integer("seed", 12345, "Seed of k-means (the analysis is deterministic for a given seed).")


def _check_flags():
  if FLAGS.albert_hub_module_handle:
    raise UserError("--albert_hub_module_handle is not supported by analyze_squad yet; pass "
                    "--albert_config_file and the fine-tuned --init_checkpoint")
  if not FLAGS.output_dir:
    raise UserError("--output_dir is required")
  if not FLAGS.init_checkpoint:
    raise UserError("--init_checkpoint (the fine-tuned SQuAD checkpoint) is required")
  for name in ("predict_batch_size", "n_best_size", "max_answer_length", "start_n_top", "end_n_top", "num_similar"):
    if FLAGS[name].value <= 0:
      raise UserError(f"--{name} must be positive, got {FLAGS[name].value}")
  for name in ("num_clusters", "num_attributions", "num_suspicious"):
    if FLAGS[name].value < 0:
      raise UserError(f"--{name} must be >= 0, got {FLAGS[name].value}")
  if not 0 <= FLAGS.suspicious_loss_quantile <= 1:
    raise UserError(f"--suspicious_loss_quantile must be in [0, 1], got {FLAGS.suspicious_loss_quantile}")
  if not 0 <= FLAGS.suspicious_min_confidence <= 1:
    raise UserError(f"--suspicious_min_confidence must be in [0, 1], got {FLAGS.suspicious_min_confidence}")


def _version(prefix):
  """The SQuAD version of the checkpoint's head; an explicit --version must match it."""
  names = checkpoint.list_variables(prefix)
  found = [v for v, name in ((1, V1_HEAD_VARIABLE), (2, V2_HEAD_VARIABLE)) if name in names]
  if not found:
    raise UserError(f"--init_checkpoint {prefix} has no SQuAD head ({V1_HEAD_VARIABLE} or {V2_HEAD_VARIABLE}); "
                    "pass a checkpoint fine-tuned with run_squad_v1 or run_squad_v2")
  if FLAGS.version != "auto" and int(FLAGS.version) not in found:
    raise UserError(f"--version={FLAGS.version} but --init_checkpoint {prefix} has a v{found[0]} SQuAD head")
  return int(FLAGS.version) if FLAGS.version != "auto" else found[0]


# ---- examples and windows ----

def _labelled_windows(tokenizer):
  """(examples, windows per example) for the questions with a usable reference; windows carry labels."""
  read = squad_utils.read_squad_examples(FLAGS.predict_file, is_training=True)
  features = list(squad_utils.convert_examples_to_features(
      read.examples, tokenizer, FLAGS.max_seq_length, FLAGS.doc_stride, FLAGS.max_query_length,
      is_training=True))
  windows = [[] for _ in read.examples]
  for feature in features:
    windows[feature.example_index].append(feature)
  kept = [index for index, example_windows in enumerate(windows) if example_windows]
  examples = [read.examples[index] for index in kept]
  windows = [windows[index] for index in kept]
  for new_index, example_windows in enumerate(windows):
    for feature in example_windows:
      feature.example_index = new_index
  skipped = sum(read.skipped.values()) + len(read.examples) - len(examples)
  if not examples:
    raise UserError(f"--predict_file {FLAGS.predict_file} has no question with a usable reference answer")
  return examples, windows, skipped


def example_window(windows):
  """The window that stands for its example: the first containing the answer, else the first."""
  return next((w for w in windows if not w.is_impossible), windows[0])


def _feature_arrays(features):
  arrays = {name: np.stack([getattr(f, name) for f in features]).astype(np.int32)
            for name in ("input_ids", "input_mask", "segment_ids", "p_mask")}
  arrays["unique_ids"] = np.array([f.unique_id for f in features], np.int64)
  for key, attribute in zip(LABEL_KEYS, ("start_position", "end_position", "is_impossible")):
    arrays[key] = np.array([int(getattr(f, attribute)) for f in features], np.int32)
  return arrays


def _row(arrays, index):
  return {name: values[index] for name, values in arrays.items() if name != "unique_ids"}


# ---- predictions and scores ----

def _predict(task, prefix, arrays):
  """Model outputs for every window (a list of dicts of numpy values, in feature order)."""
  analysis_trainer = trainer.Trainer(task, tf.distribute.get_strategy(), FLAGS.output_dir, learning_rate=0.0,
                                     num_train_steps=1, num_warmup_steps=0)
  analysis_trainer.restore_for_inference(checkpoint=prefix)
  dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(FLAGS.predict_batch_size)
  return list(analysis_trainer.predict(dataset, FLAGS.predict_batch_size))


def _scoring_dataset(examples):
  """The analyzed questions as a SQuAD `data` list, so squad_eval scores exactly them."""
  return [{"paragraphs": [{"qas": [{"id": e.qas_id, "answers": e.answers} for e in examples]}]}]


def _answers(version, examples, windows, results):
  """({qas_id: answer}, {qas_id: confidence}, v2 null threshold or None)."""
  metas = [w.meta() for example_windows in windows for w in example_windows]
  if version == 1:
    predictions = list(squad_postprocess.predict_v1(examples, metas, results, FLAGS.n_best_size,
                                                    FLAGS.max_answer_length))
    return ({p.qas_id: p.nbest[0].text for p in predictions},
            {p.qas_id: p.nbest[0].probability for p in predictions}, None)
  predictions = list(squad_postprocess.predict_v2(examples, metas, results, FLAGS.n_best_size,
                                                  FLAGS.max_answer_length, FLAGS.start_n_top, FLAGS.end_n_top))
  written = squad_postprocess.WrittenPredictions({p.qas_id: p.nbest[0].text for p in predictions},
                                                 {p.qas_id: p.score_diff for p in predictions})
  dataset = _scoring_dataset(examples)
  span_answers = written.answers(None)
  _, f1 = squad_eval.raw_scores(dataset, span_answers)
  _, threshold = squad_eval.find_best_thresh(span_answers, f1, written.score_diffs,
                                             squad_eval.has_answer_map(dataset))
  answers = written.answers(threshold)
  confidence = {}
  for p in predictions:
    null_probability = 1.0 / (1.0 + np.exp(-p.score_diff))
    confidence[p.qas_id] = (float(null_probability) if not answers[p.qas_id]
                            else p.nbest[0].probability * float(1.0 - null_probability))
  return answers, confidence, float(threshold)


# ---- records and findings ----

def _records(examples, windows, chosen, results_by_id, answers, confidence, coordinates, labels):
  exact, f1 = squad_eval.raw_scores(_scoring_dataset(examples), answers)
  records = []
  for index, example in enumerate(examples):
    window = chosen[index]
    qid = example.qas_id
    records.append({
        "id": qid, "title": example.title, "question": example.question_text,
        "references": [a.get("text", "") for a in example.answers if isinstance(a.get("text"), str)],
        "prediction": answers[qid], "exact_match": int(exact[qid]), "f1": float(f1[qid]),
        "loss": float(results_by_id[window.unique_id]["window_loss"]), "confidence": float(confidence[qid]),
        "cluster": int(labels[index]), "x": float(coordinates[index, 0]), "y": float(coordinates[index, 1]),
        "is_impossible": bool(example.is_impossible), "window": window.doc_span_index,
        "num_windows": len(windows[index])})
  return records


def _clusters(vectors):
  if FLAGS.num_clusters:
    return latent.kmeans(vectors, FLAGS.num_clusters, FLAGS.seed)[0], "given"
  k = latent.choose_num_clusters(vectors, CLUSTER_CANDIDATES, FLAGS.seed)
  return latent.kmeans(vectors, k, FLAGS.seed)[0], "chosen by silhouette"


def _check_ids(ids, known, flag_name):
  unknown = [qid for qid in ids if qid not in known]
  if unknown:
    raise UserError(f"--{flag_name}: unknown question id(s) {', '.join(unknown[:5])} "
                    "(not among the analyzed questions)")


def _similar(records, vectors):
  index_of = {r["id"]: i for i, r in enumerate(records)}
  return {qid: [{"id": records[i]["id"], "similarity": similarity}
                for i, similarity in latent.nearest_neighbors(vectors, index_of[qid], FLAGS.num_similar)]
          for qid in FLAGS.similar_to}


def _attributions(task, tokenizer, records, chosen, arrays, row_of):
  """Heat map items (attributions.jsonl lines) of the --attribution_ids or highest-loss examples."""
  by_id = {r["id"]: (i, r) for i, r in enumerate(records)}
  highest = sorted(records, key=lambda r: -r["loss"])[:FLAGS.num_attributions]
  items = []
  for qid in FLAGS.attribution_ids or [r["id"] for r in highest]:
    index, record = by_id[qid]
    window = chosen[index]
    row = _row(arrays, row_of[window.unique_id])
    scores, loss = attribution.window_attributions(task, row)
    length = int(row["input_mask"].sum())
    pieces = tokenizer.convert_ids_to_tokens(row["input_ids"][:length].tolist())
    items.append({"id": qid, "window": window.doc_span_index, "loss": loss, "question": record["question"],
                  "references": record["references"], "prediction": record["prediction"],
                  "tokens": [piece.replace("\u2581", " ") for piece in pieces],
                  "segments": row["segment_ids"][:length].tolist(), "scores": scores[:length].tolist(),
                  "answer": None if window.is_impossible else [window.start_position, window.end_position]})
  return items


def _write_attributions(items):
  """attributions.jsonl and one heat map page per item; returns {id: page path relative to output_dir}."""
  with fileio.atomic_open(os.path.join(FLAGS.output_dir, ATTRIBUTIONS_FILE)) as f:
    for item in items:
      f.write(json.dumps(item, ensure_ascii=False) + "\n")
  pages = {}
  for number, item in enumerate(items):
    path = f"{ATTRIBUTIONS_DIR}/{number:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', item['id'])[:60]}.html"
    fileio.write_text(os.path.join(FLAGS.output_dir, path), report.render_heatmap(item))
    pages[item["id"]] = path
  return pages


def analyze():
  """The whole analysis, driven by FLAGS."""
  _check_flags()
  squad_utils.check_window_flags(FLAGS.max_seq_length, FLAGS.doc_stride, FLAGS.max_query_length)
  config, tokenizer, create_encoder, _ = model_setup.model_setup_from_flags(FLAGS)
  shared_flags.validate_seq_length(FLAGS.max_seq_length, config)
  require_file(FLAGS.predict_file, "predict_file")
  prefix = checkpoint.resolve_checkpoint(FLAGS.init_checkpoint, "init_checkpoint")
  version = _version(prefix)
  os.makedirs(FLAGS.output_dir, exist_ok=True)

  examples, windows, skipped = _labelled_windows(tokenizer)
  known_ids = {example.qas_id for example in examples}
  _check_ids(FLAGS.similar_to, known_ids, "similar_to")
  _check_ids(FLAGS.attribution_ids, known_ids, "attribution_ids")
  features = [w for example_windows in windows for w in example_windows]
  arrays = _feature_arrays(features)
  task = AnalysisTask(config, version, create_encoder, tf.float32, FLAGS.start_n_top, FLAGS.end_n_top)
  results = _predict(task, prefix, arrays)
  results_by_id = {int(r["unique_ids"]): r for r in results}
  answers, confidence, threshold = _answers(version, examples, windows, results)

  chosen = [example_window(example_windows) for example_windows in windows]
  tables = {name: np.stack([results_by_id[w.unique_id][f"{name}_output"] for w in chosen]) for name in LATENTS}
  vectors = latent.standardize(tables[FLAGS.latent])
  labels, clusters_source = _clusters(vectors)
  records = _records(examples, windows, chosen, results_by_id, answers, confidence, latent.pca(vectors), labels)
  logging.info("analyzed %d questions (%d windows); %d left out", len(records), len(features), skipped)

  row_of = {int(uid): i for i, uid in enumerate(arrays["unique_ids"])}
  heatmaps = _write_attributions(_attributions(task, tokenizer, records, chosen, arrays, row_of))
  summary = _summary(version, prefix, records, skipped, threshold, clusters_source, _similar(records, vectors),
                     heatmaps)
  exports.write_records(FLAGS.output_dir, records)
  exports.write_projector(FLAGS.output_dir, tables, records)
  fileio.write_json(os.path.join(FLAGS.output_dir, SUMMARY_FILE), summary)
  fileio.write_text(os.path.join(FLAGS.output_dir, REPORT_FILE), report.render_report(summary, records, heatmaps))
  logging.info("EM %.2f F1 %.2f mean loss %.4f; %d clusters; %d suspicious labels; report: %s",
               summary["exact_match"], summary["f1"], summary["mean_loss"], len(summary["clusters"]),
               len(summary["suspicious"]), os.path.join(FLAGS.output_dir, REPORT_FILE))


def _summary(version, prefix, records, skipped, threshold, clusters_source, similar, heatmaps):
  loss_floor = float(np.quantile([r["loss"] for r in records], FLAGS.suspicious_loss_quantile))
  suspicious = findings.suspicious_labels(records, FLAGS.suspicious_min_confidence,
                                          FLAGS.suspicious_loss_quantile, FLAGS.num_suspicious)
  return {
      "version": version, "checkpoint": prefix, "predict_file": FLAGS.predict_file, "latent": FLAGS.latent,
      "num_examples": len(records), "skipped_examples": skipped,
      "exact_match": 100.0 * float(np.mean([r["exact_match"] for r in records])),
      "f1": 100.0 * float(np.mean([r["f1"] for r in records])),
      "mean_loss": float(np.mean([r["loss"] for r in records])),
      "loss_definition": "fine-tuning loss of the first window containing the first reference answer "
                         "(else of the first window)",
      "null_score_diff_threshold": threshold,
      "num_clusters_source": clusters_source,
      "clusters": findings.cluster_summaries(records),
      "titles": findings.title_ranking(records),
      "suspicious": [r["id"] for r in suspicious],
      "suspicious_rule": {"min_confidence": FLAGS.suspicious_min_confidence,
                          "loss_quantile": FLAGS.suspicious_loss_quantile, "loss_floor": loss_floor},
      "near_misses": [{"id": m["id"], "kind": m["kind"]} for m in findings.near_misses(records)],
      "highest_loss": [r["id"] for r in sorted(records, key=lambda r: -r["loss"])[:HIGHEST_LOSS_SHOWN]],
      "similar": similar,
      "attributions": heatmaps,
  }


def main(argv):
  del argv
  analyze()


define_flags()

if __name__ == "__main__":
  run_main(main)
