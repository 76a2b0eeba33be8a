#!/usr/bin/env bash
# Create (or update) the virtual environment farsight runs in. Safe to re-run.
# torch is installed first from the pinned CPU wheel: an unpinned torch would pull gigabytes of
# CUDA packages. Users with their own torch build can create the venv themselves and skip this.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FARSIGHT_VENV:-.venv}"
TORCH_PIN="${FARSIGHT_TORCH:-torch==2.13.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "==> installing $TORCH_PIN (CPU wheel)"
    "$VENV/bin/pip" install -q "$TORCH_PIN"
fi
echo "==> installing farsight and its dependencies"
"$VENV/bin/pip" install -q -e ".[games,train,dev]"
