"""A Google Drive mount as Colab has it, through the kernel: a FUSE file system over a stand-in Drive.

:mod:`drive_sim` fails one process's Python calls; this one fails system calls, for any process, the
way DriveFS does on Colab: the code under test (the real recipe, in a child process, its background
publisher running) sees ENOTCONN, EIO, ENOSPC, a statvfs quota and missing ``user.drive.id``
attributes from the kernel, and a write-back cache that uploads while it trains.

Layout under ``root``:

* ``mnt``: the mount point (``/content/drive/MyDrive`` on Colab).
* ``cache``: the VM's DriveFS cache, what the mount shows. Writes land here; ``close``/``fsync``
  return once the bytes are there. A fresh mount starts with a copy of ``remote`` (nothing else).
* ``remote``: what Drive holds. An uploader thread in the FUSE process moves closed, changed files
  there at ``rate`` bytes per real second (None: as fast as it can), ``lag_s`` after their last close,
  oldest change first; a file deleted or replaced through the mount moves from ``remote`` to
  ``trash`` (Drive's Trash). A rename is a metadata change: what already landed is renamed on the
  remote too (no second upload), as Drive does.
* ``fuse.log``: the FUSE process's output; ``death.json``: which operation a planned VM death struck.

The Drive API (what ``helpers.colab.drive.ColabDriveApi`` asks through ``files().get`` / ``delete``)
is answered by the FUSE process about ``remote`` only, by the Drive id that ``getxattr(path,
"user.drive.id")`` gives a file or folder once it has landed on the remote (ids are the relative path,
encoded). :func:`connect_api` registers such a client in a process (the child running the recipe).

Faults (:meth:`FuseDrive.set`, read by the FUSE process under one lock; the control channel is a unix
socket, one request and its answer at a time per connection):

* ``dead``: every operation on the mount fails with ENOTCONN ("Transport endpoint is not connected")
  and nothing uploads, until :meth:`FuseDrive.remount` (a new FUSE process over the same remote with
  an empty cache: ``drive.mount(..., force_remount=True)``); ``blips``: only the next n operations.
* ``eio``: ``{relative path: count}``: reads of that file fail with EIO ``count`` times (-1: always).
* ``quota_bytes``: Drive's quota. ``statfs`` reports it; writes into the cache succeed but uploads
  past it are refused (they stay pending). ``local_full``: writes into the cache fail with ENOSPC.
* ``close_errno={"errno", "n"}``: the next n ``close()`` of a file written through the mount fail with
  that errno (-1: all), as a FUSE file system reports a failed write-back at close (FUSE_FLUSH).
* ``daily_cap_bytes`` per ``day_s`` real seconds: uploads past it are refused.
* ``corrupt``: base names whose next upload lands with one byte changed, same size (a digit of the
  first ``"sha256": "`` if there is one).
* ``xattrs`` False: the mount supports no extended attributes (ENOTSUP), as a DriveFS without Drive ids.
* VM death: :meth:`FuseDrive.vm_death` (SIGKILL of the FUSE process: its cache is discarded, the next
  mount shows exactly the remote); planned inside the FUSE process at the n-th operation on a path
  containing a string (``kill_at={"match", "n", "ops"}``; ``ops``: only these operations count, the
  Drive API's ``api_get`` / ``api_delete`` among them), or at the first operation on ``/checkpoints``
  after the API showed a whole checkpoint with a corrupt upload (``kill_after_corrupt_seen``): the
  trainer (``kill_pid``) and the FUSE process are SIGKILLed there, mid-operation.
* ``on_complete={"n", "then"}``: when the n-th checkpoint is whole on the remote, ``then`` happens at
  once: ``"kill"`` (VM death) or a dict of faults to set (``quota_slack``: a quota that many bytes above
  what the remote holds), so a fault strikes at a known point of the run whatever the machine's speed.

Counters (:meth:`FuseDrive.status`): ops, uploads, refusals, trash, API calls and deletions, EIO and
ENOTCONN answers, and ``violations``: deletions of the newest checkpoint that was whole on the remote
while its stage had no finished model there.

Run as a script it is the FUSE process: ``python fuse_drive.py ROOT MOUNTPOINT SOCKET OPTIONS_JSON``.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DRIVE_ID_XATTR = "user.drive.id"  # what helpers.colab.drive reads (DRIVE_ID_XATTR there)
AUTHKEY = b"fuse-drive-test"
START_TIMEOUT_S = 20.0
DEFAULTS = dict(rate=None, lag_s=0.0, xattrs=True, dead=False, blips=0, eio={}, quota_bytes=None,
                local_full=False, close_errno=None, daily_cap_bytes=None, day_s=86400.0, corrupt=[], kill_at=None,
                on_complete=None, kill_after_corrupt_seen=False, kill_pid=None)
INIT_ONLY = ("rate", "lag_s", "xattrs")  # kept across remounts (the mount's nature, not a fault)


def fuse_unavailable() -> str | None:
    """Why a FUSE mount cannot be made here (None: it can be tried)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if _fusermount() is None:
        return "fusermount is missing (apt-get install fuse)"
    try:
        import fuse  # noqa: F401  (fusepy: raises EnvironmentError when libfuse.so.2 is absent)
    except ImportError:
        return "fusepy is not installed (pip install fusepy==3.0.1)"
    except (EnvironmentError, OSError) as e:
        return f"libfuse2 is missing ({e}; apt-get install libfuse2)"
    return None


