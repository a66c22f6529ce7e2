"""Embedding search over a document collection: windows, the index on disk, queries and topic scores.

A document longer than `window_tokens` pieces is split into windows of that many pieces, starting every
`stride` pieces, the last one reaching the end (or only its first window is kept with `truncate`). Each
window is embedded as `[CLS] window [SEP]` and pooled (mean of the last layer over its pieces, the
[CLS] vector, or the pooler output) into an L2-normalised vector. An index directory holds
`embeddings.npy` (float32 [windows, H]), `documents.jsonl` (one line per window: row, document number,
id, source, piece and character span) and `index.json` (the model, config, pooling, windowing, dims and
counts), all written atomically, index.json last.

A document's score for a query is the maximum over its windows of the cosine similarity. Topic scores
are sigmoid(cosine * scale + bias): with the defaults 10 and -5 a cosine of 0.5 scores 0.5 and every
score lies strictly between 0 and 1 (about 3e-7 to 0.9999997).
"""

from __future__ import annotations

import csv
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from albert.core import fileio
from albert.core.errors import UserError
from albert.core.progress import ProgressLog
from albert.core.streams import batched
from albert.inference.documents import read_documents
from albert.io.npy import npy_row_writer

if TYPE_CHECKING:
  from collections.abc import Sequence

  from albert.inference.encoder import Encoder

INDEX_FILE, EMBEDDINGS_FILE, DOCUMENTS_FILE = "index.json", "embeddings.npy", "documents.jsonl"
INDEX_FORMAT = 1
PROGRESS_SECONDS = 10.0
SCORE_CHUNK_ROWS = 65536


def windows(num_tokens: int, window_tokens: int, stride: int, truncate: bool) -> list[tuple[int, int]]:
  """[start, end) piece ranges covering a document: one if it fits (or with `truncate`), else every
  `stride` pieces until a window reaches the end. An empty document still gets one (empty) window.

  Args:
    num_tokens: the document's length in pieces.
    window_tokens: the most pieces per window.
    stride: pieces between window starts, positive; below `window_tokens` windows overlap, above it
      text between them is skipped.
    truncate: keep only the first window of a long document.
  Returns:
    The (start, end) ranges in document order.
  """
  if num_tokens <= window_tokens or truncate:
    return [(0, min(num_tokens, window_tokens))]
  spans, start = [], 0
  while True:
    spans.append((start, min(start + window_tokens, num_tokens)))
    if start + window_tokens >= num_tokens:
      return spans
    start += stride


class _Window:
  __slots__ = ("doc_number", "document", "tokens", "span")

  def __init__(self, doc_number, document, tokens, span):
    self.doc_number, self.document, self.tokens, self.span = doc_number, document, tokens, span


def _document_windows(encoder, documents, window_tokens, stride, truncate):
  for doc_number, document in enumerate(documents):
    tokens = encoder.tokenize(document.text)
    for span in windows(len(tokens), window_tokens, stride, truncate):
      yield _Window(doc_number, document, tokens[span[0]:span[1]], span)


def _window_record(row, window):
  tokens = window.tokens
  chars = [tokens[0].start, tokens[-1].end] if tokens else [0, 0]
  return {"row": row, "doc": window.doc_number, "id": window.document.id, "source": window.document.source,
          "window": list(window.span), "chars": chars}


# ---- index ----

def build_index(encoder: Encoder, documents_path: str, index_dir: str, pooling: str, window_tokens: int, stride: int,
                truncate: bool, batch_size: int, text_field: str = "text", id_field: str = "id") -> dict:
  """Embeds the collection into `index_dir`; returns the index.json content.

  The collection is read twice (once to count documents for the progress log), never held in memory.

  Args:
    encoder: the loaded Encoder; its model and config are recorded in index.json.
    documents_path: the collection (see `albert.inference.documents.read_documents`).
    index_dir: the directory to write; created if needed, existing index files are replaced.
    pooling: one of `POOLINGS` (see `albert.inference.encoder.pool`).
    window_tokens: pieces per window, at most `max_seq_length` - 2 to leave room for [CLS] and [SEP].
    stride: pieces between window starts, at most `window_tokens` so no text is skipped.
    truncate: keep only each document's first window.
    batch_size: windows per forward pass.
    text_field: the JSON field or CSV column holding the text.
    id_field: the JSON field or CSV column holding the id.
  Returns:
    The dict written to index.json. An empty collection is a UserError.
  """
  total = sum(1 for _ in read_documents(documents_path, text_field, id_field))
  if not total:
    raise UserError(f"--documents {documents_path}: no documents")
  progress = ProgressLog("embedded", "documents", total, PROGRESS_SECONDS)
  items = _document_windows(encoder, read_documents(documents_path, text_field, id_field), window_tokens,
                            stride, truncate)
  rows = documents = 0
  with npy_row_writer(os.path.join(index_dir, EMBEDDINGS_FILE), [encoder.hidden_size]) as vectors, \
      fileio.atomic_open(os.path.join(index_dir, DOCUMENTS_FILE)) as records:
    for batch in batched(items, batch_size):
      vectors.append(encoder.embed([encoder.build_input(w.tokens) for w in batch], pooling))
      for window in batch:
        records.write(json.dumps(_window_record(rows, window), ensure_ascii=False) + "\n")
        rows += 1
      documents = batch[-1].doc_number + 1
      progress.update(documents, f", {rows} windows")
  progress.update(documents, f", {rows} windows", force=True)
  info = {"format": INDEX_FORMAT, "count": rows, "documents": total, "dims": encoder.hidden_size,
          "pooling": pooling, "max_seq_length": encoder.max_seq_length, "window_tokens": window_tokens,
          "window_stride": stride, "long_text": "truncate" if truncate else "window",
          "collection": os.path.abspath(documents_path), "text_field": text_field, "id_field": id_field,
          "model": encoder.source, "config": encoder.config.to_dict()}
  fileio.write_json(os.path.join(index_dir, INDEX_FILE), info)
  return info


