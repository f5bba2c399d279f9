"""Token shards: raw SNAC codes per utterance plus metadata, as parquet files.

Shards do not depend on the tokenizer (they hold codes 0..CODEBOOK_SIZE-1, not
vocabulary ids), so vocabulary changes never force re-encoding. ~0.6 GB of
codes hold 1,000 h of speech.

Layout inside ``RunPaths.tokens``::

    shard-00000.parquet   one row per utterance (columns: SHARD_SCHEMA)
    shard-00001.parquet
    ...

A shard is written to a temporary file in the same folder and renamed into
place (``os.replace``), so a shard file that exists is complete.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..colab.drive import require_free_space
from ..tokens import CODES_PER_FRAME, CODEBOOK_SIZE, N_CODEBOOKS

SHARD_PATTERN = re.compile(r"^shard-(\d{5})\.parquet$")

SHARD_SCHEMA = pa.schema([
    ("utterance_id", pa.string()),  # globally unique, "<dataset>:<id>"
    ("dataset", pa.string()),
    ("speaker", pa.string()),  # globally unique, "<dataset>:<speaker>"
    ("accent", pa.string()),  # "us" | "uk" | "other"
    ("gender", pa.string()),  # "male" | "female" | "unknown"
    ("emotion", pa.string()),  # a name in helpers.tokens.EMOTIONS
    ("text", pa.string()),  # normalized transcript (helpers.text)
    ("duration_s", pa.float32()),  # seconds of the preprocessed 24 kHz clip
    ("n_frames", pa.int32()),  # T: CB1 length; CB2 has 2T codes, CB3 4T
    ("cb1", pa.list_(pa.int16())),  # int16 holds 0..4095
    ("cb2", pa.list_(pa.int16())),
    ("cb3", pa.list_(pa.int16())),
])


@dataclass
class Utterance:
    """One encoded utterance. ``codes`` = [cb1 (T,), cb2 (2T,), cb3 (4T,)] int64."""

    utterance_id: str
    dataset: str
    speaker: str
    accent: str
    gender: str
    emotion: str
    text: str
    duration_s: float
    codes: list[np.ndarray] = field(repr=False)

    def __post_init__(self):
        if len(self.codes) != N_CODEBOOKS:
            raise ValueError(f"utterance {self.utterance_id}: expected {N_CODEBOOKS} codebooks, got {len(self.codes)}")
        self.codes = [np.asarray(c, dtype=np.int64).reshape(-1) for c in self.codes]
        t = self.codes[0].shape[0]
        for i, per in enumerate(CODES_PER_FRAME):
            c = self.codes[i]
            if c.shape[0] != per * t:
                raise ValueError(f"utterance {self.utterance_id}: codebook {i + 1} has {c.shape[0]} codes, "
                                 f"expected {per * t} for {t} frames")
            if c.size and (c.min() < 0 or c.max() >= CODEBOOK_SIZE):
                raise ValueError(f"utterance {self.utterance_id}: codebook {i + 1} codes outside 0..{CODEBOOK_SIZE - 1}")

    @property
    def n_frames(self) -> int:
        return int(self.codes[0].shape[0])


def shard_path(folder: str | os.PathLike, index: int) -> Path:
    return Path(folder) / f"shard-{index:05d}.parquet"


def write_shard(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write utterances to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    rows = list(utterances)
    cols: dict[str, list] = {name: [] for name in SHARD_SCHEMA.names}
    for u in rows:
        cols["utterance_id"].append(u.utterance_id)
        cols["dataset"].append(u.dataset)
        cols["speaker"].append(u.speaker)
        cols["accent"].append(u.accent)
        cols["gender"].append(u.gender)
        cols["emotion"].append(u.emotion)
        cols["text"].append(u.text)
        cols["duration_s"].append(float(u.duration_s))
        cols["n_frames"].append(u.n_frames)
        for i in range(N_CODEBOOKS):
            cols[f"cb{i + 1}"].append(u.codes[i].astype(np.int16))
    table = pa.table(cols, schema=SHARD_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the in-memory table bounds the parquet file from above: a full Drive fails here, before writing
    require_free_space(path.parent, table.nbytes, f"token shard {path.name}")
    return write_parquet_atomic(table, path)


def write_parquet_atomic(table, path: str | os.PathLike) -> Path:
    """Write a pyarrow ``table`` to ``path`` through a temp file beside it and ``os.replace``: a reader
    (or Drive) never sees half a file. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def list_shards(folder: str | os.PathLike) -> list[Path]:
    """Complete shard files in ``folder``, in index order (temp files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if SHARD_PATTERN.match(p.name))


READ_RETRIES, READ_WAIT_S = 3, 2.0  # a saved file that fails to READ (a Drive blip) is retried, never redone


def read_bytes_retrying(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a saved file, retried on an I/O error (EIO, ENOTCONN: Drive's mount, not the file).

    A storage error is never taken for a damaged file: after ``READ_RETRIES`` it raises OSError naming
    the file, the errno and the remedy, and the caller keeps the file (deleting it would throw away
    finished work over a blip)."""
    import errno as _errno
    import time

    for attempt in range(READ_RETRIES + 1):
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            if attempt == READ_RETRIES:
                code = e.errno or _errno.EIO
                raise OSError(code, f"{what} {path} cannot be read after {READ_RETRIES + 1} tries (errno {code} "
                              f"{_errno.errorcode.get(code, '?')}: {os.strerror(code)}): a storage error, not a "
                              "damaged file, so it is kept. Remount Drive (drive.mount('/content/drive', "
                              "force_remount=True)) and rerun this notebook", str(path)) from e
            time.sleep(READ_WAIT_S * (attempt + 1))
    raise AssertionError("unreachable")


def read_shard(path: str | os.PathLike) -> list[Utterance]:
    import pyarrow as pa

    data = read_bytes_retrying(path, "token shard")  # an I/O error raises (kept); only bad bytes are "damaged"
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # pyarrow raises several types for damaged files
        raise ValueError(f"token shard {path} is unreadable ({type(e).__name__}: {e}); delete it and rerun tokenization") from e
    missing = [n for n in SHARD_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"token shard {path} lacks columns {missing}; expected {SHARD_SCHEMA.names}")
    d = table.to_pydict()
    return [
        Utterance(
            utterance_id=d["utterance_id"][i], dataset=d["dataset"][i], speaker=d["speaker"][i],
            accent=d["accent"][i], gender=d["gender"][i], emotion=d["emotion"][i], text=d["text"][i],
            duration_s=d["duration_s"][i], codes=[d[f"cb{k + 1}"][i] for k in range(N_CODEBOOKS)],
        )
        for i in range(table.num_rows)
    ]


def iter_utterances(folder: str | os.PathLike) -> Iterator[Utterance]:
    """Every utterance of every complete shard in ``folder``, in shard order."""
    shards = list_shards(folder)
    if not shards:
        raise FileNotFoundError(f"no token shards (shard-NNNNN.parquet) in {folder}; run 02_tokenize first")
    for p in shards:
        yield from read_shard(p)


def speaker_index(utterances: Iterable[Utterance]) -> dict[str, list[str]]:
    """speaker -> utterance ids (in order). Training uses it to pick a *different*
    utterance of the same speaker as a cloning reference."""
    index: dict[str, list[str]] = {}
    for u in utterances:
        index.setdefault(u.speaker, []).append(u.utterance_id)
    return index
