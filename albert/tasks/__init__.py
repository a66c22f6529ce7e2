"""The tasks along the data flow: SQuAD, classification (GLUE and RACE) and pretraining."""
