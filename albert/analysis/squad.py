"""The analysis of a fine-tuned SQuAD model (`python -m albert.analyze_squad`), step by step.

Predicts every window of the analyzed questions with its loss and latent vectors, turns them into
per-question records (EM, F1, loss, confidence, cluster, map coordinates), and writes the records,
Projector files, attribution heat maps, summary and report. Definitions are in the entry point's
docstring and in summary.json.
"""

import json
import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from albert.analysis import attribution, exports, findings, latent, report
from albert.analysis.inference import AnalysisTask
from albert.cli import flags as flag_groups
from albert.cli import model_loader
from albert.core import fileio
from albert.core.errors import UserError, abbreviate, require_file
from albert.io import checkpoint
from albert.tasks.squad import evaluate as squad_eval
from albert.tasks.squad import windows as squad_windows
from albert.tasks.squad.examples import read_squad_examples
from albert.tasks.squad.postprocess import WrittenPredictions
from albert.tasks.squad.task import SQUAD_TASKS, TRAIN_LABELS, AnswerRules
from albert.training import trainer

LATENTS = ("mean", "pooled")
CLUSTER_CANDIDATES = range(2, 11)
HIGHEST_LOSS_SHOWN = 15
SUMMARY_FILE = "summary.json"
ATTRIBUTIONS_FILE = "attributions.jsonl"
ATTRIBUTIONS_DIR = "attributions"
REPORT_FILE = "report.html"


# ---- examples and windows ----

def example_window(windows):
  """The window that stands for its example: the first containing the answer, else the first."""
  return next((w for w in windows if not w.is_impossible), windows[0])


def _feature_arrays(features):
  arrays = {name: np.stack([getattr(f, name) for f in features]).astype(np.int32)
            for name in ("input_ids", "input_mask", "segment_ids", "p_mask")}
  arrays["unique_ids"] = np.array([f.unique_id for f in features], np.int64)
  for key, attribute in zip(TRAIN_LABELS, ("start_position", "end_position", "is_impossible")):
    arrays[key] = np.array([int(getattr(f, attribute)) for f in features], np.int32)
  return arrays


def _row(arrays, index):
  return {name: values[index] for name, values in arrays.items() if name != "unique_ids"}


def _scoring_dataset(examples):
  """The analyzed questions as a SQuAD `data` list, so the official scoring scores exactly them."""
  return [{"paragraphs": [{"qas": [{"id": e.qas_id, "answers": e.answers} for e in examples]}]}]


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


def _check_ids(ids, known, flag_name):
  unknown = [qid for qid in ids if qid not in known]
  if unknown:
    raise UserError(f"--{flag_name}: unknown question id(s) {abbreviate(unknown)} (not among the analyzed questions)")


def checkpoint_task_class(prefix, version="auto"):
  """The SQuAD task class of a checkpoint's head; an explicit `version` ("1", "2") must match it."""
  names = checkpoint.list_variables(prefix)
  found = [task_class for task_class in SQUAD_TASKS.values() if task_class.head_variable in names]
  if not found:
    heads = " or ".join(task_class.head_variable for task_class in SQUAD_TASKS.values())
    raise UserError(f"--init_checkpoint {prefix} has no SQuAD head ({heads}); pass a checkpoint fine-tuned with "
                    "run_squad_v1 or run_squad_v2")
  if version != "auto" and SQUAD_TASKS[int(version)] not in found:
    raise UserError(f"--version={version} but --init_checkpoint {prefix} has a v{found[0].version} SQuAD head")
  return SQUAD_TASKS[int(version)] if version != "auto" else found[0]


