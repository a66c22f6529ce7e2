"""analyze_squad: the numpy latent tools, the findings, the report, and the CLI end to end.

End-to-end runs fine-tune tiny models with run_squad_v1/v2 on a few real questions, then analyze them.
Losses are recomputed here with numpy from a direct model call, clusters and PCA against independent
numpy references, and a planted wrong label must surface among the suspicious examples.
"""

import csv
import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from conftest import REPO_ROOT, SQUAD_TINY_CONFIG, run_cli, shared_path, subset_file

from albert.analysis import exports, findings, latent, report

WINDOW = dict(max_seq_length=128, doc_stride=64, max_query_length=24)
WINDOW_FLAGS = [f"--{name}={value}" for name, value in WINDOW.items()]


# ---- latent: PCA, k-means, silhouette, neighbours ----

def _blobs(centers, per_blob, spread, seed):
  rng = np.random.default_rng(seed)
  points = np.concatenate([rng.normal(c, spread, size=(n, len(c))) for c, n in zip(centers, per_blob)])
  truth = np.concatenate([np.full(n, i) for i, n in enumerate(per_blob)])
  return points, truth


def test_pca_projects_on_the_covariance_eigenvectors():
  rng = np.random.default_rng(0)
  data = rng.normal(size=(200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1]) + 7.0
  values, vectors = np.linalg.eigh(np.cov(data, rowvar=False))
  top = vectors[:, np.argsort(values)[::-1][:2]]
  expected = (data - data.mean(axis=0)) @ top
  projected = latent.pca(data)
  assert projected.shape == (200, 2)
  np.testing.assert_allclose(np.abs(projected), np.abs(expected), atol=1e-8)
  assert projected[:, 0].var() > projected[:, 1].var()


def test_pca_pads_when_there_are_fewer_dimensions_than_components():
  assert latent.pca(np.array([[1.0], [2.0], [4.0]])).shape == (3, 2)


def test_kmeans_recovers_separated_blobs_largest_first():
  points, truth = _blobs([(0, 0), (10, 0), (0, 10)], [30, 50, 20], 0.5, seed=1)
  labels, centers = latent.kmeans(points, 3, seed=3)
  # cluster 0 is the largest blob (50 points around (10, 0)), then 30 around (0, 0), then 20.
  assert [int(np.sum(labels == c)) for c in range(3)] == [50, 30, 20]
  for cluster, blob in ((0, 1), (1, 0), (2, 2)):
    assert np.all(labels[truth == blob] == cluster)
  np.testing.assert_allclose(centers[0], points[truth == 1].mean(axis=0))


def test_choose_num_clusters_finds_the_number_of_blobs():
  points, _ = _blobs([(0, 0), (8, 0), (0, 8), (8, 8)], [20, 20, 20, 20], 0.6, seed=2)
  assert latent.choose_num_clusters(points, range(2, 8), seed=0) == 4


def test_silhouette_matches_a_direct_computation():
  points, _ = _blobs([(0, 0), (3, 1)], [7, 5], 1.0, seed=4)
  labels = np.array([0, 0, 1, 0, 1, 1, 0, 2, 0, 1, 1, 0])  # includes a singleton cluster 2
  scores = []
  for i, p in enumerate(points):
    same = [j for j in range(len(points)) if labels[j] == labels[i] and j != i]
    if not same:
      scores.append(0.0)
      continue
    a = np.mean([np.linalg.norm(p - points[j]) for j in same])
    b = min(np.mean([np.linalg.norm(p - points[j]) for j in range(len(points)) if labels[j] == c])
            for c in set(labels) if c != labels[i])
    scores.append((b - a) / max(a, b))
  assert latent.silhouette(points, labels) == pytest.approx(np.mean(scores), abs=1e-9)


def test_nearest_neighbors_by_cosine_similarity():
  vectors = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
  neighbours = latent.nearest_neighbors(vectors, 0, 3)
  assert [i for i, _ in neighbours] == [1, 4, 2]
  assert neighbours[0][1] == pytest.approx(10 / np.sqrt(101))
  assert neighbours[1][1] == pytest.approx(1 / np.sqrt(2))


# ---- findings ----

