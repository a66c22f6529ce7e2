"""Fine-tune ALBERT on SQuAD 2.0, predict, and evaluate: `python -m albert.run_squad_v2 --flags`.

The flags are the original run_squad_v2.py's (see `--helpfull`) plus the suite's shared ones
(`--distribution_strategy`, `--precision`, `--jit_compile`, ...); the job is `albert.tasks.squad.runner`.
"""

from albert.cli import startup  # noqa: F401 - first: keeps TensorFlow's start-up notices off the terminal
from albert.tasks.squad import runner

if __name__ == "__main__":
  runner.main(version=2)
