"""Judges calibrated on human speech: what the same judges say about real recordings.

The seed's targets (SIM ≥ 0.85, MOS ≥ 4.0) are absolute numbers from its own judges. Ours differ
(WavLM-SV or resemblyzer for SIM, UTMOS or DNSMOS for MOS), and a judge's scale is its own: with
resemblyzer, two real recordings of the same reader reach 0.85 only about two times in three (measured
2026-12-04 on LibriSpeech test-other, 10 readers x 10 clips: 450 same-reader pairs, mean 0.87, 66 % at
or above 0.85, reader means 0.84-0.91; different readers mean 0.52, at most 0.72), and DNSMOS scores
clean read speech 2.4-3.5. A "fail" that the human recordings would also get says nothing about the model.

So 07 scores the *human* recordings of its items with the same judges (:func:`human_figures`):

* **MOS** of each held-out reference recording, as recorded (no codec);
* **WER** of the judge ASR on each recording against its transcript;
* **SIM** between two *different* recordings of the same speaker (the best a clone can hope for:
  a perfect clone is another recording of that person, not the reference itself).

A target that depends on the judge then passes relative to that human figure
(:data:`RELATIVE_RULES`: SIM and MOS at least 90 % of the human figure); the seed's absolute number
stays in the table, labelled as the seed's, with the judge that produced ours named. WER keeps the
seed's absolute rule (its scale is the words, not the judge), with the human WER shown beside it.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..scores import error_rates, wer_normalize
from .clip_metrics import TARGETS

HUMAN_LABEL = "human recordings (same judges)"
# metric -> fraction of the human figure the model must reach (judge-dependent metrics only)
RELATIVE_RULES: dict[str, float] = {"sim": 0.90, "mos": 0.90}


def human_figures(references: Mapping[str, object], judges):
    """One row per human reference recording: ``mos``, ``wer`` (where it has a transcript) and ``sim``
    (mean cosine to the *other* recordings of the same speaker; NaN when the speaker has one).
    ``references``: name -> ``ResolvedReference`` (``wav``, ``sample_rate``, ``text``, ``reference.speaker``,
    ``reference.accent``), as 07 resolves them."""
    import pandas as pd

    refs = list(references.items())
    emb = {n: judges.speaker.embed(r.wav, r.sample_rate) for n, r in refs}
    rows = []
    for n, r in refs:
        text = r.text or ""
        others = [m for m, o in refs if m != n and o.reference.speaker == r.reference.speaker]
        sims = [float(np.dot(emb[n], emb[m]) / (np.linalg.norm(emb[n]) * np.linalg.norm(emb[m]))) for m in others]
        rows.append({"reference": n, "speaker": r.reference.speaker, "seconds": round(len(r.wav) / r.sample_rate, 2),
                     "mos": float(judges.mos.score(r.wav, r.sample_rate)),
                     "wer": error_rates(text, judges.asr.transcribe(r.wav, r.sample_rate), r.reference.accent)["wer"]
                     if wer_normalize(text) else float("nan"),
                     "sim": float(np.mean(sims)) if sims else float("nan"),
                     "sim_pairs": len(sims)})
    if not rows:
        raise ValueError("no reference recordings to calibrate the judges on")
    return pd.DataFrame(rows)


def human_summary(figures) -> dict[str, float]:
    """Means of :func:`human_figures` (NaN where nothing was measured)."""
    return {m: float(figures[m].mean()) if m in figures and figures[m].notna().any() else float("nan")
            for m in ("mos", "wer", "sim")}


def relative_pass(metric: str, value: float | None, human: float | None) -> bool | None:
    """The calibrated rule for a judge-dependent ``metric``: ``value >= RELATIVE_RULES[metric] * human``;
    None when there is no value or no human figure (then the seed's absolute rule is all there is)."""
    if metric not in RELATIVE_RULES or value is None or human is None or not np.isfinite(value) \
            or not np.isfinite(human) or human <= 0:
        return None
    return bool(value >= RELATIVE_RULES[metric] * human)


def rule_text(metric: str, judge: str | None = None) -> str:
    """How ``metric`` passes: the relative rule, or the seed's absolute one."""
    op, target = TARGETS[metric]
    if metric in RELATIVE_RULES:
        return f"≥ {RELATIVE_RULES[metric]:.0%} of the human figure" + (f" ({judge})" if judge else "")
    return f"{'≥' if op == '>=' else '≤'} {target:g} (seed, absolute)"
