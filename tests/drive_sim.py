"""A Google Drive mount as Colab really has it, for the tests: a write-back cache over a remote.

(In this process, by wrapping its Python calls. The same Drive through the kernel, for any process —
the real recipe in a child process, SIGKILLed with its VM — is the FUSE mount of tests/fuse_drive.py,
used by tests/train/test_drive_fuse.py.)

* ``mount``: the folder the code writes to (``/content/drive/MyDrive`` on Colab). It is the VM's
  local cache: ``write``/``copy``/``rename`` return once the bytes are there.
* ``remote``: what Drive itself holds. A file reaches it only through :meth:`SimDrive.sync` (all
  pending changes, a chosen subset, in any order) or while time passes (:meth:`SimDrive.sleep`, which
  the production code's waits call through the ``_sleep`` indirection), one pending file per poll.
* :class:`SimApi` answers what the Drive API would: ``stat(path) -> (size, md5) | None`` and
  ``delete(path)`` (permanent: gone from the remote and the cache at once), against the remote only;
  like the real one, which asks by the file's Drive id, it answers about the file the mount holds now:
  one written over an uploaded one is absent until its own upload lands (not the old copy's bytes);
  ``errors`` (raised by the next calls: 403/429 rate limits, 5xx) and ``lag_s`` (an upload is seen by
  the API only that long after it landed) model its faults.
* :meth:`SimDrive.kill`: the VM dies. Its cache is discarded, and the next VM's mount shows exactly
  the remote. Everything the code kept only in memory or on local disk is gone too (the tests raise
  :class:`VmDeath` out of the running code and build a new one). :meth:`SimDrive.die` marks the moment
  of death, in whichever thread it strikes (the training loop or the background publisher): from then on
  every call of this process on the mount, the API and the polls raises :class:`VmDeath` and nothing more
  is uploaded, so the other threads stop too and nothing a dead VM does after it reaches Drive.

A deletion through the mount (``rmtree``) is a pending change like any other; once synced, the file
is in Drive's Trash (``trash``), which the simulator counts.

Faults, at the system-call level of this process (:meth:`SimDrive.install` wraps ``os.stat``,
``os.listdir``, ``os.scandir``, ``os.open``, ``open``, ``os.replace``, ``os.mkdir``, ``os.unlink``,
``os.statvfs`` ... for paths under the mount; everything else passes through), as Colab's DriveFS fails:

* ``dead``: every call on the mount raises ENOTCONN ("Transport endpoint is not connected") until
  :meth:`remount` (Colab's ``drive.mount(..., force_remount=True)``); ``blip(n)``: the next n calls only.
* ``eio``: ``{relative path: count}``: reads of that file raise EIO (``count`` times; -1: always).
* ``quota_bytes``: Drive's quota. ``statvfs`` on the mount reports it; writes into the cache succeed
  (write-back) but uploads that would exceed it are refused: they stay pending for ever.
* ``daily_cap_bytes``: Drive's daily upload limit: uploads beyond it (per simulated day) are refused.
* ``corrupt``: base names whose next upload lands with one byte changed (same size).
* ``local_full``: writes into the mount's cache fail with ENOSPC.
* :meth:`start_uploads`: a thread delivers pending files at ``rate`` bytes per real second while the
  code runs (training included), not only inside its sleeps; with ``uploads_per_sleep = 0`` and
  ``real_time`` (real seconds per simulated second of a poll) the code's waits are real too and only
  that thread uploads.
* ``slow_polls``: slow uploads on the simulated clock: the next that many polls deliver nothing.
* ``on_call(rel, read, write)``: called before every call of the code on the mount (the soak's
  injector counts them and strikes at a chosen one: it may raise, or set a fault above).
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import os
import random
import shutil
import threading
import time
from pathlib import Path


class VmDeath(BaseException):
    """The simulated VM died here (BaseException: no ``except Exception`` in the code may swallow it)."""


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def _sig(p: Path) -> tuple:
    st = p.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


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
        self.on_call = None  # f(rel, read, write) before each call of the code on the mount (see the docstring)
        self.slow_polls = 0  # the next polls that deliver nothing (slow uploads)
        self.events: list[tuple[str, str]] = []
        self.now = 0.0  # simulated seconds: advanced only by sleep()
        # faults (see the module docstring)
        self.dead, self.blips = False, 0
        self.killed = False  # the VM died (die()): every later call of this process raises VmDeath
        self.real_time = 0.0  # real seconds each simulated second of a poll takes (0: polls are instant)
        self.eio: dict[str, int] = {}
        self.quota_bytes: int | None = None
        self.daily_cap_bytes: int | None = None
        self.corrupt: set[str] = set()
        self.local_full = False
        self.refused: list[str] = []  # uploads Drive refused (quota, daily cap)
        self.uploaded_bytes = 0
        self._tls = threading.local()
        self._lock = threading.RLock()
        self._uploader: threading.Thread | None = None
        self._stop = threading.Event()
        self.rate = None
        self.uploaded_at: dict[str, float] = {}  # rel -> simulated time of its upload (the API's stat lag)
        self._delivered: dict[str, tuple] = {}  # rel -> the mount file's (size, mtime, inode) when it was uploaded

    # ------------------------------------------------------------------ what the VM does
    def event(self, kind: str, detail: str = "") -> None:
        self.events.append((kind, detail))
        if self.on_event is not None:
            self.on_event(kind, detail)

    def pending(self) -> list[str]:
        """Relative paths whose cache and remote differ: uploads and deletions not yet on Drive."""
        with self.bypass():
            local, remote = _files(self.mount), _files(self.remote)
            # a file written anew over an uploaded one is a new upload even with the same bytes (a new Drive id)
            out = [r for r, p in local.items() if r not in remote or self._delivered.get(r, _sig(p)) != _sig(p)
                   or remote[r].read_bytes() != p.read_bytes()]
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

    def _refuse(self, rel: str, size: int) -> bool:
        """Drive refuses this upload (quota or daily cap): it stays pending."""
        remote = sum(p.stat().st_size for p in _files(self.remote).values())
        if self.quota_bytes is not None and remote + size > self.quota_bytes:
            self.refused.append(f"quota {rel}")
            self.event("refused", rel)
            return True
        if self.daily_cap_bytes is not None and self.uploaded_bytes + size > self.daily_cap_bytes:
            self.refused.append(f"daily cap {rel}")
            return True
        return False

    def _deliver(self, rel: str) -> None:
        with self.bypass(), self._lock:
            self._deliver_unlocked(rel)

    def _deliver_unlocked(self, rel: str) -> None:
        src, dst = self.mount / rel, self.remote / rel
        if src.is_file():
            if self._refuse(rel, src.stat().st_size):
                return
            sig = _sig(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            self._delivered[rel] = sig
            self.uploaded_at[rel] = self.now
            self.uploaded_bytes += dst.stat().st_size
            if dst.name in self.corrupt:  # same size, one byte different: a digit of the first sha256, if any
                self.corrupt.discard(dst.name)
                raw = bytearray(dst.read_bytes())
                at = raw.find(b'"sha256": "')
                i = at + len(b'"sha256": "') if at >= 0 else len(raw) // 2
                raw[i] = ord("0") if raw[i] != ord("0") else ord("1")
                dst.write_bytes(bytes(raw))
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
        if self.killed:
            raise VmDeath("the VM died: a poll of the dead process")
        if self.real_time:
            time.sleep(seconds * self.real_time)
        self.now += seconds
        if self.slow_polls > 0:
            self.slow_polls -= 1
            with self.bypass():
                if self._pending_fast():
                    self.event("slow", "")  # an upload that would have landed now is held back
            return
        todo = self.pending()
        self.rng.shuffle(todo)
        for rel in todo[: self.uploads_per_sleep]:
            self._deliver(rel)

    def clock(self) -> float:
        return self.now

    def die(self, why: str = "") -> VmDeath:
        """The VM dies now, in whichever thread calls this: no call of this process on the mount, the API or a
        poll succeeds any more (each raises VmDeath) and nothing more is uploaded. Returns the VmDeath to raise.
        :meth:`kill` (once the process's threads have stopped) then gives the next VM its fresh mount."""
        self.killed = True
        self.event("died", why)
        return VmDeath(why or "the VM died")

    def kill(self) -> None:
        """The VM dies: its cache goes; the next VM's mount shows what Drive holds (and it is mounted afresh)."""
        self.killed = True
        self.event("killed")
        self.stop_uploads()
        with self.bypass():
            shutil.rmtree(self.mount)
            shutil.copytree(self.remote, self.mount)
            self._delivered = {r: _sig(p) for r, p in _files(self.mount).items()}
        self.dead, self.blips, self.killed = False, 0, False

    def remount(self) -> None:
        """``drive.mount(..., force_remount=True)``: a dead mount works again (its cache is kept)."""
        self.dead, self.blips = False, 0

    # ------------------------------------------------------------------ uploads in real time
    def start_uploads(self, rate_bytes_s: float, tick_s: float = 0.02) -> None:
        """Deliver pending files at ``rate_bytes_s`` per real second in a thread (oldest change first)."""
        self.rate = float(rate_bytes_s)
        self._stop.clear()

        def run():
            budget, last = 0.0, time.monotonic()
            while not self._stop.wait(tick_s):
                now = time.monotonic()
                budget, last = budget + (now - last) * self.rate, now
                if self.dead or self.killed:
                    continue  # a dead mount (or VM) uploads nothing
                with self.bypass(), self._lock:
                    try:
                        budget = self._upload_tick(budget)
                    except FileNotFoundError:
                        pass  # a file renamed or deleted under the scan (a temp copy moved into place): next tick

        self._uploader = threading.Thread(target=run, daemon=True, name="sim-uploads")
        self._uploader.start()

    def _pending_fast(self) -> list[str]:
        """pending() by (size, mtime, inode) instead of bytes: cheap enough to run every tick."""
        local, remote = _files(self.mount), _files(self.remote)
        out = [r for r, p in local.items() if r not in remote or self._delivered.get(r) != _sig(p)]
        return out + [r for r in remote if r not in local]

    def _upload_tick(self, budget: float) -> float:
        todo = self._pending_fast()
        todo.sort(key=lambda r: (self.mount / r).stat().st_mtime_ns if (self.mount / r).exists() else 0)
        for rel in todo:
            src = self.mount / rel
            size = src.stat().st_size if src.is_file() else 0
            if src.is_file() and self._refuse(rel, size):
                self.refused.pop()  # counted once per attempt would flood: keep the list short
                continue
            if size > budget:
                return budget
            budget -= size
            self._deliver_unlocked(rel)
            self.event("rate", rel)  # delivered by the real-time uploader (while the code ran, or waited)
        return min(budget, self.rate * 0.05)  # idle time does not bank bandwidth

    def stop_uploads(self) -> None:
        self._stop.set()
        if self._uploader is not None:
            self._uploader.join()
            self._uploader = None

    # ------------------------------------------------------------------ faults at the system-call level
    @contextlib.contextmanager
    def bypass(self):
        """The simulator's own file work (it is Drive and the VM, not the code under test)."""
        was = getattr(self._tls, "bypass", False)
        self._tls.bypass = True
        try:
            yield
        finally:
            self._tls.bypass = was

    def blip(self, n: int) -> None:
        """The next ``n`` calls on the mount fail with ENOTCONN, then it works again by itself."""
        self.blips = int(n)

    def _rel_of(self, path) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        p = os.fsdecode(os.fspath(path))
        root = os.fsdecode(os.fspath(self.mount))
        p = os.path.abspath(p)
        if p == root or p.startswith(root + os.sep):
            return os.path.relpath(p, root)
        return None

    def _check(self, path, *, read: bool = False, write: bool = False) -> None:
        if getattr(self._tls, "bypass", False):
            return
        rel = self._rel_of(path)
        if rel is None:
            return
        if self.killed:
            raise VmDeath(f"the VM died: a call on {rel} of the dead process")
        if self.on_call is not None:
            self.on_call(rel, read, write)
        if self.killed:  # on_call killed it
            raise VmDeath(f"the VM died at a call on {rel}")
        if self.dead or self.blips > 0:
            if self.blips > 0:
                self.blips -= 1
            self.event("ENOTCONN", rel)
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), os.fspath(path))
        if read and rel in self.eio and self.eio[rel] != 0:
            self.eio[rel] -= 1 if self.eio[rel] > 0 else 0
            self.event("EIO", rel)
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(path))
        if write and self.local_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    def install(self, monkeypatch) -> "SimDrive":
        """Route this process's file system calls on the mount through the faults above."""
        sim = self

        def wrap1(fn, **kw):
            def f(path, *a, **k):
                sim._check(path, **kw)
                return fn(path, *a, **k)
            return f

        def wrap_open(fn):
            def f(file, mode="r", *a, **k):
                m = mode if isinstance(mode, str) else "r"
                sim._check(file, read="r" in m and "+" not in m, write=any(c in m for c in "wax+"))
                return fn(file, mode, *a, **k)
            return f

        def wrap_osopen(fn):
            def f(path, flags, *a, **k):
                sim._check(path, read=not flags & (os.O_WRONLY | os.O_RDWR), write=bool(flags & (os.O_WRONLY | os.O_RDWR)))
                return fn(path, flags, *a, **k)
            return f

        def wrap2(fn):
            def f(src, dst, *a, **k):
                sim._check(src)
                sim._check(dst, write=True)
                return fn(src, dst, *a, **k)
            return f

        real_statvfs = os.statvfs

        def statvfs(path):
            sim._check(path)
            st = real_statvfs(path)
            if sim.quota_bytes is None or sim._rel_of(path) is None:
                return st
            with sim.bypass():
                used = sum(p.stat().st_size for p in _files(sim.remote).values())
                used = max(used, sum(p.stat().st_size for p in _files(sim.mount).values()))
            free = max(0, sim.quota_bytes - used) // st.f_frsize
            sim.event("quota", os.fspath(path))  # the code was told how little space is left
            return os.statvfs_result((st.f_bsize, st.f_frsize, sim.quota_bytes // st.f_frsize, free, free,
                                      st.f_files, st.f_ffree, st.f_favail, st.f_flag, st.f_namemax))

        for name in ("stat", "lstat", "listdir", "scandir", "rmdir", "unlink", "remove", "chmod", "utime"):
            monkeypatch.setattr(os, name, wrap1(getattr(os, name)))
        monkeypatch.setattr(os, "mkdir", wrap1(os.mkdir, write=True))
        for name in ("replace", "rename"):
            monkeypatch.setattr(os, name, wrap2(getattr(os, name)))
        monkeypatch.setattr(os, "open", wrap_osopen(os.open))
        monkeypatch.setattr(os, "statvfs", statvfs)
        monkeypatch.setattr(builtins, "open", wrap_open(builtins.open))
        monkeypatch.setattr(io, "open", wrap_open(io.open))
        return self

    def trash_bytes(self) -> int:
        with self.bypass():
            return sum(p.stat().st_size for p in _files(self.trash).values())

    def api(self) -> "SimApi":
        return SimApi(self)


