"""Dataset catalog: complete entries, explicit label maps, the row adapter, loading, phase mixes, sampler."""
import dataclasses
import io
import math
import random
import warnings

import numpy as np
import pytest
from hub_layout import write_libritts_card
import soundfile as sf
import torch

from helpers.data import catalog as C
from helpers.data import speaker_facts
from helpers.data.catalog import CATALOG, PHASES, CatalogError, Exclude, Fixed, Rejected, to_common
from helpers.data.sampling import Item, ShortfallWarning, sample_hours, sample_phase
from helpers.tokens import EMOTIONS

torch.set_num_threads(1)

# The label sets the corpora carry (from their documentation / dataset cards), written out
# independently of the catalog so that a missing mapping is caught.
RAVDESS_LABELS = {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
EMOVDB_LABELS = {"neutral", "amused", "angry", "sleepy", "disgust"}
EXPRESSO_READ = {"confused", "default", "enunciated", "happy", "laughing", "narration", "sad", "whisper", "emphasis"}
EXPRESSO_CONV = {"angry", "animal", "animaldir", "awe", "bored", "calm", "child", "childdir", "confused", "default",
                 "desire", "disgusted", "enunciated", "fast", "fearful", "happy", "laughing", "narration",
                 "non_verbal", "projected", "sad", "sarcastic", "singing", "sleepy", "sympathetic", "whisper"}
LABEL_SETS = {"ravdess": RAVDESS_LABELS, "emov_db": EMOVDB_LABELS, "expresso": EXPRESSO_READ | EXPRESSO_CONV}
SEED_NINE = {"libritts_r", "vctk", "hifi_tts", "expresso", "ravdess", "emov_db", "gigaspeech", "mls_en", "ljspeech"}


def wav_bytes(seconds=0.1, sr=16000):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), dtype=np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


AUDIO = {"bytes": b"RIFF....", "path": None}


# ----------------------------------------------------------------------------- catalog entries
def test_catalog_covers_the_seed_table_and_assets():
    assert set(CATALOG) == SEED_NINE | {"assets"}
    assert set(C.SEED_DATASETS) == SEED_NINE
    assert len(CATALOG) == 10


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_field_filled(name):
    spec = CATALOG[name]
    optional_none = {"config", "revision"}  # None means "default config" / "main": a real value
    optional_empty = {"alternatives", "gender_map", "accent_map", "emotion_map"}  # checked by rule below
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if f.name in optional_none:
            assert v is None or (isinstance(v, str) and v), f"{name}.{f.name}"
        elif f.name in optional_empty:
            continue
        else:
            assert v not in (None, "", (), {}), f"{name}.{f.name} is empty"
    assert "train" in spec.splits
    assert spec.verified.split(":")[0] in {"dataset card 2026", "dataset card/viewer 2026", "dataset viewer 2026",
                                           "inferred", "measured"}, spec.verified
    assert spec.licence and spec.native_sr in {16000, 22050, 24000, 44100, 48000}
    # hub ids must be repositories that load without a script (no known script-based ids)
    assert spec.hub_id not in {"CSTR-Edinburgh/vctk", "narad/ravdess", "keithito/lj_speech", "vctk"}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_fixed_or_mapped_labels_are_known(name):
    spec = CATALOG[name]
    if isinstance(spec.emotion, Fixed):
        assert spec.emotion.value in EMOTIONS
    else:
        assert spec.emotion_map, name
    for label, target in spec.emotion_map.items():
        assert target in EMOTIONS or (isinstance(target, Exclude) and target.reason.strip()), (name, label)
    assert set(spec.accent_map.values()) <= set(speaker_facts.ACCENTS)
    assert set(spec.gender_map.values()) <= set(speaker_facts.GENDERS)
    if isinstance(spec.accent, Fixed):
        assert spec.accent.value in speaker_facts.ACCENTS
    if isinstance(spec.gender, Fixed):
        assert spec.gender.value in speaker_facts.GENDERS


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_every_emotion_label_of_the_emotion_corpora_is_mapped(name):
    spec = CATALOG[name]
    missing = LABEL_SETS[name] - set(spec.emotion_map)
    assert not missing, f"{name}: unmapped labels {missing}"
    for label in LABEL_SETS[name]:
        t = spec.emotion_map[label]
        assert t in EMOTIONS or isinstance(t, Exclude)
    kept = {spec.emotion_map[l] for l in LABEL_SETS[name] if isinstance(spec.emotion_map[l], str)}
    assert len(kept - {"neutral"}) >= 4, kept  # the corpus contributes real emotion tokens


