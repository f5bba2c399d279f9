"""``01_preprocess``: stream every source, keep or reject every row, pick each phase's clips.

The per-clip analysis lives in :mod:`helpers.data.clips` (re-exported here: ``pp.preprocess_row``,
``pp.REASONS``, ...); reading a source (pinned revision, resume points) in
:mod:`helpers.data.source_stream`. This module is the driver and the report.

Resuming (why a disconnect loses minutes, and a rerun gives the same bytes)
--------------------------------------------------------------------------
A source is processed in *pieces* of ``checkpoint_rows`` source rows (default 1,000:
about 2 h of LibriTTS-R audio, under a minute with 8 workers). After each piece::

    parts/<source>/piece-NNNNN.parquet     the piece's manifest records (atomic write)
    sources.json                           pin + resume points of every source (atomic write)

``sources.json`` holds, per source, the pin (Hub commit sha or local fingerprint), the
number of saved pieces and the resume point (row index + ``datasets`` stream state) at the
start of every piece. Each piece also carries its own index, pin, start point and the point
where the next piece starts (parquet key-value metadata ``optimumllm.piece``): on Colab's Drive
mount files reach Drive in no guaranteed order, so after a VM death any subset of the pieces and
any version of ``sources.json`` may be there. A rerun therefore trusts the pieces, not the count:
it loads the run of consecutive pieces from 0 whose metadata chain up (same pin, each start = the
previous piece's next), rebuilds the pieces count and resume points from them, drops every later
piece (a gap, or one written after), and restarts the stream at the next resume point. Piece
boundaries depend only on row indices, so an interrupted run and an uninterrupted one
write the same pieces, the same ``parts/<source>.parquet`` (the pieces concatenated once
the source is finished) and a byte-identical ``manifest.parquet`` (tested with SIGKILL).
02 reuses the resume points to start its own stream near the first clip it still needs.

Progress bookkeeping is O(1) per clip (running counters; the old bar re-summed every
record for every clip: hours of overhead on a 354k-row source).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import audio
from .clips import KEPT, MANIFEST_COLUMNS, REJECTED, Processed, preprocess_row, records_frame
from ..clip_audio import DEFAULT_CONFIG, REASONS, PreprocessConfig
from ..profiles import Profile
from ..replan import Replan
from .source_stream import ResumePoint, Source, SourceReader, process_rows
from .catalog import PHASES
from .sampling import ShortfallWarning, sample_phase

DUPLICATE = "duplicate"  # status of a row already processed from an earlier source (same utterance_id)

# ----------------------------------------------------------------------------- the 01 run
MANIFEST_FILE = "manifest.parquet"
REPORT_FILE = "report.json"
SOURCES_FILE = "sources.json"  # per source: pin, saved pieces, resume points (see the module docstring)
PARTS_DIR = "parts"  # parts/<source>.parquet when a source is finished; parts/<source>/piece-*.parquet before
SAMPLES_DIR = "samples"  # a few clips to listen to (not used for training)
PHASE_COLUMNS: tuple[str, ...] = ("phase1", "phase2", "phase3")
CHECKPOINT_ROWS = 1000  # source rows per saved piece: a disconnect loses at most this many rows of work


def _atomic_parquet(df, path: Path) -> Path:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _atomic_json(obj, path: Path) -> Path:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=float)
    os.replace(tmp, path)
    return path


PIECE_META = b"optimumllm.piece"  # a piece's own index, pin, start and next resume point (JSON)


def _json_roundtrip(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=float))


def _atomic_piece(df, path: Path, meta: dict) -> Path:
    """One atomic parquet file holding a piece's records AND where it sits in the stream."""
    import pyarrow as pa

    from .shards import write_parquet_atomic  # imports pyarrow: kept out of this module's import time

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PIECE_META: json.dumps(meta, sort_keys=True, default=float).encode()})
    return write_parquet_atomic(table, path)


