"""Checked reading of parsed JSON: the presence and type of every field a reader uses, with one-line
errors that name the file, the record and the field.

Readers wrap a parsed document (or one JSON line) with `root` and read it through `Node` accessors
instead of indexing dicts and lists, so a corrupted file never surfaces as a KeyError or TypeError:

    for qa in paragraph.field("qas", list).items(record=True):
      text = qa.field("answers", list).item(0, dict).get("text", str)

A missing required key or a value of another type raises `StructureError`, e.g.
`dev.json: data[0].paragraphs[2].qas[5] (id 56be4db0acb8001400a502ec): "answers"[0]."text" must be a
string, found a number (1066)`: the part before the last colon is the record (the path up to the last
`record()`, with its label), the quoted part the field within it.
"""

import json
import re

from albert.core.errors import UserError

REQUIRED = object()
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "an object", type(None): "null"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHOWN_NUMBER_CHARS = 24


class StructureError(UserError):
  """A missing key or a value of the wrong type; a reader that skips bad records catches it."""


def _kinds(kind):
  return kind if isinstance(kind, tuple) else (kind,)


def matches(value, kind):
  """Whether a JSON value is of `kind` (a type or tuple of types); float accepts integers, never booleans."""
  kinds = _kinds(kind)
  if isinstance(value, bool):
    return bool in kinds
  if isinstance(value, int):
    return int in kinds or float in kinds
  return isinstance(value, tuple(k for k in kinds if k not in (bool, int)))


def describe_kind(kind):
  return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in _kinds(kind))


def describe_value(value):
  """What a value is, for "found ...": its type in words, and a short number as it is."""
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (int, float)):
    shown = repr(value)
    return "a number" + (f" ({shown})" if len(shown) <= _SHOWN_NUMBER_CHARS else "")
  if isinstance(value, str):
    return "a string" if value else "an empty string"
  if isinstance(value, list):
    return "a list" if value else "an empty list"
  return "an object" if isinstance(value, dict) else type(value).__name__


def _record_step(step, first):
  if isinstance(step, int):
    return f"[{step}]"
  if not _IDENTIFIER.match(step):
    return f"[{json.dumps(_short_key(step), ensure_ascii=False)}]"
  return step if first else f".{step}"


def _field_path(steps):
  parts = []
  for step in steps:
    if isinstance(step, int):
      parts.append(f"[{step}]")
    else:
      parts.append(("." if parts else "") + json.dumps(_short_key(step), ensure_ascii=False))
  return "".join(parts)


def _short_key(key, limit=60):
  return key if len(key) <= limit else key[:limit - 3] + "..."


class Node:
  """A JSON value, where it came from (`source`: a file, or a file and line), and the path to it."""

  __slots__ = ("value", "source", "_record", "_steps")

  def __init__(self, value, source, record="", steps=()):
    self.value = value
    self.source = source
    self._record = record
    self._steps = tuple(steps)

  # ---- where ----
  def where(self):
    """`<source>: <record>` (or just the source at the top level), the prefix of this node's messages."""
    field = _field_path(self._steps)
    record = f"{self._record}: {field}" if self._record and field else self._record or field
    return f"{self.source}: {record}" if record else str(self.source)

  def fail(self, problem, steps=()):
    """Raises a StructureError saying `<where> <problem>` about this node (or a child at `steps`)."""
    field = _field_path(self._steps + tuple(steps))
    if field:
      subject = f"{self._record}: {field}" if self._record else field
    else:
      subject = self._record or "the top level"
    raise StructureError(f"{self.source}: {subject} {problem}")

  def record(self, label=None):
    """This node as a record: messages name it by its path (plain) and `label` (e.g. "id 56be4...")."""
    path = self._record
    for step in self._steps:
      path += _record_step(step, not path)
    return Node(self.value, self.source, f"{path} ({_short_key(label, 80)})" if label else path)

  # ---- checks and access ----
  def require(self, kind):
    """The value, which must be of `kind` (a type or a tuple of types)."""
    if not matches(self.value, kind):
      self.fail(f"must be {describe_kind(kind)}, found {describe_value(self.value)}")
    return self.value

  def get(self, name, kind=None, default=REQUIRED):
    """The value of key `name` of this object, checked against `kind`; a missing (or, given a default,
    null) key gives `default`, or is an error when there is none."""
    mapping = self.require(dict)
    value = mapping.get(name)
    if value is None and (name not in mapping or default is not REQUIRED):
      if default is REQUIRED:
        self.fail(f"is missing (expected {describe_kind(kind)})" if kind else "is missing", (name,))
      return default
    if kind is not None and not matches(value, kind):
      self.fail(f"must be {describe_kind(kind)}, found {describe_value(value)}", (name,))
    return value

  def field(self, name, kind=dict, default=REQUIRED):
    """Key `name` as a Node (an object or list, per `kind`), to read further."""
    return self._child(self.get(name, kind, default), (name,))

  def item(self, index, kind=None):
    """Item `index` of this list as a Node, checked against `kind` if given."""
    items = self.require(list)
    if not 0 <= index < len(items):
      self.fail(f"has {len(items)} items, none at index {index}")
    child = self._child(items[index], (index,))
    if kind is not None:
      child.require(kind)
    return child

  def items(self, kind=None, record=False):
    """The items of this list as Nodes (each checked against `kind` if given; records if asked)."""
    for index in range(len(self.require(list))):
      child = self.item(index, kind)
      yield child.record() if record else child

  def mapping(self, kind):
    """This object as a dict whose every value is checked against `kind`."""
    return {key: self._child(value, (key,)).require(kind) for key, value in self.require(dict).items()}

  def _child(self, value, steps):
    return Node(value, self.source, self._record, self._steps + steps)


def root(value, source):
  """A parsed document (or one parsed JSON line) as the top Node; `source` names it in messages."""
  return Node(value, source)


def parse(text, source, kind=dict, expected=None):
  """The JSON `text` as a Node whose value must be of `kind`; anything else is a one-line UserError
  naming `source` and saying what was `expected` (default: the kind in words)."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    reason = json_reason(e, with_line="\n" in text.rstrip())
    raise UserError(f"{source}: not valid JSON: {reason}") from None
  except RecursionError:
    raise UserError(f"{source}: not valid JSON: nested too deeply") from None
  if not matches(value, kind):
    raise UserError(f"{source}: expected {expected or 'JSON ' + describe_kind(kind)}, found "
                    f"{describe_value(value)}")
  return Node(value, source)


def json_reason(error, with_line=False):
  """A JSONDecodeError's reason and place, without the doubled "at" some of its messages end in."""
  place = f"line {error.lineno} column {error.colno}" if with_line else f"column {error.colno}"
  return f"{error.msg.removesuffix(' at')} at {place}"
