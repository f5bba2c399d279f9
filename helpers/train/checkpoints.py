"""Training checkpoints that survive Colab disconnects and dropped Drive mounts.

A checkpoint is a folder ``step-NNNNNNNN/`` holding

* ``model.pt``    the model's state_dict (exact fp32 master weights)
* ``trainer.pt``  optimizer, LR scheduler, torch RNG states, data position, step
* ``state.json``  the same scalars in readable form + the stage config + data fingerprint
* ``metrics.csv``, ``eval.csv`` the run logs up to this step (so a resume never depends on
  whether the separately synced logs reached Drive)
* ``manifest.json`` size, SHA-256 and md5 of every other file, written LAST

It is written to local disk first, then copied into the run directory with
:func:`helpers.colab.session.copy_into_run` (temp name + rename, Drive remount and
retry). A checkpoint counts only if its manifest exists and every file matches
it, so a copy that was cut off (missing manifest, truncated file, flipped
bytes) is detected and :func:`find_resume_path` falls back to the previous one.

**On Drive, not in the mount's cache.** Colab's Drive mount returns from a copy once the bytes are
in the VM's local cache; Drive receives them minutes later, and a VM that dies first loses them.
Hashing the mounted copy reads the cache, so it proves nothing. With a
:class:`helpers.colab.drive.DriveApi` (connected by the setup cell) a checkpoint counts only when
Drive itself reports every file of the manifest, and the manifest, with the size and md5 recorded
when the checkpoint was written (:func:`on_drive`). :func:`publish` waits for that (up to
``confirm_timeout_s``, with a status line) before it deletes the last confirmed checkpoint;
:func:`find_resume_path` skips a checkpoint Drive does not hold, so one that existed only in a
dead VM's cache does not exist.

**Checked against what was written, never against itself.** The hashes of a checkpoint are those of
its local original (:func:`local_record`, kept in this VM's :class:`Ledger`): Drive's copy is confirmed
by comparing Drive's md5s with them, so a copy whose manifest was corrupted in transit is never
confirmed; at resume on the same VM the run directory's copies are checked against the ledger, and
this VM's own newest sealed checkpoint (kept on local disk until Drive confirms a copy) competes with
them (:func:`resume_candidates`: the newest that verifies wins; an unreadable one is skipped, named).

Retention policy (what stays on Drive), one place for the trainer AND the run plan:

* :func:`publish_actions`: an upload still running is waited for, never deleted and never joined by a
  second one (when it does not land, the new checkpoint stays on local disk: :class:`UploadPending`);
  then write the new checkpoint, confirm it is on Drive, THEN delete older ones so that the newest
  ``keep_last`` (default 1) confirmed checkpoints remain. The newest confirmed checkpoint is never
  deleted; at most ``keep_last + 1`` checkpoints are on Drive at once. Cut-off copies and corrupt
  uploads were never confirmed and go first.
* :func:`drive_interval_s`: the shortest time between uploads (Drive's 750 GB/day limit with a margin,
  the measured upload rate); the recipe stretches its cadence to it and the run plan prints it.
* :func:`finish_actions`: once a stage's final model is confirmed on Drive, all its checkpoints go.
* :func:`simulate_stage` replays those same action lists on byte counts, with every confirmation
  arriving only at the next save (the worst the policy allows): the run plan's Drive
  peak and Trash figures come from it (``helpers.plan.costs``), so plan and trainer cannot drift.
* Deletions go through :class:`helpers.colab.drive.Remover`: permanent (Drive API, with the user's
  consent) or into Drive's Trash, whose bytes still count against the quota for 30 days.
* Free space is checked before every copy (:func:`helpers.colab.drive.require_free_space`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from ..colab import drive
from ..colab.drive import DriveApi, Remover, require_free_space, tree_bytes
from ..models import file_hashes, files_problem
from ..colab.session import copy_into_run

MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"
TRAINER_FILE = "trainer.pt"
STATE_FILE = "state.json"
FORMAT = 1
HF_KIND = "hf_trainer"  # a manifest over an HF Trainer / DeepSpeed checkpoint folder (DeepSpeed path)
_STEP_DIR = re.compile(r"^step-(\d{8})$")
# Longest a save waits for Drive to hold the new checkpoint. Training (and the GPU bill) pauses meanwhile,
# while an unconfirmed checkpoint only costs Drive space the plan already counts (it is confirmed at the
# next save): so the wait is short. 19.5 GB rarely uploads in 3 min; tiny checkpoints always do.
CONFIRM_TIMEOUT_S = 180.0
FINAL_CONFIRM_TIMEOUT_S = 3600.0  # a finished stage waits longer: its checkpoints go only after this
CONFIRM_POLL_S = 15.0
API_RETRIES = 3  # Drive API errors in a row (rate limits, 5xx) a confirmation rides out before it gives up
_sleep, _clock = time.sleep, time.monotonic  # indirection: the Drive simulator advances time in the tests


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, corrupt or cannot be resumed."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _write_json(path: Path, data) -> None:
    with path.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def write_state(folder: str | os.PathLike, model_state: dict, trainer_state: dict, info: dict,
                extra_files: dict | None = None) -> Path:
    """Write the training state into ``folder`` (local disk), without its manifest: the part of a save
    that must be consistent with the live model, so it blocks the training loop. :func:`seal` (hashing,
    the manifest) can run later, off the training path. Returns ``folder``.

    ``info``: JSON-able scalars (step, epoch, config, fingerprint, ...) stored in state.json.
    ``extra_files``: name -> local file copied in too (the run logs: they then reach Drive, and are
    confirmed there, together with the state they describe; absent files are skipped).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.save(model_state, folder / MODEL_FILE)
    torch.save(trainer_state, folder / TRAINER_FILE)
    for name, src in (extra_files or {}).items():
        if Path(src).is_file():
            shutil.copyfile(src, folder / name)
    _write_json(folder / STATE_FILE, {"format": FORMAT, **info})
    return folder


