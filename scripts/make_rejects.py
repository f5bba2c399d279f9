#!/usr/bin/env python
"""Derive ``assets/corpus_rejects/``: clips that preprocessing must reject, each for one reason.

The espeak corpus is clean, so in the ``tiny`` profile notebook 01 would never show a
rejection. These four clips are made from corpus clips with plain, seeded numpy
operations and ride along as the ``rejects`` split of the ``assets`` source:

| utterance_id          | made from                              | expected rejection |
|-----------------------|----------------------------------------|--------------------|
| reject_noisy          | a clip + white noise 5 dB below speech | low_snr            |
| reject_too_short      | the first 0.6 s of a clip              | too_short          |
| reject_clipped        | a clip × 8, clipped at full scale      | clipped            |
| reject_silent         | 2 s of digital silence                 | silent             |

Usage: python scripts/make_rejects.py   (deterministic; rerunning changes no bytes)
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.data.corpus import CORPUS_SAMPLE_RATE, METADATA_COLUMNS, METADATA_FILE, read_metadata  # noqa: E402
from helpers.profiles import ASSETS_CORPUS_DIR, ASSETS_REJECTS_DIR  # noqa: E402


def _speech(row: dict) -> np.ndarray:
    wav, sr = sf.read(ASSETS_CORPUS_DIR / row["file"], dtype="float32")
    assert sr == CORPUS_SAMPLE_RATE, f"{row['file']}: {sr} Hz"
    return wav


def build(out_dir: Path = ASSETS_REJECTS_DIR) -> list[dict]:
    rows = read_metadata(ASSETS_CORPUS_DIR)
    src = {r["utterance_id"]: r for r in rows}
    base = rows[0]  # male_us_01, neutral
    speech = _speech(base)
    rng = np.random.default_rng(0)
    active = speech[np.abs(speech) > 0.01 * np.abs(speech).max()]
    noise = rng.standard_normal(speech.shape[0]).astype(np.float32)
    noise *= np.sqrt(np.mean(active ** 2) / 10 ** (5 / 10)) / np.sqrt(np.mean(noise ** 2))
    clips = {
        "reject_noisy": (np.clip(speech + noise, -1, 1), base),
        "reject_too_short": (speech[: int(0.6 * CORPUS_SAMPLE_RATE)], base),
        "reject_clipped": (np.clip(8 * _speech(rows[1]), -1, 1), rows[1]),
        "reject_silent": (np.zeros(2 * CORPUS_SAMPLE_RATE, np.float32), base),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = []
    for uid, (wav, row) in clips.items():
        path = out_dir / f"{uid}.flac"
        sf.write(path, wav, CORPUS_SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        meta.append({"file": path.name, "text": src[row["utterance_id"]]["text"], "speaker": row["speaker"],
                     "accent": row["accent"], "gender": row["gender"], "emotion": row["emotion"],
                     "utterance_id": uid})
    with open(out_dir / METADATA_FILE, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(METADATA_COLUMNS))
        w.writeheader()
        w.writerows(meta)
    return meta


if __name__ == "__main__":
    for m in build():
        print(m["utterance_id"], m["file"])
