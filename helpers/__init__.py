"""OptimumLLM Audio helpers: all logic behind the notebooks.

Importing this package loads no model and touches no GPU, network or Drive;
import submodules explicitly (``from helpers import tokens``).
"""
__version__ = "1.0.0.dev0"
