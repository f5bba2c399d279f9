"""A fake Colab: every prompt (Drive mount, Drive API consent) happens in session.start, none once a
stage trains, and a Drive API that dies mid-stage makes deletions fall back to the Trash at once."""
import sys
import types
from pathlib import Path

import pytest
import torch
from assets_utterances import random_code_utterances

from drive_sim import SimDrive
from helpers.colab import drive, session
from helpers.train import checkpoints as ckpt

torch.set_num_threads(1)


class _HttpError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status_code = status


class _Request:
    def __init__(self, fn):
        self.fn = fn

    def execute(self):
        return self.fn()


class _Files:
    """``service.files()`` of the Drive v3 client, answering from the simulator's remote by file id."""

    def __init__(self, fake):
        self.fake = fake

    def _check(self):
        if self.fake.broken:
            raise ConnectionError("Drive API: 503 backend error")

    def get(self, fileId, fields):
        assert fields == "size,md5Checksum,trashed"

        def run():
            self._check()
            st = self.fake.sim.api().stat(self.fake.sim.mount / fileId)
            if st is None:
                raise _HttpError(404)
            return {"size": str(st[0]), "md5Checksum": st[1], "trashed": False}
        return _Request(run)

    def delete(self, fileId):
        def run():
            self._check()
            self.fake.sim.api().delete(self.fake.sim.mount / fileId)
        return _Request(run)


class FakeColab:
    """google.colab (auth, drive) and googleapiclient as Colab has them, recording every prompt."""

    def __init__(self, sim: SimDrive):
        self.sim, self.prompts, self.training, self.broken = sim, [], False, False

    def _prompt(self, what):
        self.prompts.append((what, self.training))

    def install(self, monkeypatch):
        colab = types.ModuleType("google.colab")
        auth = types.ModuleType("google.colab.auth")
        auth.authenticate_user = lambda: self._prompt("authenticate_user")
        gdrive = types.ModuleType("google.colab.drive")

        def mount(path, force_remount=False):
            self._prompt("drive.mount")
            (Path(path) / "MyDrive").mkdir(parents=True, exist_ok=True)
        gdrive.mount = mount
        userdata = types.ModuleType("google.colab.userdata")
        userdata.SecretNotFoundError = type("SecretNotFoundError", (Exception,), {})
        userdata.NotebookAccessError = type("NotebookAccessError", (Exception,), {})

        def get(name):
            self._prompt("userdata.get")  # the secret-access dialog
            return "hf_fake_token"
        userdata.get = get
        colab.auth, colab.drive, colab.userdata = auth, gdrive, userdata
        api = types.ModuleType("googleapiclient")
        disc = types.ModuleType("googleapiclient.discovery")
        disc.build = lambda name, version, cache_discovery=False: types.SimpleNamespace(files=lambda: _Files(self))
        errs = types.ModuleType("googleapiclient.errors")
        errs.HttpError = _HttpError
        google = sys.modules.get("google") or types.ModuleType("google")
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setattr(google, "colab", colab, raising=False)
        for name, mod in {"google.colab": colab, "google.colab.auth": auth, "google.colab.drive": gdrive,
                          "google.colab.userdata": userdata,
                          "googleapiclient": api, "googleapiclient.discovery": disc,
                          "googleapiclient.errors": errs}.items():
            monkeypatch.setitem(sys.modules, name, mod)
        mount_root = self.sim.mount.resolve()

        def file_id(path):  # DriveFS's user.drive.id: here the path under the mount
            try:
                return Path(path).resolve().relative_to(mount_root).as_posix()
            except ValueError:
                return None
        monkeypatch.setattr(drive, "drive_file_id", file_id)
        monkeypatch.setattr(session, "DRIVE_MOUNT", str(self.sim.mount))
        monkeypatch.setattr(drive, "_API", None)
        return self


def _utts(n=8):
    return random_code_utterances(n)


