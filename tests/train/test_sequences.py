"""Example building: prompt format, loss masks, voices, cloning references, length rules."""
import numpy as np
import pytest
import torch

from helpers.train.sequences import (IGNORE_INDEX, SequenceBuilder, VoiceSelection, choose_builtin_voices,
    crop_codes, split_eval)
from helpers.data.shards import Utterance
from helpers.tokens import FRAME_SIZE, TokenLayout

torch.set_num_threads(1)
LAYOUT = TokenLayout(256)
BOS = 1


def enc(text):  # a toy tokenizer: one id per character, inside the base vocabulary
    return [3 + ord(c) % 200 for c in text]


def utt(i, speaker="ds:a", frames=10, emotion="", accent="us", gender="male", seconds=None, seed=None):
    rng = np.random.default_rng(i if seed is None else seed)
    codes = [rng.integers(0, 4096, frames), rng.integers(0, 4096, 2 * frames), rng.integers(0, 4096, 4 * frames)]
    return Utterance(f"ds:{i}", "ds", speaker, accent, gender, emotion, f"text {i}",
                     frames / 12 if seconds is None else seconds, codes)


def builder(voices=None, **kw):
    kw.setdefault("max_seq_len", 1024)
    return SequenceBuilder(LAYOUT, enc, BOS, voices or VoiceSelection({}), **kw)


def test_example_follows_the_contract_and_masks_the_prompt():
    u = utt(0, emotion="happy")
    ex = builder().example(u)
    prompt = LAYOUT.build_prompt(enc(u.text), emotion="happy", bos_id=BOS)
    audio = LAYOUT.codes_to_tokens(u.codes)
    assert ex.input_ids.tolist() == prompt + audio.tolist() + [LAYOUT.audio_end_id]
    assert (ex.labels[: len(prompt)] == IGNORE_INDEX).all()
    assert ex.labels[len(prompt):].tolist() == audio.tolist() + [LAYOUT.audio_end_id]
    assert ex.conditioning == "none"
    # loss_on="all": everything but BOS is a target
    ex_all = builder(loss_on="all").example(u)
    assert ex_all.labels[0] == IGNORE_INDEX and (ex_all.labels[1:] == ex_all.input_ids[1:]).all()


def test_emotion_defaults_to_neutral_and_unknown_raises():
    ex = builder().example(utt(0, emotion=""))
    assert LAYOUT.emotion_id("neutral") in ex.input_ids.tolist()
    with pytest.raises(ValueError, match="emotion label 'grumpy'"):
        builder().example(utt(0, emotion="grumpy"))


def test_voice_selection_rule():
    utts = ([utt(i, "ds:m_us_big", seconds=10) for i in range(3)] + [utt(10 + i, "ds:m_us_small", seconds=2) for i in range(3)]
            + [utt(20 + i, "ds:m_us_third", seconds=1) for i in range(3)]
            + [utt(30 + i, "ds:f_uk", accent="uk", gender="female") for i in range(2)]
            + [utt(40, "ds:f_us_single", gender="female")])  # one utterance: not eligible
    sel = choose_builtin_voices(utts)
    assert sel.assignments == {"male_us_01": "ds:m_us_big", "male_us_02": "ds:m_us_small", "female_uk_01": "ds:f_uk"}
    assert set(sel.unassigned) == {"male_uk_01", "male_uk_02", "female_us_01", "female_us_02", "female_uk_02"}
    assert len(sel.candidates) == 8
    sel2 = choose_builtin_voices(utts, overrides={"male_us_01": "ds:m_us_third"})
    assert sel2.assignments["male_us_01"] == "ds:m_us_third" and sel2.assignments["male_us_02"] == "ds:m_us_big"
    with pytest.raises(ValueError, match="gender/accent"):
        choose_builtin_voices([utt(0, "ds:x"), utt(1, "ds:x", accent="uk")])
    assert VoiceSelection.from_dict(sel.to_dict()).assignments == sel.assignments