def test_emotion_maps_are_the_expected_ones():
    assert CATALOG["ravdess"].emotion_map["disgust"] == "disgusted"
    assert CATALOG["ravdess"].emotion_map["fearful"] == "fearful"
    assert CATALOG["emov_db"].emotion_map["amused"] == "amused"
    assert CATALOG["expresso"].emotion_map["default"] == "neutral"
    assert isinstance(CATALOG["expresso"].emotion_map["singing"], Exclude)
    # every emotion token that names a corpus label is reachable from some corpus
    reachable = {t for s in CATALOG.values() for t in s.emotion_map.values() if isinstance(t, str)}
    assert {"fearful", "disgusted", "surprised", "amused", "sleepy", "whisper", "calm"} <= reachable


def test_spec_validation_rejects_unmapped_targets():
    spec = CATALOG["ravdess"]
    with pytest.raises(CatalogError, match="not in helpers.tokens.EMOTIONS"):
        dataclasses.replace(spec, emotion_map={**spec.emotion_map, "bogus": "ecstatic"})
    with pytest.raises(CatalogError, match="needs a reason"):
        dataclasses.replace(spec, emotion_map={**spec.emotion_map, "bogus": Exclude(" ")})
    with pytest.raises(CatalogError, match="accent"):
        dataclasses.replace(CATALOG["vctk"], accent_map={"english": "british"})
    with pytest.raises(CatalogError, match="unknown rule"):
        dataclasses.replace(spec, speaker=C.Derived("nope", ("file",)))


def test_vctk_accents_keep_scottish_irish_welsh_apart_from_uk():
    m = CATALOG["vctk"].accent_map
    assert m["english"] == "uk"  # the seed's British voices are RP / southern English
    assert (m["scottish"], m["welsh"], m["irish"], m["northernirish"]) == ("scottish", "welsh", "irish", "irish")
    assert m["american"] == "us"
    assert m["canadian"] == m["indian"] == m["australian"] == "other"


def test_band_limited_and_table():
    assert CATALOG["gigaspeech"].band_limited and CATALOG["mls_en"].band_limited
    assert not CATALOG["libritts_r"].band_limited
    rows = C.catalog_table()
    assert [r["name"] for r in rows] == list(CATALOG)


# ----------------------------------------------------------------------------- to_common
def common(name, row):
    out = to_common(CATALOG[name], row)
    assert isinstance(out, dict), out
    assert set(out) == set(C.COMMON_COLUMNS)
    assert out["emotion"] in EMOTIONS and out["accent"] in speaker_facts.ACCENTS and out["gender"] in speaker_facts.GENDERS
    assert out["speaker"].startswith(name + ":") and out["utterance_id"].startswith(name + ":")
    assert out["audio"] is row["audio"]  # passed through untouched
    return out


