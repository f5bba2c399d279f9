"""Documented facts about the speakers and labels of the seed's corpora, and the choices built on them.

The catalog (:mod:`helpers.data.catalog`) reads corpora; this module says *who* speaks in them and
*what their labels mean*, from small tables shipped with the package
(``helpers/data/facts/*.csv``, each naming its source in a ``#`` header):

==============  ================================================================  ===================
corpus          per-speaker facts                                                  source
==============  ================================================================  ===================
VCTK            gender, accent, region of 109 speakers                             speaker-info.txt
HiFi-TTS        gender of the 10 readers                                           HiFi-TTS paper
Expresso        gender of ex01..ex04 (2 male, 2 female)                            corpus + voice card
EmoV-DB         gender of Bea, Jenie, Sam, Josh                                    EmoV-DB paper
RAVDESS         gender of the 24 actors (odd = male)                               RAVDESS paper
LibriTTS-R      sex of the 2,484 LibriSpeech/LibriVox readers (no accent)          SPEAKERS.TXT
GigaSpeech      nothing documented: gender estimated from F0 in 01, labelled as such
==============  ================================================================  ===================

Accents (:data:`ACCENTS`): ``us``; ``uk`` = English English (the VCTK "English" speakers;
the seed's British voices are RP / southern English); ``scottish``, ``irish`` (Republic and
Northern Ireland) and ``welsh`` are accents of their own, not "uk"; ``other`` covers the
rest (Canadian, Indian, ... and corpora without per-speaker accents).

Choices made here, each documented where it is defined:

* :data:`BUILTIN_VOICE_PLAN` — the corpus speaker behind each built-in voice: the four US
  voices are Expresso's four actors (their read speech carries the emotion styles), the four
  British voices are southern-English VCTK speakers. :data:`VOICE_REPLAY_MINUTES` of each
  voice's data is replayed into every phase that would not otherwise hold it (see
  :func:`voice_replay_entries`), so stages 2, 3 and 4 all train every voice token.
* The emotion label maps of the emotion corpora (every label mapped explicitly or excluded
  with a reason) and :data:`LABEL_MINUTES` (minutes per label, from the corpora's cards).

Importing this module reads no file; the tables are read on first use.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

FACTS_DIR = Path(__file__).resolve().parent / "facts"

ACCENTS: tuple[str, ...] = ("us", "uk", "scottish", "irish", "welsh", "other")
GENDERS: tuple[str, ...] = ("male", "female", "unknown")

# ----------------------------------------------------------------------------- accents
# VCTK speaker-info "ACCENTS" column -> ours. British-Isles accents are kept apart: only
# "English" speakers are candidates for the *_uk_* voices (RP / southern English).
VCTK_ACCENT_MAP = {
    "english": "uk",
    "scottish": "scottish",
    "welsh": "welsh",
    "irish": "irish", "northernirish": "irish", "northern irish": "irish",
    "american": "us",
    "canadian": "other", "southafrican": "other", "south african": "other",
    "australian": "other", "newzealand": "other", "new zealand": "other", "indian": "other",
    "unknown": "other", "": "other",  # p280 has accent "Unknown" in speaker-info
}

# VCTK regions of "English" speakers that are southern English (the closest documented proxy
# for RP, which VCTK does not label): candidates for the British built-in voices.
SOUTHERN_ENGLISH_REGIONS = frozenset({
    "southern england", "se england", "sw england", "london", "surrey", "essex", "suffolk", "oxford",
})

# ----------------------------------------------------------------------------- emotion label maps
# Every raw label of the emotion corpora, mapped onto a token of helpers.tokens.EMOTIONS (or
# excluded with a reason: the catalog wraps these strings in catalog.Exclude).
EXPRESSO_STYLE_MAP = {
    "default": "neutral",
    "narration": "neutral",  # storytelling read; the seed's neutral is "default narration"
    "emphasis": "neutral",  # neutral reading with contrastive stress on marked words
    "confused": "confused", "enunciated": "enunciated", "happy": "happy", "laughing": "laughing",
    "sad": "sad", "whisper": "whisper",
    "angry": "angry", "awe": "awe", "bored": "bored", "calm": "calm", "desire": "desire",
    "disgusted": "disgusted", "fearful": "fearful", "projected": "projected",
    "sarcastic": "sarcastic", "sleepy": "sleepy", "sympathetic": "sympathetic",
}
EXPRESSO_EXCLUDED = {
    "animal": "pet-directed / animal-voice speech: no emotion token fits",
    "animaldir": "pet-directed / animal-voice speech: no emotion token fits",
    "child": "child-directed / child-voice speech: no emotion token fits",
    "childdir": "child-directed / child-voice speech: no emotion token fits",
    "fast": "a speaking rate, not an emotion: would blur <|emotion:neutral|>",
    "non_verbal": "mostly non-speech vocalisations without a transcript",
    "singing": "singing, not speech",
}
RAVDESS_EMOTION_MAP = {
    "neutral": "neutral", "calm": "calm", "happy": "happy", "sad": "sad", "angry": "angry",
    "fearful": "fearful", "disgust": "disgusted", "surprised": "surprised",
}
EMOVDB_EMOTION_MAP = {
    "neutral": "neutral", "amused": "amused", "angry": "angry", "sleepy": "sleepy",
    "disgust": "disgusted", "disgusted": "disgusted",  # card spells it "disgust"; both accepted
}

# Why "excited" and "friendly" have no data (they stay tokens of the vocabulary, but
# helpers.infer.engine refuses them unless a trained model records minutes for them):
UNTRAINED_EMOTION_NOTES = {
    "excited": "no corpus of the mix labels excitement. RAVDESS 'happy'/'surprised' and Expresso 'happy' are "
               "other emotions, and relabelling them would take data from the tokens they do train",
    "friendly": "no corpus of the mix labels friendliness; Expresso's read 'default' style is the closest, "
                "and it already trains 'neutral'",
}

# Minutes of speech per raw label, from the corpora's documentation (before preprocessing).
# Expresso: the dataset card's "Read (min)" column (the hub copy holds the read part only).
# RAVDESS: 1,440 speech clips ≈ 90 min; per actor 4 neutral and 8 of every other emotion
# (2 statements x 2 repetitions x 2 intensities; neutral has no strong take).
# EmoV-DB: ≈ 7 h over 18 (speaker, emotion) sessions (Josh has no angry/disgust): an even split,
# an ESTIMATE (the card gives no per-label durations).
LABEL_MINUTES: dict[str, dict[str, float]] = {
    "expresso": {"confused": 94, "default": 133, "enunciated": 116, "happy": 74, "laughing": 94,
                 "narration": 21, "sad": 81, "whisper": 79},
    "ravdess": {"neutral": 90 * 96 / 1440, **{e: 90 * 192 / 1440 for e in
                                              ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")}},
    "emov_db": {"neutral": 420 * 4 / 18, "amused": 420 * 4 / 18, "sleepy": 420 * 4 / 18,
                "angry": 420 * 3 / 18, "disgust": 420 * 3 / 18},
}
LABEL_MINUTES_BASIS = {
    "expresso": "dataset card (read minutes per style)",
    "ravdess": "corpus design (60 clips per actor), 1,440 clips ≈ 1.5 h",
    "emov_db": "estimate: ≈ 7 h split evenly over the 18 speaker-emotion sessions",
}


# ----------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class SpeakerFact:
    """What a corpus documents about one speaker. ``basis`` names the table's source."""

    dataset: str
    speaker: str  # local id as the corpus spells it ("p225", "ex01", "92")
    gender: str  # one of GENDERS
    accent: str  # one of ACCENTS
    region: str = ""
    basis: str = ""

    @property
    def speaker_id(self) -> str:
        """The catalog's globally unique id ("vctk:p225")."""
        return f"{self.dataset}:{self.speaker}"


