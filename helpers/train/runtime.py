"""Process-level pieces that the recipe and the DeepSpeed path (:mod:`helpers.train.distributed`) share:
the result of a stage, a free local port for a rendezvous, a barrier across ranks."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class TrainResult:
    stage: int
    steps: int
    resumed_from: str | None
    final_loss: float | None
    metrics_path: Path
    skipped: bool = False  # the stage was already complete


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the single-process DeepSpeed rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def barrier() -> None:
    """Wait for every rank (DeepSpeed path) before anyone reads what rank 0 wrote."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
