#!/usr/bin/env bash
# Install Label Studio into its own virtualenv (its pins clash with ours: never into .venv), and
# prepare a migrated empty database that `antgo tool label/start` copies to start in seconds.
# Usage: scripts/install_label_studio.sh [VENV_DIR]
#   default VENV_DIR: $ANTGO_LABEL_STUDIO_VENV, else ~/.cache/antgo-mlflow/label-studio-venv
set -euo pipefail
VENV="${1:-${ANTGO_LABEL_STUDIO_VENV:-$HOME/.cache/antgo-mlflow/label-studio-venv}}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/label-studio" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "label-studio==1.23.2"
fi
TEMPLATE="$VENV/antgo-template"
if [ ! -s "$TEMPLATE/label_studio.sqlite3" ]; then
  rm -rf "$TEMPLATE.tmp" && mkdir -p "$TEMPLATE.tmp"
  # `label-studio version` applies every migration to the data dir, then prints the version.
  LABEL_STUDIO_BASE_DATA_DIR="$TEMPLATE.tmp" "$VENV/bin/label-studio" version >/dev/null
  rm -rf "$TEMPLATE" && mv "$TEMPLATE.tmp" "$TEMPLATE"
fi
"$VENV/bin/python" -c "import label_studio, sys; sys.stdout.write(label_studio.__version__ + ' ')"
echo "label-studio ready in $VENV"
