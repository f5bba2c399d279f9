"""Checkpoint retention on Drive: the policy, free-space checks, a kill during the copy, Trash accounting."""
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from helpers.train import checkpoints as ckpt
from helpers.colab import drive
from helpers.profiles import REPO_ROOT
from drive_sim import SimDrive, VmDeath

torch.set_num_threads(1)
Usage = namedtuple("Usage", "total used free")


def _local(tmp, step, n=20_000):
    """A real checkpoint folder (model + trainer state) of about ``8 * n`` bytes."""
    g = torch.Generator().manual_seed(step)
    return ckpt.write_local(tmp / "local" / ckpt.step_dir_name(step), {"w": torch.randn(n, generator=g)},
                            {"m": torch.randn(n, generator=g), "step": step}, {"step": step})


def test_publish_actions_wait_for_uploads_write_confirm_then_delete():
    assert ckpt.publish_actions([], 1) == [("write", 1), ("confirm", 1)]
    assert ckpt.publish_actions([1], 2) == [("write", 2), ("confirm", 2), ("delete", 1)]
    assert ckpt.publish_actions([1, 2], 3, keep_last=2) == [("write", 3), ("confirm", 3), ("delete", 1)]
    # an upload still running (3) is waited for, never deleted and never joined by a second one; once it
    # landed it is the newest confirmed and the older confirmed one goes BEFORE the write (peak: 2)
    assert ckpt.publish_actions([2], 4, other_steps=[3]) == [("wait", 3), ("delete", 2), ("write", 4),
                                                              ("confirm", 4), ("delete", 3)]
    # the wait failed: nothing is written, nothing deleted (the new one stays on local disk)
    assert ckpt.publish_actions([2], 4, other_steps=[3], pending_confirmed=False) == [("wait", 3)]
    # not confirmed within its save: every older confirmed one within keep_last stays, the new one too
    assert ckpt.publish_actions([1], 2, new_confirmed=False) == [("write", 2), ("confirm", 2)]
    assert ckpt.publish_actions([1, 2], 3, new_confirmed=False) == [("delete", 1), ("write", 3), ("confirm", 3)]
    assert ckpt.finish_actions([3, 1]) == [("delete", 1), ("delete", 3)]
    with pytest.raises(ValueError, match="keep_last"):
        ckpt.publish_actions([], 1, keep_last=0)
    # the newest confirmed checkpoint is never deleted, whatever the confirmations (exhaustive over small cases)
    import itertools
    for n in range(1, 6):
        for conf in itertools.product([0, 1], repeat=n - 1):
            c = [i + 1 for i, x in enumerate(conf) if x]
            o = [i + 1 for i, x in enumerate(conf) if not x][-1:]
            for new_ok, pend_ok in itertools.product([True, False], repeat=2):
                acts = ckpt.publish_actions(c, n, 1, o, new_confirmed=new_ok, pending_confirmed=pend_ok)
                deleted = {s for a, s in acts if a == "delete"}
                good = set(c) | (set(o) if pend_ok else set())
                newest = max(good | ({n} if new_ok and ("write", n) in acts else set()), default=None)
                assert newest not in deleted and not (deleted & set(o) - good), (c, o, n, acts)


def test_worst_case_of_the_policy_is_keep_last_plus_one():
    """Every upload confirmed only at the next save's wait: two checkpoints at once, the plan's figure."""
    late = ckpt.simulate_stage(10, 5, 3)
    # the stage's last save is confirmed before the final model is written: it sits beside one checkpoint
    assert late["max_checkpoints"] == 2 and late["peak_live"] == 2 * 10
    on_time = ckpt.simulate_stage(10, 5, 3, late_confirmations=False)
    assert on_time["max_checkpoints"] == 2 and on_time["peak_live"] == 20
    assert ckpt.simulate_stage(10, 5, 3, keep_last=2)["max_checkpoints"] == 3
    trash = ckpt.simulate_stage(10, 5, 3, deletion="trash")
    assert trash["trash"] == 50 and trash["end_live"] == 3


def _measured_run(tmp_path, n_saves, remover, root=None):
    """Publish ``n_saves`` checkpoints, write a 'final model', finish; return the largest run-dir size seen."""
    run = (root or tmp_path) / "run"
    ckpt_dir = run / "checkpoints"
    run.mkdir()
    peak = 0
    real_remove = remover.remove

    def remove(p):  # measure just before every deletion: the moment with the most on disk
        nonlocal peak
        peak = max(peak, drive.tree_bytes(run))
        return real_remove(p)

    remover.remove = remove
    for step in range(1, n_saves + 1):
        local = _local(tmp_path, step)
        ckpt.publish(local, ckpt_dir, 1, remover=remover)
        peak = max(peak, drive.tree_bytes(run))
        assert len(ckpt.list_checkpoints(ckpt_dir)) == 1  # one complete checkpoint between saves
    (run / "model.bin").write_bytes(b"x" * 50_000)
    peak = max(peak, drive.tree_bytes(run))
    ckpt.finish(ckpt_dir, remover)
    peak = max(peak, drive.tree_bytes(run))
    return peak, drive.tree_bytes(local), run