def _record(qid, **values):
  base = dict(id=qid, title="T", question="What year?", references=["1066"], prediction="1066",
              exact_match=1, f1=1.0, loss=1.0, confidence=0.9, cluster=0)
  return {**base, **values}


def test_suspicious_labels_need_confidence_disagreement_and_high_loss():
  records = [_record(f"ok{i}", loss=float(i) / 10) for i in range(8)]
  records += [
      _record("wrong_label", prediction="Harold", exact_match=0, f1=0.0, loss=5.0, confidence=0.8),
      _record("unsure", prediction="Harold", exact_match=0, f1=0.0, loss=6.0, confidence=0.2),
      _record("overlap", prediction="in 1066 AD", exact_match=0, f1=0.5, loss=7.0, confidence=0.9),
      _record("low_loss", prediction="Harold", exact_match=0, f1=0.0, loss=0.05, confidence=0.9),
      _record("worse_label", prediction="Normandy", exact_match=0, f1=0.0, loss=8.0, confidence=0.6),
  ]
  flagged = findings.suspicious_labels(records, min_confidence=0.5, loss_quantile=0.75, limit=10)
  assert [r["id"] for r in flagged] == ["worse_label", "wrong_label"]
  assert [r["id"] for r in findings.suspicious_labels(records, 0.5, 0.75, limit=1)] == ["worse_label"]


@pytest.mark.parametrize("prediction, references, kind", [
    ("\u201cThe Raven\u201d", ["The Raven"], "punctuation"),        # curly quotes survive the official rule
    ("Rollo \u2013 Duke", ["rollo duke"], "punctuation"),
    ("Central business", ["business"], "boundary"),
    ("business district", ["the business"], "boundary"),
    ("The Raven", ["the raven."], None),                              # already an exact match
    ("Paris", ["London"], None),
    ("", ["London"], None),
    ("big red house", ["red"], None),                                 # two words apart
])
def test_near_miss_kinds(prediction, references, kind):
  assert findings.near_miss_kind(prediction, references) == kind


def test_question_openings_and_cluster_summaries():
  assert findings.question_opening("  what year did it end?") == "What year"
  assert findings.question_opening("How many-sided is it?") == "How many-sided"
  records = [_record("a", question="How many men?", cluster=1, loss=2.0, exact_match=0, f1=0.5),
             _record("b", question="How many ships?", cluster=1, loss=4.0),
             _record("c", question="Who won?", cluster=0, loss=1.0, title="U")]
  summaries = findings.cluster_summaries(records)
  assert summaries[1] == {"cluster": 1, "size": 2, "mean_loss": 3.0, "exact_match": 50.0, "f1": 75.0,
                          "openings": [["How many", 2]]}
  assert [t["title"] for t in findings.title_ranking(records)] == ["T", "U"]


# ---- exports and report ----

def test_projector_files_have_the_tensorboard_layout(tmp_path):
  records = [_record("q1", question="tab\there\nnewline", x=0.0, y=1.0),
             _record("q2", question="", x=1.0, y=0.0)]
  exports.write_projector(str(tmp_path), {"mean": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]])}, records)
  config = (tmp_path / "projector_config.pbtxt").read_text()
  assert re.fullmatch(r'embeddings \{\n  tensor_name: "mean"\n  tensor_path: "latent_mean.tsv"\n'
                      r'  metadata_path: "projector_metadata.tsv"\n\}\n', config)
  assert (tmp_path / "latent_mean.tsv").read_text() == "1\t2\t3\n4\t5\t6.5\n"
  metadata = (tmp_path / "projector_metadata.tsv").read_text().splitlines()
  assert metadata[0].split("\t") == list(exports.METADATA_FIELDS)
  assert len(metadata) == 3 and all(len(line.split("\t")) == len(exports.METADATA_FIELDS) for line in metadata)
  assert metadata[1].endswith("\ttab here newline") and metadata[2].endswith("\t-")


def _summary_for(records, **changes):
  summary = dict(checkpoint="ckpt", predict_file="dev.json", version=1, num_examples=len(records),
                 skipped_examples=0, exact_match=50.0, f1=60.0, mean_loss=1.0, latent="mean",
                 num_clusters_source="given", clusters=findings.cluster_summaries(records),
                 titles=findings.title_ranking(records), suspicious=[records[0]["id"]],
                 suspicious_rule=dict(min_confidence=0.5, loss_quantile=0.75, loss_floor=1.0),
                 near_misses=[], highest_loss=[r["id"] for r in records], similar={}, attributions={})
  return {**summary, **changes}


