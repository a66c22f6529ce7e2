"""Embedding search over a document collection: `python -m albert.retrieve --mode=index|query|topics`.

    python -m albert.retrieve --mode=index --documents=docs.jsonl --index_dir=idx \
        --albert_config_file=albert_config.json --init_checkpoint=model.ckpt-best --spm_model_file=30k-clean.model
    python -m albert.retrieve --mode=query --index_dir=idx --query="how do plants grow" --top_k=5
    python -m albert.retrieve --mode=topics --index_dir=idx --topics=sports,politics --output_file=topics.csv

`--documents` is a directory, a `.jsonl`, `.csv`/`.tsv` or `.txt` file (`albert.inference.documents`);
documents are split into windows of `--window_tokens` pieces every `--window_stride` pieces, embedded
and pooled per `--pooling` into `--index_dir` (`albert.inference.retrieval`). Query and topics modes
take the model and its settings from the index's `index.json` unless given as flags.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal

import os

from absl import flags

from albert.cli import model_loader
from albert.cli.definer import definer
from albert.core import bounds, fileio
from albert.core.errors import UserError, run_main
from albert.inference import retrieval
from albert.inference.documents import read_documents
from albert.inference.encoder import POOLINGS

FLAGS = flags.FLAGS
MODES = ("index", "query", "topics")
# Flags whose values an index remembers, so queries embed with the model the documents were embedded with.
MODEL_FLAGS = ("albert_config_file", "init_checkpoint", "spm_model_file", "vocab_file", "do_lower_case",
               "albert_hub_module_handle")


def define_flags(flag_values=None):
  model_loader.define_encoder_flags(flag_values, max_seq_length=128, batch_size=32)
  define = definer(flag_values)
  define(flags.DEFINE_enum, "mode", None, list(MODES), "index: embed --documents into --index_dir; query: top-k "
         "documents per query; topics: a CSV of topic scores per document.")
  define(flags.DEFINE_string, "index_dir", None, "The index directory (written by --mode=index, read by the others).")
  define(flags.DEFINE_string, "documents", None, "The collection: a directory, .jsonl, .csv, .tsv or .txt file.")
  define(flags.DEFINE_string, "text_field", "text", "The JSONL field or CSV column holding a document's text.")
  define(flags.DEFINE_string, "id_field", "id", "The JSONL field or CSV column holding a document's id (optional).")
  define(flags.DEFINE_enum, "pooling", None, list(POOLINGS),
         "How a window becomes one vector (default: mean; query modes: the index's).")
  define(flags.DEFINE_enum, "long_text", "window", ["window", "truncate"],
         "Split documents longer than --window_tokens into windows, or keep their first window.")
  define(flags.DEFINE_integer, "window_tokens", None, "Pieces per window (default: --max_seq_length - 2).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_integer, "window_stride", None, "Pieces between window starts (default: --window_tokens).",
         bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_multi_string, "query", None, "A query text; may be repeated.")
  define(flags.DEFINE_string, "queries_file", None, "Queries, one per non-blank line.")
  define(flags.DEFINE_integer, "top_k", 10, "Documents shown per query.", bound=bounds.AT_LEAST_ONE)
  define(flags.DEFINE_string, "topics", None, "Comma-separated topics, or a file with one topic per line.")
  define(flags.DEFINE_float, "topic_scale", 10.0, "Topic score = sigmoid(cosine * topic_scale + topic_bias).")
  define(flags.DEFINE_float, "topic_bias", -5.0, "Topic score = sigmoid(cosine * topic_scale + topic_bias).")
  define(flags.DEFINE_string, "output_file", None, "query: JSON results; topics: the CSV (default: "
         "<index_dir>/topics.csv).")


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


def _run_index():
  if not FLAGS.index_dir:
    raise UserError("--index_dir is required")
  bounds.check_output_directory("index_dir", FLAGS.index_dir)
  read_documents(FLAGS.documents)  # checks the path before the model is loaded
  encoder = model_loader.load_encoder(FLAGS)
  window_tokens = FLAGS.window_tokens or encoder.max_seq_length - 2
  bounds.require(window_tokens <= encoder.max_seq_length - 2, "window_tokens", window_tokens,
                 f"<= --max_seq_length - 2 = {encoder.max_seq_length - 2} (room for [CLS] and [SEP])")
  stride = FLAGS.window_stride or window_tokens
  bounds.require(stride <= window_tokens, "window_stride", stride,
                 f"<= --window_tokens={window_tokens}, or text would be skipped")
  info = retrieval.build_index(encoder, FLAGS.documents, FLAGS.index_dir, FLAGS.pooling or "mean", window_tokens,
                               stride, FLAGS.long_text == "truncate", FLAGS.batch_size, FLAGS.text_field,
                               FLAGS.id_field)
  print(f"indexed {info['documents']} documents ({info['count']} windows) in {FLAGS.index_dir}", flush=True)


def _load_for_search():
  index = retrieval.Index(FLAGS.index_dir)
  _adopt_index_settings(index.info)
  encoder = model_loader.load_encoder(FLAGS)
  if encoder.hidden_size != index.info["dims"]:
    raise UserError(f"the model's hidden size {encoder.hidden_size} differs from the index's {index.info['dims']}")
  return index, encoder


def _run_query():
  queries = retrieval.read_queries(FLAGS.query, FLAGS.queries_file)
  index, encoder = _load_for_search()
  vectors = retrieval.embed_texts(encoder, queries, index.info["pooling"], FLAGS.batch_size)
  results = retrieval.top_documents(index, queries, vectors, FLAGS.top_k)
  print(retrieval.format_results(results), flush=True)
  if FLAGS.output_file:
    fileio.write_json(FLAGS.output_file, results)


def _run_topics():
  topics = retrieval.parse_topics(FLAGS.topics)
  index, encoder = _load_for_search()
  vectors = retrieval.embed_texts(encoder, topics, index.info["pooling"], FLAGS.batch_size)
  scores = retrieval.topic_scores(index, vectors, FLAGS.topic_scale, FLAGS.topic_bias)
  path = FLAGS.output_file or os.path.join(FLAGS.index_dir, "topics.csv")
  retrieval.write_topics_csv(path, index, topics, scores)
  print(f"wrote scores of {len(index.documents)} documents for {len(topics)} topics to {path}", flush=True)


def main(argv):
  del argv
  if not FLAGS.mode:
    raise UserError(f"--mode is required: one of {', '.join(MODES)}")
  {"index": _run_index, "query": _run_query, "topics": _run_topics}[FLAGS.mode]()


if __name__ == "__main__":
  define_flags()
  run_main(main)
