"""The deterministic hour sampler behind the phase mixes of :data:`helpers.data.catalog.PHASES`.

:func:`sample_hours` draws a target number of hours from a pool of (utterance_id, speaker,
duration_s) records, balanced across speakers where the seed implies it, reporting any
shortfall loudly; :func:`sample_phase` applies one phase of the mix (a replay entry draws only
from its listed speakers). Split out of :mod:`helpers.data.catalog`, which re-exports every name.
"""
from __future__ import annotations

import hashlib
import heapq
import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .catalog import PHASES

class ShortfallWarning(UserWarning):
    """A pool holds fewer hours than the target: everything was taken; see Selection.shortfall_hours."""


@dataclass(frozen=True)
class Item:
    """A lightweight pool record (e.g. a manifest row)."""

    utterance_id: str
    speaker: str
    duration_s: float


@dataclass(frozen=True)
class Selection:
    """What :func:`sample_hours` drew. Hours are sums of ``duration_s`` / 3600."""

    utterance_ids: tuple[str, ...]  # in draw order
    target_hours: float
    achieved_hours: float
    pool_hours: float
    shortfall_hours: float  # target - pool when the pool is too small, else 0
    per_speaker_hours: dict = field(default_factory=dict)  # speaker -> hours drawn
    seed: int = 0
    balanced: bool = True

    @property
    def short(self) -> bool:
        return self.shortfall_hours > 0

    def summary(self) -> str:
        s = (f"{len(self.utterance_ids)} clips, {self.achieved_hours:.3f} h of {self.target_hours:.3f} h target "
             f"from {len(self.per_speaker_hours)} speakers (pool {self.pool_hours:.3f} h)")
        return s + (f"; SHORTFALL {self.shortfall_hours:.3f} h" if self.short else "")


def _as_items(items: Iterable) -> list[Item]:
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # a pandas DataFrame (manifest)
        items = items.to_dict("records")
    out, seen = [], set()
    for i, it in enumerate(items):
        if isinstance(it, Item):
            rec = it
        elif isinstance(it, Mapping):
            missing = [k for k in ("utterance_id", "speaker", "duration_s") if k not in it]
            if missing:
                raise ValueError(f"pool record {i} lacks {missing}; expected utterance_id, speaker, duration_s")
            rec = Item(str(it["utterance_id"]), str(it["speaker"]), float(it["duration_s"]))
        else:
            raise TypeError(f"pool record {i}: expected Item or mapping, got {type(it).__name__}")
        if not math.isfinite(rec.duration_s) or rec.duration_s <= 0:
            raise ValueError(f"pool record {rec.utterance_id!r}: duration_s must be a positive number of seconds, "
                             f"got {rec.duration_s}")
        if rec.utterance_id in seen:
            raise ValueError(f"pool holds utterance_id {rec.utterance_id!r} twice")
        seen.add(rec.utterance_id)
        out.append(rec)
    return out