def _piece_meta(path: Path, data: bytes | None = None) -> dict | None:
    """A piece's own metadata (``{"k", "pin", "start", "next"}``), None for a damaged or old piece.

    ``data``: the file's bytes, read with :func:`helpers.data.shards.read_bytes_retrying` (an I/O error
    there raises and the piece is kept: only bad bytes make a piece "damaged" and redone)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .shards import read_bytes_retrying

    if data is None:
        data = read_bytes_retrying(path, "01: saved piece")
    try:
        raw = (pq.read_schema(pa.BufferReader(data)).metadata or {}).get(PIECE_META)
    except Exception:  # a truncated or foreign file: not a piece of this run, it is redone
        return None
    if raw is None:
        return None
    meta = json.loads(raw)
    meta["pin"] = _json_roundtrip(meta["pin"])
    return meta


def read_sources(out_dir: str | os.PathLike) -> dict:
    """``sources.json`` of a 01 run: source key -> ``{"pin", "pieces", "points", "done"}``.

    ``points`` is a list of ``[row_index, datasets stream state]``, one per piece start.
    """
    path = Path(out_dir) / SOURCES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no source pins at {path}; run 01_preprocess (this version) first")
    return json.loads(path.read_text())


class _Duplicate:
    """A row whose utterance id an earlier row already used: recorded, never analysed."""

    def __init__(self, record: dict):
        self.record = record


def _row_outcome(row, cfg: PreprocessConfig):
    # Worker function of 01 (module level: process pools pickle it by name).
    if isinstance(row, _Duplicate):
        return row.record, None
    return preprocess_row(row, cfg)


def _row_uid(row):
    if isinstance(row, dict):
        return row.get("utterance_id")
    detail = getattr(row, "detail", "") or ""
    return detail.split(": ", 1)[0] if ": " in detail else None


class _SourceRun:
    """One source's pieces and resume points on disk (``parts/<key>/`` and its entry in sources.json)."""

    def __init__(self, out: Path, source: Source, entry: dict, all_entries: dict):
        self.out, self.source, self.entry, self.all = out, source, entry, all_entries
        self.folder = out / PARTS_DIR / source.key

    def piece_path(self, k: int) -> Path:
        return self.folder / f"piece-{k:05d}.parquet"

    def load_pieces(self):
        """The consecutive self-describing pieces from 0 (any later or unchained one is deleted and
        redone); sets the entry's pieces count and resume points from them, not from sources.json."""
        import pandas as pd

        import io

        from .shards import read_bytes_retrying

        frames, points = [], [self.entry["points"][0]]
        while self.piece_path(len(frames)).is_file():
            # read once, retried: an I/O error (a dropped mount) raises and deletes nothing below
            data = read_bytes_retrying(self.piece_path(len(frames)), "01: saved piece")
            meta = _piece_meta(self.piece_path(len(frames)), data)
            if (meta is None or meta["k"] != len(frames) or meta["pin"] != _json_roundtrip(self.entry["pin"])
                    or meta["start"] != points[-1]):
                break
            frames.append(pd.read_parquet(io.BytesIO(data)))
            if meta["next"] is None:
                break
            points.append(meta["next"])
        if self.folder.is_dir():  # a piece after a gap, or written after the chain ends, is redone
            for p in self.folder.glob("piece-*.parquet"):
                if int(p.stem.split("-")[1]) >= len(frames):
                    p.unlink()
        self.entry["pieces"], self.entry["points"] = len(frames), points
        return frames

    def save_piece(self, records: list[dict], next_point: ResumePoint | None) -> None:
        k = self.entry["pieces"]
        meta = {"k": k, "pin": self.entry["pin"], "start": self.entry["points"][k],
                "next": None if next_point is None else [next_point.index, next_point.state]}
        _atomic_piece(records_frame(records), self.piece_path(k), meta)
        self.entry["pieces"] = k + 1
        if next_point is not None:
            self.entry["points"].append([next_point.index, next_point.state])
        _atomic_json(self.all, self.out / SOURCES_FILE)

    def finish(self):
        import pandas as pd

        pieces = [pd.read_parquet(self.piece_path(k)) for k in range(self.entry["pieces"])]
        df = pd.concat(pieces, ignore_index=True) if pieces else records_frame([])
        df = df.sort_values("source_index", kind="stable").reset_index(drop=True)
        _atomic_parquet(df, self.out / PARTS_DIR / f"{self.source.key}.parquet")
        self.entry["done"] = True
        _atomic_json(self.all, self.out / SOURCES_FILE)
        shutil.rmtree(self.folder, ignore_errors=True)


