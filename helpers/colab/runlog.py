"""Run logs (metrics.csv, eval.csv) written on local disk and mirrored into the run directory on Drive.

A Drive hiccup must never end a 30-hour training run: rows go to a local file first (flushed and
fsynced), and the whole file is copied over the run directory's copy with retries
(:func:`helpers.colab.drive.sync_file`). Failures are reported and retried later, never raised.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Sequence
from . import drive


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a fsynced temp file and a rename; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


class CsvLog:
    """Append-only CSV; every row is flushed and fsynced so a crash loses at most the row in flight.

    With ``mirror`` (the run directory's copy, on Drive) rows are written to ``path`` on local disk
    and the whole file is copied over ``mirror`` after each change with retries
    (:func:`helpers.colab.drive.sync_file`). A Drive error never stops training: it is reported through
    ``log``, counted in ``sync_failures``, and the next sync (at most once a minute after a failure,
    and always at the end of training) copies the complete local file again.
    """

    sync_retries = 2
    sync_wait_s = 1.0
    retry_after_s = 60.0

    def __init__(self, path: Path, fields: Sequence[str], mirror: Path | None = None, log=print):
        self.path, self.fields = Path(path), tuple(fields)
        self.mirror = None if mirror is None else Path(mirror)
        self.log = log
        self.sync_failures = 0
        self._next_try = 0.0

    @property
    def published(self) -> Path:
        """The copy in the run directory (the mirror when there is one)."""
        return self.mirror or self.path

    def adopt(self) -> None:
        """Start the local file from the run directory's copy (a new VM resuming a run)."""
        if self.mirror is None or self.path.is_file() or not self.mirror.is_file():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.adopt"
        tmp.write_bytes(self.mirror.read_bytes())
        os.replace(tmp, self.path)

    def sync(self, force: bool = False) -> bool:
        """Copy the local file over the mirror; False (reported, not raised) when Drive fails."""

        if self.mirror is None or not self.path.is_file():
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        ok = drive.sync_file(self.path, self.mirror, retries=self.sync_retries, wait_s=self.sync_wait_s, log=self.log)
        if not ok:
            self.sync_failures += 1
            self._next_try = time.monotonic() + self.retry_after_s
        return ok

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def restore(self, copy: Path, step: int) -> bool:
        """Take ``copy`` (the log saved inside the checkpoint of ``step``) when it holds more rows up to
        ``step`` than this log: the mirror synced separately may not have reached Drive before the VM died."""
        copy = Path(copy)
        if not copy.is_file():
            return False
        with copy.open(newline="") as f:
            theirs = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        if len(theirs) <= len([r for r in self.rows() if int(r["step"]) <= step]):
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.restore"
        tmp.write_bytes(copy.read_bytes())
        os.replace(tmp, self.path)
        self.log(f"{self.path.name}: rows up to step {step} restored from the checkpoint (the synced copy was behind)")
        return True

    def truncate_after(self, step: int) -> None:
        """Drop rows of steps after ``step`` (written after the checkpoint we resume from)."""
        rows = [r for r in self.rows() if int(r["step"]) <= step]
        lines = [",".join(self.fields)] + [",".join(r.get(k, "") for k in self.fields) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        self.sync(force=True)

    def append(self, row: dict) -> None:
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.fields})
            f.flush()
            os.fsync(f.fileno())
        self.sync()
