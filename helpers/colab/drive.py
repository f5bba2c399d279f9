"""Google Drive as Colab mounts it: free space, deletions that do not fill the Trash, retried syncs.

What the mounted Drive really does (``/content/drive``, Colab's DriveFS FUSE mount), and what this
module does about it:

* **Deleting moves to the Trash.** ``rm`` / ``shutil.rmtree`` on the mount trashes the files; trashed
  files keep counting against the storage quota for 30 days (Drive API guide "Trash or delete files
  and folders"; the same reports in googlecolab/colabtools and gpt-2-simple#155). A 3B checkpoint is
  ~19.5 GB, so pruning checkpoints by ``rmtree`` would put tens to hundreds of GB into the Trash.
* **The Drive API deletes permanently.** ``files.delete`` "permanently deletes a file owned by the
  user without moving it to the trash; if the target is a folder, all descendants owned by the user
  are also deleted" (Drive API v3 reference). The mount exposes every file's and folder's Drive id as
  the extended attribute ``user.drive.id`` (``os.getxattr(path, "user.drive.id")``, what
  ``xattr -p user.drive.id FILE`` prints on Colab). The API needs the user's OAuth consent
  (``google.colab.auth.authenticate_user()``): :func:`helpers.colab.session.start` asks for it in
  the first cell (:func:`connect_api`), never in the middle of training.
* **The mount is a write-back cache.** A write returns once the bytes are in the VM's local cache;
  the upload to Drive follows minutes later, and a VM that dies first loses it. Only the Drive API
  says what Drive holds: :class:`DriveApi` (``stat(path) -> (size, md5) | None``, ``delete(path)``),
  :class:`ColabDriveApi` on Colab (``files.get(fileId, fields="size,md5Checksum")``), a simulator in
  the tests (``tests/colab/drive_sim.py``). :mod:`helpers.train.checkpoints` deletes the last good
  checkpoint only after the API shows every file of the new one with its size and md5.
* **What cannot be avoided** without that consent: every deleted checkpoint sits in the Trash for up
  to 30 days (or until the user empties it). :func:`helpers.train.checkpoints.simulate_stage` counts those
  bytes and the run plan shows them.
* **Free space**: ``statvfs`` on the mount reports the Drive quota (total / free), so
  :func:`require_free_space` works the same on Drive and on local disk.

A failure that retrying will not fix becomes a :class:`helpers.storage_faults.StorageFault` (its kind names
the remedy: remount, free quota, wait for the daily limit); :func:`names_storage_faults` turns one leaving a
function into it.

Nothing here runs at import time; the Google client libraries are imported only by
:func:`connect_api`, which only the setup cell calls. After it nothing here can prompt: a Drive API
that fails mid-stage makes :class:`Remover` fall back to the Trash with a warning, never wait.
"""
from __future__ import annotations

import errno
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

from ..storage_faults import StorageFault, errno_name, fault_kind, os_error_errno

GB = 1e9  # Drive quotas and the run plan are in decimal GB, as Google shows them
DELETION_MODES = ("trash", "permanent")
DRIVE_ID_XATTR = "user.drive.id"


class InsufficientSpace(OSError):
    """Not enough free space for a write; raised before anything is written."""

    def __init__(self, what: str, path: Path, need: int, free: int, on_drive: bool = False):
        self.what, self.path, self.need, self.free = what, Path(path), int(need), int(free)
        self.on_drive = bool(on_drive) or str(path).startswith("/content/drive")
        super().__init__(errno.ENOSPC,
                         f"not enough space for {what} in {path}: needs {need / GB:.2f} GB, "
                         f"{free / GB:.2f} GB free (short by {(need - free) / GB:.2f} GB). Free space there "
                         + ("(empty Drive's Trash: deleted files count against the quota for 30 days) or use a "
                            "location with more room" if self.on_drive else
                            "(old checkpoints, caches) or use a location with more room"))


# Drive lets one user upload at most 750 GB a day (Google Workspace admin help, "Drive storage & upload
# limits"); beyond it uploads are refused for up to 24 h. Checkpoint cadence plans against it with a margin.
DAILY_UPLOAD_LIMIT = 750 * GB
DAILY_UPLOAD_MARGIN = 0.8  # plan and pace checkpoint uploads to at most this share of the daily limit
def names_storage_faults(what: str):
    """Decorator: an EIO / ENOTCONN / ESTALE on the mount leaving the function (a listing at resume,
    a size at retention, a marker's copy), or too little room on Drive, becomes a :class:`StorageFault`
    naming the path, the errno and the remedy, instead of a bare ``OSError`` traceback. Other errors
    (the VM's own disk included) pass unchanged."""
    import functools

    def deco(fn):
        @functools.wraps(fn)
        def wrapped(*a, **k):
            try:
                return fn(*a, **k)
            except StorageFault:
                raise
            except (OSError, shutil.Error) as e:
                kind = fault_kind(e)
                if isinstance(e, InsufficientSpace) and e.on_drive:
                    kind = "quota"  # checked before the write: Drive's quota (statvfs on the mount), not the VM's disk
                elif kind not in ("dead_mount", "io_error"):
                    raise
                raise StorageFault(kind, f"{what} failed: {e}", path=getattr(e, "filename", None),
                                   errno_=os_error_errno(e)) from e
        return wrapped
    return deco