def _process_source(run: _SourceRun, reader: SourceReader, seen_ids: set, cfg: PreprocessConfig, workers: int,
                    samples_dir: Path | None, n_samples: int, sample_counts: dict, progress: bool,
                    checkpoint_rows: int) -> None:
    source = run.source
    kept_s, n_kept, n_rejected = 0.0, 0, 0
    for df in run.load_pieces():  # restore what the saved pieces already decided, in stream order
        seen_ids.update(u for u in df["utterance_id"] if u is not None)
        for status, dur in zip(df["status"], df["duration_s"]):
            if status == KEPT:
                kept_s += float(dur)
                n_kept += 1
            n_rejected += status == REJECTED
    target_s = None if source.max_hours is None else source.max_hours * 3600.0
    if (target_s is not None and kept_s >= target_s) or len(run.entry["points"]) <= run.entry["pieces"]:
        return run.finish()  # the last piece was saved before an interruption: nothing left to stream
    index, state = run.entry["points"][run.entry["pieces"]]
    start = ResumePoint(int(index), state)
    audio_by_index: dict = {}
    states: dict = {}

    def pairs():
        for i, row, st in reader.rows(source, run.entry["pin"], start, checkpoint_rows):
            if st is not None:
                states[i] = st
            uid = _row_uid(row)
            if isinstance(row, dict) and uid is not None and uid in seen_ids:
                # processed from an earlier row already (checked at read time: same answer for any workers)
                row = _Duplicate(_duplicate_record(uid, source))
            elif uid is not None:
                seen_ids.add(uid)
            if isinstance(row, dict) and samples_dir is not None:
                audio_by_index[i] = row.get("audio")  # for the rejected-clip samples only
            yield i, row

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = (tqdm(total=round(source.max_hours, 3), unit="h kept", desc=source.key, initial=round(kept_s / 3600, 3))
               if source.max_hours is not None else tqdm(unit="clip", desc=source.key, initial=start.index))
    records: list[dict] = []
    # 01 re-plans itself from its measured rate (kept audio hours per wall hour of this source)
    rp = (Replan(f"01 {source.key}", source.max_hours, "kept audio-h", done=kept_s / 3600.0,
                 printer=bar.write if bar is not None else print) if source.max_hours is not None else None)
    for i, rec, p in process_rows(pairs(), functools.partial(_row_outcome, cfg=cfg), workers):
        rec["dataset"] = rec["dataset"] or source.dataset
        rec["split_role"], rec["source_index"] = source.split_role, i
        records.append(rec)
        if p is not None:
            kept_s += p.duration_s
            n_kept += 1
        n_rejected += rec["status"] == REJECTED
        if rp is not None:
            rp.update(p.duration_s / 3600.0 if p is not None else 0.0)
        src_audio = audio_by_index.pop(i, None)
        if samples_dir is not None:
            _maybe_save_sample(rec, p, src_audio, samples_dir, n_samples, sample_counts)
        if bar is not None:
            bar.update(round(p.duration_s / 3600.0, 6) if (p is not None and target_s) else (0 if target_s else 1))
            bar.set_postfix(kept=n_kept, rejected=n_rejected, refresh=False)  # O(1) per clip
        if target_s is not None and kept_s >= target_s:
            break
        if i in states:  # a piece boundary: save the records and where the next piece starts
            run.save_piece(records, ResumePoint(i + 1, states.pop(i)))
            records = []
    if records:
        run.save_piece(records, None)
    if bar is not None:
        bar.close()
    run.finish()


def _records_if_all_known(reader: SourceReader, source: Source, pin: dict, seen: set) -> list[dict] | None:
    """The manifest records of ``source`` if every row's utterance id is in ``seen``, read from the ids and
    labels alone (:meth:`SourceReader.rows_without_audio`): LibriTTS-R's ``train_clean`` after its ``train``
    (the same clean.100 + clean.360 rows) costs megabytes instead of ~42 GB. The records are those
    :func:`_process_source` would write (duplicates; catalog rejections as such), so the manifest and
    report do not change. None at the first row with a new id, or when the catalog cannot give ids
    without the audio: the source is then streamed as usual."""
    rows = getattr(reader, "rows_without_audio", lambda *a: None)(source, pin)
    if rows is None:
        return None
    records, ids = [], set(seen)
    for i, row in rows:
        uid = _row_uid(row)
        if isinstance(row, dict):
            if uid is None or uid not in ids:
                return None
            rec = _duplicate_record(uid, source)
        else:  # catalog.Rejected: decided from the labels, exactly as the stream would
            rec, _ = preprocess_row(row)
            if uid is not None:
                ids.add(uid)
        rec["dataset"] = rec["dataset"] or source.dataset
        rec["split_role"], rec["source_index"] = source.split_role, i
        records.append(rec)
    return records


