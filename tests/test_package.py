"""Importing helpers does no work: no model, no codec, no CUDA, no network."""
import subprocess
import sys

from helpers.profiles import REPO_ROOT

PROBE = r"""
import importlib, pkgutil, socket, sys
def no_network(*a, **k):
    raise AssertionError("a helpers module opened a network connection at import time")
socket.socket.connect = no_network
import helpers
assert "torch" not in sys.modules, "import helpers pulled in torch"
for m in pkgutil.walk_packages(helpers.__path__, "helpers."):
    if not m.name.endswith(".__main__"):  # `python -m` entry points run when imported
        importlib.import_module(m.name)
assert "snac" not in sys.modules, "a helpers module imported snac (the codec) at import time"
import torch
assert not torch.cuda.is_initialized(), "a helpers module initialised CUDA at import time"
print("ok")
"""


def test_importing_every_helpers_module_does_no_work():
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
