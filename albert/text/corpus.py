"""Raw text (e.g. a Project Gutenberg book) in the pretraining input format: one sentence per line and
a blank line between documents, what `create_pretraining_data` reads (docs/compatibility.md §7.1).

Raw text (format `raw`) is processed like this:
- A Project Gutenberg header and footer (everything outside the `*** START OF` / `*** END OF` markers)
  is dropped, as are `[Illustration ...]` blocks and the `_` italics marks.
- Paragraphs are blank-line separated; their hard-wrapped lines are re-joined (a line ending in "-"
  joins the next without a space: Gutenberg keeps real hyphens at line ends).
- Headings (a one-line paragraph in capitals or Title Case without closing punctuation) start a new
  document, so a story or chapter becomes a document. A "Transcriber's Notes" section is dropped.
- Paragraphs that are not prose are dropped: tables such as a contents page (column gaps, page
  numbers), and lines without closing punctuation such as title-page credits.
- Sentences are split by rules: at ".", "!", "?" or an ellipsis (plus closing quotes or brackets)
  followed by a space and a capital letter, digit or opening quote, except after abbreviations
  (Mr., Mrs., St., ...), initials (J. R. R.) and dotted abbreviations (e.g., U.S.).
- Documents with fewer than `min_document_sentences` sentences are dropped.

Text already in the target format (`lines`) is copied unchanged; `auto` picks
`lines` when most lines end like sentences and there are no Gutenberg markers, else `raw`.
"""

import re

FORMATS = ("auto", "raw", "lines")

ABBREVIATIONS = frozenset("""
    mr mrs ms mssrs messrs mme mlle dr prof rev hon st mt ft jr sr sen gen col capt cmdr lt sgt maj gov pres
    no nos vol vols p pp ch chap fig figs sec art ed eds op cit ca cf approx dept est inc ltd co corp bros
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun vs viz al
    """.split())

_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_GUTENBERG_END_LINE = re.compile(r"^\s*End of (the )?Project Gutenberg", re.IGNORECASE)
_TRANSCRIBER_NOTE = re.compile(r"^transcriber.s notes?\b", re.IGNORECASE)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.IGNORECASE)
_TABLE_GAP = re.compile(r"\S {3,}\S")
_CLOSING = "\"'”’)]»"
_OPENING = "\"'“‘([«"
_SENTENCE_END = re.compile(r"(?:\.{3,}|…|[.!?]+)[" + re.escape(_CLOSING) + r"]*(?=\s+\S)")
_SMALL_WORDS = frozenset("a an and as at but by for in of on or the to with from into".split())
_LINE_END_PUNCTUATION = ".!?:;" + _CLOSING


def _word_before(text, position):
  """The whitespace-delimited word ending at `position`, without opening quotes or brackets."""
  start = position
  while start > 0 and not text[start - 1].isspace():
    start -= 1
  return text[start:position].lstrip(_OPENING)


def _is_abbreviation(word):
  """True for words whose trailing "." does not end a sentence: titles, initials (not the pronoun I),
  dotted forms."""
  if not word:
    return False
  if word.lower() in ABBREVIATIONS:
    return True
  if len(word) == 1 and word.isalpha() and word != "I":
    return True
  return bool(re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word))


def _starts_sentence(text):
  """True when `text` (after the gap) begins like a sentence: a capital or digit, maybe after quotes."""
  stripped = text.lstrip(_OPENING)
  return bool(stripped) and (stripped[0].isupper() or stripped[0].isdigit())


def split_sentences(paragraph: str) -> list[str]:
  """Sentences of one paragraph of running text (whitespace already collapsed).

  Args:
    paragraph: one line of text.
  Returns:
    The sentences, stripped, in order; a paragraph without a sentence break is one sentence.
  """
  sentences, start = [], 0
  for match in _SENTENCE_END.finditer(paragraph):
    terminal = match.group().rstrip(_CLOSING)
    if terminal == "." and _is_abbreviation(_word_before(paragraph, match.start())):
      continue
    if not _starts_sentence(paragraph[match.end():].lstrip()):
      continue
    sentences.append(paragraph[start:match.end()].strip())
    start = match.end()
  rest = paragraph[start:].strip()
  if rest:
    sentences.append(rest)
  return sentences


# --------------------------------------------------------------------------------------------------
# Raw text: paragraphs, headings, documents
# --------------------------------------------------------------------------------------------------

def strip_gutenberg(text: str) -> str:
  """The text between the Project Gutenberg START and END markers (all of it when there are none).

  Args:
    text: a whole book.
  Returns:
    The body, without the marker lines and any "End of the Project Gutenberg" line.
  """
  lines = text.split("\n")
  start = next((i + 1 for i, line in enumerate(lines) if _GUTENBERG_START.match(line)), 0)
  end = next((i for i, line in enumerate(lines) if i >= start and _GUTENBERG_END.match(line)), len(lines))
  return "\n".join(line for line in lines[start:end] if not _GUTENBERG_END_LINE.match(line))


