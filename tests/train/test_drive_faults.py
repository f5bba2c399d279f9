"""A real stage (StageRecipe, its background publisher) on a Drive that fails the way Colab's does.

The simulator (tests/drive_sim.py) fails this process's system calls on the mount (ENOTCONN until a
forced remount, EIO, quota), refuses uploads (quota, daily cap), corrupts them (same size), delivers
them at a byte rate in real time, and kills the VM (its cache, local disk and memory lost). Each test
reproduces one case of issue #30 and checks: nothing confirmed is lost, the resumed run ends with the
very weights (and loss trajectory) of an uninterrupted run on CPU, nothing loops, and the message
names the fault and the remedy.
"""
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from assets_utterances import random_code_utterances

from drive_sim import SimDrive, VmDeath
from helpers import models
from helpers.colab import drive, session
from helpers.train import checkpoints as ckpt
from helpers.train.config import stage_config
from helpers.train.recipe import METRICS_FILE, StageRecipe

torch.set_num_threads(1)
STEPS, EVERY = 10, 2


def _utts():
    return random_code_utterances(8, 0, accents=("us", "uk", "other"))


def _recipe(world, stage_dir, local, stage=2, init=None, **kw):
    """A tiny stage ``stage`` trained from ``init`` (default: the world's stage-1 model)."""
    from helpers.train.sequences import choose_builtin_voices

    base = dict(max_seq_len=256, max_steps=STEPS, warmup_steps=2, learning_rate=2e-3, log_every=1, save_every=EVERY,
                eval_every=0, keep_last=1, progress=False, reference_prob=0.5, eval_fraction=0.0,
                save_every_minutes=None, reference_min_frames=4, reference_max_frames=16,
                drive_deletion="permanent", local_dir=str(local))
    base.update(kw)
    model, tok = models.load_stage(init or world / "stage1")
    utts = _utts()
    logs = []
    r = StageRecipe(stage_config(stage, "tiny", **base), model, tok, utts, stage_dir, choose_builtin_voices(utts),
                    log=logs.append)
    return r, logs


def _setup(r):
    r.setup()
    r.publisher.backoff_s = 0.0
    return r


def _weights(stage_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(stage_dir) / "model" / "model.safetensors"))


def _trajectory(stage_dir):
    rows = [l.split(",") for l in (Path(stage_dir) / METRICS_FILE).read_text().splitlines()[1:]]
    return [(r[0], r[2], r[3], r[4]) for r in rows]  # step, loss, lr, grad_norm (exact reprs)


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory):
    """The uninterrupted run on a plain disk: weights, loss trajectory, checkpoint size."""
    d = tmp_path_factory.mktemp("straight")
    r, _ = _recipe(world, d / "stage2", d / "local")
    _setup(r).train()
    r.save_final()
    r.cleanup()
    return {"weights": _weights(d / "stage2"), "trajectory": _trajectory(d / "stage2"),
            "ckpt_bytes": r.checkpoint_bytes, "marker": (d / "stage2" / "model" / "COMPLETE.json").read_bytes()}


