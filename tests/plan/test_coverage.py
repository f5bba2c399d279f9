"""Built-in voices, emotions and cloning references that the data trains (helpers.plan.coverage).

A synthetic catalog mirrors the real corpora's speakers (the shipped facts tables: counts,
genders, accents), labels and clip lengths, with no audio: raw hub-like rows go through the
real catalog adapter, the real phase sampler (with the voice replay), the real voice choice
and the recipe's reference draw. Minutes are scaled 1/60 (an hour of the seed's mix = a minute).
"""
import json
import math

import numpy as np
import pytest
import torch

from helpers.data import catalog as C
from helpers.data import sampling as SA
from helpers.data import speaker_facts as SF
from helpers.tokens import REFERENCE_MAX_FRAMES, REFERENCE_MIN_FRAMES
from helpers.train.config import stage_config
from helpers.infer.emotions import MIN_EMOTION_MINUTES
from helpers.plan.coverage import (coverage_from_utterances, coverage_report,
    format_coverage, model_record)
from helpers.profiles import get_profile
from helpers.train.sequences import SequenceBuilder, choose_builtin_voices
from helpers.data.shards import Utterance
from helpers.tokens import EMOTIONS, VOICES, TokenLayout

torch.set_num_threads(1)
AUDIO = {"bytes": b"", "path": None}
SCALE = 1 / 60
FPS = 24000 / 2048


def _rows():
    """(dataset, raw row, seconds) of a synthetic catalog shaped like the real one."""
    rng = np.random.default_rng(0)
    out = []
    for spk in list(SF.speaker_facts("libritts_r"))[:40]:  # LibriTTS-R readers, long-ish read clips
        for i in range(10):
            out.append(("libritts_r", {"audio": AUDIO, "text_normalized": f"Sentence {i}.", "speaker_id": spk,
                                       "id": f"{spk}_{i}"}, rng.uniform(4, 9)))
    for k in range(20):  # GigaSpeech recordings without speaker labels
        for i in range(8):
            out.append(("gigaspeech", {"audio": AUDIO, "text": "HELLO THERE <PERIOD>", "speaker": "N/A",
                                       "audio_id": f"POD{k}", "segment_id": f"POD{k}_{i}"}, rng.uniform(2, 8)))
    for spk in SF.speaker_facts("hifi_tts"):
        for i in range(8):
            out.append(("hifi_tts", {"audio": AUDIO, "speaker": spk, "file": f"a/{spk}_{i}.flac", "duration": 3.0,
                                     "text": "t", "text_no_preprocessing": "t", "text_normalized": "Some text."},
                        rng.uniform(2, 6)))
    for spk, f in SF.speaker_facts("vctk").items():  # every VCTK speaker, ~6 short sentences each
        for i in range(6):
            out.append(("vctk", {"audio": AUDIO, "speaker_id": spk, "file": f"{spk}_{i:03d}_mic1.flac",
                                 "text": "Please call Stella.", "text_id": f"{i:03d}", "age": "23",
                                 "gender": "F" if f.gender == "female" else "M", "accent": RAW_ACCENT[spk],
                                 "region": f.region, "comment": ""}, rng.uniform(3, 4)))
    for spk in ("ex01", "ex02", "ex03", "ex04"):  # Expresso read styles
        for style in SF.LABEL_MINUTES["expresso"]:
            for i in range(3):
                out.append(("expresso", {"audio": AUDIO, "text": "Why would you do that?", "speaker_id": spk,
                                         "style": style, "id": f"{spk}_{style}_{i}"}, rng.uniform(3, 4)))
    for actor in range(1, 25):  # RAVDESS: 8 emotions, 2 takes each
        for code in C.RAVDESS_EMOTION_CODES:
            for rep in (1, 2):
                name = f"03-01-{code}-01-01-{rep:02d}-{actor:02d}.wav"
                out.append(("ravdess", {"audio": AUDIO, "file": name, "gender": "x", "transcription": "x",
                                        "emotion": "x", "intensity": "x"}, rng.uniform(3.3, 4.2)))
    for spk, emos in {"bea": "neutral amused angry sleepy disgust", "jenie": "neutral amused angry sleepy disgust",
                      "josh": "neutral amused sleepy", "sam": "neutral amused angry sleepy disgust"}.items():
        for emo in emos.split():
            for i in range(4):
                out.append(("emov_db", {"audio": {"bytes": b"", "path": f"{spk}_{emo}_{i}.wav"}, "emotion": emo,
                                        "transcript": "Author of the danger trail.", "speaker_name": spk.title()},
                            rng.uniform(3, 4.5)))
    return out