def _duplicate_record(uid: str, source: Source) -> dict:
    return {c: None for c in MANIFEST_COLUMNS} | {
        "utterance_id": uid, "dataset": source.dataset, "status": DUPLICATE,
        "reason": "", "detail": "utterance id already processed from an earlier row or source"}


def _maybe_save_sample(rec: dict, p: Processed | None, src_audio, folder: Path, n: int, counts: dict) -> None:
    """Keep up to ``n`` kept clips and ``n`` per rejection reason as 16-bit WAVs for listening."""
    key = KEPT if p is not None else f"rejected_{rec['reason']}"
    if counts.get(key, 0) >= n or rec["utterance_id"] is None or rec["status"] == DUPLICATE:
        return
    name = f"{key}__{rec['utterance_id'].replace(':', '_').replace('/', '_')}.wav"
    if (folder / name).is_file():  # saved before an interruption, already counted
        return
    if p is not None:
        audio.save_wav(folder / name, p.wav, p.sr)
    else:
        return _save_rejected_sample(src_audio, folder / name, counts, key)
    counts[key] = counts.get(key, 0) + 1


def _save_rejected_sample(src, path: Path, counts: dict, key: str) -> None:
    # Rejected clips are saved as decoded (native rate, mono, peak-limited copy) when decodable.
    if src is None:
        return
    try:
        wav, sr = audio.decode_audio_field(src, mono=True)
    except (audio.AudioDecodeError, ValueError, TypeError, FileNotFoundError):
        return  # undecodable: nothing to listen to; the manifest row says why
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 1.0:
        wav = wav / peak
    audio.save_wav(path, wav[: int(10 * sr)], sr)  # first 10 s is enough to hear the problem
    counts[key] = counts.get(key, 0) + 1


def _sample_counts(folder: Path) -> dict:
    counts: dict = {}
    if folder.is_dir():
        for p in folder.glob("*.wav"):
            key = p.name.split("__", 1)[0]
            counts[key] = counts.get(key, 0) + 1
    return counts


def run_preprocess(out_dir: str | os.PathLike, sources: list[Source], *, cfg: PreprocessConfig = DEFAULT_CONFIG,
                   hours_scale: float = 1.0, seed: int = 0, workers: int = 1, n_samples: int = 3,
                   reader: SourceReader | None = None, checkpoint_rows: int = CHECKPOINT_ROWS,
                   progress: bool = True):
    """Stream ``sources``, keep or reject every row, pick each phase's clips, write the manifest.

    Writes into ``out_dir`` (``RunPaths.preprocess``): ``sources.json`` (pins and resume
    points), ``parts/<dataset>__<role>.parquet`` per finished source (``parts/<key>/piece-*``
    while it runs; see the module docstring), ``manifest.parquet`` (columns
    :data:`MANIFEST_COLUMNS` + ``phase1..3`` booleans, rows in stream order), ``report.json``
    (:func:`build_report`), and ``samples/*.wav`` to listen to. ``reader`` streams the sources
    (default :class:`SourceReader`: the catalog). ``workers`` > 1 gives the same manifest as 1.
    Returns the manifest DataFrame.
    """
    import pandas as pd

    if isinstance(checkpoint_rows, bool) or not isinstance(checkpoint_rows, int) or checkpoint_rows < 1:
        raise ValueError(f"checkpoint_rows must be a positive integer, got {checkpoint_rows!r}")
    out = Path(out_dir)
    reader = reader or SourceReader()
    entries = json.loads((out / SOURCES_FILE).read_text()) if (out / SOURCES_FILE).is_file() else {}
    seen: set = set()
    parts = []
    samples_dir = out / SAMPLES_DIR if n_samples > 0 else None
    sample_counts = _sample_counts(out / SAMPLES_DIR)
    for src in sources:
        part_path = out / PARTS_DIR / f"{src.key}.parquet"
        entry = entries.get(src.key)
        if entry is None:
            entry = entries[src.key] = {"pin": reader.pin(src), "pieces": 0, "points": [[0, None]], "done": False}
            _atomic_json(entries, out / SOURCES_FILE)
        known = None
        if not part_path.is_file() and not entry["pieces"] and seen:
            known = _records_if_all_known(reader, src, entry["pin"], seen)
        if known is not None:  # every row is a duplicate (or a catalog rejection): the audio is never read
            _atomic_parquet(records_frame(known), part_path)
            entry["done"] = True
            _atomic_json(entries, out / SOURCES_FILE)
        elif not part_path.is_file():
            if entry["pieces"]:
                reader.check(src, entry["pin"])  # resuming mid-source: the data must be what was pinned
            # a copy: rows read ahead by the worker pool past the hours target must not count as seen
            _process_source(_SourceRun(out, src, entry, entries), reader, set(seen), cfg, workers, samples_dir,
                            n_samples, sample_counts, progress, checkpoint_rows)
        df = pd.read_parquet(part_path)
        seen.update(u for u in df["utterance_id"] if u is not None)
        parts.append(df)
    manifest = pd.concat(parts, ignore_index=True) if parts else records_frame([])
    manifest = assign_phases(manifest, sources, hours_scale, seed)
    _atomic_parquet(manifest, out / MANIFEST_FILE)
    report = build_report(manifest)
    report["config"] = asdict(cfg)
    report["sources"] = [asdict(s) for s in sources]
    report["pins"] = {k: e["pin"] for k, e in entries.items()}
    report["hours_scale"], report["seed"] = hours_scale, seed
    _atomic_json(report, out / REPORT_FILE)
    return manifest


