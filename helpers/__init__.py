"""OptimumLLM Audio helpers: all logic behind the notebooks.

Importing this package loads no model and touches no GPU, network or Drive;
import submodules explicitly (``from helpers import tokens``).

The same source is the installable engine ``optimumllm_audio`` (``pip install
optimumllm-audio``; see pyproject.toml), whose seed §8 entry point is
``from optimumllm_audio import OptimumTTS``. That name is resolved lazily by
:func:`__getattr__` so that importing the package still loads nothing (no torch).
"""
__version__ = "1.0.0.dev0"

_LAZY = {"OptimumTTS": "infer.engine"}  # public name -> submodule that defines it


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # resolve once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["OptimumTTS", "__version__"]