RAW_ACCENT = {r["speaker"]: r["accent_raw"] for r in SF.read_table("vctk")[0]}  # speaker-info's spelling


@pytest.fixture(scope="module")
def synthetic_run():
    """Stage -> utterances, voices, configs and the report, from the synthetic catalog."""
    rng = np.random.default_rng(1)
    utts, pools = [], {}
    for dataset, raw, seconds in _rows():
        row = C.to_common(C.CATALOG[dataset], raw)
        assert not isinstance(row, C.Rejected), row
        n = max(1, int(seconds * FPS))
        codes = [rng.integers(0, 4096, n), rng.integers(0, 4096, 2 * n), rng.integers(0, 4096, 4 * n)]
        u = Utterance(row["utterance_id"], dataset, row["speaker"], row["accent"], row["gender"], row["emotion"],
                      row["text"], n / FPS, codes)
        utts.append(u)
        pools.setdefault(dataset, []).append({"utterance_id": u.utterance_id, "speaker": u.speaker,
                                              "duration_s": u.duration_s})
    by_id = {u.utterance_id: u for u in utts}
    stage_utts = {}
    with pytest.warns(SA.ShortfallWarning):
        for phase in (1, 2, 3):
            sel = SA.sample_phase(phase, pools, seed=0, scale=SCALE)
            stage_utts[C.PHASES[phase].stage] = [by_id[i] for i in sel.utterance_ids()]
    voices = choose_builtin_voices(utts)
    cfgs = {s: stage_config(s, "colab") for s in (2, 3, 4)}
    report = coverage_from_utterances(stage_utts, voices, cfgs, profile_name="synthetic", hours_scale=SCALE)
    return stage_utts, voices, cfgs, report, utts


def test_catalog_carries_documented_genders_and_accents(synthetic_run):
    *_, utts = synthetic_run
    by_speaker = {u.speaker: u for u in utts}
    assert by_speaker["expresso:ex01"].gender == "male" and by_speaker["expresso:ex04"].gender == "female"
    assert by_speaker["hifi_tts:92"].gender == "female" and by_speaker["hifi_tts:6097"].gender == "male"
    assert by_speaker["vctk:p237"].accent == "scottish" and by_speaker["vctk:p253"].accent == "welsh"
    assert by_speaker["vctk:p238"].accent == "irish" and by_speaker["vctk:p225"].accent == "uk"
    assert by_speaker["ravdess:actor_01"].gender == "male" and by_speaker["emov_db:Josh"].gender == "male"
    # LibriTTS-R readers: SPEAKERS.TXT; GigaSpeech documents nothing: "unknown" (01 adds a labelled F0 estimate)
    assert {u.gender for u in utts if u.dataset == "libritts_r"} == {"male", "female"}
    assert {u.gender for u in utts if u.dataset == "gigaspeech"} == {"unknown"}
    genders = {g: sum(f.gender == g for f in SF.speaker_facts("vctk").values()) for g in ("male", "female")}
    assert len(SF.speaker_facts("vctk")) == 109 and genders == {"male": 47, "female": 62}
    assert sum(f.accent == "uk" for f in SF.speaker_facts("vctk").values()) == 33


def test_all_eight_voices_get_speakers_of_their_gender_and_accent(synthetic_run):
    _, voices, _, report, utts = synthetic_run
    assert voices.assignments == SF.BUILTIN_VOICE_PLAN and not voices.unassigned
    by_speaker = {u.speaker: u for u in utts}
    for v in VOICES:
        gender, accent = v.split("_")[:2]
        u = by_speaker[voices.assignments[v]]
        assert (u.gender, u.accent) == (gender, accent), v
        assert report["voices"][v]["matches_name"]
        if accent == "uk":  # RP proxy: a southern-English VCTK speaker, never Scottish/Irish/Welsh
            assert SF.plan_fact(v).region.lower() in SF.SOUTHERN_ENGLISH_REGIONS


def test_stages_2_3_4_each_train_every_voice_token(synthetic_run):
    stage_utts, voices, cfgs, report, _ = synthetic_run
    for s in (2, 3, 4):
        present = {voices.speaker_to_voice[u.speaker] for u in stage_utts[s] if u.speaker in voices.speaker_to_voice}
        assert present == set(VOICES), (s, set(VOICES) - present)
        assert all(report["stages"][s]["voice_minutes"][v] > 0 for v in VOICES)
        assert report["stages"][s]["with_voice"] > 0
    assert report["problems"] == []
    # without the replay share, stage 2 (phase 1) would train no voice at all
    seed_only = C.build_phases(0)
    assert not {e.dataset for e in seed_only[1].entries} & {"vctk", "expresso"}


