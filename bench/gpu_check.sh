#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): every CUDA case of slotbench on one GPU in under 8 minutes,
# written to bench/results/gpu_check.{json,md}. `--dry-run`: the same code on CPU at the tiny profile.
# PYTHON picks the interpreter (default: the project's .venv, else python3); src/ is put on the
# import path, so slotbench need not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x "$python" ]] || python=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" bench/gpu_check.py "$@"