def read_manifest(out_dir: str | os.PathLike):
    """The manifest 01 wrote (``RunPaths.preprocess``); FileNotFoundError names the notebook to run."""
    import pandas as pd

    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing manifest at {path}; run 01_preprocess first")
    return pd.read_parquet(path)


def assign_phases(manifest, sources: list[Source], hours_scale: float, seed: int):
    """Add ``phase1..3`` columns: which kept clips ``sampling.sample_phase`` draws for each phase.

    Pools: for each phase entry (dataset, split role), the kept clips streamed from
    that source (duplicates count for the later source too). With the assets corpus
    (tiny profile) every entry draws from the one corpus pool, so phases overlap.
    """
    import warnings

    m = manifest.copy()
    kept = m[m["status"] == KEPT]
    dur = dict(zip(kept["utterance_id"], kept["duration_s"]))
    spk = dict(zip(kept["utterance_id"], kept["speaker"]))
    assets_only = [s.dataset for s in sources] == ["assets"]
    pools: dict[str, list[dict]] = {}
    if assets_only:
        pool = [{"utterance_id": u, "speaker": spk[u], "duration_s": dur[u]} for u in kept["utterance_id"]]
    for number, ph in PHASES.items():
        chosen: set = set()
        if assets_only:
            pools = {e.dataset: pool for e in ph.entries}
        else:
            pools = {}
            for e in ph.entries:
                rows = m[(m["dataset"] == e.dataset) & (m["split_role"] == e.split_role)]
                ids = [u for u in rows["utterance_id"] if u in dur]
                pools[e.dataset] = [{"utterance_id": u, "speaker": spk[u], "duration_s": dur[u]} for u in ids]
            if not any(pools.values()):
                m[f"phase{number}"] = False
                continue
            # Entries of datasets not streamed (excluded by the notebook's `datasets`) get empty pools.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortfallWarning)  # shortfalls are reported via the selection
            sel = sample_phase(number, pools, seed, scale=hours_scale)
        chosen.update(sel.utterance_ids())
        m[f"phase{number}"] = m["utterance_id"].isin(chosen) & (m["status"] == KEPT)
    return m


# ----------------------------------------------------------------------------- report
def build_report(manifest) -> dict:
    """Counts and hours from a manifest: every row is kept, rejected (by reason) or a duplicate.

    ``rows == kept + rejected + duplicates`` always holds (checked here).
    """
    m = manifest
    kept = m[m["status"] == KEPT]
    rej = m[m["status"] == REJECTED]
    dup = m[m["status"] == DUPLICATE]
    if len(kept) + len(rej) + len(dup) != len(m):
        bad = sorted(set(m["status"]) - {KEPT, REJECTED, DUPLICATE})
        raise ValueError(f"manifest has rows with unknown status {bad}")

    def hours(by):
        return {str(k): float(v) / 3600.0 for k, v in kept.groupby(by)["duration_s"].sum().items()}

    rejections: dict = {}
    for (d, r), n in rej.groupby(["dataset", "reason"]).size().items():
        rejections.setdefault(str(d), {})[str(r)] = int(n)
    phases = {}
    for c in PHASE_COLUMNS:
        if c in m.columns:
            sel = kept[kept[c].astype(bool)]
            phases[c] = {"clips": int(len(sel)), "hours": float(sel["duration_s"].sum() / 3600.0),
                         "speakers": int(sel["speaker"].nunique())}
    return {
        "rows": int(len(m)), "kept": int(len(kept)), "rejected": int(len(rej)), "duplicates": int(len(dup)),
        "kept_hours": float(kept["duration_s"].sum() / 3600.0),
        "rejections_by_dataset_reason": rejections,
        "rejections_by_reason": {str(k): int(v) for k, v in rej.groupby("reason").size().items()},
        "hours_by_dataset": hours("dataset"), "hours_by_accent": hours("accent"),
        "hours_by_emotion": hours("emotion"), "hours_by_gender": hours("gender"),
        "speakers": int(kept["speaker"].nunique()),
        "phases": phases,
    }