def test_every_public_emotion_has_minutes_or_is_refused(synthetic_run):
    *_, report, _ = synthetic_run
    threshold = MIN_EMOTION_MINUTES * SCALE
    trained = set(report["trained_emotions"])
    st4 = report["stages"][4]["emotion_minutes"]
    total = {e: sum(report["stages"][s]["emotion_minutes"].get(e, 0) for s in (2, 3, 4)) for e in EMOTIONS}
    for e in EMOTIONS:
        if e in trained:
            assert total[e] >= threshold and st4[e] >= threshold  # in the seed's mix: also in the emotion stage
        else:
            assert total[e] < threshold and report["untrained_emotions"][e]
    assert {"excited", "friendly"}.isdisjoint(trained)
    assert {"neutral", "happy", "sad", "angry", "whisper", "calm"} <= trained
    # the same verdict as the catalog's facts predict for the real mix
    assert trained == set(coverage_report("colab")["trained_emotions"])


def test_references_occur_and_span_the_range(synthetic_run):
    *_, report, _ = synthetic_run
    for s in (2, 3, 4):
        secs = report["stages"][s]["reference_seconds"]
        assert report["stages"][s]["with_reference"] == len(secs) > 0
        assert min(secs) >= REFERENCE_MIN_FRAMES / FPS - 0.01 and max(secs) <= REFERENCE_MAX_FRAMES / FPS + 0.01
    secs = report["stages"][2]["reference_seconds"]
    assert min(secs) < 6 and max(secs) > 16  # LibriTTS readers' clips are joined up to 20 s


def test_reference_counts_equal_the_recipe(synthetic_run):
    """With the tokenizer's encoder, the coverage report counts exactly what SequenceBuilder builds."""
    from helpers.train.sequences import split_eval

    stage_utts, voices, cfgs, _, _ = synthetic_run
    layout = TokenLayout(256)
    enc = lambda t: [3 + ord(c) % 200 for c in t]  # noqa: E731
    utts = stage_utts[4]
    cfg = cfgs[4]
    rep = coverage_from_utterances({2: [], 3: [], 4: utts}, voices, cfgs, encode_text=enc)
    train, _ = split_eval(utts, cfg.eval_fraction, cfg.seed)
    b = SequenceBuilder(layout, enc, 1, voices, cfg.max_seq_len, cfg.reference_prob, cfg.reference_max_frames,
                        cfg.reference_min_frames)
    _, built = b.build(train, cfg.seed, 0, pool=train)
    assert rep["stages"][4]["with_reference"] == built.with_reference > 0
    assert rep["stages"][4]["examples"] == built.examples and rep["stages"][4]["with_voice"] == built.with_voice
    assert [round(f / FPS, 2) for f in built.reference_frames] == rep["stages"][4]["reference_seconds"]


def test_colab_report_from_catalog_facts_meets_the_goals():
    rep = coverage_report("colab")
    for v in VOICES:
        assert rep["voices"][v]["matches_name"]
        for s in (2, 3, 4):
            assert rep["stages"][s]["voice_minutes"][v] >= 10, (v, s)
    st4 = rep["stages"][4]["emotion_minutes"]
    assert all(st4[e] >= 10 for e in rep["trained_emotions"])
    assert "excited" in rep["untrained_emotions"] and "friendly" in rep["untrained_emotions"]
    for s in (2, 3, 4):
        hist = {(h["from_s"], h["to_s"]): h["references"] for h in rep["stages"][s]["reference_histogram"]}
        assert hist[(0, 3)] == 0 and hist[(20, 30)] == 0 and hist[(15, 20)] > 0 and hist[(3, 5)] > 0
    text = format_coverage(rep)
    assert "female_uk_02" in text and "excited" in text and "Problems: none" in text
    rec = model_record(rep)
    assert rec["voice_minutes"]["male_uk_01"]["4"] >= 10 and "excited" not in rec["trained_emotions"]
    assert rec["voice_emotion_minutes"]["male_us_01"]["happy"] > 0 and "happy" not in rec["voice_emotion_minutes"][
        "male_uk_01"]
    with pytest.raises(ValueError, match="run directory"):
        coverage_report("tiny")


def test_run_plan_cli_prints_the_coverage(capsys):
    from helpers.plan.run_plan import main

    assert main(["--profile", "colab", "--coverage", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["stages"]) == {"2", "3", "4"} and rep["voices"]["male_us_01"]["speaker"] == "expresso:ex01"
    assert math.isclose(rep["min_emotion_minutes"], 10.0) and get_profile("colab").hours_scale == 1.0
