"""Fine-tune ALBERT on RACE, score every kept checkpoint on dev, evaluate the best on test:
`python -m albert.run_race --data_dir=data --output_dir=out --albert_config_file=... --spm_model_file=...`.

The flags are the original run_race.py's (see `--helpfull`; note `--do_train` and `--do_eval` default to
True) plus the suite's shared ones. Outputs in `--output_dir`: checkpoints, `eval_results.txt`/`.json`
with accuracy for middle, high and all, `model.ckpt-best`, and with `--do_predict` the test scores in
`predict_results.txt`/`.json`. The job is `albert.tasks.classification.runner`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal
from albert.tasks.classification import runner

if __name__ == "__main__":
  runner.main(runner.RaceData, task_name="race", do_train=True, do_eval=True, learning_rate=1e-5, train_step=12000,
              warmup_step=1000, save_checkpoints_steps=100)
