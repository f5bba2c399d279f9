"""Scores of what the judges return: text error rates of a transcript, cosine of two embeddings.

Kept apart from the judges (:mod:`helpers.evaluate.judges`) and the audio metrics
(:mod:`helpers.evaluate.signal`: PESQ, STOI) so that best-of-N selection at inference time
(:mod:`helpers.infer.best_of`) needs only ``jiwer`` and numpy, not the evaluation stack.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

_TAG = re.compile(r"\[[^\]]*\]|<\|[^|>]*\|>")
_KEEP = re.compile(r"[^a-z0-9' ]+")


def wer_normalize(text: str, accent: str = "us") -> str:
    """The text both sides of WER go through: tags removed, ``helpers.text.normalize``
    (numbers, dates, money ... spelled as spoken, with ``accent``), lower case, hyphens
    and punctuation to spaces, apostrophes dropped ("don't" -> "dont"), single spaces."""
    from .text import normalize

    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    t = normalize(_TAG.sub(" ", text), accent).lower()
    t = t.replace("’", "'")
    t = _KEEP.sub(" ", t).replace("'", "")
    return " ".join(t.split())


def error_rates(reference: str, hypothesis: str, accent: str = "us") -> dict[str, float]:
    """Per-utterance ``{"wer", "cer"}`` after :func:`wer_normalize` on both sides.
    An empty hypothesis scores 1.0 (every word deleted); WER can exceed 1 with insertions."""
    import jiwer

    ref, hyp = wer_normalize(reference, accent), wer_normalize(hypothesis, accent)
    if not ref:
        raise ValueError(f"reference text {reference!r} is empty after normalization")
    return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.cer(ref, hyp))}


def error_breakdown(reference: str, hypothesis: str, normalize=None) -> dict[str, float]:
    """Per-utterance WER split into ``ins``/``del``/``sub`` rates (each / reference words, so
    ``ins + del + sub == wer``) plus the raw counts, after ``normalize`` (default
    :func:`wer_normalize`) on both sides. jiwer's alignment, as Seed-TTS-eval reports them."""
    import jiwer

    norm = normalize or wer_normalize
    ref, hyp = norm(reference), norm(hypothesis)
    if not ref.split():
        raise ValueError(f"reference text {reference!r} is empty after normalization")
    n = len(ref.split())
    if not hyp.split():  # jiwer refuses an empty hypothesis: every reference word is deleted
        return {"wer": 1.0, "ins": 0.0, "del": 1.0, "sub": 0.0, "n_ref_words": n, "n_ins": 0, "n_del": n, "n_sub": 0}
    o = jiwer.process_words(ref, hyp)
    return {"wer": float(o.wer), "ins": o.insertions / n, "del": o.deletions / n, "sub": o.substitutions / n,
            "n_ref_words": n, "n_ins": int(o.insertions), "n_del": int(o.deletions), "n_sub": int(o.substitutions)}


def pooled_error_rates(references: Sequence[str], hypotheses: Sequence[str], accents: Sequence[str]) -> dict:
    """WER/CER pooled over all words/characters of many utterances (jiwer on lists)."""
    import jiwer

    if not (len(references) == len(hypotheses) == len(accents)) or not references:
        raise ValueError("need equally many (>0) references, hypotheses and accents")
    refs = [wer_normalize(r, a) for r, a in zip(references, accents)]
    hyps = [wer_normalize(h, a) for h, a in zip(hypotheses, accents)]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0.0:
        raise ValueError("speaker embedding has zero or non-finite norm (is the audio silent?)")
    return v / n


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings of the same shape (-1..1)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in size: {a.shape} vs {b.shape}")
    return float(_unit(a) @ _unit(b))
