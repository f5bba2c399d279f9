"""helpers.infer.best_of and generate(..., candidates=N): the selection with the real offline ASR
judge (Whisper tiny.en) and speaker encoder (resemblyzer), on real espeak-ng speech and end
to end through OptimumTTS (tiny random model, random-weight SNAC)."""
import numpy as np
import pytest
import torch

from helpers.infer import best_of as bo
from helpers.evaluate import judges as em
from helpers.audio import load_audio
from helpers.data.corpus import read_metadata
from helpers.evaluate.report import Judges
from helpers.infer.generation import LengthGuard
from helpers.infer.engine import OptimumTTS

torch.set_num_threads(1)
SR = 24000


@pytest.fixture(scope="module")
def judge():
    return Judges(asr=em.load_asr(em.WHISPER_TINY_EN_OFFLINE), speaker=em.load_speaker_encoder(em.RESEMBLYZER),
                  mos=None)


def test_choose_lowest_cer_then_higher_similarity_then_first():
    c = lambda i, cer, sim: bo.Candidate(i, i, np.zeros(1), "", cer, sim)  # noqa: E731
    assert bo.choose([c(0, 0.3, 0.9), c(1, 0.1, 0.2), c(2, 0.2, 0.99)]) == 1
    assert bo.choose([c(0, 0.1, 0.5), c(1, 0.1, 0.8), c(2, 0.4, 0.99)]) == 1
    assert bo.choose([c(0, 0.1, float("nan")), c(1, 0.1, float("nan"))]) == 0
    assert bo.candidate_seeds(5, 3) == [5, 5 + bo.CANDIDATE_SEED_STRIDE, 5 + 2 * bo.CANDIDATE_SEED_STRIDE]
    with pytest.raises(ValueError, match=">= 1"):
        bo.candidate_seeds(0, 0)


def test_best_of_keeps_the_candidate_the_judge_understands(judge):
    meta = {r["utterance_id"]: r for r in read_metadata()}
    right, wrong = meta["male_us_01_01_neutral"], meta["male_us_01_02_neutral"]
    right_wav = load_audio(right["file"], target_sr=None)[0]
    wrong_wav = load_audio(wrong["file"], target_sr=None)[0]
    noise = (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)
    by_seed = dict(zip(bo.candidate_seeds(10, 3), [noise, wrong_wav, right_wav]))
    calls = []

    def one(seed):
        calls.append(seed)
        return by_seed[seed], []

    res = bo.best_of(one, right["text"], 3, SR, judge, seed=10)
    assert calls == bo.candidate_seeds(10, 3)
    assert res.chosen == 2 and np.array_equal(res.audio, right_wav)
    t = res.table()
    assert t.loc[2, "cer"] < 0.2 < t.loc[1, "cer"] and t["chosen"].sum() == 1
    assert res.seconds >= t["seconds"].sum() and res.rtf > 0
    with pytest.raises(ValueError, match="needs a judge"):
        bo.best_of(one, right["text"], 2, SR, None)


@pytest.fixture(scope="module")
def tts(snac_random):
    from helpers.models import extend_vocabulary, load_base
    from helpers.profiles import TINY_LLAMA

    model, tok = load_base(TINY_LLAMA)
    model, tok, _, _ = extend_vocabulary(model, tok, seed=0)
    return OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(base_seconds=0.3, chars_per_second=60))


def test_generate_with_candidates_end_to_end(tts, judge):
    text = "good morning"
    res = tts.generate(text, speaker="female_uk_01", seed=3, candidates=3, judge=judge, return_result=True)
    assert isinstance(res, bo.BestOf) and len(res.candidates) == 3
    cers = [c.cer for c in res.candidates]
    assert res.candidates[res.chosen].cer == min(cers)
    # the chosen clip is exactly what a plain call with the chosen candidate's seed makes
    plain = tts.generate(text, speaker="female_uk_01", seed=res.candidates[res.chosen].seed)
    np.testing.assert_array_equal(res.audio, plain)
    assert res.chunks and res.chunks[0].stop_reason in ("end", "length", "loop")
    # candidate 0 is the single-candidate call; candidates=1 is the plain path
    np.testing.assert_array_equal(res.candidates[0].audio, tts.generate(text, speaker="female_uk_01", seed=3))
    audio = tts.generate(text, speaker="female_uk_01", seed=3, candidates=2, judge=judge)
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32
    with pytest.raises(ValueError, match="needs a judge"):
        tts.generate(text, candidates=2)
    with pytest.raises(ValueError, match="one text"):
        tts.generate([text, text], candidates=2, judge=judge)
