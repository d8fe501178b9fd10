#!/usr/bin/env bash
# Install Label Studio into its own virtualenv (its pins clash with ours: never into .venv), and
# prepare a migrated empty database that `antgo tool label/start` copies to start in seconds.
# Usage: scripts/install_label_studio.sh [VENV_DIR]
#   default VENV_DIR: $ANTGO_LABEL_STUDIO_VENV, else ~/.cache/antgo-mlflow/label-studio-venv
# Label Studio's own output (pip, its PyPI version check, SECRET_KEY and Django warnings) goes to
# VENV_DIR/install.log; this script prints one line, or the log's tail and its path on failure.
set -euo pipefail
VENV="${1:-${ANTGO_LABEL_STUDIO_VENV:-$HOME/.cache/antgo-mlflow/label-studio-venv}}"
PY="${PYTHON:-python3}"
mkdir -p "$VENV"
LOG="$VENV/install.log"
: >"$LOG"
# Label Studio asks PyPI for its latest version on start unless told not to (core/settings/base.py).
export LATEST_VERSION_CHECK=false
fail() {
  echo "label-studio install failed ($1); the last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
}
if [ ! -x "$VENV/bin/label-studio" ]; then
  "$PY" -m venv "$VENV" >>"$LOG" 2>&1 || fail "venv"
  "$VENV/bin/pip" install --upgrade pip >>"$LOG" 2>&1 || fail "pip upgrade"
  "$VENV/bin/pip" install "label-studio==1.23.2" >>"$LOG" 2>&1 || fail "pip install label-studio"
fi
TEMPLATE="$VENV/antgo-template"
if [ ! -s "$TEMPLATE/label_studio.sqlite3" ]; then
  rm -rf "$TEMPLATE.tmp" && mkdir -p "$TEMPLATE.tmp"
  # `label-studio version` applies every migration to the data dir, then prints the version.
  LABEL_STUDIO_BASE_DATA_DIR="$TEMPLATE.tmp" "$VENV/bin/label-studio" version >>"$LOG" 2>&1 \
    || fail "database migration"
  rm -rf "$TEMPLATE" && mv "$TEMPLATE.tmp" "$TEMPLATE"
fi
VERSION="$("$VENV/bin/python" -c "import label_studio; print(label_studio.__version__)" 2>>"$LOG")" \
  || fail "import"
echo "label-studio $VERSION ready in $VENV (its output: $LOG)"
