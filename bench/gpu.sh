#!/usr/bin/env bash
# GPU training-step benchmark (a few minutes): small and large at 512x1024, bf16 autocast, largest batch that
# fits, and the projected 600-epoch time next to the paper's 5.5 V100-days. Fails with one line without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"   # PYTHON=python3 where torch is installed system-wide
export PYTHONPATH="src:${PYTHONPATH:-}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "bench/gpu.sh: no CUDA device available (torch.cuda.is_available() is False); run it on a GPU machine" >&2
    exit 1
fi
exec "$PY" bench/bench_gpu.py "$@"
