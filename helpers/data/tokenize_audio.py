"""Tokenization (``02_tokenize``): the clips 01 kept -> SNAC codes in resumable parquet shards.

No WAV is ever stored: the source is streamed again at the revision 01 pinned
(``source_stream.SourceReader``; a changed source is refused), and the clips the
manifest selected are rebuilt by applying 01's recorded decisions (trim bounds, gain:
``clips.replay_row``) — no second analysis, bit-identical to what 01 measured. Rows
01 rejected or did not select are streamed past without decoding or analysis.
The stream starts at 01's last resume point before the first clip still needed, so
a rerun re-reads about one 01 piece (``checkpoint_rows`` rows), not the source.

Shard plan (why reruns are exact): the selected clips (kept and in at least one
phase), in manifest order, are cut into shards of ``shard_size`` utterances;
shard k always holds the same utterances in the same order. Inside the run,
clips are gathered in windows (``window`` clips, default 4 x ``batch_seconds`` of
audio), and ``encode_batch`` sorts each window by length into batches of at most
``batch_seconds`` padded seconds (batched codes equal one-by-one codes, see
helpers.codec), so the codes do not depend on how the work was split. Memory
holds one window of audio plus the codes of open shards.

Files in ``RunPaths.tokens``::

    plan.json                 shard size, number of utterances, hash of the id list
    shard-00000.parquet ...   complete shards (helpers.data.shards; atomic rename)
    .partial/shard-0000k/     part-NNNNN.parquet: encoded pieces of an unfinished shard
    speakers.json             speaker -> utterance ids (cloning references)
    phases.json               "1"/"2"/"3" -> utterance ids of each training phase

A rerun skips complete shards, loads the parts of the unfinished one and encodes
only what is missing; a run killed at any point and rerun gives byte-identical shards.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import preprocess as pp, clips, source_stream
from .. import clip_audio
from ..profiles import DEFAULT_ENCODE_BATCH_SECONDS
from ..replan import CU_PER_A100_HOUR, Replan
from .shards import Utterance, list_shards, read_shard, shard_path, write_shard

PLAN_FILE = "plan.json"
SPEAKERS_FILE = "speakers.json"
PHASES_FILE = "phases.json"
PARTIAL_DIR = ".partial"
# Decoded clips held ready while SNAC encodes: <= 32 x 30 s x 24 kHz float32 = 92 MB at worst, and enough
# to ride out a slow stretch of the stream (a new parquet file, a Hub hiccup).
PREFETCH_CLIPS = 32


def selected_rows(manifest):
    """Kept rows that some phase selected, in manifest order (the shard plan's input)."""
    m = manifest[manifest["status"] == clips.KEPT]
    phase_cols = [c for c in pp.PHASE_COLUMNS if c in m.columns]
    if not phase_cols:
        raise ValueError(f"manifest has no phase columns {pp.PHASE_COLUMNS}; rerun 01_preprocess")
    mask = m[phase_cols].astype(bool).any(axis=1)
    sel = m[mask].reset_index(drop=True)
    if sel["utterance_id"].duplicated().any():
        dup = sel.loc[sel["utterance_id"].duplicated(), "utterance_id"].tolist()[:5]
        raise ValueError(f"manifest selects utterance ids more than once: {dup}")
    return sel


def shard_plan(ids: list[str], shard_size: int) -> list[list[str]]:
    """Consecutive chunks of ``shard_size`` ids (the last may be shorter)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    return [ids[i: i + shard_size] for i in range(0, len(ids), shard_size)]


def _check_plan(folder: Path, ids: list[str], shard_size: int, codec_name: str, pins: dict) -> None:
    plan = {"shard_size": shard_size, "n_utterances": len(ids), "codec": codec_name,
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            "pins_sha256": hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()}
    path = folder / PLAN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != plan:
            diff = {k: (old.get(k), v) for k, v in plan.items() if old.get(k) != v}
            raise ValueError(f"{folder} holds shards of a different plan (changed: {diff}); tokenize into a "
                             f"new folder or delete {folder} to start over")
        return
    pp._atomic_json(plan, path)


def _partial_dir(folder: Path, k: int) -> Path:
    return folder / PARTIAL_DIR / shard_path(folder, k).stem


def _load_parts(folder: Path, k: int) -> dict[str, Utterance]:
    d = _partial_dir(folder, k)
    got: dict[str, Utterance] = {}
    if d.is_dir():
        for p in sorted(d.glob("part-*.parquet")):
            for u in read_shard(p):
                got[u.utterance_id] = u
    return got


def _write_part(folder: Path, k: int, utts: list[Utterance]) -> None:
    d = _partial_dir(folder, k)
    d.mkdir(parents=True, exist_ok=True)
    n = len(list(d.glob("part-*.parquet")))
    write_shard(d / f"part-{n:05d}.parquet", utts)


def _utterance(row, codes) -> Utterance:
    return Utterance(utterance_id=row["utterance_id"], dataset=row["dataset"], speaker=row["speaker"],
                     accent=row["accent"], gender=row["gender"], emotion=row["emotion"], text=row["text"],
                     duration_s=float(row["duration_s"]), codes=codes)


def run_tokenize(tokens_dir: str | os.PathLike, manifest, codec, *, sources: dict, shard_size: int = 512,
                 batch_seconds: float = DEFAULT_ENCODE_BATCH_SECONDS, window: int | None = None, workers: int = 1,
                 cfg: clip_audio.PreprocessConfig = clip_audio.DEFAULT_CONFIG, reader: source_stream.SourceReader | None = None,
                 progress: bool = True, prefetch: int = PREFETCH_CLIPS) -> dict:
    """Encode every selected clip of ``manifest`` into shards under ``tokens_dir``; resumable.

    ``codec``: a loaded :class:`helpers.codec.SnacCodec`. ``sources``: 01's pins and resume
    points (``preprocess.read_sources(RunPaths.preprocess)``). ``batch_seconds``: padded audio
    seconds per SNAC forward pass (halved on CUDA OOM, see ``SnacCodec.encode_batch``);
    ``window``: clips gathered before encoding (default: ``4 * batch_seconds`` of audio);
    ``workers``: decode/resample processes. ``reader`` streams sources (default the catalog's).
    ``cfg`` must be the config 01 used. ``prefetch``: decoded clips a background thread may hold
    ready while SNAC encodes (0: stream, decode and encode in turn). The batches are sized by the
    codec's device (``SnacCodec.batch_plan``: clip by clip on CPU; on CUDA at most ``batch_seconds``,
    lowered to what the free memory holds). Returns a summary dict (``rows_read``: source rows
    streamed by this call).

    Raises :class:`helpers.data.source_stream.SourceChanged` if a source differs from its pin and
    :class:`helpers.data.clips.ReplayError` (a RuntimeError) if a clip 01 kept is missing or changed.
    """
    folder = Path(tokens_dir)
    folder.mkdir(parents=True, exist_ok=True)
    reader = reader or source_stream.SourceReader()
    sel = selected_rows(manifest)
    missing_cols = [c for c in clips.DECISION_COLUMNS if c not in sel.columns]
    if missing_cols:
        raise ValueError(f"the manifest lacks 01's decisions {missing_cols} (written by an older 01); delete the "
                         "run's preprocess folder and rerun 01_preprocess")
    ids = sel["utterance_id"].tolist()
    plan = shard_plan(ids, shard_size)
    keys = sorted({source_stream.Source(d, r).key for d, r in zip(sel["dataset"], sel["split_role"])})
    absent = [k for k in keys if k not in sources]
    if absent:
        raise ValueError(f"01 recorded no pin for source(s) {absent}; rerun 01_preprocess (this version)")
    _check_plan(folder, ids, shard_size, getattr(codec, "name", type(codec).__name__),
                {k: sources[k]["pin"] for k in keys})
    rows = {r["utterance_id"]: r for r in sel.to_dict("records")}
    writer = ShardWriter(folder, plan)
    needed = writer.needed(ids)
    window_s = 4.0 * float(batch_seconds)
    plan_fn = getattr(codec, "batch_plan", None)  # a SnacCodec sizes batches by its device
    batch_seconds, batch_size = plan_fn(batch_seconds) if plan_fn is not None else (batch_seconds, None)

    def encode(buffer):
        codes = codec.encode_batch([w for _, w in buffer], batch_seconds=batch_seconds, batch_size=batch_size)
        rp.update(sum(float(r["duration_s"]) for r, _ in buffer) / 3600.0)  # 02 re-plans from its measured rate
        return codes

    if progress and needed:
        from tqdm.auto import tqdm
        writer.bar = tqdm(total=len(needed), unit="clip", desc="tokenize")

    remaining = set(needed)
    rows_read = 0
    on_gpu = getattr(getattr(codec, "device", None), "type", "cpu") == "cuda"
    rp = Replan("02 tokenize", sum(float(rows[u]["duration_s"]) for u in needed) / 3600.0, "audio-h",
                cu_per_hour=CU_PER_A100_HOUR if on_gpu else None,
                printer=writer.bar.write if writer.bar is not None else print)
    replay = functools.partial(clips.replay_row, cfg=cfg)
    for (dataset, role) in _sources_in_order(sel, remaining):
        src = source_stream.Source(dataset, role)
        entry = sources[src.key]
        reader.check(src, entry["pin"])
        want = {int(rows[u]["source_index"]): u for u in remaining
                if rows[u]["dataset"] == dataset and rows[u]["split_role"] == role}
        first = min(want)
        start = source_stream.ResumePoint(*max((p for p in entry["points"] if int(p[0]) <= first), key=lambda p: int(p[0])))
        stream = _WantedRows(reader.rows(src, entry["pin"], start), want, rows, start.index - 1)
        buffer: list = []
        buffered_s = 0.0
        decoded = source_stream.process_rows(stream, replay, workers)
        for uid, wav in (prefetched(decoded, prefetch) if prefetch > 0 else decoded):
            remaining.discard(uid)
            buffer.append((rows[uid], wav))
            buffered_s += float(rows[uid]["duration_s"])
            if (len(buffer) >= window) if window else (buffered_s >= window_s):
                writer.add(buffer, encode(buffer))
                buffer, buffered_s = [], 0.0
        if buffer:
            writer.add(buffer, encode(buffer))
        rows_read += stream.rows_read
        if want:
            raise clips.ReplayError(f"{len(want)} clip(s) kept by 01 were not found in {dataset}/{role} (the stream "
                                    f"ended at row {stream.last_index}): {sorted(want.values())[:5]}; the source "
                                    "changed since preprocessing — rerun 01")
    writer.close()
    if remaining or writer.open_shards:
        raise RuntimeError(f"tokenization incomplete: {len(remaining)} clip(s) not encoded, "
                           f"open shards {sorted(writer.open_shards)}")
    partial = folder / PARTIAL_DIR
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    index = write_indexes(folder, manifest)
    return {"shards": len(plan), "utterances": len(ids), "encoded_now": len(needed),
            "encoded_hours_now": writer.encoded_s / 3600.0, "speakers": len(index), "rows_read": rows_read,
            "hours": float(sel["duration_s"].sum() / 3600.0)}


def prefetched(items, depth: int):
    """Yield ``items`` in order while a background thread produces up to ``depth`` of them ahead.

    02's producer is the source stream plus the replay (download, FLAC decode and soxr release the
    GIL for most of their time) and its consumer the SNAC encoder (torch releases it too): the two
    overlap instead of alternating. The order, and so every byte written, is the order of ``items``.
    An exception in the producer is raised here, at the item where it happened; closing this
    generator (a break, an error in the consumer) stops the producer at its next item.
    """
    import queue
    import threading

    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"prefetch depth must be a positive integer, got {depth!r}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for x in items:
                if not put((None, x)):
                    return
            put((None, end))
        except BaseException as e:  # handed to the consumer, raised there
            put((e, None))

    t = threading.Thread(target=produce, name="02-prefetch", daemon=True)
    t.start()
    try:
        while True:
            err, x = q.get()
            if err is not None:
                raise err
            if x is end:
                return
            yield x
    finally:
        stop.set()
        t.join(timeout=5)


class _WantedRows:
    """The rows of one source stream that 02 wants, as ``(utterance_id, (source row, manifest row))``;
    stops as soon as every wanted row was seen. Counts the rows read and the last source index."""

    def __init__(self, stream, want: dict[int, str], rows: dict, last_index: int):
        self.stream, self.want, self.rows = stream, want, rows
        self.rows_read, self.last_index = 0, last_index

    def __iter__(self):
        for i, row, _ in self.stream:
            self.rows_read += 1
            self.last_index = i
            uid = self.want.pop(i, None)
            if uid is not None:
                yield uid, (row, self.rows[uid])
            if not self.want:
                return


class ShardWriter:
    """Encoded clips -> the shards of ``plan``, resumably.

    A shard is written (atomically) once all its clips are encoded; until then each batch of its
    clips is saved as a part file under ``PARTIAL_DIR`` so progress inside an unfinished shard
    survives a kill. Finished shards found on disk are skipped; parts found on disk are loaded.
    """

    def __init__(self, folder: Path, plan: list[list[str]]):
        self.folder, self.plan = folder, plan
        self.shard_of = {u: k for k, chunk in enumerate(plan) for u in chunk}
        self.done = {k for k in range(len(plan)) if shard_path(folder, k).is_file()}
        for k in self.done:  # a kill between the final rename and the cleanup leaves parts behind
            shutil.rmtree(_partial_dir(folder, k), ignore_errors=True)
        self.have: dict[int, dict[str, Utterance]] = {k: _load_parts(folder, k) for k in range(len(plan))
                                                       if k not in self.done}
        self.encoded_s = 0.0
        self.bar = None  # a tqdm bar, updated per batch

    @property
    def open_shards(self) -> list[int]:
        return sorted(self.have)

    def needed(self, ids: list[str]) -> list[str]:
        """The utterances of ``ids`` that are in neither a finished shard nor a saved part."""
        return [u for u in ids if self.shard_of[u] not in self.done and u not in self.have[self.shard_of[u]]]

    def add(self, buffer: list, codes: list) -> None:
        """Record one encoded batch: ``buffer`` is ``[(manifest row, wav)]``, ``codes`` its SNAC codes."""
        touched: dict[int, list[Utterance]] = {}
        for (row, _), c in zip(buffer, codes):
            u = _utterance(row, c)
            touched.setdefault(self.shard_of[u.utterance_id], []).append(u)
            self.encoded_s += float(row["duration_s"])
        for k, utts in touched.items():
            for u in utts:
                self.have[k][u.utterance_id] = u
            if len(self.have[k]) < len(self.plan[k]):
                _write_part(self.folder, k, utts)  # progress inside an unfinished shard survives a kill
        self._finish_shards()
        if self.bar is not None:
            self.bar.update(len(buffer))
            self.bar.set_postfix(audio_h=round(self.encoded_s / 3600.0, 3), shards=len(self.done))

    def _finish_shards(self) -> None:
        for k in sorted(self.have):
            if len(self.have[k]) == len(self.plan[k]):
                write_shard(shard_path(self.folder, k), [self.have[k][u] for u in self.plan[k]])
                shutil.rmtree(_partial_dir(self.folder, k), ignore_errors=True)
                self.done.add(k)
                del self.have[k]

    def close(self) -> None:
        self._finish_shards()
        if self.bar is not None:
            self.bar.close()


def _sources_in_order(sel, remaining: set) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for d, r, u in zip(sel["dataset"], sel["split_role"], sel["utterance_id"]):
        if u in remaining and (d, r) not in out:
            out.append((d, r))
    return out


# ----------------------------------------------------------------------------- indexes
def write_indexes(tokens_dir: str | os.PathLike, manifest) -> dict[str, list[str]]:
    """Write ``speakers.json`` (from the shards) and ``phases.json`` (from the manifest) atomically."""
    import pyarrow.parquet as pq

    folder = Path(tokens_dir)
    index: dict[str, list[str]] = {}
    in_shards: set = set()
    for p in list_shards(folder):
        t = pq.read_table(p, columns=["utterance_id", "speaker"]).to_pydict()
        for u, s in zip(t["utterance_id"], t["speaker"]):
            index.setdefault(s, []).append(u)
            in_shards.add(u)
    pp._atomic_json(index, folder / SPEAKERS_FILE)
    phases = {}
    kept = manifest[manifest["status"] == clips.KEPT]
    for n, col in enumerate(pp.PHASE_COLUMNS, start=1):
        ids = kept.loc[kept[col].astype(bool), "utterance_id"].tolist() if col in kept.columns else []
        missing = [u for u in ids if u not in in_shards]
        if missing:
            raise RuntimeError(f"phase {n} selects {len(missing)} clip(s) missing from the shards: {missing[:5]}")
        phases[str(n)] = ids
    pp._atomic_json(phases, folder / PHASES_FILE)
    return index


def read_speaker_index(tokens_dir: str | os.PathLike) -> dict[str, list[str]]:
    """speaker -> utterance ids, as 02 wrote it."""
    path = Path(tokens_dir) / SPEAKERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no speaker index at {path}; run 02_tokenize first")
    return json.loads(path.read_text())


def read_phase_ids(tokens_dir: str | os.PathLike, phase: int) -> list[str]:
    """Utterance ids of training phase ``phase`` (1, 2, 3 -> stages 2, 3, 4), in manifest order."""
    path = Path(tokens_dir) / PHASES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no phase selection at {path}; run 02_tokenize first")
    phases = json.loads(path.read_text())
    if str(phase) not in phases:
        raise ValueError(f"phase must be one of {sorted(phases)}, got {phase!r}")
    return phases[str(phase)]


def pick_reference(index: dict[str, list[str]], speaker: str, utterance_id: str, rng: np.random.Generator) -> str | None:
    """A *different* utterance of ``speaker`` (a cloning reference), or None if it has only one."""
    if speaker not in index:
        raise KeyError(f"speaker {speaker!r} is not in the speaker index")
    others = [u for u in index[speaker] if u != utterance_id]
    return others[int(rng.integers(len(others)))] if others else None


# ----------------------------------------------------------------------------- sizes on disk
def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).is_dir() else 0


def data_footprint(preprocess_dir: str | os.PathLike, tokens_dir: str | os.PathLike) -> dict:
    """What 01 and 02 leave on disk, measured, and per hour of audio (for the run plan).

    Returns bytes of the preprocess folder (manifest, parts, sources.json, report, listening
    samples; ``manifest_bytes`` alone) and of the tokens folder (``shards_bytes`` alone), the
    kept hours of the manifest and the hours in the shards, and ``manifest_bytes_per_kept_hour``
    / ``shards_bytes_per_hour``. Missing folders count as 0 bytes (before 01/02 ran).
    """
    import pyarrow.parquet as pq

    pre, tok = Path(preprocess_dir), Path(tokens_dir)
    manifest_path = pre / pp.MANIFEST_FILE
    kept_h = 0.0
    if manifest_path.is_file():
        t = pq.read_table(manifest_path, columns=["status", "duration_s"]).to_pandas()
        kept_h = float(t.loc[t["status"] == clips.KEPT, "duration_s"].sum() / 3600.0)
    shards = list_shards(tok)
    shard_h = sum(float(pq.read_table(p, columns=["duration_s"]).column(0).to_numpy().sum()) for p in shards) / 3600.0
    manifest_b = manifest_path.stat().st_size if manifest_path.is_file() else 0
    shards_b = sum(p.stat().st_size for p in shards)
    return {"preprocess_bytes": _folder_bytes(pre), "manifest_bytes": manifest_b, "kept_hours": kept_h,
            "tokens_bytes": _folder_bytes(tok), "shards_bytes": shards_b, "shard_hours": shard_h,
            "manifest_bytes_per_kept_hour": manifest_b / kept_h if kept_h else None,
            "shards_bytes_per_hour": shards_b / shard_h if shard_h else None}


# ----------------------------------------------------------------------------- notebook views
def shard_table(tokens_dir: str | os.PathLike):
    """One row per shard: utterances, hours, frames, speakers (a DataFrame for display)."""
    import pandas as pd
    import pyarrow.parquet as pq

    rows = []
    for p in list_shards(tokens_dir):
        t = pq.read_table(p, columns=["speaker", "duration_s", "n_frames"]).to_pandas()
        rows.append({"shard": p.name, "utterances": len(t), "hours": t["duration_s"].sum() / 3600.0,
                     "frames": int(t["n_frames"].sum()), "speakers": t["speaker"].nunique(),
                     "MB": p.stat().st_size / 1e6})
    return pd.DataFrame(rows)


def decode_examples(tokens_dir: str | os.PathLike, codec, n: int = 2) -> list[tuple[Utterance, np.ndarray]]:
    """The first ``n`` utterances of the first shard and their decoded 24 kHz waveforms."""
    shards = list_shards(tokens_dir)
    if not shards:
        raise FileNotFoundError(f"no token shards in {tokens_dir}; run 02_tokenize first")
    return [(u, codec.decode(u.codes)) for u in read_shard(shards[0])[:n]]
