"""How 01 and 02 read a data source: one pinned revision per run, resumable mid-source.

A *source* is one split role of one catalog dataset (:class:`Source`). :class:`SourceReader`
is the ONE way both notebooks read it (``catalog.open_dataset`` + ``catalog.to_common``,
streamed), with two guarantees that make interruptions cheap and reruns exact:

* **Pinned data.** Before 01 streams a source it records a *pin*: for a Hub dataset the
  commit sha of the repository (``huggingface_hub.HfApi().dataset_info(...).sha`` at the
  catalog's revision); for a local corpus (the ``assets`` corpus, or a local folder laid
  out like a Hub repository) a sha256 fingerprint of its files. Every later read — a
  resumed 01, and 02 — streams exactly that commit (``load_dataset(revision=sha)``), and a
  local corpus whose fingerprint changed is refused with a message naming the source. A
  Hub update between 01 and 02 therefore changes nothing.
* **Resume points.** ``datasets`` 4 ``IterableDataset.state_dict()`` is taken every
  ``state_every`` rows (at the row a checkpoint will start from) and restored with
  ``load_state_dict``. For parquet-backed streaming (Hub parquet and local parquet alike)
  the state names the shard (file) and the example inside it: files before it are never
  opened again; inside the file, record batches before the row are read and skipped by
  ``datasets`` (not yielded, not decoded, not analysed). Measured on datasets 4.0.0 with a
  local multi-file parquet repository (tests/data/test_preprocess_resume.py).

Rows come out as ``(source_index, common row or catalog.Rejected, state)`` where ``state``
is None except at the checkpoint rows.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import catalog  # catalog.open_dataset through the module: one name to patch in tests
from .catalog import PHASES, get_spec, to_common
from ..profiles import ASSETS_CORPUS, ASSETS_CORPUS_DIR, ASSETS_REJECTS_DIR

OVERSAMPLE = 1.25  # kept hours gathered per source beyond its largest phase target: room for a balanced draw
# Phase targets are multiplied by this per data source: the tiny corpus holds ~3.4 minutes,
# and 1e-5 turns every phase entry into at least one clip (7 h -> 0.25 s: one clip) while
# phase 1 (1,052 h -> 38 s) stays small enough to encode on a CPU in seconds.
HOURS_SCALE: dict[str, float] = {"hub": 1.0, "assets": 1e-5}  # default per data source; profiles carry their own (Profile.hours_scale)


@dataclass(frozen=True)
class Source:
    """One split role of one catalog dataset, streamed until ``max_hours`` are kept (None: all)."""

    dataset: str
    split_role: str
    max_hours: float | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.split_role}"


def plan_sources(data_source: str, datasets: list[str] | None = None, hours_scale: float | None = None) -> list[Source]:
    """The sources 01 must stream, in order, to fill every phase of ``helpers.data.catalog.PHASES``.

    ``data_source``: a profile's ``data_source`` ("hub" or "assets"). For the hub, each
    (dataset, split role) used by a phase becomes a source with ``max_hours`` = its largest
    phase target x ``hours_scale`` x :data:`OVERSAMPLE`; ``datasets`` limits the choice
    (None = all datasets the phases use). For "assets": the whole bundled corpus.
    """

    scale = HOURS_SCALE.get(data_source, 1.0) if hours_scale is None else float(hours_scale)
    if not scale > 0:
        raise ValueError(f"hours_scale must be > 0, got {hours_scale!r}")
    if data_source == "assets":
        return [Source("assets", "train", None)]
    if data_source != "hub":
        raise ValueError(f"data_source must be 'hub' or 'assets', got {data_source!r}")
    need: dict[tuple[str, str], float] = {}
    for ph in PHASES.values():
        for e in ph.entries:
            if datasets is not None and e.dataset not in datasets:
                continue
            get_spec(e.dataset).split_names(e.split_role)  # fails loudly for an unknown role
            k = (e.dataset, e.split_role)
            need[k] = max(need.get(k, 0.0), e.hours * scale * OVERSAMPLE)
    if datasets is not None:
        unknown = sorted(set(datasets) - {d for d, _ in need})
        if unknown:
            raise ValueError(f"datasets {unknown} are not used by any phase of helpers.data.catalog.PHASES")
    return [Source(d, r, h) for (d, r), h in need.items()]


@dataclass(frozen=True)
class ResumePoint:
    """Where to restart a source: ``index`` of the next row and the stream state there (None: row 0)."""

    index: int
    state: dict | None = None


class SourceChanged(ValueError):
    """The data a run pinned is not what the source holds now (names the source and what differs)."""


def fingerprint_files(folders: list[Path]) -> str:
    """sha256 over every file under ``folders`` (position of the folder, relative path, size, bytes),
    in sorted order; dot-files (caches) are left out. Moving a folder keeps its fingerprint."""
    h = hashlib.sha256()
    for k, folder in enumerate(folders):
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts))
        for p in files:
            h.update(f"{k}/{p.relative_to(folder).as_posix()}\0{p.stat().st_size}\0".encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


class SourceReader:
    """Pins and streams sources through the catalog. Subclass and override :meth:`spec` to read a
    catalog dataset from another place (tests point a spec at a local Hub-like folder)."""

    def spec(self, source: Source):

        return get_spec(source.dataset)

    def _local_folders(self, source: Source) -> list[Path] | None:

        spec = self.spec(source)
        if spec.hub_id == ASSETS_CORPUS:
            names = spec.split_names(source.split_role)
            return [ASSETS_CORPUS_DIR if n == "train" else ASSETS_REJECTS_DIR for n in names]
        path = Path(spec.hub_id).expanduser()
        return [path] if path.is_dir() else None

    def pin(self, source: Source) -> dict:
        """What this run will read: ``{"hub_id", "config", "revision"}`` (a commit sha) for a Hub
        dataset, ``{"hub_id", "config", "fingerprint"}`` for a local corpus."""
        spec = self.spec(source)
        pin = {"dataset": source.dataset, "split_role": source.split_role, "hub_id": spec.hub_id,
               "config": spec.config, "revision": None, "fingerprint": None}
        local = self._local_folders(source)
        if local is not None:
            pin["fingerprint"] = fingerprint_files(local)
            return pin
        from huggingface_hub import HfApi

        try:
            info = HfApi().dataset_info(spec.hub_id, revision=spec.revision)
        except Exception as e:  # network, auth (gated) or 404: all end the run here, before streaming
            raise OSError(f"could not read the revision of dataset {spec.hub_id!r} (revision "
                          f"{spec.revision or 'main'}) from the Hugging Face Hub to pin it: {type(e).__name__}: {e}") from e
        pin["revision"] = info.sha
        return pin

    def check(self, source: Source, pin: dict) -> None:
        """Raise :class:`SourceChanged` if ``source`` no longer names the data ``pin`` recorded."""
        spec = self.spec(source)
        for k, now in (("hub_id", spec.hub_id), ("config", spec.config)):
            if pin.get(k) != now:
                raise SourceChanged(f"source {source.key}: the catalog now reads {k}={now!r}, this run pinned "
                                    f"{pin.get(k)!r}; restore the catalog entry or rerun 01 into a new run")
        if pin.get("fingerprint") is not None:
            local = self._local_folders(source)
            now = fingerprint_files(local) if local is not None else None
            if now != pin["fingerprint"]:
                raise SourceChanged(f"source {source.key}: the local corpus {spec.hub_id} changed since this run "
                                    f"pinned it (fingerprint {str(now)[:12]} vs {pin['fingerprint'][:12]}); "
                                    "restore it or rerun 01 into a new run")
        elif not pin.get("revision"):
            raise SourceChanged(f"source {source.key}: the pin records neither a revision nor a fingerprint; rerun 01")

    def rows(self, source: Source, pin: dict, start: ResumePoint | None = None,
             state_every: int = 0) -> Iterator[tuple[int, object, dict | None]]:
        """``(source_index, common row or catalog.Rejected, state)`` from ``start`` (default row 0).

        ``state`` is the stream state *after* the row (where row ``index + 1`` starts) when
        ``(index + 1) % state_every == 0``, else None (taking it costs a deep copy).
        """

        spec = self.spec(source)
        if pin.get("revision"):
            spec = dataclasses.replace(spec, revision=pin["revision"])
        ds = catalog.open_dataset(spec, source.split_role, streaming=True)
        i = 0
        if start is not None and start.index > 0:
            if start.state is None:
                raise ValueError(f"source {source.key}: resume point at row {start.index} has no stream state")
            ds.load_state_dict(start.state)
            i = start.index
        for raw in ds:
            state = ds.state_dict() if state_every and (i + 1) % state_every == 0 else None
            yield i, to_common(spec, raw), state
            i += 1


    def rows_without_audio(self, source: Source, pin: dict) -> Iterator[tuple[int, object]] | None:
        """``(source_index, common row or catalog.Rejected)`` with the indices and order of :meth:`rows`, read
        without the audio column (only the columns the catalog maps; the row's audio is ``{"bytes": None,
        "path": None}``): how 01 learns a source's utterance ids before downloading or decoding any audio.
        None when the dataset's row filter may look at more than those columns (then only :meth:`rows` can tell)."""
        spec = self.spec(source)
        if spec.row_filter != "none":
            return None
        if pin.get("revision"):
            spec = dataclasses.replace(spec, revision=pin["revision"])
        rules = (spec.utterance_id, spec.text, spec.speaker, spec.gender, spec.accent, spec.emotion)
        cols = sorted({c for r in rules for c in ((r.name,) if isinstance(r, catalog.Col) else
                                                  getattr(r, "columns", ()))})
        ds = catalog.open_dataset(spec, source.split_role, streaming=True, columns=cols)
        no_audio = {"bytes": None, "path": None}
        return ((i, to_common(spec, {**raw, spec.audio_column: no_audio})) for i, raw in enumerate(ds))