class SquadAnalysis:
  """One analysis run, driven by the flag values `fv` of `albert.analyze_squad`."""

  def __init__(self, fv):
    if fv.albert_hub_module_handle:
      raise UserError("--albert_hub_module_handle is not supported by analyze_squad yet; pass "
                      "--albert_config_file and the fine-tuned --init_checkpoint")
    if not fv.output_dir:
      raise UserError("--output_dir is required")
    if not fv.init_checkpoint:
      raise UserError("--init_checkpoint (the fine-tuned SQuAD checkpoint) is required")
    self.fv = fv

  def labelled_windows(self, tokenizer):
    """(examples, windows per example, skipped) for the questions with a usable reference; windows carry labels."""
    fv = self.fv
    read = read_squad_examples(fv.predict_file, is_training=True)
    features = list(squad_windows.convert_examples_to_features(
        read.examples, tokenizer, fv.max_seq_length, fv.doc_stride, fv.max_query_length, is_training=True))
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
      raise UserError(f"--predict_file {fv.predict_file} has no question with a usable reference answer")
    return examples, windows, skipped

  def predict(self, task, prefix, arrays):
    """Model outputs for every window (a list of dicts of numpy values, in feature order)."""
    analysis_trainer = trainer.Trainer(task, tf.distribute.get_strategy(), self.fv.output_dir, learning_rate=0.0,
                                       num_train_steps=1, num_warmup_steps=0)
    analysis_trainer.restore_for_inference(checkpoint=prefix)
    dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(self.fv.predict_batch_size)
    return list(analysis_trainer.predict(dataset, self.fv.predict_batch_size))

  def answers(self, squad_task, examples, windows, results):
    """({qas_id: answer}, {qas_id: confidence}, v2 null threshold or None)."""
    fv = self.fv
    metas = [w.meta() for example_windows in windows for w in example_windows]
    predictions = list(squad_task.predictions(examples, metas, results,
                                              AnswerRules(fv.n_best_size, fv.max_answer_length)))
    if not squad_task.with_null_odds:
      return ({p.qas_id: p.nbest[0].text for p in predictions},
              {p.qas_id: p.nbest[0].probability for p in predictions}, None)
    written = WrittenPredictions({p.qas_id: p.nbest[0].text for p in predictions},
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

  def clusters(self, vectors):
    fv = self.fv
    if fv.num_clusters:
      return latent.kmeans(vectors, fv.num_clusters, fv.seed)[0], "given"
    k = latent.choose_num_clusters(vectors, CLUSTER_CANDIDATES, fv.seed)
    return latent.kmeans(vectors, k, fv.seed)[0], "chosen by silhouette"

  def similar(self, records, vectors):
    index_of = {r["id"]: i for i, r in enumerate(records)}
    return {qid: [{"id": records[i]["id"], "similarity": similarity}
                  for i, similarity in latent.nearest_neighbors(vectors, index_of[qid], self.fv.num_similar)]
            for qid in self.fv.similar_to}

  def attributions(self, task, tokenizer, records, chosen, arrays, row_of):
    """Heat map items (attributions.jsonl lines) of the --attribution_ids or highest-loss examples."""
    by_id = {r["id"]: (i, r) for i, r in enumerate(records)}
    highest = sorted(records, key=lambda r: -r["loss"])[:self.fv.num_attributions]
    items = []
    for qid in self.fv.attribution_ids or [r["id"] for r in highest]:
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

  def write_attributions(self, items):
    """attributions.jsonl and one heat map page per item; returns {id: page path relative to output_dir}."""
    output_dir = self.fv.output_dir
    with fileio.atomic_open(os.path.join(output_dir, ATTRIBUTIONS_FILE)) as f:
      for item in items:
        f.write(json.dumps(item, ensure_ascii=False) + "\n")
    pages = {}
    for number, item in enumerate(items):
      path = f"{ATTRIBUTIONS_DIR}/{number:03d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', item['id'])[:60]}.html"
      fileio.write_text(os.path.join(output_dir, path), report.render_heatmap(item))
      pages[item["id"]] = path
    return pages

  def run(self):
    """The whole analysis."""
    fv = self.fv
    squad_windows.check_window_flags(fv.max_seq_length, fv.doc_stride, fv.max_query_length)
    setup = model_loader.load_model(fv)
    flag_groups.validate_seq_length(fv.max_seq_length, setup.config)
    require_file(fv.predict_file, "predict_file")
    prefix = checkpoint.resolve_checkpoint(fv.init_checkpoint, "init_checkpoint")
    task_class = checkpoint_task_class(prefix, fv.version)
    os.makedirs(fv.output_dir, exist_ok=True)

    examples, windows, skipped = self.labelled_windows(setup.tokenizer)
    known_ids = {example.qas_id for example in examples}
    _check_ids(fv.similar_to, known_ids, "similar_to")
    _check_ids(fv.attribution_ids, known_ids, "attribution_ids")
    features = [w for example_windows in windows for w in example_windows]
    arrays = _feature_arrays(features)
    head_flags = (fv.start_n_top, fv.end_n_top) if task_class.uses_p_mask else ()
    squad_task = task_class(setup.config, setup.create_encoder, tf.float32, *head_flags)
    task = AnalysisTask(squad_task)
    results = self.predict(task, prefix, arrays)
    results_by_id = {int(r["unique_ids"]): r for r in results}
    answers, confidence, threshold = self.answers(squad_task, examples, windows, results)

    chosen = [example_window(example_windows) for example_windows in windows]
    tables = {name: np.stack([results_by_id[w.unique_id][f"{name}_output"] for w in chosen]) for name in LATENTS}
    vectors = latent.standardize(tables[fv.latent])
    labels, clusters_source = self.clusters(vectors)
    records = _records(examples, windows, chosen, results_by_id, answers, confidence, latent.pca(vectors), labels)
    logging.info("analyzed %d questions (%d windows); %d left out", len(records), len(features), skipped)

    row_of = {int(uid): i for i, uid in enumerate(arrays["unique_ids"])}
    heatmaps = self.write_attributions(self.attributions(task, setup.tokenizer, records, chosen, arrays, row_of))
    summary = self.summary(task_class.version, prefix, records, skipped, threshold, clusters_source,
                           self.similar(records, vectors), heatmaps)
    exports.write_records(fv.output_dir, records)
    exports.write_projector(fv.output_dir, tables, records)
    fileio.write_json(os.path.join(fv.output_dir, SUMMARY_FILE), summary)
    fileio.write_text(os.path.join(fv.output_dir, REPORT_FILE), report.render_report(summary, records, heatmaps))
    logging.info("EM %.2f F1 %.2f mean loss %.4f; %d clusters; %d suspicious labels; report: %s",
                 summary["exact_match"], summary["f1"], summary["mean_loss"], len(summary["clusters"]),
                 len(summary["suspicious"]), os.path.join(fv.output_dir, REPORT_FILE))

  def summary(self, version, prefix, records, skipped, threshold, clusters_source, similar, heatmaps):
    fv = self.fv
    loss_floor = float(np.quantile([r["loss"] for r in records], fv.suspicious_loss_quantile))
    suspicious = findings.suspicious_labels(records, fv.suspicious_min_confidence, fv.suspicious_loss_quantile,
                                            fv.num_suspicious)
    return {
        "version": version, "checkpoint": prefix, "predict_file": fv.predict_file, "latent": fv.latent,
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
        "suspicious_rule": {"min_confidence": fv.suspicious_min_confidence,
                            "loss_quantile": fv.suspicious_loss_quantile, "loss_floor": loss_floor},
        "near_misses": [{"id": m["id"], "kind": m["kind"]} for m in findings.near_misses(records)],
        "highest_loss": [r["id"] for r in sorted(records, key=lambda r: -r["loss"])[:HIGHEST_LOSS_SHOWN]],
        "similar": similar,
        "attributions": heatmaps,
    }
