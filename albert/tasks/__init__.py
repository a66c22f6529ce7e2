"""The tasks along the data flow: SQuAD, classification (GLUE, RACE and the user's own data) and
pretraining; `fine_tuned` tells which task a fine-tuned checkpoint or SavedModel was trained for."""
