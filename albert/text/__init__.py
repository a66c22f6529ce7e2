"""Text to pieces: the FullTokenizer (SentencePiece or WordPiece) with raw-text offsets, corpus preparation,
SentencePiece training."""
