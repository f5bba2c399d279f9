#!/usr/bin/env bash
# The vLLM backend's tests in their own environment (.venv-vllm, scripts/setup_vllm.sh), offline on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec .venv-vllm/bin/python -m pytest tests/vllm_backend tests/infer/test_speed.py tests/infer/test_openai_compat.py \
  tests/infer/test_openai_peers.py "$@"