class Index:
  """A built index: window vectors (memory-mapped), each window's document, and the documents' metadata.

  A missing, unreadable or inconsistent index is a UserError asking to rebuild it.

  Args:
    index_dir: a directory written by `build_index`.

  Attributes:
    info: the index.json content.
    embeddings: float32 [windows, H] unit vectors, memory-mapped.
    documents: per document its (id, source).
    windows: per window its ([first piece, end piece], [first char, end char]).
    row_doc: int64 [windows], the document number of each window.
    first_rows: int64 [documents + 1], the first window row of each document, then the window count.
  """

  def __init__(self, index_dir: str) -> None:
    if not index_dir:
      raise UserError("--index_dir is required")
    self.info = fileio.read_json(os.path.join(index_dir, INDEX_FILE), what="index file (run --mode=index first)")
    path = os.path.join(index_dir, EMBEDDINGS_FILE)
    try:
      self.embeddings = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
      raise UserError(f"--index_dir: cannot read {path}: {e}; rebuild the index with --mode=index") from None
    if self.embeddings.shape != (self.info.get("count"), self.info.get("dims")):
      raise UserError(f"--index_dir {index_dir}: {EMBEDDINGS_FILE} has shape {self.embeddings.shape} but "
                      f"{INDEX_FILE} says ({self.info.get('count')}, {self.info.get('dims')}); rebuild the index")
    self._read_documents(os.path.join(index_dir, DOCUMENTS_FILE))

  def _read_documents(self, path):
    """Per window its document number and spans; per document its id, source and first window row."""
    row_doc, self.documents, self.windows, first_rows = [], [], [], []
    for record in _read_records(path):
      if record["doc"] == len(self.documents):
        self.documents.append((record["id"], record["source"]))
        first_rows.append(len(row_doc))
      row_doc.append(record["doc"])
      self.windows.append((record["window"], record["chars"]))
    self.row_doc = np.asarray(row_doc, dtype=np.int64)
    self.first_rows = np.asarray(first_rows + [len(row_doc)], dtype=np.int64)
    if len(row_doc) != len(self.embeddings):
      raise UserError(f"--index_dir: {path} has {len(row_doc)} windows but {EMBEDDINGS_FILE} has "
                      f"{len(self.embeddings)}; rebuild the index")

  def document_scores(self, vectors: np.ndarray) -> np.ndarray:
    """[documents, queries]: per document the maximum cosine over its windows (vectors are unit-length).

    The embeddings are read in chunks, so the index never has to fit in memory.

    Args:
      vectors: float32 [queries, H] unit vectors (`embed_texts`).
    Returns:
      float32 [documents, queries] cosine similarities in [-1, 1].
    """
    scores = np.full([len(self.documents), len(vectors)], -np.inf, dtype=np.float32)
    for begin in range(0, len(self.embeddings), SCORE_CHUNK_ROWS):
      chunk = np.asarray(self.embeddings[begin:begin + SCORE_CHUNK_ROWS]) @ vectors.T
      np.maximum.at(scores, self.row_doc[begin:begin + len(chunk)], chunk)
    return scores

  def best_row(self, doc: int, vector: np.ndarray) -> int:
    """The row of the document's window closest to `vector`.

    Args:
      doc: the document number (its position in the collection).
      vector: one float32 [H] unit vector.
    Returns:
      The row of `embeddings` (and of documents.jsonl) with the highest cosine; the first on ties.
    """
    first, end = self.first_rows[doc], self.first_rows[doc + 1]
    return int(first + np.argmax(np.asarray(self.embeddings[first:end]) @ vector))


def _read_records(path):
  try:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        try:
          yield json.loads(line)
        except json.JSONDecodeError:
          raise UserError(f"--index_dir: {path} line {number} is not valid JSON; rebuild the index") from None
  except FileNotFoundError:
    raise UserError(f"--index_dir: {path} is missing; rebuild the index with --mode=index") from None


# ---- query and topics ----