def test_libritts_r_row():
    out = common("libritts_r", {"audio": AUDIO, "text_normalized": "Hello  there.", "text_original": "x",
                                "speaker_id": "1034", "chapter_id": "121119", "path": "p", "id": "1034_121119_000001_000001"})
    assert out == {**out, "text": "Hello there.", "speaker": "libritts_r:1034", "accent": "us", "gender": "male",
                   "emotion": "neutral", "utterance_id": "libritts_r:1034_121119_000001_000001", "dataset": "libritts_r"}
    # the reader's sex from LibriSpeech's SPEAKERS.TXT (same LibriVox ids); an unknown reader fails loudly
    assert len(CATALOG["libritts_r"].gender_map) == 2484 and CATALOG["libritts_r"].gender_map["19"] == "female"
    with pytest.raises(CatalogError, match="gender label '99999999'"):
        to_common(CATALOG["libritts_r"], {"audio": AUDIO, "text_normalized": "Hi.", "speaker_id": "99999999",
                                          "id": "99999999_1_1"})


def vctk_row(mic="mic1", accent="English", text="Please call Stella."):
    return {"speaker_id": "p225", "audio": AUDIO, "file": f"wav48_silence_trimmed/p225/p225_001_{mic}.flac",
            "text": text, "text_id": "001", "age": "23", "gender": "F", "accent": accent,
            "region": "Southern England", "comment": ""}


def test_vctk_rows_mic_filter_and_accent():
    out = common("vctk", vctk_row())
    assert (out["speaker"], out["gender"], out["accent"], out["utterance_id"]) == (
        "vctk:p225", "female", "uk", "vctk:p225_001_mic1")
    rej = to_common(CATALOG["vctk"], vctk_row("mic2"))
    assert isinstance(rej, Rejected) and rej.reason == "vctk_mic2_duplicate" and "p225_001_mic2" in rej.detail
    assert common("vctk", vctk_row(accent="American"))["accent"] == "us"
    assert common("vctk", vctk_row(accent="Indian"))["accent"] == "other"
    empty = to_common(CATALOG["vctk"], vctk_row(text=""))
    assert isinstance(empty, Rejected) and empty.reason == "empty_text"
    with pytest.raises(CatalogError, match="accent label 'Martian'"):
        to_common(CATALOG["vctk"], vctk_row(accent="Martian"))


def test_hifi_tts_row():
    out = common("hifi_tts", {"speaker": "92", "file": "audio/92_clean/10425/fat_00_ptw_0001.flac", "duration": 3.2,
                              "text": "a", "text_no_preprocessing": "b", "text_normalized": "Some text.", "audio": AUDIO})
    assert out["utterance_id"] == "hifi_tts:fat_00_ptw_0001" and out["speaker"] == "hifi_tts:92"
    assert out["gender"] == "female"  # Cori Samuel, the HiFi-TTS paper's speaker table
    row = {"speaker": "6097", "file": "a/6097_x.flac", "duration": 1.0, "text": "a", "text_no_preprocessing": "b",
           "text_normalized": "Text.", "audio": AUDIO}
    assert common("hifi_tts", row)["gender"] == "male"
    with pytest.raises(CatalogError, match="gender label '1234'"):
        to_common(CATALOG["hifi_tts"], {**row, "speaker": "1234"})  # a reader the table does not know


def expresso_row(style):
    return {"audio": AUDIO, "text": "Why would you do that?", "speaker_id": "ex01", "style": style,
            "id": f"ex01_{style}_00001"}


def test_expresso_styles():
    assert common("expresso", expresso_row("default"))["emotion"] == "neutral"
    assert common("expresso", expresso_row("default"))["gender"] == "male"  # ex01
    assert {s: CATALOG["expresso"].gender_map[s] for s in ("ex01", "ex02", "ex03", "ex04")} == {
        "ex01": "male", "ex02": "female", "ex03": "male", "ex04": "female"}
    assert common("expresso", expresso_row("Whisper"))["emotion"] == "whisper"  # case-insensitive lookup
    rej = to_common(CATALOG["expresso"], expresso_row("singing"))
    assert isinstance(rej, Rejected) and rej.reason == "excluded_emotion" and "singing" in rej.detail
    with pytest.raises(CatalogError, match="emotion label 'yodel'"):
        to_common(CATALOG["expresso"], expresso_row("yodel"))


