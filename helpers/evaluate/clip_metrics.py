"""Per-clip evaluation metrics: the WER normalizer and error rates (with insertions,
deletions and substitutions), speaker similarity, codec quality, prosody and the emotion
control table. Split out of :mod:`helpers.evaluate.report` (which re-exports every name), so
the protocol, stability and best-of-N modules can use them without the test-set runner.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import audio as au
from .signal import log_mel_distance, pesq_wb, stoi
from ..tokens import SEED_EMOTION_PROSODY, SEED_EMOTIONS

# Seed §12 "Emotion Control at Inference": relative (pitch, speed, energy) change vs neutral.
SEED_PROSODY = SEED_EMOTION_PROSODY

# Seed §14 "Benchmark Comparison Target". WER as a fraction; None = not reported by the seed.
METRICS = ("mos", "wer", "sim", "pesq", "rtf")
METRIC_LABELS = {"mos": "MOS", "wer": "WER", "sim": "Speaker Sim", "pesq": "PESQ", "rtf": "RTF"}
TARGETS: dict[str, tuple[str, float]] = {
    "mos": (">=", 4.0), "wer": ("<=", 0.05), "sim": (">=", 0.85), "pesq": (">=", 3.5), "rtf": ("<=", 1.5),
}
ANCHORS: dict[str, dict[str, float | None]] = {
    "Kokoro (82M)": {"mos": 3.7, "wer": 0.04, "sim": None, "pesq": 3.3, "rtf": 0.05},
    "OuteTTS (1B)": {"mos": 3.5, "wer": 0.06, "sim": 0.78, "pesq": 3.1, "rtf": 0.8},
    "Orpheus (3B)": {"mos": 4.2, "wer": 0.03, "sim": 0.87, "pesq": 3.8, "rtf": 1.2},
}

from ..scores import wer_normalize, cosine
from .judges import EMOTION_CLASS


def speaker_similarity(encoder, wav: np.ndarray, sr: int, ref_wav: np.ndarray, ref_sr: int) -> float:
    """Cosine of ``encoder`` embeddings of ``wav`` and ``ref_wav`` (-1..1; same speaker ~ high)."""

    return cosine(encoder.embed(wav, sr), encoder.embed(ref_wav, ref_sr))


def codec_quality(codec, wav: np.ndarray, sr: int) -> dict[str, float]:
    """Quality of ``codec``'s reconstruction (``codec.decode(codec.encode(wav, sr))`` at
    ``codec.sample_rate``) against ``wav``: wideband PESQ, STOI, log-mel distance."""
    return reconstruction_quality(*codec_round_trip(codec, wav, sr), codec.sample_rate)


def codec_round_trip(codec, wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``(original, reconstruction)``, both float32 ``(n,)`` at ``codec.sample_rate``."""
    ref = au.resample(np.asarray(wav, dtype=np.float32), sr, codec.sample_rate)
    rec = np.asarray(codec.decode(codec.encode(ref, codec.sample_rate)), dtype=np.float32).reshape(-1)
    return ref, rec


def reconstruction_quality(ref: np.ndarray, rec: np.ndarray, sr: int) -> dict[str, float]:
    """Wideband PESQ, STOI and log-mel distance of ``rec`` against ``ref`` (both at ``sr``)."""
    return {"pesq": pesq_wb(ref, rec, sr), "stoi": stoi(ref, rec, sr), "mel_distance": log_mel_distance(ref, rec, sr)}


PROSODY_SR = 16000
ACTIVE_TOP_DB = 35.0  # frames within 35 dB of the loudest count as active speech


