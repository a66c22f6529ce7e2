"""The command-line layer: flag groups with their bounds, the one model loader, and the model sources of
albert.answer and albert.classify."""
