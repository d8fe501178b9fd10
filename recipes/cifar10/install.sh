#!/usr/bin/env bash
# Install this experiment's requirements into the active Python environment.
#   python3 -m venv .venv && source .venv/bin/activate && bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install -r requirements.txt
