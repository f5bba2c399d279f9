"""Best-of-N: generate N candidates, keep the one an ASR judge understands best.

``OptimumTTS.generate(text, ..., candidates=N, judge=judges)`` lands here. Candidate ``k``
is generated with seed ``seed + k * CANDIDATE_SEED_STRIDE`` (candidate 0 is exactly the
plain ``generate(seed=seed)``), transcribed by ``judge.asr`` and scored by CER against the
text (:func:`helpers.evaluate.clip_metrics.error_rates`, our WER normaliser). The lowest CER wins;
ties (within :data:`CER_TIE`) go to the higher speaker similarity — against the cloning
prompt when there is one, else against the mean embedding of all candidates (the most
typical rendering of the voice) — and then to the lower ``k``.

The cost is N generations plus N transcriptions (and embeddings): :class:`BestOf` keeps the
wall time of all of it, so its ``rtf`` is the real price of the better clip. 07 reports it
as its own row next to the single-candidate numbers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from ..scores import cosine, error_rates

CANDIDATE_SEED_STRIDE = 7919  # a prime: candidate seeds of neighbouring base seeds never collide for N < 7919
CER_TIE = 1e-9


@dataclass
class Candidate:
    index: int
    seed: int
    audio: np.ndarray = field(repr=False)
    hypothesis: str
    cer: float
    sim: float = float("nan")
    seconds: float = 0.0  # generation wall time
    chunks: list = field(default_factory=list, repr=False)


@dataclass
class BestOf:
    """The chosen candidate's ``audio`` (float32 ``(n,)`` at ``sample_rate``) and ``chunks``,
    every candidate's scores, and ``seconds``: wall time of generating *and* judging all N."""

    audio: np.ndarray = field(repr=False)
    sample_rate: int
    chosen: int
    candidates: list[Candidate]
    seconds: float
    chunks: list = field(default_factory=list, repr=False)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """All N generations and judgements / the chosen clip's duration."""
        return self.seconds / max(self.duration, 1e-9)

    def table(self):
        import pandas as pd

        return pd.DataFrame([{"candidate": c.index, "seed": c.seed, "cer": c.cer, "sim": c.sim,
                              "seconds": c.seconds, "chosen": c.index == self.chosen, "hypothesis": c.hypothesis}
                             for c in self.candidates])


def candidate_seeds(seed: int, n: int) -> list[int]:
    if int(n) < 1:
        raise ValueError(f"candidates must be >= 1, got {n}")
    return [int(seed) + k * CANDIDATE_SEED_STRIDE for k in range(int(n))]


def choose(candidates: list[Candidate]) -> int:
    """Index (into ``candidates``) of the lowest CER; ties to the higher SIM, then the first."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    best = min(c.cer for c in candidates)
    tied = [c for c in candidates if c.cer <= best + CER_TIE]
    return max(tied, key=lambda c: (c.sim if np.isfinite(c.sim) else -np.inf, -c.index)).index


def best_of(generate_one: Callable[[int], tuple[np.ndarray, list]], text: str, n: int, sample_rate: int, judge, *,
            seed: int = 0, reference: tuple[np.ndarray, int] | None = None, accent: str = "us") -> BestOf:
    """Run ``generate_one(seed) -> (audio, chunks)`` for N seeds and keep the best (module doc).

    ``judge``: has ``asr`` (``transcribe(wav, sr) -> str``) and optionally ``speaker``
    (``embed(wav, sr)``) for the tie-break; ``reference``: the cloning prompt ``(wav, sr)``."""

    if judge is None or getattr(judge, "asr", None) is None:
        raise ValueError("best-of-N needs a judge with an ASR model: pass judge=helpers.evaluate.report.load_judges(...) "
                         "or any object with .asr.transcribe(wav, sr)")
    t0 = time.perf_counter()
    cands = []
    for k, s in enumerate(candidate_seeds(seed, n)):
        g0 = time.perf_counter()
        audio, chunks = generate_one(s)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        gen_s = time.perf_counter() - g0
        hyp = judge.asr.transcribe(audio, sample_rate) if audio.size else ""
        cands.append(Candidate(k, s, audio, hyp, error_rates(text, hyp, accent)["cer"], seconds=gen_s, chunks=chunks))
    speaker = getattr(judge, "speaker", None)
    if speaker is not None and len(cands) > 1:
        embs = [speaker.embed(c.audio, sample_rate) for c in cands]
        target = speaker.embed(*reference) if reference is not None else np.mean(embs, axis=0)
        for c, e in zip(cands, embs):
            c.sim = cosine(e, target)
    k = choose(cands)
    return BestOf(cands[k].audio, sample_rate, k, cands, time.perf_counter() - t0, cands[k].chunks)


def generate_best_of(tts, text: str, *, candidates: int, judge, return_result: bool = False, seed: int = 0,
                     **kwargs):
    """``tts.generate`` with ``candidates`` > 1 (see :meth:`helpers.infer.engine.OptimumTTS.generate`)."""
    if not isinstance(text, str):
        raise ValueError("candidates > 1 takes one text (a str), not a list")
    prompt = kwargs.get("audio_prompt")
    reference = None
    if prompt is not None:
        from .voices import _load  # the engine's own reading of an audio_prompt (path, array, (array, sr))

        reference = (_load(prompt, tts.sample_rate), tts.sample_rate)

    def one(s):
        res = tts.generate(text, seed=s, return_result=True, **kwargs)
        return res.audio, res.chunks

    out = best_of(one, text, candidates, tts.sample_rate, judge, seed=seed, reference=reference,
                  accent=getattr(tts, "accent", "us"))
    return out if return_result else out.audio