def test_report_is_self_contained_and_escapes_text():
  records = [_record("q<1>", question="<script>alert(1)</script>?", x=0.0, y=0.0, loss=2.0),
             _record("q2", x=1.0, y=2.0, cluster=1)]
  page = report.render_report(_summary_for(records), records, {"q2": "attributions/000_q2.html"})
  assert "<script" not in page and "&lt;script&gt;" in page and "q&lt;1&gt;" in page
  assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from the network
  assert page.count("<circle") == 2 and page.count("<svg") == 3
  assert 'href="attributions/000_q2.html"' in page


def test_heatmap_colours_tokens_by_sign_and_marks_the_answer():
  item = dict(id="q", question="Who?", references=["Rollo"], prediction="Rollo", loss=0.5,
              tokens=["[CLS]", " who", "[SEP]", " rollo", " came", "[SEP]"], segments=[0, 0, 0, 1, 1, 1],
              scores=[0.0, 0.5, 0.0, -2.0, 1.0, 0.0], answer=[3, 3])
  page = report.render_heatmap(item)
  assert re.search(r'rgba\(31,119,180,1\.00\)" class=answer title="-2">\s*rollo', page)
  assert re.search(r'rgba\(214,39,40,[0-9.]+\)" title="\+1"> came', page)


# ---- end to end ----



def model_args(squad_assets, output_dir):
  return [f"--albert_config_file={squad_assets['config']}", f"--spm_model_file={squad_assets['spm']}",
          f"--output_dir={output_dir}", *WINDOW_FLAGS]


def plant_wrong_label(data_file, target, qid):
  """Moves every reference of `qid` to the context word farthest from the true answer (not one of its words)."""
  with open(data_file, encoding="utf-8") as f:
    data = json.load(f)
  for article in data["data"]:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        if qa["id"] != qid:
          continue
        context, true = paragraph["context"], qa["answers"][0]
        true_words = set(true["text"].lower().split())
        spans = [(m.start(), m.group()) for m in re.finditer(r"[A-Za-z]{5,}", context)]
        unrelated = [s for s in spans if s[1].lower() not in true_words]
        start, text = max(unrelated, key=lambda s: abs(s[0] - true["answer_start"]))
        qa["answers"] = [{"text": text, "answer_start": start}]
  with open(target, "w", encoding="utf-8") as f:
    json.dump(data, f)
  return str(target)


def short_context_file(source, target, spm_file, max_pieces):
  """The paragraphs whose context fits one window (<= max_pieces pieces): quick to memorize."""
  from albert.tokenization import FullTokenizer
  tokenizer = FullTokenizer(spm_model_file=spm_file)
  with open(source, encoding="utf-8") as f:
    data = json.load(f)
  articles = []
  for article in data["data"]:
    paragraphs = [p for p in article["paragraphs"] if len(tokenizer.tokenize(p["context"])) <= max_pieces]
    if paragraphs:
      articles.append(dict(article, paragraphs=paragraphs))
  with open(target, "w", encoding="utf-8") as f:
    json.dump(dict(data, data=articles), f)
  return str(target)


