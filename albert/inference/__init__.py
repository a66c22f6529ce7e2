"""Using a model on text: the encoder with its tokenizer, features, masked-word filling, retrieval."""
