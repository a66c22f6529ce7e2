"""retrieve: collections (JSONL, CSV, directory, lines), windows, the index, queries, topics and errors."""

import csv
import json
import os

import numpy as np
import pytest
from test_fill_mask import encoder_flag_values, run_cli, write_tiny_model

from albert.cli import model_loader
from albert.core.errors import UserError
from albert.inference import encoder as encoders
from albert.inference import retrieval as retrieve
from albert.model.config import AlbertConfig

DOCUMENTS = [
    ("river", "The river flows north through the green valley and reaches the sea."),
    ("music", "Music and football are popular among the young people of the town."),
    ("war", "The war ended in 1945, after six years of fighting across Europe."),
    ("film", "The film was released in cinemas and received good reviews from critics."),
    ("church", "The old church was rebuilt in stone during the twelfth century."),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  config = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
  config_path, prefix, _ = write_tiny_model(str(tmp_path_factory.mktemp("retrieve")), config, heads=False, seed=2)
  return config_path, prefix


@pytest.fixture(scope="module")
def encoder(tiny_model, spm_model_file):
  return model_loader.load_encoder(encoder_flag_values(*tiny_model, spm_model_file, "--max_seq_length=32"))


@pytest.fixture(scope="module")
def jsonl_collection(tmp_path_factory):
  path = tmp_path_factory.mktemp("collection") / "docs.jsonl"
  lines = [json.dumps({"id": doc_id, "body": text}) for doc_id, text in DOCUMENTS]
  path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
  return str(path)


def build(encoder, documents, index_dir, pooling="mean", window_tokens=30, stride=30, truncate=False, **fields):
  return retrieve.build_index(encoder, documents, str(index_dir), pooling, window_tokens, stride, truncate,
                              batch_size=2, **fields)


@pytest.fixture(scope="module")
def index_dir(encoder, jsonl_collection, tmp_path_factory):
  directory = tmp_path_factory.mktemp("index")
  build(encoder, jsonl_collection, directory, text_field="body")
  return directory


def test_index_files_describe_the_collection(index_dir, encoder):
  info = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
  assert (info["count"], info["documents"], info["dims"], info["pooling"]) == (5, 5, 32, "mean")
  assert info["config"]["hidden_size"] == 32 and "init_checkpoint" in info["model"]
  embeddings = np.load(index_dir / "embeddings.npy")
  assert embeddings.dtype == np.float32 and embeddings.shape == (5, 32)
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
  records = [json.loads(line) for line in open(index_dir / "documents.jsonl", encoding="utf-8")]
  assert [r["id"] for r in records] == [doc_id for doc_id, _ in DOCUMENTS]
  assert [r["doc"] for r in records] == list(range(5))
  text = DOCUMENTS[2][1]
  assert text[slice(*records[2]["chars"])] == text  # the whole document in one window


@pytest.mark.parametrize("pooling", encoders.POOLINGS)
def test_documents_identical_to_a_query_rank_first(pooling, encoder, jsonl_collection, tmp_path):
  build(encoder, jsonl_collection, tmp_path, pooling=pooling, text_field="body")
  index = retrieve.Index(str(tmp_path))
  queries = [text for _, text in DOCUMENTS]
  vectors = retrieve.embed_texts(encoder, queries, pooling, batch_size=3)
  results = retrieve.top_documents(index, queries, vectors, top_k=3)
  for (doc_id, _), result in zip(DOCUMENTS, results):
    hits = result["results"]
    assert hits[0]["id"] == doc_id
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert hits[1]["score"] < hits[0]["score"] - 0.01
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_topic_scores_are_sigmoids_of_cosines_one_row_per_document(index_dir, encoder, tmp_path):
  index = retrieve.Index(str(index_dir))
  topics = ["rivers and the sea", DOCUMENTS[1][1], "history"]
  vectors = retrieve.embed_texts(encoder, topics, "mean", batch_size=2)
  scores = retrieve.topic_scores(index, vectors, scale=10.0, bias=-5.0)
  path = tmp_path / "topics.csv"
  retrieve.write_topics_csv(str(path), index, topics, scores)
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["id", "source", *topics]
  assert [row[0] for row in rows[1:]] == [doc_id for doc_id, _ in DOCUMENTS]
  values = np.array([[float(v) for v in row[2:]] for row in rows[1:]])
  assert values.shape == (5, 3)
  assert ((values > 0) & (values < 1)).all()
  embeddings = np.load(index_dir / "embeddings.npy").astype(np.float64)
  cosines = embeddings @ vectors.T.astype(np.float64)  # one window per document here
  np.testing.assert_allclose(values, 1 / (1 + np.exp(-(cosines * 10 - 5))), rtol=1e-5)
  assert values[1, 1] == pytest.approx(1 / (1 + np.exp(-5.0)), abs=1e-4)  # a topic equal to document 1


def test_long_documents_are_windowed_and_scored_by_their_best_window(encoder, jsonl_collection, tmp_path):
  directory = tmp_path / "windows"
  info = build(encoder, jsonl_collection, directory, window_tokens=6, stride=4, text_field="body")
  records = [json.loads(line) for line in open(directory / "documents.jsonl", encoding="utf-8")]
  assert info["count"] == len(records) > 5
  for doc_number, (_, text) in enumerate(DOCUMENTS):
    spans = [r["window"] for r in records if r["doc"] == doc_number]
    count = len(encoder.tokenize(text))
    expected = [[s, min(s + 6, count)] for s in range(0, count, 4) if s == 0 or s + 2 < count]
    assert spans == expected
  index = retrieve.Index(str(directory))
  vectors = retrieve.embed_texts(encoder, ["the sea", "stone church"], "mean", 2)
  embeddings = np.load(directory / "embeddings.npy")
  by_row = embeddings @ vectors.T
  rows_of = np.array([r["doc"] for r in records])
  expected = np.stack([by_row[rows_of == d].max(axis=0) for d in range(5)])
  np.testing.assert_allclose(index.document_scores(vectors), expected, atol=1e-6)
  truncated = build(encoder, jsonl_collection, tmp_path / "truncated", window_tokens=6, stride=4, truncate=True,
                    text_field="body")
  assert truncated["count"] == 5


def test_windows_cover_the_text_with_the_last_one_reaching_the_end():
  assert retrieve.windows(0, 4, 2, False) == [(0, 0)]
  assert retrieve.windows(4, 4, 2, False) == [(0, 4)]
  assert retrieve.windows(9, 4, 2, False) == [(0, 4), (2, 6), (4, 8), (6, 9)]
  assert retrieve.windows(10, 4, 4, False) == [(0, 4), (4, 8), (8, 10)]
  assert retrieve.windows(9, 4, 2, True) == [(0, 4)]


def test_csv_directory_and_line_collections_embed_like_jsonl(encoder, index_dir, tmp_path):
  csv_path = tmp_path / "docs.csv"
  with open(csv_path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["name", "text"])
    writer.writerows(DOCUMENTS)
  folder = tmp_path / "folder"
  for number, (doc_id, text) in enumerate(DOCUMENTS):
    sub = folder / ("sub" if number % 2 else "")
    sub.mkdir(parents=True, exist_ok=True)
    (sub / f"{number}_{doc_id}.txt").write_text(text + "\n", encoding="utf-8")
  (folder / ".hidden").write_text("not a document", encoding="utf-8")
  lines = tmp_path / "docs.txt"
  lines.write_text("\n".join(text for _, text in DOCUMENTS), encoding="utf-8")
  reference = np.load(index_dir / "embeddings.npy")
  for source, fields, order in ((csv_path, {"id_field": "name"}, [0, 1, 2, 3, 4]), (folder, {}, [0, 2, 4, 1, 3]),
                                (lines, {}, [0, 1, 2, 3, 4])):
    directory = tmp_path / f"index_{os.path.basename(source)}"
    info = build(encoder, str(source), directory, **fields)
    assert info["documents"] == 5
    np.testing.assert_allclose(np.load(directory / "embeddings.npy"), reference[order], atol=1e-5)
  ids = [json.loads(line)["id"] for line in open(tmp_path / "index_folder" / "documents.jsonl", encoding="utf-8")]
  assert ids == ["0_river.txt", "2_war.txt", "4_church.txt", "sub/1_music.txt", "sub/3_film.txt"]
  csv_ids = [json.loads(line)["id"] for line in open(tmp_path / "index_docs.csv" / "documents.jsonl", encoding="utf-8")]
  assert csv_ids == [doc_id for doc_id, _ in DOCUMENTS]


def test_bad_collections_are_one_line_user_errors(encoder, tmp_path):
  def error_of(path, **fields):
    with pytest.raises(UserError) as caught:
      build(encoder, str(path), tmp_path / "index", **fields)
    return str(caught.value)

  no_column = tmp_path / "no_column.csv"
  no_column.write_text("title,body\na,b\n", encoding="utf-8")
  assert "no column 'text'" in error_of(no_column) and "title, body" in error_of(no_column)
  no_field = tmp_path / "no_field.jsonl"
  no_field.write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
  assert "no_field.jsonl line 2: no text field 'text'" in error_of(no_field)
  broken = tmp_path / "broken.jsonl"
  broken.write_text('{"text": "ok"\n', encoding="utf-8")
  assert "broken.jsonl line 1: not valid JSON" in error_of(broken)
  empty = tmp_path / "empty.jsonl"
  empty.write_text("\n", encoding="utf-8")
  assert "no documents" in error_of(empty)
  binary = tmp_path / "binary"
  binary.mkdir()
  (binary / "a.txt").write_bytes(b"\xff\xfe\x00bad")
  assert "a.txt is not UTF-8 text" in error_of(binary)
  other = tmp_path / "docs.xml"
  other.write_text("<a/>", encoding="utf-8")
  assert "expected a directory or a .jsonl, .csv, .tsv or .txt file" in error_of(other)
  assert "not found" in error_of(tmp_path / "missing.jsonl")
  assert not (tmp_path / "index").exists() or not os.listdir(tmp_path / "index")


def test_topics_and_queries_parsing(tmp_path):
  assert retrieve.parse_topics(" sports, politics ,,art ") == ["sports", "politics", "art"]
  path = tmp_path / "topics.txt"
  path.write_text("rivers and lakes\n\nwar, peace\n", encoding="utf-8")
  assert retrieve.parse_topics(str(path)) == ["rivers and lakes", "war, peace"]
  with pytest.raises(UserError, match="repeated topics: a"):
    retrieve.parse_topics("a,b,a")
  with pytest.raises(UserError, match="no topics"):
    retrieve.parse_topics(" , ")
  with pytest.raises(UserError, match="--query or --queries_file"):
    retrieve.read_queries(None, None)


@pytest.mark.slow
def test_cli_index_query_topics(tiny_model, spm_model_file, jsonl_collection, tmp_path):
  config_path, prefix = tiny_model
  index_dir = tmp_path / "index"
  result = run_cli("albert.retrieve", "--mode=index", f"--documents={jsonl_collection}", "--text_field=body",
                   f"--index_dir={index_dir}", f"--albert_config_file={config_path}", f"--init_checkpoint={prefix}",
                   f"--spm_model_file={spm_model_file}", "--max_seq_length=32")
  assert result.returncode == 0, result.stderr
  assert "indexed 5 documents (5 windows)" in result.stdout
  assert "documents/s" in result.stderr
  output = tmp_path / "results.json"
  # the model flags come from index.json
  result = run_cli("albert.retrieve", "--mode=query", f"--index_dir={index_dir}", f"--query={DOCUMENTS[3][1]}",
                   "--top_k=2", f"--output_file={output}")
  assert result.returncode == 0, result.stderr
  hits = json.loads(output.read_text(encoding="utf-8"))[0]["results"]
  assert [h["rank"] for h in hits] == [1, 2] and hits[0]["id"] == "film"
  assert "film" in result.stdout
  result = run_cli("albert.retrieve", "--mode=topics", f"--index_dir={index_dir}", "--topics=cinema,war")
  assert result.returncode == 0, result.stderr
  rows = list(csv.reader(open(index_dir / "topics.csv", encoding="utf-8", newline="")))
  assert rows[0] == ["id", "source", "cinema", "war"] and len(rows) == 6


def test_cli_without_an_index_is_a_user_error(tmp_path):
  result = run_cli("albert.retrieve", "--mode=query", f"--index_dir={tmp_path}", "--query=x")
  assert result.returncode == 2
  assert "error: index file (run --mode=index first) not found" in result.stderr
  assert "Traceback" not in result.stderr
