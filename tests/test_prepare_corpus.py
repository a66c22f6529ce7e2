"""albert.prepare_corpus: raw books -> one sentence per line, blank line between documents."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shared_path

from albert.text.corpus import looks_like_lines, prepare, raw_documents, split_sentences


def _run(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "albert.prepare_corpus", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("paragraph,expected", [
    ("Mr. Smith went to St. Paul. He met Mrs. Jones there.",
     ["Mr. Smith went to St. Paul.", "He met Mrs. Jones there."]),
    ("It was made in the U.S.A. by J. R. R. Tolkien. It cost 3.50 dollars!",
     ["It was made in the U.S.A. by J. R. R. Tolkien.", "It cost 3.50 dollars!"]),
    ("\u201cIs it you?\u201d said she. \u201cYes.\u201d Then he left.",
     ["\u201cIs it you?\u201d said she.", "\u201cYes.\u201d", "Then he left."]),
    ('He said "Stop!" and ran. "Why?" she asked.', ['He said "Stop!" and ran.', '"Why?" she asked.']),
    ("He waited... and waited... Nobody came. Then\u2026 Silence.",
     ["He waited... and waited...", "Nobody came.", "Then\u2026", "Silence."]),
    ("See e.g. the list, etc. and more. Ask if it be I. They know.",
     ["See e.g. the list, etc. and more.", "Ask if it be I.", "They know."]),
    ("One sentence without an end", ["One sentence without an end"]),
])
def test_split_sentences_tricky_cases(paragraph, expected):
  assert split_sentences(paragraph) == expected


BOOK = """\
The Project Gutenberg eBook of Tricky Tales
This header must go.
*** START OF THE PROJECT GUTENBERG EBOOK 99999 ***

[Illustration: A PICTURE
SPANNING TWO LINES]

    TRICKY TALES

    _Illustrated By
    Somebody_

CONTENTS

    THE FIRST TALE                                  3

    THE SECOND TALE                                 9

THE FIRST TALE


Once upon a time there lived a miller who had a
beautiful daughter. She spun straw into gold with a
spinning-wheel, and the lime-
tree in the yard grew tall.

[Illustration]

\u201cWho are you?\u201d asked she. \u201cI am Mr. Nobody,\u201d said the
little man.

THE SECOND TALE

A _very_ short tale began here. It ended quickly!

    \u201cSing, sing, little bird.
      Who sits in the tree?\u201d

Transcriber\u2019s Notes

Punctuation was made consistent. Nothing else was changed.

End of the Project Gutenberg EBook of Tricky Tales

*** END OF THE PROJECT GUTENBERG EBOOK 99999 ***
License text that must go.
"""


def test_raw_book_to_documents():
  documents = raw_documents(BOOK)
  assert documents == [
      ["Once upon a time there lived a miller who had a beautiful daughter.",
       "She spun straw into gold with a spinning-wheel, and the lime-tree in the yard grew tall.",
       "\u201cWho are you?\u201d asked she.",
       "\u201cI am Mr. Nobody,\u201d said the little man."],
      ["A very short tale began here.", "It ended quickly!",
       "\u201cSing, sing, little bird.", "Who sits in the tree?\u201d"],
  ]


def test_min_document_sentences_drops_short_documents():
  text = "FIRST\n\nOnly one sentence here.\n\nSECOND\n\nTwo sentences here. Yes, two.\n"
  assert raw_documents(text, min_document_sentences=2) == [["Two sentences here.", "Yes, two."]]
  assert len(raw_documents(text, min_document_sentences=1)) == 2


def test_lines_format_is_copied_unchanged():
  text = "First sentence .\nSecond one , here .\n\nNew document starts .\nAnd ends .\n"
  assert looks_like_lines(text)
  assert prepare(text, "auto") == (text, "lines")
  assert prepare(text, "lines") == (text, "lines")
  assert not looks_like_lines(BOOK)
  assert prepare(BOOK, "auto")[1] == "raw"


def test_wikitext_is_detected_as_lines():
  with open(shared_path("corpus", "wikitext2-valid.txt"), encoding="utf-8") as f:
    text = f.read()
  assert prepare(text, "auto") == (text, "lines")


@pytest.fixture(scope="module")
def grimm_output(tmp_path_factory):
  source = shared_path("corpus", "grimm-fairy-tales.txt")
  output = tmp_path_factory.mktemp("grimm") / "grimm.txt"
  result = _run([f"--input_file={source}", f"--output_file={output}"])
  assert result.returncode == 0, result.stderr
  return output.read_text(encoding="utf-8")


def test_grimm_front_matter_and_license_are_gone(grimm_output):
  for junk in ("PROJECT GUTENBERG", "Project Gutenberg", "Illustration", "CONTENTS", "PAGE",
               "THE PENN PUBLISHING", "Frontispiece", "Transcriber", "_"):
    assert junk not in grimm_output, junk
  assert "THE FROG-KING; OR, IRON HENRY" not in grimm_output  # headings separate, not text


def test_grimm_is_sentence_per_line_in_story_documents(grimm_output):
  documents = [document.split("\n") for document in grimm_output.strip("\n").split("\n\n")]
  assert 45 <= len(documents) <= 80  # 51 stories, a few split into chapters, plus foreword
  assert all(line.strip() == line and line for document in documents for line in document)
  frog_king = next(document for document in documents if document[0].startswith("In old times"))
  # Hard-wrapped source lines are re-joined into whole sentences.
  assert frog_king[0] == ("In old times, when wishing was having, there lived a King whose daughters were all "
                          "beautiful, but the youngest was so beautiful that the sun itself, which has seen so "
                          "much, was astonished whenever it shone in her face.")
  assert frog_king[1] == ("Close by the King\u2019s castle lay a great dark forest, and under an old lime-tree "
                          "in the forest, was a fountain.")
  assert "Rapunzel" in " ".join(next(d for d in documents if any("Rapunzel" in line for line in d)))
  assert documents[-1][-1].endswith("fast as you may.\u201d")


def test_cli_errors_are_one_line(tmp_path):
  result = _run([f"--input_file={tmp_path / 'missing.txt'}", f"--output_file={tmp_path / 'out.txt'}"])
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"error: --input_file: file not found: {tmp_path / 'missing.txt'}"
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n   \n", encoding="utf-8")
  result = _run([f"--input_file={empty}", f"--output_file={tmp_path / 'out.txt'}", "--format=raw"])
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"error: --input_file: no sentences found in {empty}"
  assert not (tmp_path / "out.txt").exists()