@pytest.fixture(scope="module")
def v1_analysis(squad_assets, tmp_path_factory):
  """A tiny v1 model fine-tuned until it memorizes most of ~45 short-context questions; its most
  confident correct answer then gets a wrong label."""
  work = tmp_path_factory.mktemp("analyze_v1")
  data_file = short_context_file(shared_path("squad", "dev-v1.1-sample.json"), work / "short.json",
                                 squad_assets["spm"], max_pieces=100)
  model_dir = work / "model"
  run_cli("albert.run_squad_v1", *model_args(squad_assets, model_dir), f"--train_file={data_file}",
          f"--predict_file={data_file}", "--do_train", "--do_predict", "--train_batch_size=8",
          "--num_train_epochs=50", "--learning_rate=2e-3", "--warmup_proportion=0.05",
          "--save_checkpoints_steps=1000", "--iterations_per_loop=50")
  predictions = json.loads((model_dir / "predictions.json").read_text())
  nbest = json.loads((model_dir / "nbest_predictions.json").read_text())
  with open(data_file, encoding="utf-8") as f:
    golds = {qa["id"]: [a["text"] for a in qa["answers"]]
             for a in json.load(f)["data"] for p in a["paragraphs"] for qa in p["qas"]}
  correct = [qid for qid, text in predictions.items() if text in golds[qid]]
  planted_id = max(correct, key=lambda qid: nbest[qid][0]["probability"])
  planted_file = plant_wrong_label(data_file, work / "planted.json", planted_id)
  out = work / "analysis"
  proc = run_cli("albert.analyze_squad", *model_args(squad_assets, out), f"--init_checkpoint={model_dir}",
                 f"--predict_file={planted_file}", f"--similar_to={planted_id}", "--num_similar=4",
                 "--num_attributions=3", "--suspicious_min_confidence=0.3", "--suspicious_loss_quantile=0.5")
  return dict(out=out, model_dir=model_dir, data_file=planted_file, planted_id=planted_id,
              num_correct=len(correct), stderr=proc.stderr)


