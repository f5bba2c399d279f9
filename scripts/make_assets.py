#!/usr/bin/env python
"""Generate the bundled speech corpus in ``assets/corpus/`` with espeak-ng.

The ``tiny`` profile (tests, CI, the README's local demo) trains and evaluates on
real speech without network access; this script makes that speech. It is
deterministic: the same espeak-ng, soxr and libsndfile versions give the same
bytes, so rerunning it changes nothing in git.

Output (``--out``, default ``assets/corpus``):

* ``<speaker>/<utterance_id>.flac``: 24 kHz mono 16-bit FLAC (lossless; about
  half the size of WAV), resampled from espeak-ng's native 22,050 Hz with soxr;
  1-6 s each; espeak-ng's own level (no loudness normalisation: preprocessing
  normalises to -23 LUFS later, and the raw level exercises that step);
* ``metadata.csv``: file, text, speaker, accent, gender, emotion, utterance_id;
* ``generator.json``: tool versions and every espeak-ng setting used, so a test
  can tell whether a byte-exact comparison with the committed files is fair.

Eight speakers, one per built-in voice name of seed §8 (``male_us_01`` …
``female_uk_02``), each with 3 neutral utterances and one each of happy, sad,
angry, excited, whisper and calm (72 utterances). Emotions follow the seed's §12
table (pitch / speed / energy offsets) through espeak-ng's -p / -s / -a; whisper
also switches to espeak-ng's whisper voice variant. Two more speakers are *not*
built-in voices (a Scottish man and a Caribbean-English woman, accents that no
built-in voice has), with 4 neutral utterances of 3-6 s each (80 utterances in
all): their examples carry cloning references in training, so the tiny chain and
the recipe tests exercise zero-shot cloning.

Requires espeak-ng (Debian/Ubuntu: ``apt-get install -y espeak-ng``).

Usage::

    python scripts/make_assets.py                   # regenerate assets/corpus
    python scripts/make_assets.py --out /tmp/c --limit 2   # first two utterances only
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from helpers.audio import PCM16_SCALE, RESAMPLE_QUALITY, read_audio, resample, to_mono  # noqa: E402
from helpers.data.corpus import CORPUS_SAMPLE_RATE, METADATA_COLUMNS, METADATA_FILE  # noqa: E402
from helpers.profiles import ASSETS_CORPUS_DIR  # noqa: E402
from helpers.tokens import EMOTIONS, SEED_EMOTION_PROSODY, VOICES  # noqa: E402

APT_INSTALL = "apt-get update && apt-get install -y espeak-ng"
MIN_SECONDS, MAX_SECONDS = 1.0, 6.0  # the corpus spec: short utterances only
GENERATOR_FILE = "generator.json"

# espeak-ng's -p is a 0..99 scale, not Hz. Measured with espeak-ng 1.51 (en-us and
# en-us+f2, median F0 over a sentence): each +10 on -p multiplies F0 by ~1.096,
# the same for male and female voices. So a relative pitch change r maps to
# Δp = 10·ln(1+r)/ln(1.096). -s is words per minute and -a amplitude are linear.
PITCH_RATIO_PER_10 = 1.096
# espeak-ng's default amplitude (100) peaks near 0.8 full scale; the seed's loudest
# emotions add 30% energy, which would clip. 75 keeps every take below full scale
# (checked per file below) and sits near -23 dBFS RMS.
BASE_AMPLITUDE = 75


@dataclass(frozen=True)
class Speaker:
    name: str  # one of helpers.tokens.VOICES, or a CLONE_SPEAKERS name (not a built-in voice)
    accent: str  # "us" or "uk" (built-in voices); "scottish" / "other" (cloning speakers)
    gender: str  # "male" or "female"
    voice: str  # espeak-ng voice + variant for every emotion except whisper
    whisper_voice: str  # the same language with espeak-ng's whisper variant
    pitch: int  # espeak-ng -p base (0..99, default 50): sets the speaker apart
    speed: int  # espeak-ng -s base in words per minute (default 175)


# Voice strings verified distinct (different bytes for the same text, see
# check_voices_distinct). Note: "en-gb+VARIANT" silently ignores the variant in
# espeak-ng 1.51 (same output as plain "en-gb"), while "en+VARIANT" (en = British)
# and "en-gb-x-rp+VARIANT" honour it; that is why the British voices are spelled so.
# Median F0 at -p 50: male variants ~102-107 Hz, f2 ~197 Hz, f3 ~214 Hz, f4 ~180 Hz.
SPEAKERS: tuple[Speaker, ...] = (
    # seed §8 descriptions in the comments; base pitch/speed nudge toward them
    Speaker("male_us_01", "us", "male", "en-us", "en-us+whisper", 44, 165),  # warm, authoritative
    Speaker("male_us_02", "us", "male", "en-us+m3", "en-us+whisper", 58, 185),  # young, energetic
    Speaker("female_us_01", "us", "female", "en-us+f2", "en-us+whisperf", 50, 175),  # professional, clear
    Speaker("female_us_02", "us", "female", "en-us+f4", "en-us+whisperf", 46, 168),  # warm, conversational
    Speaker("male_uk_01", "uk", "male", "en-gb-x-rp", "en-gb-x-rp+whisper", 50, 170),  # RP, formal
    Speaker("male_uk_02", "uk", "male", "en+m7", "en+whisper", 46, 178),  # deeper, natural
    Speaker("female_uk_01", "uk", "female", "en-gb-x-rp+f2", "en-gb-x-rp+whisperf", 52, 172),  # RP, professional
    Speaker("female_uk_02", "uk", "female", "en+f3", "en+whisperf", 47, 170),  # natural, warm
)

# Speakers that are NOT built-in voices (accents no built-in voice has): training gives their
# examples a cloning reference cut from their other utterances. Their sentences are long enough
# (>= 3 s) for the shortest reference training draws (helpers.tokens.REFERENCE_MIN_S).
CLONE_SPEAKERS: tuple[Speaker, ...] = (
    Speaker("clone_scottish_m", "scottish", "male", "en-gb-scotland", "en-gb-scotland+whisper", 48, 160),
    Speaker("clone_caribbean_f", "other", "female", "en-029+f2", "en-029+whisperf", 52, 160),
)
CLONE_TEXTS: tuple[str, ...] = (
    "The ferry to the islands leaves from the harbour every morning at half past eight.",
    "We walked along the cliffs for hours and watched the seabirds circling below us.",
    "My brother keeps a small boat in the village and takes it out when the weather is calm.",
    "The market in the square sells fresh bread, bright flowers and baskets of ripe fruit.",
    "She painted the kitchen door a cheerful shade of yellow to match the morning light.",
    "A gentle breeze came in from the sea and carried the smell of salt across the town.",
    "The children built a sandcastle with four towers and a long wall around the moat.",
    "After supper we sat on the porch and listened to the rain drumming on the roof.",
)
CLONE_MIN_SECONDS = 3.1  # every clip can be a whole reference on its own

# Seed §12 "Emotion Control at Inference": relative (pitch, speed, energy) changes.
# Breathiness has no espeak-ng flag; only whisper gets it, through the whisper variant.
EMOTION_OFFSETS = SEED_EMOTION_PROSODY

# Spoken by every speaker (neutral, first utterance): same text, different voices,
# so tests and plots can compare voices directly.
SHARED_TEXT = "The old lighthouse still shines across the bay every night."

# Written for this project. Numbers are spelled out (the tiny pipeline has no text
# normaliser to rely on). Two neutral sentences per speaker, one per emotion.
NEUTRAL_TEXTS = (
    "Turn left at the second traffic light and keep going.",
    "The library closes at nine on weekdays.",
    "Our train leaves from platform four in twenty minutes.",
    "She keeps her bicycle in the shed behind the house.",
    "The meeting has been moved to Thursday afternoon.",
    "Add two cups of flour and a pinch of salt.",
    "The museum has more than three hundred paintings on display.",
    "He wrote the whole report in a single evening.",
    "Rain is expected later tonight across the northern hills.",
    "The package should arrive by the end of the week.",
    "My grandmother grew up in a small village by the sea.",
    "Please remember to water the plants on the balcony.",
    "The bridge was built nearly one hundred years ago.",
    "Most of the guests arrived shortly after seven.",
    "This recipe serves four people with a little left over.",
    "The river runs quietly past the old stone mill.",
)
EMOTION_TEXTS: dict[str, tuple[str, ...]] = {
    "happy": (
        "What a wonderful surprise to see you here today!",
        "We finally finished painting the kitchen, and it looks lovely.",
        "Thank you so much, this is exactly what I wanted.",
        "The sun is out and the whole weekend is ours.",
        "Congratulations on your new job, you really earned it.",
        "I just heard the good news, and I could not be happier.",
        "Our little garden gave us twelve tomatoes this morning.",
        "It feels so good to be home again.",
    ),
    "sad": (
        "I really thought he would come back this time.",
        "The old dog passed away quietly last night.",
        "Nobody answered when I called, so I just went home.",
        "We sold the family house after forty years.",
        "I miss the way things used to be.",
        "The letter arrived too late to make any difference.",
        "She packed her things and left without a word.",
        "It rained all day, and nobody came to the party.",
    ),
    "angry": (
        "I told you three times not to touch my desk!",
        "This is the last time I am waiting for you.",
        "Who left the front door wide open all night?",
        "You promised to call, and you never did.",
        "I have had enough of these endless excuses.",
        "Stop interrupting me while I am speaking.",
        "Somebody scratched my car and just drove away.",
        "That is not what we agreed on, and you know it.",
    ),
    "excited": (
        "We won the final by two goals to one!",
        "The tickets are booked, we are going to Japan!",
        "Look at that, a shooting star right above us!",
        "He crosses the line in first place, what a race!",
        "The band just announced a second show tonight!",
        "Guess what, I passed my driving test today!",
        "Fifty thousand fans are on their feet in the stadium!",
        "The puppies are here, come and see them!",
    ),
    "whisper": (
        "Keep your voice down, the baby is finally asleep.",
        "I hid the present under the stairs.",
        "Do not tell anyone, but I know the secret.",
        "Listen, I think someone is outside the door.",
        "Meet me by the fountain at midnight.",
        "The password is written on the back of the card.",
        "Quiet now, the film is about to start.",
        "Close the curtains slowly so they do not notice.",
    ),
    "calm": (
        "Breathe in slowly, and let your shoulders relax.",
        "The waves roll gently onto the sand.",
        "Take your time, there is no need to hurry.",
        "Let the warm light fill the quiet room.",
        "Count slowly from ten down to one.",
        "Notice the soft sound of the rain on the window.",
        "Everything is fine, and the evening is still young.",
        "Rest your hands in your lap and close your eyes.",
    ),
}
EMOTION_ORDER = ("happy", "sad", "angry", "excited", "whisper", "calm")


@dataclass(frozen=True)
class Utterance:
    speaker: Speaker
    index: int  # 0-based position within the speaker
    text: str
    emotion: str

    @property
    def utterance_id(self) -> str:
        return f"{self.speaker.name}_{self.index:02d}_{self.emotion}"

    @property
    def file(self) -> str:  # relative to the corpus folder, POSIX separators
        return f"{self.speaker.name}/{self.utterance_id}.flac"

    def espeak_settings(self) -> dict:
        """espeak-ng voice, -p, -s, -a for this utterance (seed §12 offsets on the speaker's base)."""
        dp, ds, de = EMOTION_OFFSETS[self.emotion]
        pitch = self.speaker.pitch + 10.0 * math.log1p(dp) / math.log(PITCH_RATIO_PER_10)
        return {
            "voice": self.speaker.whisper_voice if self.emotion == "whisper" else self.speaker.voice,
            "pitch": int(min(99, max(0, round(pitch)))),
            "speed": int(round(self.speaker.speed * (1.0 + ds))),
            "amplitude": int(round(BASE_AMPLITUDE * (1.0 + de))),
        }


def build_plan() -> list[Utterance]:
    """All utterances in a fixed order: speaker by speaker, shared text first."""
    _check_tables()
    plan = []
    for i, spk in enumerate(SPEAKERS):
        rows = [(SHARED_TEXT, "neutral"), (NEUTRAL_TEXTS[2 * i], "neutral"),
                (NEUTRAL_TEXTS[2 * i + 1], "neutral")]
        rows += [(EMOTION_TEXTS[e][i], e) for e in EMOTION_ORDER]
        plan += [Utterance(spk, k, text, emo) for k, (text, emo) in enumerate(rows)]
    for i, spk in enumerate(CLONE_SPEAKERS):
        plan += [Utterance(spk, k, CLONE_TEXTS[4 * i + k], "neutral") for k in range(4)]
    return plan


def _check_tables() -> None:
    """Fail early if an edit to the tables above breaks the corpus spec."""
    for spk in SPEAKERS:
        if spk.name not in VOICES:
            raise ValueError(f"speaker {spk.name!r} is not a built-in voice; expected one of {VOICES}")
    for spk in CLONE_SPEAKERS:
        if spk.name in VOICES or spk.accent in ("us", "uk"):
            raise ValueError(f"cloning speaker {spk.name!r} must not be (or be eligible as) a built-in voice")
    if len(CLONE_TEXTS) != 4 * len(CLONE_SPEAKERS):
        raise ValueError(f"need 4 texts per cloning speaker ({4 * len(CLONE_SPEAKERS)})")
    for emo in EMOTION_OFFSETS:
        if emo not in EMOTIONS:
            raise ValueError(f"emotion {emo!r} is not in helpers.tokens.EMOTIONS")
    n = len(SPEAKERS)
    if len(NEUTRAL_TEXTS) != 2 * n or any(len(EMOTION_TEXTS[e]) != n for e in EMOTION_ORDER):
        raise ValueError(f"need {2 * n} neutral texts and {n} texts per emotion for {n} speakers")


def find_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(f"espeak-ng is not installed; install it with: {APT_INSTALL}")
    return exe


def espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..." -> "1.51" (the data path varies)
    return out.split(":")[1].split()[0] if ":" in out else out.strip()


def synthesize(exe: str, text: str, voice: str, pitch: int, speed: int, amplitude: int,
               tmpdir: Path) -> tuple[np.ndarray, int]:
    """Run espeak-ng once; returns (float32 (n,), sr) at espeak-ng's native rate (22,050 Hz)."""
    out = tmpdir / "espeak.wav"
    cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-a", str(amplitude),
           "-w", str(out), "--", text]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    # An unknown language exits 1; an unknown +variant is ignored silently
    # (check_voices_distinct catches that).
    if proc.returncode != 0 or not out.is_file() or proc.stderr.strip():
        raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}) for {' '.join(cmd)!r}: "
                           f"{proc.stderr.strip()}")
    wav, sr = read_audio(out, name=f"espeak-ng output for {voice!r}")
    return to_mono(wav), sr


