"""An F0-based speaker-gender *estimate* for corpora that document none (GigaSpeech, MLS).

01_preprocess writes it into its own manifest column, ``gender_estimated``, only for clips
whose documented gender is "unknown"; it never replaces a documented label and never chooses a
built-in voice (those need documented facts, :mod:`helpers.data.speaker_facts`). It is a
statistic for the data report: median F0 of adult male speech is typically 85-155 Hz, of
adult female speech 165-255 Hz; clips in between, or with too little voiced speech, stay
"unknown".

Method: 40 ms frames every 20 ms over at most the middle 10 s; frames quieter than 10 % of
the loudest RMS are skipped; each frame's normalised autocorrelation peak between 1/400 s
and 1/60 s gives its F0 if the peak is at least 0.5 (clearly periodic); the clip's F0 is the
median over those voiced frames.
"""
from __future__ import annotations

import numpy as np

F0_MIN_HZ, F0_MAX_HZ = 60.0, 400.0
MALE_MAX_HZ = 150.0  # median F0 below this: "male"
FEMALE_MIN_HZ = 175.0  # median F0 above this: "female"; in between: "unknown"
MIN_VOICED_FRAMES = 10  # fewer voiced frames (0.2 s): "unknown"


def median_f0(wav: np.ndarray, sr: int, max_seconds: float = 10.0) -> float:
    """Median F0 in Hz of the voiced frames of ``wav`` (float ``(n,)`` at ``sr`` Hz); NaN if
    fewer than :data:`MIN_VOICED_FRAMES` frames are voiced."""
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    keep = int(max_seconds * sr)
    if x.size > keep:
        start = (x.size - keep) // 2
        x = x[start:start + keep]
    n, hop = int(0.04 * sr), int(0.02 * sr)
    if x.size < n:
        return float("nan")
    idx = np.arange(0, x.size - n + 1, hop)[:, None] + np.arange(n)[None, :]
    frames = x[idx]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = rms >= 0.1 * rms.max() if rms.max() > 0 else np.zeros_like(rms, dtype=bool)
    frames = frames[loud]
    if frames.shape[0] < MIN_VOICED_FRAMES:
        return float("nan")
    spec = np.fft.rfft(frames * np.hanning(n), 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sr / F0_MAX_HZ), min(int(sr / F0_MIN_HZ), n - 1)
    lag = lo + np.argmax(ac[:, lo:hi + 1], axis=1)
    peak = ac[np.arange(ac.shape[0]), lag]
    voiced = peak >= 0.5
    if voiced.sum() < MIN_VOICED_FRAMES:
        return float("nan")
    return float(np.median(sr / lag[voiced]))


def estimate_gender(wav: np.ndarray, sr: int) -> str:
    """"male" / "female" / "unknown" from the median F0 (see the module docstring): an estimate."""
    f0 = median_f0(wav, sr)
    if not np.isfinite(f0):
        return "unknown"
    if f0 < MALE_MAX_HZ:
        return "male"
    if f0 > FEMALE_MIN_HZ:
        return "female"
    return "unknown"


__all__ = ["median_f0", "estimate_gender", "MALE_MAX_HZ", "FEMALE_MIN_HZ"]