def _fusermount() -> str | None:
    """libfuse2's ``fusermount``, or fuse3's ``fusermount3`` (it unmounts a libfuse2 mount as well)."""
    return shutil.which("fusermount") or shutil.which("fusermount3")


def drive_id(rel: str) -> str:
    return "fz-" + base64.urlsafe_b64encode(rel.encode()).decode().rstrip("=")


def rel_of_id(file_id: str) -> str:
    if not file_id.startswith("fz-"):
        raise ValueError(f"not a Drive id of this mount: {file_id!r}")
    raw = file_id[3:]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()


def _files(root: Path) -> dict[str, Path]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = Path(d) / n
            out[p.relative_to(root).as_posix()] = p
    return out


def _sig(p: Path) -> tuple[int, int]:
    st = os.stat(p)
    return st.st_size, st.st_mtime_ns


def _md5(p: Path) -> str:
    h = hashlib.md5()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _step_dir(rel: str) -> str | None:
    """``run/stage2/checkpoints/step-00000004`` for any path inside a checkpoint folder, else None."""
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "checkpoints" and i + 1 < len(parts) and parts[i + 1].startswith("step-"):
            return "/".join(parts[:i + 2])
    return None


def checkpoint_whole(folder: Path) -> bool:
    """A checkpoint folder whose manifest lists files all present with their sizes (sizes only)."""
    try:
        files = json.loads((folder / "manifest.json").read_text())["files"]
        return all((folder / n).is_file() and (folder / n).stat().st_size == m["bytes"] for n, m in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


# ============================================================================ the FUSE process
def _operations_base():
    from fuse import Operations

    return Operations


# fusepy's Operations is the base only in the FUSE process: the tests import this module without libfuse
class _DriveFS(_operations_base() if __name__ == "__main__" else object):
    """The FUSE operations: a passthrough over ``cache`` with the faults and the uploader above."""

    use_ns = True  # fusepy: times in integer nanoseconds (copy2 keeps mtimes exactly)

    def __init__(self, root: Path, opts: dict):
        self.root = root
        self.cache, self.remote, self.trash = root / "cache", root / "remote", root / "trash"
        self.mu = threading.RLock()
        self.o = dict(DEFAULTS, **opts)
        self.o["corrupt"] = set(self.o["corrupt"])
        self.writers: dict[str, int] = {}
        self.closed_at: dict[str, float] = {}
        self.fh_rel: dict[int, tuple[str, bool]] = {}
        self.md5_cache: dict[tuple, str] = {}
        self.window: list[tuple[float, int]] = []  # (time, bytes) of uploads: the daily cap
        self.corrupted: set[str] = set()
        self.matched = 0
        self.c = dict(ops=0, op_names={}, uploads=[], uploaded_bytes=0, refusals=[], trashed=[], api_gets=0, api_deleted=[],
                      eio=0, enotconn=0, enospc=0, violations=[], statfs_quota=0, complete=[])
        # what a fresh mount shows is the remote: every cached file has landed
        self.delivered = {r: _sig(p) for r, p in _files(self.cache).items() if (self.remote / r).is_file()}

    # ---------------------------------------------------------------- faults, before every operation
    def __call__(self, op, *args):
        if op not in ("init", "destroy"):
            path = args[0] if args and isinstance(args[0], str) else ""
            self._before(op, path)
        return getattr(self, op)(*args)

    def _before(self, op: str, path: str) -> None:
        from fuse import FuseOSError

        with self.mu:
            self.c["ops"] += 1
            if "/checkpoints" in path:
                self.c["op_names"][op] = self.c["op_names"].get(op, 0) + 1
            self._maybe_die(op, path)
            if self.o["dead"] or self.o["blips"] > 0:
                if self.o["blips"] > 0:
                    self.o["blips"] -= 1
                self.c["enotconn"] += 1
                raise FuseOSError(errno.ENOTCONN)

    def _maybe_die(self, op: str, path: str) -> None:
        k = self.o["kill_at"]
        if k and k["match"] in path and (not k.get("ops") or op in k["ops"]):
            self.matched += 1
            if self.matched >= k["n"]:
                self._die(f"{op} {path}", self.matched)

    def _die(self, what: str, n) -> None:
        """VM death, here and now: the trainer and this FUSE process are SIGKILLed mid-operation."""
        (self.root / "death.json").write_text(json.dumps({"op": what, "n": n, "time": time.time()}))
        pid = self.o["kill_pid"]
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    def _p(self, path: str) -> str:
        return str(self.cache) + path

    @staticmethod
    def _rel(path: str) -> str:
        return path.lstrip("/")

    def _full(self, op: str) -> None:
        from fuse import FuseOSError

        if self.o["local_full"]:
            self.c["enospc"] += 1
            raise FuseOSError(errno.ENOSPC)

    # ---------------------------------------------------------------- passthrough
    def init(self, path):
        threading.Thread(target=self._uploader, daemon=True, name="uploader").start()

    def access(self, path, amode):
        if not os.access(self._p(path), amode):
            from fuse import FuseOSError

            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid")}
        out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return out

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._p(path))]

    def readlink(self, path):
        return os.readlink(self._p(path))

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._p(path))
        else:
            os.utime(self._p(path), ns=tuple(int(t) for t in times))

    def mkdir(self, path, mode):
        self._full("mkdir")
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def _opened(self, fd: int, path: str, write: bool) -> int:
        rel = self._rel(path)
        with self.mu:
            self.fh_rel[fd] = (rel, write)
            if write:
                self.writers[rel] = self.writers.get(rel, 0) + 1
        return fd

    def open(self, path, flags):
        return self._opened(os.open(self._p(path), flags), path, bool(flags & (os.O_WRONLY | os.O_RDWR)))

    def create(self, path, mode, fi=None):
        self._full("create")
        return self._opened(os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), path, True)

    def read(self, path, size, offset, fh):
        from fuse import FuseOSError

        with self.mu:
            rel = self.fh_rel.get(fh, (self._rel(path or ""), False))[0]
            left = self.o["eio"].get(rel, 0)
            if left:
                if left > 0:
                    self.o["eio"][rel] = left - 1
                self.c["eio"] += 1
                raise FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._full("write")
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._full("truncate")
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._p(path), length)

    def flush(self, path, fh):
        from fuse import FuseOSError

        with self.mu:
            bad = self.o["close_errno"]
            if bad and bad["n"] and self.fh_rel.get(fh, ("", False))[1]:
                if bad["n"] > 0:
                    bad["n"] -= 1
                raise FuseOSError(bad["errno"])
        return 0  # the bytes are in the cache: that is all close() waits for

    def fsync(self, path, datasync, fh):
        os.fsync(fh)  # the cache's disk; the upload follows in its own time

    def release(self, path, fh):
        with self.mu:
            rel, write = self.fh_rel.pop(fh, (None, False))
            if write and rel is not None:
                self.writers[rel] -= 1
                if not self.writers[rel]:
                    del self.writers[rel]
                self.closed_at[rel] = time.monotonic()
        os.close(fh)

    def rename(self, old, new):
        """A metadata change: what already landed is renamed on the remote too; a replaced target is trashed."""
        with self.mu:
            os.replace(self._p(old), self._p(new))
            o, n = self._rel(old), self._rel(new)
            ro, rn = self.remote / o, self.remote / n
            if rn.exists():
                self._to_trash(n)
            if ro.exists():
                rn.parent.mkdir(parents=True, exist_ok=True)
                os.replace(ro, rn)
            for table in (self.delivered, self.writers, self.closed_at):
                for k in [k for k in table if k == o or k.startswith(o + "/")]:
                    table[n + k[len(o):]] = table.pop(k)
            for rel in [r for r in self.corrupted if r == o or r.startswith(o + "/")]:
                self.corrupted.discard(rel)
                self.corrupted.add(n + rel[len(o):])
            for fd, (rel, w) in list(self.fh_rel.items()):
                if rel == o or rel.startswith(o + "/"):
                    self.fh_rel[fd] = (n + rel[len(o):], w)
            if rn.exists():
                self._note_whole(_step_dir(n + "/x"), f"renamed {o} to {n}")

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        out = {k: getattr(st, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                            "f_ffree", "f_favail", "f_flag", "f_namemax")}
        with self.mu:
            quota = self.o["quota_bytes"]
            if quota is not None:  # Drive's quota, as Colab's mount reports it
                used = max(self._bytes(self.remote), self._bytes(self.cache))
                free = max(0, quota - used) // st.f_frsize
                out.update(f_blocks=quota // st.f_frsize, f_bfree=free, f_bavail=free)
                self.c["statfs_quota"] += 1
        return out

    def getxattr(self, path, name, position=0):
        from fuse import FuseOSError

        if not self.o["xattrs"]:
            raise FuseOSError(errno.ENOTSUP)
        rel = self._rel(path)
        with self.mu:
            if name == DRIVE_ID_XATTR and (self.remote / rel).exists():
                return drive_id(rel).encode()
        raise FuseOSError(errno.ENODATA)

    def listxattr(self, path):
        from fuse import FuseOSError

        if not self.o["xattrs"]:
            raise FuseOSError(errno.ENOTSUP)
        with self.mu:
            return [DRIVE_ID_XATTR] if (self.remote / self._rel(path)).exists() else []

    # ---------------------------------------------------------------- Drive: uploads, trash, API
    @staticmethod
    def _bytes(root: Path) -> int:
        return sum(p.stat().st_size for p in _files(root).values())

    def _to_trash(self, rel: str) -> None:
        src = self.remote / rel
        self._check_violation(rel)
        dst = self.trash / rel
        i = 0
        while dst.exists():
            i += 1
            dst = self.trash / f"{rel}.{i}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        self.c["trashed"].append(rel)
        for k in [k for k in self.delivered if k == rel or k.startswith(rel + "/")]:
            del self.delivered[k]

    def _check_violation(self, rel: str) -> None:
        """Deleting (a file of) the newest checkpoint whole on the remote, its stage not finished there, is a
        violation of the retention policy: counted once per checkpoint."""
        step = _step_dir(rel) or _step_dir(rel + "/x")
        if step is None or step in self.c["violations"]:
            return
        ckdir = self.remote / step.rsplit("/", 1)[0]
        whole = sorted(p.name for p in ckdir.iterdir() if p.name.startswith("step-") and checkpoint_whole(p))
        finished = (ckdir.parent / "model" / "COMPLETE.json").is_file()
        if whole and whole[-1] == step.rsplit("/", 1)[1] and not finished:
            self.c["violations"].append(step)

    def _refused(self, rel: str, size: int) -> str | None:
        quota, cap = self.o["quota_bytes"], self.o["daily_cap_bytes"]
        if quota is not None and self._bytes(self.remote) + size > quota:
            return "quota"
        now = time.monotonic()
        self.window = [(t, n) for t, n in self.window if t > now - self.o["day_s"]]
        if cap is not None and sum(n for _, n in self.window) + size > cap:
            return "daily cap"
        return None

    def _land(self, rel: str, sig: tuple) -> None:
        src, dst = self.cache / rel, self.remote / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".upload-{dst.name}"
        shutil.copyfile(src, tmp)
        if dst.name in self.o["corrupt"]:
            self.o["corrupt"].discard(dst.name)
            raw = bytearray(tmp.read_bytes())
            at = raw.find(b'"sha256": "')
            i = at + len(b'"sha256": "') if at >= 0 else len(raw) // 2
            raw[i] = ord("0") if raw[i] != ord("0") else ord("1")
            tmp.write_bytes(bytes(raw))
            self.corrupted.add(rel)
        else:
            self.corrupted.discard(rel)
        os.replace(tmp, dst)
        self.delivered[rel] = sig
        self.window.append((time.monotonic(), sig[0]))
        self.c["uploads"].append([rel, sig[0], time.time()])
        self.c["uploaded_bytes"] += sig[0]
        self._note_whole(_step_dir(rel), f"landed {rel}")

    def _note_whole(self, step: str | None, what: str) -> None:
        """Count a checkpoint folder that just became whole on the remote (a file landed, or a folder whose
        files had all landed was renamed into place), and fire ``on_complete``."""
        if step and step not in self.c["complete"] and checkpoint_whole(self.remote / step):
            self.c["complete"].append(step)
            when = self.o["on_complete"]
            if when and len(self.c["complete"]) >= when["n"]:
                self.o["on_complete"] = None
                if when["then"] == "kill":
                    self._die(f"{what}: {len(self.c['complete'])} checkpoints whole on the remote", when["n"])
                then = dict(when["then"])
                if "quota_slack" in then:
                    then["quota_bytes"] = self._bytes(self.remote) + int(then.pop("quota_slack"))
                self.control("set", then)

    def _tick(self, budget: float) -> float:
        """One pass of the uploader: deletions to the Trash, then closed changed files, oldest first."""
        now = time.monotonic()
        cache = {r: p for r, p in _files(self.cache).items()}
        for rel in sorted(set(_files(self.remote)) - set(cache)):
            if (self.remote / rel).exists():
                self._to_trash(rel)
        for d, subdirs, names in os.walk(self.remote, topdown=False):  # folders gone from the mount
            rel = Path(d).relative_to(self.remote).as_posix()
            if rel != "." and not (self.cache / rel).is_dir() and not os.listdir(d):
                os.rmdir(d)
        todo = []
        for rel, p in cache.items():
            try:
                sig = _sig(p)
            except FileNotFoundError:
                continue
            if self.delivered.get(rel) == sig or self.writers.get(rel):
                continue
            if now - self.closed_at.get(rel, 0.0) < self.o["lag_s"]:
                continue
            todo.append((sig[1], rel, sig))
        rate = self.o["rate"]
        for _, rel, sig in sorted(todo):
            why = self._refused(rel, sig[0])
            if why is not None:
                if not self.c["refusals"] or self.c["refusals"][-1] != [why, rel]:
                    self.c["refusals"].append([why, rel])
                continue
            if rate is not None:
                if sig[0] > budget:
                    return budget
                budget -= sig[0]
            self._land(rel, sig)
        return min(budget, (rate or 0) * 0.1)  # idle time does not bank bandwidth

    def _uploader(self) -> None:
        budget, last = 0.0, time.monotonic()
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            with self.mu:
                if self.o["rate"] is not None:
                    budget += (now - last) * self.o["rate"]
                last = now
                if self.o["dead"]:
                    continue  # a dead mount uploads nothing
                try:
                    budget = self._tick(budget)
                except FileNotFoundError:
                    pass  # a file renamed or deleted under the scan: the next tick sees the new state

    def api_get(self, file_id: str) -> dict | None:
        with self.mu:
            self.c["api_gets"] += 1
            rel = rel_of_id(file_id)
            self._maybe_die("api_get", "/" + rel)
            p = self.remote / rel
            if p.is_dir():
                return {"mimeType": "application/vnd.google-apps.folder"}
            if not p.is_file():
                return None
            key = (rel, *_sig(p))
            if key not in self.md5_cache:
                self.md5_cache[key] = _md5(p)
            step = _step_dir(rel)
            if rel in self.corrupted and self.o["kill_after_corrupt_seen"] and step \
                    and checkpoint_whole(self.remote / step):
                # the code now sees all of it on Drive, one file different: it says so before its next operation
                self.o.update(kill_at={"match": "/checkpoints", "n": 1}, kill_after_corrupt_seen=False)
                self.matched = 0
            return {"size": str(p.stat().st_size), "md5Checksum": self.md5_cache[key], "trashed": False}

    def api_delete(self, file_id: str) -> bool:
        """Permanent deletion: gone from the remote and, at once, from the mount."""
        with self.mu:
            rel = rel_of_id(file_id)
            self._maybe_die("api_delete", "/" + rel)
            p = self.remote / rel
            if not p.exists():
                return False
            self._check_violation(rel)
            for root in (self.remote, self.cache):
                q = root / rel
                if q.is_dir():
                    shutil.rmtree(q)
                elif q.exists():
                    q.unlink()
            for k in [k for k in self.delivered if k == rel or k.startswith(rel + "/")]:
                del self.delivered[k]
            self.c["api_deleted"].append(rel)
            return True

    def pending(self) -> list[str]:
        with self.mu:
            cache, remote = _files(self.cache), _files(self.remote)
            out = [r for r, p in cache.items() if self.delivered.get(r) != _sig(p)]
            return sorted(out + [r for r in remote if r not in cache])

    def control(self, cmd: str, kw: dict):
        if cmd == "ping":
            return os.getpid()
        if cmd == "set":
            with self.mu:
                for k, v in kw.items():
                    if k not in DEFAULTS:
                        raise KeyError(f"unknown fault {k!r}: expected one of {sorted(DEFAULTS)}")
                    self.o[k] = set(v) if k == "corrupt" else v
                    if k == "kill_at":
                        self.matched = 0
            return None
        if cmd == "status":
            with self.mu:
                return json.loads(json.dumps(dict(self.c, pending=self.pending(), faults={
                    k: (sorted(v) if isinstance(v, set) else v) for k, v in self.o.items()})))
        if cmd == "api_get":
            return self.api_get(kw["id"])
        if cmd == "api_delete":
            return self.api_delete(kw["id"])
        raise KeyError(f"unknown control command {cmd!r}")


def _serve_control(fs: _DriveFS, listener) -> None:
    from multiprocessing import AuthenticationError

    def handle(conn):
        with conn:
            while True:
                try:
                    cmd, kw = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    conn.send(("ok", fs.control(cmd, kw)))
                except Exception as e:  # the caller sees it (a bad command is the test's bug)
                    conn.send(("err", f"{type(e).__name__}: {e}"))

    while True:
        try:
            c = listener.accept()
        except (OSError, EOFError, AuthenticationError) as e:  # a client that died in the handshake: the next one
            print(f"control: a connection failed ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def serve(root: str, mountpoint: str, address: str, opts: dict) -> None:
    from fuse import FUSE

    from multiprocessing.connection import Listener

    fs = _DriveFS(Path(root), opts)
    # listening before the mount comes up: a client that sees the mount can connect at once
    listener = Listener(address, family="AF_UNIX", authkey=AUTHKEY)
    threading.Thread(target=_serve_control, args=(fs, listener), daemon=True, name="control").start()
    # no kernel caching of names or attributes: every call reaches this process (and its faults) at once
    # (big_writes: 128 KiB per write request instead of libfuse2's 4 KiB, as DriveFS's FUSE 3 has by default)
    FUSE(fs, mountpoint, foreground=True, nothreads=False, fsname="fusedrive", entry_timeout=0, attr_timeout=0,
         negative_timeout=0, big_writes=True)


# ============================================================================ the test's side
class FuseUnavailable(RuntimeError):
    """No FUSE mount could be made (the tests skip, naming why)."""


class _Client:
    """One connection to the FUSE process's control socket (thread-safe: one request at a time)."""

    def __init__(self, address: str):
        from multiprocessing.connection import Client

        self.conn = Client(address, family="AF_UNIX", authkey=AUTHKEY)
        self.lock = threading.Lock()

    def __call__(self, cmd: str, **kw):
        with self.lock:
            self.conn.send((cmd, kw))
            status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"fuse drive control {cmd}: {value}")
        return value

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


class FuseDrive:
    """A FUSE-mounted stand-in Drive under ``root`` (see the module docstring). ``rate``, ``lag_s``,
    ``xattrs``: the mount's nature (kept across remounts); other keyword arguments: initial faults."""

    def __init__(self, root: str | os.PathLike, **opts):
        self.root = Path(root)
        self.mount, self.cache = self.root / "mnt", self.root / "cache"
        self.remote, self.trash = self.root / "remote", self.root / "trash"
        for d in (self.mount, self.remote, self.trash):
            d.mkdir(parents=True, exist_ok=True)
        unknown = set(opts) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown FuseDrive options {sorted(unknown)}: expected some of {sorted(DEFAULTS)}")
        self.opts = opts
        self._sockdir = tempfile.mkdtemp(prefix="fzd")  # a unix socket path must stay under 108 bytes
        self.address = os.path.join(self._sockdir, "ctl")
        self.proc: subprocess.Popen | None = None
        self.client: _Client | None = None
        self.mounts = 0

    # ---------------------------------------------------------------- mount and unmount
    def start(self) -> "FuseDrive":
        """Mount afresh: the cache starts as a copy of the remote (nothing pending)."""
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.copytree(self.remote, self.cache)
        (self.root / "death.json").unlink(missing_ok=True)
        if os.path.exists(self.address):
            os.unlink(self.address)
        opts = {k: v for k, v in self.opts.items() if k in INIT_ONLY} if self.mounts else dict(self.opts)
        log = open(self.root / "fuse.log", "a")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.root), str(self.mount),
                                      self.address, json.dumps(opts)], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (os.path.ismount(self.mount) and os.path.exists(self.address)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reap()
                raise FuseUnavailable(f"the FUSE mount at {self.mount} did not come up (rc {self.proc.returncode}): "
                                      + (self.root / "fuse.log").read_text()[-2000:])
            time.sleep(0.02)
        self.client = _Client(self.address)
        self.mounts += 1
        return self

    def mounted(self) -> bool:
        """Whether the mount point is in the mount table (also when its FUSE process died: ``ismount`` then
        fails with ENOTCONN and says False)."""
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == os.path.realpath(self.mount) for line in f)

    def _unmount(self) -> None:
        if not self.mounted():
            return
        for flags in ("-u", "-uz"):  # -z (lazy): a dead mount that something still holds open
            if subprocess.run([_fusermount(), flags, str(self.mount)], capture_output=True).returncode == 0:
                return
        raise RuntimeError(f"could not unmount {self.mount}: unmount it with `fusermount -uz {self.mount}`")

    def _reap(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Unmount and end the FUSE process; never leaves a mount behind (lazy unmount as the fallback)."""
        try:
            self._unmount()
        finally:
            self._reap()
            shutil.rmtree(self._sockdir, ignore_errors=True)

    def crash(self) -> None:
        """SIGKILL the FUSE process: the mount answers ENOTCONN from the kernel; uploads in flight are lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def remount(self) -> "FuseDrive":
        """``drive.mount(..., force_remount=True)``: a new FUSE process over the same remote, empty cache."""
        self._unmount()
        self._reap()
        return self.start()

    def vm_death(self) -> "FuseDrive":
        """The VM dies (its cache with it); the next VM mounts a Drive that shows exactly the remote."""
        self.crash()
        return self.remount()

    def died(self) -> dict | None:
        """What a planned VM death struck (``kill_at`` ...), or None when none happened."""
        p = self.root / "death.json"
        return json.loads(p.read_text()) if p.is_file() else None

    # ---------------------------------------------------------------- control
    def set(self, **faults) -> None:
        self.client("set", **faults)

    def status(self) -> dict:
        return self.client("status")

    def wait_synced(self, timeout_s: float = 30.0) -> None:
        """Until nothing is pending (every change on the mount reached the remote)."""
        deadline = time.monotonic() + timeout_s
        while (left := self.status()["pending"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still pending after {timeout_s} s: {left[:5]}")
            time.sleep(0.05)

    def remote_whole(self, ckpt_dir: str) -> list[int]:
        """Steps of the checkpoints whole on the remote (sizes against their manifest) in ``ckpt_dir``."""
        d = self.remote / ckpt_dir
        if not d.is_dir():
            return []
        return sorted(int(p.name.split("-")[1]) for p in d.iterdir()
                      if p.name.startswith("step-") and checkpoint_whole(p))


# ============================================================================ the Drive API, in the code's process
class _HttpError(Exception):
    """googleapiclient.errors.HttpError's shape (``resp.status``, ``status_code``), where the library is absent."""

    def __init__(self, resp, content=b"", uri=None):
        self.resp, self.content, self.uri = resp, content, uri
        self.status_code = getattr(resp, "status", None)
        super().__init__(f"<HttpError {self.status_code}>")


class _Request:
    def __init__(self, fn):
        self.fn = fn

    def execute(self):
        return self.fn()


class _Files:
    def __init__(self, client: _Client, http_error):
        self.client, self.http_error = client, http_error

    def get(self, fileId, fields=None):  # noqa: N803  (the Drive v3 client's spelling)
        def run():
            meta = self.client("api_get", id=fileId)
            if meta is None:
                import types

                raise self.http_error(types.SimpleNamespace(status=404, reason="File not found"), b"not found")
            return meta
        return _Request(run)

    def delete(self, fileId):  # noqa: N803
        def run():
            if not self.client("api_delete", id=fileId):
                import types

                raise self.http_error(types.SimpleNamespace(status=404, reason="File not found"), b"not found")
            return ""
        return _Request(run)


class DriveService:
    """What ``googleapiclient.discovery.build("drive", "v3")`` gives, answered by the FUSE process."""

    def __init__(self, address: str):
        try:
            from googleapiclient.errors import HttpError
        except ImportError:  # not installed off Colab: ColabDriveApi imports this name, so provide it
            import types

            mod = types.ModuleType("googleapiclient.errors")
            mod.HttpError = HttpError = _HttpError
            pkg = sys.modules.setdefault("googleapiclient", types.ModuleType("googleapiclient"))
            pkg.errors = mod
            sys.modules["googleapiclient.errors"] = mod
        self._files = _Files(_Client(address), HttpError)

    def files(self):
        return self._files


def connect_api(address: str):
    """Register ``ColabDriveApi`` over this mount's Drive (the setup cell's ``connect_api``, without a click)."""
    from helpers.colab import drive

    return drive.use_api(drive.ColabDriveApi(DriveService(address)))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
