"""Machine-readable outputs: per-example records (JSON lines, CSV) and TensorBoard Projector files.

The Projector reads `projector_config.pbtxt` from the log directory; `tensorboard --logdir
<output_dir>` then shows every latent table with the shared metadata (id, title, cluster, loss, ...).
"""

import csv
import io
import json
import os

import numpy as np

from albert.core import fileio

RECORDS_JSONL = "records.jsonl"
RECORDS_CSV = "records.csv"
PROJECTOR_CONFIG = "projector_config.pbtxt"
PROJECTOR_METADATA = "projector_metadata.tsv"
RECORD_FIELDS = ("id", "title", "question", "references", "prediction", "exact_match", "f1", "loss",
                 "confidence", "cluster", "x", "y", "is_impossible", "window", "num_windows")
METADATA_FIELDS = ("id", "title", "cluster", "loss", "exact_match", "f1", "confidence", "question")
REFERENCE_SEPARATOR = " | "


def write_records(output_dir, records):
  """records.jsonl (one object per example, references as a list) and records.csv (same columns,
  references joined by " | ")."""
  with fileio.atomic_open(os.path.join(output_dir, RECORDS_JSONL)) as f:
    for record in records:
      f.write(json.dumps({key: record[key] for key in RECORD_FIELDS}, ensure_ascii=False) + "\n")
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=RECORD_FIELDS, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for record in records:
    writer.writerow({**record, "references": REFERENCE_SEPARATOR.join(record["references"])})
  fileio.write_text(os.path.join(output_dir, RECORDS_CSV), buffer.getvalue())


def _tsv_cell(value):
  """One metadata cell: tabs and newlines would break the table, so they become spaces."""
  if isinstance(value, float):
    value = f"{value:.6g}"
  return " ".join(str(value).split()) or "-"


def write_projector(output_dir, tables, records):
  """One `latent_<name>.tsv` per table {name: [n, d] array}, the metadata TSV and the config."""
  lines = ["\t".join(METADATA_FIELDS)]
  lines += ["\t".join(_tsv_cell(record[key]) for key in METADATA_FIELDS) for record in records]
  fileio.write_text(os.path.join(output_dir, PROJECTOR_METADATA), "\n".join(lines) + "\n")
  config = []
  for name, vectors in tables.items():
    file_name = f"latent_{name}.tsv"
    rows = ("\t".join(f"{value:.6g}" for value in row) for row in np.asarray(vectors, np.float64))
    fileio.write_text(os.path.join(output_dir, file_name), "\n".join(rows) + "\n")
    config.append(f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "{file_name}"\n'
                  f'  metadata_path: "{PROJECTOR_METADATA}"\n}}\n')
  fileio.write_text(os.path.join(output_dir, PROJECTOR_CONFIG), "".join(config))