class SimApi:
    """The Drive API against the remote: ``stat`` and ``delete`` by a path on the mount."""

    def __init__(self, sim: SimDrive):
        self.sim, self.fail, self.deleted = sim, None, []
        self.errors: list[Exception] = []  # raised by the next calls, one each (403 rate limit, 429, 5xx)
        self.lag_s = 0.0  # a file is seen by the API only this long (simulated clock) after its upload

    def _rel(self, path) -> str:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.sim.mount)).as_posix()

    def stat(self, path):
        if self.sim.killed:
            raise VmDeath("the VM died: an API call of the dead process")
        if self.fail is not None:
            raise self.fail
        if self.errors:
            raise self.errors.pop(0)
        rel = self._rel(path)
        self.sim.event("stat", rel)
        with self.sim.bypass(), self.sim._lock:
            p, m = self.sim.remote / rel, self.sim.mount / rel
            if not p.is_file() or self.sim.now - self.sim.uploaded_at.get(rel, -1e18) < self.lag_s:
                return None
            up = self.sim._delivered.get(rel)
            if up is not None and m.is_file() and _sig(m) != up:
                return None  # the mount holds a newer file there (its own Drive id), not uploaded yet
            return p.stat().st_size, _md5(p)

    def delete(self, path):
        if self.sim.killed:
            raise VmDeath("the VM died: an API call of the dead process")
        if self.fail is not None:
            raise self.fail
        rel = self._rel(path)
        self.sim.event("delete", rel)
        with self.sim.bypass(), self.sim._lock:
            for root in (self.sim.remote, self.sim.mount):
                p = root / rel
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        self.deleted.append(rel)
