#!/usr/bin/env bash
# From nothing to SQuAD scores on this machine, with no downloads: trains a SentencePiece model,
# pretrains a tiny ALBERT, fine-tunes it with run_squad_v1 and prints EM/F1 on held-out questions.
# Usage: scripts/quickstart.sh [--output_dir=DIR] [--pretrain_steps=N] [--finetune_epochs=N]
# Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${repo_root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m albert.quickstart "$@"
