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

Retention policy (what stays on Drive), one place for the trainer AND the run plan:

* :func:`publish_actions`: write the new checkpoint, confirm it is on Drive, THEN delete older
  ones so that the newest ``keep_last`` (default 1) confirmed checkpoints remain
  (:func:`retention_deletes`). When the confirmation times out (the upload is still running) the
  new one is kept as well and older unconfirmed ones go: at worst ``keep_last`` confirmed + one
  awaiting confirmation + the one being written = ``keep_last + 2`` checkpoints at once.
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
from ..models import file_hashes, sha256_file
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


def verify(folder: str | os.PathLike, hashes: bool = True, api: DriveApi | None = None) -> str | None:
    """None if ``folder`` is a complete checkpoint, else the reason it is not (one line).

    ``api``: also require that Drive itself holds the manifest and every file with its size and md5
    (:func:`on_drive`); without it the folder is read as a plain disk.
    """
    folder = Path(folder)
    man = folder / MANIFEST
    if not man.is_file():
        return f"no {MANIFEST} (copy cut off before it finished)"
    try:
        data = json.loads(man.read_text())
        files = data["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return f"{MANIFEST} unreadable ({type(e).__name__}: {e})"
    required = () if data.get("kind") == HF_KIND else (MODEL_FILE, TRAINER_FILE, STATE_FILE)
    for name in required:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    if api is not None:
        why = on_drive(folder, files, api, marker=MANIFEST)
        if why is not None:
            return why
    for name, meta in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} has {p.stat().st_size} bytes, manifest says {meta['bytes']} (truncated copy)"
        if hashes and sha256_file(p) != meta["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest (corrupt copy)"
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def drive_status(folder: str | os.PathLike, files: dict, api: DriveApi, marker: str | None = MANIFEST) -> dict:
    """What Drive holds of ``folder``: ``{"done": [...], "missing": [...], "wrong": [...], "bytes_done",
    "bytes_all"}`` over the ``files`` entries (``{rel: {"bytes", "md5"?}}``) and the ``marker`` file
    (expected as it is on the mount, which is Drive's copy on a fresh VM)."""
    folder = Path(folder)
    want = {rel: (int(m["bytes"]), m.get("md5")) for rel, m in files.items()}
    if marker is not None and (folder / marker).is_file():
        mp = folder / marker
        want[marker] = (mp.stat().st_size, _md5(mp))
    elif marker is not None:
        want[marker] = (None, None)
    out = {"done": [], "missing": [], "wrong": [], "bytes_done": 0,
           "bytes_all": sum(n for n, _ in want.values() if n)}
    for rel, (size, md5) in want.items():
        got = api.stat(folder / rel)
        if got is None:
            out["missing"].append(rel)
        elif (size is not None and got[0] != size) or (md5 is not None and got[1] != md5):
            out["wrong"].append(f"{rel} (Drive has {got[0]} bytes md5 {got[1][:8]}, expected {size} bytes md5 "
                                f"{(md5 or '?')[:8]})")
        else:
            out["done"].append(rel)
            out["bytes_done"] += got[0]
    return out


def on_drive(folder: str | os.PathLike, files: dict, api: DriveApi, marker: str | None = MANIFEST) -> str | None:
    """None when Drive holds every file of ``files`` and the ``marker`` with their sizes and md5s, else why not."""
    st = drive_status(folder, files, api, marker)
    if st["missing"] or st["wrong"]:
        parts = ([f"not on Drive: {', '.join(st['missing'][:3])}{' ...' if len(st['missing']) > 3 else ''}"]
                 if st["missing"] else []) + [f"differs on Drive: {w}" for w in st["wrong"][:2]]
        return "; ".join(parts) + " (in the VM's cache only: the upload had not finished)"
    return None


def confirm_on_drive(folder: str | os.PathLike, files: dict, api: DriveApi | None, *, marker: str | None = MANIFEST,
                     timeout_s: float = CONFIRM_TIMEOUT_S, poll_s: float = CONFIRM_POLL_S, log=None) -> bool:
    """Wait until Drive holds ``folder`` (:func:`on_drive`), up to ``timeout_s``; True when it does.

    A status line says how much has reached Drive while waiting. Each file is fsynced first (the
    mount's flush, as far as one file can ask for it). No API (plain disk): True at once. An API
    that fails is reported and counts as "not confirmed": nothing here waits for a person.
    """
    if api is None:
        return True
    folder = Path(folder)
    log = log or (lambda m: print(m, file=sys.stderr))
    for rel in [*files, marker]:
        if rel is not None and (folder / rel).is_file():
            _fsync(folder / rel)
    start = _clock()
    while True:
        try:
            st = drive_status(folder, files, api, marker)
        except Exception as e:  # the API is unusable: do not block the run on it
            log(f"WARNING: could not ask Drive whether {folder.name} has arrived ({type(e).__name__}: {e}); "
                "keeping the previous checkpoint")
            return False
        if not st["missing"] and not st["wrong"]:
            return True
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


def find_resume_path(ckpt_dir: str | os.PathLike, log=None, api: DriveApi | None = None) -> Path | None:
    """The newest complete checkpoint in ``ckpt_dir``, or None when there is none.

    Incomplete ones (cut-off copy, truncated or corrupt file, or with ``api``: not on Drive with the
    manifest's sizes and md5s) are skipped and reported through ``log`` (default: stderr) with the reason.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        why = verify(path, api=api)
        if why is None:
            if api is not None:
                _SEEN_ON_DRIVE.add(str(path))
            return path
        log(f"checkpoint {path.name} is incomplete and is skipped: {why}")
    return None


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
    """The deletions after checkpoint ``new_step`` was written and its confirmation came back.

    ``confirmed_steps``: older checkpoints Drive holds (:func:`on_drive`); ``other_steps``: older ones
    it does not (still uploading, cut-off copies). Kept: the newest ``keep_last`` confirmed ones
    counting the new one when it is confirmed; when it is not, the new one is kept too (it may be
    confirmed at the next save). Every other older step goes: an unconfirmed one only ever goes when
    a newer one stays, and a confirmed one only when ``keep_last`` newer confirmed ones stay.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    confirmed = set(int(s) for s in confirmed_steps if s < new_step) | ({int(new_step)} if new_confirmed else set())
    kept = set(sorted(confirmed)[-keep_last:]) | {int(new_step)}
    older = confirmed | {int(x) for x in other_steps if x < new_step}
    return [("delete", s) for s in sorted(older) if s not in kept]


def publish_actions(confirmed_steps, new_step: int, keep_last: int = KEEP_LAST, other_steps=(),
                    new_confirmed: bool = True) -> list[tuple[str, int]]:
    """The ordered actions of publishing checkpoint ``new_step``:
    ``[("write", new_step), ("confirm", new_step), ("delete", s)...]``.

    The write (copy) comes first, then the wait for Drive to hold it, deletions last
    (:func:`retention_deletes`, given whether the confirmation succeeded: ``new_confirmed``), so a
    failure or a VM death at any point leaves the previous confirmed checkpoint on Drive.
    """
    deletes = retention_deletes(confirmed_steps, new_step, new_confirmed, keep_last, other_steps)
    return [("write", int(new_step)), ("confirm", int(new_step))] + deletes


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
    no checkpoint is confirmed on Drive within its own save, each one is by the next save; False:
    every upload is confirmed within its save. Returns bytes: ``peak`` (live + Trash at the worst
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
            elif what == "delete":
                held.remove(step)
                live -= ckpt_bytes
                if deletion == "trash":
                    trash += ckpt_bytes
    for i in range(1, int(n_saves) + 1):
        if late_confirmations:
            confirmed |= set(held)  # the previous save's upload has finished by now
        ok = not late_confirmations
        apply(publish_actions(sorted(confirmed & set(held)), i, keep_last,
                              sorted(set(held) - confirmed), new_confirmed=ok))
        if ok:
            confirmed.add(i)
    live += final_bytes
    peak, peak_live = max(peak, live + trash), max(peak_live, live)
    apply(finish_actions(list(held)))
    return {"peak": peak, "peak_live": peak_live, "trash": trash, "end_live": live, "max_checkpoints": most}


def _stale_temps(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return [p for p in ckpt_dir.iterdir()
            if p.name.startswith(".step-") and (".partial-" in p.name or ".old-" in p.name)]


def publish(local_folder: str | os.PathLike, ckpt_dir: str | os.PathLike, keep_last: int = KEEP_LAST,
            remover: Remover | None = None, step: int | None = None, *, api: DriveApi | None = None,
            confirm_timeout_s: float = CONFIRM_TIMEOUT_S, log=None) -> Path:
    """Copy a local checkpoint into ``ckpt_dir`` atomically, confirm Drive holds it, then apply the policy.

    Leftover temp copies of a killed process are removed first; free space for the whole
    checkpoint is checked before anything is written (:class:`helpers.colab.drive.InsufficientSpace`);
    older checkpoints are deleted (through ``remover``) only after the new one is confirmed on Drive
    through ``api`` (default: the remover's, i.e. the one the setup cell connected; None: a plain disk,
    where the verified copy is enough) -- :func:`retention_deletes`. Returns the published folder.
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
    for p in _stale_temps(ckpt_dir):
        remover.remove(p)
    # A newer step here is what a dead VM left half-uploaded: the run resumed from an older one because
    # this one was not whole on Drive (find_resume_path), so it is garbage, and it would pile up.
    for st, path in list_checkpoints(ckpt_dir):
        if st > new_step:
            log(f"deleting {path.name}: a newer checkpoint than the one this run resumed from, not whole on Drive")
            remover.remove(path)
    # The copy goes to a temp name beside the target: all of it must fit next to what is there now.
    require_free_space(ckpt_dir, tree_bytes(local_folder), f"checkpoint {name}")
    dest = copy_into_run(local_folder, ckpt_dir / name)
    # Sizes only: re-reading tens of GB back from Drive to hash them would cost minutes per save;
    # what Drive itself holds is checked through the API (sizes + md5) just below.
    why = verify(dest, hashes=False)
    if why is not None:
        raise CheckpointError(f"checkpoint copy {dest} failed verification right after copying: {why}")
    ok = confirm_on_drive(dest, manifest_files(dest), api, timeout_s=confirm_timeout_s, log=log)
    if ok and api is not None:
        _SEEN_ON_DRIVE.add(str(dest))
    else:
        _SEEN_ON_DRIVE.discard(str(dest))  # a rewrite of a step after a resume: not confirmed yet
    confirmed, other = _split_by_drive(ckpt_dir, api, below=new_step)
    for what, s in retention_deletes(confirmed, new_step, ok, keep_last, other):
        remover.remove(ckpt_dir / step_dir_name(s))
    return dest


def _split_by_drive(ckpt_dir: Path, api: DriveApi | None, below: int) -> tuple[list[int], list[int]]:
    """(confirmed, other) steps below ``below``: complete on the mount AND on Drive, or not."""
    confirmed, other = [], []
    for st, path in list_checkpoints(ckpt_dir):
        if st >= below:
            continue
        try:
            ok = verify(path, hashes=False, api=api) is None
        except Exception:  # the API failed mid-stage: what this process saw confirmed still counts
            ok = str(path) in _SEEN_ON_DRIVE
        if ok and api is not None:
            _SEEN_ON_DRIVE.add(str(path))
        (confirmed if ok else other).append(st)
    return confirmed, other


# Checkpoint folders this process saw whole on Drive. If the API fails later in the stage, these are
# still the ones kept (never deleted for an unconfirmed newer one): a dead API must not cost the last
# good checkpoint. Process memory only: a new VM asks the API again (find_resume_path).
_SEEN_ON_DRIVE: set[str] = set()


def confirm_final(folder: str | os.PathLike, files: dict, marker: str, api: DriveApi | None = None, *,
                  timeout_s: float = FINAL_CONFIRM_TIMEOUT_S, log=None) -> bool:
    """Flush and confirm a stage's final model on Drive (``files`` from its marker) before its checkpoints go."""
    api = api if api is not None else drive.current_api()
    return confirm_on_drive(folder, files, api, marker=marker, timeout_s=timeout_s, log=log)


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
