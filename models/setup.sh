#!/usr/bin/env bash
# Creates models/.venv, the Python environment that trains and exports the LSTM (train.py),
# from the fully pinned requirements.txt. Idempotent: a venv whose stamp matches
# requirements.txt is reused as it is.
#
# The torch wheel (and the two NVIDIA runtime wheels) are taken from the Flowcast wheel cache
# that deploy/libtorch/setup.sh fills, so the 0.5 GB torch wheel is downloaded once for both;
# everything else comes from the package registry. torch 2.13.0's Linux wheel is the CUDA build
# and its Python extension links cuDNN, cuBLAS, NCCL..., so those wheels are installed too
# (about 4.7 GB of venv) although training runs on the CPU.
#
#   models/setup.sh          # prints the venv's python
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
CACHE="${FLOWCAST_CACHE:-$HOME/.cache/flowcast}"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.flowcast-stamp"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$WHEELS"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install --quiet --find-links "$WHEELS" -r "$REQ" >&2
"$VPY" -c 'import torch, numpy; torch.zeros(2, 3) @ torch.ones(3, 1); print("torch", torch.__version__, "numpy", numpy.__version__)' >&2
echo "$WANT" > "$STAMP"
echo "$VPY"
