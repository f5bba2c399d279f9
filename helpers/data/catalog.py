"""The dataset catalog (seed §9), a row adapter onto our common schema, and the phase-mix sampler.

Three parts:

1. :data:`CATALOG` — one :class:`DatasetSpec` per corpus of the seed's table (LibriTTS-R,
   VCTK, HiFi-TTS, Expresso, RAVDESS, EmoV-DB, GigaSpeech, MLS English, LJSpeech) plus
   ``assets``, the small espeak corpus that the ``tiny`` profile uses. A spec says where the
   corpus lives on the Hub, which config/splits to read, how raw columns become our fields,
   and how its labels (emotion, accent, gender) map onto ours — every label explicitly,
   nothing by fallback. ``verified`` says where each entry's facts come from.

2. :func:`to_common` — one raw hub row -> the common row that preprocessing consumes::

       audio         the Audio(decode=False) dict ({"bytes", "path"}), untouched
       text          transcript (dataset-specific clean-up applied, whitespace collapsed)
       speaker       "<dataset>:<speaker>"   (globally unique)
       accent        "us" | "uk" | "scottish" | "irish" | "welsh" | "other"
       gender        "male" | "female" | "unknown"
       emotion       a name in helpers.tokens.EMOTIONS
       utterance_id  "<dataset>:<id>"        (globally unique)
       dataset       the catalog name

   Rows a dataset's rules exclude come back as :class:`Rejected` (reason + detail) so that
   preprocessing can count them by reason; nothing is dropped here. Rows the catalog does
   not understand (a missing column, a label absent from a mapping) raise
   :class:`CatalogError`: a new label must be mapped by a person, not guessed.

   Accent policy (:mod:`helpers.data.speaker_facts`): ``uk`` is English English (the seed's
   British voices are RP / southern English); Scottish, Irish (incl. Northern Irish) and
   Welsh are accents of their own; ``other`` covers every other accent (and corpora whose
   speakers are mixed without per-speaker labels). Such speakers stay in training data; the
   built-in voices are the documented speakers of :data:`helpers.data.speaker_facts.BUILTIN_VOICE_PLAN`.
   Per-speaker gender comes from the shipped facts tables (``helpers/data/facts/*.csv``) wherever
   a corpus documents it; where none does (GigaSpeech, MLS) it stays "unknown" here and 01
   adds an F0-based estimate in a separate, labelled manifest column (``gender_estimated``).

3. :data:`PHASES` and :func:`sample_hours` / :func:`sample_phase` (:mod:`helpers.data.sampling`) — the seed's three
   training mixes as data (plus a replay share of the built-in voices' own data in every
   phase that would not otherwise hold it), and a deterministic sampler that draws a target
   number of hours from a pool of (utterance_id, speaker, duration_s) records, balanced
   across speakers where the seed implies it, reporting any shortfall loudly.

Importing this module touches no network; :func:`open_dataset` is the only function that
reads data (from the Hub, or a local folder laid out like a hub repository).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping, Union

from . import speaker_facts as SF
from ..profiles import ASSETS_CORPUS
from .speaker_facts import ACCENTS, EMOVDB_EMOTION_MAP, GENDERS, RAVDESS_EMOTION_MAP, VCTK_ACCENT_MAP
from ..tokens import EMOTIONS

COMMON_COLUMNS: tuple[str, ...] = (
    "audio", "text", "speaker", "accent", "gender", "emotion", "utterance_id", "dataset",
)
TARGET_SR = 24_000  # SNAC 24 kHz; sources below this carry no energy above native_sr / 2


class CatalogError(ValueError):
    """A raw row or a spec that the catalog cannot interpret (missing column, unmapped label)."""


# ============================================================================ rules
@dataclass(frozen=True)
class Col:
    """Take the value of raw column ``name``."""

    name: str


@dataclass(frozen=True)
class Fixed:
    """The same value for every row of the dataset."""

    value: str


@dataclass(frozen=True)
class Derived:
    """Compute the value with the named rule (see ``_DERIVERS``) from raw ``columns``."""

    rule: str
    columns: tuple[str, ...]


Rule = Union[Col, Fixed, Derived]


@dataclass(frozen=True)
class Exclude:
    """An emotion label whose clips are rejected, with the reason (counted in the report)."""

    reason: str


@dataclass(frozen=True)
class Rejected:
    """A row that a dataset rule excludes. ``reason`` is a short key for counting;
    ``detail`` says which row/label and why."""

    reason: str
    detail: str = ""


# ============================================================================ the spec
@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to read one corpus and map it onto the common schema.

    Label maps are looked up with the raw value stripped and lower-cased; every value a
    corpus carries must be a key (unknown values raise :class:`CatalogError`).
    """

    name: str  # catalog key; prefix of speaker and utterance ids ("vctk:p225")
    title: str  # human name as in the seed's table
    hub_id: str  # Hub dataset repository (parquet, no loading script), or ASSETS_CORPUS
    config: str | None  # Hub config ("subset") name; None = the repository's default
    revision: str | None  # Hub revision (branch/tag/commit); None = main
    splits: dict  # role -> tuple of split names, concatenated in order ("train", "dev", "test", ...)
    audio_column: str
    text: Rule  # transcript
    speaker: Rule  # local speaker id (prefixed with ``name:`` by to_common)
    utterance_id: Rule  # local utterance id (prefixed with ``name:``)
    gender: Rule
    gender_map: dict  # raw value (lower-case) -> one of GENDERS; used when gender is Col/Derived
    accent: Rule
    accent_map: dict  # raw value (lower-case) -> one of ACCENTS; used when accent is Col
    emotion: Rule  # Fixed(name in EMOTIONS), or Col/Derived mapped through emotion_map
    emotion_map: dict  # raw label (lower-case) -> name in EMOTIONS, or Exclude(reason)
    text_transform: str  # name in TEXT_TRANSFORMS
    row_filter: str  # name in ROW_FILTERS
    native_sr: int  # Hz, of the audio as stored in this Hub copy
    seed_hours: float  # hours in the seed's table
    hours: float  # hours usable from this Hub copy (what sampling can reach)
    n_speakers: int
    licence: str
    gated: bool  # True: accept the terms on the Hub page and log in (HF_TOKEN) first
    priority: str  # seed's table: P0 / P1 / P2 (or "tiny" for assets)
    verified: str  # where these facts come from ("dataset card 2026", "seed table", "inferred")
    alternatives: tuple[str, ...] = ()  # other Hub copies, and why they were not chosen
    notes: str = ""

    def __post_init__(self):
        where = f"catalog entry {self.name!r}"
        if not self.splits:
            raise CatalogError(f"{where}: splits is empty")
        for role, names in self.splits.items():
            if not isinstance(names, tuple) or not names or not all(isinstance(s, str) and s for s in names):
                raise CatalogError(f"{where}: split role {role!r} must map to a non-empty tuple of split names, got {names!r}")
        for attr in ("text", "speaker", "utterance_id", "gender", "accent", "emotion"):
            rule = getattr(self, attr)
            if not isinstance(rule, (Col, Fixed, Derived)):
                raise CatalogError(f"{where}: {attr} must be Col/Fixed/Derived, got {rule!r}")
            if isinstance(rule, Derived) and rule.rule not in _DERIVERS:
                raise CatalogError(f"{where}: {attr} uses unknown rule {rule.rule!r}; known: {sorted(_DERIVERS)}")
        if isinstance(self.utterance_id, Fixed):
            raise CatalogError(f"{where}: utterance_id cannot be Fixed")
        if isinstance(self.emotion, Fixed) and self.emotion.value not in EMOTIONS:
            raise CatalogError(f"{where}: fixed emotion {self.emotion.value!r} is not in helpers.tokens.EMOTIONS")
        if isinstance(self.accent, Fixed) and self.accent.value not in ACCENTS:
            raise CatalogError(f"{where}: fixed accent {self.accent.value!r} not in {ACCENTS}")
        if isinstance(self.gender, Fixed) and self.gender.value not in GENDERS:
            raise CatalogError(f"{where}: fixed gender {self.gender.value!r} not in {GENDERS}")
        if isinstance(self.accent, Derived):
            raise CatalogError(f"{where}: accent must be Fixed or Col (+accent_map)")
        if isinstance(self.accent, Col) and not self.accent_map:
            raise CatalogError(f"{where}: accent read from column {self.accent.name!r} needs an accent_map")
        if isinstance(self.gender, Col) and not self.gender_map:
            raise CatalogError(f"{where}: gender read from column {self.gender.name!r} needs a gender_map")
        if not isinstance(self.emotion, Fixed) and not self.emotion_map:
            raise CatalogError(f"{where}: emotion read from the data needs an emotion_map")
        for label, target in self.emotion_map.items():
            if label != label.strip().lower():
                raise CatalogError(f"{where}: emotion_map key {label!r} must be stripped lower-case")
            if isinstance(target, Exclude):
                if not target.reason.strip():
                    raise CatalogError(f"{where}: exclusion of emotion label {label!r} needs a reason")
            elif target not in EMOTIONS:
                raise CatalogError(f"{where}: emotion label {label!r} maps to {target!r}, not in helpers.tokens.EMOTIONS")
        for label, target in self.accent_map.items():
            if target not in ACCENTS or label != label.strip().lower():
                raise CatalogError(f"{where}: accent_map {label!r} -> {target!r} (keys lower-case, values in {ACCENTS})")
        for label, target in self.gender_map.items():
            if target not in GENDERS or label != label.strip().lower():
                raise CatalogError(f"{where}: gender_map {label!r} -> {target!r} (keys lower-case, values in {GENDERS})")
        if self.text_transform not in TEXT_TRANSFORMS:
            raise CatalogError(f"{where}: unknown text_transform {self.text_transform!r}; known: {sorted(TEXT_TRANSFORMS)}")
        if self.row_filter not in ROW_FILTERS:
            raise CatalogError(f"{where}: unknown row_filter {self.row_filter!r}; known: {sorted(ROW_FILTERS)}")
        if self.native_sr <= 0 or self.hours <= 0 or self.seed_hours <= 0 or self.n_speakers <= 0:
            raise CatalogError(f"{where}: native_sr, hours, seed_hours and n_speakers must be positive")

    @property
    def band_limited(self) -> bool:
        """True when the stored audio has no energy above native_sr/2 < 12 kHz after
        resampling to 24 kHz (GigaSpeech, MLS): worth a flag in the manifest."""
        return self.native_sr < TARGET_SR

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        """Raw labels this corpus carries (keys of emotion_map), or () for a fixed emotion."""
        return tuple(self.emotion_map)

    def split_names(self, role: str) -> tuple[str, ...]:
        if role not in self.splits:
            raise CatalogError(f"{self.name}: no split role {role!r}; roles: {sorted(self.splits)}")
        return self.splits[role]