def paragraphs(text: str) -> list[list[str]]:
  """Blank-line separated paragraphs as lists of their right-stripped lines, illustrations removed.

  Args:
    text: any text, with Unix, Windows or old Mac line ends.
  Returns:
    One list of non-blank lines per paragraph; empty paragraphs are left out.
  """
  text = _ILLUSTRATION.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
  blocks = re.split(r"\n[ \t]*\n", text)
  kept_lines = ([line.rstrip() for line in block.split("\n") if line.strip()] for block in blocks)
  return [lines for lines in kept_lines if lines]


def join_lines(lines: list[str]) -> str:
  """Re-joins hard-wrapped lines into one line; a line ending in "-" joins without a space.

  Args:
    lines: the lines of one paragraph.
  Returns:
    One line with whitespace runs collapsed and the `_` italics marks removed.
  """
  joined = ""
  for line in lines:
    line = line.strip()
    if joined and not joined.endswith("-"):
      joined += " "
    joined += line
  return " ".join(joined.replace("_", "").split())


def is_heading(lines: list[str]) -> bool:
  """A one-line paragraph of a few words in capitals or Title Case, without closing punctuation.

  Args:
    lines: the lines of one paragraph.
  Returns:
    True for a single line of at most 12 words, with letters, in capitals or Title Case (small words
    such as "of" may stay lowercase), not ending in . ! ? , ; : or a dash.
  """
  if len(lines) != 1:
    return False
  text = lines[0].strip().replace("_", "")
  words = text.split()
  if not words or len(words) > 12 or not any(c.isalpha() for c in text):
    return False
  if text.rstrip(_CLOSING)[-1:] in tuple(".!?,;:-\u2014"):
    return False
  if text.upper() == text:
    return True
  return all(word[0].isupper() or not word[0].isalpha() or word.lower() in _SMALL_WORDS for word in words)


def is_prose(lines: list[str]) -> bool:
  """False for tables (column gaps) and for text without closing punctuation (credits, page numbers).

  Args:
    lines: the lines of one paragraph.
  Returns:
    True when the paragraph has lowercase letters, no column gaps of 3+ spaces, and ends like a sentence.
  """
  if any(_TABLE_GAP.search(line.strip()) for line in lines):
    return False
  text = join_lines(lines)
  return any(c.islower() for c in text) and text[-1] in _LINE_END_PUNCTUATION


def raw_documents(text: str, min_document_sentences: int = 2) -> list[list[str]]:
  """Documents (lists of sentences) of a raw book-like text; headings start documents.

  Args:
    text: the raw text, Project Gutenberg header and footer included or not.
    min_document_sentences: documents with fewer sentences are dropped (values below 1 count as 1).
  Returns:
    The documents in order, each a list of sentences.
  """
  documents, current, skipping = [], [], False
  for lines in paragraphs(strip_gutenberg(text)):
    if is_heading(lines):
      documents.append(current)
      current = []
      skipping = bool(_TRANSCRIBER_NOTE.match(lines[0].strip()))
    elif not skipping and is_prose(lines):
      current.extend(split_sentences(join_lines(lines)))
  documents.append(current)
  return [document for document in documents if len(document) >= max(min_document_sentences, 1)]


def looks_like_lines(text: str) -> bool:
  """True when the text already looks like one sentence per line (most lines end like sentences).

  Args:
    text: the whole input.
  Returns:
    True when at least 60% of the non-blank lines end in closing punctuation and there is no Project
    Gutenberg START marker.
  """
  lines = [line.rstrip() for line in text.split("\n") if line.strip()]
  if not lines or any(_GUTENBERG_START.match(line) for line in lines):
    return False
  ended = sum(line[-1] in _LINE_END_PUNCTUATION for line in lines)
  return ended >= 0.6 * len(lines)


def format_documents(documents: list[list[str]]) -> str:
  """Documents in the pretraining input format: one sentence per line, a blank line between documents.

  Args:
    documents: lists of sentences, e.g. from `raw_documents`.
  Returns:
    The text, ending in a newline.
  """
  return "\n\n".join("\n".join(document) for document in documents) + "\n"


def prepare(text: str, text_format: str = "auto", min_document_sentences: int = 2) -> tuple[str, str]:
  """The corpus in the pretraining input format, and the format that was used.

  Args:
    text: the whole input.
    text_format: one of `FORMATS`: "raw", "lines" (copied unchanged) or "auto" (`looks_like_lines`).
    min_document_sentences: for raw text, documents with fewer sentences are dropped.
  Returns:
    (the corpus text, "raw" or "lines").
  """
  if text_format == "auto":
    text_format = "lines" if looks_like_lines(text) else "raw"
  if text_format == "lines":
    return text, text_format
  return format_documents(raw_documents(text, min_document_sentences)), text_format
