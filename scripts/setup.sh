#!/usr/bin/env bash
# Set up slotbench in a local virtual environment (.venv): idempotent, safe to re-run.
#   - torch first, pinned to the version this project is tested with (torch==2.13.0), from pip's
#     configured sources (on the project's CI machines a local CPU wheel). PyPI's Linux wheel is
#     the CUDA build (several GB): on a Linux machine without a GPU set
#     TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU build. On a CUDA machine
#     install your own torch build into .venv first
#     (e.g. .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu124);
#     an already-installed torch is kept.
#   - then the project itself, editable, with the test extras, and the `lpips` package's weight files.
#   - SLOTBENCH_EXTRAS=movi (comma-separated extras) adds optional extras: `movi` installs
#     TensorFlow + TensorFlow Datasets for the MOVi-D/E export and its tests (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
.venv/bin/python -m pip install --quiet -e ".[test${SLOTBENCH_EXTRAS:+,$SLOTBENCH_EXTRAS}]"
# LPIPS's linear heads ship inside the `lpips` package; its import needs torchvision, which
# slotbench does not use, so only its files are installed (slotbench has its own LPIPS network).
.venv/bin/python -m pip install --quiet --no-deps "lpips==0.1.4"
.venv/bin/python -c "import slotbench, torch; print(f'slotbench {slotbench.__version__} ready (torch {torch.__version__})')"
