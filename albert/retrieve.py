"""Embedding search over a document collection: `python -m albert.retrieve --mode=index|query|topics`.

    python -m albert.retrieve --mode=index --documents=docs.jsonl --index_dir=idx \
        --albert_config_file=albert_config.json --init_checkpoint=model.ckpt-best --spm_model_file=30k-clean.model
    python -m albert.retrieve --mode=query --index_dir=idx --query="how do plants grow" --top_k=5
    python -m albert.retrieve --mode=topics --index_dir=idx --topics=sports,politics --output_file=topics.csv

`--documents` is a directory (every non-hidden file below it is one UTF-8 document, its id the relative
path), a `.jsonl` file (one object per line; `--text_field`, optional `--id_field`), a `.csv`/`.tsv` file
with a header (the same two columns) or a `.txt` file (one document per non-blank line). Ids default to
the line or row number. The collection is streamed twice (a first pass validates it and counts documents
for progress) and never held in memory.

A document longer than `--window_tokens` pieces is split into windows of that many pieces, starting every
`--window_stride` pieces, the last one reaching the end (or only its first window is kept with
`--long_text=truncate`). Each window is embedded as `[CLS] window [SEP]`; `--pooling` picks the mean of
the last layer over its pieces (default), the [CLS] vector, or the pooler output; vectors are
L2-normalised. `--index_dir` then holds `embeddings.npy` (float32 [windows, H]), `documents.jsonl` (one
line per window: row, document number, id, source, piece and character span) and `index.json` (the
model, config, pooling, windowing, dims and counts), all written atomically, index.json last.

Query and topics modes take the model and its settings from `index.json` unless given as flags. A
document's score is the maximum over its windows of the cosine similarity. `query` prints the `--top_k`
documents per query (`--query`, repeatable, or `--queries_file`, one per line) and writes them as JSON to
`--output_file`. `topics` writes a CSV (id, source, one column per topic; one row per document) of
sigmoid(cosine * --topic_scale + --topic_bias): with the defaults 10 and -5 a cosine of 0.5 scores 0.5 and
every score lies strictly between 0 and 1 (about 3e-7 to 0.9999997).
"""

import csv
import json
import math
import os
import time
from typing import NamedTuple

import numpy as np
from absl import flags, logging

from albert import encoder as encoders
from albert import fileio
from albert.errors import UserError, run_main

FLAGS = flags.FLAGS
MODES = ("index", "query", "topics")
INDEX_FILE, EMBEDDINGS_FILE, DOCUMENTS_FILE = "index.json", "embeddings.npy", "documents.jsonl"
INDEX_FORMAT = 1
PROGRESS_SECONDS = 10.0
SCORE_CHUNK_ROWS = 65536
# Flags whose values an index remembers, so queries embed with the model the documents were embedded with.
MODEL_FLAGS = ("albert_config_file", "init_checkpoint", "spm_model_file", "vocab_file", "do_lower_case",
               "albert_hub_module_handle")


def define_flags():
  encoders.define_flags(max_seq_length=128, batch_size=32)
  flags.DEFINE_enum("mode", None, list(MODES), "index: embed --documents into --index_dir; query: top-k "
                    "documents per query; topics: a CSV of topic scores per document.")
  flags.DEFINE_string("index_dir", None, "The index directory (written by --mode=index, read by the others).")
  flags.DEFINE_string("documents", None, "The collection: a directory, .jsonl, .csv, .tsv or .txt file.")
  flags.DEFINE_string("text_field", "text", "The JSONL field or CSV column holding a document's text.")
  flags.DEFINE_string("id_field", "id", "The JSONL field or CSV column holding a document's id (optional).")
  flags.DEFINE_enum("pooling", None, list(encoders.POOLINGS),
                    "How a window becomes one vector (default: mean; query modes: the index's).")
  flags.DEFINE_enum("long_text", "window", ["window", "truncate"],
                    "Split documents longer than --window_tokens into windows, or keep their first window.")
  flags.DEFINE_integer("window_tokens", None, "Pieces per window (default: --max_seq_length - 2).")
  flags.DEFINE_integer("window_stride", None, "Pieces between window starts (default: --window_tokens).")
  flags.DEFINE_multi_string("query", None, "A query text; may be repeated.")
  flags.DEFINE_string("queries_file", None, "Queries, one per non-blank line.")
  flags.DEFINE_integer("top_k", 10, "Documents shown per query.")
  flags.DEFINE_string("topics", None, "Comma-separated topics, or a file with one topic per line.")
  flags.DEFINE_float("topic_scale", 10.0, "Topic score = sigmoid(cosine * topic_scale + topic_bias).")
  flags.DEFINE_float("topic_bias", -5.0, "Topic score = sigmoid(cosine * topic_scale + topic_bias).")
  flags.DEFINE_string("output_file", None, "query: JSON results; topics: the CSV (default: "
                      "<index_dir>/topics.csv).")


