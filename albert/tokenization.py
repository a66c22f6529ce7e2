"""The original release's `tokenization` module name, for users' scripts: `FullTokenizer` and helpers.

The code lives in `albert.text` (tokenizer, SentencePiece and WordPiece modes, raw-text spans).
"""

from albert.text.sentencepiece import (
           SPIECE_UNDERLINE,
           encode_ids,
           encode_pieces,
           preprocess_text,
)
from albert.text.spans import Token
from albert.text.spans import to_text as convert_to_unicode
from albert.text.tokenizer import FullTokenizer, load_vocab

__all__ = ["FullTokenizer", "Token", "SPIECE_UNDERLINE", "convert_to_unicode", "encode_ids", "encode_pieces",
           "load_vocab", "preprocess_text"]