def test_prompts_happen_in_start_only_and_a_dead_drive_api_falls_back_without_blocking(tmp_path, monkeypatch):
    # imported before the fake google.colab exists: libraries that sniff for Colab at import see none
    from helpers import models
    from helpers.data.shards import write_shard
    from helpers.profiles import TINY_LLAMA
    from helpers.train.config import stage_config
    from helpers.train.recipe import StageRecipe
    from helpers.train.sequences import choose_builtin_voices
    import accelerate  # noqa: F401  (transformers imports it lazily and checks for google.colab then)

    sim = SimDrive(tmp_path / "sim")
    sim.uploads_per_sleep = 1000  # uploads keep pace: confirmations succeed while the API works
    fake = FakeColab(sim).install(monkeypatch)
    monkeypatch.setattr(ckpt, "_sleep", sim.sleep)
    monkeypatch.setattr(ckpt, "_clock", sim.clock)
    monkeypatch.setattr(ckpt, "_SEEN_ON_DRIVE", set())

    s = session.start("tiny", run_name="r", runs_root=str(sim.mount / "MyDrive" / "runs"))
    assert [p for p, _ in fake.prompts] == ["drive.mount", "authenticate_user"]
    assert isinstance(drive.current_api(), drive.ColabDriveApi)
    from helpers.plan import preflight
    row = preflight.check_drive_api(s.profile, str(sim.mount / "MyDrive" / "runs"))
    assert row.status == preflight.OK and "no prompt after this cell" in row.found
    session.start("tiny", run_name="r", runs_root=str(sim.mount / "MyDrive" / "runs"))  # a rerun: no new prompt
    assert len(fake.prompts) == 2

    paths = s.paths
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    models.save_stage(model, tok, paths.stage(1))
    utts = _utts()
    write_shard(paths.tokens / "shard-00000.parquet", utts)
    cfg = stage_config(2, "tiny", max_steps=6, save_every=2, eval_every=0, max_seq_len=256, progress=False,
                       local_dir=str(tmp_path / "local"), eval_fraction=0.0, drive_deletion="permanent")
    model, tok = models.load_stage(paths.stage(1))
    logs = []
    fake.training = True  # from here on nobody is watching
    real_publish = ckpt.publish
    saves = []

    def publish(*a, **k):
        out = real_publish(*a, **k)
        saves.append(out.name)
        if len(saves) == 1:
            fake.broken = True  # the Drive API stops answering in the middle of the stage
        return out

    monkeypatch.setattr(ckpt, "publish", publish)
    r = StageRecipe(cfg, model, tok, utts, paths.stage(2), choose_builtin_voices(utts), log=logs.append).setup()
    r.train()
    # the API is dead: the final model cannot be confirmed on Drive, so it gets no COMPLETE.json and the
    # run stops with one message (the rerun repairs it: tests/train/test_drive_faults.py)
    with pytest.raises(drive.StorageFault, match=r"\[drive_api\].*503") as e:
        r.save_final()
    assert "NO COMPLETE.json" in str(e.value) and not (paths.stage(2) / "model" / "COMPLETE.json").exists()
    assert [w for w, during in fake.prompts if during] == []  # no prompt once training started
    # step 4 may be superseded by step 6 while step 2's upload is still in flight (the queue keeps the newest)
    assert r.step == 6 and saves[0] == ckpt.step_dir_name(2) and saves[-1] == ckpt.step_dir_name(6), saves
    warn = [m for m in logs if m.startswith("WARNING")]
    # nothing confirmed is deleted while the API is dead (a deletion that falls back to the Trash names
    # the plan's figure: tests/train/test_checkpoints.py checks the fallback itself)
    assert all("by the end of stage 2" in m for m in warn if "Drive API failed" in m and "Trash" in m), warn
    assert any("could not ask Drive" in m for m in warn), warn
    # the checkpoints stay (safe), and
    # the one step 2 confirmed before the API died was never deleted for an unconfirmed newer one
    held = [s for s, _ in ckpt.list_checkpoints(paths.stage(2) / "checkpoints")]
    assert 2 in held and 6 in held and len(held) <= 3, held
    assert sim.now < 10 * ckpt.CONFIRM_TIMEOUT_S  # nothing waited out long timeouts on a dead API


