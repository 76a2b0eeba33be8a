#!/usr/bin/env bash
# The main job on the built-in default: set up, then `farsight quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${FARSIGHT_VENV:-.venv}/bin/farsight" quickstart "$@"