def test_ravdess_row_from_file_name():
    row = {"file": "Actor_12/03-01-06-02-01-01-12.wav", "audio": AUDIO, "gender": "female",
           "transcription": "kids are talking by the door", "emotion": "fearful", "intensity": "strong"}
    out = common("ravdess", row)
    assert (out["speaker"], out["gender"], out["emotion"], out["text"]) == (
        "ravdess:actor_12", "female", "fearful", "Kids are talking by the door.")
    out = common("ravdess", {**row, "file": "03-01-07-01-02-02-07.wav"})
    assert (out["speaker"], out["gender"], out["emotion"], out["text"]) == (
        "ravdess:actor_07", "male", "disgusted", "Dogs are sitting by the door.")
    with pytest.raises(CatalogError, match="MM-VV-EE"):
        to_common(CATALOG["ravdess"], {**row, "file": "angry_take.wav"})
    with pytest.raises(CatalogError, match="song"):
        to_common(CATALOG["ravdess"], {**row, "file": "03-02-06-02-01-01-12.wav"})


def test_emov_db_row():
    row = {"audio": {"bytes": b"abc", "path": "amused_1-15_0001.wav"}, "emotion": "Amused", "emotion_id": 1,
           "EMOV_Labels": 1, "transcript": "Author of the danger trail.", "speaker_name": "Bea", "speaker_ID": 0}
    out = common("emov_db", row)
    assert (out["emotion"], out["gender"], out["accent"]) == ("amused", "female", "other")
    assert out["utterance_id"] == "emov_db:bea_amused_1-15_0001"
    no_path = common("emov_db", {**row, "audio": {"bytes": b"abc", "path": None}, "speaker_name": "Sam",
                                 "emotion": "disgust"})
    assert no_path["utterance_id"].startswith("emov_db:sam_sha1_") and no_path["gender"] == "male"
    assert no_path["emotion"] == "disgusted"


def giga_row(text, speaker="N/A"):
    return {"segment_id": "POD0000000001_S0000008", "speaker": speaker, "text": text, "audio": AUDIO,
            "begin_time": 1.0, "end_time": 3.0, "audio_id": "POD0000000001", "title": "t", "url": "u",
            "source": 1, "category": 2}


def test_gigaspeech_text_tags_and_garbage():
    out = common("gigaspeech", giga_row("AS I SAID <COMMA> IT'S FINE <PERIOD> ISN'T IT <QUESTIONMARK>"))
    assert out["text"] == "As I said, it's fine. Isn't it?"
    assert out["speaker"] == "gigaspeech:rec_POD0000000001"
    assert common("gigaspeech", giga_row("HELLO <PERIOD>", speaker="S1"))["speaker"] == "gigaspeech:S1"
    for tag in ("<SIL>", "<MUSIC>", "<NOISE>", "<OTHER>"):
        rej = to_common(CATALOG["gigaspeech"], giga_row(tag))
        assert isinstance(rej, Rejected) and rej.reason == "gigaspeech_garbage_segment"
    with pytest.raises(CatalogError, match="unhandled tags"):
        to_common(CATALOG["gigaspeech"], giga_row("HELLO <SEMICOLON> THERE"))


def test_mls_and_ljspeech_rows():
    out = common("mls_en", {"audio": AUDIO, "original_path": "x", "begin_time": 12.34, "end_time": 20.0,
                            "transcript": "and so it was", "audio_duration": 7.66, "speaker_id": "10214",
                            "book_id": "10108"})
    assert out["utterance_id"] == "mls_en:10214_10108_000012340" and out["accent"] == "other"
    lj = common("ljspeech", {"id": "LJ001-0001", "audio": AUDIO, "file": "LJ001-0001.wav", "text": "Printing, in 1",
                             "normalized_text": "Printing, in one"})
    assert (lj["speaker"], lj["gender"], lj["text"], lj["utterance_id"]) == (
        "ljspeech:lj", "female", "Printing, in one", "ljspeech:LJ001-0001")


