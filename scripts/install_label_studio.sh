#!/usr/bin/env bash
# Install Label Studio into its own virtualenv (its pins clash with ours: never into .venv).
# Usage: scripts/install_label_studio.sh [VENV_DIR]   (default: $ANTGO_LABEL_STUDIO_VENV or /work/ls-venv)
set -euo pipefail
VENV="${1:-${ANTGO_LABEL_STUDIO_VENV:-/work/ls-venv}}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/label-studio" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "label-studio==1.23.2"
fi
"$VENV/bin/label-studio" --version >/dev/null 2>&1 || "$VENV/bin/python" -c "import label_studio" 
echo "label-studio ready in $VENV"