def _existing(path: Path) -> Path:
    path = Path(path).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system holding ``path`` (the nearest existing parent if absent)."""
    return int(shutil.disk_usage(_existing(Path(path))).free)


def tree_bytes(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def require_free_space(path: str | os.PathLike, need_bytes: int, what: str, *, reclaimable: int = 0,
                       on_drive: bool = False) -> int:
    """Raise :class:`InsufficientSpace` unless ``need_bytes`` fit at ``path``; returns the free bytes.

    Call it BEFORE a large write (checkpoint, stage model, token shards, export) so a full disk
    fails with a message naming the sizes instead of a truncated file mid-copy. ``reclaimable``:
    bytes the write itself frees at ``path`` before it needs them (e.g. a folder it replaces in place).
    """
    free = free_bytes(path)
    if int(need_bytes) > free + int(reclaimable):
        raise InsufficientSpace(what, Path(path), int(need_bytes), free + int(reclaimable), on_drive=on_drive)
    return free


# ----------------------------------------------------------------------------- the Drive API
XATTR_WAIT_S = 60.0  # how long session.start waits for DriveFS to give a new file its Drive id


class DriveIdMissing(RuntimeError):
    """A file is on the mount but exposes no Drive id: the API cannot be asked about it (never "absent")."""


def drive_file_id(path: str | os.PathLike) -> str | None:
    """The Drive id of a file or folder on the Colab Drive mount, or None where none is exposed (the
    attribute is absent, or the platform has no xattrs). Any other error (a dead mount) is raised: it
    must never read as "not on Drive"."""
    try:
        raw = os.getxattr(str(path), DRIVE_ID_XATTR)
    except AttributeError:  # a platform without xattrs
        return None
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise
    return raw.decode().strip() or None


class DriveApi(Protocol):
    """What Drive itself holds, as opposed to what the mount's local cache shows."""

    def stat(self, path: str | os.PathLike) -> tuple[int, str] | None:
        """(size in bytes, hex md5) of the file at ``path`` (a path on the mount) as stored on Drive;
        None when Drive does not hold it (not uploaded yet, or deleted)."""

    def delete(self, path: str | os.PathLike) -> None:
        """Delete the file or folder at ``path`` permanently (not into the Trash)."""


class ColabDriveApi:
    """:class:`DriveApi` through the Drive v3 client, by the mount's ``user.drive.id`` attribute."""

    def __init__(self, service):
        self.service = service

    def stat(self, path):
        file_id = drive_file_id(path)
        if file_id is None:
            if Path(path).exists():  # on the mount without an id: we cannot ask, which is not "absent"
                raise DriveIdMissing(f"{path} has no {DRIVE_ID_XATTR} attribute: the Drive API cannot be asked "
                                     "about it")
            return None
        from googleapiclient.errors import HttpError

        try:
            meta = self.service.files().get(fileId=file_id, fields="size,md5Checksum,trashed").execute()
        except HttpError as e:
            if getattr(e, "status_code", None) == 404 or getattr(getattr(e, "resp", None), "status", None) == 404:
                return None
            raise
        if meta.get("trashed") or "md5Checksum" not in meta:
            return None
        return int(meta["size"]), meta["md5Checksum"]

    def xattr_problem(self, folder: str | os.PathLike, wait_s: float | None = None) -> str | None:
        """None when the mount gives a file written here its Drive id (``user.drive.id``) within ``wait_s``,
        else why not. Checked once by :func:`helpers.colab.session.start`: without it every checkpoint would
        look absent from Drive."""
        wait_s = XATTR_WAIT_S if wait_s is None else wait_s
        probe = Path(folder) / f".optimumllm-xattr-probe-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"probe")
            deadline = time.monotonic() + wait_s
            while True:
                got = drive_file_id(probe)
                if got is not None:
                    return None
                if time.monotonic() >= deadline:
                    return (f"{probe} got no {DRIVE_ID_XATTR} attribute within {wait_s:.0f} s (this mount does not "
                            "expose Drive ids)")
                time.sleep(min(2.0, wait_s))
        except OSError as e:
            return f"probing {probe} failed ({errno_name(os_error_errno(e))}: {e})"
        finally:
            try:
                probe.unlink()
            except OSError:
                pass

    def delete(self, path):
        file_id = drive_file_id(path)
        if file_id is None:
            raise FileNotFoundError(f"{path} has no Drive id ({DRIVE_ID_XATTR}): not on the Drive mount")
        self.service.files().delete(fileId=file_id).execute()


_API: DriveApi | None = None  # set once by the setup cell (helpers.colab.session.start)


