"""torchao for the tests, without putting it in ``.venv``'s site-packages.

With torchao installed, every ``from transformers import LlamaForCausalLM`` imports it (~2 s and
warnings on stderr in every process: notebooks, subprocesses). ``scripts/setup.sh`` therefore installs
it into a folder of its own, ``.venv/torchao`` (``pip install --no-deps --target``), and only the test
processes that ask put it on ``sys.path`` — the pytest process, not the processes it starts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TORCHAO_DIR = Path(__file__).resolve().parent.parent / ".venv" / "torchao"


def have_torchao() -> bool:
    """True when torchao imports here (from site-packages, or from ``.venv/torchao``, added to sys.path)."""
    if importlib.util.find_spec("torchao") is None and (TORCHAO_DIR / "torchao").is_dir():
        sys.path.append(str(TORCHAO_DIR))
        importlib.invalidate_caches()
    return importlib.util.find_spec("torchao") is not None
