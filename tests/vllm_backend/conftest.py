"""The vLLM backend's tests: they run inside .venv-vllm (scripts/setup_vllm.sh) and skip elsewhere.

    .venv-vllm/bin/python -m pytest tests/vllm_backend

vLLM's CPU attention takes head sizes 32, 64, ... only, so the tiny export here is the
project's tiny export with its attention regrouped to 2 heads x 32 (1 KV head): the same
weight shapes, read identically by transformers and vLLM.
"""
import json
import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the CI machine has 24 GiB
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # 2 shared cores: don't pin
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in-process: faster start, no spawn
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SKIP_REASON = "the vLLM backend's tests run in .venv-vllm (scripts/setup_vllm.sh)"  # each test module importorskips vllm


@pytest.fixture(scope="session")
def vllm_export(tmp_path_factory):
    from tests.tiny_export import make_tiny_export

    folder = make_tiny_export(tmp_path_factory.mktemp("vllm_run"))
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["hidden_size"] == 64 and cfg["num_attention_heads"] * cfg["head_dim"] == 64
    cfg.update(num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    cfg_file.write_text(json.dumps(cfg, indent=2))
    return folder
