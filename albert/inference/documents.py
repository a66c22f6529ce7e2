"""Document collections for retrieval: a directory, JSONL, CSV/TSV or plain-text file, streamed.

`read_documents(path)` yields `Document(id, source, text)`: every non-hidden file below a directory
(its id the relative path), one JSON object per line (`text_field`, optional `id_field`), CSV/TSV rows
with a header (the same two columns), or one document per non-blank line of a `.txt` file. Ids default
to the line or row number. Malformed or unreadable input is a UserError naming the file and line.
"""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING, NamedTuple

from albert.core.errors import UserError
from albert.io.files import parse_json_object

if TYPE_CHECKING:
  from collections.abc import Iterator


class Document(NamedTuple):
  """One document of a collection.

  Args:
    id: the document's identifier as text: the relative path for a directory, the id field or column
      when present, else the 1-based line or row number.
    source: where it came from, for people: a path, `path:line` or `path:row n`.
    text: the document's full text.
  """
  id: str
  source: str
  text: str


def read_documents(path: str, text_field: str = "text", id_field: str = "id") -> Iterator[Document]:
  """Streams the collection at `path`; malformed or unreadable input raises a UserError naming it.

  A missing path or an unknown extension fails at once; errors inside a file surface while iterating.

  Args:
    path: a directory, or a `.jsonl`, `.csv`, `.tsv` or `.txt` file.
    text_field: the JSON field or CSV/TSV column holding the text.
    id_field: the JSON field or CSV/TSV column holding the id; optional.
  Returns:
    An iterator of Documents in collection order; below a directory, each directory's files by name,
    then its subdirectories by name.
  """
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
    record = parse_json_object(line, where)
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
