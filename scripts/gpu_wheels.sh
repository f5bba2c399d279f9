#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh needs on a GPU machine without network into .whl/
# (or $GPU_WHEELS), for that machine's Python (default 3.12, x86-64 manylinux). Run it where PyPI
# is reachable, then carry the folder with the working tree (device tool: carry [".whl"]).
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]                # the tests' and benchmarks' wheels + liger-kernel
#                                                              # (~48 MB): gpu_check.sh's first two calls
#   bash scripts/gpu_wheels.sh --train-only [PYTHON_VERSION]   # torchao + liger-kernel only (~4 MB): the
#                                                              # stage-2 calls (gpu_check.sh --only 'stage 2 ...')
# Two folders because all of them with the working tree (~14 MiB) pass the device tool's 64 MiB carry
# (torchao's wheel is 3.4 MB); --train-only writes .whl-train/ (carry [".whl-train"], GPU_WHEELS=.whl-train on the
# GPU machine). It prints tree + wheels against 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_ONLY=0
if [ "${1:-}" = "--train-only" ]; then TRAIN_ONLY=1; shift; fi
DEST="${GPU_WHEELS:-$( [ "$TRAIN_ONLY" = 1 ] && echo .whl-train || echo .whl )}"  # both ignored by git
PYV="${1:-3.12}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
mkdir -p "$DEST"
download() {
  "$PY" -m pip download --only-binary :all: --no-deps --python-version "$PYV" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$DEST" "$@"
}
# The stage-2 comparison (bench_train --optimizer adamw_bf16_torchao / --kernels liger; tests/test_gpu.py's Liger
# test): torchao 0.18.0 (3.4 MB; supports torch >= 2.11, the GPU image has 2.11; no dependencies) and
# liger-kernel 0.8.5 (0.9 MB, pure Python; needs torch and Triton, both on the GPU image). Pinned as in
# helpers.train.memory (TORCHAO_VERSION, LIGER_VERSION).
download liger-kernel==0.8.5
if [ "$TRAIN_ONLY" = 1 ]; then
  download torchao==0.18.0
else
  # Pinned as in requirements*.txt (cffi/pycparser as the CPU venv resolves them: soundfile needs cffi,
  # which the GPU image lacks; num2words for the text frontend). snac's own dependency (einops) is on the GPU image already.
  download snac==1.2.1 bitsandbytes==0.50.2 soundfile==0.13.1 soxr==0.5.0.post1 jiwer==4.0.0 rapidfuzz \
    cffi==2.1.1 pycparser==3.12 num2words==0.5.14
  # num2words needs docopt, published as an sdist only: build its (pure-Python) wheel here.
  "$PY" -m pip wheel --no-deps -q -w "$DEST" docopt==0.6.2
fi
du -sh "$DEST"
# what the device tool carries: the tracked and untracked-but-not-ignored files, plus this folder
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk 'END {print $1}')
wheels=$(du -sb "$DEST" | cut -f1)
total=$((tree + wheels))
mib=$((1024 * 1024))
echo "carry '$DEST': working tree $((tree / mib)) MiB + wheels $((wheels / mib)) MiB = $((total / mib)) MiB of 64 MiB"
if [ "$total" -gt $((64 * mib)) ]; then
  echo "WARNING: over the 64 MiB carry: carry fewer wheels (for the stage-2 calls: bash scripts/gpu_wheels.sh --train-only)" >&2
fi