WORKER_START_METHOD = "spawn"  # how process_rows starts its workers (the same on Linux, macOS and Windows)


def process_rows(pairs, fn, workers: int = 1, chunk: int = 16):
    """``fn(item)`` (a tuple) over ``(key, item)`` pairs, in order, with ``workers`` processes.

    Yields ``(key, *fn(item))`` in input order. Memory stays bounded: at most
    ``workers * 2`` chunks of ``chunk`` items are in flight. ``fn`` must be picklable
    (a module-level function or a ``functools.partial`` of one, importable from a fresh
    interpreter) when ``workers > 1``.
    """
    if workers <= 1:
        for k, r in pairs:
            yield (k, *fn(r))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from itertools import islice

    it = iter(pairs)
    # Workers are started fresh, never fork()ed: the caller has torch loaded, and fork() of a process
    # with torch's threads running can deadlock a child (Python 3.12+ warns about it, and 3.14 no longer
    # forks by default). A fresh worker imports fn's module once and keeps it for the pool's lifetime.
    context = multiprocessing.get_context(WORKER_START_METHOD)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = []
        while True:
            while len(pending) < 2 * workers:
                block = list(islice(it, chunk))
                if not block:
                    break
                pending.append(pool.submit(_process_chunk, (block, fn)))
            if not pending:
                return
            yield from pending.pop(0).result()


def _process_chunk(args):
    # Worker entry point (module level so process pools can pickle it).
    pairs, fn = args
    return [(k, *fn(r)) for k, r in pairs]


__all__ = ["Source", "plan_sources", "ResumePoint", "SourceReader", "SourceChanged", "fingerprint_files",
           "process_rows", "OVERSAMPLE", "HOURS_SCALE"]
