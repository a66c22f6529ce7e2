#!/usr/bin/env bash
# Fine-tunes ALBERT on the GLUE tasks with the original release's per-task hyperparameters, then scores
# every kept checkpoint on dev and predicts the test set with the best one (two runs per task).
#
# Environment:
#   ALBERT_ROOT               required: holds 30k-clean.model, vocab.txt and glue/ (and albert_config.json)
#   OUTPUT_DIR                parent of the per-task output directories (default: a new temporary directory)
#   ALBERT_HUB_MODULE_HANDLE  TF-Hub module to fine-tune (default: https://tfhub.dev/google/albert_base/1,
#                             unless INIT_CHECKPOINT is set)
#   INIT_CHECKPOINT           pretrained checkpoint to start from instead of a hub module
#   ALBERT_CONFIG_FILE        its config (default: $ALBERT_ROOT/albert_config.json)
#   TASKS                     tasks to run (default: SST-2 MNLI CoLA QNLI QQP RTE STS-B MRPC; WNLI is not run)
#   PYTHON                    Python interpreter with albert installed (default: python3)
#   DRY_RUN                   set to 1 to print the commands instead of running them
# Arguments are appended to every run_classifier command and override the defaults (absl keeps the last
# value), e.g. `scripts/run_glue.sh --max_seq_length=128`.
set -euo pipefail

: "${ALBERT_ROOT:?set ALBERT_ROOT to the directory holding 30k-clean.model, vocab.txt and glue/}"
OUTPUT_DIR="${OUTPUT_DIR:-$(mktemp -d)/output}"
INIT_CHECKPOINT="${INIT_CHECKPOINT:-}"
if [[ -n "${INIT_CHECKPOINT}" ]]; then
  ALBERT_HUB_MODULE_HANDLE="${ALBERT_HUB_MODULE_HANDLE:-}"
else
  ALBERT_HUB_MODULE_HANDLE="${ALBERT_HUB_MODULE_HANDLE-https://tfhub.dev/google/albert_base/1}"
fi
ALBERT_CONFIG_FILE="${ALBERT_CONFIG_FILE:-${ALBERT_ROOT}/albert_config.json}"
TASKS="${TASKS:-SST-2 MNLI CoLA QNLI QQP RTE STS-B MRPC}"
PYTHON="${PYTHON:-python3}"

# warmup_step learning_rate train_step save_checkpoints_steps train_batch_size
hyperparameters() {
  case "$1" in
    SST-2) echo "1256 1e-5 20935 100 32" ;;
    MNLI)  echo "1000 3e-5 10000 100 128" ;;
    CoLA)  echo "320 1e-5 5336 100 16" ;;
    QNLI)  echo "1986 1e-5 33112 200 32" ;;
    QQP)   echo "1000 5e-5 14000 100 128" ;;
    RTE)   echo "200 3e-5 800 100 32" ;;
    STS-B) echo "214 2e-5 3598 100 16" ;;
    MRPC)  echo "200 2e-5 800 100 32" ;;
    *) echo "run_glue.sh: no hyperparameters for task '$1'" >&2; return 1 ;;
  esac
}

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "$@"
  else
    "$@"
  fi
}

run_task() {
  local task="$1"
  shift
  local settings
  settings="$(hyperparameters "${task}")"
  local warmup lr steps save batch
  read -r warmup lr steps save batch <<< "${settings}"
  local model_args=()
  if [[ -n "${ALBERT_HUB_MODULE_HANDLE}" ]]; then
    model_args+=("--albert_hub_module_handle=${ALBERT_HUB_MODULE_HANDLE}")
  else
    model_args+=("--albert_config_file=${ALBERT_CONFIG_FILE}")
  fi
  local common=(
    "--output_dir=${OUTPUT_DIR}/${task}" "--data_dir=${ALBERT_ROOT}/glue"
    "--vocab_file=${ALBERT_ROOT}/vocab.txt" "--spm_model_file=${ALBERT_ROOT}/30k-clean.model"
    --do_lower_case --max_seq_length=512 --optimizer=adamw "--task_name=${task}"
    "--warmup_step=${warmup}" "--learning_rate=${lr}" "--train_step=${steps}"
    "--save_checkpoints_steps=${save}" "--train_batch_size=${batch}" "${model_args[@]}")
  local init=()
  if [[ -n "${INIT_CHECKPOINT}" ]]; then
    init=("--init_checkpoint=${INIT_CHECKPOINT}")
  fi
  run "${PYTHON}" -m albert.run_classifier "${common[@]}" --do_train --nodo_eval --nodo_predict "${init[@]}" "$@"
  run "${PYTHON}" -m albert.run_classifier "${common[@]}" --nodo_train --do_eval --do_predict "$@"
}

for task in ${TASKS}; do
  run_task "${task}" "$@"
done
echo "GLUE outputs are in ${OUTPUT_DIR}"