def connect_api() -> ColabDriveApi:
    """Ask for the user's consent to the Drive API (a browser click) and register the client.

    Called by the setup cell of every notebook on Colab, before any long work: after it nothing
    in the run asks for a click again (the credentials stay with the VM)."""
    from google.colab import auth  # only importable on Colab
    from googleapiclient.discovery import build

    auth.authenticate_user()
    return use_api(ColabDriveApi(build("drive", "v3", cache_discovery=False)))


def use_api(api: DriveApi | None) -> DriveApi | None:
    """Register the :class:`DriveApi` the run uses (None: the run directory is a plain disk)."""
    global _API
    _API = api
    return api


def current_api() -> DriveApi | None:
    """The registered :class:`DriveApi`, or None when none was connected (never prompts)."""
    return _API


class Remover:
    """Deletes folders from the run directory, permanently when allowed, and counts what went to the Trash.

    ``mode``: ``"trash"`` (plain ``rmtree``; on the Drive mount the bytes go to the Trash and keep
    counting against the quota) or ``"permanent"`` (``api.delete``; the user's consent to that is the
    mode). ``api``: the :class:`DriveApi` (default: the one the setup cell connected, if any). Where
    there is none and the path has no Drive id (local disk, tests) it is removed with ``rmtree``, which
    frees the space. Nothing here prompts: without a working API a permanent deletion falls back to
    the Trash with a warning that quotes ``trash_note()`` (the run plan's Trash figure).
    """

    def __init__(self, mode: str = "trash", api: DriveApi | None = None, log: Callable[[str], None] | None = None,
                 wait_s: float = 60.0, trash_note: Callable[[], str] | None = None):
        if mode not in DELETION_MODES:
            raise ValueError(f"drive deletion mode {mode!r}: expected one of {DELETION_MODES}")
        self.mode, self.wait_s, self.trash_note = mode, wait_s, trash_note
        self.api = api if api is not None else current_api()
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self.trashed_bytes = 0  # bytes this remover sent to Drive's Trash (they still count against the quota)
        self.deleted_bytes = 0  # bytes freed at once

    def _fallback(self, path: Path, size: int, why: str) -> None:
        note = self.trash_note() if self.trash_note else ""
        self.log(f"WARNING: permanent deletion of {path} {why}; moving it to Drive's Trash instead "
                 f"({size / GB:.2f} GB, counted against the quota for 30 days){'; ' + note if note else ''}")

    def remove(self, path: str | os.PathLike) -> int:
        """Delete ``path`` (file or folder); returns the bytes that went to the Trash (0 if none)."""
        path = Path(path)
        if not path.exists():
            return 0
        size = tree_bytes(path)
        on_drive = self.api is not None or drive_file_id(path) is not None
        if on_drive and self.mode == "permanent":
            if self.api is None:
                self._fallback(path, size, "is not possible: no Drive API was connected in the setup cell")
            else:
                try:
                    self.api.delete(path)
                except Exception as e:  # an API failure must not lose or stall the run: fall back to the Trash
                    self._fallback(path, size, f"through the Drive API failed ({type(e).__name__}: {e})")
                else:
                    deadline = time.monotonic() + self.wait_s
                    while path.exists() and time.monotonic() < deadline:  # DriveFS shows the deletion shortly
                        time.sleep(1.0)
                    if not path.exists():
                        self.deleted_bytes += size
                        return 0
                    self.log(f"{path} still visible {self.wait_s:.0f} s after its permanent deletion; removing "
                             "it from the mount as well")
        _rmtree(path)
        if on_drive:  # a Drive folder removed through the mount: it is in the Trash now
            self.trashed_bytes += size
            return size
        self.deleted_bytes += size
        return 0


def _rmtree(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()


# ----------------------------------------------------------------------------- retried sync
_copy = shutil.copyfile  # indirection so tests can make Drive fail
def sync_file(src: str | os.PathLike, dest: str | os.PathLike, *, retries: int = 3, wait_s: float = 2.0,
              log: Callable[[str], None] | None = None) -> bool:
    """Copy a small local file (metrics, logs) over ``dest`` atomically, retrying; never raises OSError.

    Returns True when ``dest`` holds the copy. A Drive error is reported through ``log`` and the
    caller carries on: the local file stays complete, and the next sync copies all of it again.
    """
    src, dest = Path(src), Path(dest)
    log = log or (lambda m: print(m, file=sys.stderr))
    last = None
    for attempt in range(retries + 1):
        tmp = dest.parent / f".{dest.name}.sync-{os.getpid()}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _copy(src, tmp)
            os.replace(tmp, dest)
            return True
        except OSError as e:
            last = e
            try:
                if tmp.exists():
                    tmp.unlink()
            except OSError:
                pass
            if attempt < retries:
                time.sleep(wait_s * (attempt + 1))
    log(f"WARNING: could not copy {src.name} to {dest.parent} after {retries + 1} tries ({last}); training "
        f"continues, the local copy {src} is complete and the next sync retries")
    return False