@pytest.mark.parametrize("mode", ["trash", "permanent"])
def test_simulated_policy_matches_what_publishing_leaves(tmp_path, monkeypatch, mode):
    """The plan's Drive figures (simulate_stage) equal what the real publish/finish leave and delete
    when every upload is confirmed within its save (the plan itself assumes the worst: +1 checkpoint)."""
    sim = SimDrive(tmp_path / "drive")
    api = sim.api()
    monkeypatch.setattr(ckpt, "_sleep", lambda s: sim.sync())  # uploads finish while publish waits
    remover = drive.Remover(mode, api=api, wait_s=0)
    peak, size, run = _measured_run(tmp_path, 4, remover, root=sim.mount)
    sim.sync()
    sim_plan = ckpt.simulate_stage(size, 4, 50_000, keep_last=1, deletion=mode, late_confirmations=False)
    assert not (run / "checkpoints").exists()  # finished stage: final model only
    assert sim_plan["end_live"] == drive.tree_bytes(run) == drive.tree_bytes(sim.remote / "run") == 50_000
    assert sim_plan["peak_live"] == peak == 2 * size  # one complete + the one being written
    assert sim_plan["max_checkpoints"] == 2
    assert sim_plan["trash"] == remover.trashed_bytes == (4 * size if mode == "trash" else 0)
    assert sim.trash_bytes() == pytest.approx(sim_plan["trash"], abs=64)  # what Drive's Trash really got
    assert len(api.deleted) == (4 if mode == "permanent" else 0)


def test_permanent_deletion_falls_back_to_trash_loudly_when_the_api_fails(tmp_path, monkeypatch):
    sim = SimDrive(tmp_path / "drive")
    folder = sim.mount / "x"
    folder.mkdir()
    (folder / "f").write_bytes(b"abc")
    logs = []
    api = sim.api()
    api.fail = PermissionError("insufficient permissions")
    r = drive.Remover("permanent", api=api, log=logs.append, wait_s=0, trash_note=lambda: "plan: 1.0 GB more")
    assert r.remove(folder) == 3 and not folder.exists() and r.trashed_bytes == 3
    assert "failed" in logs[0] and "Trash" in logs[0] and "plan: 1.0 GB more" in logs[0]
    # no API connected at all (the setup cell was skipped) on the Drive mount: the Trash, never a prompt
    folder.mkdir()
    (folder / "f").write_bytes(b"abcd")
    monkeypatch.setattr(drive, "drive_file_id", lambda p: "some-id")
    monkeypatch.setattr(drive, "_API", None)
    r = drive.Remover("permanent", log=logs.append, wait_s=0)
    assert r.api is None and r.remove(folder) == 4 and "no Drive API was connected" in logs[-1]
    with pytest.raises(ValueError, match="drive deletion mode"):
        drive.Remover("shred")