def test_assets_row_is_already_common():
    row = {"audio": AUDIO, "text": "Hi.", "speaker": "assets:en-us_m1", "accent": "us", "gender": "male",
           "emotion": "happy", "utterance_id": "assets:0001", "dataset": "assets"}
    out = common("assets", row)
    assert out["speaker"] == "assets:en-us_m1" and out["utterance_id"] == "assets:0001"  # no double prefix
    assert out["emotion"] == "happy"


def test_bad_rows_fail_loudly():
    with pytest.raises(CatalogError, match="no column 'text_normalized'"):
        to_common(CATALOG["libritts_r"], {"audio": AUDIO, "speaker_id": "1", "id": "x"})
    with pytest.raises(CatalogError, match="Audio\\(decode=False\\)"):
        to_common(CATALOG["libritts_r"], {"audio": np.zeros(3), "text_normalized": "a", "speaker_id": "1", "id": "x"})


# ----------------------------------------------------------------------------- open_dataset
def write_hub_like_repo(root):
    """A local folder laid out like mythicinfinity/libritts_r: README configs + parquet per split."""
    from datasets import Audio, Dataset, Features, Value

    feats = Features({"audio": Audio(sampling_rate=24000), "text_normalized": Value("string"),
                      "speaker_id": Value("string"), "id": Value("string")})
    (root / "data").mkdir()
    for split, spk in (("train.clean.100", "19"), ("train.clean.360", "84")):
        rows = {"audio": [{"bytes": wav_bytes(0.1, 24000), "path": f"{spk}_{i}.wav"} for i in range(2)],
                "text_normalized": [f"Sentence {i}." for i in range(2)], "speaker_id": [spk, spk],
                "id": [f"{spk}_0_{i}" for i in range(2)]}
        Dataset.from_dict(rows, features=feats).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    write_libritts_card(root)


@pytest.mark.parametrize("streaming", [True, False])
def test_open_dataset_reads_a_hub_layout_and_concatenates_splits(tmp_path, streaming):
    repo = tmp_path / "repo"
    repo.mkdir()
    write_hub_like_repo(repo)
    spec = dataclasses.replace(CATALOG["libritts_r"], hub_id=str(repo))
    ds = C.open_dataset(spec, "train_clean", streaming=streaming, cache_dir=str(tmp_path / "cache"))
    rows = [to_common(spec, r) for r in ds]
    assert [r["speaker"] for r in rows] == ["libritts_r:19"] * 2 + ["libritts_r:84"] * 2
    audio = rows[0]["audio"]
    assert isinstance(audio["bytes"], bytes)
    data, sr = sf.read(io.BytesIO(audio["bytes"]))
    assert sr == 24000 and data.shape == (2400,)
    with pytest.raises(CatalogError, match="no split role 'nope'"):
        C.open_dataset(spec, "nope")