def read_table(name: str) -> tuple[list[dict], str]:
    path = FACTS_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"speaker facts table {path} is missing (shipped with helpers/)")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    if not header:
        raise ValueError(f"{path}: no '# source' header; every facts table must name its source")
    rows = list(csv.DictReader(ln for ln in lines if ln and not ln.startswith("#")))
    return rows, " ".join(header)


@functools.lru_cache(maxsize=None)
def speaker_facts(dataset: str) -> dict[str, SpeakerFact]:
    """Local speaker id -> :class:`SpeakerFact` for ``dataset`` (a name with a table in
    :data:`FACTS_DIR`); raises FileNotFoundError / ValueError naming the table and row."""
    rows, basis = read_table(dataset)
    out: dict[str, SpeakerFact] = {}
    for i, r in enumerate(rows, 1):
        spk = (r.get("speaker") or "").strip()
        gender = (r.get("gender") or "").strip()
        if "accent" in r:
            accent = r["accent"].strip()
        else:
            raw = (r.get("accent_raw") or "").strip().lower()
            if raw not in VCTK_ACCENT_MAP:
                raise ValueError(f"{dataset}.csv row {i}: accent {r.get('accent_raw')!r} is not in VCTK_ACCENT_MAP")
            accent = VCTK_ACCENT_MAP[raw]
        if not spk or gender not in GENDERS or accent not in ACCENTS:
            raise ValueError(f"{dataset}.csv row {i}: need speaker, gender in {GENDERS}, accent in {ACCENTS}; got {r}")
        if spk in out:
            raise ValueError(f"{dataset}.csv: speaker {spk!r} listed twice")
        out[spk] = SpeakerFact(dataset, spk, gender, accent, (r.get("region") or "").strip(), basis)
    return out


