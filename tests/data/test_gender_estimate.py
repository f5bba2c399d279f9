"""The F0-based gender estimate 01 adds for corpora that document no gender (helpers.data.gender_estimate)."""
import numpy as np
import pytest
import torch

from helpers.data import clips
from helpers.data.gender_estimate import estimate_gender, median_f0
from helpers.profiles import ASSETS_CORPUS_DIR

torch.set_num_threads(1)
SR = 24000


def _voice(f0, seconds=2.0):
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


@pytest.mark.parametrize("f0, label", [(100, "male"), (125, "male"), (165, "unknown"), (210, "female"),
                                       (250, "female")])
def test_harmonic_voices(f0, label):
    assert abs(median_f0(_voice(f0), SR) - f0) < 2
    assert estimate_gender(_voice(f0), SR) == label


def test_noise_and_silence_stay_unknown():
    assert estimate_gender(np.random.default_rng(0).normal(size=SR * 2).astype(np.float32) * 0.1, SR) == "unknown"
    assert estimate_gender(np.zeros(SR, np.float32), SR) == "unknown"
    assert np.isnan(median_f0(np.zeros(100, np.float32), SR))


def _row(speaker, gender):
    path = ASSETS_CORPUS_DIR / speaker / f"{speaker}_00_neutral.flac"
    return {"audio": {"bytes": None, "path": str(path)}, "text": "The old lighthouse still shines across the bay.",
            "speaker": f"x:{speaker}", "accent": "us", "gender": gender, "emotion": "neutral",
            "utterance_id": f"x:{speaker}", "dataset": "x"}


def test_preprocess_estimates_only_where_no_gender_is_documented():
    rec, p = clips.preprocess_row(_row("male_us_01", "unknown"))
    assert p is not None and rec["gender"] == "unknown" and rec["gender_estimated"] == "male"
    rec, _ = clips.preprocess_row(_row("female_uk_01", "unknown"))
    assert rec["gender"] == "unknown" and rec["gender_estimated"] == "female"
    rec, _ = clips.preprocess_row(_row("male_us_01", "male"))  # documented: kept, nothing estimated
    assert rec["gender"] == "male" and rec["gender_estimated"] == ""
    assert "gender_estimated" in clips.MANIFEST_COLUMNS
