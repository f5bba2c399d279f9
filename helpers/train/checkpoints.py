"""Training checkpoints that survive Colab disconnects and dropped Drive mounts.

A checkpoint is a folder ``step-NNNNNNNN/`` holding

* ``model.pt``    the model's state_dict (exact fp32 master weights)
* ``trainer.pt``  optimizer, LR scheduler, torch RNG states, data position, step
* ``state.json``  the same scalars in readable form + the stage config + data fingerprint
* ``manifest.json`` size and SHA-256 of every other file, written LAST

It is written to local disk first, then copied into the run directory with
:func:`helpers.colab.session.copy_into_run` (temp name + rename, Drive remount and
retry). A checkpoint counts only if its manifest exists and every file matches
it, so a copy that was cut off (missing manifest, truncated file, flipped
bytes) is detected and :func:`find_resume_path` falls back to the previous one.

Retention policy (what stays on Drive), one place for the trainer AND the run plan:

* :func:`publish_actions`: write the new checkpoint, verify it, THEN delete older ones so that
  ``keep_last`` complete checkpoints remain (default 1): during a stage at most one complete
  checkpoint plus the one being written exist.
* :func:`finish_actions`: once a stage's final model is verified, all its checkpoints go.
* :func:`simulate_stage` replays those same action lists on byte counts: the run plan's Drive
  peak and Trash figures come from it (``helpers.plan.costs``), so plan and trainer cannot drift.
* Deletions go through :class:`helpers.colab.drive.Remover`: permanent (Drive API, with the user's
  consent) or into Drive's Trash, whose bytes still count against the quota for 30 days.
* Free space is checked before every copy (:func:`helpers.colab.drive.require_free_space`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from ..colab.drive import Remover, require_free_space, tree_bytes
from ..models import sha256_file
from ..colab.session import copy_into_run

MANIFEST = "manifest.json"
MODEL_FILE = "model.pt"
TRAINER_FILE = "trainer.pt"
STATE_FILE = "state.json"
FORMAT = 1
HF_KIND = "hf_trainer"  # a manifest over an HF Trainer / DeepSpeed checkpoint folder (DeepSpeed path)
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, corrupt or cannot be resumed."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _write_json(path: Path, data) -> None:
    with path.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def write_state(folder: str | os.PathLike, model_state: dict, trainer_state: dict, info: dict) -> Path:
    """Write the training state into ``folder`` (local disk), without its manifest: the part of a save
    that must be consistent with the live model, so it blocks the training loop. :func:`seal` (hashing,
    the manifest) can run later, off the training path. Returns ``folder``."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.save(model_state, folder / MODEL_FILE)
    torch.save(trainer_state, folder / TRAINER_FILE)
    _write_json(folder / STATE_FILE, {"format": FORMAT, **info})
    return folder


def seal(folder: str | os.PathLike, step: int | None) -> Path:
    """Hash the files of a :func:`write_state` folder into its manifest, written last: from then on it
    is a complete checkpoint (:func:`verify`)."""
    folder = Path(folder)
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    _write_json(folder / MANIFEST, {"format": FORMAT, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "step": step, "files": files})
    return folder


def write_local(folder: str | os.PathLike, model_state: dict, trainer_state: dict, info: dict) -> Path:
    """Write a complete checkpoint into ``folder`` (local disk), manifest last. Returns ``folder``.

    ``info``: JSON-able scalars (step, epoch, config, fingerprint, ...) stored in state.json.
    """
    return seal(write_state(folder, model_state, trainer_state, info), info.get("step"))


