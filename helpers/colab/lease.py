"""One writer per run directory: a lease file on Drive with the writer's host, pid and heartbeat.

Two notebooks training into one stage folder (two Colab tabs, a second VM) would resume from each
other's checkpoints and delete them. So a stage takes a lease first: ``LEASE.json`` in the stage
folder, holding ``{"host", "pid", "token", "since", "heartbeat"}`` (wall-clock seconds). While it
trains, :meth:`Lease.heartbeat` rewrites it every :data:`HEARTBEAT_S` and checks it is still its
own; a second writer finds a fresh lease and refuses with :class:`LeaseHeld`, naming the other.

A lease whose heartbeat is older than :data:`STALE_AFTER_S` belongs to a dead writer (a VM that
died, a kernel that was restarted) and is taken over, with a line saying whose it was. On the same
host a lease whose pid no longer runs is stale at once (a restarted kernel on this VM). Drive's
mount shows another VM's writes only after their upload (minutes), so the stale timeout is long,
and two VMs that start within that window can both take the lease: the second one's heartbeat then
finds the first one's token and stops (no writer goes on for long believing it is alone).
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Callable

from .drive import StorageFault, fault_kind, os_error_errno

LEASE_FILE = "LEASE.json"
STALE_AFTER_S = 30 * 60.0  # no heartbeat for this long: the writer is dead (DriveFS delivers in minutes)
HEARTBEAT_S = 120.0
_now = time.time  # indirection: tests move the clock


class LeaseHeld(StorageFault):
    """Another writer holds the run directory's lease."""

    def __init__(self, what: str, path):
        super().__init__("lease", what, path=path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Lease:
    """The lease of ``folder`` for this process (``host``: default this machine's name)."""

    def __init__(self, folder: str | os.PathLike, *, host: str | None = None,
                 log: Callable[[str], None] = print):
        self.path = Path(folder) / LEASE_FILE
        self.host, self.pid, self.token = host or socket.gethostname(), os.getpid(), uuid.uuid4().hex
        self.log = log
        self._beat = 0.0
        self.held = False

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a torn write: nobody holds a lease that cannot be read

    def _describe(self, cur: dict) -> str:
        age = _now() - float(cur.get("heartbeat", 0))
        return (f"host {cur.get('host')!r}, pid {cur.get('pid')}, holding it since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(float(cur.get('since', 0))))} UTC, last heartbeat "
                f"{age:.0f} s ago")

    def _stale(self, cur: dict) -> bool:
        if _now() - float(cur.get("heartbeat", 0)) > STALE_AFTER_S:
            return True
        return cur.get("host") == self.host and cur.get("pid") != self.pid and not _pid_alive(cur.get("pid", 0))

    def _mine(self, cur: dict | None) -> bool:
        # a rerun of the cell in the same kernel (same host and pid) is the same writer
        return cur is not None and (cur.get("token") == self.token
                                    or (cur.get("host") == self.host and cur.get("pid") == self.pid))

    def _write(self, since: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{LEASE_FILE}.{self.token[:8]}")
        tmp.write_text(json.dumps({"host": self.host, "pid": self.pid, "token": self.token, "since": since,
                                   "heartbeat": _now()}))
        os.replace(tmp, self.path)
        self._beat = _now()

    def acquire(self) -> "Lease":
        """Take the lease, or raise :class:`LeaseHeld` naming the writer that holds it (a run directory
        that cannot be read or written raises :class:`StorageFault` with the remedy)."""
        try:
            return self._acquire()
        except OSError as e:
            raise StorageFault(fault_kind(e) or "io_error", f"the run directory's lease cannot be taken ({e})",
                               path=self.path, errno_=os_error_errno(e)) from e

    def _acquire(self) -> "Lease":
        cur = self.read()
        if cur is not None and not self._mine(cur):
            if not self._stale(cur):
                raise LeaseHeld(f"another writer trains into {self.path.parent}: {self._describe(cur)}", self.path)
            self.log(f"taking over the lease of {self.path.parent} from a writer that stopped ({self._describe(cur)})")
        self._write(_now())
        self.held = True
        return self

    def heartbeat(self, force: bool = False) -> None:
        """Renew the lease every HEARTBEAT_S (cheap otherwise); raise :class:`LeaseHeld` if another took it.
        A mount that fails here is left to the checkpoint publication's fault handling."""
        if not self.held or (not force and _now() - self._beat < HEARTBEAT_S):
            return
        try:
            cur = self.read()
            if cur is not None and not self._mine(cur):
                self.held = False
                raise LeaseHeld(f"the lease of {self.path.parent} was taken over by another writer "
                                f"({self._describe(cur)}); this one stops before writing anything more", self.path)
            self._write(float(cur.get("since", _now())) if cur else _now())
        except OSError:
            pass

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self._mine(self.read()):
                self.path.unlink()
        except OSError:
            pass
