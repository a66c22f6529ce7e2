#!/usr/bin/env bash
# Train a SentencePiece model with the original release's spm_train options (README, docs/compatibility.md §4.5).
#
#   scripts/train_spm.sh INPUT MODEL_PREFIX [VOCAB_SIZE] [more albert.train_spm flags]
#
# INPUT is one sentence per line (comma-separated files or globs), e.g. the output of
# `python -m albert.prepare_corpus`. Writes MODEL_PREFIX.model and MODEL_PREFIX.vocab.
# Set PYTHON to choose the interpreter.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 INPUT MODEL_PREFIX [VOCAB_SIZE] [--flag=value ...]" >&2
  exit 2
fi

input=$1
model_prefix=$2
vocab_size=${3:-30000}
shift $(( $# < 3 ? $# : 3 ))

exec "${PYTHON:-python}" -m albert.train_spm \
  --input="$input" --model_prefix="$model_prefix" --vocab_size="$vocab_size" \
  --pad_id=0 --unk_id=1 --eos_id=-1 --bos_id=-1 \
  --control_symbols='[CLS],[SEP],[MASK]' \
  --user_defined_symbols='(,),",-,.,–,£,€' \
  --shuffle_input_sentence=true --input_sentence_size=10000000 \
  --character_coverage=0.99995 --model_type=unigram \
  "$@"
