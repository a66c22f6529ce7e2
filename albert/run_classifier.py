"""Fine-tune ALBERT on a GLUE task or your own data, score every kept checkpoint, predict the test set:
`python -m albert.run_classifier --task_name=MRPC --data_dir=glue --output_dir=out --do_train ...`, or
`--task_name=custom --train_file=train.csv --eval_file=dev.csv --predict_file=test.csv
--text_a_column=review --label_column=sentiment` for your own TSV, CSV or JSONL files (columns by header
name or JSON key; labels from `--label_list`, the training file or a trained model's `labels.json`;
`--regression` for a number; see `albert.tasks.classification.custom`).

The flags are the original run_classifier.py's (see `--helpfull`) plus the suite's shared ones
(`--distribution_strategy`, `--precision`, `--trim_padding`, ...) and the custom-data ones. Outputs in
`--output_dir`: checkpoints, `eval_results.txt`/`.json`, `best_trial.txt`, `model.ckpt-best`,
`test_results.tsv`, `submit_results.tsv`, `labels.json` (the model's labels, or `{"regression": true}`);
with `--export_dir` a SavedModel of the best checkpoint. The job is `albert.tasks.classification.runner`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal
from albert.tasks.classification import runner

if __name__ == "__main__":
  runner.main(runner.GlueData)