# ----------------------------------------------------------------------------- phases
def test_phases_match_the_seed():
    assert {n: [(e.dataset, e.hours) for e in p.entries if not e.replay] for n, p in PHASES.items()} == {
        1: [("libritts_r", 460), ("gigaspeech", 300), ("hifi_tts", 292)],
        2: [("libritts_r", 100), ("vctk", 44), ("expresso", 40)],
        3: [("expresso", 40), ("ravdess", 7), ("emov_db", 7)],
    }
    # replay: 20 min of each built-in voice's speaker where the seed's mix lacks its corpus
    replay = {n: {e.dataset: (round(e.hours * 60), e.speakers) for e in p.entries if e.replay}
              for n, p in PHASES.items()}
    uk = ("vctk:p228", "vctk:p229", "vctk:p232", "vctk:p258")
    us = ("expresso:ex01", "expresso:ex02", "expresso:ex03", "expresso:ex04")
    assert replay == {1: {"expresso": (80, us), "vctk": (80, uk)}, 2: {}, 3: {"vctk": (80, uk)}}
    assert all(not e.replay for e in C.build_phases(0)[1].entries)
    with pytest.raises(ValueError, match="once per phase"):
        C.Phase(9, 2, "x", 1, (C.PhaseEntry("vctk", "train", 1, True), C.PhaseEntry("vctk", "train", 1, True)))
    assert [p.stage for p in PHASES.values()] == [2, 3, 4]
    assert PHASES[2].entries[0].split_role == "train_clean"
    for p in PHASES.values():
        assert abs(p.hours - p.seed_total_hours) <= 5
        for e in p.entries:
            CATALOG[e.dataset].split_names(e.split_role)  # every role exists
    short = C.expected_shortfalls()
    assert any("expresso" in s for s in short) and any("ravdess" in s for s in short)


# ----------------------------------------------------------------------------- sampler
def skewed_pool(seed=0):
    """12 speakers; speaker k has 10 * (k + 1) clips (skew 12:1) of 2..12 s."""
    rng = random.Random(seed)
    return [Item(f"s{k:02d}_{i:04d}", f"s{k:02d}", rng.uniform(2, 12)) for k in range(12) for i in range(10 * (k + 1))]


def test_sampler_is_deterministic_and_order_independent():
    pool = skewed_pool()
    a = sample_hours(pool, 0.5, seed=7)
    b = sample_hours(list(reversed(pool)), 0.5, seed=7)
    assert a == b
    c = sample_hours(pool, 0.5, seed=8)
    assert c.utterance_ids != a.utterance_ids
    assert sample_hours(pool, 0.5, 7, balance_speakers=False) == sample_hours(pool[::-1], 0.5, 7, False)
    assert (sample_hours(pool, 0.5, 7, False).utterance_ids != sample_hours(pool, 0.5, 8, False).utterance_ids)


@pytest.mark.parametrize("balance", [True, False])
def test_target_reached_within_one_clip(balance):
    pool = skewed_pool()
    dur = {it.utterance_id: it.duration_s for it in pool}
    for target in (0.05, 0.3, 1.0, 1.45):  # pool ≈ 1.5 h
        sel = sample_hours(pool, target, seed=3, balance_speakers=balance)
        total_s = sum(dur[u] for u in sel.utterance_ids)
        assert math.isclose(sel.achieved_hours, total_s / 3600)
        assert total_s >= target * 3600
        assert total_s - dur[sel.utterance_ids[-1]] < target * 3600  # the last clip crossed the target
        assert len(set(sel.utterance_ids)) == len(sel.utterance_ids)
        assert not sel.short


def test_balance_across_skewed_speakers():
    pool = skewed_pool()
    smallest = min(sum(it.duration_s for it in pool if it.speaker == s) for s in {it.speaker for it in pool})
    target = 0.9 * 12 * smallest / 3600  # every speaker could give this share
    bal = sample_hours(pool, target, seed=1, balance_speakers=True)
    hours = list(bal.per_speaker_hours.values())
    assert len(hours) == 12
    assert max(hours) - min(hours) <= 12 / 3600 + 1e-9  # within one (max-length) clip
    assert max(hours) / min(hours) < 1.2
    unbal = sample_hours(pool, target, seed=1, balance_speakers=False)
    u = list(unbal.per_speaker_hours.values())
    assert max(u) / min(u) > 3  # the uniform draw follows the 12:1 skew
    # asked for more than small speakers have: they give all they have, the rest share the remainder
    big = sample_hours(pool, 0.8 * sum(it.duration_s for it in pool) / 3600, seed=1)
    assert math.isclose(big.per_speaker_hours["s00"],
                        sum(it.duration_s for it in pool if it.speaker == "s00") / 3600)


