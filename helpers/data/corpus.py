"""The bundled speech corpus (``assets/corpus``) as a HuggingFace ``datasets`` dataset.

The ``tiny`` profile's data source (:data:`helpers.profiles.ASSETS_CORPUS`): 80
short espeak-ng utterances; 8 speakers named after the built-in voices
(``male_us_01`` … ``female_uk_02``), US and British English, male and female,
neutral plus the seed's §12 emotions, and 2 speakers that are not built-in voices
(Scottish, Caribbean English) whose examples train cloning references. ``scripts/make_assets.py`` makes it;
``assets/README.md`` describes it.

The dataset has the same columns the hub loaders produce, so everything after
loading is one code path::

    audio         Audio(decode=False): {"bytes": None, "path": "/abs/…/x.flac"}
    text          str
    speaker       str   (a helpers.tokens.VOICES name, or a cloning speaker "clone_…")
    accent        str   "us" | "uk" | "scottish" | "other" …
    gender        str   "male" | "female"
    emotion       str   one of helpers.tokens.EMOTIONS
    utterance_id  str   unique within the dataset
    dataset       str   "assets"

Audio is never decoded by ``datasets`` (4.x needs torchcodec for that, which we do
not install); :func:`decode_example_audio` decodes with soundfile.

Importing this module reads no files.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..audio import decode_audio_field
from ..profiles import ASSETS_CORPUS, ASSETS_CORPUS_DIR, ASSETS_REJECTS_DIR
from ..tokens import EMOTIONS

METADATA_FILE = "metadata.csv"
METADATA_COLUMNS: tuple[str, ...] = ("file", "text", "speaker", "accent", "gender", "emotion",
                                     "utterance_id")
DATASET_COLUMNS: tuple[str, ...] = ("audio", "text", "speaker", "accent", "gender", "emotion",
                                    "utterance_id", "dataset")
ACCENTS: tuple[str, ...] = ("us", "uk", "scottish", "irish", "welsh", "other")  # = helpers.data.speaker_facts.ACCENTS
GENDERS: tuple[str, ...] = ("male", "female")
CORPUS_SAMPLE_RATE = 24000  # Hz; the files are written at SNAC 24 kHz's rate
SPLITS: tuple[str, ...] = ("train", "rejects")
# "train": the espeak corpus (every row is training data). "rejects": a few clips derived from it
# that preprocessing must reject (noise, too short, clipped, silent; scripts/make_rejects.py), so
# the tiny profile shows and tests the rejection report.


class CorpusError(ValueError):
    """metadata.csv or the files it names do not match the corpus contract (names file and row)."""


def read_metadata(folder: str | os.PathLike = ASSETS_CORPUS_DIR) -> list[dict[str, str]]:
    """Read and validate ``<folder>/metadata.csv``.

    Returns one dict per row with the :data:`METADATA_COLUMNS` (all ``str``) and
    ``file`` replaced by the absolute path. Raises :class:`CorpusError` naming the
    CSV line (header = line 1) and utterance for: missing or unexpected columns,
    empty values, unknown accent/gender/emotion, duplicate utterance ids, a file
    path that is absolute or leaves the folder, or a file that does not exist.
    Raises FileNotFoundError if the folder or metadata.csv is missing.
    """
    root = Path(folder).expanduser().resolve()
    meta = root / METADATA_FILE
    if not meta.is_file():
        raise FileNotFoundError(f"corpus metadata not found: {meta} "
                                f"(generate the corpus with scripts/make_assets.py)")
    with open(meta, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in METADATA_COLUMNS if c not in header]
        extra = [c for c in header if c not in METADATA_COLUMNS]
        if missing or extra:
            raise CorpusError(f"{meta}: header {header} has missing columns {missing} and "
                              f"unexpected columns {extra}; expected exactly {list(METADATA_COLUMNS)}")
        raw_rows = list(reader)
    if not raw_rows:
        raise CorpusError(f"{meta}: no rows after the header; expected at least one utterance")

    rows, seen_ids = [], {}
    for line, raw in enumerate(raw_rows, start=2):
        uid = (raw.get("utterance_id") or "").strip()
        where = f"{meta} line {line} (utterance_id {uid!r})"
        if None in raw:  # DictReader puts surplus fields under the key None
            raise CorpusError(f"{where}: {len(header) + len(raw[None])} fields, "
                              f"expected {len(header)} ({list(METADATA_COLUMNS)})")
        empty = [c for c in METADATA_COLUMNS if raw.get(c) is None or not raw[c].strip()]
        if empty:
            raise CorpusError(f"{where}: empty value(s) in column(s) {empty}")
        row = {c: raw[c].strip() for c in METADATA_COLUMNS}
        if row["emotion"] not in EMOTIONS:
            raise CorpusError(f"{where}: unknown emotion {row['emotion']!r}; "
                              f"expected one of helpers.tokens.EMOTIONS {list(EMOTIONS)}")
        if row["accent"] not in ACCENTS:
            raise CorpusError(f"{where}: unknown accent {row['accent']!r}; expected one of {list(ACCENTS)}")
        if row["gender"] not in GENDERS:
            raise CorpusError(f"{where}: unknown gender {row['gender']!r}; expected one of {list(GENDERS)}")
        if uid in seen_ids:
            raise CorpusError(f"{where}: duplicate utterance_id, first used on line {seen_ids[uid]}")
        seen_ids[uid] = line
        rel = Path(row["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise CorpusError(f"{where}: file {row['file']!r} must be a path relative to {root} "
                              f"that stays inside it")
        path = root / rel
        if not path.is_file():
            raise CorpusError(f"{where}: audio file {row['file']!r} not found at {path}")
        row["file"] = str(path)
        rows.append(row)
    return rows


def load_local_corpus(folder: str | os.PathLike | None = None, split: str = "train"):
    """The corpus in ``folder`` as a ``datasets.Dataset`` with :data:`DATASET_COLUMNS`.

    ``audio`` is ``Audio(decode=False)`` holding ``{"bytes": None, "path": <absolute
    path>}``; decode rows with :func:`decode_example_audio`. ``dataset`` is
    ``"assets"`` on every row. Rows keep metadata.csv's order. ``folder`` defaults to
    ``assets/corpus`` for ``split="train"`` and ``assets/corpus_rejects`` for
    ``split="rejects"``. Metadata errors raise :class:`CorpusError` (see
    :func:`read_metadata`).
    """
    if split not in SPLITS:
        raise ValueError(f"the assets corpus has splits {list(SPLITS)}, got split={split!r}")
    if folder is None:
        folder = ASSETS_CORPUS_DIR if split == "train" else ASSETS_REJECTS_DIR
    # Imported here so that importing helpers.data.corpus stays cheap.
    import datasets

    rows = read_metadata(folder)
    columns = {
        "audio": [r["file"] for r in rows],
        **{c: [r[c] for r in rows] for c in METADATA_COLUMNS if c != "file"},
        "dataset": [ASSETS_CORPUS] * len(rows),
    }
    features = datasets.Features({
        "audio": datasets.Value("string"),
        **{c: datasets.Value("string") for c in DATASET_COLUMNS if c != "audio"},
    })
    ds = datasets.Dataset.from_dict({c: columns[c] for c in DATASET_COLUMNS}, features=features,
                                    split=datasets.Split(split))
    # A path string cast to Audio becomes {"bytes": None, "path": path}, as local-file
    # datasets on the hub do; decode=False keeps torchcodec out of the loop.
    return ds.cast_column("audio", datasets.Audio(decode=False))


def decode_example_audio(example: dict, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode one row's ``audio`` (bytes or path) with soundfile at its native rate.

    Returns ``(wav, sr)``: float32 ``(n,)`` in [-1, 1] when ``mono`` (channels
    averaged), else ``(n, channels)``; ``sr`` in Hz (24,000 for this corpus).
    Works the same for hub rows (``bytes`` set) and local rows (``path`` only).
    """
    if not isinstance(example, dict) or "audio" not in example:
        got = sorted(example) if isinstance(example, dict) else type(example).__name__
        raise KeyError(f"expected a dataset row with an 'audio' column, got {got}")
    return decode_audio_field(example["audio"], mono=mono)