def check_voices_distinct(exe: str, tmpdir: Path) -> None:
    """Every voice string must sound different: same text, byte-different audio.

    Guards against espeak-ng quietly ignoring a variant (as it does for
    ``en-gb+f4``), which would give two "speakers" the same voice.
    """
    probe = "Checking that every voice sounds different."
    speech = {s.voice for s in SPEAKERS + CLONE_SPEAKERS}
    whisper = {s.whisper_voice for s in SPEAKERS + CLONE_SPEAKERS}
    if speech & whisper:
        raise RuntimeError(f"voice(s) {sorted(speech & whisper)} used both for speech and whisper")
    used = sorted(speech | whisper)
    # espeak-ng falls back to the bare language for an unknown variant without a
    # word, so each "lang+variant" must also differ from plain "lang".
    audio = {v: synthesize(exe, probe, v, 50, 175, 100, tmpdir)[0].tobytes()
             for v in sorted(set(used) | {u.split("+")[0] for u in used})}
    pairs = [(a, b) for i, a in enumerate(used) for b in used[i + 1:]]
    pairs += [(v, v.split("+")[0]) for v in used if "+" in v]
    for a, b in pairs:
        if audio[a] == audio[b]:
            raise RuntimeError(f"espeak-ng voices {a!r} and {b!r} produce identical audio; "
                               f"pick another variant (see the note above SPEAKERS)")


