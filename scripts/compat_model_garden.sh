#!/usr/bin/env bash
# Compatibility with the genuine article: tf-models-official (Model Garden) and keras-hub make tiny ALBERT
# artifacts in a virtual environment of their own, and albert must reproduce their outputs, fine-tune from
# them and refuse their look-alikes in one line (scripts/compat_model_garden.py prints the table).
# Usage: scripts/compat_model_garden.sh [WORK_DIR]   (default: a temporary directory, removed at the end)
# COMPAT_VENV=DIR reuses (or creates and keeps) the environment there: about 2.6 GB; a fresh one takes
# about a minute to install. Nothing is installed into the project's own environment.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$(date +%s)
if [ $# -ge 1 ]; then
  work="$1"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
venv="${COMPAT_VENV:-$work/venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import official, keras_hub, tensorflow_text" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  # What installs together (TensorFlow 2.21); tf-models-official pins TensorFlow 2.20, so it comes without
  # its dependencies, and the few it needs for the ALBERT converter and export_tfhub_lib are listed here.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "tensorflow==2.21.*" "tf-keras==2.21.*" \
    "tensorflow-text==2.21.*" keras-hub sentencepiece gin-config pyyaml scipy tensorflow-hub absl-py safetensors
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps tf-models-official==2.20.0
fi
echo "environment ready in $(( $(date +%s) - started )) s: $venv"
# albert itself from this checkout (its runtime dependencies are all in the environment above).
status=0
TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="${repo_root}${PYTHONPATH:+:${PYTHONPATH}}" \
  "$venv/bin/python" "$repo_root/scripts/compat_model_garden.py" --work_dir="$work/artifacts" || status=$?
echo "wall time $(( $(date +%s) - started )) s"
exit $status
