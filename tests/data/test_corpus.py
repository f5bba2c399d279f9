"""The bundled espeak-ng corpus (assets/corpus), its loader and its generator script."""
from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.data.corpus import (CORPUS_SAMPLE_RATE, DATASET_COLUMNS, METADATA_COLUMNS, METADATA_FILE,
    CorpusError, decode_example_audio, load_local_corpus, read_metadata)
from helpers.profiles import ASSETS_CORPUS, ASSETS_CORPUS_DIR, REPO_ROOT
from helpers.tokens import EMOTIONS, VOICES

torch.set_num_threads(1)

SCRIPT = REPO_ROOT / "scripts" / "make_assets.py"
MAX_CORPUS_BYTES = 6_500_000  # keep the repository small


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(ASSETS_CORPUS_DIR / METADATA_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def audio(rows) -> dict[str, tuple[np.ndarray, int]]:
    """utterance_id -> (float32 (n,), sr), read straight with soundfile."""
    out = {}
    for r in rows:
        wav, sr = sf.read(ASSETS_CORPUS_DIR / r["file"], dtype="float32")
        out[r["utterance_id"]] = (wav, sr)
    return out


def _script_module(monkeypatch):
    """scripts/make_assets.py as a module (registered so its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location("make_assets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_assets", mod)
    spec.loader.exec_module(mod)
    return mod


def _need_espeak():
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is missing in CI: apt-get install -y espeak-ng")
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")


def _median_f0(wav: np.ndarray, sr: int) -> float:
    """Median F0 in Hz over the loud frames (librosa's YIN; espeak speech is clean)."""
    import librosa

    f0 = librosa.yin(wav, fmin=60, fmax=400, sr=sr, frame_length=2048)
    rms = librosa.feature.rms(y=wav, frame_length=2048)[0][: len(f0)]
    return float(np.median(f0[rms > 0.3 * rms.max()]))


# ----------------------------------------------------------------------------- spec
def test_metadata_meets_the_corpus_spec(rows):
    assert list(rows[0]) == list(METADATA_COLUMNS)
    assert len(rows) >= 60
    assert len({r["utterance_id"] for r in rows}) == len(rows)
    speakers = {r["speaker"] for r in rows}
    voices = speakers & set(VOICES)
    assert len(voices) >= 6
    assert {(r["accent"], r["gender"]) for r in rows if r["speaker"] in voices} == {
        ("us", "male"), ("us", "female"), ("uk", "male"), ("uk", "female")}
    # speakers that are not built-in voices (and cannot become one: no us/uk accent) train cloning
    clone = speakers - voices
    assert len(clone) >= 2 and not {r["accent"] for r in rows if r["speaker"] in clone} & {"us", "uk"}
    emotions = Counter(r["emotion"] for r in rows)
    assert set(emotions) <= set(EMOTIONS)
    assert {"neutral", "happy", "sad", "angry", "excited", "whisper", "calm"} <= set(emotions)

    by_speaker = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"]].append(r)
    for spk, rs in by_speaker.items():
        assert len(rs) >= 3, spk
        # one accent and gender per speaker, and the built-in voice name agrees with them
        assert len({(r["accent"], r["gender"]) for r in rs}) == 1, spk
        if spk in clone:
            assert len(rs) >= 3 and {r["emotion"] for r in rs} == {"neutral"}, spk
            continue
        gender, accent = spk.split("_")[:2]
        assert (rs[0]["gender"], rs[0]["accent"]) == (gender, accent), spk
        emos = Counter(r["emotion"] for r in rs)
        # >= 2 neutral takes: one can be the cloning reference for another
        assert emos["neutral"] >= 2 and len(emos) >= 4, (spk, emos)
    # texts are spelled out (no digits) and mostly distinct
    assert not any(ch.isdigit() for r in rows for ch in r["text"])
    assert len({r["text"] for r in rows}) >= len(rows) - len(by_speaker)


def test_audio_files_are_24khz_mono_pcm16_flac_of_1_to_6_seconds(rows, audio):
    for r in rows:
        info = sf.info(ASSETS_CORPUS_DIR / r["file"])
        assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_16", 1), r["file"]
        wav, sr = audio[r["utterance_id"]]
        assert sr == CORPUS_SAMPLE_RATE == 24000
        assert wav.ndim == 1 and 1.0 <= len(wav) / sr <= 6.0, (r["file"], len(wav) / sr)
        peak = float(np.abs(wav).max())
        assert 0.05 < peak < 1.0, (r["file"], peak)  # speech, and not clipped


def test_cloning_speakers_clips_are_long_enough_to_be_references(rows, audio):
    """Every clip of a non-voice speaker holds the shortest reference training draws (3 s)."""
    from helpers.tokens import REFERENCE_MIN_S

    clone = [r for r in rows if r["speaker"] not in VOICES]
    assert clone
    for r in clone:
        wav, sr = audio[r["utterance_id"]]
        assert len(wav) / sr > REFERENCE_MIN_S + 0.05, (r["file"], len(wav) / sr)


def test_corpus_folder_is_small():
    total = sum(p.stat().st_size for p in ASSETS_CORPUS_DIR.rglob("*") if p.is_file())
    assert total <= MAX_CORPUS_BYTES, f"assets/corpus is {total / 1e6:.2f} MB"


def test_voices_are_really_distinct(rows, audio):
    """The sentence every speaker says: all takes differ, and female voices are pitched higher."""
    shared = Counter(r["text"] for r in rows).most_common(1)[0][0]
    takes = {r["speaker"]: (r["gender"], audio[r["utterance_id"]]) for r in rows
             if r["text"] == shared and r["emotion"] == "neutral"}
    assert len(takes) == len({r["speaker"] for r in rows if r["speaker"] in VOICES})
    for (a, (_, (wa, _))), (b, (_, (wb, _))) in itertools.combinations(takes.items(), 2):
        assert wa.shape != wb.shape or not np.array_equal(wa, wb), f"{a} and {b} are the same voice"
    f0 = {spk: _median_f0(wav, sr) for spk, (_, (wav, sr)) in takes.items()}
    male = [f for spk, f in f0.items() if takes[spk][0] == "male"]
    female = [f for spk, f in f0.items() if takes[spk][0] == "female"]
    assert min(female) > 1.4 * max(male), f0
    assert 70 < min(male) and max(female) < 300, f0


def test_emotions_change_pitch_and_energy_as_the_seed_table_says(rows, audio):
    """Seed §12: happy +15 % pitch, sad -10 %; whisper -40 % energy and no voicing."""
    by = {(r["speaker"], r["emotion"]): audio[r["utterance_id"]] for r in rows}
    neutral = {(r["speaker"]): audio[r["utterance_id"]] for r in rows if r["emotion"] == "neutral"}
    for spk in sorted({r["speaker"] for r in rows if r["speaker"] in VOICES}):
        happy, sad = _median_f0(*by[spk, "happy"]), _median_f0(*by[spk, "sad"])
        assert happy > 1.15 * sad, (spk, happy, sad)
        rms = lambda w: float(np.sqrt(np.mean(w[0] ** 2)))  # noqa: E731
        assert rms(by[spk, "whisper"]) < 0.7 * rms(neutral[spk]), spk


# ----------------------------------------------------------------------------- loader
def test_load_local_corpus_gives_the_hub_aligned_schema(rows, audio):
    import datasets

    ds = load_local_corpus()
    assert isinstance(ds, datasets.Dataset) and str(ds.split) == "train"
    assert ds.column_names == list(DATASET_COLUMNS)
    assert len(ds) == len(rows)
    feat = ds.features["audio"]
    assert isinstance(feat, datasets.Audio) and feat.decode is False
    assert set(ds["dataset"]) == {ASSETS_CORPUS}
    for i in (0, len(ds) // 2, len(ds) - 1):
        ex = ds[i]
        assert ex["audio"]["bytes"] is None
        path = Path(ex["audio"]["path"])
        assert path.is_absolute() and path == (ASSETS_CORPUS_DIR / rows[i]["file"]).resolve()
        assert {k: ex[k] for k in METADATA_COLUMNS if k != "file"} == \
            {k: rows[i][k] for k in METADATA_COLUMNS if k != "file"}
        wav, sr = decode_example_audio(ex)
        assert sr == CORPUS_SAMPLE_RATE and wav.dtype == np.float32 and wav.ndim == 1
        np.testing.assert_array_equal(wav, audio[rows[i]["utterance_id"]][0])


def test_decode_example_audio_handles_hub_style_bytes_rows(rows, audio):
    r = rows[5]
    data = (ASSETS_CORPUS_DIR / r["file"]).read_bytes()
    wav, sr = decode_example_audio({"audio": {"bytes": data, "path": "original_name.flac"}})
    assert sr == CORPUS_SAMPLE_RATE
    np.testing.assert_array_equal(wav, audio[r["utterance_id"]][0])
    with pytest.raises(KeyError, match="'audio' column"):
        decode_example_audio({"text": "no audio here"})


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match=r"splits \['train', 'rejects'\].*'test'"):
        load_local_corpus(split="test")


# ----------------------------------------------------------------------------- bad metadata
def _small_copy(tmp_path: Path, rows: list[dict], n: int = 3) -> Path:
    """A corpus folder with the first ``n`` rows and their audio."""
    folder = tmp_path / "corpus"
    for r in rows[:n]:
        (folder / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS_CORPUS_DIR / r["file"], folder / r["file"])
    _write(folder, [dict(r) for r in rows[:n]])
    return folder


def _write(folder: Path, rs: list[dict], columns=None):
    columns = columns or list(rs[0])
    with open(folder / METADATA_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rs)


def test_a_small_valid_copy_loads(tmp_path, rows):
    ds = load_local_corpus(_small_copy(tmp_path, rows))
    assert len(ds) == 3 and ds[0]["utterance_id"] == rows[0]["utterance_id"]


@pytest.mark.parametrize("case, pattern", [
    ("unknown_emotion", r"line 3 \(utterance_id '.*'\): unknown emotion 'grumpy'"),
    ("missing_file", r"line 4 .*audio file 'nowhere/gone\.flac' not found"),
    ("bad_accent", r"line 2 .*unknown accent 'martian'"),
    ("bad_gender", r"line 2 .*unknown gender 'robot'"),
    ("empty_text", r"line 3 .*empty value\(s\) in column\(s\) \['text'\]"),
    ("duplicate_id", r"line 3 .*duplicate utterance_id, first used on line 2"),
    ("escaping_path", r"line 2 .*must be a path relative to"),
    ("missing_column", r"missing columns \['emotion'\]"),
    ("extra_column", r"unexpected columns \['duration'\]"),
    ("no_rows", r"no rows after the header"),
])
def test_bad_metadata_errors_name_the_row_and_the_problem(tmp_path, rows, case, pattern):
    folder = _small_copy(tmp_path, rows)
    rs = [dict(r) for r in rows[:3]]
    columns = list(METADATA_COLUMNS)
    if case == "unknown_emotion":
        rs[1]["emotion"] = "grumpy"
    elif case == "missing_file":
        rs[2]["file"] = "nowhere/gone.flac"
    elif case == "bad_accent":
        rs[0]["accent"] = "martian"
    elif case == "bad_gender":
        rs[0]["gender"] = "robot"
    elif case == "empty_text":
        rs[1]["text"] = "  "
    elif case == "duplicate_id":
        rs[1]["utterance_id"] = rs[0]["utterance_id"]
    elif case == "escaping_path":
        rs[0]["file"] = "../corpus/" + rs[0]["file"]
    elif case == "missing_column":
        columns.remove("emotion")
    elif case == "extra_column":
        columns.append("duration")
        for r in rs:
            r["duration"] = "1.0"
    elif case == "no_rows":
        rs = []
    if rs:
        _write(folder, rs, columns)
    else:
        (folder / METADATA_FILE).write_text(",".join(columns) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=pattern):
        load_local_corpus(folder)


def test_missing_metadata_points_at_the_generator(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_assets.py"):
        read_metadata(tmp_path)


# ----------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_matches_the_committed_corpus(tmp_path, rows):
    _need_espeak()
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--limit", "2", "--quiet"],
                       check=True, capture_output=True, text=True, timeout=120)
        outs.append(out)
    files_a = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 4  # 2 clips + metadata.csv + generator.json
    for rel in files_a:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel

    new_rows = read_metadata(outs[0])
    assert [r["utterance_id"] for r in new_rows] == [r["utterance_id"] for r in rows[:2]]
    # Byte equality with the committed files is only fair with the same tools.
    committed = json.loads((ASSETS_CORPUS_DIR / "generator.json").read_text())
    fresh = json.loads((outs[0] / "generator.json").read_text())
    tools = ("espeak_ng", "soxr", "libsndfile")
    if all(committed[t] == fresh[t] for t in tools):
        for r in rows[:2]:
            assert (outs[0] / r["file"]).read_bytes() == (ASSETS_CORPUS_DIR / r["file"]).read_bytes()
        for uid in fresh["utterances"]:
            assert fresh["utterances"][uid] == committed["utterances"][uid]


def test_generator_refuses_a_voice_variant_espeak_ignores(monkeypatch, tmp_path):
    """espeak-ng 1.51 ignores "+f4" after "en-gb": the script must notice, not ship a twin."""
    _need_espeak()
    mod = _script_module(monkeypatch)
    twin = mod.Speaker("female_uk_02", "uk", "female", "en-gb+f4", "en+whisperf", 50, 175)
    monkeypatch.setattr(mod, "SPEAKERS", mod.SPEAKERS[:-1] + (twin,))
    with pytest.raises(RuntimeError, match=r"'en-gb\+f4' and 'en-gb' produce identical audio"):
        mod.check_voices_distinct(mod.find_espeak(), tmp_path)


def test_rejects_split_loads_and_every_clip_is_rejected_for_its_reason():
    """assets/corpus_rejects (scripts/make_rejects.py): each clip fails preprocessing for the
    reason its id names, so the tiny profile's rejection report is never empty."""
    from helpers.data import clips
    from helpers.data.catalog import get_spec, to_common

    ds = load_local_corpus(split="rejects")
    assert len(ds) == 4
    spec = get_spec("assets")
    reasons = {}
    for raw in ds:
        rec, kept = clips.preprocess_row(to_common(spec, raw))
        assert kept is None
        reasons[raw["utterance_id"]] = rec["reason"]
    assert reasons == {"reject_noisy": "low_snr", "reject_too_short": "too_short",
                       "reject_clipped": "clipped", "reject_silent": "silent"}


def test_rejects_are_regenerated_byte_for_byte(tmp_path):
    import importlib.util

    from helpers.profiles import ASSETS_REJECTS_DIR, REPO_ROOT

    spec = importlib.util.spec_from_file_location("make_rejects", REPO_ROOT / "scripts" / "make_rejects.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(tmp_path)
    committed = sorted(p.name for p in ASSETS_REJECTS_DIR.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (ASSETS_REJECTS_DIR / name).read_bytes(), name
