"""Checkpoint publication off the training path.

A save has two parts. What must be consistent — the model, optimizer, scheduler, RNG and data
position written to local disk — blocks the training loop (:func:`helpers.train.checkpoints.write_state`).
The rest — hashing the files into the manifest, the copy into the run directory on Drive, the
retention policy — runs here, in a background thread, while training continues: at 3.25 B
parameters that is ~19.5 GB to hash and copy, minutes that would otherwise stall the GPU every
``save_every_minutes``.

At most one publication is in flight: the next save (and the end of the stage) waits for it.
A failed publication is retried (``retries`` times, ``backoff_s`` apart) and reported through
``log``; if it still fails, its local folder stays where it is and the error is kept
(:attr:`BackgroundPublisher.failures`), so nothing is lost silently — the next checkpoint
supersedes it (the resume policy only needs the newest), and a run that ends with a failed
publication says so.
"""
from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Callable


class BackgroundPublisher:
    """Runs ``publish(local_folder) -> published_folder`` in a thread, one at a time."""

    def __init__(self, publish: Callable[[Path], Path], log: Callable[[str], None] = print, *,
                 retries: int = 2, backoff_s: float = 10.0, background: bool = True):
        self._publish, self._log = publish, log
        self.retries, self.backoff_s, self.background = int(retries), float(backoff_s), bool(background)
        self._thread: threading.Thread | None = None
        self._result: Path | None = None
        self.failures: list[tuple[Path, str]] = []  # (local folder kept, error) of publications that gave up
        self.waited_s = 0.0  # time the training loop spent waiting for a publication in flight
        self.published: list[Path] = []

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, local: Path) -> None:
        for attempt in range(self.retries + 1):
            try:
                dest = self._publish(local)
                self._result = dest
                self.published.append(dest)
                if attempt:
                    self._log(f"checkpoint {local.name}: published on attempt {attempt + 1}")
                return
            except Exception as e:  # reported and retried; kept in self.failures when it gives up
                msg = f"{type(e).__name__}: {e}"
                if attempt < self.retries:
                    self._log(f"WARNING checkpoint {local.name}: publication failed ({msg}); retrying in "
                              f"{self.backoff_s:g} s (attempt {attempt + 2} of {self.retries + 1})")
                    time.sleep(self.backoff_s)
                else:
                    self.failures.append((local, msg))
                    self._log(f"ERROR checkpoint {local.name}: publication failed {self.retries + 1} times ({msg}); "
                              f"the local copy stays at {local} and training continues — the next checkpoint "
                              f"supersedes it.\n{traceback.format_exc(limit=3)}")

    def submit(self, local: str | Path) -> None:
        """Publish ``local`` in the background (waits first for a publication still in flight)."""
        self.wait()
        local = Path(local)
        self._result = None
        if not self.background:
            self._run(local)
            return
        self._thread = threading.Thread(target=self._run, args=(local,), name=f"publish-{local.name}", daemon=True)
        self._thread.start()

    def wait(self) -> Path | None:
        """Block until the publication in flight (if any) is done; its published folder, or None."""
        if self._thread is not None:
            t0 = time.perf_counter()
            self._thread.join()
            self.waited_s += time.perf_counter() - t0
            self._thread = None
        return self._result
