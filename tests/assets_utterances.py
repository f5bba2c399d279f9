"""Four real assets utterances with their SNAC codes: the it-learns set-up shared by
tests/train/test_learns.py and tests/infer/test_engine.py (a module at the top of tests/, which
conftest.py puts on the path for every test package)."""
import csv

from helpers.data.shards import Utterance
from helpers.profiles import ASSETS_CORPUS_DIR

SPEAKERS = ("male_us_01", "female_us_01", "male_uk_01", "female_uk_01")
FRAMES = 14  # ~1.2 s of audio: 98 audio tokens per utterance


def assets_clip(utterance_id: str):
    """``(wav, text)`` of one assets-corpus utterance at its stored 24 kHz (no resampling)."""
    from helpers.audio import load_audio
    from helpers.data.corpus import read_metadata

    row = next(r for r in read_metadata() if r["utterance_id"] == utterance_id)
    wav, sr = load_audio(row["file"], target_sr=None)
    assert sr == 24000
    return wav, row["text"]


def assets_utterances(codec):
    """Four assets utterances (one per accent x gender) with their real SNAC codes from the
    tiny profile's codec, cropped to the first FRAMES frames; text, speaker, accent, gender and
    emotion from the corpus metadata."""
    from helpers.audio import load_audio
    from helpers.train.sequences import crop_codes

    rows = list(csv.DictReader(open(ASSETS_CORPUS_DIR / "metadata.csv", newline="")))
    out = []
    for spk in SPEAKERS:
        row = next(r for r in rows if r["speaker"] == spk)
        wav, sr = load_audio(ASSETS_CORPUS_DIR / row["file"], target_sr=codec.sample_rate)
        codes = crop_codes(codec.encode(wav), 2, FRAMES)  # skip the onset frames
        out.append(Utterance(f"assets:{row['utterance_id']}", "assets", f"assets:{spk}", row["accent"], row["gender"],
                             row["emotion"], row["text"], FRAMES / codec.frame_rates[0], codes))
    return out


def random_code_utterances(n: int = 8, seed: int = 0, accents=("us", "uk", "us"), frames=(6, 14),
                           text: str = "sentence number {i}") -> list:
    """``n`` utterances of random SNAC codes (``frames[0]`` to ``frames[1] - 1`` frames), three speakers
    ``ds:spk0..2`` whose accents cycle through ``accents``, texts ``text.format(i=i)``: training data for
    tests that need a stage to run, not to learn."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(*frames))
        out.append(Utterance(f"ds:{i}", "ds", f"ds:spk{i % 3}", accents[i % 3], "female", "",
                             text.format(i=i), t / 12,
                             [rng.integers(0, 4096, t), rng.integers(0, 4096, 2 * t), rng.integers(0, 4096, 4 * t)]))
    return out