def test_quota_limited_folder_fails_before_writing_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt_dir = tmp_path / "run" / "checkpoints"
    first = ckpt.publish(_local(tmp_path, 1), ckpt_dir)
    size = drive.tree_bytes(first)
    second = _local(tmp_path, 2)
    monkeypatch.setattr(drive.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - size // 2, size // 2))
    with pytest.raises(drive.InsufficientSpace) as e:
        ckpt.publish(second, ckpt_dir)
    msg = str(e.value)
    assert "checkpoint step-00000002" in msg and "needs" in msg and "free" in msg and "short by" in msg
    assert e.value.need == drive.tree_bytes(second) and e.value.free == size // 2
    # nothing was written, nothing was lost
    assert [p.name for p in ckpt_dir.iterdir()] == [ckpt.step_dir_name(1)]
    assert ckpt.verify(first) is None
    with pytest.raises(drive.InsufficientSpace, match="final model"):
        drive.require_free_space(tmp_path / "run" / "not-yet" / "model", size, "final model")


_SLOW_PUBLISH = """
import shutil, sys, time
from pathlib import Path
import torch
from helpers.train import checkpoints as ckpt
root = Path(sys.argv[1])
def save(step):
    return ckpt.write_local(root / "local" / ckpt.step_dir_name(step), {"w": torch.full((50_000,), float(step))},
                            {"m": torch.zeros(50_000), "step": step}, {"step": step})
ckpt.publish(save(1), root / "checkpoints")
real = shutil.copy2
def slow_copy(src, dst, **kw):  # Drive is slow: the copy of step 2 takes long enough to be killed in
    out = real(src, dst, **kw)
    print("copied", Path(src).name, flush=True)
    time.sleep(30)
    return out
real_tree = shutil.copytree
shutil.copytree = lambda src, dst, **kw: real_tree(src, dst, copy_function=slow_copy)
ckpt.publish(save(2), root / "checkpoints")
print("published", flush=True)
"""


def test_kill_during_the_copy_leaves_one_complete_checkpoint_and_one_partial(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    p = subprocess.Popen([sys.executable, "-c", _SLOW_PUBLISH, str(tmp_path)], cwd=REPO_ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.startswith("copied"), line + p.stdout.read()
    p.send_signal(signal.SIGKILL)
    p.wait()
    ckpt_dir = tmp_path / "checkpoints"
    entries = sorted(x.name for x in ckpt_dir.iterdir())
    complete = [s for s, path in ckpt.list_checkpoints(ckpt_dir) if ckpt.verify(path) is None]
    assert complete == [1] and len(entries) == 2 and ".partial-" in entries[0], entries
    assert ckpt.find_resume_path(ckpt_dir).name == ckpt.step_dir_name(1)
    # the next save clears the cut-off copy first, then replaces step 1 only after step 3 is verified
    third = ckpt.write_local(tmp_path / "l3" / ckpt.step_dir_name(3), {"w": torch.ones(10)}, {"step": 3}, {"step": 3})
    ckpt.publish(third, ckpt_dir)
    assert sorted(x.name for x in ckpt_dir.iterdir()) == [ckpt.step_dir_name(3)]


def test_sync_file_reports_and_returns_false_when_drive_fails(tmp_path, monkeypatch):
    src = tmp_path / "m.csv"
    src.write_text("step\n1\n")

    def broken(a, b):
        raise OSError(107, "Transport endpoint is not connected")

    monkeypatch.setattr(drive, "_copy", broken)
    logs = []
    assert drive.sync_file(src, tmp_path / "drive" / "m.csv", retries=1, wait_s=0, log=logs.append) is False
    assert "Transport endpoint" in logs[0] and not (tmp_path / "drive" / "m.csv").exists()
    monkeypatch.undo()
    assert drive.sync_file(src, tmp_path / "drive" / "m.csv", wait_s=0)
    assert (tmp_path / "drive" / "m.csv").read_text() == "step\n1\n"


def test_config_and_drive_agree_on_deletion_modes_and_deterministic_flag_is_an_option():
    from helpers.train import config, recipe as train

    assert config.DRIVE_DELETION == drive.DELETION_MODES
    cfg = config.stage_config(2, "colab")
    assert cfg.drive_deletion == "permanent" and cfg.keep_last == 1 and cfg.save_every_minutes == 40
    assert {"drive_deletion", "deterministic", "save_every_minutes"} <= config.RESUME_SAFE_FIELDS
    with pytest.raises(ValueError, match="drive_deletion"):
        config.stage_config(2, "tiny", drive_deletion="shred")
    was = torch.are_deterministic_algorithms_enabled()
    try:
        train.set_deterministic()
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"]
    finally:
        torch.use_deterministic_algorithms(was)


# ----------------------------------------------------------------------------- a VM that dies on Colab's mount
def _train_on_sim(sim, api, local_root, until, logs, timeout_s=3 * ckpt.CONFIRM_POLL_S):
    """A stand-in training run on the simulated mount: resume from what Drive holds, then one checkpoint
    per step (its weights are the step number) up to ``until``. Returns the step it resumed from."""
    ckpt_dir = sim.mount / "run" / "checkpoints"
    remover = drive.Remover("permanent", api=api, wait_s=0, log=logs.append)
    path = ckpt.find_resume_path(ckpt_dir, log=logs.append, api=api)
    start = 0
    if path is not None:
        model_state, tstate, info = ckpt.load(path)
        start = tstate["step"]
        assert torch.equal(model_state["w"], torch.full((3000,), float(start)))
    for step in range(start + 1, until + 1):
        sim.event("local save", str(step))
        local = ckpt.write_local(local_root / ckpt.step_dir_name(step), {"w": torch.full((3000,), float(step))},
                                 {"step": step}, {"step": step})
        sim.event("local saved", str(step))
        ckpt.publish(local, ckpt_dir, 1, remover=remover, api=api, confirm_timeout_s=timeout_s)
        held = ckpt.list_checkpoints(ckpt_dir)
        assert len(held) <= 2, held  # keep_last + one still uploading (never a third: the next save waits for it)
        shutil.rmtree(local)
    return start


def _complete_on_remote(sim) -> list[int]:
    """Steps Drive itself holds completely (read on the remote, with full hashes)."""
    return [s for s, p in ckpt.list_checkpoints(sim.remote / "run" / "checkpoints") if ckpt.verify(p) is None]


def test_a_vm_killed_at_every_step_of_the_checkpoint_cycle_resumes_from_drive(tmp_path, monkeypatch):
    """Kill the simulated VM at each event of three checkpoint cycles (local save, copy, each upload,
    each Drive API check, each deletion) and resume from the remote alone: once a checkpoint has
    reached Drive, every kill resumes from the newest checkpoint Drive holds whole, never step 0."""
    import helpers.colab.session as session

    real_copy, real_copytree = session.shutil.copy2, session.shutil.copytree

    def run(kill_at):
        root = tmp_path / f"k{kill_at}"
        sim = SimDrive(root / "drive", seed=kill_at)
        # odd: uploads keep pace with the saves; even: they lag (confirmations time out, three are held)
        sim.uploads_per_sleep = 1 + kill_at % 2
        monkeypatch.setattr(ckpt, "_sleep", sim.sleep)
        monkeypatch.setattr(ckpt, "_clock", sim.clock)

        def copy2(src, dst, **kw):  # the copy into the mount, file by file
            sim.event("copy", Path(src).name)
            return real_copy(src, dst, **kw)

        def copytree(src, dst, symlinks=False, ignore=None, copy_function=None, *rest, **kw):
            return real_copytree(src, dst, symlinks, ignore, copy2, *rest, **kw)

        monkeypatch.setattr(session.shutil, "copytree", copytree)
        n = [0]

        def on_event(kind, detail):
            n[0] += 1
            if n[0] == kill_at:
                raise VmDeath(f"{kind} {detail}")

        sim.on_event = on_event
        logs = []
        try:
            _train_on_sim(sim, sim.api(), root / "local", 3, logs)
        except VmDeath as death:
            on_drive = _complete_on_remote(sim)
            sim.on_event = None
            sim.kill()
            shutil.rmtree(root / "local", ignore_errors=True)  # the VM's local disk dies with it
            monkeypatch.setattr(ckpt, "_SEEN_ON_DRIVE", set())  # ... and its memory
            resumed = _train_on_sim(sim, sim.api(), root / "local", 3, logs)
            if on_drive:
                assert resumed == max(on_drive), (death, resumed, on_drive, logs[-3:])
            else:
                assert resumed == 0
            sim.sync()
            done = _complete_on_remote(sim)
            assert max(done) == 3 and len(done) <= 2, done  # finished; an unconfirmed save may keep one more
            return str(death), resumed
        return None, n[0]

    _, total = run(0)  # no kill: count the events of a whole run
    assert total > 30
    kinds, later, k = set(), 0, 0
    while True:  # kill at event 1, 2, ... until a run gets through all its events (counts vary by seed)
        k += 1
        death, resumed = run(k)
        if death is None:
            break
        kinds.add(death.split()[0])
        later += resumed > 0
    assert k > 30 and {"local", "copy", "stat", "uploaded", "delete"} <= kinds, kinds
    assert later > k // 2


def test_final_model_counts_only_once_drive_holds_it_and_a_stale_newer_step_is_cleared(tmp_path, monkeypatch):
    """confirm_final waits (status lines, simulated clock) for the model's files and marker on Drive;
    a cut-off upload times out as 'not confirmed' rather than blocking."""
    from helpers import models

    sim = SimDrive(tmp_path / "sim")
    monkeypatch.setattr(ckpt, "_sleep", sim.sleep)
    monkeypatch.setattr(ckpt, "_clock", sim.clock)
    target = sim.mount / "stage2" / "model"
    target.mkdir(parents=True)
    files = {}
    for name, data in (("model.safetensors", b"w" * 5000), ("tokenizer.json", b"{}")):
        (target / name).write_bytes(data)
        files[name] = models.file_hashes(target / name)
    (target / "COMPLETE.json").write_text('{"files": {}}')
    logs, api = [], sim.api()
    sim.uploads_per_sleep = 0  # the upload stalls: not confirmed, after the timeout, without a prompt
    assert not ckpt.confirm_final(target, files, "COMPLETE.json", api, timeout_s=60, log=logs.append)
    assert "waiting for Drive to hold model: 0/3 files" in logs[0] and "not on Drive yet after 60 s" in logs[-1]
    sim.uploads_per_sleep = 1  # it moves again: one file per poll
    assert ckpt.confirm_final(target, files, "COMPLETE.json", api, timeout_s=600, log=logs.append)
    assert sim.pending() == []
    (sim.remote / "stage2" / "model" / "tokenizer.json").write_bytes(b"[]")  # Drive holds other bytes
    assert not ckpt.confirm_final(target, files, "COMPLETE.json", api, timeout_s=0, log=logs.append)
    assert any("differs on Drive" in m or "waiting" in m for m in logs[-2:])
    assert ckpt.confirm_final(target, files, "COMPLETE.json", None)  # a plain disk: nothing to wait for

    # a dead VM left step 5 half-uploaded; the run resumed from step 3: the next save clears step 5
    ckpt_dir = tmp_path / "ck"
    ckpt.publish(_local(tmp_path, 3), ckpt_dir)
    (ckpt_dir / ckpt.step_dir_name(5)).mkdir()
    (ckpt_dir / ckpt.step_dir_name(5) / "model.pt").write_bytes(b"x")
    ckpt.publish(_local(tmp_path, 4), ckpt_dir, log=logs.append)
    assert [s for s, _ in ckpt.list_checkpoints(ckpt_dir)] == [4] and "step-00000005" in logs[-1] and "cut off" in logs[-1]


def test_rate_limits_and_stat_lag_of_the_api_are_ridden_out_and_a_dead_api_is_not(tmp_path, monkeypatch):
    """Drive API 403/429 answers and a lag between upload and stat: the confirmation asks again at the
    next poll and succeeds; an API that keeps failing gives up (not confirmed) without blocking."""
    sim = SimDrive(tmp_path / "sim")
    monkeypatch.setattr(ckpt, "_sleep", sim.sleep)
    monkeypatch.setattr(ckpt, "_clock", sim.clock)
    monkeypatch.setattr(ckpt, "_SEEN_ON_DRIVE", set())

    class RateLimited(Exception):  # what googleapiclient raises for 403 userRateLimitExceeded / 429
        pass

    api, logs = sim.api(), []
    api.lag_s = 45.0  # Drive holds the files 45 s before files.get reports them
    api.errors = [RateLimited("HTTP 429 Too Many Requests"), RateLimited("HTTP 403 userRateLimitExceeded")]
    remover = drive.Remover("permanent", api=api, wait_s=0, log=logs.append)
    dest = ckpt.publish(_local(tmp_path, 1), sim.mount / "ck", remover=remover, api=api, confirm_timeout_s=300,
                        log=logs.append)
    assert ckpt.is_confirmed(dest, api) and api.errors == [] and sim.now >= 45
    assert sum("the Drive API failed" in m for m in logs) == 2
    api.fail = RateLimited("HTTP 503")  # an API that keeps failing
    dest = ckpt.publish(_local(tmp_path, 2), sim.mount / "ck", remover=remover, api=api, confirm_timeout_s=300,
                        log=logs.append)
    assert not ckpt.is_confirmed(dest, api) and "could not ask Drive" in logs[-1]
    assert (sim.mount / "ck" / ckpt.step_dir_name(1)).is_dir()  # the confirmed one stays


def test_a_publisher_thread_that_dies_of_an_unhandled_error_raises_it_in_the_training_thread(tmp_path):
    """A bug in a publication (here: the confirmation check) must not die with the background thread, leaving
    training to run on for hours with nothing published: the next submit() (or wait()) raises it."""
    from helpers.train.background import BackgroundPublisher

    published = []

    def confirmed(p):
        if p.name == "b":
            raise ZeroDivisionError("a bug in the confirmation")
        return True

    pub = BackgroundPublisher(lambda p: published.append(p.name) or p, log=lambda m: None, confirmed=confirmed)
    pub.submit(tmp_path / "a")
    assert pub.wait() == tmp_path / "a"
    pub.submit(tmp_path / "b")
    pub._thread.join()
    assert not pub.busy  # the worker is gone, and says so
    with pytest.raises(ZeroDivisionError, match="a bug in the confirmation"):
        pub.submit(tmp_path / "c")  # raised here, in the training thread; "c" was not taken
    pub.submit(tmp_path / "d")  # raised once: publishing goes on in a new thread
    pub.wait()
    assert published == ["a", "b", "d"]
    pub.submit(tmp_path / "b")
    with pytest.raises(ZeroDivisionError):
        pub.wait()  # wait() raises it as well
