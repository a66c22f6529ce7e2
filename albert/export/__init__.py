"""Exports: TF-Hub SavedModels, slim checkpoints, Hugging Face folders, and the shared SavedModel writer."""
