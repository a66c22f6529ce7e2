"""SQuAD 1.1/2.0: examples, windows, records, one task object per version, post-processing, scoring, serving, runner."""