def test_catalog_voice_plan_decides_when_its_speakers_are_present():
    plan = {"male_uk_01": "vctk:p232", "female_us_01": "expresso:ex02"}
    utts = ([utt(i, "vctk:p232", accent="uk", seconds=1) for i in range(3)]
            + [utt(10 + i, "ds:big_uk_m", accent="uk", seconds=50) for i in range(3)]  # more speech, not planned
            + [utt(20 + i, "expresso:ex02", gender="female", seconds=2) for i in range(3)])
    sel = choose_builtin_voices(utts, plan=plan)
    assert sel.assignments["male_uk_01"] == "vctk:p232" and sel.assignments["male_uk_02"] == "ds:big_uk_m"
    assert sel.assignments["female_us_01"] == "expresso:ex02"
    assert any(c["why"].startswith("catalog voice plan") for c in sel.candidates)
    # a user override wins, and a planned speaker is never given to two voices
    sel = choose_builtin_voices(utts, plan=plan, overrides={"male_uk_02": "vctk:p232"})
    assert sel.assignments["male_uk_02"] == "vctk:p232" and sel.assignments["male_uk_01"] == "ds:big_uk_m"
    # planned speakers absent from the corpus (the tiny corpus): the rule decides
    assert choose_builtin_voices(utts[3:6], plan=plan).assignments == {"male_uk_01": "ds:big_uk_m"}
    with pytest.raises(ValueError, match="the data says male/us"):  # facts and data disagree: loud
        choose_builtin_voices([utt(i, "vctk:p232") for i in range(3)], plan=plan)


def test_builtin_speaker_gets_its_voice_token():
    u = utt(0, "ds:star")
    b = builder(VoiceSelection({"female_uk_02": "ds:star"}), reference_prob=1.0)
    exs, rep = b.build([u, utt(1, "ds:star")], seed=0, epoch=0)
    assert rep.with_voice == 2 and rep.with_reference == 0
    ids = exs[0].input_ids.tolist()
    i = ids.index(LAYOUT.speaker_start_id)
    assert ids[i:i + 3] == [LAYOUT.speaker_start_id, LAYOUT.voice_id("female_uk_02"), LAYOUT.speaker_end_id]
    assert b.prompt(u) == ids[: ids.index(LAYOUT.audio_start_id) + 1]


def test_reference_comes_from_a_different_utterance_of_the_same_speaker():
    utts = [utt(i, f"ds:s{i % 2}", frames=20) for i in range(6)]
    b = builder(reference_prob=1.0, reference_max_frames=8, reference_min_frames=4)
    exs, rep = b.build(utts, seed=3, epoch=0)
    assert rep.with_reference == 6 and rep.references_cropped == 6 and rep.references_joined == 0
    assert all(4 <= n <= 8 for n in rep.reference_frames) and len(rep.reference_frames) == 6
    for u, ex in zip(utts, exs):
        ids = ex.input_ids.tolist()
        ref = ids[ids.index(LAYOUT.speaker_start_id) + 1: ids.index(LAYOUT.speaker_end_id)]
        assert 4 * FRAME_SIZE <= len(ref) <= 8 * FRAME_SIZE and len(ref) % FRAME_SIZE == 0
        src = [o for o in utts if o.speaker == u.speaker and o.utterance_id != u.utterance_id]
        tok = [LAYOUT.codes_to_tokens(o.codes).tolist() for o in src]
        assert any(any(t[k:k + len(ref)] == ref for k in range(0, len(t), FRAME_SIZE)) for t in tok)
        assert ref not in [LAYOUT.codes_to_tokens(u.codes).tolist()[k:k + len(ref)] for k in range(0, 140, 7)]
        assert (ex.labels[: ids.index(LAYOUT.audio_start_id) + 1] == IGNORE_INDEX).all()  # no loss on the reference
    # deterministic per (seed, epoch), different across epochs
    again, _ = b.build(utts, seed=3, epoch=0)
    assert all((a.input_ids == c.input_ids).all() for a, c in zip(exs, again))
    other, _ = b.build(utts, seed=3, epoch=1)
    assert any(len(a) != len(c) or (a.input_ids != c.input_ids).any() for a, c in zip(exs, other))