def sample_hours(items: Iterable, target_hours: float, seed: int, balance_speakers: bool = True) -> Selection:
    """Draw clips totalling ``target_hours`` from ``items``, deterministically by ``seed``.

    ``items``: :class:`Item` records, mappings with utterance_id / speaker / duration_s (s), or
    a DataFrame with those columns. The result does not depend on the order of ``items``.

    ``balance_speakers=False``: a seeded shuffle of the pool, taken in order. ``True``: each
    speaker's clips are shuffled by the seed and speakers are visited round-robin in a seeded
    order, always giving the next clip to the speaker with the fewest hours so far (so speakers
    with long clips do not get more time); a speaker leaves when its clips run out.

    Stops as soon as the total reaches the target, so it overshoots by less than one clip. If
    the pool is smaller than the target, everything is taken, ``shortfall_hours`` says by how
    much, and a :class:`ShortfallWarning` is raised as a warning.
    """
    if not (isinstance(target_hours, (int, float)) and math.isfinite(target_hours) and target_hours >= 0):
        raise ValueError(f"target_hours must be a finite number >= 0, got {target_hours!r}")
    pool = sorted(_as_items(items), key=lambda r: r.utterance_id)  # input order must not matter
    rng = random.Random(seed)
    target_s = target_hours * 3600.0
    pool_s = sum(r.duration_s for r in pool)
    chosen: list[Item] = []
    total = 0.0
    if balance_speakers:
        by_speaker: dict[str, list[Item]] = {}
        for r in pool:
            by_speaker.setdefault(r.speaker, []).append(r)
        speakers = sorted(by_speaker)
        rng.shuffle(speakers)
        for sp in speakers:
            rng.shuffle(by_speaker[sp])
        # heap of (hours so far, seeded rank, speaker, next clip index)
        heap = [(0.0, rank, sp, 0) for rank, sp in enumerate(speakers)]
        heapq.heapify(heap)
        while heap and total < target_s:
            spent, rank, sp, idx = heapq.heappop(heap)
            clip = by_speaker[sp][idx]
            chosen.append(clip)
            total += clip.duration_s
            if idx + 1 < len(by_speaker[sp]):
                heapq.heappush(heap, (spent + clip.duration_s, rank, sp, idx + 1))
    else:
        order = list(pool)
        rng.shuffle(order)
        for clip in order:
            if total >= target_s:
                break
            chosen.append(clip)
            total += clip.duration_s
    per_speaker: dict[str, float] = {}
    for c in chosen:
        per_speaker[c.speaker] = per_speaker.get(c.speaker, 0.0) + c.duration_s / 3600.0
    shortfall = max(0.0, (target_s - pool_s) / 3600.0)
    sel = Selection(tuple(c.utterance_id for c in chosen), float(target_hours), total / 3600.0, pool_s / 3600.0,
                    shortfall, per_speaker, seed, balance_speakers)
    if sel.short:
        warnings.warn(f"pool too small: {sel.summary()}", ShortfallWarning, stacklevel=2)
    return sel


@dataclass(frozen=True)
class PhaseSelection:
    phase: int
    stage: int
    scale: float
    selections: dict  # dataset -> Selection

    @property
    def target_hours(self) -> float:
        return sum(s.target_hours for s in self.selections.values())

    @property
    def achieved_hours(self) -> float:
        return sum(s.achieved_hours for s in self.selections.values())

    @property
    def shortfalls(self) -> dict:
        """dataset -> missing hours, for entries whose pool was too small."""
        return {d: s.shortfall_hours for d, s in self.selections.items() if s.short}

    def utterance_ids(self) -> list[str]:
        return [u for s in self.selections.values() for u in s.utterance_ids]

    def table(self) -> list[dict]:
        return [{"dataset": d, "target_h": s.target_hours, "achieved_h": s.achieved_hours,
                 "pool_h": s.pool_hours, "shortfall_h": s.shortfall_hours, "clips": len(s.utterance_ids),
                 "speakers": len(s.per_speaker_hours), "balanced": s.balanced}
                for d, s in self.selections.items()]


def _entry_seed(seed: int, phase: int, dataset: str) -> int:
    # Python's hash() is salted per process; a digest keeps the draw reproducible.
    return int(hashlib.sha256(f"{seed}:{phase}:{dataset}".encode()).hexdigest()[:16], 16)


def sample_phase(phase: int, pools_by_dataset: Mapping[str, Iterable], seed: int, scale: float = 1.0) -> PhaseSelection:
    """Apply phase ``phase`` of :data:`PHASES`: ``entry.hours * scale`` hours of each dataset.

    ``pools_by_dataset``: dataset name -> pool records (see :func:`sample_hours`) drawn from the
    entry's split role. ``scale`` shrinks every target (the tiny profile uses 1/60: minutes
    instead of hours). Each entry gets its own seed derived from (seed, phase, dataset).
    """

    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)}, got {phase!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    ph = PHASES[phase]
    # A replay entry (built-in voice data) without a pool draws nothing and reports its shortfall.
    missing = [e.dataset for e in ph.entries if e.dataset not in pools_by_dataset and not e.replay]
    if missing:
        need = ", ".join(f"{e.dataset} (split role {e.split_role!r})" for e in ph.entries)
        raise KeyError(f"phase {phase} needs pools for {need}; missing: {missing}")
    sels = {}
    for e in ph.entries:
        pool = pools_by_dataset.get(e.dataset, [])
        if e.speakers:  # a replay entry draws only from the built-in voices' speakers
            wanted = set(e.speakers)
            pool = [r for r in _as_items(pool) if r.speaker in wanted]
        sels[e.dataset] = sample_hours(pool, e.hours * scale, _entry_seed(seed, phase, e.dataset),
                                       e.balance_speakers)
    return PhaseSelection(phase, ph.stage, float(scale), sels)