# ---- reading a collection ----

class Document(NamedTuple):
  id: str
  source: str
  text: str


def read_documents(path, text_field="text", id_field="id"):
  """Streams the collection at `path`; malformed or unreadable input raises a UserError naming it."""
  if not path:
    raise UserError("--documents is required")
  if os.path.isdir(path):
    return _directory_documents(path)
  if not os.path.isfile(path):
    raise UserError(f"--documents: not found: {path}")
  extension = os.path.splitext(path)[1].lower()
  if extension == ".jsonl":
    return _jsonl_documents(path, text_field, id_field)
  if extension in (".csv", ".tsv"):
    return _csv_documents(path, "\t" if extension == ".tsv" else ",", text_field, id_field)
  if extension == ".txt":
    return _line_documents(path)
  raise UserError(f"--documents {path}: expected a directory or a .jsonl, .csv, .tsv or .txt file")


def _directory_documents(root):
  for directory, subdirectories, names in os.walk(root):
    subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    for name in sorted(n for n in names if not n.startswith(".")):
      path = os.path.join(directory, name)
      yield Document(os.path.relpath(path, root), path, _read_text_file(path))


def _read_text_file(path):
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise UserError(f"--documents: {path} is not UTF-8 text (byte {e.start})") from None
  except OSError as e:
    raise UserError(f"--documents: cannot read {path}: {e.strerror}") from None


def _lines(path):
  """(line number, line) of a UTF-8 file, streamed, with decoding and OS errors as UserErrors."""
  number = 0
  try:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        yield number, line
  except UnicodeDecodeError as e:
    raise UserError(f"--documents {path} is not UTF-8 text (near line {number + 1}: {e.reason})") from None
  except OSError as e:
    raise UserError(f"--documents: cannot read {path}: {e.strerror}") from None


def _line_documents(path):
  for number, line in _lines(path):
    if line.strip():
      yield Document(str(number), f"{path}:{number}", line.rstrip("\r\n"))


def _jsonl_documents(path, text_field, id_field):
  for number, line in _lines(path):
    if not line.strip():
      continue
    where = f"--documents {path} line {number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"{where}: not valid JSON: {e.msg}") from None
    if not isinstance(record, dict):
      raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get(text_field)
    if not isinstance(text, str):
      raise UserError(f"{where}: no text field {text_field!r} (set --text_field; fields: {', '.join(record)})")
    yield Document(str(record.get(id_field, number)), f"{path}:{number}", text)


def _csv_documents(path, delimiter, text_field, id_field):
  csv.field_size_limit(2 ** 31 - 1)  # documents can be far longer than csv's default 128 KiB field limit
  rows = _lines(path)
  reader = csv.DictReader((line for _, line in rows), delimiter=delimiter)
  try:
    columns = reader.fieldnames or []
    if text_field not in columns:
      raise UserError(f"--documents {path}: no column {text_field!r} (set --text_field; columns: "
                      f"{', '.join(columns) or 'none'})")
    for number, row in enumerate(reader, 1):
      text = row[text_field]
      if text is None:
        raise UserError(f"--documents {path} row {number}: too few fields, no {text_field!r} value")
      yield Document(str(row.get(id_field) or number), f"{path}:row {number}", text)
  except csv.Error as e:
    raise UserError(f"--documents {path} line {reader.line_num}: malformed CSV: {e}") from None


# ---- windows ----

