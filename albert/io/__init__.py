"""Files in and out: TFRecords (one Example encoder), feature caches, input pipelines, checkpoints, safetensors, npy."""
