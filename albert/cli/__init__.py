"""The command-line layer: flag groups with their bounds, and the one model loader."""