def test_reference_lengths_span_the_range_and_join_short_clips():
    """Clips of 1 s: references of 3-20 s (the default bounds) are joined from several clips of the
    speaker, never from the target itself, and their lengths spread over the whole range."""
    from helpers.tokens import REFERENCE_MAX_FRAMES, REFERENCE_MIN_FRAMES

    utts = [utt(i, f"ds:s{i % 3}", frames=12) for i in range(90)]  # 30 clips of 12 frames per speaker
    b = builder(max_seq_len=4096, reference_prob=1.0)
    assert (b.reference_min_frames, b.reference_max_frames) == (REFERENCE_MIN_FRAMES, REFERENCE_MAX_FRAMES) == (36, 234)
    exs, rep = b.build(utts, seed=0, epoch=0)
    n = np.array(rep.reference_frames)
    assert rep.with_reference == 90 and rep.references_joined == 90
    assert n.min() >= 36 and n.max() <= 234 and n.min() < 80 and n.max() > 190  # spread over the range
    hist = {(h["from_s"], h["to_s"]): h["references"] for h in rep.reference_histogram()}
    assert sum(hist.values()) == 90 and hist[(15.0, 20.0)] > 0 and hist[(3.0, 5.0)] > 0 and hist[(0.0, 3.0)] == 0
    for u, ex in zip(utts, exs):
        ids = ex.input_ids.tolist()
        ref = ids[ids.index(LAYOUT.speaker_start_id) + 1: ids.index(LAYOUT.speaker_end_id)]
        own = LAYOUT.codes_to_tokens(u.codes).tolist()
        frames = {tuple(ref[k:k + FRAME_SIZE]) for k in range(0, len(ref), FRAME_SIZE)}
        assert not frames & {tuple(own[k:k + FRAME_SIZE]) for k in range(0, len(own), FRAME_SIZE)}


def test_references_come_only_from_the_pool():
    """Training passes its training split as the pool: a held-out clip never becomes a reference."""
    utts = [utt(i, "ds:a", frames=40) for i in range(6)]
    train, held = utts[:4], utts[4:]
    exs, rep = builder(reference_prob=1.0, reference_min_frames=4, reference_max_frames=30).build(
        train, seed=1, epoch=0, pool=train)
    assert rep.with_reference == 4
    held_frames = {tuple(LAYOUT.codes_to_tokens(h.codes).tolist()[k:k + FRAME_SIZE]) for h in held
                   for k in range(0, 40 * FRAME_SIZE, FRAME_SIZE)}
    for ex in exs:
        ids = ex.input_ids.tolist()
        ref = ids[ids.index(LAYOUT.speaker_start_id) + 1: ids.index(LAYOUT.speaker_end_id)]
        assert not {tuple(ref[k:k + FRAME_SIZE]) for k in range(0, len(ref), FRAME_SIZE)} & held_frames


def test_speaker_without_other_clip_gets_no_reference_and_is_counted():
    exs, rep = builder(reference_prob=1.0).build([utt(0, "ds:lonely", frames=20)], seed=0, epoch=0)
    assert rep.no_reference_candidate == 1 and exs[0].conditioning == "none"


def test_never_cut_mid_frame():
    long_u = utt(0, "ds:a", frames=40)   # 280 audio tokens
    short = [utt(i, "ds:a", frames=20) for i in range(1, 3)]
    b = builder(max_seq_len=200, reference_prob=1.0, reference_max_frames=30, reference_min_frames=2)
    exs, rep = b.build([long_u] + short, seed=0, epoch=0)
    assert rep.too_long == ["ds:0"] and rep.examples == 2
    for ex in exs:
        assert len(ex) <= 200
        ids = ex.input_ids.tolist()
        ref = ids[ids.index(LAYOUT.speaker_start_id) + 1: ids.index(LAYOUT.speaker_end_id)]
        assert len(ref) % FRAME_SIZE == 0 and len(ref) > 0
        audio = ids[ids.index(LAYOUT.audio_start_id) + 1: -1]
        assert audio == LAYOUT.codes_to_tokens(short[0].codes if ex.utterance_id == "ds:1" else short[1].codes).tolist()
    assert rep.references_cropped == 2
    # no room for the minimum reference -> left out, counted
    exs, rep = builder(max_seq_len=170, reference_prob=1.0, reference_min_frames=4).build(short, seed=0, epoch=0)
    assert rep.references_left_out_for_length == 2 and all(e.conditioning == "none" for e in exs)


