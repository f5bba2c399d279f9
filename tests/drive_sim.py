"""A Google Drive mount as Colab really has it, for the tests: a write-back cache over a remote.

* ``mount``: the folder the code writes to (``/content/drive/MyDrive`` on Colab). It is the VM's
  local cache: ``write``/``copy``/``rename`` return once the bytes are there.
* ``remote``: what Drive itself holds. A file reaches it only through :meth:`SimDrive.sync` (all
  pending changes, a chosen subset, in any order) or while time passes (:meth:`SimDrive.sleep`, which
  the production code's waits call through the ``_sleep`` indirection), one pending file per poll.
* :class:`SimApi` answers what the Drive API would: ``stat(path) -> (size, md5) | None`` and
  ``delete(path)`` (permanent: gone from the remote and the cache at once), against the remote only.
* :meth:`SimDrive.kill`: the VM dies. Its cache is discarded, and the next VM's mount shows exactly
  the remote. Everything the code kept only in memory or on local disk is gone too (the tests raise
  :class:`VmDeath` out of the running code and build a new one).

A deletion through the mount (``rmtree``) is a pending change like any other; once synced, the file
is in Drive's Trash (``trash``), which the simulator counts.
"""
from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path


class VmDeath(BaseException):
    """The simulated VM died here (BaseException: no ``except Exception`` in the code may swallow it)."""


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()} if root.is_dir() else {}


class SimDrive:
    def __init__(self, root: str | Path, seed: int = 0):
        root = Path(root)
        self.mount, self.remote, self.trash = root / "mount", root / "remote", root / "trash"
        for d in (self.mount, self.remote, self.trash):
            d.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.uploads_per_sleep = 1  # pending files that reach Drive per poll of a waiting caller
        self.on_event = None  # f(kind, detail): the tests raise VmDeath from it to kill at a given step
        self.events: list[tuple[str, str]] = []
        self.now = 0.0  # simulated seconds: advanced only by sleep()

    # ------------------------------------------------------------------ what the VM does
    def event(self, kind: str, detail: str = "") -> None:
        self.events.append((kind, detail))
        if self.on_event is not None:
            self.on_event(kind, detail)

    def pending(self) -> list[str]:
        """Relative paths whose cache and remote differ: uploads and deletions not yet on Drive."""
        local, remote = _files(self.mount), _files(self.remote)
        out = [r for r, p in local.items() if r not in remote or remote[r].read_bytes() != p.read_bytes()]
        out += [r for r in remote if r not in local]
        return sorted(out)

    def sync(self, paths=None, *, shuffle: bool = True) -> list[str]:
        """Deliver pending changes to Drive (``paths``: only these; default all), in random order."""
        todo = self.pending() if paths is None else [p for p in paths if p in set(self.pending())]
        if shuffle:
            self.rng.shuffle(todo)
        for rel in todo:
            self._deliver(rel)
        return todo

    def _deliver(self, rel: str) -> None:
        src, dst = self.mount / rel, self.remote / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        elif dst.is_file():  # deleted through the mount: into the Trash
            t = self.trash / rel
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(dst, t)
        self.event("uploaded", rel)

    def sync_random_subset(self, fraction: float = 0.5) -> list[str]:
        todo = [r for r in self.pending() if self.rng.random() < fraction]
        return self.sync(todo)

    def sleep(self, seconds: float) -> None:
        """Time passes for a waiting caller: a few pending files reach Drive (random order)."""
        self.now += seconds
        todo = self.pending()
        self.rng.shuffle(todo)
        for rel in todo[: self.uploads_per_sleep]:
            self._deliver(rel)

    def clock(self) -> float:
        return self.now

    def kill(self) -> None:
        """The VM dies: its cache goes; the next VM's mount shows what Drive holds."""
        self.event("killed")
        shutil.rmtree(self.mount)
        shutil.copytree(self.remote, self.mount)

    def trash_bytes(self) -> int:
        return sum(p.stat().st_size for p in _files(self.trash).values())

    def api(self) -> "SimApi":
        return SimApi(self)


class SimApi:
    """The Drive API against the remote: ``stat`` and ``delete`` by a path on the mount."""

    def __init__(self, sim: SimDrive):
        self.sim, self.fail, self.deleted = sim, None, []

    def _rel(self, path) -> str:
        return Path(path).resolve().relative_to(self.sim.mount.resolve()).as_posix()

    def stat(self, path):
        if self.fail is not None:
            raise self.fail
        rel = self._rel(path)
        self.sim.event("stat", rel)
        p = self.sim.remote / rel
        return (p.stat().st_size, _md5(p)) if p.is_file() else None

    def delete(self, path):
        if self.fail is not None:
            raise self.fail
        rel = self._rel(path)
        self.sim.event("delete", rel)
        for root in (self.sim.remote, self.sim.mount):
            p = root / rel
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        self.deleted.append(rel)