def read_report(out_dir: str | os.PathLike) -> dict:
    import json

    path = Path(out_dir) / REPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing report at {path}; run 01_preprocess first")
    return json.loads(path.read_text())


def summary_table(manifest):
    """Per dataset: rows, kept, rejected, duplicates, kept hours (a DataFrame for display)."""
    import pandas as pd

    g = manifest.groupby("dataset")
    t = pd.DataFrame({
        "rows": g.size(),
        "kept": g["status"].apply(lambda s: int((s == KEPT).sum())),
        "rejected": g["status"].apply(lambda s: int((s == REJECTED).sum())),
        "duplicates": g["status"].apply(lambda s: int((s == DUPLICATE).sum())),
        "kept_hours": g.apply(lambda d: d.loc[d["status"] == KEPT, "duration_s"].sum() / 3600.0, include_groups=False),
    })
    for c in PHASE_COLUMNS:
        if c in manifest.columns:
            t[f"{c}_clips"] = g[c].apply(lambda s: int(s.astype(bool).sum()))
    return t


def rejection_table(manifest):
    """Reason x dataset counts of rejected rows (a DataFrame; empty when nothing was rejected)."""
    import pandas as pd

    rej = manifest[manifest["status"] == REJECTED]
    if rej.empty:
        return pd.DataFrame(columns=["reason"])
    t = rej.pivot_table(index="reason", columns="dataset", values="status", aggfunc="size", fill_value=0)
    t["description"] = [REASONS.get(r, "dataset rule (helpers.data.catalog)") for r in t.index]
    return t


def plot_report(manifest):
    """Hours per dataset/accent/emotion/speaker, duration + loudness histograms, rejections (a Figure)."""
    import matplotlib.pyplot as plt

    kept = manifest[manifest["status"] == KEPT]
    fig, axes = plt.subplots(2, 4, figsize=(18, 7))
    for ax, col in zip(axes[0], ("dataset", "accent", "emotion", "speaker")):
        h = kept.groupby(col)["duration_s"].sum().sort_values(ascending=False) / 3600.0
        h.head(25).plot.bar(ax=ax)
        ax.set_title(f"kept hours per {col}" + (" (top 25)" if len(h) > 25 else ""))
        ax.set_ylabel("hours")
    axes[1, 0].hist(kept["duration_s"], bins=30)
    axes[1, 0].set_title("duration of kept clips (s)")
    axes[1, 1].hist(kept["loudness_lufs"], bins=30)
    axes[1, 1].set_title("loudness after normalisation (LUFS)")
    axes[1, 2].hist(kept["snr_db"].clip(upper=100), bins=30)
    axes[1, 2].set_title("estimated SNR of kept clips (dB)")
    rej = manifest[manifest["status"] == REJECTED]["reason"].value_counts()
    if len(rej):
        rej.plot.barh(ax=axes[1, 3])
    axes[1, 3].set_title(f"rejections by reason ({int(rej.sum())})")
    fig.tight_layout()
    return fig


def sample_clips(out_dir: str | os.PathLike) -> list[Path]:
    """The listening samples 01 saved (kept first, then rejected by reason)."""
    folder = Path(out_dir) / SAMPLES_DIR
    return sorted(folder.glob("*.wav"), key=lambda p: (not p.name.startswith(KEPT), p.name)) if folder.is_dir() else []


def config_from_report(out_dir: str | os.PathLike) -> PreprocessConfig:
    """The :class:`PreprocessConfig` 01 used (from report.json): 02 must preprocess identically."""
    return PreprocessConfig(**read_report(out_dir)["config"])


def default_workers(profile: Profile) -> int:
    """Preprocessing processes: the profile's ``preprocess_workers``, else every CPU core (Colab)."""
    return profile.preprocess_workers or max(1, os.cpu_count() or 1)
