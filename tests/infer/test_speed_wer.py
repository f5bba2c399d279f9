"""The request's ``speed`` (WSOLA time-scaling, helpers.infer.speed) keeps speech intelligible.

Why not on the tiny fixtures: the random-weight model's output is noise, so its WER is ~100 % at every
speed and cannot show a degradation. The check runs on real speech instead: 16 espeak-ng utterances
(2 neutral texts of assets/corpus per built-in voice, regenerated with the corpus generator's voice,
rate and pitch), transcribed by the tests' ASR judge (Whisper tiny.en, offline).

Fast speech is harder for the judge whatever makes it (espeak-ng at 1.5x its rate: WER 0.55 vs 0.26),
so the bound compares like with like: WSOLA at speed s may be at most 10 WER points worse than
espeak-ng speaking the same texts at s times its rate, at s = 0.75, 1.25 and 1.5."""
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.data.corpus import read_metadata
from helpers.evaluate import judges as em
from helpers.infer.speed import change_speed
from helpers.profiles import REPO_ROOT
from helpers.scores import error_rates
from helpers.tokens import VOICES

torch.set_num_threads(1)
SR = 24000
BOUND = 0.10  # WER points over espeak-ng's own rate change
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (scripts/setup.sh)")


def _espeak(speaker: dict, text: str, factor: float) -> np.ndarray:
    import soxr

    out = subprocess.run(["espeak-ng", "-v", speaker["voice"], "-s", str(round(speaker["speed"] * factor)),
                          "-p", str(speaker["pitch"]), "--stdout", text], capture_output=True, check=True,
                         timeout=60).stdout
    wav, sr = sf.read(io.BytesIO(out), dtype="float32")
    return soxr.resample(wav, sr, SR).astype(np.float32)


@pytest.fixture(scope="module")
def items():
    gen = json.loads((REPO_ROOT / "assets/corpus/generator.json").read_text())["speakers"]
    meta = read_metadata()
    return [(gen[v], r["text"]) for v in VOICES
            for r in [m for m in meta if m["speaker"] == v and m["emotion"] == "neutral"][:2]]


def _wer(asr, wavs, items) -> float:
    errors = words = 0
    for wav, (_, text) in zip(wavs, items):
        n = len(text.split())
        errors += error_rates(text, asr.transcribe(wav, SR))["wer"] * n
        words += n
    return errors / words


def test_wsola_speed_is_as_intelligible_as_speaking_at_that_rate(items):
    asr = em.load_asr(em.WHISPER_TINY_EN_OFFLINE, device="cpu")
    base = [_espeak(g, t, 1.0) for g, t in items]
    rows = {1.0: (_wer(asr, base, items),) * 2}
    for s in (0.75, 1.25, 1.5):
        rows[s] = (_wer(asr, [change_speed(w, s) for w in base], items),
                   _wer(asr, [_espeak(g, t, s) for g, t in items], items))
    print("speed: WER wsola / espeak-ng rate -> " + "; ".join(f"{s}: {a:.3f} / {b:.3f}" for s, (a, b) in rows.items()))
    for s, (wsola, native) in rows.items():
        assert wsola <= native + BOUND, (s, wsola, native)
