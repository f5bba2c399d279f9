"""What a training stage does about storage: where its state is safe, when it must stop, how it finishes.

:class:`StageStorage` is mixed into :class:`helpers.train.recipe.StageRecipe` (which holds the model,
optimizer and data position); it keeps the storage side of a stage in one place:

* the local write of a checkpoint, with a disk that fills during ``torch.save`` named as such;
* the background part of a save (:meth:`StageStorage._publish_local`): seal (hashes, recorded in this
  VM's ledger), keep the newest sealed checkpoint on local disk until Drive confirms a copy, publish
  (:func:`helpers.train.checkpoints.publish`), measure the upload rate;
* the save cadence stretched to Drive's daily upload limit and the measured rate;
* the one message a persistent storage fault ends training with (:meth:`StageStorage._stop_for_storage`:
  what failed, what is safe where, the remedy) after saving the state locally;
* the final model uploaded with its ``COMPLETE.json`` last, and an incomplete "finished" folder spotted
  (a file missing, or damaged: Drive's md5, or without the API the copy's SHA-256) and repaired: from this
  VM's own verified copy of the final model when there is one (:meth:`StageStorage._repair_final_from_local`,
  no training), else by resuming from the newest checkpoint that verifies.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from . import checkpoints as ckpt
from ..colab import drive
from ..colab.drive import require_free_space
from ..colab.session import DRIVE_MOUNT, copy_into_run
from ..models import (COMPLETE_MARKER, IncompleteStageError, files_problem, read_complete_marker,
                      stage_problem, file_hashes as models_file_hashes)
from ..profiles import FINAL_MODEL_DIR

METRICS_FILE = "metrics.csv"  # the run logs of a stage (helpers.train.recipe), carried in every checkpoint
EVAL_FILE = "eval.csv"


class StageStorage:
    """Storage methods of :class:`helpers.train.recipe.StageRecipe` (see the module docstring)."""

    def _write_local(self, local: Path, model_state: dict, tstate: dict, info: dict) -> None:
        """write_state with a free-space check; a disk that fills during the write is reported as such."""
        need = state_bytes(model_state) + state_bytes(tstate)
        try:
            require_free_space(local.parent, need, f"local checkpoint of step {self.step}")
            ckpt.write_state(local, model_state, tstate, info,
                             extra_files={METRICS_FILE: self.metrics.path, EVAL_FILE: self.evals.path})
        except (OSError, RuntimeError) as e:
            if drive.fault_kind(e, local=True) != "local_disk":
                raise
            shutil.rmtree(local, ignore_errors=True)
            raise drive.StorageFault("local_disk", f"writing the checkpoint of step {self.step} ({need / 1e9:.2f} GB) "
                                     f"failed: the disk is full ({type(e).__name__}: {str(e)[:200]})", path=local,
                                     errno_=drive.os_error_errno(e)) from e

    def _publish_local(self, local: Path) -> Path | None:
        """Background part of a save: manifest (hashes, recorded in the local ledger), atomic copy into the
        run directory, confirmation on Drive, retention. The local copy goes once Drive confirmed it."""
        step = int(local.name.split("-")[-1])
        if not (local / ckpt.MANIFEST).is_file():
            ckpt.seal(local, step)
        self.ledger.record(step, local)
        for st, old in ckpt.list_checkpoints(local.parent):  # the newest sealed one is this VM's fallback
            if st < step:
                shutil.rmtree(old, ignore_errors=True)
        if local in self._local_only:
            self._local_only.discard(local)
            self.log(f"checkpoint step {step} kept on local disk only ({local}): Drive's upload cadence "
                     f"(one upload every {ckpt.drive_interval_s(self.checkpoint_bytes, self.upload_rate):.0f} s: Drive's "
                     "daily limit and the measured upload rate) is not due")
            return None
        self.lease.heartbeat(force=True)  # never publish (nor delete) into a run directory another writer took
        if getattr(self, "_awaiting_upload_since", None) is None:  # for the stop message: how long none completed
            self._awaiting_upload_since = ckpt._clock()
        t0 = time.monotonic()
        # the stage's last checkpoint is waited for (the final model then sits beside one checkpoint only)
        last = step >= self.total_steps
        dest = ckpt.publish(local, self.ckpt_dir, self.cfg.keep_last, remover=self.remover, ledger=self.ledger,
                            confirm_timeout_s=ckpt.FINAL_CONFIRM_TIMEOUT_S if last else None)
        self.checkpoint_bytes = drive.tree_bytes(dest)
        if ckpt.is_confirmed(dest, self.remover.api):
            self.confirmed_step = step
            self._awaiting_upload_since = None
            if self.remover.api is not None:
                self.upload_rate = self.checkpoint_bytes / max(time.monotonic() - t0, 1e-3)
            shutil.rmtree(local, ignore_errors=True)
            self.log(f"checkpoint step {step} published to {dest} (training continued meanwhile)")
        else:
            self.log(f"checkpoint step {step} copied to {dest}, not confirmed on Drive yet: the local copy stays "
                     f"at {local}")
        return dest

    def _drop_local(self, local: Path) -> None:
        """A queued checkpoint superseded by a newer save before its upload started."""
        self._local_only.discard(local)
        shutil.rmtree(local, ignore_errors=True)

    def _diagnose_uploads(self, why: str) -> "drive.StorageFault":
        """Why checkpoints do not reach Drive, from what this VM can know: Drive's quota (``statvfs`` on the
        mount says it is full), the daily upload limit (this VM's uploads of the last 24 h, from the ledger,
        near it), else uploads that Drive accepted into the mount but never completed, for which the message
        lists the usual causes (the quota as Google counts it, Trash included; the daily limit counting other
        VMs and apps; a stuck mount) and the remedy of each: the mount cannot tell them apart."""
        saved = [drive.tree_bytes(p) for _, p in ckpt.list_checkpoints(self._local_root())]
        need = self.checkpoint_bytes or max(saved, default=1)  # none published yet: the size of one saved here
        try:
            free = drive.free_bytes(self.ckpt_dir)
        except OSError as e:
            return drive.StorageFault(drive.fault_kind(e) or "dead_mount", f"{why}; the run directory cannot be "
                                      f"read", path=self.ckpt_dir, errno_=drive.os_error_errno(e))
        on_drive = self.remover.api is not None or str(self.ckpt_dir).startswith(DRIVE_MOUNT)
        if free < need:
            return drive.StorageFault("quota" if on_drive else "local_disk",
                                      f"{why}; {'Drive' if on_drive else 'the disk of the run directory'} has "
                                      f"{free / 1e9:.2f} GB free, a checkpoint needs {need / 1e9:.2f} GB",
                                      path=self.ckpt_dir)
        if not on_drive:  # a plain disk: Drive's daily limit and uploads do not come into it
            return drive.StorageFault("write_failed", why, path=self.ckpt_dir)
        recent = self.publisher.published[-self.publisher.fault_after:]
        corrupt = [f"{p.name}: {ckpt.CORRUPT_ON_DRIVE[str(p)]}" for p in recent if str(p) in ckpt.CORRUPT_ON_DRIVE]
        if recent and str(recent[-1]) in ckpt.CORRUPT_ON_DRIVE:  # the newest upload landed damaged
            return drive.StorageFault("corrupt_upload", f"{why}; Drive holds other bytes than this VM wrote for "
                                      f"{len(corrupt)} of the last {len(recent)} checkpoint(s): {'; '.join(corrupt)}",
                                      path=recent[-1])
        day, limit = self.ledger.uploaded_last_day(), drive.DAILY_UPLOAD_LIMIT
        if day + need > drive.DAILY_UPLOAD_MARGIN * limit:
            return drive.StorageFault("daily_cap", f"{why}; this VM uploaded {day / 1e9:.1f} GB in the last 24 h "
                                      f"(Drive's limit: {limit / 1e9:.0f} GB a day)", path=self.ckpt_dir)
        since = getattr(self, "_awaiting_upload_since", None)
        waited = f" for {_duration(ckpt._clock() - since)}" if since is not None else ""
        return drive.StorageFault(
            "stalled", f"{why}. Drive accepted the writes into the mount but no upload completed{waited}, although "
            f"the mount shows {free / 1e9:.1f} GB free and this VM uploaded {day / 1e9:.1f} GB in the last 24 h "
            f"(Drive's daily limit: {limit / 1e9:.0f} GB): Drive itself refuses or stalls the uploads",
            path=self.ckpt_dir)

    def _stop_for_storage(self, fault: "drive.StorageFault") -> None:
        """Save the current state on local disk, then raise ``fault`` with where the newest good state is."""
        self.publisher.wait()
        local = self._local_root() / ckpt.step_dir_name(self.step)
        where = []
        try:
            if not (local / ckpt.MANIFEST).is_file():
                tstate, info = self._state()
                self._write_local(local, self.model.state_dict(), tstate, info)
                ckpt.seal(local, self.step)
            self.ledger.record(self.step, local)
            where.append(f"step {self.step} (now) on this VM's local disk at {local}: a rerun on this VM continues "
                         "from it")
        except (OSError, RuntimeError) as e:
            where.append(f"step {self.step} could NOT be saved locally ({type(e).__name__}: {e})")
        if self.confirmed_step is not None:
            where.append(f"step {self.confirmed_step} confirmed on Drive in {self.ckpt_dir}: a new VM continues from it")
        else:
            where.append(f"no checkpoint of this run confirmed on Drive since it started; a new VM resumes from the "
                         f"newest one Drive holds in {self.ckpt_dir}, if any")
        fault.safe = "; ".join(where)
        self.log(str(fault))
        self.lease.release()  # a rerun elsewhere need not wait for this lease to go stale
        raise fault

    def _upload_final(self, local_model: Path, target: Path) -> None:
        """Copy the final model into the run directory with its ``COMPLETE.json`` LAST: the weights and
        tokenizer first, confirmed on Drive (sizes + md5 recorded locally), then the marker, confirmed too.
        A stage is "done" on Drive only when everything it lists is there; otherwise this raises a
        :class:`helpers.colab.drive.StorageFault` and no marker exists, so the rerun repairs the stage."""
        self.lease.heartbeat(force=True)
        data = read_complete_marker(local_model)
        marker, held = local_model / COMPLETE_MARKER, self._local_root() / f".{COMPLETE_MARKER}.pending"
        os.replace(marker, held)  # the marker waits outside the folder while the folder is copied
        try:
            require_free_space(target.parent, drive.tree_bytes(local_model), f"stage {self.cfg.stage}'s final model",
                               reclaimable=drive.tree_bytes(target), on_drive=self.remover.api is not None)
            copy_into_run(local_model, target)
        finally:
            os.replace(held, marker)
        api = self.remover.api
        if not ckpt.confirm_final(target, data["files"], None, api, log=self.log):
            raise self._final_fault(target, "the final model's files")
        copy_into_run(marker, target / COMPLETE_MARKER)
        if not ckpt.confirm_final(target, {}, COMPLETE_MARKER, api, log=self.log,
                                  marker_meta=models_file_hashes(marker)):
            raise self._final_fault(target, COMPLETE_MARKER)
        self.final_confirmed = True

    def _final_fault(self, target: Path, what: str) -> "drive.StorageFault":
        api, local_model = self.remover.api, self._local_root() / FINAL_MODEL_DIR
        try:
            st = ckpt.drive_status(target, read_complete_marker(local_model)["files"], api, marker=None)
        except Exception as e:  # the API itself fails
            fault = drive.StorageFault("drive_api", f"the Drive API cannot confirm {what} ({type(e).__name__}: {e})",
                                       path=target)
        else:
            if st["wrong"]:  # it arrived, with other bytes: not a stall, not the quota
                fault = drive.StorageFault("corrupt_upload", f"{what}: Drive holds other bytes than this VM wrote: "
                                           f"{'; '.join(st['wrong'][:2])}", path=target)
            else:
                fault = self._diagnose_uploads(f"{what} did not reach Drive within "
                                               f"{ckpt.FINAL_CONFIRM_TIMEOUT_S:.0f} s")
        self.final_confirmed = False
        fault.safe = (f"the final model is complete on this VM's disk at {local_model}; "
                      f"{target} has NO {COMPLETE_MARKER}, so no notebook takes it for finished; this stage's "
                      f"checkpoints are kept in {self.ckpt_dir}")
        self.log(str(fault))
        return fault

    def _final_missing(self, folder: Path, data: dict) -> str | None:
        """Why a finished stage's model folder is not whole, or None: the mount's sizes, then with the Drive API
        Drive's sizes and md5s, without it (or when it cannot answer) the copy's SHA-256s."""
        why = files_problem(folder, data.get("files", {}), COMPLETE_MARKER, hashes=False)
        if why is not None:
            return why
        if self.remover.api is not None:
            try:
                return ckpt.on_drive(folder, data.get("files", {}), self.remover.api, marker=None)
            except Exception as e:  # the API cannot answer: the mount's whole copy is all there is to go by
                self.log(f"could not ask Drive whether {folder} is whole ({type(e).__name__}: {e}); hashing the "
                         "mount's copy")
        # no Drive API (or it cannot answer): only hashing the copy finds a same-size damaged file, which the
        # stage would otherwise call finished while load_stage refuses it
        return stage_problem(folder, data, hashes=True)

    def _repair_final_from_local(self, target: Path, data: dict, missing: str) -> bool:
        """An incomplete "finished" model in the run directory (its ``COMPLETE.json`` there, a file of it not:
        ``missing`` says which) repaired from this VM's own copy of the final model, when that copy lists the
        same files and every one verifies (sizes and SHA-256): uploaded again, marker last (:meth:`_upload_final`),
        no training. False when there is no such copy: the caller then resumes from the newest checkpoint that
        verifies (or trains the stage again)."""
        local_model = self._local_root() / FINAL_MODEL_DIR
        if not local_model.is_dir():
            return False
        try:
            local_data = read_complete_marker(local_model)
            why = (stage_problem(local_model, local_data) if local_data["files"] == data["files"] else
                   f"it lists other files than {target / COMPLETE_MARKER} (another training)")
        except (OSError, IncompleteStageError) as e:
            why = f"{type(e).__name__}: {e}"
        if why is not None:
            self.log(f"stage {self.cfg.stage}: this VM's copy of the final model ({local_model}) does not verify "
                     f"({why}): it is not used")
            return False
        self.log(f"stage {self.cfg.stage}: {target} is not whole ({missing}); this VM holds a verified copy of the "
                 f"final model at {local_model}: uploading it again (its {COMPLETE_MARKER} last), no training")
        self._upload_final(local_model, target)
        return True

    def _save_interval_s(self) -> float:
        """``save_every_minutes``, stretched on Drive to what its daily upload limit and the measured upload rate
        allow (:func:`helpers.train.checkpoints.drive_interval_s`; the run plan prints the same figure)."""
        base = self.cfg.save_every_minutes * 60
        if self.remover.api is None or not self.checkpoint_bytes:
            return base
        return max(base, ckpt.drive_interval_s(self.checkpoint_bytes, self.upload_rate))

def _duration(seconds: float) -> str:
    """``"45 s"``, ``"12 minutes"``, ``"3.5 hours"``: how long uploads stalled, for the stop message."""
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def state_bytes(obj) -> int:
    """Bytes of every tensor in a (nested) state dict: what torch.save writes, give or take headers."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0
