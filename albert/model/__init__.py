"""The model: config, the encoder and its pretraining heads, task heads, original variable names, TF-Hub loading."""