def test_start_on_colab_asks_for_everything_once_in_the_first_cell(tmp_path, monkeypatch):
    import os

    sim = SimDrive(tmp_path / "sim")
    fake = FakeColab(sim).install(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    session.start("pilot", runs_root=str(sim.mount / "MyDrive" / "runs"))
    assert [p for p, _ in fake.prompts] == ["drive.mount", "authenticate_user", "userdata.get"]
    assert os.environ["HF_TOKEN"] == "hf_fake_token"  # later Hub calls read it: no second dialog
    session.start("pilot", runs_root=str(sim.mount / "MyDrive" / "runs"))
    assert len(fake.prompts) == 3


def test_case7_a_mount_without_drive_ids_is_caught_at_start_and_never_reads_as_absent(tmp_path, monkeypatch, capsys):
    """Issue #30 case 7: without the user.drive.id attribute every checkpoint looked absent from Drive
    (resume from 0, good checkpoints deleted). Now session.start probes it on a file it wrote."""
    import errno

    real_file_id = drive.drive_file_id
    sim = SimDrive(tmp_path / "sim")
    fake = FakeColab(sim).install(monkeypatch)
    monkeypatch.setattr(drive, "XATTR_WAIT_S", 0.0)
    api = drive.ColabDriveApi(types.SimpleNamespace(files=lambda: _Files(fake)))
    assert api.xattr_problem(sim.mount) is None  # ids exposed (the fake's): the API is used
    monkeypatch.setattr(drive, "drive_file_id", lambda p: None)  # a DriveFS that exposes none
    session.start("tiny", run_name="r", runs_root=str(sim.mount / "MyDrive" / "runs"))
    assert drive.current_api() is None
    err = capsys.readouterr().err
    assert "user.drive.id" in err and "NOT used" in err and "force_remount=True" in err, err
    f = sim.mount / "MyDrive" / "x.bin"
    f.write_bytes(b"1")
    with pytest.raises(drive.DriveIdMissing):  # on the mount but no id: "cannot ask", never "absent"
        api.stat(f)
    assert api.stat(sim.mount / "MyDrive" / "absent.bin") is None
    # a dead mount's getxattr error is raised, not read as "no id"
    def dead(path, name):
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", path)
    monkeypatch.setattr(drive.os, "getxattr", dead, raising=False)
    with pytest.raises(OSError, match="Transport endpoint"):
        real_file_id(f)

    # resume: a checkpoint the API cannot look up is checked on the mount, not skipped as absent
    local = ckpt.write_local(tmp_path / "l" / ckpt.step_dir_name(3), {"w": torch.ones(3)}, {"step": 3}, {"step": 3})
    ckpt.publish(local, sim.mount / "ck")
    logs = []
    found = ckpt.find_resume_path(sim.mount / "ck", log=logs.append, api=api)
    assert found is not None and found.name == ckpt.step_dir_name(3) and "cannot say" in logs[0], logs


def test_a_bare_mount_error_leaving_a_stage_step_is_named_with_path_errno_and_remedy(tmp_path):
    import errno
    import os

    def raising(e):
        @drive.names_storage_faults("listing the checkpoints")
        def f():
            raise e
        return f

    where = "/content/drive/MyDrive/run/stage2/checkpoints"
    with pytest.raises(drive.StorageFault) as got:
        raising(OSError(errno.EIO, os.strerror(errno.EIO), where))()
    msg = str(got.value)
    assert got.value.kind == "io_error" and where in msg and "errno 5 EIO" in msg and "force_remount=True" in msg, msg
    with pytest.raises(drive.StorageFault) as got:
        raising(drive.InsufficientSpace("stage 2's final model", tmp_path, 10, 1, on_drive=True))()
    assert got.value.kind == "quota" and "empty Drive's Trash" in str(got.value)
    # the VM's own disk, and errors that are no storage faults, pass unchanged
    with pytest.raises(drive.InsufficientSpace):
        raising(drive.InsufficientSpace("a checkpoint", tmp_path, 10, 1))()
    with pytest.raises(FileNotFoundError):
        raising(FileNotFoundError(errno.ENOENT, "missing", where))()
