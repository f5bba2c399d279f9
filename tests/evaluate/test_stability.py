"""helpers.evaluate.stability: each stability measure moves with a real defect, on real
espeak-ng speech from assets/corpus scored by the real offline judges (Whisper tiny.en,
resemblyzer): truncation raises the deletion rate, a loop raises the loop rate, a swapped
speaker lowers within-voice similarity, a voice change over a long text lowers drift."""
import numpy as np
import pytest
import torch

from helpers.evaluate import judges as em
from helpers.evaluate import stability as st
from assets_utterances import assets_clip
from helpers.evaluate.report import Judges

torch.set_num_threads(1)
SR = 24000


@pytest.fixture(scope="module")
def clip():
    return assets_clip


@pytest.fixture(scope="module")
def judges():
    return Judges(asr=em.load_asr(em.WHISPER_TINY_EN_OFFLINE), speaker=em.load_speaker_encoder(em.RESEMBLYZER),
                  mos=None)


def paragraph(clip, utts):
    wavs, texts = zip(*(clip(u) for u in utts))
    gap = np.zeros(SR // 5, np.float32)
    return np.concatenate([x for w in wavs for x in (w, gap)]), " ".join(texts)


def test_truncated_output_raises_the_deletion_rate(clip, judges):
    wav, text = paragraph(clip, ["male_us_01_00_neutral", "male_us_01_01_neutral", "male_us_01_02_neutral"])
    full = st.score_long_form(text, wav, SR, judges)
    cut = st.score_long_form(text, wav[: int(0.4 * wav.size)], SR, judges)
    assert full["del"] < 0.15, full
    assert cut["del"] > full["del"] + 0.3, (full, cut)
    assert cut["duration_ratio"] < 0.6 * full["duration_ratio"]  # and it is too short for its text
    assert 0.6 < full["duration_ratio"] < 1.5  # espeak reads at roughly the expected 14 chars/s


def test_looped_output_raises_the_loop_rate(clip, judges):
    utts = ["male_us_01_01_neutral", "female_uk_02_02_neutral", "male_us_02_01_neutral", "female_us_02_01_neutral"]
    rows, looped_rows = [], []
    for k, u in enumerate(utts):
        wav, text = clip(u)
        rows.append(st.stability_row(text, judges.asr.transcribe(wav, SR), wav, SR))
        if k == 0:  # a model stuck on a phrase: 0.8 s of the clip over and over
            seg = wav[int(0.5 * SR):int(1.3 * SR)]
            wav = np.concatenate([wav[:int(1.3 * SR)]] + [seg] * 4)
        looped_rows.append(st.stability_row(text, judges.asr.transcribe(wav, SR), wav, SR))
    clean, looped = st.stability_summary(rows), st.stability_summary(looped_rows)
    assert clean["loop_rate"] == 0.0 and looped["loop_rate"] == pytest.approx(0.25)
    assert looped_rows[0]["audio_loop_s"] >= 2.0
    assert np.isnan(clean["failure_to_stop_rate"])  # no stop reasons from plain audio: unknown, not 0


def test_guard_stop_reasons_count_as_failure_to_stop_and_loops(clip):
    wav, text = clip("male_us_01_01_neutral")
    rows = [st.stability_row(text, text, wav, SR, ["end", "end"]),
            st.stability_row(text, text, wav, SR, ["end", "length"]),
            st.stability_row(text, text, wav, SR, ["loop"])]
    s = st.stability_summary(rows)
    assert s["failure_to_stop_rate"] == pytest.approx(1 / 3) and s["loop_rate"] == pytest.approx(1 / 3)
    assert s["wer"] == 0.0 and rows[1]["n_chunks"] == 2


def test_swapping_speakers_lowers_within_voice_similarity(clip, judges):
    host = ["female_us_01_00_neutral", "female_us_01_01_neutral", "female_us_01_02_neutral"]
    guest = ["male_uk_01_00_neutral", "male_uk_01_01_neutral", "male_uk_01_02_neutral"]
    order = [("host", host[0]), ("guest", guest[0]), ("host", host[1]), ("guest", guest[1]), ("host", host[2])]

    def turns(swap_last):
        out = []
        for i, (spk, u) in enumerate(order):
            if swap_last and i == len(order) - 1:
                u = guest[2]  # the host's last line comes out in the guest's voice
            wav, text = clip(u)
            out.append({"speaker": spk, "text": text, "wav": wav})
        return out

    per_turn, good = st.score_dialogue(turns(False), SR, judges)
    _, swapped = st.score_dialogue(turns(True), SR, judges)
    assert len(per_turn) == 5 and per_turn["wer"].mean() < 0.3
    assert swapped["within_voice_sim"] < good["within_voice_sim"] - 0.05, (good, swapped)
    assert swapped["speaker_separation"] < good["speaker_separation"]
    assert good["within_voice_sim"] > good["cross_speaker_sim"]
    with pytest.raises(ValueError, match="two different speakers"):
        st.score_dialogue(turns(False)[:1], SR, judges)


def test_a_voice_that_changes_over_a_long_text_lowers_drift_similarity(clip, judges):
    same, _ = paragraph(clip, [f"female_us_01_0{i}_neutral" for i in range(3)])
    other, _ = paragraph(clip, [f"male_uk_01_0{i}_neutral" for i in range(3)])
    steady = st.drift_similarity(judges.speaker, np.concatenate([same, same]), SR, window_s=5)
    drifted = st.drift_similarity(judges.speaker, np.concatenate([same, other]), SR, window_s=5)
    assert steady > drifted + 0.1, (steady, drifted)
    assert np.isnan(st.drift_similarity(judges.speaker, same[: 3 * SR], SR, window_s=5))


def test_stability_set_is_long_form_and_a_two_voice_dialogue():
    for profile in ("colab", "tiny"):
        s = st.load_stability_set(profile)
        assert s["long_form"] and all(st.expected_seconds(p["text"]) > 60 for p in s["long_form"])
        speakers = [t[0] for t in s["dialogue"]["script"]]
        assert len(set(speakers)) == 2 and all(speakers.count(x) >= 2 for x in set(speakers))
    with pytest.raises(ValueError, match="no stability set"):
        st.load_stability_set("huge")
