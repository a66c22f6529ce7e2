"""Pretrain ALBERT (masked LM + sentence order): `python -m albert.run_pretraining --flags`.

The flags are the original run_pretraining.py's (names, defaults, meanings; see `--helpfull`) plus the
suite's shared ones (`--distribution_strategy`, `--precision`, `--jit_compile`, ...). The input is the
TFRecord data of `create_pretraining_data`. The job is `albert.tasks.pretraining.runner`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal
from albert.tasks.pretraining import runner

if __name__ == "__main__":
  runner.main()
