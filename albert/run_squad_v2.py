"""Fine-tune ALBERT on SQuAD 2.0, predict, and evaluate: `python -m albert.run_squad_v2 --flags`.

The flags are the original run_squad_v2.py's (see `--helpfull`) plus the suite's shared ones
(`--distribution_strategy`, `--precision`, `--jit_compile`, ...).
"""

from albert import squad_runner
from albert.errors import run_main


def main(argv):
  del argv
  squad_runner.run(version=2)


squad_runner.define_flags(version=2)

if __name__ == "__main__":
  run_main(main)
