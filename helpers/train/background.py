"""Checkpoint publication off the training path, and the one place that decides a run must stop for storage.

A save has two parts. What must be consistent — the model, optimizer, scheduler, RNG and data
position written to local disk — blocks the training loop (:func:`helpers.train.checkpoints.write_state`).
The rest — hashing the files into the manifest, the copy into the run directory on Drive, the wait
for Drive to confirm it, the retention policy — runs here, in a background thread, while training
continues: at 3.25 B parameters that is ~19.5 GB to hash and copy, and tens of minutes to upload.

At most one publication is in flight. A save that comes while one is still running does not wait:
its local folder is queued, replacing (superseding) an older queued one, so uploads slower than the
save cadence stretch the Drive cadence instead of stalling training or piling up checkpoints.

Failures: a plain error is retried (``retries`` times, ``backoff_s`` apart) and reported. A fault that
retrying cannot fix (:class:`helpers.colab.drive.StorageFault`: the mount dead until remounted, Drive's
quota, the daily upload limit, a full local disk) is kept in :attr:`BackgroundPublisher.fault` at once;
so is ``fault_after`` publications in a row that failed or that Drive did not confirm (``diagnose``
names the likely cause: quota, daily cap, stalled uploads). The training loop reads :attr:`fault`
after every step and stops with one message (:meth:`helpers.train.recipe.StageRecipe.train`): a run
never goes on for hours with nothing reaching Drive. An error nothing above handles (a bug) does not die
with the thread either: the next :meth:`BackgroundPublisher.submit` or :meth:`BackgroundPublisher.wait`
raises it in the training thread.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from ..colab.drive import InsufficientSpace, StorageFault, fault_kind
from .checkpoints import UploadPending

FAULT_AFTER = 3  # publications in a row that fail or stay unconfirmed before the run stops


def _path_of(e: BaseException):
    """The path an error is about (OSError.filename, InsufficientSpace.path), for the fault message."""
    return getattr(e, "filename", None) or getattr(e, "path", None)


class BackgroundPublisher:
    """Runs ``publish(local_folder) -> published_folder`` in a thread, one at a time, newest queued.

    ``confirmed(published) -> bool``: whether Drive confirmed it (a publication that returns without
    confirmation counts towards ``fault_after``); ``diagnose(last_error) -> StorageFault``: the fault
    to report after ``fault_after`` such publications; ``superseded(local)``: called for a queued
    folder replaced by a newer one before it was published."""

    def __init__(self, publish: Callable[[Path], Path], log: Callable[[str], None] = print, *,
                 retries: int = 2, backoff_s: float = 10.0, background: bool = True, fault_after: int = FAULT_AFTER,
                 confirmed: Callable[[Path], bool] | None = None,
                 diagnose: Callable[[str], StorageFault] | None = None,
                 superseded: Callable[[Path], None] | None = None):
        self._publish, self._log = publish, log
        self.retries, self.backoff_s, self.background = int(retries), float(backoff_s), bool(background)
        self.fault_after = int(fault_after)
        self._confirmed = confirmed or (lambda p: True)
        self._diagnose = diagnose or (lambda why: StorageFault("stalled", why))
        self._superseded = superseded or (lambda p: None)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._next: Path | None = None
        self._result: Path | None = None
        self.failures: list[tuple[Path, str]] = []  # (local folder kept, error) of publications that gave up
        self.waited_s = 0.0  # time the training loop spent waiting for a publication in flight
        self.published: list[Path] = []
        self.unconfirmed_streak = 0  # publications in a row that failed or were not confirmed by Drive
        self.fault: StorageFault | None = None  # set once: the run must stop (StageRecipe.train reads it)
        self.crashed: BaseException | None = None  # what killed the worker; raised by the next submit() / wait()

    @property
    def busy(self) -> bool:
        return self._running

    def _count_miss(self, why: str) -> None:
        self.unconfirmed_streak += 1
        if self.unconfirmed_streak >= self.fault_after and self.fault is None:
            self.fault = self._diagnose(f"{self.unconfirmed_streak} checkpoint publications in a row failed or were "
                                        f"not confirmed by Drive (last: {why})")

    def _run_one(self, local: Path) -> None:
        for attempt in range(self.retries + 1):
            try:
                dest = self._publish(local)
            except UploadPending as e:  # the previous upload is still running: nothing written, nothing to retry
                self._log(f"checkpoint {local.name}: {e}")
                self._count_miss(str(e))
                return
            except Exception as e:  # reported and retried; kept in self.failures when it gives up
                msg = f"{type(e).__name__}: {e}"
                kind = fault_kind(e)
                if isinstance(e, InsufficientSpace) and not e.on_drive:
                    kind = "local_disk"  # a run directory on a plain disk: Drive's quota and Trash do not come into it
                if isinstance(e, StorageFault) or kind in ("quota", "local_disk", "daily_cap"):
                    self.failures.append((local, msg))
                    self.fault = e if isinstance(e, StorageFault) else StorageFault(
                        kind, f"publishing checkpoint {local.name} failed: {msg}", path=_path_of(e),
                        errno_=getattr(e, "errno", None))
                    self._log(f"ERROR checkpoint {local.name}: {msg}: training stops (local copy kept at {local})")
                    return
                if attempt < self.retries:
                    self._log(f"WARNING checkpoint {local.name}: publication failed ({msg}); retrying in "
                              f"{self.backoff_s:g} s (attempt {attempt + 2} of {self.retries + 1})")
                    time.sleep(self.backoff_s)
                    continue
                self.failures.append((local, msg))
                self._log(f"ERROR checkpoint {local.name}: publication failed {self.retries + 1} times ({msg}); "
                          f"the local copy stays at {local}")
                if kind in ("dead_mount", "io_error") and self.fault is None:
                    self.fault = StorageFault(kind, f"publishing checkpoint {local.name} failed "
                                                    f"{self.retries + 1} times: {msg}",
                                              path=_path_of(e), errno_=getattr(e, "errno", None))
                self._count_miss(msg)
                return
            if dest is None:  # sealed and kept on local disk only (the Drive cadence was not due)
                return
            self._result = dest
            self.published.append(dest)
            if attempt:
                self._log(f"checkpoint {local.name}: published on attempt {attempt + 1}")
            if self._confirmed(dest):
                self.unconfirmed_streak = 0
            else:
                self._count_miss(f"{dest.name} not confirmed on Drive in time")
            return

    def _worker(self, local: Path) -> None:
        try:
            while local is not None:
                if self.fault is None:
                    self._run_one(local)
                with self._lock:
                    local, self._next = self._next, None
                    if local is None:
                        self._running = False
        except BaseException as e:  # noqa: BLE001 - not lost with the thread: raised in the training thread
            with self._lock:
                self.crashed, self._next, self._running = e, None, False

    def _raise_crash(self) -> None:
        """A publication that died of an error no retry handles (a bug; in the tests, the VM dying) is raised
        in the calling (training) thread: a run never trains on with a dead publisher and nothing on Drive."""
        e, self.crashed = self.crashed, None
        if e is not None:
            raise e

    def submit(self, local: str | Path) -> None:
        """Publish ``local`` in the background; while one is in flight it is queued (replacing an older one)."""
        local = Path(local)
        self._raise_crash()
        with self._lock:
            if self._running:
                old, self._next = self._next, local
                if old is not None:
                    self._log(f"checkpoint {old.name} superseded by {local.name} before its upload started "
                              "(Drive is slower than the save cadence)")
                    self._superseded(old)
                return
            self._running = True
            self._result = None
        if not self.background:
            self._worker(local)
            return
        self._thread = threading.Thread(target=self._worker, args=(local,), name=f"publish-{local.name}", daemon=True)
        self._thread.start()

    def wait(self) -> Path | None:
        """Block until nothing is in flight or queued; the last published folder, or None."""
        t = self._thread
        if t is not None:
            t0 = time.perf_counter()
            t.join()
            self.waited_s += time.perf_counter() - t0
        self._raise_crash()
        return self._result
