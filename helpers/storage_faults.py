"""Storage faults that retrying will not fix, named the same way wherever they strike.

A Colab run keeps its state on the Google Drive mount, which fails in a few persistent ways: the
mount dies ("Transport endpoint is not connected", ENOTCONN, until a forced remount), reads fail
with EIO / ESTALE, Drive's quota or its daily upload limit refuses the uploads, the VM's own disk
fills. :class:`StorageFault` is the one error all of them become, wherever they strike (a checkpoint's
publication, a resume, a stage model loaded from the run directory by :func:`helpers.models.load_stage`):
its message names what failed, the path and errno, where the newest good state is, and the remedy
(:data:`REMEDIES`, one place). :func:`fault_kind` reads which fault an ``OSError`` (also a folder copy's
``shutil.Error`` or ``torch.save``'s disk-full ``RuntimeError``) shows.

A core module (standard library only) so that the model loader and the inference engine, which sit
below :mod:`helpers.colab`, raise the same type as the training code (:mod:`helpers.colab.drive`).
"""
from __future__ import annotations

import errno
import os
import shutil

REMOUNT = 'from google.colab import drive; drive.mount("/content/drive", force_remount=True)'

# What a user does about each persistent storage fault (StorageFault.kind -> remedy). One place, so every
# message that stops a run names the same fix.
REMEDIES = {
    "dead_mount": (f"the Drive mount is dead (\"Transport endpoint is not connected\") and stays so until it is "
                   f"remounted: run `{REMOUNT}` in a new cell, then rerun this notebook"),
    "io_error": (f"Drive keeps failing with I/O errors: remount it (`{REMOUNT}`) and rerun this notebook; if the "
                 "same file keeps failing, open it at drive.google.com (a damaged copy: delete it and rerun the "
                 "notebook that wrote it); if it persists, restart the runtime"),
    "quota": ("Drive is full (its quota refuses the writes or uploads): delete files you do not need AND empty "
              "Drive's Trash (drive.google.com/drive/trash: deleted files count against the quota for 30 days), or "
              "buy more storage; then rerun this notebook"),
    "daily_cap": ("Drive refuses uploads beyond 750 GB per user per day: wait for the limit to reset (up to 24 h), "
                  "then rerun this notebook; a longer save_every_minutes uploads less per day"),
    "stalled": ("the usual causes, and what to do about each: (1) Drive's storage quota is full on Google's side (the "
                "mount's free space can lag behind it): check drive.google.com/settings/storage, delete files you do "
                "not need AND empty Drive's Trash (drive.google.com/drive/trash: deleted files count against the quota "
                "for 30 days); (2) Drive's 750 GB per day upload limit, which counts every upload of this Google "
                "account (other VMs and apps included): wait up to 24 h for it to reset; (3) a stuck mount or a slow "
                f"connection: remount (`{REMOUNT}`). Then rerun this notebook: it continues from the newest checkpoint "
                "that verifies"),
    "corrupt_upload": ("Drive holds other bytes than this VM wrote (an upload damaged on its way): rerun this "
                       "notebook, which uploads it again (from this VM's copy, or from the newest checkpoint that "
                       "verifies)"),
    "local_disk": ("the VM's local disk is full: free space there (old checkpoints, caches under /tmp) or use a "
                   "runtime with a larger disk; Drive's quota and Trash do not matter for this one"),
    "write_failed": ("the run directory is not on Google Drive and its writes keep failing (the last error is quoted "
                     "above): check that it exists, is writable and has room, then rerun this notebook"),
    "drive_api": ("the Drive API does not answer, so nothing can be confirmed on Drive: rerun this notebook (its "
                  "setup cell reconnects the API)"),
    "lease": ("another notebook writes to this run directory: stop it (or wait for its lease to expire) before "
              "running this one, or use another run_name"),
}


class StorageFault(RuntimeError):
    """A storage failure that retrying will not fix (dead mount, quota, daily cap, stalled uploads, full disk).

    ``kind``: a key of :data:`REMEDIES`; ``what``: what failed (path, errno); ``safe``: where the newest
    good state is, filled in by whoever stops the run. ``str()`` is the ONE message the user sees."""

    def __init__(self, kind: str, what: str, *, path=None, errno_: int | None = None, safe: str = ""):
        if kind not in REMEDIES:
            raise ValueError(f"storage fault kind {kind!r}: expected one of {sorted(REMEDIES)}")
        self.kind, self.what, self.path, self.errno, self.safe = kind, what, path, errno_, safe
        super().__init__(what)

    def __str__(self) -> str:
        where = f" ({self.path}" + (f", {errno_name(self.errno)}" if self.errno else "") + ")" if self.path else ""
        return (f"STORAGE FAULT [{self.kind}]: {self.what}{where}.\n"
                + (f"Safe: {self.safe}\n" if self.safe else "") + f"Remedy: {REMEDIES[self.kind]}.")


def errno_name(code: int | None) -> str:
    """``"errno 107 ENOTCONN: Transport endpoint is not connected"``, or ``"no errno"``."""
    if not code:
        return "no errno"
    return f"errno {code} {errno.errorcode.get(code, '?')}: {os.strerror(code)}"


def os_error_errno(e: BaseException) -> int | None:
    """The errno of an OSError, also of a ``shutil.Error`` (a folder copy's failures, errno None: its
    entries' strings carry ``[Errno N]``) and of ``torch.save``'s disk-full ``RuntimeError``."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    text = str(e)
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list):
        text = " ".join(str(x) for entry in e.args[0] for x in (entry if isinstance(entry, tuple) else (entry,)))
    for code in (errno.ENOTCONN, errno.EIO, errno.ESTALE, errno.ENOSPC, errno.EDQUOT):
        if f"[Errno {code}]" in text or os.strerror(code) in text:
            return code
    if "unexpected pos" in text or "PytorchStreamWriter failed" in text:  # torch.save on a full disk
        return errno.ENOSPC
    return None


def fault_kind(e: BaseException, *, local: bool = False) -> str | None:
    """Which persistent fault ``e`` shows, or None (``local``: the path is the VM's disk, not Drive)."""
    if isinstance(e, StorageFault):
        return e.kind
    code = os_error_errno(e)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "local_disk" if local else "quota"
    if code == errno.ENOTCONN:
        return "dead_mount"
    if code in (errno.EIO, errno.ESTALE):
        return "io_error"
    text = str(e)
    if "storageQuotaExceeded" in text or "quotaExceeded" in text:
        return "quota"
    if "uploadLimitExceeded" in text or "dailyLimitExceeded" in text:
        return "daily_cap"
    return None