def read_records(out):
  with open(out / "records.jsonl", encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_v1_writes_every_artifact(v1_analysis):
  out = v1_analysis["out"]
  for name in ("records.jsonl", "records.csv", "latent_mean.tsv", "latent_pooled.tsv", "projector_metadata.tsv",
               "projector_config.pbtxt", "summary.json", "attributions.jsonl", "report.html"):
    assert (out / name).stat().st_size > 0, name
  records = read_records(out)
  with open(v1_analysis["data_file"], encoding="utf-8") as f:
    num_questions = sum(len(p["qas"]) for a in json.load(f)["data"] for p in a["paragraphs"])
  assert len(records) == num_questions > 30 and set(records[0]) == set(exports.RECORD_FIELDS)
  with open(out / "records.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["id"] for r in rows] == [r["id"] for r in records]
  assert rows[0]["references"] == " | ".join(records[0]["references"])
  mean_rows = (out / "latent_mean.tsv").read_text().splitlines()
  pooled_rows = (out / "latent_pooled.tsv").read_text().splitlines()
  assert len(mean_rows) == len(pooled_rows) == num_questions
  assert len(mean_rows[0].split("\t")) == SQUAD_TINY_CONFIG["hidden_size"]
  summary = json.loads((out / "summary.json").read_text())
  clusters = summary["clusters"]
  assert sum(c["size"] for c in clusters) == num_questions and 2 <= len(clusters) <= 10
  assert {r["cluster"] for r in records} == {c["cluster"] for c in clusters}
  for c in clusters:
    members = [r for r in records if r["cluster"] == c["cluster"]]
    assert c["mean_loss"] == pytest.approx(np.mean([r["loss"] for r in members]))
  assert summary["exact_match"] == pytest.approx(100 * np.mean([r["exact_match"] for r in records]))
  assert len(summary["attributions"]) == 3
  for path in summary["attributions"].values():
    assert (out / path).is_file()
  page = (out / "report.html").read_text()
  assert page.count("<circle") == num_questions and "Suspicious labels" in page


@pytest.mark.slow
def test_v1_scores_match_the_independent_scorer(v1_analysis):
  from test_run_squad import independent_scores
  records = read_records(v1_analysis["out"])
  predictions = {r["id"]: r["prediction"] for r in records}
  exact, f1 = independent_scores(v1_analysis["data_file"], predictions, version=1)
  assert exact == pytest.approx(100 * np.mean([r["exact_match"] for r in records]))
  assert f1 == pytest.approx(100 * np.mean([r["f1"] for r in records]))


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _windows_and_model(squad_assets, data_file, model_dir, version):
  """Labelled windows per question id, and the fine-tuned encoder + head loaded by name."""
  import tensorflow as tf

  from albert import squad_utils
  from albert.io import checkpoint
  from albert.model import heads
  from albert.model.config import AlbertConfig
  from albert.modeling import AlbertModel
  from albert.tokenization import FullTokenizer
  config = AlbertConfig.from_json_file(squad_assets["config"])
  tokenizer = FullTokenizer(spm_model_file=squad_assets["spm"])
  examples = squad_utils.read_squad_examples(data_file, is_training=True).examples
  windows = {}
  for feature in squad_utils.convert_examples_to_features(examples, tokenizer, is_training=True, **WINDOW):
    windows.setdefault(examples[feature.example_index].qas_id, []).append(feature)
  model = AlbertModel(config)
  head = heads.SquadV1Head(config) if version == 1 else heads.SquadV2Head(config)
  prefix = checkpoint.latest_checkpoint(str(model_dir))
  report_ = checkpoint.load_variables({**model.named_variables(), **head.named_variables()}, prefix)
  assert not report_.missing
  return windows, model, head, tf


def _first_answer_window(features):
  """The documented rule, restated: the first window labelled with the answer, else the first window."""
  for feature in features:
    if feature.start_position != 0 or feature.end_position != 0:
      return feature
  return features[0]


@pytest.mark.slow
def test_v1_losses_match_the_model_loss_recomputed_with_numpy(squad_assets, v1_analysis):
  windows, model, head, tf = _windows_and_model(squad_assets, v1_analysis["data_file"], v1_analysis["model_dir"], 1)
  records = read_records(v1_analysis["out"])
  chosen = [_first_answer_window(windows[r["id"]]) for r in records]
  outputs = model(np.stack([f.input_ids for f in chosen]), np.stack([f.input_mask for f in chosen]),
                  np.stack([f.segment_ids for f in chosen]))
  start_logits, end_logits = (t.numpy() for t in head(outputs.sequence_output))
  rows = np.arange(len(chosen))
  starts = np.array([f.start_position for f in chosen])
  ends = np.array([f.end_position for f in chosen])
  expected = -(_log_softmax(start_logits)[rows, starts] + _log_softmax(end_logits)[rows, ends]) / 2
  np.testing.assert_allclose([r["loss"] for r in records], expected, rtol=1e-4, atol=1e-5)
  assert [r["window"] for r in records] == [f.doc_span_index for f in chosen]
  assert [r["num_windows"] for r in records] == [len(windows[r["id"]]) for r in records]


@pytest.mark.slow
def test_v1_attributions_have_one_finite_score_per_token(squad_assets, v1_analysis):
  out = v1_analysis["out"]
  windows, _, _, _ = _windows_and_model(squad_assets, v1_analysis["data_file"], v1_analysis["model_dir"], 1)
  with open(out / "attributions.jsonl", encoding="utf-8") as f:
    items = [json.loads(line) for line in f]
  records = {r["id"]: r for r in read_records(out)}
  highest = sorted(records.values(), key=lambda r: -r["loss"])[:3]
  assert [item["id"] for item in items] == [r["id"] for r in highest]
  for item in items:
    window = _first_answer_window(windows[item["id"]])
    length = int(window.input_mask.sum())
    assert len(item["tokens"]) == len(item["scores"]) == len(item["segments"]) == length
    assert item["segments"] == window.segment_ids[:length].tolist()
    assert np.all(np.isfinite(item["scores"])) and np.any(np.asarray(item["scores"]) != 0)
    assert item["loss"] == pytest.approx(records[item["id"]]["loss"], rel=1e-4)
    assert item["answer"] == [window.start_position, window.end_position]


@pytest.mark.slow
def test_planted_wrong_label_is_among_the_top_suspicious(v1_analysis):
  summary = json.loads((v1_analysis["out"] / "summary.json").read_text())
  assert v1_analysis["planted_id"] in summary["suspicious"][:3], (summary["suspicious"], v1_analysis["num_correct"])
  assert v1_analysis["planted_id"] in summary["highest_loss"][:5]


@pytest.mark.slow
def test_similar_to_lists_the_cosine_nearest_examples(v1_analysis):
  out = v1_analysis["out"]
  summary = json.loads((out / "summary.json").read_text())
  planted = v1_analysis["planted_id"]
  neighbours = summary["similar"][planted]
  ids = [r["id"] for r in read_records(out)]
  vectors = np.loadtxt(out / "latent_mean.tsv", delimiter="\t")
  standardized = (vectors - vectors.mean(0)) / np.where(vectors.std(0) > 0, vectors.std(0), 1)
  query = standardized[ids.index(planted)]
  cosine = standardized @ query / (np.linalg.norm(standardized, axis=1) * np.linalg.norm(query))
  cosine[ids.index(planted)] = -2
  expected = [ids[i] for i in np.argsort(-cosine)[:4]]
  assert [n["id"] for n in neighbours] == expected
  assert [n["similarity"] for n in neighbours] == pytest.approx(sorted(cosine, reverse=True)[:4], abs=1e-4)


def _png_size(path):
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_report_renders_in_headless_chromium(v1_analysis, tmp_path):
  if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
    pytest.skip("chromium is not on PATH (Debian: apt-get install chromium)")
  png = tmp_path / "report.png"
  subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "screenshot_report.sh"),
                  str(v1_analysis["out"] / "report.html"), str(png), "1200,1600"], check=True, timeout=120)
  assert _png_size(png) == (1200, 1600) and png.stat().st_size > 20000


