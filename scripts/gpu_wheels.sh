#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh needs on a GPU machine without network, for that machine's Python
# (default 3.12, x86-64 manylinux). Run it where PyPI is reachable, then carry the folder with the working tree
# (device tool: carry [".whl"]). The device tool carries at most 64 MiB (working tree ~14 MiB included), and
# bitsandbytes alone is 41 MiB, so each of gpu_check.sh's device calls has its own folder:
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]               # .whl (~9 MB): --only 'inference|HTTP' (the engine,
#                                                             # SNAC, WER, the speech server: fastapi, uvicorn, ...)
#   bash scripts/gpu_wheels.sh --tests [PYTHON_VERSION]       # .whl-tests (~49 MB): --only 'gpu tests|bench_train
#                                                             # 3B|SNAC' (bitsandbytes for the 8-bit AdamW test)
#   bash scripts/gpu_wheels.sh --train-only [PYTHON_VERSION]  # .whl-train (~4 MB): the stage-2 calls (torchao +
#                                                             # liger-kernel)
# On the GPU machine: GPU_WHEELS=<folder> bash scripts/gpu_check.sh --only '...' (--dry-run prints each call's
# folder). It prints tree + wheels against 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=inference
case "${1:-}" in
  --train-only) KIND=train; shift ;;
  --tests) KIND=tests; shift ;;
esac
case "$KIND" in inference) DEFAULT=.whl ;; tests) DEFAULT=.whl-tests ;; train) DEFAULT=.whl-train ;; esac
DEST="${GPU_WHEELS:-$DEFAULT}"  # all three ignored by git
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
if [ "$KIND" = train ]; then
  download torchao==0.18.0
else
  # Pinned as in requirements*.txt (cffi/pycparser/rapidfuzz as the CPU venv resolves them: soundfile needs cffi,
  # which the GPU image lacks; num2words for the text frontend). snac's own dependency (einops) is on the GPU image already.
  download snac==1.2.1 soundfile==0.13.1 soxr==0.5.0.post1 jiwer==4.0.0 rapidfuzz==3.14.6 \
    cffi==2.1.1 pycparser==3.12 num2words==0.5.14
  # num2words needs docopt, published as an sdist only: build its (pure-Python) wheel here.
  "$PY" -m pip wheel --no-deps -q -w "$DEST" docopt==0.6.2
  if [ "$KIND" = tests ]; then
    download bitsandbytes==0.50.2  # 41 MiB: tests/test_gpu.py's bf16-mixed + 8-bit AdamW test
  else
    # The HF speech server (the HTTP step; helpers/infer/serve.py) as requirements-ci.txt pins it, with the
    # dependencies the GPU image lacks (it has anyio, h11, click, annotated-doc, typing-extensions): ~3 MB.
    download fastapi==0.163.2 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.4 pydantic-core==2.50.5 \
      annotated-types==0.8.0 typing-inspection==0.4.5 opentelemetry-api==1.45.3 audiotsm==0.1.2
  fi
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
