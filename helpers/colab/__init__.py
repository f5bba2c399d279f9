"""Colab survival: notebook setup, Drive mount and space, run logs, hub access, the notebook chain.

Depends on the core only. Nothing here loads a model; the Drive and hub calls happen when called.
"""
