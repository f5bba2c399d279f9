"""The vLLM backend's tests: they run inside .venv-vllm (scripts/setup_vllm.sh) and skip elsewhere.

    .venv-vllm/bin/python -m pytest tests/vllm_backend

vLLM's CPU attention takes head sizes 32, 64, ... only, so the tiny export here is the
project's tiny export with its attention regrouped to 2 heads x 32 (1 KV head): the same
weight shapes, read identically by transformers and vLLM.
"""
import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the CI machine has 24 GiB
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # 2 shared cores: don't pin
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in-process: faster start, no spawn
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SKIP_REASON = "the vLLM backend's tests run in .venv-vllm (scripts/setup_vllm.sh)"  # each test module importorskips vllm


@pytest.fixture(scope="session")
def vllm_export(tmp_path_factory):
    from tests.tiny_export import make_vllm_tiny_export

    return make_vllm_tiny_export(tmp_path_factory.mktemp("vllm_run"))