def test_crop_and_split():
    u = utt(0, frames=10)
    c = crop_codes(u.codes, 2, 3)
    assert [len(x) for x in c] == [3, 6, 12] and (c[2] == u.codes[2][8:20]).all()
    with pytest.raises(ValueError):
        crop_codes(u.codes, 8, 3)
    utts = [utt(i) for i in range(50)]
    tr, ev = split_eval(utts, 0.1, seed=1)
    assert len(ev) == 5 and len(tr) == 45 and not {u.utterance_id for u in ev} & {u.utterance_id for u in tr}
    assert split_eval(utts, 0.1, seed=1)[1] == ev


def test_a_missing_planned_voice_speaker_is_said_and_stops_04_unless_accepted(tmp_path):
    """No silent fallback: the message names the voice, its planned speaker and the one it would get;
    voices_for_stage stops unless the run accepts it, and voices.json records what was accepted."""
    import json

    from helpers.plan.coverage import planned_voices
    from helpers.profiles import RunPaths, get_profile
    from helpers.train.recipe import VOICES_FILE, voices_for_stage
    from helpers.train.sequences import VoiceFallbackError, fallback_message

    plan = {"male_uk_01": "vctk:p232"}
    utts = ([utt(i, "vctk:p999", accent="uk", seconds=30) for i in range(3)]  # the pilot read another speaker
            + [utt(10 + i, "vctk:p232", accent="uk", seconds=5) for i in range(1)])  # too little of the planned one
    sel = choose_builtin_voices(utts, plan=plan)
    assert sel.fallbacks["male_uk_01"] == {"planned": "vctk:p232", "planned_minutes": 0.08, "speaker": "vctk:p999"}
    msg = fallback_message(sel)
    assert "male_uk_01: planned vctk:p232 has 0.1 min in the data -> falls back to vctk:p999" in msg
    row = next(r for r in sel.table() if r["voice"] == "male_uk_01")
    assert row["speaker"] == "vctk:p999" and row["why"].startswith("FALLBACK (planned vctk:p232 missing)")
    assert fallback_message(choose_builtin_voices(utts[:3], plan={"male_uk_01": "vctk:p999"})) is None

    paths = RunPaths(tmp_path / "run")
    with pytest.raises(VoiceFallbackError, match="male_uk_01: planned vctk:p232") as e:
        voices_for_stage(paths, 2, utts)  # the catalog plan: every voice's planned speaker is missing here
    assert "accept_voice_fallback = True" in str(e.value) and "Nothing was trained" in str(e.value)
    assert not (paths.stage(2) / VOICES_FILE).exists()
    got = voices_for_stage(paths, 2, utts, accept_fallback=True)
    saved = json.loads((paths.stage(2) / VOICES_FILE).read_text())
    assert saved["fallbacks"]["male_uk_01"]["speaker"] == got.assignments["male_uk_01"] == "vctk:p999"
    again = voices_for_stage(paths, 3, utts)  # later stages keep stage 2's accepted choice
    assert again.assignments == got.assignments and again.table()[0]["planned"] is not None
    assert not get_profile("pilot").accept_voice_fallback and get_profile("tiny").accept_voice_fallback

    # 01 says it before any GPU time: from the manifest's kept clips
    import pandas as pd

    manifest = pd.DataFrame([{"utterance_id": u.utterance_id, "speaker": u.speaker, "gender": u.gender,
                              "accent": u.accent, "dataset": "vctk", "duration_s": u.duration_s, "status": "kept"}
                             for u in utts])
    rows, message = planned_voices(manifest)
    assert len(rows) == 8 and "male_uk_01: planned vctk:p232" in message and "vctk:p999" in message
