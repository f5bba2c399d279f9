"""The tiny profile's extended model and a tiny export as notebook 08 writes it (shared by the engine,
server, wheel, GPU and benchmark tests).

Stage 4 of a run holds the tiny profile's extended 2-layer LLaMA (random weights, so it
never stops by itself: callers cap the length guard); :func:`helpers.publish.export.export_model`
turns it into the folder a user downloads from the Hub.
"""
from __future__ import annotations

from pathlib import Path


def extended_tiny(seed: int = 0):
    """The tiny profile's 2-layer LLaMA with the extended vocabulary (random weights): ``(model, tok, layout)``."""
    from helpers.models import extend_vocabulary, load_base
    from helpers.profiles import TINY_LLAMA

    model, tok = load_base(TINY_LLAMA)
    model, tok, layout, _ = extend_vocabulary(model, tok, seed=seed)
    return model, tok, layout


def make_tiny_export(root: str | Path, seed: int = 0) -> Path:
    """Build ``root``'s run (stage 4 only) and its export; returns the export folder."""
    from helpers.models import save_stage
    from helpers.profiles import RANDOM_SNAC_24KHZ, TINY_LLAMA, RunPaths
    from helpers.publish.export import export_model

    paths = RunPaths(Path(root)).ensure()
    model, tok, _ = extended_tiny(seed)
    save_stage(model, tok, paths.final_model(4))
    return export_model(paths, base_model=TINY_LLAMA, codec_model=RANDOM_SNAC_24KHZ, log=lambda *_: None).folder


def make_vllm_tiny_export(root: str | Path, seed: int = 0) -> Path:
    """:func:`make_tiny_export` regrouped for vLLM's CPU attention (head_dim 32: 2 query heads, 1 KV head
    over the same hidden size 64); the weights are unchanged, only config.json's grouping."""
    import json

    folder = make_tiny_export(root, seed)
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["hidden_size"] == 64 and cfg["num_attention_heads"] * cfg["head_dim"] == 64
    cfg.update(num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    cfg_file.write_text(json.dumps(cfg, indent=2))
    return folder


def speechy(seconds: float, sr: int = 24000, seed: int = 0):
    """Noise with a syllable-like envelope (loudness and silence trimming work on it): a reference clip."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    return (0.3 * env * rng.standard_normal(t.size)).astype(np.float32)