def prosody(wav: np.ndarray, sr: int, text: str | None = None) -> dict[str, float]:
    """Median F0 of voiced frames (Hz, pYIN 60–500 Hz; NaN if nothing is voiced, e.g. a
    whisper), RMS level of active speech (dBFS), active-speech seconds and, with ``text``,
    speaking rate in characters of normalized text per active second."""
    import librosa

    x = au.resample(np.asarray(wav, dtype=np.float32).reshape(-1), sr, PROSODY_SR)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("prosody needs non-empty, finite audio")
    intervals = librosa.effects.split(x, top_db=ACTIVE_TOP_DB, frame_length=1024, hop_length=256)
    active = np.concatenate([x[s:e] for s, e in intervals]) if len(intervals) else x[:0]
    speech_s = active.size / PROSODY_SR
    rms = float(np.sqrt(np.mean(active.astype(np.float64) ** 2))) if active.size else 0.0
    level_db = 20 * math.log10(rms) if rms > 0 else float("-inf")
    f0 = float("nan")
    if active.size >= 2048:
        f, voiced, _ = librosa.pyin(x, fmin=60, fmax=500, sr=PROSODY_SR, frame_length=1024, hop_length=256)
        if voiced.any():
            f0 = float(np.nanmedian(f[voiced]))
    out = {"f0_hz": f0, "level_db": level_db, "speech_s": speech_s}
    if text is not None:
        n_chars = len(wer_normalize(text).replace(" ", ""))
        out["chars_per_s"] = n_chars / speech_s if speech_s > 0 else float("nan")
    return out


def emotion_control(items) -> "pd.DataFrame":
    """Per emotion: median relative change of pitch, speed and energy of built-in-voice items
    against the *same voice's* neutral items, next to the seed's §12 change, with whether the
    direction agrees. ``items``: the per-item table of :func:`evaluate`."""
    import pandas as pd

    df = items[items["kind"] == "voice"]
    base = df[df["emotion"] == "neutral"].groupby("voice")[["f0_hz", "chars_per_s", "level_db"]].mean()
    rows = []
    for emo in [e for e in SEED_EMOTIONS if e != "neutral"]:
        sub = df[(df["emotion"] == emo) & df["voice"].isin(base.index)]
        if sub.empty:
            continue
        b = base.loc[sub["voice"]].to_numpy()
        measured = {
            "pitch": np.nanmedian(sub["f0_hz"].to_numpy() / b[:, 0] - 1) if np.isfinite(sub["f0_hz"]).any() else np.nan,
            "speed": np.nanmedian(sub["chars_per_s"].to_numpy() / b[:, 1] - 1),
            "energy": np.nanmedian(10 ** ((sub["level_db"].to_numpy() - b[:, 2]) / 20) - 1),
        }
        for k, (dim, expected) in enumerate(zip(("pitch", "speed", "energy"), SEED_PROSODY[emo])):
            m = float(measured[dim])
            agree = None if not np.isfinite(m) else bool(np.sign(m) == np.sign(expected))
            rows.append({"emotion": emo, "dimension": dim, "seed_change": expected, "measured_change": m,
                         "n_items": len(sub), "direction_ok": agree})
    return pd.DataFrame(rows)




def emotion_recognition(items, clips_dir, classifier):
    """Whether the requested emotion is *heard*: for every item whose emotion has a class in
    :data:`helpers.evaluate.judges.EMOTION_CLASS`, the classifier's probability of that class and
    whether it is the top class; per emotion, the recognition rate. Emotions without a class
    (whisper, calm) are left out, not counted as passes. Returns ``(per_item, per_emotion)``."""
    import pandas as pd

    rows = []
    for _, it in items.iterrows():
        cls = EMOTION_CLASS.get(it["emotion"])
        if cls is None:
            continue
        wav, sr = au.load_audio(Path(clips_dir) / it["clip"], target_sr=None)
        p = classifier.probs(wav, sr)
        rows.append({"item_id": it["item_id"], "emotion": it["emotion"], "expected_class": cls,
                     "p_expected": p[cls], "top_class": max(p, key=p.get), "recognized": max(p, key=p.get) == cls})
    per_item = pd.DataFrame(rows)
    if per_item.empty:
        return per_item, per_item
    per_emotion = per_item.groupby("emotion").agg(n=("item_id", "size"), recognized=("recognized", "mean"),
                                                  p_expected=("p_expected", "mean")).reset_index()
    per_emotion["judge"] = classifier.name
    return per_item, per_emotion
