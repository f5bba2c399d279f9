"""Notebook session setup: profile, run directory, Google Drive, device summary.

Every notebook calls :func:`start` right after its parameters cell. On Colab
with the ``colab`` profile it mounts Google Drive (the run directory lives
there so work survives a disconnect) and asks for the Drive API consent
(:func:`helpers.colab.drive.connect_api`): both wait for a click in the browser,
so they happen here, in the first cells, and never once long work has started. The Hugging Face
token is read here too (Colab's Secrets may ask for the notebook's access) and kept in ``HF_TOKEN``.
Elsewhere it only creates the folder.

Drive mounts drop after hours ("Transport endpoint is not connected"), so
anything that copies into the run directory goes through :func:`copy_into_run`
(write locally, copy to a temp name beside the target, ``os.replace``, retry; a
mount that stays dead raises :class:`helpers.colab.drive.StorageFault`, whose
message says to remount with ``force_remount=True``).
"""
from __future__ import annotations

import errno
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import drive as drive_api
from ..models import get_hf_token
from ..profiles import Profile, RunPaths, get_profile, run_paths

DRIVE_MOUNT = "/content/drive"
COPY_RETRIES, COPY_WAIT_S = 3, 5.0  # a dropped mount's retries in copy_into_run (read at call time: tests scale them)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def mount_drive(force_remount: bool = False) -> None:
    """Mount Google Drive at /content/drive (Colab only)."""
    if not in_colab():
        raise RuntimeError("Google Drive can only be mounted inside Colab; pass runs_root= to use a local folder")
    from google.colab import drive  # only importable on Colab

    drive.mount(DRIVE_MOUNT, force_remount=force_remount)


@dataclass(frozen=True)
class Session:
    profile: Profile
    paths: RunPaths

    def __str__(self) -> str:
        return f"profile {self.profile.name!r}, run directory {self.paths.root}"


def start(profile: str = "colab", run_name: str | None = None, runs_root: str | None = None) -> Session:
    """Resolve the profile and run directory, mounting Drive when the run lives there.

    ``run_name`` None: the profile's own (``optimumllm-audio-v1``, ``optimumllm-audio-pilot`` for pilot).
    """
    prof = get_profile(profile)
    run_name = run_name or prof.run_name
    root = runs_root or prof.runs_root
    if str(root).startswith(DRIVE_MOUNT) and in_colab():
        if not os.path.isdir(os.path.join(DRIVE_MOUNT, "MyDrive")):
            mount_drive()
        if drive_api.current_api() is None:  # what Drive holds, not the mount's cache (helpers.train.checkpoints)
            api = drive_api.connect_api()
            why = api.xattr_problem(root) if hasattr(api, "xattr_problem") else None
            if why is not None:
                # Without Drive ids every checkpoint would look absent from Drive (resume from 0, deletions of
                # good checkpoints): the run goes on without the API, checking the mount's copies instead.
                drive_api.use_api(None)
                print(f"WARNING: {why}. The Drive API is NOT used: checkpoints are verified on the mount (its "
                      "cache may hold uploads that have not reached Drive yet) and deletions go to Drive's Trash. "
                      "Remount (drive.mount('/content/drive', force_remount=True)) and rerun this cell to retry.",
                      file=sys.stderr)
    if in_colab() and not prof.offline and not os.environ.get("HF_TOKEN", "").strip():
        token = get_hf_token()  # Colab may ask for the notebook's access to the secret: here, not mid-run
        if token:
            os.environ["HF_TOKEN"] = token  # every later Hub call reads it without asking again
    paths = run_paths(run_name, prof, root).ensure()
    return Session(prof, paths)


def device_summary() -> str:
    """One line about the accelerator (no CUDA initialisation beyond a query)."""
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, bf16={torch.cuda.is_bf16_supported()}"
    return "no GPU: running on CPU (fine for the tiny profile; the colab profile needs an A100)"


def _is_transport_error(e: BaseException) -> bool:
    """A dropped mount (ENOTCONN, EIO, ESTALE), also inside a folder copy's ``shutil.Error`` (errno None)."""
    return drive_api.os_error_errno(e) in (errno.ENOTCONN, errno.EIO, errno.ESTALE) \
        or "Transport endpoint is not connected" in str(e)


def copy_into_run(src: str | os.PathLike, dest: str | os.PathLike, retries: int | None = None,
                  wait_s: float | None = None) -> Path:
    """Copy a local file or folder to ``dest`` atomically: ``dest`` is either absent or complete.

    The copy goes to a hidden temp sibling first, then ``os.replace`` moves it into
    place (an existing ``dest`` is replaced). After a dropped Drive mount (ENOTCONN, EIO, ESTALE, also
    inside a folder copy's ``shutil.Error``) the copy is retried ``retries`` times (never remounting:
    that can prompt); if the mount stays down, or Drive is full (ENOSPC / EDQUOT), it raises
    :class:`helpers.colab.drive.StorageFault` naming the path, the errno and the remedy.
    """
    src, dest = Path(src), Path(dest)
    retries = COPY_RETRIES if retries is None else retries
    wait_s = COPY_WAIT_S if wait_s is None else wait_s
    if not src.exists():
        raise FileNotFoundError(f"nothing to copy: {src} does not exist")
    for attempt in range(retries + 1):
        tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                shutil.copy2(src, tmp)
            if dest.is_dir() and tmp.is_dir():
                old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
            return dest
        except (OSError, shutil.Error) as e:
            _remove_quietly(tmp)
            kind = drive_api.fault_kind(e)
            if kind == "quota":  # retrying cannot make room
                raise drive_api.StorageFault("quota", f"copying {src} into the run directory failed: {e}",
                                             path=dest, errno_=drive_api.os_error_errno(e)) from e
            if not _is_transport_error(e):
                raise
            if attempt == retries:
                code = drive_api.os_error_errno(e) or errno.ENOTCONN
                raise drive_api.StorageFault(
                    "dead_mount" if code == errno.ENOTCONN else "io_error",
                    f"copying {src} into the run directory failed {retries + 1} times ({e})",
                    path=dest, errno_=code) from e
            # No force_remount here: it can ask for a click, and nobody watches a stage mid-run. A
            # dropped mount usually comes back by itself; if it does not, the StorageFault above stops the run.
            print(f"Drive write to {dest} failed ({drive_api.errno_name(drive_api.os_error_errno(e))}: {e}); "
                  f"retrying in {wait_s * (attempt + 1):.0f} s ({attempt + 1}/{retries})", file=sys.stderr)
            time.sleep(wait_s * (attempt + 1))
    raise AssertionError("unreachable")


def _remove_quietly(p: Path) -> None:
    """Remove a temp copy; on a dead mount even ``is_dir()`` raises, and that must not hide the real error."""
    try:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    except OSError:
        pass  # the mount is down: the leftover is cleared by the next publish (_stale_temps)