def embed_texts(encoder: Encoder, texts: Sequence[str], pooling: str, batch_size: int) -> np.ndarray:
  """[len(texts), H] unit vectors of short texts (each truncated to --max_seq_length).

  Args:
    encoder: the loaded Encoder; use the model and pooling the index was built with.
    texts: the queries or topics, at least one.
    pooling: one of `POOLINGS`.
    batch_size: texts per forward pass.
  Returns:
    float32 [len(texts), H].
  """
  vectors = [encoder.embed([encoder.encode_text(t) for t in batch], pooling)
             for batch in batched(texts, batch_size)]
  return np.concatenate(vectors, axis=0)


def top_documents(index: Index, queries: Sequence[str], vectors: np.ndarray, top_k: int) -> list[dict]:
  """Per query its `top_k` documents by score (ties: collection order).

  Args:
    index: the loaded Index.
    queries: the query texts, recorded in the results.
    vectors: float32 [len(queries), H], the queries' unit vectors.
    top_k: documents kept per query.
  Returns:
    Per query {"query", "results"}; each result has its 1-based rank, the document's id and source,
    its score (the best window's cosine), and that window's piece range and character span.
  """
  scores = index.document_scores(vectors)
  results = []
  for column, query in enumerate(queries):
    order = np.argsort(-scores[:, column], kind="stable")[:top_k]
    hits = []
    for rank, doc in enumerate(order, 1):
      row = index.best_row(doc, vectors[column])
      doc_id, source = index.documents[doc]
      window, chars = index.windows[row]
      hits.append({"rank": rank, "id": doc_id, "source": source, "score": float(scores[doc, column]),
                   "window": window, "chars": chars})
    results.append({"query": query, "results": hits})
  return results


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
  """The logistic function 1 / (1 + exp(-x)), elementwise.

  Args:
    x: a number or array; very negative values give 0.0 (numpy may warn of overflow).
  Returns:
    Values in [0, 1], same shape as x.
  """
  return 1.0 / (1.0 + np.exp(-x))


def topic_scores(index: Index, vectors: np.ndarray, scale: float, bias: float) -> np.ndarray:
  """[documents, topics] float64 sigmoid(max cosine * scale + bias).

  Args:
    index: the loaded Index.
    vectors: float32 [topics, H], the topics' unit vectors.
    scale: multiplies the cosine; larger values separate scores more sharply.
    bias: added after scaling; -bias / scale is the cosine that scores 0.5.
  Returns:
    float64 [documents, topics], each in [0, 1] (strictly inside for moderate scale and bias).
  """
  scores = index.document_scores(vectors)
  return sigmoid(scores.astype(np.float64) * scale + bias)


def write_topics_csv(path: str, index: Index, topics: Sequence[str], scores: np.ndarray) -> None:
  """Writes the topic scores as CSV, atomically: an `id,source,<topic>...` header, one row per document.

  Args:
    path: the CSV file to write.
    index: the Index the scores belong to; gives each row's id and source.
    topics: the column names, in the order of the score columns.
    scores: [documents, topics] from `topic_scores`; written with full precision (`repr`).
  """
  with fileio.atomic_open(path) as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["id", "source", *topics])
    for (doc_id, source), row in zip(index.documents, scores):
      writer.writerow([doc_id, source, *(repr(float(s)) for s in row)])


def parse_topics(value: str | None) -> list[str]:
  """Topics from a file (one per non-blank line) or a comma-separated list.

  Args:
    value: the `--topics` flag: the path of an existing UTF-8 file, else the list itself.
  Returns:
    The topics, stripped, in order. A missing value, no topics, or a repeated topic is a UserError.
  """
  if not value:
    raise UserError("--topics is required with --mode=topics")
  if os.path.isfile(value):
    with open(value, encoding="utf-8") as f:
      topics = [line.strip() for line in f if line.strip()]
  else:
    topics = [t.strip() for t in value.split(",") if t.strip()]
  if not topics:
    raise UserError(f"--topics: no topics in {value!r}")
  duplicates = sorted({t for t in topics if topics.count(t) > 1})
  if duplicates:
    raise UserError(f"--topics: repeated topics: {', '.join(duplicates)}")
  return topics


def read_queries(queries: Sequence[str] | None, queries_file: str | None) -> list[str]:
  """The query texts of `--query` and then `--queries_file` (one per non-blank line, stripped).

  Args:
    queries: the `--query` values, or None.
    queries_file: a UTF-8 file of queries, or None.
  Returns:
    The queries in order. No queries at all, a missing or undecodable file is a UserError.
  """
  texts = list(queries or ())
  if queries_file:
    try:
      with open(queries_file, encoding="utf-8") as f:
        texts += [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
      raise UserError(f"--queries_file: file not found: {queries_file}") from None
    except UnicodeDecodeError:
      raise UserError(f"--queries_file {queries_file} is not UTF-8 text") from None
  if not texts:
    raise UserError("--mode=query needs --query or --queries_file")
  return texts


def format_results(results: list[dict]) -> str:
  """The query report for people: a `query:` line per query, then one line per hit with its rank, score,
  id, source and piece range (`results` as `top_documents` returns them)."""
  lines = []
  for result in results:
    lines.append(f"query: {result['query']}")
    for hit in result["results"]:
      lines.append(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['id']}  ({hit['source']}, pieces "
                   f"{hit['window'][0]}-{hit['window'][1]})")
  return "\n".join(lines)
