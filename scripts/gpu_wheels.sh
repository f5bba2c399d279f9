#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh needs on a GPU machine without network into .whl/
# (or $GPU_WHEELS), for that machine's Python (default 3.12, x86-64 manylinux). Run it where PyPI
# is reachable, then carry the folder with the working tree (device tool: carry [".whl"]).
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${GPU_WHEELS:-.whl}"
PYV="${1:-3.12}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
mkdir -p "$DEST"
# Pinned as in requirements*.txt (cffi/pycparser as the CPU venv resolves them: soundfile needs cffi,
# which the GPU image lacks; num2words for the text frontend). snac's own dependency (einops) is on the GPU image already.
"$PY" -m pip download --only-binary :all: --no-deps --python-version "$PYV" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_28_x86_64 -d "$DEST" \
  snac==1.2.1 bitsandbytes==0.50.2 soundfile==0.13.1 soxr==0.5.0.post1 jiwer==4.0.0 rapidfuzz \
  cffi==2.1.1 pycparser==3.12 num2words==0.5.14
# num2words needs docopt, published as an sdist only: build its (pure-Python) wheel here.
"$PY" -m pip wheel --no-deps -q -w "$DEST" docopt==0.6.2
du -sh "$DEST"
echo "carry '$DEST' (the working tree + this folder must stay under 64 MiB)"