def test_shortfall_reported_not_silent():
    pool = skewed_pool()[:30]
    pool_h = sum(it.duration_s for it in pool) / 3600
    with pytest.warns(ShortfallWarning, match="SHORTFALL"):
        sel = sample_hours(pool, pool_h + 1.0, seed=0)
    assert sel.short and math.isclose(sel.shortfall_hours, 1.0) and len(sel.utterance_ids) == 30
    assert math.isclose(sel.achieved_hours, pool_h)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not sample_hours(pool, pool_h / 2, seed=0).short
        assert sample_hours(pool, 0, seed=0).utterance_ids == ()


def test_sampler_input_validation():
    with pytest.raises(ValueError, match="twice"):
        sample_hours([Item("a", "s", 1.0), Item("a", "s", 2.0)], 0.1, 0)
    with pytest.raises(ValueError, match="positive"):
        sample_hours([{"utterance_id": "a", "speaker": "s", "duration_s": 0}], 0.1, 0)
    with pytest.raises(ValueError, match="lacks"):
        sample_hours([{"utterance_id": "a", "speaker": "s"}], 0.1, 0)
    with pytest.raises(ValueError, match="target_hours"):
        sample_hours([Item("a", "s", 1.0)], -1, 0)


def test_sample_phase_scaled_with_shortfall_and_dataframe_pool():
    import pandas as pd

    rng = random.Random(0)

    def pool(name, n_spk, n, lo=2, hi=8):
        return [{"utterance_id": f"{name}:{k}_{i}", "speaker": f"{name}:{k}", "duration_s": rng.uniform(lo, hi)}
                for k in range(n_spk) for i in range(n)]

    pools = {"expresso": pd.DataFrame(pool("expresso", 4, 60)),  # ≈ 20 min
             "ravdess": pool("ravdess", 24, 1),  # ≈ 2 min < 7 min asked
             "emov_db": pool("emov_db", 4, 40)}
    with pytest.warns(ShortfallWarning):
        ps = sample_phase(3, pools, seed=5, scale=1 / 60)  # minutes instead of hours
    assert ps.stage == 4 and set(ps.selections) == {"expresso", "ravdess", "emov_db", "vctk"}
    assert math.isclose(ps.selections["expresso"].target_hours, 40 / 60)
    # 20 min < 40 min, 2 min < 7 min; the VCTK voice replay has no pool here: it draws nothing, reported
    assert set(ps.shortfalls) == {"expresso", "ravdess", "vctk"} and not ps.selections["vctk"].utterance_ids
    assert ps.selections["emov_db"].achieved_hours >= 7 / 60 and not ps.selections["emov_db"].short
    with pytest.warns(ShortfallWarning):
        again = sample_phase(3, pools, seed=5, scale=1 / 60)
    assert again.utterance_ids() == ps.utterance_ids()
    assert [r["dataset"] for r in ps.table()] == ["expresso", "ravdess", "emov_db", "vctk"]
    # a replay entry draws only its listed speakers (the built-in voices' own clips)
    vctk = [{"utterance_id": f"vctk:{s}_{i}", "speaker": f"vctk:{s}", "duration_s": 3.0}
            for s in ("p225", "p228", "p229", "p232", "p258", "p300") for i in range(40)]
    with pytest.warns(ShortfallWarning):
        ps3 = sample_phase(3, {**pools, "vctk": vctk}, seed=5, scale=1 / 60)
    drawn = {u.rsplit("_", 1)[0] for u in ps3.selections["vctk"].utterance_ids}
    assert drawn == {"vctk:p228", "vctk:p229", "vctk:p232", "vctk:p258"}
    with pytest.raises(KeyError, match="missing: \\['emov_db'\\]"):
        sample_phase(3, {"expresso": [], "ravdess": []}, seed=0)
    with pytest.raises(ValueError, match="phase"):
        sample_phase(4, pools, seed=0)
