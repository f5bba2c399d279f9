"""Checkpoint retention on Drive: the policy, free-space checks, a kill during the copy, Trash accounting."""
import os
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

torch.set_num_threads(1)
Usage = namedtuple("Usage", "total used free")


def _local(tmp, step, n=20_000):
    """A real checkpoint folder (model + trainer state) of about ``8 * n`` bytes."""
    g = torch.Generator().manual_seed(step)
    return ckpt.write_local(tmp / "local" / ckpt.step_dir_name(step), {"w": torch.randn(n, generator=g)},
                            {"m": torch.randn(n, generator=g), "step": step}, {"step": step})


def test_publish_actions_write_first_then_delete():
    assert ckpt.publish_actions([], 1) == [("write", 1)]
    assert ckpt.publish_actions([1], 2) == [("write", 2), ("delete", 1)]
    assert ckpt.publish_actions([1, 2], 3, keep_last=2) == [("write", 3), ("delete", 1)]
    assert ckpt.publish_actions([2], 4, other_steps=[3, 5]) == [("write", 4), ("delete", 2), ("delete", 3)]
    assert ckpt.finish_actions([3, 1]) == [("delete", 1), ("delete", 3)]
    with pytest.raises(ValueError, match="keep_last"):
        ckpt.publish_actions([], 1, keep_last=0)


def _measured_run(tmp_path, n_saves, remover):
    """Publish ``n_saves`` checkpoints, write a 'final model', finish; return the largest run-dir size seen."""
    run = tmp_path / "run"
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
    """The plan's Drive figures (simulate_stage) equal what the real publish/finish leave and delete."""
    # pretend the run directory is on the Drive mount: every path has a Drive id
    monkeypatch.setattr(drive, "drive_file_id", lambda p: f"id:{Path(p).name}")
    deleted_by_api = []

    def api_delete(file_id):
        deleted_by_api.append(file_id)
        path = next(p for p in (tmp_path / "run" / "checkpoints").iterdir() if f"id:{p.name}" == file_id)
        drive._rmtree(path)

    remover = drive.Remover(mode, api_delete=api_delete, wait_s=0)
    peak, size, run = _measured_run(tmp_path, 4, remover)
    sim = ckpt.simulate_stage(size, 4, 50_000, keep_last=1, deletion=mode)
    assert not (run / "checkpoints").exists()  # finished stage: final model only
    assert sim["end_live"] == drive.tree_bytes(run) == 50_000
    assert sim["peak_live"] == peak == 2 * size  # one complete + the one being written
    assert sim["max_checkpoints"] == 2
    assert sim["trash"] == remover.trashed_bytes == (4 * size if mode == "trash" else 0)
    assert len(deleted_by_api) == (4 if mode == "permanent" else 0)


def test_permanent_deletion_falls_back_to_trash_loudly_when_the_api_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(drive, "drive_file_id", lambda p: "some-id")
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "f").write_bytes(b"abc")
    logs = []

    def refuse(_):
        raise PermissionError("insufficient permissions")

    r = drive.Remover("permanent", api_delete=refuse, log=logs.append, wait_s=0)
    assert r.remove(folder) == 3 and not folder.exists() and r.trashed_bytes == 3
    assert "failed" in logs[0] and "Trash" in logs[0]
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