def seal(folder: str | os.PathLike, step: int | None) -> Path:
    """Hash the files of a :func:`write_state` folder into its manifest, written last: from then on it
    is a complete checkpoint (:func:`verify`)."""
    folder = Path(folder)
    files = {p.name: file_hashes(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    _write_json(folder / MANIFEST, {"format": FORMAT, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "step": step, "files": files})
    return folder


def write_local(folder: str | os.PathLike, model_state: dict, trainer_state: dict, info: dict,
                extra_files: dict | None = None) -> Path:
    """Write a complete checkpoint into ``folder`` (local disk), manifest last: :func:`write_state` then
    :func:`seal`. Returns ``folder``."""
    return seal(write_state(folder, model_state, trainer_state, info, extra_files), info.get("step"))


def write_manifest(folder: str | os.PathLike, step: int, kind: str = HF_KIND) -> Path:
    """Hash every file under ``folder`` (recursively) into its manifest, written last: makes any
    checkpoint folder (e.g. HF Trainer's ``checkpoint-N`` with DeepSpeed shards) verifiable."""
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    files = {p.relative_to(folder).as_posix(): file_hashes(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    _write_json(folder / MANIFEST, {"format": FORMAT, "kind": kind, "step": int(step),
                                    "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files})
    return folder


def verify(folder: str | os.PathLike, hashes: bool = True, api: DriveApi | None = None,
           expected: dict | None = None) -> str | None:
    """None if ``folder`` is a complete checkpoint, else the reason it is not (one line).

    ``api``: also require that Drive itself holds the manifest and every file with its size and md5
    (:func:`on_drive`); without it the folder is read as a plain disk. ``expected``: the hashes this
    VM recorded when it sealed the checkpoint (:func:`local_record`): the copy is then checked against
    them, never against its own (possibly corrupt) manifest. An unreadable file raises OSError.
    """
    folder = Path(folder)
    man = folder / MANIFEST
    if not man.is_file():
        return f"no {MANIFEST} (copy cut off before it finished)"
    try:
        data = json.loads(man.read_text())
        files = data["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        return f"{MANIFEST} unreadable ({type(e).__name__}: {e})"
    if expected is not None:
        got = file_hashes(man)
        if got["sha256"] != expected["manifest"]["sha256"]:
            return (f"{MANIFEST} differs from the one this VM wrote at save time ({got['bytes']} bytes sha256 "
                    f"{got['sha256'][:8]}, recorded {expected['manifest']['bytes']} bytes sha256 "
                    f"{expected['manifest']['sha256'][:8]}): a corrupt copy")
        files = expected["files"]
    required = () if data.get("kind") == HF_KIND else (MODEL_FILE, TRAINER_FILE, STATE_FILE)
    for name in required:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    if api is not None:
        why = on_drive(folder, files, api, marker=MANIFEST,
                       marker_meta=expected["manifest"] if expected is not None else None)
        if why is not None:
            return why
    return files_problem(folder, files, MANIFEST, hashes=hashes)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def drive_status(folder: str | os.PathLike, files: dict, api: DriveApi, marker: str | None = MANIFEST,
                 marker_meta: dict | None = None, uploading: bool = False) -> dict:
    """What Drive holds of ``folder``: ``{"done": [...], "missing": [...], "wrong": [...], "bytes_done",
    "bytes_all"}`` over the ``files`` entries (``{rel: {"bytes", "md5"?}}``) and the ``marker`` file:
    with ``marker_meta`` (its ``{"bytes", "md5"}`` recorded where it was written) against those, else as
    it is on the mount (Drive's copy on a fresh VM: the only reference left there). ``uploading``: this
    VM just wrote ``folder``, so a file without a Drive id yet is one DriveFS has not uploaded (it gives
    the id once the file is on Drive): "missing", not an error (:class:`helpers.colab.drive.DriveIdMissing`)."""
    folder = Path(folder)
    want = {rel: (int(m["bytes"]), m.get("md5")) for rel, m in files.items()}
    if marker is not None and marker_meta is not None:
        want[marker] = (int(marker_meta["bytes"]), marker_meta["md5"])
    elif marker is not None and (folder / marker).is_file():
        mp = folder / marker
        want[marker] = (mp.stat().st_size, _md5(mp))
    elif marker is not None:
        want[marker] = (None, None)
    out = {"done": [], "missing": [], "wrong": [], "bytes_done": 0,
           "bytes_all": sum(n for n, _ in want.values() if n)}
    for rel, (size, md5) in want.items():
        try:
            got = api.stat(folder / rel)
        except drive.DriveIdMissing:
            if not uploading:
                raise
            got = None
        if got is None:
            out["missing"].append(rel)
        elif (size is not None and got[0] != size) or (md5 is not None and got[1] != md5):
            out["wrong"].append(f"{rel} (Drive has {got[0]} bytes md5 {got[1][:8]}, expected {size} bytes md5 "
                                f"{(md5 or '?')[:8]})")
        else:
            out["done"].append(rel)
            out["bytes_done"] += got[0]
    return out


def on_drive(folder: str | os.PathLike, files: dict, api: DriveApi, marker: str | None = MANIFEST,
             marker_meta: dict | None = None) -> str | None:
    """None when Drive holds every file of ``files`` and the ``marker`` with their sizes and md5s, else why not."""
    st = drive_status(folder, files, api, marker, marker_meta)
    parts = []
    if st["missing"]:
        parts.append(f"not on Drive: {', '.join(st['missing'][:3])}{' ...' if len(st['missing']) > 3 else ''} "
                     "(in the VM's cache only: the upload had not finished)")
    if st["wrong"]:
        parts.append("; ".join(f"differs on Drive: {w}" for w in st["wrong"][:2])
                     + " (Drive holds other bytes than were written: a corrupt upload)")
    return "; ".join(parts) or None


def confirm_on_drive(folder: str | os.PathLike, files: dict, api: DriveApi | None, *, marker: str | None = MANIFEST,
                     timeout_s: float | None = None, poll_s: float | None = None, log=None,
                     marker_meta: dict | None = None) -> bool:
    """Wait until Drive holds ``folder`` (:func:`on_drive`), up to ``timeout_s``; True when it does.

    A status line says how much has reached Drive while waiting. Each file is fsynced first (the
    mount's flush, as far as one file can ask for it). No API (plain disk): True at once. An API
    that fails is reported and counts as "not confirmed": nothing here waits for a person.
    """
    if api is None:
        return True
    timeout_s = CONFIRM_TIMEOUT_S if timeout_s is None else timeout_s  # read at call time: tests scale them
    poll_s = CONFIRM_POLL_S if poll_s is None else poll_s
    folder = Path(folder)
    log = log or (lambda m: print(m, file=sys.stderr))
    for rel in [*files, marker]:
        if rel is not None and (folder / rel).is_file():
            _fsync(folder / rel)
    start = _clock()
    api_errors = 0
    while True:
        try:
            st = drive_status(folder, files, api, marker, marker_meta, uploading=True)
            api_errors = 0
        except Exception as e:
            api_errors += 1
            # a rate limit (403/429) or a blip passes: ask again at the next poll; an API that keeps failing
            # is unusable, and the run is not blocked on it
            if api_errors > API_RETRIES or _clock() - start >= timeout_s:
                log(f"WARNING: could not ask Drive whether {folder.name} has arrived ({type(e).__name__}: {e}); "
                    "keeping the previous checkpoint")
                return False
            log(f"the Drive API failed ({type(e).__name__}: {e}); asking again in {poll_s:.0f} s")
            _sleep(poll_s)
            continue
        if not st["missing"] and not st["wrong"]:
            CORRUPT_ON_DRIVE.pop(str(folder), None)
            return True
        if st["wrong"] and not st["missing"]:  # everything arrived, some of it different: waiting cannot help
            CORRUPT_ON_DRIVE[str(folder)] = "; ".join(st["wrong"][:2])
            log(f"{folder.name} reached Drive corrupt: {CORRUPT_ON_DRIVE[str(folder)]}")
            return False
        waited = _clock() - start
        log(f"waiting for Drive to hold {folder.name}: {len(st['done'])}/{len(st['done']) + len(st['missing']) + len(st['wrong'])}"
            f" files, {st['bytes_done'] / 1e9:.2f}/{st['bytes_all'] / 1e9:.2f} GB uploaded, {waited:.0f} s of "
            f"{timeout_s:.0f} s")
        if waited >= timeout_s:
            log(f"{folder.name} is not on Drive yet after {timeout_s:.0f} s (still uploading from the VM's cache): "
                "the previous checkpoint stays until a newer one is confirmed")
            return False
        _sleep(poll_s)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a mount that cannot fsync: the API check below is what counts
    finally:
        os.close(fd)


def manifest_files(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())["files"]


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every ``step-NNNNNNNN`` folder in ``ckpt_dir``, oldest first (not verified)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(out)


LEDGER = "ledger.json"  # in the local scratch folder: what this VM sealed, and when Drive confirmed it


def local_record(folder: str | os.PathLike) -> dict:
    """What a checkpoint folder on THIS disk holds, for later checks of its copies: the manifest's own
    ``{"bytes", "sha256", "md5"}`` and its file entries."""
    folder = Path(folder)
    return {"manifest": file_hashes(folder / MANIFEST), "files": manifest_files(folder)}


class Ledger:
    """The local record of this VM's checkpoints (``<local scratch>/ledger.json``): the hashes recorded at
    save time (copies on Drive are checked against them, never against themselves) and the bytes Drive
    confirmed when (the trailing-24 h upload volume, :data:`helpers.colab.drive.DAILY_UPLOAD_LIMIT`).
    Lost with the VM's disk, which is fine: a new VM has only Drive's copies, confirmed at save time."""

    def __init__(self, local_root: str | os.PathLike):
        self.path = Path(local_root) / LEDGER

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"steps": {}, "uploads": []}

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, self.path)

    def record(self, step: int, folder: str | os.PathLike) -> dict:
        data = self.read()
        rec = local_record(folder)
        data["steps"][str(int(step))] = rec
        self._write(data)
        return rec

    def expected(self, step: int) -> dict | None:
        return self.read()["steps"].get(str(int(step)))

    def uploaded(self, nbytes: int, at: float | None = None) -> None:
        data = self.read()
        data["uploads"] = [u for u in data["uploads"] if u[0] > time.time() - 86400] + [[at or time.time(), int(nbytes)]]
        self._write(data)

    def uploaded_last_day(self, now: float | None = None) -> int:
        now = now or time.time()
        return sum(n for t, n in self.read()["uploads"] if t > now - 86400)


def _unreadable(path: Path, e: OSError) -> str:
    return (f"unreadable ({drive.errno_name(drive.os_error_errno(e))}; {getattr(e, 'filename', None) or path}): "
            "trying the next one")


def resume_candidates(ckpt_dir: str | os.PathLike, log=None, api: DriveApi | None = None,
                      local_dir: str | os.PathLike | None = None, ledger: Ledger | None = None):
    """Complete checkpoints, newest first, wherever they are: ``local_dir`` (this VM's scratch: the
    original, read as a plain disk) and ``ckpt_dir`` (the run directory: with ``api`` only what Drive
    itself holds; checked against the hashes ``ledger`` recorded at save time when this VM wrote it).

    Incomplete ones (cut-off copy, truncated or corrupt file, not on Drive) are skipped and reported
    through ``log`` with the reason; one that cannot be read (EIO on a dead mount) likewise, naming
    its path and errno. Yields paths (a generator: the caller may fail to load one and ask for the next).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    found = [(st, 1, p) for st, p in list_checkpoints(ckpt_dir)]
    if local_dir is not None:
        found += [(st, 2, p) for st, p in list_checkpoints(local_dir)]  # same step: the local original first
    for step, where, path in sorted(found, reverse=True):
        expected = ledger.expected(step) if ledger is not None and where == 1 else None
        try:
            try:
                why = verify(path, api=api if where == 1 else None, expected=expected)
            except Exception as e:
                if api is None or where == 2 or (isinstance(e, OSError) and drive.os_error_errno(e)):
                    raise
                # the API cannot answer (an outage, a file without a Drive id): that is not "absent"
                log(f"checkpoint {path}: the Drive API cannot say whether Drive holds it ({type(e).__name__}: {e}); "
                    "checking the mount's copy instead")
                why = verify(path, expected=expected)
        except OSError as e:
            log(f"checkpoint {path} is {_unreadable(path, e)}")
            continue
        if why is None:
            if api is not None and where == 1:
                _SEEN_ON_DRIVE.add(str(path))
            yield path
        else:
            log(f"checkpoint {path} is incomplete and is skipped: {why}")


def find_resume_path(ckpt_dir: str | os.PathLike, log=None, api: DriveApi | None = None,
                     local_dir: str | os.PathLike | None = None, ledger: Ledger | None = None) -> Path | None:
    """The newest complete checkpoint (:func:`resume_candidates`), or None when there is none."""
    return next(resume_candidates(ckpt_dir, log, api, local_dir, ledger), None)


def read_manifest_step(folder: str | os.PathLike) -> int:
    """The step recorded in a checkpoint's manifest."""
    return int(json.loads((Path(folder) / MANIFEST).read_text())["step"])


def read_info(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / STATE_FILE).read_text())


def load(folder: str | os.PathLike, map_location="cpu", hashes: bool = True) -> tuple[dict, dict, dict]:
    """(model_state, trainer_state, info) of a verified checkpoint; raises CheckpointError otherwise.

    ``hashes=False`` checks sizes only (for a folder :func:`find_resume_path` just hashed)."""
    folder = Path(folder)
    why = verify(folder, hashes=hashes)
    if why is not None:
        raise CheckpointError(f"checkpoint {folder} cannot be loaded: {why}")
    info = read_info(folder)
    if info.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {folder} has format {info.get('format')!r}, this code reads {FORMAT}")
    model_state = torch.load(folder / MODEL_FILE, map_location=map_location, weights_only=True)
    trainer_state = torch.load(folder / TRAINER_FILE, map_location=map_location, weights_only=False)
    return model_state, trainer_state, info


# ----------------------------------------------------------------------------- retention policy
KEEP_LAST = 1  # complete checkpoints kept on Drive during a stage (plus the one being written)


def retention_deletes(confirmed_steps, new_step: int, new_confirmed: bool, keep_last: int = KEEP_LAST,
                      other_steps=()) -> list[tuple[str, int]]:
    """The deletions of :func:`publish_actions` (``other_steps``: older uploads, confirmed by the wait
    before the write), in order."""
    return [a for a in publish_actions(confirmed_steps, new_step, keep_last, other_steps, new_confirmed)
            if a[0] == "delete"]


def publish_actions(confirmed_steps, new_step: int, keep_last: int = KEEP_LAST, other_steps=(),
                    new_confirmed: bool = True, pending_confirmed: bool = True) -> list[tuple[str, int]]:
    """The ordered actions of publishing checkpoint ``new_step``.

    ``confirmed_steps``: older checkpoints Drive holds; ``other_steps``: older ones whose upload is
    still running (whole in the mount's cache, not yet on Drive). Cut-off and corrupt copies are not
    in either list: they were never confirmed and go first (:func:`publish`).

    1. ``("wait", s)`` for each upload still running: a checkpoint still uploading is never deleted and
       never gets a second one beside it. When the wait fails (``pending_confirmed`` False) that is
       all: the new checkpoint is not written to Drive (it stays on local disk; the next save tries
       again), so uploads slower than the save cadence stretch the cadence instead of piling up.
    2. ``("delete", s)`` of confirmed ones beyond the newest ``keep_last``;
    3. ``("write", new_step)``, ``("confirm", new_step)``;
    4. when confirmed (``new_confirmed``): ``("delete", s)`` so that the newest ``keep_last`` confirmed
       ones remain, the new one counted. The newest confirmed checkpoint is never deleted.

    So Drive holds at most ``keep_last + 1`` checkpoints at once (the plan's figure, :func:`simulate_stage`).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    new_step = int(new_step)
    pending = sorted(int(s) for s in other_steps if s < new_step)
    acts = [("wait", s) for s in pending]
    if pending and not pending_confirmed:
        return acts
    confirmed = sorted(set(int(s) for s in confirmed_steps if s < new_step) | set(pending))
    before = confirmed[:-keep_last]
    acts += [("delete", s) for s in before]
    acts += [("write", new_step), ("confirm", new_step)]
    if new_confirmed:
        kept = set((confirmed + [new_step])[-keep_last:])
        acts += [("delete", s) for s in confirmed if s not in kept and s not in before]
    return acts


def drive_interval_s(ckpt_bytes: int, upload_rate: float | None = None) -> float:
    """Shortest time between two checkpoint uploads, in seconds: Drive's daily upload limit with a margin
    (:data:`helpers.colab.drive.DAILY_UPLOAD_LIMIT` x ``DAILY_UPLOAD_MARGIN``) and, when measured, the upload
    rate (bytes/s) with 25 % headroom. Saves in between stay on local disk; the run plan uses the same figure."""
    daily = ckpt_bytes / (drive.DAILY_UPLOAD_MARGIN * drive.DAILY_UPLOAD_LIMIT / 86400)
    return max(daily, 1.25 * ckpt_bytes / upload_rate if upload_rate else 0.0)


def finish_actions(steps) -> list[tuple[str, int]]:
    """Actions once the stage's final model is confirmed on Drive: delete every checkpoint of the stage."""
    return [("delete", int(s)) for s in sorted(set(steps))]


def simulate_stage(ckpt_bytes: int, n_saves: int, final_bytes: int, *, keep_last: int = KEEP_LAST,
                   deletion: str = "permanent", base_bytes: int = 0, late_confirmations: bool = True) -> dict:
    """Replay a stage's checkpoint policy on byte counts: what Drive holds at its peak and in the Trash.

    ``n_saves`` checkpoints of ``ckpt_bytes`` each (the last one at the end of the stage), then the
    final model (``final_bytes``), then :func:`finish_actions`. ``base_bytes``: what the run directory
    already holds. ``deletion``: "permanent" (deleted bytes are freed) or "trash" (they stay in the
    Trash, counted against the quota). ``late_confirmations`` (the worst case, what the plan uses):
    no checkpoint is confirmed on Drive within its own save, each one is by the next save's wait;
    False: every upload is confirmed within its save. Returns bytes: ``peak`` (live + Trash at the worst
    moment), ``peak_live``, ``trash`` (added by this stage), ``end_live`` (what the finished stage
    leaves) and ``max_checkpoints`` (on Drive at once, counting the one being written).
    """
    live, trash, peak, peak_live, most = base_bytes, 0, base_bytes, base_bytes, 0
    held: list[int] = []
    confirmed: set[int] = set()

    def apply(acts):
        nonlocal live, trash, peak, peak_live, most
        for what, step in acts:
            if what == "write":
                live += ckpt_bytes
                held.append(step)
                most = max(most, len(held))
                peak, peak_live = max(peak, live + trash), max(peak_live, live)
            elif what == "wait":
                confirmed.add(step)  # the previous upload lands during the wait (the plan's cadence allows it)
            elif what == "delete":
                held.remove(step)
                live -= ckpt_bytes
                if deletion == "trash":
                    trash += ckpt_bytes
    for i in range(1, int(n_saves) + 1):
        ok = not late_confirmations
        apply(publish_actions(sorted(confirmed & set(held)), i, keep_last, sorted(set(held) - confirmed),
                              new_confirmed=ok))
        if ok:
            confirmed.add(i)
    # the stage's last save is waited for before the final model is written (StageRecipe._publish_local):
    # once it is confirmed the older ones go, so the final model sits beside keep_last checkpoints only
    confirmed |= set(held)
    apply([("delete", s) for s in sorted(held)[:-keep_last]])
    live += final_bytes
    peak, peak_live = max(peak, live + trash), max(peak_live, live)
    apply(finish_actions(list(held)))
    return {"peak": peak, "peak_live": peak_live, "trash": trash, "end_live": live, "max_checkpoints": most}


def _stale_temps(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return [p for p in ckpt_dir.iterdir()
            if p.name.startswith(".step-") and (".partial-" in p.name or ".old-" in p.name)]


class UploadPending(CheckpointError):
    """The previous checkpoint is still uploading: the new one was not written to Drive (it stays on local disk)."""


def drive_states(ckpt_dir: str | os.PathLike, api: DriveApi | None, ledger: "Ledger | None" = None
                 ) -> dict[int, tuple[str, str]]:
    """``{step: (state, why)}`` of every checkpoint folder in ``ckpt_dir``: ``"confirmed"`` (whole on
    Drive; on a plain disk: whole), ``"uploading"`` (whole in the mount's cache, Drive lacks files) or
    ``"garbage"`` (cut off on the mount, or Drive holds other bytes than this VM recorded: never good).
    An API that fails mid-stage: what this process saw confirmed still counts, the rest is ``"unknown"``."""
    out = {}
    for st, path in list_checkpoints(ckpt_dir):
        why = verify(path, hashes=False)
        if why is not None:
            out[st] = ("garbage", why)
            continue
        if api is None:
            out[st] = ("confirmed", "")
            continue
        exp = ledger.expected(st) if ledger is not None else None
        files = exp["files"] if exp else manifest_files(path)
        marker_meta = exp["manifest"] if exp else file_hashes(path / MANIFEST)  # the mount's: read it here
        try:
            status = drive_status(path, files, api, MANIFEST, marker_meta, uploading=exp is not None)
        except Exception as e:  # the API failed (the mount answered just above): what was seen confirmed counts
            out[st] = ("confirmed", "") if str(path) in _SEEN_ON_DRIVE else ("unknown", f"Drive API failed: {e}")
            continue
        if status["wrong"]:
            out[st] = ("garbage", f"differs on Drive: {status['wrong'][0]} (Drive holds other bytes than this VM "
                                  "wrote: a corrupt upload, or an earlier run's copy of this step)")
        elif status["missing"]:
            out[st] = ("uploading", f"{len(status['missing'])} file(s) not on Drive yet")
        else:
            _SEEN_ON_DRIVE.add(str(path))
            out[st] = ("confirmed", "")
    return out


def is_confirmed(path: str | os.PathLike, api: DriveApi | None) -> bool:
    """Whether this process saw ``path`` whole on Drive (always True on a plain disk)."""
    return api is None or str(path) in _SEEN_ON_DRIVE


def publish(local_folder: str | os.PathLike, ckpt_dir: str | os.PathLike, keep_last: int = KEEP_LAST,
            remover: Remover | None = None, step: int | None = None, *, api: DriveApi | None = None,
            confirm_timeout_s: float | None = None, log=None, ledger: "Ledger | None" = None,
            pending_timeout_s: float | None = None) -> Path:
    """Copy a local checkpoint into ``ckpt_dir`` atomically, confirm Drive holds it, then apply the policy.

    :func:`publish_actions` is the policy. Leftover temp copies of a killed process, cut-off copies
    and corrupt uploads go first (never confirmed: nothing is lost); a checkpoint still uploading is
    waited for (``pending_timeout_s``, default ``confirm_timeout_s``) and, when it does not land,
    :class:`UploadPending` is raised with nothing written. Free space for the whole checkpoint is
    checked before anything is written (:class:`helpers.colab.drive.InsufficientSpace`). Drive's copy
    is confirmed through ``api`` (default: the remover's) against the hashes of ``local_folder`` (this
    disk; recorded in ``ledger`` when given), never against the copy's own manifest. Returns the
    published folder; :func:`is_confirmed` says whether Drive confirmed it.
    """
    local_folder, ckpt_dir = Path(local_folder), Path(ckpt_dir)
    remover = remover or Remover("trash")
    api = api if api is not None else remover.api
    log = log or remover.log
    if verify(local_folder, hashes=False) is not None:
        raise CheckpointError(f"refusing to publish incomplete local checkpoint {local_folder}")
    if step is None:
        m = _STEP_DIR.match(local_folder.name)
        if m is None:
            raise ValueError(f"{local_folder.name}: name it step-NNNNNNNN or pass step=")
        step = int(m.group(1))
    new_step = int(step)
    name = step_dir_name(new_step)
    expected = ledger.record(new_step, local_folder) if ledger is not None else local_record(local_folder)
    for p in _stale_temps(ckpt_dir):
        remover.remove(p)
    states = drive_states(ckpt_dir, api, ledger)
    for st, (state, why) in sorted(states.items()):
        if st > new_step and state == "confirmed":
            raise CheckpointError(
                f"{ckpt_dir / step_dir_name(st)} is a confirmed checkpoint newer than step {new_step}, which this "
                "run is publishing: another notebook is training into this run directory (or this one resumed "
                "from an older checkpoint by mistake); nothing was deleted")
        if state == "garbage" or (st > new_step and state == "uploading"):
            # cut-off copies, corrupt uploads, a dead VM's half-uploaded newer step: never confirmed
            log(f"deleting {step_dir_name(st)} from the run directory: {why or 'not whole on Drive'}")
            remover.remove(ckpt_dir / step_dir_name(st))
    unknown = sorted(st for st, (state, _) in states.items() if st < new_step and state == "unknown")
    for st in unknown[:-1]:  # the API is down: keep the newest unverifiable one, bound what piles up
        log(f"deleting {step_dir_name(st)}: superseded, and the Drive API cannot say whether it is whole")
        remover.remove(ckpt_dir / step_dir_name(st))
    confirmed = [st for st, (state, _) in states.items() if st < new_step and state == "confirmed"]
    pending = sorted(st for st, (state, _) in states.items() if st < new_step and state == "uploading")
    if pending and api is not None:
        newest = ckpt_dir / step_dir_name(pending[-1])
        exp = ledger.expected(pending[-1]) if ledger is not None else None
        ok = confirm_on_drive(newest, exp["files"] if exp else manifest_files(newest), api,
                              timeout_s=confirm_timeout_s if pending_timeout_s is None else pending_timeout_s,
                              log=log, marker_meta=exp["manifest"] if exp else None)
        if not ok:
            raise UploadPending(f"{name} was not copied to Drive: {newest.name} is still uploading (kept; "
                                f"{name} stays on local disk and the next save tries again)")
        _SEEN_ON_DRIVE.add(str(newest))
        if ledger is not None:
            ledger.uploaded(tree_bytes(newest))
        for st in pending[:-1]:  # older uploads that never landed, superseded by a confirmed newer one
            remover.remove(ckpt_dir / step_dir_name(st))
        pending = pending[-1:]
    acts = publish_actions(confirmed, new_step, keep_last, pending, new_confirmed=True)
    for what, s in acts[:acts.index(("write", new_step))]:
        if what == "delete":
            remover.remove(ckpt_dir / step_dir_name(s))
    # The copy goes to a temp name beside the target: all of it must fit next to what is there now.
    require_free_space(ckpt_dir, tree_bytes(local_folder), f"checkpoint {name}", on_drive=api is not None)
    dest = copy_into_run(local_folder, ckpt_dir / name)
    # Sizes only: re-reading tens of GB back from Drive to hash them would cost minutes per save;
    # what Drive itself holds is checked through the API (sizes + md5 recorded here) just below.
    why = verify(dest, hashes=False)
    if why is not None:
        raise CheckpointError(f"checkpoint copy {dest} failed verification right after copying: {why}")
    ok = confirm_on_drive(dest, expected["files"], api, timeout_s=confirm_timeout_s, log=log,
                          marker_meta=expected["manifest"])
    if not ok:
        _SEEN_ON_DRIVE.discard(str(dest))  # a rewrite of a step after a resume: not confirmed yet
        return dest
    if api is not None:
        _SEEN_ON_DRIVE.add(str(dest))
        if ledger is not None:
            ledger.uploaded(tree_bytes(local_folder))
    for what, s in acts[acts.index(("confirm", new_step)) + 1:]:
        remover.remove(ckpt_dir / step_dir_name(s))
    return dest


# Checkpoint folders this process saw whole on Drive. If the API fails later in the stage, these are
# still the ones kept (never deleted for an unconfirmed newer one): a dead API must not cost the last
# good checkpoint. Process memory only: a new VM asks the API again (find_resume_path).
_SEEN_ON_DRIVE: set[str] = set()
# Folders whose upload this process saw land with other bytes than were written ({folder: what differs}), for
# the stop's diagnosis (helpers.train.storage): uploads that keep arriving damaged are not "stalled".
CORRUPT_ON_DRIVE: dict[str, str] = {}


def confirm_final(folder: str | os.PathLike, files: dict, marker: str, api: DriveApi | None = None, *,
                  timeout_s: float | None = None, log=None, marker_meta: dict | None = None) -> bool:
    """Flush and confirm a stage's final model on Drive (``files`` from its marker) before its checkpoints go."""
    api = api if api is not None else drive.current_api()
    return confirm_on_drive(folder, files, api, marker=marker, log=log, marker_meta=marker_meta,
                            timeout_s=FINAL_CONFIRM_TIMEOUT_S if timeout_s is None else timeout_s)


def finish(ckpt_dir: str | os.PathLike, remover: Remover | None = None) -> list[Path]:
    """Delete every checkpoint (and temp copy) of a stage whose final model is confirmed; returns them."""
    ckpt_dir = Path(ckpt_dir)
    remover = remover or Remover("trash")
    gone = []
    for _, step in finish_actions([s for s, _ in list_checkpoints(ckpt_dir)]):
        remover.remove(ckpt_dir / step_dir_name(step))
        gone.append(ckpt_dir / step_dir_name(step))
    for p in _stale_temps(ckpt_dir):
        remover.remove(p)
        gone.append(p)
    if ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()
    return gone


def prune(ckpt_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (and incomplete/temp folders
    older than the newest complete one). Returns what was deleted."""
    ckpt_dir = Path(ckpt_dir)
    removed = []
    complete = []
    newest_complete = -1
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        if verify(path, hashes=False) is None:
            complete.append(path)
            newest_complete = max(newest_complete, step)
    for path in complete[keep_last:]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for step, path in list_checkpoints(ckpt_dir):
        if step < newest_complete and path not in complete:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            if p.name.startswith(".step-") and (".partial-" in p.name or ".old-" in p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
                removed.append(p)
    return removed