def _same_as_straight(stage_dir, straight):
    a, b = straight["weights"], _weights(stage_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _trajectory(stage_dir) == straight["trajectory"]


@pytest.fixture
def sim(tmp_path, monkeypatch):
    """A simulated Drive mount with its API connected; confirmation polls on the simulated clock."""
    s = SimDrive(tmp_path / "drive")
    s.uploads_per_sleep = 10**6  # by default every pending upload lands at the next poll
    monkeypatch.setattr(ckpt, "_sleep", s.sleep)
    monkeypatch.setattr(ckpt, "_clock", s.clock)
    monkeypatch.setattr(ckpt, "CONFIRM_POLL_S", 1.0)
    monkeypatch.setattr(ckpt, "CONFIRM_TIMEOUT_S", 20.0)
    monkeypatch.setattr(ckpt, "FINAL_CONFIRM_TIMEOUT_S", 30.0)
    monkeypatch.setattr(ckpt, "_SEEN_ON_DRIVE", set())
    monkeypatch.setattr(session, "COPY_WAIT_S", 0.0)
    monkeypatch.setattr(models, "READ_RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(drive, "_API", s.api())
    # 12 MB checkpoints every ~0.3 s would be ~3 TB a day: the daily limit is scaled with the checkpoints
    monkeypatch.setattr(drive, "DAILY_UPLOAD_LIMIT", 1e18)
    s.install(monkeypatch)
    yield s
    s.stop_uploads()


def _vm_death(sim, local, monkeypatch, r=None):
    """The VM dies: Drive keeps what it received; the cache, the local disk and the process memory go.
    ``r``: the recipe that ran on it; its background publisher (stopped by the death at its next call on
    the mount, poll or API call) is joined first, so that nothing of the dead VM touches the next one."""
    sim.die("the test kills the VM")
    t = getattr(getattr(r, "publisher", None), "_thread", None)
    if t is not None:
        t.join(timeout=120)
        assert not t.is_alive(), "the dead VM's publisher thread is still running"
    sim.kill()
    shutil.rmtree(local, ignore_errors=True)
    monkeypatch.setattr(ckpt, "_SEEN_ON_DRIVE", set())
    monkeypatch.setattr(drive, "_API", sim.api())


def _remote_complete(sim, stage="run/stage2"):
    with sim.bypass():
        return [s for s, p in ckpt.list_checkpoints(sim.remote / stage / "checkpoints") if ckpt.verify(p) is None]


def _complete(r, stage, straight):
    """Train a set-up recipe to the end and save it: bitwise the uninterrupted run's."""
    r.train()
    r.save_final()
    r.cleanup()
    _same_as_straight(stage, straight)


def _finish(world, stage, local, straight, **kw):
    r, logs = _recipe(world, stage, local, **kw)
    _complete(_setup(r), stage, straight)
    return r, logs


def _strike_from(monkeypatch, step: int, strike):
    """``strike()`` before every checkpoint publication from ``step`` on (>=: a queued save may be superseded by
    a newer one in the background publisher); returns the real ``ckpt.publish`` (to put back for a rerun)."""
    real = ckpt.publish

    def publish(folder, *a, **k):
        if Path(folder).name >= ckpt.step_dir_name(step):
            strike()
        return real(folder, *a, **k)

    monkeypatch.setattr(ckpt, "publish", publish)
    return real


# ----------------------------------------------------------------------------- case 1
def test_case1_dead_mount_stops_at_once_and_the_rerun_resumes_from_local_disk(world, straight, sim, tmp_path,
                                                                              monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)
    # "Transport endpoint is not connected" for the rest of the session
    real = _strike_from(monkeypatch, 4, lambda: setattr(sim, "dead", True))
    with pytest.raises(drive.StorageFault) as e:
        try:
            r.train()
        finally:
            print("\n".join(logs))
    msg, stopped = str(e.value), r.step
    assert stopped < STEPS, "training ran on with a dead mount"
    assert "[dead_mount]" in msg and "ENOTCONN" in msg and "force_remount=True" in msg, msg
    assert f"step {stopped} (now) on this VM's local disk" in msg and "step 2 confirmed on Drive" in msg, msg
    assert 2 in _remote_complete(sim)  # the confirmed one was never touched

    sim.remount()  # the user runs drive.mount(..., force_remount=True), then reruns the notebook
    monkeypatch.setattr(ckpt, "publish", real)
    r2, logs2 = _recipe(world, stage, local)
    _setup(r2)
    assert r2.step == stopped and r2.resumed_from == str(local / ckpt.step_dir_name(stopped)), logs2
    _complete(r2, stage, straight)
    assert (sim.remote / "run" / "stage2" / "model" / "COMPLETE.json").is_file()  # confirmed on Drive, marker last


def test_copy_into_run_retries_blips_and_names_a_dead_mount(sim, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 1000)
    sim.blip(2)  # a short drop: retried, then it works
    out = session.copy_into_run(src, sim.mount / "d" / "folder")
    assert (out / "a.bin").read_bytes() == b"x" * 1000
    sim.dead = True  # dead until remounted: the cleanup inside the except must not hide the real error
    with pytest.raises(drive.StorageFault) as e:
        session.copy_into_run(src, sim.mount / "d" / "other")
    assert e.value.kind == "dead_mount" and e.value.errno == 107 and "force_remount=True" in str(e.value)
    # a folder copy's EIO arrives as shutil.Error (errno None): recognised as a transport error
    err = shutil.Error([(str(src / "a.bin"), "/x", "[Errno 5] Input/output error: '/x'")])
    assert drive.os_error_errno(err) == 5 and drive.fault_kind(err) == "io_error" and session._is_transport_error(err)


# ----------------------------------------------------------------------------- case 2
def test_case2_a_same_size_corrupt_manifest_is_never_confirmed_nor_resumed(world, straight, sim, tmp_path,
                                                                         monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)  # the real background publisher: the VM dies in its thread while training runs on
    real, hit = ckpt.publish, []

    def publish(folder, *a, **k):  # >=: a queued save may be superseded by a newer one
        first = Path(folder).name >= ckpt.step_dir_name(6) and not hit
        if first:
            hit.append((Path(folder).name, r.confirmed_step))
            sim.corrupt.add(ckpt.MANIFEST)  # its upload lands with one sha256 digit changed
        out = real(folder, *a, **k)
        if first:
            raise sim.die(f"right after {Path(folder).name}'s publication")
        return out

    monkeypatch.setattr(ckpt, "publish", publish)
    with pytest.raises(VmDeath):
        r.train()
    (name, before), = hit
    assert before is not None and r.confirmed_step == before  # the corrupt one was never confirmed
    assert any(f"{name} reached Drive corrupt: manifest.json" in m for m in logs), logs
    assert before in _remote_complete(sim)  # the previous confirmed checkpoint was NOT deleted for the corrupt one
    _vm_death(sim, local, monkeypatch, r)
    monkeypatch.setattr(ckpt, "publish", real)
    r2, logs2 = _recipe(world, stage, local)
    _setup(r2)
    assert r2.step == before, logs2  # not 0, not the corrupt one
    assert any(name in m and "skipped" in m for m in logs2), logs2
    _complete(r2, stage, straight)


# ----------------------------------------------------------------------------- case 6
def test_case6_eio_on_the_newest_checkpoint_falls_back_to_the_older_one_naming_path_and_errno(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local, keep_last=2)
    _setup(r)
    real = ckpt.publish

    def publish(folder, *a, **k):
        out = real(folder, *a, **k)
        if Path(folder).name >= ckpt.step_dir_name(6):  # >=: a queued save may be superseded by a newer one
            raise sim.die(f"after {Path(folder).name}")  # in the background publisher's thread
        return out

    monkeypatch.setattr(ckpt, "publish", publish)
    with pytest.raises(VmDeath):
        r.train()
    _vm_death(sim, local, monkeypatch, r)
    held = _remote_complete(sim)
    assert len(held) == 2 and held[1] >= 6, held  # keep_last=2: the newest two confirmed ones
    older, newest = held
    sim.eio[f"run/stage2/checkpoints/{ckpt.step_dir_name(newest)}/model.pt"] = -1  # unreadable for good
    monkeypatch.setattr(ckpt, "publish", real)
    r2, logs2 = _recipe(world, stage, local, keep_last=2)
    _setup(r2)
    assert r2.step == older
    said = [m for m in logs2 if ckpt.step_dir_name(newest) in m and "unreadable" in m]
    assert said and "errno 5 EIO" in said[0] and "model.pt" in said[0], logs2
    sim.eio.clear()
    _complete(r2, stage, straight)


# ----------------------------------------------------------------------------- case 3
def test_case3_quota_refusing_uploads_stops_with_the_quota_remedy_and_never_marks_the_stage_done(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)
    real = ckpt.publish

    def publish(folder, *a, **k):  # >=: a queued save may be superseded by a newer one (background publisher)
        if Path(folder).name >= ckpt.step_dir_name(6) and sim.quota_bytes is None:  # Drive fills up
            with sim.bypass():
                used = sum(p.stat().st_size for p in sim.remote.rglob("*") if p.is_file())
            sim.quota_bytes = used + straight["ckpt_bytes"] // 2
        return real(folder, *a, **k)

    monkeypatch.setattr(ckpt, "publish", publish)
    with pytest.raises(drive.StorageFault) as e:
        r.train()
    msg = str(e.value)
    # statvfs on the mount reports the quota: caught before the copy (else after 3 refused uploads)
    assert "[quota]" in msg and "empty Drive's Trash" in msg and "errno 28 ENOSPC" in msg, msg
    assert r.confirmed_step is not None and r.confirmed_step in _remote_complete(sim)  # never deleted
    assert not (sim.remote / "run" / "stage2" / "model").exists()  # nothing claims "done"
    # the user frees space; the rerun on this VM continues from its local disk, and completes
    sim.quota_bytes = None
    monkeypatch.setattr(ckpt, "publish", real)
    r2, _ = _finish(world, stage, local, straight)
    assert r2.resumed_from == str(local / ckpt.step_dir_name(r.step))
    sim.sync()
    assert (sim.remote / "run" / "stage2" / "model" / "COMPLETE.json").is_file()


def test_uploads_that_keep_landing_damaged_stop_as_corrupt_not_stalled(world, straight, sim, tmp_path, monkeypatch):
    """Every checkpoint from step 4 on reaches Drive with a changed byte: after 3 in a row (4, 6, 8) the stop names
    the corruption and the files (not 'stalled': the uploads did complete), and the last good one is kept."""
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)
    _strike_from(monkeypatch, 4, lambda: sim.corrupt.add(ckpt.MANIFEST))  # lands with one sha256 digit changed
    with pytest.raises(drive.StorageFault) as e:
        r.train()
    msg = str(e.value)
    assert "[corrupt_upload]" in msg and "Drive holds other bytes than this VM wrote" in msg, msg
    assert f"{ckpt.MANIFEST}" in msg and "[stalled]" not in msg, msg
    assert r.confirmed_step == 2 and 2 in _remote_complete(sim)  # the last good one, never deleted


# ----------------------------------------------------------------------------- cases 3 and 4: an incomplete "done"
def test_case4_a_marker_without_its_weights_is_repaired_by_the_rerun_not_looped(world, straight, sim, tmp_path,
                                                                                monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)
    real = ckpt.publish

    def publish(folder, *a, **k):
        out = real(folder, *a, **k)
        if Path(folder).name == ckpt.step_dir_name(STEPS):
            raise sim.die("before save_final")  # in the background publisher's thread
        return out

    monkeypatch.setattr(ckpt, "publish", publish)
    with pytest.raises(VmDeath):
        r.train()
    _vm_death(sim, local, monkeypatch, r)
    # what older code left: the marker reached Drive, the weights never did
    with sim.bypass():
        for root in (sim.remote, sim.mount):
            (root / "run" / "stage2" / "model").mkdir(parents=True, exist_ok=True)
            (root / "run" / "stage2" / "model" / "COMPLETE.json").write_bytes(straight["marker"])

    with pytest.raises(models.IncompleteStageError, match="missing. Rerun the notebook that wrote this folder"):
        models.load_stage(stage / "model")  # what 05 says about it: with the remedy
    monkeypatch.setattr(ckpt, "publish", real)
    r2, logs2 = _finish(world, stage, local, straight)
    assert any("NOT finished" in m and "is missing" in m for m in logs2), logs2
    assert r2.resumed_from.endswith(ckpt.step_dir_name(STEPS))  # repaired from the checkpoint: no retraining
    r3, logs3 = _recipe(world, stage, local)
    _setup(r3)
    assert r3.skipped and any("already finished" in m for m in logs3)  # done now, and it stays done


def test_case4_on_the_same_vm_a_verified_local_copy_of_the_final_model_is_uploaded_again_without_training(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, _ = _recipe(world, stage, local)
    _setup(r).train()
    r.save_final()  # confirmed on Drive, checkpoints deleted; the kernel restarts before cleanup(): the VM's copy stays
    assert not (stage / "checkpoints").exists() and (local / "model" / "COMPLETE.json").is_file()
    marker = (local / "model" / "COMPLETE.json").read_bytes()
    with sim.bypass():  # Drive loses the weights (deleted at drive.google.com); the marker stays
        for root in (sim.remote, sim.mount):
            (root / "run" / "stage2" / "model" / "model.safetensors").unlink()
    trained = []
    monkeypatch.setattr(StageRecipe, "_next_bin", lambda self: trained.append(self.step) or 1 / 0)
    r2, logs2 = _recipe(world, stage, local)
    _setup(r2)
    assert r2.skipped and r2.resumed_from is None, logs2
    said = [m for m in logs2 if "uploading it again" in m]
    assert said and "model.safetensors is missing" in said[0] and str(local / "model") in said[0], logs2
    r2.train()
    r2.save_final()
    r2.cleanup()
    assert not trained  # no training step ran: the model came from this VM's copy
    sim.sync()
    _same_as_straight(sim.remote / "run" / "stage2", straight)
    assert (sim.remote / "run" / "stage2" / "model" / "COMPLETE.json").read_bytes() == marker


def test_case4_on_the_same_vm_a_local_copy_that_does_not_verify_is_not_uploaded_the_stage_is_resumed(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, _ = _recipe(world, stage, local)
    _setup(r).train()
    r.save_final()
    bad = local / "model" / "model.safetensors"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte different: the VM's copy is damaged too
    bad.write_bytes(bytes(raw))
    with sim.bypass():
        for root in (sim.remote, sim.mount):
            (root / "run" / "stage2" / "model" / "model.safetensors").unlink()
    r2, logs2 = _recipe(world, stage, local)
    _setup(r2)
    assert not r2.skipped and r2.step == 0, logs2  # its checkpoints were deleted with the stage done: from the start
    said = [m for m in logs2 if "does not verify" in m]
    assert said and "SHA-256" in said[0] and "not used" in said[0], logs2
    assert not any("uploading it again" in m for m in logs2), logs2
    _complete(r2, stage, straight)


def test_a_damaged_final_model_is_called_damaged_never_still_in_the_vms_cache(world, straight, sim, tmp_path,
                                                                               monkeypatch):
    """A same-size corrupt upload of the final model stops with 'corrupt_upload' (not 'did not reach Drive'),
    and a finished stage whose copy on Drive is damaged is found so, with the Drive API and without."""
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r).train()
    sim.corrupt.add("model.safetensors")  # its upload lands with one byte changed, same size
    with pytest.raises(drive.StorageFault) as e:
        r.save_final()
    msg = str(e.value)
    assert e.value.kind == "corrupt_upload" and "Drive holds other bytes than this VM wrote" in msg, msg
    assert "model.safetensors" in msg and "did not reach" not in msg and "uploads it again" in msg, msg
    assert not (sim.remote / "run" / "stage2" / "model" / "COMPLETE.json").exists()  # never "done"
    r2, _ = _finish(world, stage, local, straight)  # the rerun uploads it again
    r2.cleanup()

    with sim.bypass():  # now Drive's copy gets damaged, same size; a new VM's mount shows it
        f = sim.remote / "run" / "stage2" / "model" / "model.safetensors"
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
    _vm_death(sim, local, monkeypatch)
    data = models.read_complete_marker(stage / "model")
    why = r2._final_missing(stage / "model", data)
    assert "differs on Drive: model.safetensors" in why and "corrupt" in why and "cache" not in why, why
    monkeypatch.setattr(r2.remover, "api", None)  # no Drive API: only the hashes can tell
    why = r2._final_missing(stage / "model", data)
    assert why is not None and "model.safetensors does not match its SHA-256" in why, why


# ----------------------------------------------------------------------------- refused uploads: what is known
def test_uploads_drive_refuses_behind_a_healthy_statvfs_stop_naming_the_likely_causes(world, straight, sim, tmp_path,
                                                                                     monkeypatch):
    """Drive refuses every upload (its quota as Google counts it, or the daily limit counting other VMs and apps)
    while the mount's statvfs shows room and this VM's own uploads are far from 750 GB: the stop says what is
    known (no upload completed for how long, the free space, this VM's volume) and lists the usual causes with
    the remedy of each; after the cause is gone the rerun on this VM continues from its local disk."""
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, logs = _recipe(world, stage, local)
    _setup(r)
    real = ckpt.publish

    def publish(folder, *a, **k):  # >=: a queued save may be superseded by a newer one
        if Path(folder).name >= ckpt.step_dir_name(4) and sim.daily_cap_bytes is None:
            sim.daily_cap_bytes = sim.uploaded_bytes  # Drive refuses every further upload; statvfs is unchanged
        return real(folder, *a, **k)

    monkeypatch.setattr(ckpt, "publish", publish)
    with pytest.raises(drive.StorageFault) as e:
        r.train()
    msg = str(e.value)
    what, remedy = msg.split("Remedy:")
    assert e.value.kind == "stalled" and sim.refused, msg
    assert "3 checkpoint publications in a row" in what and "no upload completed for " in what, msg
    assert " GB free" in what and "uploaded 0.0 GB in the last 24 h" in what, msg
    for cause in ("storage quota", "empty Drive's Trash", "750 GB per day", "wait up to 24 h", "force_remount=True"):
        assert cause in remedy, (cause, msg)
    assert r.confirmed_step in _remote_complete(sim)  # the newest confirmed one was never deleted
    sim.daily_cap_bytes = None  # the limit resets (or the user freed quota): rerun
    monkeypatch.setattr(ckpt, "publish", real)
    r2, _ = _finish(world, stage, local, straight)
    assert r2.resumed_from == str(local / ckpt.step_dir_name(r.step))


def test_the_diagnosis_of_unconfirmed_uploads_tells_quota_daily_limit_stall_and_dead_mount_apart(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    r, _ = _recipe(world, stage, local)
    _setup(r)
    r.checkpoint_bytes = ck = straight["ckpt_bytes"]
    why = "3 checkpoint publications in a row failed or were not confirmed by Drive"
    r._awaiting_upload_since = sim.now - 15 * 60  # no upload completed for 15 (simulated) minutes
    f = r._diagnose_uploads(why)  # neither the quota (statvfs) nor this VM's daily volume explains it
    assert f.kind == "stalled" and "no upload completed for 15 minutes" in str(f), str(f)
    assert "750 GB per day" in str(f) and "empty Drive's Trash" in str(f)
    with sim.bypass():
        used = sum(p.stat().st_size for p in sim.remote.rglob("*") if p.is_file())
    sim.quota_bytes = used + ck // 2  # statvfs on the mount: less free than a checkpoint needs
    f = r._diagnose_uploads(why)
    assert f.kind == "quota" and "GB free, a checkpoint needs" in str(f) and "empty Drive's Trash" in str(f)
    sim.quota_bytes = None
    monkeypatch.setattr(drive, "DAILY_UPLOAD_LIMIT", 100 * ck)
    r.ledger.uploaded(80 * ck)  # this VM alone is near the (scaled) daily limit
    f = r._diagnose_uploads(why)
    assert f.kind == "daily_cap" and "in the last 24 h" in str(f) and "wait for the limit to reset" in str(f)
    sim.dead = True
    f = r._diagnose_uploads(why)
    assert f.kind == "dead_mount" and "ENOTCONN" in str(f) and "force_remount=True" in str(f)
    sim.remount()


# ----------------------------------------------------------------------------- a stage model that cannot be read
def test_an_unreadable_stage_model_names_the_file_the_errno_and_the_remedy(world, sim, capsys, monkeypatch):
    folder = sim.mount / "run" / "stage1"
    with sim.bypass():
        shutil.copytree(world / "stage1", folder)
    # a passing EIO (at hashing, then in transformers' own read) is read again, said, and ridden out
    sim.eio["run/stage1/config.json"] = 2
    model, _ = models.load_stage(folder)
    assert model is not None and sim.eio["run/stage1/config.json"] == 0
    said = capsys.readouterr().err
    assert "config.json" in said and "errno 5 EIO" in said and "reading it again" in said, said
    # one that stays: a StorageFault naming the file, the errno and the remedy, after READ_RETRIES more reads
    sim.eio["run/stage1/config.json"] = -1
    with pytest.raises(drive.StorageFault) as e:
        models.load_stage(folder)
    msg = str(e.value)
    assert e.value.kind == "io_error" and e.value.errno == 5 and "errno 5 EIO" in msg, msg
    assert str(folder / "config.json") in msg and "force_remount=True" in msg and "drive.google.com" in msg, msg
    # verify=False: transformers' own read meets it
    with pytest.raises(drive.StorageFault) as e:
        models.load_stage(folder, verify=False)
    assert e.value.kind == "io_error" and str(folder / "config.json") in str(e.value), str(e.value)
    # a loader error that hides the EIO (transformers' os.path.isfile reads one on the linked weights as "absent"):
    # the folder's files are read again to find it
    sim.eio.clear()
    sim.eio["run/stage1/model.safetensors"] = -1
    monkeypatch.setattr(models, "SNAPSHOT_MAX_BYTES", 1 << 20)  # the tiny weights are linked, as a 3B model's are
    real = models._from_pretrained
    calls = []

    def hiding(*a, **k):
        calls.append(1)
        raise OSError("Error no file named model.safetensors, or pytorch_model.bin, found in directory")

    models._from_pretrained = hiding
    try:
        with pytest.raises(drive.StorageFault) as e:
            models.load_stage(folder, verify=False)
        assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno is None
        assert str(folder / "model.safetensors") in str(e.value) and "errno 5 EIO" in str(e.value), str(e.value)
        sim.eio.clear()
        calls.clear()
        with pytest.raises(OSError, match="no file named"):  # nothing unreadable: its own error, unchanged
            models.load_stage(folder, verify=False)
        assert len(calls) == models.READ_RETRIES + 1  # tried again (a passing EIO may hide behind it), then raised
    finally:
        models._from_pretrained = real
    sim.eio["run/stage1/COMPLETE.json"] = -1  # the marker itself
    with pytest.raises(drive.StorageFault, match="COMPLETE.json.*errno 5 EIO"):
        models.load_stage(folder)
    sim.eio.clear()
    sim.dead = True  # the whole mount: "Transport endpoint is not connected"
    with pytest.raises(drive.StorageFault) as e:
        models.load_stage(folder)
    assert e.value.kind == "dead_mount" and "ENOTCONN" in str(e.value) and "force_remount=True" in str(e.value)
    sim.remount()
    model, _ = models.load_stage(folder)  # remounted: it loads
    assert model is not None


def test_one_eio_anywhere_in_a_stage_models_load_never_loads_another_tokenizer_or_config(world, sim):
    """transformers probes optional files with os.path.isfile, which reads an EIO as "absent": one EIO there on
    the mount silently loads other special tokens, other token ids or another generation config. load_stage
    hands transformers a checked local view, so one EIO at any call of the load on the mount either is ridden
    out (the very same model and tokenizer) or stops with a StorageFault; never a different load."""
    import errno
    import os

    folder = sim.mount / "run" / "stage1"
    with sim.bypass():
        shutil.copytree(world / "stage1", folder)
    ref_model, ref_tok = models.load_stage(folder, verify=False)
    text = "Hello <|audio|> world, 42."
    calls = {"n": 0, "at": None, "hit": []}

    def on_call(rel, read, write):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            calls["hit"].append(rel)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(sim.mount / rel))

    sim.on_call = on_call
    models.load_stage(folder, verify=False)
    total, outcomes = calls["n"], {"same": 0, "fault": 0}
    assert total >= 5, total
    for k in range(1, total + 1):
        calls.update(n=0, at=k)
        try:
            model, tok = models.load_stage(folder, verify=False)
        except drive.StorageFault as e:
            assert e.kind == "io_error" and "Remedy:" in str(e)
            outcomes["fault"] += 1
            continue
        assert tok.get_vocab() == ref_tok.get_vocab() and tok.all_special_tokens == ref_tok.all_special_tokens, k
        assert tok(text)["input_ids"] == ref_tok(text)["input_ids"], (k, calls["hit"])
        assert model.config.to_dict() == ref_model.config.to_dict(), k
        assert model.generation_config.to_dict() == ref_model.generation_config.to_dict(), (k, calls["hit"])
        sd, ref = model.state_dict(), ref_model.state_dict()
        assert all(torch.equal(sd[n], ref[n]) for n in ref), k
        outcomes["same"] += 1
    sim.on_call = None
    assert len(calls["hit"]) == total and outcomes["same"] == total, outcomes  # a single EIO is always ridden out


# ----------------------------------------------------------------------------- case 8
def test_case8_uploads_slower_than_the_cadence_never_lose_the_newest_confirmed_checkpoint(
        world, straight, sim, tmp_path, monkeypatch):
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    monkeypatch.setattr(ckpt, "_sleep", time.sleep)  # real time: the uploads run in a thread meanwhile
    monkeypatch.setattr(ckpt, "_clock", time.monotonic)
    monkeypatch.setattr(ckpt, "CONFIRM_POLL_S", 0.02)
    monkeypatch.setattr(ckpt, "CONFIRM_TIMEOUT_S", 30.0)
    r, logs = _recipe(world, stage, local, save_every=1)
    _setup(r)
    real, seen = ckpt.publish, []

    def publish(folder, *a, **k):
        t0 = time.monotonic()
        out = real(folder, *a, **k)
        held = ckpt.list_checkpoints(stage / "checkpoints")
        seen.append((Path(folder).name, time.monotonic() - t0, len(held), max(_remote_complete(sim), default=0)))
        assert len(held) <= 2, held  # one confirmed + one uploading, never more
        return out

    monkeypatch.setattr(ckpt, "publish", publish)
    step_s = []
    real_save = r.save_checkpoint

    def save():
        time.sleep(0.25)  # a step lasts >= 0.25 s whatever the machine: ~4 uploads of ~0.6 s fit in the stage
        step_s.append(time.monotonic())
        return real_save()

    r.save_checkpoint = save
    sim.start_uploads(straight["ckpt_bytes"] / 0.6)  # one checkpoint takes ~0.6 s to upload
    r.train()
    r.save_final()
    sim.stop_uploads()
    _same_as_straight(stage, straight)
    gaps = [b - a for a, b in zip(step_s, step_s[1:])]
    upload_s = [d for _, d, _, _ in seen]
    # the scenario really is "uploads slower than the cadence"
    assert sorted(gaps)[len(gaps) // 2] < sorted(upload_s)[len(upload_s) // 2], (gaps, upload_s)
    newest = [n for *_, n in seen]
    assert newest == sorted(newest) and newest[-1] >= STEPS - 2, seen  # confirmed ones only ever advance
    assert len(seen) >= 3, seen  # several landed during the stage (not "none ever complete")
    assert any("superseded" in m for m in logs), logs  # the cadence stretched instead of piling up


# ----------------------------------------------------------------------------- case 5
def test_case5_a_second_writer_is_refused_naming_the_first_and_a_stale_lease_is_taken_over(
        world, straight, sim, tmp_path, monkeypatch):
    import os
    import socket

    from helpers.colab import lease as lease_mod

    stage = sim.mount / "run" / "stage2"
    first, _ = _recipe(world, stage, tmp_path / "la")
    _setup(first)
    me = socket.gethostname()
    monkeypatch.setattr(lease_mod.socket, "gethostname", lambda: "vm-b")  # the second notebook: another VM
    second, logs2 = _recipe(world, stage, tmp_path / "lb")
    with pytest.raises(lease_mod.LeaseHeld) as e:
        second.setup()
    msg = str(e.value)
    assert "[lease]" in msg and f"host {me!r}" in msg and f"pid {os.getpid()}" in msg and "another notebook" in msg
    assert not (stage / "checkpoints").exists()  # it refused before touching anything

    # the first writer stops heartbeating (its VM died) for longer than the stale timeout: taken over
    later = time.time() + lease_mod.STALE_AFTER_S + 60
    monkeypatch.setattr(lease_mod, "_now", lambda: later)
    second, logs2 = _recipe(world, stage, tmp_path / "lb")
    _setup(second)
    assert any("taking over the lease" in m and me in m for m in logs2), logs2
    # the first one was only paused: its next heartbeat sees the new owner and it stops without writing
    with pytest.raises(lease_mod.LeaseHeld, match="taken over by another writer"):
        first.train()
    assert first.step == 1 and not (stage / "checkpoints").exists()
    _complete(second, stage, straight)


# ----------------------------------------------------------------------------- daily cap, disk full
def test_daily_limit_paces_uploads_and_a_refusal_near_it_is_named(world, straight, sim, tmp_path, monkeypatch):
    """Drive's 750 GB/day, scaled to these 12 MB checkpoints (one upload per 3 s): saves in between
    stay on local disk, and a run whose uploads stall after this VM uploaded near the limit is told so."""
    stage, local = sim.mount / "run" / "stage2", tmp_path / "local"
    ck = straight["ckpt_bytes"]
    monkeypatch.setattr(drive, "DAILY_UPLOAD_LIMIT", ck * 86400 / (drive.DAILY_UPLOAD_MARGIN * 3.0))
    assert ckpt.drive_interval_s(ck) == pytest.approx(3.0)
    r, logs = _recipe(world, stage, local, save_every=1)
    _setup(r).train()
    r.save_final()
    _same_as_straight(stage, straight)
    kept_local = [m for m in logs if "kept on local disk only" in m]
    published = [m for m in logs if "published to" in m]
    assert kept_local and published and len(published) < STEPS, (kept_local, published)
    # the diagnosis of stalled uploads reads this VM's uploads of the last 24 h (the ledger)
    r.ledger.uploaded(int(drive.DAILY_UPLOAD_LIMIT))
    fault = r._diagnose_uploads("3 checkpoint publications in a row were not confirmed")
    assert fault.kind == "daily_cap" and "750 GB per user per day" in str(fault) and "wait" in str(fault)


def test_disk_full_during_the_local_write_is_named_as_such(world, tmp_path, monkeypatch):
    r, logs = _recipe(world, tmp_path / "stage2", tmp_path / "local")
    _setup(r)
    real_save = torch.save

    def full(obj, f, *a, **k):  # what torch.save raises when the disk fills during the write
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4314")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(drive.StorageFault) as e:
        r.train()
    msg = str(e.value)
    assert "[local_disk]" in msg and "disk is full" in msg and "errno 28 ENOSPC" in msg and "step-00000002" in msg
    assert "Trash" not in msg.split("Remedy:")[1].replace("Drive's quota and Trash do not matter", "")
    monkeypatch.setattr(torch, "save", real_save)


def test_a_run_directory_on_a_plain_disk_that_fills_is_named_as_such_never_drives_quota(world, tmp_path,
                                                                                       monkeypatch):
    """No Drive (no API, not under /content/drive): a run directory whose disk fills stops as local_disk, and
    neither that message nor the diagnosis of failed publications sends the user to Drive's Trash or quota."""
    monkeypatch.setattr(drive, "_API", None)
    stage = tmp_path / "runs" / "stage2"
    r, logs = _recipe(world, stage, tmp_path / "local")
    _setup(r)
    real_free = drive.free_bytes

    def free(path):  # the run directory's disk is full; the local scratch disk is not
        return 1000 if str(path).startswith(str(stage)) else real_free(path)

    monkeypatch.setattr(drive, "free_bytes", free)
    with pytest.raises(drive.StorageFault) as e:
        r.train()
    msg = str(e.value)
    assert e.value.kind == "local_disk" and "not enough space for checkpoint" in msg, msg
    assert "Trash" not in msg.replace("Drive's quota and Trash do not matter", "") and "quota" not in msg.replace(
        "Drive's quota and Trash do not matter", ""), msg
    f = r._diagnose_uploads("3 checkpoint publications in a row failed")
    assert f.kind == "local_disk" and "the disk of the run directory has 0.00 GB free" in str(f), str(f)
    monkeypatch.setattr(drive, "free_bytes", real_free)
    f = r._diagnose_uploads("3 checkpoint publications in a row failed (PermissionError: ...)")
    assert f.kind == "write_failed" and "Drive" not in str(f).split("Remedy:")[0], str(f)
    assert "Trash" not in str(f) and "750 GB" not in str(f)


# ----------------------------------------------------------------------------- soak
SOAK_INJECTIONS = 200  # what the issue asks for: every one of them fires (counted below)
# slow_upload: polls on the simulated clock deliver nothing for a while; rate_upload: from then on uploads
# run at a byte rate in real time, in a thread, while training runs (and the code's waits are real too)
SOAK_KINDS = ("kill", "dead_mount", "eio", "quota", "slow_upload", "rate_upload")
RATE_REAL_S = 0.02  # real seconds per simulated second of a poll while uploads run in real time


@pytest.fixture(scope="module")
def straight_chain(world, tmp_path_factory):
    """Stages 2 -> 3 -> 4 uninterrupted on a plain disk: each stage's final weights (stage 4's: the final model)."""
    d = tmp_path_factory.mktemp("chain")
    out, init = {}, None
    for stage in (2, 3, 4):
        r, _ = _recipe(world, d / f"stage{stage}", d / f"local{stage}", stage=stage, init=init)
        _setup(r).train()
        r.save_final()
        r.cleanup()
        out[stage], init = _weights(d / f"stage{stage}"), d / f"stage{stage}" / "model"
    return out


class _Injector:
    """Strikes at chosen calls of the code on the mount (``SimDrive.on_call``): the save, the copy into
    the run directory, the confirmation polls, retention, the lease, the resume's reads, the next
    stage's load. ``plan``: sorted ``[(call number, kind, arg)]``; ``fired``: the kinds that struck.

    What "fired" means, kind by kind (an injection that never bit is not counted):
    kill: the VM dies at that call, in whichever thread makes it (the training loop or the background
    publisher: SimDrive.die, every later call of the process raises VmDeath); dead_mount: that call and
    all after it raise ENOTCONN until remounted; eio: that call raises EIO; quota: Drive's quota set to
    half a checkpoint above what it holds, fired once the code is told (statvfs) or an upload is refused;
    slow_upload: the next ``arg`` polls deliver nothing, fired once a poll held back a pending upload;
    rate_upload: from then on only a thread uploads, one checkpoint per ``arg`` real seconds, while the
    code trains or waits (its polls then take real time), fired once that thread delivered a file."""

    def __init__(self, sim, plan, ckpt_bytes, budget):
        self.sim, self.plan, self.ckpt_bytes, self.budget = sim, list(plan), ckpt_bytes, budget
        self.calls, self.fired, self.waiting = 0, [], set()
        self.kill_threads: list[str] = []  # where each kill struck: the training loop or the publisher's thread
        self._lock = threading.Lock()

    def on_call(self, rel, read, write):
        import errno
        import os

        with self._lock:
            self.calls += 1
            if self.sim.dead or not self.plan or self.plan[0][0] > self.calls:
                return
            if len(self.fired) + len(self.waiting) >= self.budget:  # the soak's count is reached: no more
                self.plan.clear()
                return
            _, kind, arg = self.plan.pop(0)
            if kind in ("kill", "eio", "dead_mount"):
                self.fired.append(kind)
            if kind == "quota":
                with self.sim.bypass():
                    used = sum(p.stat().st_size for p in self.sim.remote.rglob("*") if p.is_file())
                self.sim.quota_bytes = used + self.ckpt_bytes // 2
                self.waiting.add(kind)
            elif kind == "slow_upload":
                self.sim.slow_polls += arg
                self.waiting.add(kind)
            elif kind == "rate_upload":
                if self.sim._uploader is None:
                    self.sim.uploads_per_sleep, self.sim.real_time = 0, RATE_REAL_S
                    self.sim.start_uploads(self.ckpt_bytes / arg)
                self.waiting.add(kind)
            elif kind == "dead_mount":
                self.sim.dead = True  # this very call raises ENOTCONN (SimDrive._check, next)
        if kind == "kill":
            self.kill_threads.append(threading.current_thread().name)
            raise self.sim.die(f"killed before a call on {rel}")
        if kind == "eio":
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self.sim.mount / rel))

    def on_event(self, kind, detail):
        with self._lock:
            hit = {"quota": "quota", "refused": "quota", "slow": "slow_upload", "rate": "rate_upload"}.get(kind)
            if hit in self.waiting:
                self.waiting.discard(hit)
                self.fired.append(hit)


@pytest.mark.slow
def test_soak_200_random_faults_across_stages_2_3_4_end_with_the_final_model_of_an_uninterrupted_run(
        world, straight_chain, sim, tmp_path, monkeypatch):
    """200 random fault injections (VM kill, mount dead until remounted, EIO, quota, slow uploads on the
    simulated clock and at a byte rate in real time while training runs), several per run, each at a random
    call of the code on the mount (in the training loop or in the real background publisher's thread, while
    it copies and confirms), across a tiny stage 2 -> 3 -> 4
    chain whose stages start from the previous stage's model on the (simulated) Drive. After a run
    stops, what the message says is done (remount, free quota) or the VM is replaced, and the real
    recipe reruns until the stage is done; every stage's model, as Drive holds it, ends bitwise equal
    to the uninterrupted chain's (stage 4's is the final model). Reruns are bounded: no loop.
    Seed: SOAK_SEED (printed) fixes the plan of faults; the background thread and the real-time uploads make
    the interleaving differ from one run to the next, so a failure shows the runs' log, not always a replay."""
    import os
    import random

    seed = int(os.environ.get("SOAK_SEED", "30"))
    print(f"soak seed {seed} (SOAK_SEED={seed} reproduces this run)")
    rng = random.Random(seed)
    fired, stops, runs, calls_seen, kill_threads = [], {}, 0, 400, []
    ckpt_bytes = None
    for stage in (2, 3, 4):
        sdir, local = sim.mount / "run" / f"stage{stage}", tmp_path / f"local{stage}"
        init = None if stage == 2 else sim.mount / "run" / f"stage{stage - 1}" / "model"
        target = SOAK_INJECTIONS * (stage - 1) // 3  # this stage's share, cumulative
        while True:
            runs += 1
            assert runs <= 150, f"seed {seed}: too many reruns (a loop?): {len(fired)} fired, stops {stops}"
            # 8-16 transient faults (EIO, slow uploads) and, in most runs, one that stops it (kill, dead mount,
            # quota); those planned past the calls a run makes never fire and are not counted
            plan = []
            for _ in range(rng.randint(8, 16)):
                kind = rng.choice(("eio", "slow_upload", "rate_upload"))
                plan.append((rng.randint(1, calls_seen), kind,
                             rng.uniform(0.1, 0.6) if kind == "rate_upload" else rng.randint(1, 30)))
            if rng.random() < 0.75:
                plan.append((rng.randint(1, calls_seen), rng.choice(("kill", "dead_mount", "quota")), 0))
            plan.sort()
            inj = _Injector(sim, plan, ckpt_bytes or 12 * 10**6, target - len(fired))
            outcome, r = "done", None
            sim.on_call, sim.on_event = inj.on_call, inj.on_event
            try:
                # the faults strike from the first call: the previous stage's model read from the (simulated)
                # Drive by transformers included; the real background publisher runs every publication
                r, logs = _recipe(world, sdir, local, stage=stage, init=init)
                _setup(r)
                r.train()
                ckpt_bytes = ckpt_bytes or r.checkpoint_bytes
                r.save_final()
                r.cleanup()
            except VmDeath:
                outcome = "kill"
            except drive.StorageFault as e:
                outcome = e.kind
                assert "Remedy:" in str(e), f"seed {seed}: {e}"
            finally:
                sim.on_call = sim.on_event = None
                if sim.killed:  # the VM died (in whichever thread): its threads stop, the next VM starts afresh
                    outcome = "kill"
                    _vm_death(sim, local, monkeypatch, r)
                sim.stop_uploads()
                sim.uploads_per_sleep, sim.real_time = 10**6, 0.0
                calls_seen = max(calls_seen, inj.calls)
            fired += inj.fired
            kill_threads += inj.kill_threads
            print(f"run {runs} stage {stage}: fired {inj.fired} of {[k for _, k, _ in plan]}, {inj.calls} calls: "
                  f"{outcome} (resumed from {getattr(r, 'resumed_from', None)}, step {getattr(r, 'step', None)})")
            stops[outcome] = stops.get(outcome, 0) + 1
            sim.remount()  # what the message says: remount, free quota; then rerun the notebook
            sim.quota_bytes, sim.slow_polls = None, 0
            if outcome != "done":
                continue
            # the stage finished: its model, as Drive holds it, is bitwise the uninterrupted chain's
            a, b = straight_chain[stage], _weights(sim.remote / "run" / f"stage{stage}")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (
                f"seed {seed}: stage {stage} differs after {len(fired)} injections")
            if len(fired) >= target:
                break
            with sim.bypass():  # this stage's share of faults not reached yet: train it again from scratch
                shutil.rmtree(sdir, ignore_errors=True)
                shutil.rmtree(sim.remote / "run" / f"stage{stage}", ignore_errors=True)
            shutil.rmtree(local, ignore_errors=True)
    counts = {k: fired.count(k) for k in SOAK_KINDS}
    in_publisher = sum(t.startswith("publish-") for t in kill_threads)
    print(f"soak seed {seed}: {len(fired)} injections fired {counts} in {runs} runs; runs ended {stops}; "
          f"{in_publisher} of {len(kill_threads)} kills struck in the background publisher's thread")
    assert len(fired) == SOAK_INJECTIONS and all(counts.values()), (seed, counts)