def to_pcm16(wav: np.ndarray, what: str) -> np.ndarray:
    """float -> int16 as helpers.audio.save_wav does (round(x·32768)); refuses clipping."""
    peak = float(np.abs(wav).max())
    if peak >= 1.0:
        raise RuntimeError(f"{what}: peak {peak:.3f} reaches full scale and would clip; "
                           f"lower BASE_AMPLITUDE")
    return np.clip(np.round(wav.astype(np.float64) * PCM16_SCALE),
                   -PCM16_SCALE, PCM16_SCALE - 1).astype(np.int16)


def generate(out_dir: Path, limit: int | None = None, verbose: bool = True) -> list[dict]:
    """Write the corpus (or its first ``limit`` utterances) to ``out_dir``; returns the metadata rows."""
    exe = find_espeak()
    plan = build_plan()
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        plan = plan[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Remove audio this script wrote before, so a shrunken plan leaves no stale files.
    for spk in SPEAKERS + CLONE_SPEAKERS:
        for old in sorted((out_dir / spk.name).glob("*.flac")):
            old.unlink()

    rows, settings = [], {}
    with tempfile.TemporaryDirectory(prefix="make_assets_") as tmp:
        tmpdir = Path(tmp)
        check_voices_distinct(exe, tmpdir)
        for n, utt in enumerate(plan, 1):
            s = utt.espeak_settings()
            wav, sr = synthesize(exe, utt.text, tmpdir=tmpdir, **s)
            wav = resample(wav, sr, CORPUS_SAMPLE_RATE)  # soxr, helpers.audio.RESAMPLE_QUALITY
            seconds = len(wav) / CORPUS_SAMPLE_RATE
            lo = CLONE_MIN_SECONDS if utt.speaker in CLONE_SPEAKERS else MIN_SECONDS
            if not lo <= seconds <= MAX_SECONDS:
                raise RuntimeError(f"{utt.utterance_id}: {seconds:.2f} s is outside "
                                   f"{lo}-{MAX_SECONDS} s; shorten or lengthen {utt.text!r}")
            path = out_dir / utt.file
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, to_pcm16(wav, utt.utterance_id), CORPUS_SAMPLE_RATE,
                     format="FLAC", subtype="PCM_16")
            rows.append({"file": utt.file, "text": utt.text, "speaker": utt.speaker.name,
                         "accent": utt.speaker.accent, "gender": utt.speaker.gender,
                         "emotion": utt.emotion, "utterance_id": utt.utterance_id})
            settings[utt.utterance_id] = s
            if verbose:
                print(f"[{n:3d}/{len(plan)}] {utt.file}  {seconds:.2f} s  {s}")

    with open(out_dir / METADATA_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    generator = {
        "espeak_ng": espeak_version(exe),
        "soxr": soxr.__version__,
        "soxr_quality": RESAMPLE_QUALITY,
        "libsndfile": sf.__libsndfile_version__,
        "sample_rate": CORPUS_SAMPLE_RATE,
        "format": "FLAC PCM_16 mono",
        "base_amplitude": BASE_AMPLITUDE,
        "pitch_ratio_per_10": PITCH_RATIO_PER_10,
        "emotion_offsets": EMOTION_OFFSETS,
        "speakers": {s.name: {"voice": s.voice, "whisper_voice": s.whisper_voice,
                              "pitch": s.pitch, "speed": s.speed} for s in SPEAKERS + CLONE_SPEAKERS},
        "utterances": settings,
    }
    (out_dir / GENERATOR_FILE).write_text(json.dumps(generator, indent=1, sort_keys=True) + "\n",
                                          encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ASSETS_CORPUS_DIR,
                    help=f"output folder (default {ASSETS_CORPUS_DIR})")
    ap.add_argument("--limit", type=int, default=None,
                    help="write only the first N utterances (for quick determinism checks)")
    ap.add_argument("--quiet", action="store_true", help="no per-file progress lines")
    args = ap.parse_args(argv)
    rows = generate(args.out, limit=args.limit, verbose=not args.quiet)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(rows)} utterances to {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