# ============================================================================ derived values
_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
# RAVDESS file-name fields: modality-channel-emotion-intensity-statement-repetition-actor.
RAVDESS_EMOTION_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                         "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}


def _stem(value: Any) -> str:
    """Last path component without extension; also works for URLs and plain ids."""
    s = str(value).strip().split("?")[0].rstrip("/")
    name = PurePosixPath(s.replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name and not name.startswith(".") and _looks_like_file(name) else name


def _looks_like_file(name: str) -> bool:
    ext = name.rsplit(".", 1)[1].lower()
    return ext in {"wav", "flac", "mp3", "opus", "ogg", "m4a", "sph", "txt"}


def _ravdess_fields(file: Any) -> tuple[str, ...]:
    m = _RAVDESS_NAME.match(_stem(file))
    if not m:
        raise CatalogError(f"RAVDESS file name {file!r} is not of the form MM-VV-EE-II-SS-RR-AA.wav")
    fields = m.groups()
    if fields[1] != "01":
        raise CatalogError(f"RAVDESS file {file!r} is song (vocal channel {fields[1]}), the catalog reads speech only")
    return fields


def _ravdess_actor(file):
    return f"actor_{_ravdess_fields(file)[6]}"


def _ravdess_gender(file):
    # RAVDESS: odd-numbered actors are male, even-numbered female (dataset documentation).
    return "male" if int(_ravdess_fields(file)[6]) % 2 else "female"


def _ravdess_emotion(file):
    code = _ravdess_fields(file)[2]
    if code not in RAVDESS_EMOTION_CODES:
        raise CatalogError(f"RAVDESS file {file!r}: unknown emotion code {code}")
    return RAVDESS_EMOTION_CODES[code]


def _ravdess_statement(file):
    code = _ravdess_fields(file)[4]
    if code not in RAVDESS_STATEMENTS:
        raise CatalogError(f"RAVDESS file {file!r}: unknown statement code {code}")
    return RAVDESS_STATEMENTS[code]


def _gigaspeech_speaker(speaker, audio_id):
    # Most GigaSpeech segments carry speaker "N/A"; the source recording (podcast episode,
    # video, audiobook chapter) is then the best speaker proxy for balancing.
    sp = "" if speaker is None else str(speaker).strip()
    if sp and sp.upper() != "N/A":
        return sp
    if audio_id is None or not str(audio_id).strip():
        raise CatalogError("GigaSpeech row has neither a speaker nor an audio_id")
    return f"rec_{str(audio_id).strip()}"


def _emov_id(speaker_name, audio):
    # cairocode/EMOV_WAV has no id column: the stored file name (unique per speaker) or,
    # when the parquet keeps no path, a content hash of the audio bytes.
    path = audio.get("path") if isinstance(audio, Mapping) else None
    if path:
        local = _stem(path)
    elif isinstance(audio, Mapping) and audio.get("bytes"):
        local = "sha1_" + hashlib.sha1(audio["bytes"]).hexdigest()[:16]
    else:
        raise CatalogError("EmoV-DB row: audio has neither a path nor bytes to build an id from")
    return f"{str(speaker_name).strip().lower()}_{local}"


def _mls_id(speaker_id, book_id, begin_time):
    # MLS ids are speaker_book_segment; this copy exposes the segment by its start time.
    return f"{speaker_id}_{book_id}_{int(round(float(begin_time) * 1000)):09d}"


_DERIVERS = {
    "file_stem": _stem,
    "ravdess_actor": _ravdess_actor,
    "ravdess_gender": _ravdess_gender,
    "ravdess_emotion": _ravdess_emotion,
    "ravdess_statement": _ravdess_statement,
    "gigaspeech_speaker": _gigaspeech_speaker,
    "emov_id": _emov_id,
    "mls_id": _mls_id,
}

# ============================================================================ text transforms / row filters
_GIGASPEECH_PUNCT = {"<COMMA>": ",", "<PERIOD>": ".", "<QUESTIONMARK>": "?", "<EXCLAMATIONPOINT>": "!"}
GIGASPEECH_GARBAGE_TAGS = ("<SIL>", "<MUSIC>", "<NOISE>", "<OTHER>")


def _gigaspeech_text(text: str) -> str:
    """'HELLO <COMMA> I AM HERE <PERIOD>' -> 'Hello, I am here.'"""
    for tag, mark in _GIGASPEECH_PUNCT.items():
        text = text.replace(" " + tag, mark).replace(tag, mark)
    left = re.findall(r"<[A-Z_]+>", text)
    if left:
        raise CatalogError(f"GigaSpeech text has unhandled tags {left}: {text!r}")
    return _sentence_case(text.lower())


def _sentence_case(text: str) -> str:
    # Upper-case text makes a poor LLaMA prompt; restore the first letter of each sentence
    # and the pronoun "I" (the rest of the casing is unrecoverable).
    text = re.sub(r"\bi\b", "I", text)
    text = re.sub(r"\bi'(m|ll|ve|d)\b", lambda m: "I'" + m.group(1), text)
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


TEXT_TRANSFORMS = {
    "none": lambda t: t,
    "gigaspeech_tags": _gigaspeech_text,
}


def _filter_none(spec, row):
    return None


def _filter_vctk_mic1(spec, row):
    # VCTK 0.92 ships every utterance twice (mic1 omni, mic2 small-diaphragm): keep mic1.
    stem = _stem(row["file"])
    if stem.endswith("_mic1"):
        return None
    if stem.endswith("_mic2"):
        return Rejected("vctk_mic2_duplicate", f"{stem}: second-microphone copy of a mic1 take")
    raise CatalogError(f"VCTK file {row['file']!r} names neither _mic1 nor _mic2")


def _filter_gigaspeech_garbage(spec, row):
    text = str(row[spec.text.name])
    found = [t for t in GIGASPEECH_GARBAGE_TAGS if t in text]
    if found:
        return Rejected("gigaspeech_garbage_segment", f"segment text holds {found}: not transcribed speech")
    return None


ROW_FILTERS = {
    "none": _filter_none,
    "vctk_mic1": _filter_vctk_mic1,
    "gigaspeech_garbage": _filter_gigaspeech_garbage,
}


# ============================================================================ the catalog
_NEUTRAL = Fixed("neutral")  # corpora without emotion labels: read / conversational speech

# Emotion and accent label maps live in helpers.data.speaker_facts (with their sources); Expresso's
# styles that are no emotion or voice quality we can ask for at inference are excluded, not
# forced onto a wrong token.
EXPRESSO_STYLE_MAP = {**SF.EXPRESSO_STYLE_MAP, **{k: Exclude(r) for k, r in SF.EXPRESSO_EXCLUDED.items()}}

CATALOG: dict[str, DatasetSpec] = {}


def _add(spec: DatasetSpec) -> None:
    CATALOG[spec.name] = spec


_add(DatasetSpec(
    name="libritts_r", title="LibriTTS-R", hub_id="mythicinfinity/libritts_r", config="all", revision=None,
    splits={"train": ("train.clean.100", "train.clean.360", "train.other.500"),
            "train_clean": ("train.clean.100", "train.clean.360"),
            "dev": ("dev.clean",), "test": ("test.clean",)},
    audio_column="audio", text=Col("text_normalized"), speaker=Col("speaker_id"), utterance_id=Col("id"),
    gender=Col("speaker_id"), gender_map=SF.gender_map("libritts_r"), accent=Fixed("us"), accent_map={},
    emotion=_NEUTRAL, emotion_map={}, text_transform="none", row_filter="none",
    native_sr=24_000, seed_hours=585, hours=555, n_speakers=2456, licence="CC-BY-4.0", gated=False,
    priority="P0",
    verified="dataset card/viewer 2026: configs all/clean/dev/other and split names seen; columns from notes",
    alternatives=("blabble-io/libritts_r (same layout, older copy)",),
    notes="Train splits ≈ 54 h (clean.100) + 191 h (clean.360) + 310 h (other.500); 'train_clean' ≈ 245 h. "
          "No gender column in this copy: the reader's sex comes from LibriSpeech's SPEAKERS.TXT (the same LibriVox "
          "reader ids; helpers/data/facts/libritts_r.csv). Accent per seed table (LibriVox documents none per reader).",
))

_add(DatasetSpec(
    name="vctk", title="VCTK", hub_id="sanchit-gandhi/vctk", config=None, revision=None,
    splits={"train": ("train",)},
    audio_column="audio", text=Col("text"), speaker=Col("speaker_id"), utterance_id=Derived("file_stem", ("file",)),
    gender=Col("gender"), gender_map={"f": "female", "m": "male"},
    accent=Col("accent"), accent_map=VCTK_ACCENT_MAP,
    emotion=_NEUTRAL, emotion_map={}, text_transform="none", row_filter="vctk_mic1",
    native_sr=48_000, seed_hours=44, hours=44, n_speakers=110, licence="CC-BY-4.0", gated=False,
    priority="P0",
    verified="dataset card 2026: parquet files seen; columns from the VCTK card (speaker_id, audio, file, text, "
             "text_id, age, gender, accent, region, comment)",
    alternatives=("CSTR-Edinburgh/vctk (loading script: fails with datasets 4)",),
    notes="88,156 rows = every utterance twice (mic1/mic2); the row filter keeps mic1. p315 has no "
          "transcripts (rejected as empty_text). Accents per speaker-info (helpers/data/facts/vctk.csv): English -> uk, "
          "Scottish/Irish/Northern Irish/Welsh their own accents; the four British built-in voices are "
          "southern-English speakers.",
))

_add(DatasetSpec(
    name="hifi_tts", title="HiFi-TTS", hub_id="MikhailT/hifi-tts", config="all", revision=None,
    splits={"train": ("train.clean", "train.other"), "train_clean": ("train.clean",),
            "dev": ("dev.clean", "dev.other"), "test": ("test.clean", "test.other")},
    audio_column="audio", text=Col("text_normalized"), speaker=Col("speaker"),
    utterance_id=Derived("file_stem", ("file",)),
    gender=Col("speaker"), gender_map=SF.gender_map("hifi_tts"), accent=Fixed("us"), accent_map={},
    emotion=_NEUTRAL, emotion_map={}, text_transform="none", row_filter="none",
    native_sr=44_100, seed_hours=292, hours=292, n_speakers=10, licence="CC-BY-4.0", gated=False,
    priority="P1",
    verified="dataset card 2026: configs clean/other/all, split names and columns seen",
    notes="Has a 'duration' column (s) usable for a manifest without decoding. Accent per seed table. Gender per "
          "reader from the HiFi-TTS paper's speaker table (helpers/data/facts/hifi_tts.csv: 6 female, 4 male).",
))

_add(DatasetSpec(
    name="expresso", title="Expresso", hub_id="ylacombe/expresso", config="read", revision=None,
    splits={"train": ("train",)},
    audio_column="audio", text=Col("text"), speaker=Col("speaker_id"), utterance_id=Col("id"),
    gender=Col("speaker_id"), gender_map=SF.gender_map("expresso"), accent=Fixed("us"), accent_map={},
    emotion=Col("style"), emotion_map=EXPRESSO_STYLE_MAP, text_transform="none", row_filter="none",
    native_sr=48_000, seed_hours=40, hours=11.5, n_speakers=4, licence="CC-BY-NC-4.0", gated=False,
    priority="P0",
    verified="dataset card 2026: config 'read' (11,615 rows), columns audio/text/speaker_id/style/id seen",
    alternatives=("shangeth/expresso (has a 'conversational' config; columns unseen; Expresso's improvised "
                  "dialogues carry no transcripts, so they cannot train TTS as-is)",),
    notes="Seed counts 40 h = 11 h read + 30 h improvised dialogue; only the read part has transcripts, so "
          "phases asking for 40 h get ≈ 11.5 h and report the shortfall. Non-commercial licence. Speakers ex01/ex03 "
          "male, ex02/ex04 female (helpers/data/facts/expresso.csv); they are the four US built-in voices.",
))

_add(DatasetSpec(
    name="ravdess", title="RAVDESS", hub_id="AbstractTTS/RAVDESS", config=None, revision=None,
    splits={"train": ("train",)},
    audio_column="audio", text=Derived("ravdess_statement", ("file",)),
    speaker=Derived("ravdess_actor", ("file",)), utterance_id=Derived("file_stem", ("file",)),
    gender=Derived("ravdess_gender", ("file",)), gender_map={"male": "male", "female": "female"},
    accent=Fixed("us"), accent_map={},
    emotion=Derived("ravdess_emotion", ("file",)), emotion_map=RAVDESS_EMOTION_MAP,
    text_transform="none", row_filter="none",
    native_sr=48_000, seed_hours=7, hours=1.5, n_speakers=24, licence="CC-BY-NC-SA-4.0", gated=False,
    priority="P1",
    verified="dataset card 2026: columns file/audio/gender/transcription/emotion/intensity seen (1,440 rows); "
             "speaker, emotion and text from the documented file-name code",
    alternatives=("narad/ravdess (loading script)", "xbgoose/ravdess (parquet, columns unseen)"),
    notes="Speech part only: 1,440 clips ≈ 1.5 h, so 7 h in the seed is a shortfall. Actor, emotion and "
          "sentence come from the file name (authoritative); two fixed sentences; intensity normal/strong "
          "both kept. 'North American accent' per the corpus documentation.",
))

_add(DatasetSpec(
    name="emov_db", title="EmoV-DB", hub_id="cairocode/EMOV_WAV", config=None, revision=None,
    splits={"train": ("train",)},
    audio_column="audio", text=Col("transcript"), speaker=Col("speaker_name"),
    utterance_id=Derived("emov_id", ("speaker_name", "audio")),
    gender=Col("speaker_name"), gender_map=SF.gender_map("emov_db"),
    accent=Fixed("other"), accent_map={},
    emotion=Col("emotion"), emotion_map=EMOVDB_EMOTION_MAP, text_transform="none", row_filter="none",
    native_sr=44_100, seed_hours=7, hours=7, n_speakers=4, licence="OpenSLR 115 terms (non-commercial use)",
    gated=False, priority="P2",
    verified="dataset card 2026: columns audio/emotion/emotion_id/EMOV_Labels/transcript/speaker_name/speaker_ID "
             "seen (6,599 rows); sample rate inferred (≈1.5 MB per clip rules out 16 kHz PCM; seed says 16k)",
    alternatives=("CLAPv2/EmoV_DB (no speaker id; transcript inside a caption)",),
    notes="Speakers Bea, Jenie (F), Josh, Sam (M); Josh has no angry/disgust. Accent 'other': the seed says "
          "US/UK and the copy has no per-speaker accent. 'amused' clips hold much laughter. Check the "
          "licence on OpenSLR 115 before publishing.",
))

_add(DatasetSpec(
    name="gigaspeech", title="GigaSpeech", hub_id="fixie-ai/gigaspeech", config="xl", revision=None,
    splits={"train": ("train",), "test": ("test",)},
    audio_column="audio", text=Col("text"),
    speaker=Derived("gigaspeech_speaker", ("speaker", "audio_id")), utterance_id=Col("segment_id"),
    gender=Fixed("unknown"), gender_map={}, accent=Fixed("us"), accent_map={},
    emotion=_NEUTRAL, emotion_map={}, text_transform="gigaspeech_tags", row_filter="gigaspeech_garbage",
    native_sr=16_000, seed_hours=10_000, hours=10_000, n_speakers=1_000, licence="Apache-2.0 + GigaSpeech terms of access",
    gated=False, priority="P1",
    verified="dataset card 2026: checked 2026-11-29 against the card (README.md @21d9f45) and the file tree of main; parquet, no "
             "loading script; columns segment_id, speaker, text, audio (16 kHz), begin_time, end_time, audio_id, "
             "title, url, source, category; config 'xl' holds xl/train-*-of-02279.parquet (split 'train') and "
             "xl/test-*-of-00010.parquet (split 'test'); config 'dev' holds the dev set. No 'm' config was seen, "
             "so 'xl' is read (streaming stops at the phase target, so only the first shards are fetched). The "
             "repo page shows no access-request form (not gated). n_speakers is a proxy count (recordings), inferred",
    alternatives=("speechcolab/gigaspeech (official, gated; was script-based, parquet conversion unverified)",
                  "lmms-lab/gigaspeech (parquet, test/validation only)"),
    notes="Subset xl (10,000 h, streamed: only what phase 1's 300 h needs is read). Text is upper-case with "
          "<COMMA>/<PERIOD>/<QUESTIONMARK>/<EXCLAMATIONPOINT> tags -> punctuation + sentence case; "
          "<SIL>/<MUSIC>/<NOISE>/<OTHER> segments are rejected. 16 kHz: band-limited after upsampling. "
          "The official terms of access apply to this mirror too.",
))

_add(DatasetSpec(
    name="mls_en", title="MLS (en)", hub_id="parler-tts/mls_eng", config=None, revision=None,
    splits={"train": ("train",), "dev": ("dev",), "test": ("test",)},
    audio_column="audio", text=Col("transcript"), speaker=Col("speaker_id"),
    utterance_id=Derived("mls_id", ("speaker_id", "book_id", "begin_time")),
    gender=Fixed("unknown"), gender_map={}, accent=Fixed("other"), accent_map={},
    emotion=_NEUTRAL, emotion_map={}, text_transform="none", row_filter="none",
    native_sr=16_000, seed_hours=44_000, hours=44_500, n_speakers=5_490, licence="CC-BY-4.0", gated=False,
    priority="P2",
    verified="dataset card 2026: default config with train/dev/test seen; columns from notes (inferred)",
    alternatives=("parler-tts/mls_eng_10k (10k-hour subset, same columns)",),
    notes="Lower-case transcripts without punctuation; 16 kHz (band-limited). Accent 'other': LibriVox readers "
          "of mixed accents (seed: US/UK) without per-speaker labels. Not in any phase of the seed.",
))

_add(DatasetSpec(
    name="ljspeech", title="LJSpeech", hub_id="MikhailT/lj-speech", config=None, revision=None,
    splits={"train": ("full",)},
    audio_column="audio", text=Col("normalized_text"), speaker=Fixed("lj"), utterance_id=Col("id"),
    gender=Fixed("female"), gender_map={}, accent=Fixed("us"), accent_map={},
    emotion=_NEUTRAL, emotion_map={}, text_transform="none", row_filter="none",
    native_sr=22_050, seed_hours=24, hours=24, n_speakers=1, licence="Public domain", gated=False,
    priority="P2",
    verified="dataset viewer 2026: default config, split 'full' (13.1k rows) seen; columns from notes",
    alternatives=("keithito/lj_speech at revision refs/convert/parquet (plain main is script-based)",),
    notes="Single female US speaker; 'normalized_text' has numbers and abbreviations expanded.",
))

_add(DatasetSpec(
    name="assets", title="Bundled espeak corpus", hub_id=ASSETS_CORPUS, config=None, revision=None,
    # "rejects": four clips preprocessing must reject (noise, too short, clipped, silent), so the
    # tiny profile shows the rejection report; they never reach training.
    splits={"train": ("train", "rejects")},
    audio_column="audio", text=Col("text"), speaker=Col("speaker"), utterance_id=Col("utterance_id"),
    gender=Col("gender"), gender_map={g: g for g in GENDERS},
    accent=Col("accent"), accent_map={a: a for a in ACCENTS},
    emotion=Col("emotion"), emotion_map={e: e for e in EMOTIONS}, text_transform="none", row_filter="none",
    native_sr=24_000, seed_hours=0.068, hours=0.068, n_speakers=10, licence="project-generated (espeak-ng)",
    gated=False, priority="tiny",
    verified="measured: assets/corpus/metadata.csv, 80 utterances, 243 s, 10 speakers (8 built-in voices + 2 "
             "cloning speakers), 24 kHz FLAC (checked by tests/data/test_corpus.py)",
    notes="The tiny profile's data source (helpers.profiles.ASSETS_CORPUS); loaded by "
          "helpers.data.corpus.load_local_corpus.",
))

SEED_DATASETS: tuple[str, ...] = ("libritts_r", "vctk", "hifi_tts", "expresso", "ravdess", "emov_db",
                                  "gigaspeech", "mls_en", "ljspeech")


def get_spec(name: str) -> DatasetSpec:
    if name not in CATALOG:
        raise KeyError(f"unknown dataset {name!r}; catalog: {', '.join(CATALOG)}")
    return CATALOG[name]


def catalog_table() -> list[dict]:
    """One plain dict per catalog entry, for a notebook table (``pd.DataFrame(catalog_table())``)."""
    return [{"name": s.name, "dataset": s.title, "hub_id": s.hub_id, "config": s.config,
             "seed_hours": s.seed_hours, "hub_hours": s.hours, "speakers": s.n_speakers,
             "native_sr": s.native_sr, "licence": s.licence, "gated": s.gated, "priority": s.priority,
             "emotion_labels": len(s.emotion_map) if not isinstance(s.emotion, Fixed) else 0}
            for s in CATALOG.values()]


# ============================================================================ row adapter
def _raw(spec: DatasetSpec, row: Mapping, column: str) -> Any:
    if column not in row:
        raise CatalogError(f"{spec.name}: row has no column {column!r} (columns: {sorted(row)})")
    return row[column]


def _apply(spec: DatasetSpec, rule: Rule, row: Mapping) -> Any:
    if isinstance(rule, Fixed):
        return rule.value
    if isinstance(rule, Col):
        return _raw(spec, row, rule.name)
    return _DERIVERS[rule.rule](*(_raw(spec, row, c) for c in rule.columns))


def _lookup(spec: DatasetSpec, what: str, mapping: dict, value: Any, row_id: str):
    key = "" if value is None else str(value).strip().lower()
    if key not in mapping:
        raise CatalogError(f"{spec.name}: {what} label {value!r} of row {row_id!r} is not in the catalog's "
                           f"{what} map (known: {sorted(mapping)}); map it explicitly in helpers/data/catalog.py")
    return mapping[key]


def _prefixed(spec: DatasetSpec, value: Any, what: str, row_id: str = "?") -> str:
    s = "" if value is None else str(value).strip()
    if not s:
        raise CatalogError(f"{spec.name}: empty {what} in row {row_id!r}")
    return s if s.startswith(spec.name + ":") else f"{spec.name}:{s}"


def to_common(spec: DatasetSpec, row: Mapping) -> Union[dict, Rejected]:
    """Map one raw row of ``spec``'s dataset onto the common schema (see module docstring).

    ``row`` must hold the audio column as the ``Audio(decode=False)`` dict ({"bytes", "path"});
    it is passed through untouched. Returns the common dict, or :class:`Rejected` for a row the
    dataset's rules exclude (filtered take, garbage segment, excluded emotion, empty text).
    Raises :class:`CatalogError` for a row the catalog cannot interpret.
    """
    audio = _raw(spec, row, spec.audio_column)
    if not isinstance(audio, Mapping) or not ({"bytes", "path"} & set(audio)):
        raise CatalogError(f"{spec.name}: column {spec.audio_column!r} must be an Audio(decode=False) dict with "
                           f"'bytes'/'path', got {type(audio).__name__}; cast it with "
                           f"cast_column({spec.audio_column!r}, Audio(decode=False))")
    utt = _prefixed(spec, _apply(spec, spec.utterance_id, row), "utterance id")
    rejected = ROW_FILTERS[spec.row_filter](spec, row)
    if rejected is not None:
        return Rejected(rejected.reason, f"{utt}: {rejected.detail}")

    if isinstance(spec.emotion, Fixed):
        emotion = spec.emotion.value
    else:
        raw_label = _apply(spec, spec.emotion, row)
        emotion = _lookup(spec, "emotion", spec.emotion_map, raw_label, utt)
        if isinstance(emotion, Exclude):
            return Rejected("excluded_emotion", f"{utt}: label {raw_label!r}: {emotion.reason}")

    raw_text = _apply(spec, spec.text, row)
    text = "" if raw_text is None else str(raw_text)
    text = " ".join(TEXT_TRANSFORMS[spec.text_transform](text).split())
    if not text:
        return Rejected("empty_text", f"{utt}: no transcript")

    gender = _apply(spec, spec.gender, row)
    if not isinstance(spec.gender, Fixed):
        gender = _lookup(spec, "gender", spec.gender_map, gender, utt)
    accent = _apply(spec, spec.accent, row)
    if not isinstance(spec.accent, Fixed):
        accent = _lookup(spec, "accent", spec.accent_map, accent, utt)

    return {
        "audio": audio,
        "text": text,
        "speaker": _prefixed(spec, _apply(spec, spec.speaker, row), "speaker", utt),
        "accent": accent,
        "gender": gender,
        "emotion": emotion,
        "utterance_id": utt,
        "dataset": spec.name,
    }


# ============================================================================ loading
def open_dataset(spec: DatasetSpec | str, split_role: str = "train", *, streaming: bool = True,
                 token: str | bool | None = None, cache_dir: str | None = None, columns: list[str] | None = None):
    """The raw rows of one split role, audio cast to ``Audio(decode=False)``.

    Hub corpora: ``datasets.load_dataset(spec.hub_id, spec.config, split=..., streaming=...)``
    per split name of the role, concatenated in order. ``spec.hub_id`` may also be a local
    folder laid out like the Hub repository (a README.md with ``configs:`` and parquet files):
    the same call reads it. ``token``: None uses the logged-in / ``HF_TOKEN`` credentials
    (needed for gated corpora). ``assets``: :func:`helpers.data.corpus.load_local_corpus`.

    Returns an ``IterableDataset`` when streaming, else a ``Dataset``. Map rows with
    :func:`to_common`. Audio stays undecoded (datasets 4 decodes only through torchcodec,
    which we do not install); decode the bytes/path with soundfile downstream.

    ``columns``: read only these raw columns (parquet reads just their column chunks: a source's ids
    and labels without its audio bytes); the audio column is then absent unless listed.
    """
    import datasets  # heavy import kept out of module import time

    spec = get_spec(spec) if isinstance(spec, str) else spec
    names = spec.split_names(split_role)
    if spec.hub_id == ASSETS_CORPUS:
        from .corpus import load_local_corpus  # written alongside; imported lazily

        parts = [load_local_corpus(split=n) for n in names]
        if columns is not None:
            parts = [p.select_columns(list(columns)) for p in parts]
        if streaming:
            parts = [p.to_iterable_dataset() if isinstance(p, datasets.Dataset) else p for p in parts]
    else:
        kwargs = {"streaming": streaming, "token": token}
        if spec.revision is not None:
            kwargs["revision"] = spec.revision
        if cache_dir is not None:
            kwargs["cache_dir"] = cache_dir
        if columns is not None:
            kwargs["columns"] = list(columns)
        parts = [datasets.load_dataset(spec.hub_id, spec.config, split=name, **kwargs) for name in names]
    if columns is None or spec.audio_column in columns:
        parts = [p.cast_column(spec.audio_column, datasets.Audio(decode=False)) for p in parts]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def iter_common(spec: DatasetSpec | str, rows: Iterable[Mapping]):
    """``to_common`` over ``rows``: yields common dicts and :class:`Rejected` records in order."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    for row in rows:
        yield to_common(spec, row)


# ============================================================================ phase mixes (seed §9)
@dataclass(frozen=True)
class PhaseEntry:
    """``hours`` of ``dataset`` drawn from its ``split_role``; ``balance_speakers`` as the seed implies.

    ``speakers`` (catalog speaker ids, "vctk:p232"): draw only from these speakers' clips — a
    replay of built-in voice data (:func:`helpers.data.speaker_facts.voice_replay_entries`); empty = all.
    """

    dataset: str
    split_role: str
    hours: float
    balance_speakers: bool
    speakers: tuple[str, ...] = ()

    @property
    def replay(self) -> bool:
        return bool(self.speakers)


@dataclass(frozen=True)
class Phase:
    number: int  # the seed's phase number (1..3)
    stage: int  # the seed's training stage it feeds (phase 1 -> stage 2, ...)
    title: str
    seed_total_hours: float  # as printed in the seed ("~1,050 hours")
    entries: tuple[PhaseEntry, ...]

    def __post_init__(self):
        names = [e.dataset for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"phase {self.number}: a dataset may appear once per phase, got {names}")

    @property
    def hours(self) -> float:
        return sum(e.hours for e in self.entries)

    @property
    def replay_hours(self) -> float:
        return sum(e.hours for e in self.entries if e.replay)


# Seed §9 "Recommended Training Mix". Phase 1 is broad pretraining: a uniform random draw keeps
# the natural diversity (and 2,456 LibriTTS speakers cannot dominate anyway). Phases 2 and 3 are
# "quality fine-tuning" and "emotion & speaker alignment": balanced across speakers so that a few
# prolific speakers do not dominate the voices the model aligns to.
_SEED_MIX: dict[int, tuple] = {
    1: (2, "Large-scale pretraining", 1050, (
        PhaseEntry("libritts_r", "train", 460, False),
        PhaseEntry("gigaspeech", "train", 300, False),
        PhaseEntry("hifi_tts", "train", 292, False),
    )),
    2: (3, "Quality fine-tuning", 184, (
        PhaseEntry("libritts_r", "train_clean", 100, True),
        PhaseEntry("vctk", "train", 44, True),
        PhaseEntry("expresso", "train", 40, True),
    )),
    3: (4, "Emotion & speaker alignment", 54, (
        PhaseEntry("expresso", "train", 40, True),
        PhaseEntry("ravdess", "train", 7, True),
        PhaseEntry("emov_db", "train", 7, True),
    )),
}


def build_phases(replay_minutes: float = SF.VOICE_REPLAY_MINUTES) -> dict[int, Phase]:
    """The seed's mixes plus ``replay_minutes`` of every built-in voice's own speech in each phase
    whose mix does not hold the voice's corpus (phase 1: 4 x 20 min of Expresso and of VCTK;
    phase 3: 4 x 20 min of VCTK), balanced across the voice speakers. 0 = the seed's mixes only
    (then stages 2 and 4 train no British voice token and stage 2 no US one)."""
    if not replay_minutes >= 0:
        raise ValueError(f"replay_minutes must be >= 0, got {replay_minutes!r}")
    replay = SF.voice_replay_entries({n: {e.dataset for e in mix[3]} for n, mix in _SEED_MIX.items()},
                                     replay_minutes)
    out = {}
    for n, (stage, title, total, entries) in _SEED_MIX.items():
        extra = tuple(PhaseEntry(ds, "train", hours, True, spks) for ds, (hours, spks) in sorted(replay[n].items())
                      if hours > 0)
        out[n] = Phase(n, stage, title, total, entries + extra)
    return out


PHASES: dict[int, Phase] = build_phases()


def expected_shortfalls() -> list[str]:
    """Phase entries asking for more hours than the catalog's Hub copy holds (known before any download)."""
    out = []
    for ph in PHASES.values():
        for e in ph.entries:
            have = CATALOG[e.dataset].hours
            if e.hours > have:
                out.append(f"phase {ph.number}: {e.dataset} asks {e.hours:g} h, the Hub copy has ≈{have:g} h")
    return out