@pytest.fixture(scope="module")
def v2_analysis(squad_assets, tmp_path_factory):
  """A tiny v2 model fine-tuned for a few steps on 24 questions (about half unanswerable)."""
  work = tmp_path_factory.mktemp("analyze_v2")
  data_file = subset_file(shared_path("squad", "dev-v2.0-sample.json"), work / "subset.json", 24)
  model_dir = work / "model"
  run_cli("albert.run_squad_v2", *model_args(squad_assets, model_dir), f"--train_file={data_file}", "--do_train",
          "--train_batch_size=8", "--num_train_epochs=3", "--learning_rate=1e-3")
  out = work / "analysis"
  run_cli("albert.analyze_squad", *model_args(squad_assets, out), f"--init_checkpoint={model_dir}",
          f"--predict_file={data_file}", "--num_clusters=3", "--num_attributions=2")
  return dict(out=out, model_dir=model_dir, data_file=data_file)


@pytest.mark.slow
def test_v2_writes_every_artifact_and_recomputable_losses(squad_assets, v2_analysis):
  out = v2_analysis["out"]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["version"] == 2 and summary["num_clusters_source"] == "given" and len(summary["clusters"]) == 3
  assert isinstance(summary["null_score_diff_threshold"], float)
  records = read_records(out)
  assert len(records) == 24 and any(r["is_impossible"] for r in records)
  assert all(r["references"] == [] for r in records if r["is_impossible"])
  assert len(summary["attributions"]) == 2 and (out / "report.html").is_file()

  windows, model, head, tf = _windows_and_model(squad_assets, v2_analysis["data_file"], v2_analysis["model_dir"], 2)
  chosen = [_first_answer_window(windows[r["id"]]) for r in records]
  outputs = model(np.stack([f.input_ids for f in chosen]), np.stack([f.input_mask for f in chosen]),
                  np.stack([f.segment_ids for f in chosen]))
  starts = np.array([f.start_position for f in chosen])
  ends = np.array([f.end_position for f in chosen])
  start_log_probs, end_log_probs, cls_logits = (t.numpy().astype(np.float64) for t in head.train_logits(
      outputs.sequence_output, np.stack([f.p_mask for f in chosen]), starts, training=False))
  rows = np.arange(len(chosen))
  impossible = np.array([float(f.is_impossible) for f in chosen])
  answer_class = np.logaddexp(0, cls_logits) - impossible * cls_logits  # sigmoid cross-entropy
  expected = 0.5 * -(start_log_probs[rows, starts] + end_log_probs[rows, ends]) + 0.5 * answer_class
  np.testing.assert_allclose([r["loss"] for r in records], expected, rtol=1e-4, atol=1e-5)


# ---- user mistakes ----

@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--predict_file=/nonexistent/dev.json"], "--predict_file: file not found"),
    (["--similar_to=no-such-id"], "--similar_to: unknown question id(s) no-such-id"),
    (["--version=2"], "--version=2 but --init_checkpoint"),
    (["--num_clusters=-1"], "flag --num_clusters=-1: must be >= 0"),
    (["--albert_hub_module_handle=/some/module"], "--albert_hub_module_handle is not supported by analyze_squad"),
])
def test_user_mistakes_end_in_one_line_errors(squad_assets, v1_analysis, tmp_path, extra, message):
  args = model_args(squad_assets, tmp_path / "out") + [f"--init_checkpoint={v1_analysis['model_dir']}",
                                                 f"--predict_file={v1_analysis['data_file']}"]
  proc = run_cli("albert.analyze_squad", *args, *extra, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), proc.stderr[-800:]