def windows(num_tokens, window_tokens, stride, truncate):
  """[start, end) piece ranges covering a document: one if it fits (or with `truncate`), else every
  `stride` pieces until a window reaches the end. An empty document still gets one (empty) window."""
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

class _Progress:
  """Logs documents/second and the remaining time every PROGRESS_SECONDS."""

  def __init__(self, total):
    self.total, self.start = total, time.monotonic()
    self.last = self.start

  def update(self, documents, rows, final=False):
    now = time.monotonic()
    if not final and now - self.last < PROGRESS_SECONDS:
      return
    self.last = now
    rate = documents / max(now - self.start, 1e-9)
    eta = (self.total - documents) / rate if rate else float("inf")
    logging.info("embedded %d/%d documents (%d windows), %.1f documents/s, ETA %s",
                 documents, self.total, rows, rate, _duration(eta))


def _duration(seconds):
  if not math.isfinite(seconds):
    return "unknown"
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def build_index(encoder, documents_path, index_dir, pooling, window_tokens, stride, truncate, batch_size,
                text_field="text", id_field="id"):
  """Embeds the collection into `index_dir`; returns the index.json content."""
  total = sum(1 for _ in read_documents(documents_path, text_field, id_field))
  if not total:
    raise UserError(f"--documents {documents_path}: no documents")
  progress = _Progress(total)
  items = _document_windows(encoder, read_documents(documents_path, text_field, id_field), window_tokens,
                            stride, truncate)
  rows = documents = 0
  with encoders.npy_row_writer(os.path.join(index_dir, EMBEDDINGS_FILE), [encoder.hidden_size]) as vectors, \
      fileio.atomic_open(os.path.join(index_dir, DOCUMENTS_FILE)) as records:
    for batch in encoders.batched(items, batch_size):
      vectors.append(encoder.embed([encoder.build_input(w.tokens) for w in batch], pooling))
      for window in batch:
        records.write(json.dumps(_window_record(rows, window), ensure_ascii=False) + "\n")
        rows += 1
      documents = batch[-1].doc_number + 1
      progress.update(documents, rows)
  progress.update(documents, rows, final=True)
  info = {"format": INDEX_FORMAT, "count": rows, "documents": total, "dims": encoder.hidden_size,
          "pooling": pooling, "max_seq_length": encoder.max_seq_length, "window_tokens": window_tokens,
          "window_stride": stride, "long_text": "truncate" if truncate else "window",
          "collection": os.path.abspath(documents_path), "text_field": text_field, "id_field": id_field,
          "model": encoder.source, "config": encoder.config.to_dict()}
  fileio.write_json(os.path.join(index_dir, INDEX_FILE), info)
  return info


class Index:
  """A built index: window vectors (memory-mapped), each window's document, and the documents' metadata."""

  def __init__(self, index_dir):
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

  def document_scores(self, vectors):
    """[documents, queries]: per document the maximum cosine over its windows (vectors are unit-length).

    The embeddings are read in chunks, so the index never has to fit in memory.
    """
    scores = np.full([len(self.documents), len(vectors)], -np.inf, dtype=np.float32)
    for begin in range(0, len(self.embeddings), SCORE_CHUNK_ROWS):
      chunk = np.asarray(self.embeddings[begin:begin + SCORE_CHUNK_ROWS]) @ vectors.T
      np.maximum.at(scores, self.row_doc[begin:begin + len(chunk)], chunk)
    return scores

  def best_row(self, doc, vector):
    """The row of the document's window closest to `vector`."""
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

def embed_texts(encoder, texts, pooling, batch_size):
  """[len(texts), H] unit vectors of short texts (each truncated to --max_seq_length)."""
  vectors = [encoder.embed([encoder.encode_text(t) for t in batch], pooling)
             for batch in encoders.batched(texts, batch_size)]
  return np.concatenate(vectors, axis=0)


def top_documents(index, queries, vectors, top_k):
  """Per query its `top_k` documents by score (ties: collection order)."""
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


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def topic_scores(index, vectors, scale, bias):
  """[documents, topics] float64 sigmoid(max cosine * scale + bias)."""
  scores = index.document_scores(vectors)
  return sigmoid(scores.astype(np.float64) * scale + bias)


