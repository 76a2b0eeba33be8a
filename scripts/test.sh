#!/usr/bin/env bash
# The test command: set up, lint, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh  # Debian's chromium for the play-page test
VENV="${FARSIGHT_VENV:-.venv}"
echo "==> ruff"
"$VENV/bin/ruff" check farsight tests benchmarks scripts docs
"$VENV/bin/ruff" format --check farsight tests benchmarks scripts docs
echo "==> pytest"
# Everything, slow tests included; the 20 slowest are listed at the end.
"$VENV/bin/python" -m pytest -q --durations=20 "$@"
