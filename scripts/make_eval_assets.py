#!/usr/bin/env python
"""Write the fixed evaluation test set: ``assets/eval/testset.json`` and the two
held-out espeak-ng reference clips in ``assets/eval/references/``.

The JSON is the contract (``helpers.evaluate.report.load_testset`` reads it; its tests
check coverage and held-out-ness); this script only documents how it was made and
remakes it deterministically. Rerunning it changes nothing in git unless the
sentences or grid rules below change — and then the test set's version must be
bumped, because results are comparable only on the same items.

Grid (``colab``, 104 items):
  * emotion items: every built-in voice x every non-neutral seed emotion (§12), on
    that emotion's two sentences alternately by voice (48);
  * neutral items: every built-in voice x 4 neutral sentences, rotating so that
    all 28 neutral sentences are read (32);
  * cloning items: 8 LibriTTS-R test.clean speakers (held out: the catalog trains on
    train.* only) x 3 neutral sentences (24); each reference clip is resolved once per
    run by a fixed rule (``helpers.evaluate.report.resolve_references``).
Grid (``tiny``, 16 items): female_us_01 reads one sentence per seed emotion (7),
the other 7 voices one neutral sentence each (7), and 2 cloning items whose
references are espeak-ng voices the bundled corpus does not use (2).

Protocol fixtures (``assets/eval/protocols/``): two zero-shot items per standard protocol
(``helpers.evaluate.protocols``) in the protocols' own file formats, so the tiny profile runs
the same parsers and normalisers offline: a Seed-TTS-eval ``en/meta.lst`` with
``prompt-wavs/`` and ground-truth ``wavs/`` (16 kHz WAV), and an F5-TTS LibriSpeech-PC
cross-sentence ``.lst`` with a LibriSpeech-style ``<speaker>/<chapter>/<utt>.flac`` tree
(16 kHz FLAC). Speakers: the two held-out espeak-ng reference voices; every clip is a new
sentence written for this project.

Usage::

    python scripts/make_eval_assets.py            # rewrite assets/eval
    python scripts/make_eval_assets.py --json-only
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from helpers.audio import PCM16_SCALE, read_audio, resample, to_mono  # noqa: E402
from helpers.evaluate.report import TESTSET_FILE, TESTSET_VERSION  # noqa: E402
from helpers.profiles import EVAL_ASSETS_DIR  # noqa: E402
from helpers.tokens import SEED_EMOTIONS, VOICES  # noqa: E402

REFERENCE_SR = 24000  # like the corpus: SNAC's rate

# Written for this project; none appears in assets/corpus (tests check). Numbers, dates,
# times, money, percentages and an abbreviation exercise the WER text normalizer.
NEUTRAL = [
    "The museum opens at 9:30 on weekdays and closes at 5 in the evening.",
    "Our flight to Denver leaves on March 14th, 2025, from gate 22.",
    "The recipe needs 250 grams of flour, two eggs and a pinch of salt.",
    "Please call the front desk at extension 4417 if you need anything.",
    "The bridge was finished in 1932 and is still used by thousands of drivers each day.",
    "A new phone costs about $799, which is more than I wanted to spend.",
    "The meeting has been moved from Tuesday to Thursday afternoon.",
    "She planted tomatoes, beans and sunflowers along the garden fence.",
    "About 65% of the students said they preferred the morning classes.",
    "The river rose almost 3 feet after the storm last week.",
    "He has read every book in the series at least twice.",
    "The train from Boston was delayed by 45 minutes this morning.",
    "Remember to water the plants while I am away on holiday.",
    "The company hired 1,200 new workers in the first quarter.",
    "Dr. Patel will see you in room 12 at 4 pm.",
    "The children built a sandcastle that was taller than their father.",
    "Turn off the lights and lock the back door before you leave.",
    "The package arrived on the 2nd of June, a week later than promised.",
    "Our team scored 3 goals in the last 10 minutes of the match.",
    "The old clock in the hallway stopped working years ago.",
    "A cup of coffee and a slice of toast is all I need in the morning.",
    "The temperature will drop to 5 degrees tonight, so bring a warm coat.",
    "They painted the fence white and planted roses beside the gate.",
    "The concert on Saturday starts at 8 pm and ends around eleven.",
    "The library has more than 40,000 books and a quiet reading room.",
    "My grandmother was born in 1948 in a small village by the sea.",
    "Write your name at the top of the page and answer every question.",
    "The bus stops here every 15 minutes until midnight.",
]
EMOTIONAL = {
    "happy": ["I just got the job, and I start next Monday!",
              "This is the best birthday present anyone has ever given me."],
    "sad": ["We had to say goodbye to our old cat this morning.",
            "I waited all evening, but nobody came to the party."],
    "angry": ["You promised me you would fix it, and you did nothing!",
              "How many times do I have to ask you to stop?"],
    "excited": ["The results are in, and we actually won the whole thing!",
                "Pack your bags, we are leaving for the beach tomorrow!"],
    "whisper": ["Don't make a sound, the guards are right outside.",
                "I will tell you the secret, but you must promise to keep it."],
    "calm": ["Close your eyes and let every breath become a little slower.",
             "There is no hurry, we have the whole afternoon ahead of us."],
}
# LibriTTS-R test.clean speakers (LibriSpeech test-clean ids). The catalog trains on the
# train.* splits only, whose speakers are disjoint from test.clean by construction of
# LibriSpeech; evaluation still checks every id against the run's token shards.
LIBRITTS_TEST_SPEAKERS = ["1089", "121", "1284", "1580", "2300", "237", "4077", "8463"]
REFERENCE_MIN_S, REFERENCE_MAX_S = 6.0, 15.0  # seed §12: 10-15 s is "good" to "very good"

# Held-out espeak-ng voices for the tiny profile: variants the corpus never uses
# (it uses en-us, m3, m7, f2, f3, f4; see scripts/make_assets.py).
ESPEAK_REFERENCES = {
    "espeak_m2": dict(voice="en-us+m2", pitch=40, speed=160, amplitude=75, gender="male",
                      text="Every morning I walk to the station along the river, and on clear days "
                           "you can see the hills beyond the town."),
    "espeak_f5": dict(voice="en-us+f5", pitch=56, speed=165, amplitude=75, gender="female",
                      text="When the rain finally stopped, we opened the windows, and the whole "
                           "house smelled of wet grass and fresh bread."),
}


# Protocol fixtures: per held-out voice, a prompt sentence and a target sentence (the
# target's recording is the item's ground truth). Fake LibriSpeech ids: speaker 900xx.
PROTOCOL_SR = 16000
PROTOCOL_FIXTURES = {
    "espeak_m2": dict(speaker="90002", chapter="1",
                      prompt="The library keeps its oldest maps in a cool room downstairs.",
                      target="Nobody expected the little boat to cross the bay before sunset."),
    "espeak_f5": dict(speaker="90005", chapter="1",
                      prompt="My sister bakes bread every Sunday for the whole street.",
                      target="The children counted the stars until they fell asleep on the porch."),
}


def write_protocol_fixtures(out: Path) -> None:
    """assets/eval/protocols: the Seed-TTS-eval and LibriSpeech-PC fixture lists and audio."""
    seed_dir, ls_dir = out / "protocols" / "seedtts_testset" / "en", out / "protocols" / "librispeech_pc"
    meta, lst = [], []
    for name, fx in PROTOCOL_FIXTURES.items():
        voice = ESPEAK_REFERENCES[name]
        putt, gutt = f"{fx['speaker']}-{fx['chapter']}-0000", f"{fx['speaker']}-{fx['chapter']}-0001"
        clips = {}
        for utt, text in ((putt, fx["prompt"]), (gutt, fx["target"])):
            spec = {**voice, "text": text}
            wav = synthesize(utt, spec, ls_dir / fx["speaker"] / fx["chapter"] / f"{utt}.flac", sr=PROTOCOL_SR)
            clips[utt] = wav
        synthesize_wav(seed_dir / "prompt-wavs" / f"{putt}.wav", clips[putt])
        synthesize_wav(seed_dir / "wavs" / f"{gutt}.wav", clips[gutt])
        meta.append(f"{gutt}|{fx['prompt']}|prompt-wavs/{putt}.wav|{fx['target']}")
        lst.append("\t".join([putt, f"{len(clips[putt]) / PROTOCOL_SR:.3f}", fx["prompt"],
                              gutt, f"{len(clips[gutt]) / PROTOCOL_SR:.3f}", fx["target"]]))
    (seed_dir / "meta.lst").write_text("\n".join(meta) + "\n", encoding="utf-8")
    (ls_dir / "librispeech_pc_test_clean_cross_sentence.lst").write_text("\n".join(lst) + "\n", encoding="utf-8")
    print(f"{seed_dir / 'meta.lst'}, {ls_dir}: {len(meta)} items each")


def synthesize_wav(path: Path, q: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, q.astype(np.int16), PROTOCOL_SR, format="WAV", subtype="PCM_16")


# Stability set (helpers.evaluate.stability): long-form paragraphs estimated over 60 s at 14
# characters per second, read through the engine's chunked path, and a two-speaker dialogue.
# Written for this project.
LONG_FORM = {
    "lf0": ("The old lighthouse on the northern cape was switched off in 1987, but the village never quite "
            "stopped looking after it. Every spring a group of volunteers climbs the narrow stairs with buckets, "
            "brushes and a radio, and spends a week scraping rust from the railings and painting the walls a "
            "bright, stubborn white. Nobody pays them, and nobody asks them to come. When visitors ask why they "
            "bother, the answers vary. Some say the tower is the first thing their grandparents saw when the "
            "fishing boats came home in bad weather. Others simply like the view: on a clear day you can count "
            "eleven islands and, if you are patient, a few seals resting on the rocks below. Last year the council "
            "finally agreed to fund a small museum in the keeper's cottage, with old logbooks, a brass lamp and a "
            "map of every wreck along the coast since 1850. The volunteers were pleased, of course, but they "
            "still arrived in April with their buckets, as they always have."),
    "lf1": ("Learning to bake bread at home takes less equipment than most people expect. You need flour, water, "
            "salt and yeast, a large bowl, and a little patience. Start by mixing 500 grams of flour with ten "
            "grams of salt and seven grams of dried yeast, then add about 350 millilitres of lukewarm water and "
            "stir until no dry flour remains. The dough will feel sticky, and that is fine. Cover the bowl and "
            "leave it somewhere warm for an hour, until it has roughly doubled in size. Then tip it onto a floured "
            "table, fold it over itself a few times, and shape it into a round loaf. Let it rest again for forty "
            "minutes while the oven heats to 230 degrees. Bake it for about half an hour, until the crust is deep "
            "brown and the bottom sounds hollow when you tap it. The hardest part comes last: waiting for the loaf "
            "to cool before you cut the first slice, because bread keeps cooking inside for a while after it "
            "leaves the oven."),
}
DIALOGUE = {
    "voices": {"host": "female_us_01", "guest": "male_uk_01"},
    "script": [
        ["host", "Welcome back to the show. Today we're talking about city gardens."],
        ["guest", "Thanks for having me. It's a subject I could discuss for hours."],
        ["host", "So where should a beginner with a small balcony start?"],
        ["guest", "With herbs, honestly. Mint, basil and chives forgive almost every mistake."],
        ["host", "And what about people who only have a north-facing window?"],
        ["guest", "Try lettuce or spinach. They are happy with much less sunlight than tomatoes."],
    ],
}
STABILITY_PROFILES = {"colab": {"long_form": ["lf0", "lf1"], "dialogue_turns": 6},
                      "tiny": {"long_form": ["lf0"], "dialogue_turns": 4}}


def stability_set() -> dict:
    return {"description": "OptimumLLM Audio stability set (helpers.evaluate.stability); made by "
                           "scripts/make_eval_assets.py",
            "long_form": [{"id": k, "text": v} for k, v in LONG_FORM.items()],
            "dialogue": DIALOGUE, "profiles": STABILITY_PROFILES}


def sentences() -> dict[str, str]:
    out = {f"n{i:02d}": t for i, t in enumerate(NEUTRAL)}
    for emo, texts in EMOTIONAL.items():
        out.update({f"{emo}{j}": t for j, t in enumerate(texts)})
    return out


def voice_accent(voice: str) -> str:
    return "uk" if "_uk_" in voice else "us"


def voice_item(voice: str, emotion: str, sid: str) -> dict:
    return {"id": f"voice-{voice}-{emotion}-{sid}", "kind": "voice", "sentence": sid, "voice": voice,
            "emotion": emotion, "reference": None, "accent": voice_accent(voice)}


def clone_item(ref: str, sid: str, accent: str) -> dict:
    return {"id": f"clone-{ref}-{sid}", "kind": "clone", "sentence": sid, "voice": None,
            "emotion": "neutral", "reference": ref, "accent": accent}


def colab_items() -> list[dict]:
    items = []
    emotions = [e for e in SEED_EMOTIONS if e != "neutral"]
    for v, voice in enumerate(VOICES):
        for emo in emotions:
            items.append(voice_item(voice, emo, f"{emo}{v % 2}"))
        for j in range(4):
            items.append(voice_item(voice, "neutral", f"n{(v * 4 + j) % len(NEUTRAL):02d}"))
    for r, spk in enumerate(LIBRITTS_TEST_SPEAKERS):
        for j in range(3):
            items.append(clone_item(f"libritts_r_{spk}", f"n{(r * 3 + j + 1) % len(NEUTRAL):02d}", "us"))
    return items


def tiny_items() -> list[dict]:
    items = [voice_item("female_us_01", "neutral", "n00")]
    items += [voice_item("female_us_01", emo, f"{emo}0") for emo in SEED_EMOTIONS if emo != "neutral"]
    others = [v for v in VOICES if v != "female_us_01"]
    items += [voice_item(v, "neutral", f"n{i + 1:02d}") for i, v in enumerate(others)]
    items += [clone_item("espeak_m2", "n08", "us"), clone_item("espeak_f5", "n10", "us")]
    return items


def references() -> dict[str, dict]:
    refs = {}
    for name, r in ESPEAK_REFERENCES.items():
        refs[name] = {"source": "file", "speaker": f"eval_refs:{name}", "path": f"references/{name}.flac",
                      "text": r["text"], "accent": "us", "gender": r["gender"],
                      "generator": {k: r[k] for k in ("voice", "pitch", "speed", "amplitude")}}
    for spk in LIBRITTS_TEST_SPEAKERS:
        refs[f"libritts_r_{spk}"] = {"source": "catalog", "speaker": f"libritts_r:{spk}", "dataset": "libritts_r",
                                     "split_role": "test", "min_s": REFERENCE_MIN_S, "max_s": REFERENCE_MAX_S}
    return refs


def build() -> dict:
    return {
        "version": TESTSET_VERSION,
        "description": "OptimumLLM Audio fixed evaluation set; made by scripts/make_eval_assets.py. "
                       "Results are comparable only between runs on the same version.",
        "sentences": sentences(),
        "references": references(),
        "profiles": {"colab": colab_items(), "tiny": tiny_items()},
    }


def synthesize(name: str, spec: dict, out: Path, sr: int = REFERENCE_SR) -> np.ndarray:
    """espeak-ng ``spec`` -> 16-bit FLAC at ``sr`` in ``out``; returns the int16 samples."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng not found; install it with: apt-get update && apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "x.wav"
        cmd = [exe, "-v", spec["voice"], "-p", str(spec["pitch"]), "-s", str(spec["speed"]),
               "-a", str(spec["amplitude"]), "-w", str(wav_path), "--", spec["text"]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or proc.stderr.strip() or not wav_path.is_file():
            raise RuntimeError(f"espeak-ng failed for {' '.join(cmd)!r}: {proc.stderr.strip()}")
        wav, espeak_sr = read_audio(wav_path, name=f"espeak-ng output for {name}")
    wav = resample(to_mono(wav), espeak_sr, sr)
    q = np.round(wav * PCM16_SCALE)
    if np.abs(q).max() >= PCM16_SCALE:
        raise RuntimeError(f"reference {name} would clip; lower its amplitude")
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, q.astype(np.int16), sr, format="FLAC", subtype="PCM_16")
    print(f"{out}: {len(wav) / sr:.2f} s")
    return q


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=EVAL_ASSETS_DIR)
    ap.add_argument("--json-only", action="store_true", help="rewrite testset.json only")
    args = ap.parse_args(argv)
    data = build()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / TESTSET_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.out / TESTSET_FILE}: " + ", ".join(f"{p} {len(v)} items" for p, v in data["profiles"].items()))
    (args.out / "stability.json").write_text(json.dumps(stability_set(), indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    print(f"{args.out / 'stability.json'}: {len(LONG_FORM)} paragraphs, {len(DIALOGUE['script'])} dialogue turns")
    if not args.json_only:
        for name, spec in ESPEAK_REFERENCES.items():
            synthesize(name, spec, args.out / data["references"][name]["path"])
        write_protocol_fixtures(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
