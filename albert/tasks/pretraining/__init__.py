"""Pretraining: masking, instances, the data writer, the MLM+SOP task, its inputs and runner."""
