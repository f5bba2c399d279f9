"""Padding-free packing: examples laid end to end in fixed token budgets.

A packed batch is one flat sequence of shape (1, N), N <= budget, holding
several whole examples. ``position_ids`` restart at 0 for every example; with
``attention_mask=None`` and no KV cache, transformers' LLaMA (sdpa, eager and
flash attention) reads the restarts as sequence boundaries and attends only
inside each example (``tests/train/test_packing.py`` proves per-example losses equal
the unpacked ones). No pad token is inserted, except under a compiled attention kernel,
where the recipe completes each row to one of a few :func:`bucket_length` lengths with a
loss-free document of pad tokens (``collate(..., pad_to=...)``) so the kernel is not
recompiled for every row length.

Labels: an example's first label is always -100, so when the model shifts
labels by one, the last token of one example never learns to predict the
first token of the next.

Bins are filled best-fit-decreasing (longest example first, into the fullest
bin it still fits), then put in a seeded random order. :func:`packing_stats` reports two numbers:

* ``padding_fraction`` — pad tokens / tokens computed: 0 by construction (nothing is
  padded; a bin that is not full is simply a shorter sequence);
* ``budget_waste`` — ``1 - tokens / (bins * budget)``: what a fixed-shape batcher
  would pad. On large corpora it is ~0; on a corpus of a few budgets' worth of
  tokens it is bounded below by rounding up to whole bins
  (``1 - tokens / (ceil(tokens / budget) * budget)``), reported as ``min_budget_waste``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .sequences import IGNORE_INDEX, Example


def pack(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit-decreasing bin packing. Returns bins of example indices (each bin's lengths sum
    to <= ``budget``), deterministic for given lengths. An example longer than the budget raises.

    Why BFD: on speech-like lengths it is within one bin of the optimum (measured: 20k examples
    of 90-3,000 tokens into 8,192 -> 3,767 bins, lower bound 3,766, 0.04% unused) and packs
    200k examples in about a second. (An exact subset-sum fill per bin was tried: it fills the
    first bins perfectly but strands long examples at the end, 2% unused on the same data.)
    """
    lengths = [int(x) for x in lengths]
    too_long = [i for i, n in enumerate(lengths) if n > budget]
    if too_long:
        raise ValueError(f"examples {too_long[:5]} are longer than the token budget {budget} "
                         f"(lengths {[lengths[i] for i in too_long[:5]]}); build them with max_seq_len <= budget")
    if any(n <= 0 for n in lengths):
        raise ValueError("example lengths must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # Open bins sorted by (remaining capacity, bin index): bisect finds the fullest bin that fits.
    free: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))
        if k == len(free):
            bins.append([i])
            rem, b = budget - n, len(bins) - 1
        else:
            rem, b = free.pop(k)
            bins[b].append(i)
            rem -= n
        if rem > 0:
            bisect.insort(free, (rem, b))
    return bins


def shuffled_bins(lengths: Sequence[int], budget: int, seed: int, epoch: int) -> list[list[int]]:
    """:func:`pack`, then the bins in a random order drawn from ``default_rng([seed, epoch, 1])``."""
    bins = pack(lengths, budget)
    perm = np.random.default_rng([int(seed), int(epoch), 1]).permutation(len(bins))
    return [bins[i] for i in perm]


@dataclass
class PackingStats:
    examples: int
    bins: int
    budget: int
    tokens: int
    pad_tokens: int  # always 0: padding-free

    @property
    def padding_fraction(self) -> float:
        """Pad tokens / tokens computed (0: padding-free)."""
        return self.pad_tokens / max(1, self.tokens + self.pad_tokens)

    @property
    def min_budget_waste(self) -> float:
        """The smallest budget_waste any packing of these tokens could reach (whole bins)."""
        best = -(-self.tokens // self.budget)
        return 1.0 - self.tokens / max(1, best * self.budget)

    @property
    def budget_waste(self) -> float:
        """Fraction of the bins' token budget left unused (what a fixed-shape batch would pad)."""
        return 1.0 - self.tokens / max(1, self.bins * self.budget)

    def row(self) -> dict:
        return {"examples": self.examples, "bins": self.bins, "budget": self.budget, "tokens": self.tokens,
                "pad_tokens": self.pad_tokens, "padding_fraction": round(self.padding_fraction, 5),
                "budget_waste": round(self.budget_waste, 5), "min_budget_waste": round(self.min_budget_waste, 5)}


def packing_stats(lengths: Sequence[int], bins: Sequence[Sequence[int]], budget: int) -> PackingStats:
    return PackingStats(len(lengths), len(bins), budget, int(sum(lengths[i] for b in bins for i in b)), 0)


ROW_BUCKETS = 8  # distinct packed-row lengths a compiled kernel sees: budget/8, 2·budget/8, ..., budget


def bucket_length(n: int, budget: int, buckets: int = ROW_BUCKETS) -> int:
    """The smallest of ``budget·k/buckets`` (k = 1..buckets, rounded up to a multiple of 8) that holds
    ``n`` tokens: packed rows padded to it give a compiled attention kernel at most ``buckets``
    distinct shapes (no recompile storm) for at most ``budget/buckets`` tokens of padding per row."""
    if n < 1 or n > budget:
        raise ValueError(f"row of {n} tokens does not fit the budget {budget}")
    step = -(-budget // buckets)
    return min(budget, -(-(-(-n // step) * step) // 8) * 8)


def collate(examples: Sequence[Example], pad_to=None, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Flatten examples into one packed sequence.

    Returns ``input_ids``, ``labels``, ``position_ids`` — each (1, N) int64 — and
    ``seq_lens`` (n_examples,) int64. The first label of every example is -100.
    ``pad_to``: a length, or a function of the packed length giving one (e.g. a
    :func:`bucket_length`); the row is then completed with one extra document of ``pad_id``
    tokens whose labels are all -100 (it attends only to itself and carries no loss).
    """
    if not examples:
        raise ValueError("cannot collate an empty bin")
    target = pad_to(sum(len(e) for e in examples)) if callable(pad_to) else pad_to
    extra = 0 if target is None else int(target) - sum(len(e) for e in examples)
    if extra < 0:
        raise ValueError(f"cannot pad a row of {sum(len(e) for e in examples)} tokens to {target}")
    if extra:
        pad = np.full(extra, pad_id, dtype=np.int64)
        examples = list(examples) + [Example("<pad>", pad, np.full(extra, IGNORE_INDEX, dtype=np.int64), "none")]
    ids = np.concatenate([e.input_ids for e in examples])
    labels = np.concatenate([e.labels for e in examples]).copy()
    pos = np.concatenate([np.arange(len(e), dtype=np.int64) for e in examples])
    starts = np.cumsum([0] + [len(e) for e in examples[:-1]])
    labels[starts] = IGNORE_INDEX  # never predict across an example boundary
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).unsqueeze(0)  # noqa: E731
    return {"input_ids": t(ids), "labels": t(labels), "position_ids": t(pos),
            "seq_lens": torch.tensor([len(e) for e in examples], dtype=torch.int64)}
