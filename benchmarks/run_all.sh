#!/usr/bin/env bash
# Re-run every benchmark; each writes benchmarks/results/<name>.json and regenerates
# BENCHMARKS.md. Run from the repository root after scripts/setup.sh. Pass --ckpt RUN to
# time a trained world model in the rollout benchmark (default: the quickstart's).
set -euo pipefail
cd "$(dirname "$0")/.."
F="${FARSIGHT_VENV:-.venv}/bin/farsight"
CKPT="${1:-runs/quickstart/dynamics}"
"$F" bench env
"$F" bench record
"$F" bench loader
"$F" bench encode
"$F" bench train
if [ -e "$CKPT" ]; then "$F" bench rollout --ckpt "$CKPT"; else "$F" bench rollout; fi