def write_manifest(folder: str | os.PathLike, step: int, kind: str = HF_KIND) -> Path:
    """Hash every file under ``folder`` (recursively) into its manifest, written last: makes any
    checkpoint folder (e.g. HF Trainer's ``checkpoint-N`` with DeepSpeed shards) verifiable."""
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file()}
    _write_json(folder / MANIFEST, {"format": FORMAT, "kind": kind, "step": int(step),
                                    "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files})
    return folder


def verify(folder: str | os.PathLike, hashes: bool = True) -> str | None:
    """None if ``folder`` is a complete checkpoint, else the reason it is not (one line)."""
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
    for name, meta in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} has {p.stat().st_size} bytes, manifest says {meta['bytes']} (truncated copy)"
        if hashes and sha256_file(p) != meta["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest (corrupt copy)"
    return None


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every ``step-NNNNNNNN`` folder in ``ckpt_dir``, oldest first (not verified)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(out)


def find_resume_path(ckpt_dir: str | os.PathLike, log=None) -> Path | None:
    """The newest complete checkpoint in ``ckpt_dir``, or None when there is none.

    Incomplete ones (cut-off copy, truncated or corrupt file) are skipped and reported
    through ``log`` (default: print to stderr) with the reason.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        why = verify(path)
        if why is None:
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


def publish_actions(complete_steps, new_step: int, keep_last: int = KEEP_LAST,
                    other_steps=()) -> list[tuple[str, int]]:
    """The ordered actions of publishing checkpoint ``new_step``: ``[("write", new_step), ("delete", s)...]``.

    ``complete_steps``: steps of the complete checkpoints already in the folder; ``other_steps``:
    incomplete ones (cut-off copies). The write (copy + verify) comes first, deletions after it, so a
    failure at any point leaves the previous complete checkpoint in place. Kept: the newest
    ``keep_last`` complete checkpoints including the new one; incomplete ones older than the new
    one are deleted too.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    kept = set(sorted(set(complete_steps) | {new_step})[-keep_last:])
    acts = [("write", int(new_step))]
    for s in sorted(set(complete_steps) | {x for x in other_steps if x < new_step}):
        if s not in kept and s != new_step:
            acts.append(("delete", int(s)))
    return acts


def finish_actions(steps) -> list[tuple[str, int]]:
    """Actions once the stage's final model is verified: delete every checkpoint of the stage."""
    return [("delete", int(s)) for s in sorted(set(steps))]


def simulate_stage(ckpt_bytes: int, n_saves: int, final_bytes: int, *, keep_last: int = KEEP_LAST,
                   deletion: str = "permanent", base_bytes: int = 0) -> dict:
    """Replay a stage's checkpoint policy on byte counts: what Drive holds at its peak and in the Trash.

    ``n_saves`` checkpoints of ``ckpt_bytes`` each (the last one at the end of the stage), then the
    final model (``final_bytes``), then :func:`finish_actions`. ``base_bytes``: what the run directory
    already holds. ``deletion``: "permanent" (deleted bytes are freed) or "trash" (they stay in the
    Trash, counted against the quota). Returns bytes: ``peak`` (live + Trash at the worst moment),
    ``peak_live``, ``trash`` (added by this stage), ``end_live`` (what the finished stage leaves) and
    ``max_checkpoints`` (complete or being written at once).
    """
    live, trash, peak, peak_live, most = base_bytes, 0, base_bytes, base_bytes, 0
    complete: list[int] = []

    def apply(acts):
        nonlocal live, trash, peak, peak_live, most
        for what, step in acts:
            if what == "write":
                live += ckpt_bytes
                most = max(most, len(complete) + 1)
                peak, peak_live = max(peak, live + trash), max(peak_live, live)
                complete.append(step)
            else:
                complete.remove(step)
                live -= ckpt_bytes
                if deletion == "trash":
                    trash += ckpt_bytes
    for i in range(1, int(n_saves) + 1):
        apply(publish_actions(list(complete), i, keep_last))
    live += final_bytes
    peak, peak_live = max(peak, live + trash), max(peak_live, live)
    apply(finish_actions(list(complete)))
    return {"peak": peak, "peak_live": peak_live, "trash": trash, "end_live": live, "max_checkpoints": most}


def _stale_temps(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return [p for p in ckpt_dir.iterdir()
            if p.name.startswith(".step-") and (".partial-" in p.name or ".old-" in p.name)]


def publish(local_folder: str | os.PathLike, ckpt_dir: str | os.PathLike, keep_last: int = KEEP_LAST,
            remover: Remover | None = None, step: int | None = None) -> Path:
    """Copy a local checkpoint into ``ckpt_dir`` atomically, verify the copy, then apply the policy.

    Leftover temp copies of a killed process are removed first; free space for the whole
    checkpoint is checked before anything is written (:class:`helpers.colab.drive.InsufficientSpace`);
    older checkpoints are deleted (through ``remover``) only after the new one is verified.
    Returns the published folder.
    """
    local_folder, ckpt_dir = Path(local_folder), Path(ckpt_dir)
    remover = remover or Remover("trash")
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
    # The copy goes to a temp name beside the target: all of it must fit next to what is there now.
    require_free_space(ckpt_dir, tree_bytes(local_folder), f"checkpoint {name}")
    complete, other = [], []
    for st, path in list_checkpoints(ckpt_dir):
        (complete if verify(path, hashes=False) is None else other).append(st)
    acts = publish_actions(complete, new_step, keep_last, other)
    dest = None
    for what, s in acts:
        if what == "write":
            dest = copy_into_run(local_folder, ckpt_dir / name)
            # Sizes only: re-reading tens of GB back from Drive to hash them would cost minutes per save;
            # full hashes are checked when a run resumes (find_resume_path).
            why = verify(dest, hashes=False)
            if why is not None:
                raise CheckpointError(f"checkpoint copy {dest} failed verification right after copying: {why}")
        else:
            remover.remove(ckpt_dir / step_dir_name(s))
    return dest


def finish(ckpt_dir: str | os.PathLike, remover: Remover | None = None) -> list[Path]:
    """Delete every checkpoint (and temp copy) of a stage whose final model is verified; returns them."""
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