def write_topics_csv(path, index, topics, scores):
  with fileio.atomic_open(path) as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["id", "source", *topics])
    for (doc_id, source), row in zip(index.documents, scores):
      writer.writerow([doc_id, source, *(repr(float(s)) for s in row)])


def parse_topics(value):
  """Topics from a file (one per non-blank line) or a comma-separated list."""
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


def read_queries(queries, queries_file):
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


def format_results(results):
  lines = []
  for result in results:
    lines.append(f"query: {result['query']}")
    for hit in result["results"]:
      lines.append(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['id']}  ({hit['source']}, pieces "
                   f"{hit['window'][0]}-{hit['window'][1]})")
  return "\n".join(lines)


# ---- main ----

def _adopt_index_settings(info):
  """Model flags the user did not set take the index's values, so queries use the documents' model."""
  for name in MODEL_FLAGS:
    if name in info.get("model", {}) and not FLAGS[name].present:
      FLAGS[name].value = info["model"][name]
  if not FLAGS["max_seq_length"].present:
    FLAGS.max_seq_length = info["max_seq_length"]
  if FLAGS.pooling and FLAGS.pooling != info["pooling"]:
    raise UserError(f"--pooling={FLAGS.pooling} differs from the index's {info['pooling']}; "
                    "queries must be pooled like the documents")


def _positive(*names):
  for name in names:
    value = FLAGS[name].value
    if value is not None and value <= 0:
      raise UserError(f"--{name} must be positive, got {value}")


def _run_index():
  if not FLAGS.index_dir:
    raise UserError("--index_dir is required")
  read_documents(FLAGS.documents)  # checks the path before the model is loaded
  encoder = encoders.load_encoder(FLAGS)
  window_tokens = FLAGS.window_tokens or encoder.max_seq_length - 2
  if window_tokens > encoder.max_seq_length - 2:
    raise UserError(f"--window_tokens={window_tokens} does not fit --max_seq_length={encoder.max_seq_length} "
                    "with [CLS] and [SEP]")
  stride = FLAGS.window_stride or window_tokens
  if stride > window_tokens:
    raise UserError(f"--window_stride={stride} is larger than --window_tokens={window_tokens}: text would be skipped")
  info = build_index(encoder, FLAGS.documents, FLAGS.index_dir, FLAGS.pooling or "mean", window_tokens, stride,
                     FLAGS.long_text == "truncate", FLAGS.batch_size, FLAGS.text_field, FLAGS.id_field)
  print(f"indexed {info['documents']} documents ({info['count']} windows) in {FLAGS.index_dir}", flush=True)


def _load_for_search():
  index = Index(FLAGS.index_dir)
  _adopt_index_settings(index.info)
  encoder = encoders.load_encoder(FLAGS)
  if encoder.hidden_size != index.info["dims"]:
    raise UserError(f"the model's hidden size {encoder.hidden_size} differs from the index's {index.info['dims']}")
  return index, encoder


def _run_query():
  queries = read_queries(FLAGS.query, FLAGS.queries_file)
  index, encoder = _load_for_search()
  vectors = embed_texts(encoder, queries, index.info["pooling"], FLAGS.batch_size)
  results = top_documents(index, queries, vectors, FLAGS.top_k)
  print(format_results(results), flush=True)
  if FLAGS.output_file:
    fileio.write_json(FLAGS.output_file, results)


def _run_topics():
  topics = parse_topics(FLAGS.topics)
  index, encoder = _load_for_search()
  vectors = embed_texts(encoder, topics, index.info["pooling"], FLAGS.batch_size)
  scores = topic_scores(index, vectors, FLAGS.topic_scale, FLAGS.topic_bias)
  path = FLAGS.output_file or os.path.join(FLAGS.index_dir, "topics.csv")
  write_topics_csv(path, index, topics, scores)
  print(f"wrote scores of {len(index.documents)} documents for {len(topics)} topics to {path}", flush=True)


def main(argv):
  del argv
  if not FLAGS.mode:
    raise UserError(f"--mode is required: one of {', '.join(MODES)}")
  _positive("top_k", "window_tokens", "window_stride", "batch_size")
  {"index": _run_index, "query": _run_query, "topics": _run_topics}[FLAGS.mode]()


if __name__ == "__main__":
  define_flags()
  run_main(main)