def gender_map(dataset: str) -> dict[str, str]:
    """Lower-case local speaker id -> gender, for a catalog ``gender_map``."""
    return {k.lower(): f.gender for k, f in speaker_facts(dataset).items()}


def facts_table(datasets=("libritts_r", "vctk", "hifi_tts", "expresso", "emov_db", "ravdess")) -> list[dict]:
    """One row per dataset: speakers by gender and accent, and the table's source."""
    rows = []
    for d in datasets:
        facts = speaker_facts(d)
        by = lambda attr: ", ".join(f"{k} {v}" for k, v in sorted(  # noqa: E731
            {x: sum(getattr(f, attr) == x for f in facts.values()) for x in {getattr(f, attr) for f in facts.values()}
             }.items()))
        rows.append({"dataset": d, "speakers": len(facts), "gender": by("gender"), "accent": by("accent"),
                     "source": next(iter(facts.values())).basis if facts else ""})
    return rows


# ----------------------------------------------------------------------------- built-in voices
# The corpus speaker behind each built-in voice (seed §8). US voices: Expresso's actors, the
# only US speakers of documented gender whose read speech also carries the emotion styles
# (happy, sad, whisper, ...), so every (US voice, emotion) pair has data. British voices:
# southern-English VCTK speakers (accent "English", region Southern England), the documented
# proxy for RP; ~20-25 min each (VCTK reads ~400 sentences per speaker).
BUILTIN_VOICE_PLAN: dict[str, str] = {
    "male_us_01": "expresso:ex01",
    "male_us_02": "expresso:ex03",
    "female_us_01": "expresso:ex02",
    "female_us_02": "expresso:ex04",
    "male_uk_01": "vctk:p232",
    "male_uk_02": "vctk:p258",
    "female_uk_01": "vctk:p228",
    "female_uk_02": "vctk:p229",
}

# Minutes of each built-in voice's own speech replayed into a phase whose mix would not
# otherwise hold it (phase 1 for all eight voices, phase 3 for the British ones), so later
# stages keep training every voice token (seed §9 mixes + this replay share). A phase whose
# mix already holds the voice's corpus (VCTK in phase 2, Expresso in phases 2 and 3) needs none.
VOICE_REPLAY_MINUTES = 20.0


def plan_fact(voice: str) -> SpeakerFact:
    """The documented facts of the speaker :data:`BUILTIN_VOICE_PLAN` gives ``voice``."""
    dataset, spk = BUILTIN_VOICE_PLAN[voice].split(":", 1)
    facts = speaker_facts(dataset)
    if spk not in facts:
        raise ValueError(f"voice plan {voice} -> {dataset}:{spk}: no such speaker in {dataset}.csv")
    return facts[spk]


def voice_replay_entries(phase_datasets: dict[int, set], minutes: float = VOICE_REPLAY_MINUTES) -> dict:
    """phase -> {dataset: (hours, speaker ids)} of voice data to replay into that phase.

    ``phase_datasets``: phase number -> datasets its seed mix already draws from. A voice whose
    corpus is not among them gets ``minutes`` of its speaker's clips replayed there.
    """
    out: dict[int, dict] = {}
    for phase, datasets in phase_datasets.items():
        per: dict[str, list[str]] = {}
        for v, spk in BUILTIN_VOICE_PLAN.items():
            ds = spk.split(":", 1)[0]
            if ds not in datasets:
                per.setdefault(ds, []).append(spk)
        out[phase] = {ds: (minutes * len(spks) / 60.0, tuple(sorted(spks))) for ds, spks in per.items()}
    return out


__all__ = [
    "FACTS_DIR", "ACCENTS", "GENDERS", "VCTK_ACCENT_MAP", "SOUTHERN_ENGLISH_REGIONS", "EXPRESSO_STYLE_MAP",
    "EXPRESSO_EXCLUDED", "RAVDESS_EMOTION_MAP", "EMOVDB_EMOTION_MAP", "UNTRAINED_EMOTION_NOTES", "LABEL_MINUTES",
    "LABEL_MINUTES_BASIS", "SpeakerFact", "read_table", "speaker_facts", "gender_map", "facts_table", "BUILTIN_VOICE_PLAN",
    "VOICE_REPLAY_MINUTES", "plan_fact", "voice_replay_entries",
]
