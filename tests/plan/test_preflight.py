"""Preflight: one row per check with a reason, never a traceback; tiny passes offline."""
import os
import subprocess
import sys

import pytest

from helpers.plan import preflight as pf
from helpers.data.catalog import PHASES, get_spec
from helpers.profiles import REPO_ROOT


def _cli(*args, **env):
    e = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    e.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", "helpers.plan.preflight", *args], cwd=REPO_ROOT, env=e,
                          capture_output=True, text=True, timeout=300)


def test_colab_offline_without_token_fails_every_check_with_a_reason():
    r = _cli("--profile", "colab")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    rows = [l for l in r.stdout.splitlines() if "FAILED" in l]
    datasets = sorted({e.dataset for p in PHASES.values() for e in p.entries})
    expected = ["HF token", "base model meta-llama/Llama-3.2-3B"] + \
               [f"dataset {d} ({get_spec(d).hub_id}" for d in datasets]
    # The Drive row reads this machine's mount and free disk (FAILED off Colab without /content/drive/MyDrive,
    # else by free space): it must say what the check itself says here; both outcomes are pinned below.
    drive_now = pf.check_drive(pf.as_profile("colab"))
    drive_rows = [l for l in r.stdout.splitlines() if l.startswith("Drive ")]
    assert len(drive_rows) == 1 and drive_rows[0].split()[1] == drive_now.status, (drive_now, drive_rows)
    assert drive_now.found.split("; ")[-1] in drive_rows[0], (drive_now, drive_rows)  # free GB may move meanwhile
    gpu = [l for l in r.stdout.splitlines() if l.startswith("GPU ")]
    assert len(gpu) == 1 and ("FAILED" in gpu[0] or "A100" in gpu[0] or "H100" in gpu[0]), gpu  # CPU here: failed
    for label in expected:
        hit = [l for l in rows if l.startswith(label)]
        assert len(hit) == 1, (label, r.stdout)
        reason = hit[0].split("FAILED", 1)[1].strip()
        assert len(reason) > 20, hit[0]  # a reason and what to do, not an empty cell
    assert "checks passed; " in r.stdout and "failed" in r.stdout


def test_drive_check_fails_below_the_modelled_peak_and_passes_above_it_whatever_this_machine_has(
        tmp_path, monkeypatch):
    import collections

    prof = pf.as_profile("colab")
    need_gb = pf.modelled_drive_gb(prof)
    usage = collections.namedtuple("usage", "total used free")
    for free_gb, status in ((need_gb - 1, pf.FAILED), (need_gb + 1, pf.OK)):
        monkeypatch.setattr(pf.shutil, "disk_usage", lambda p, f=free_gb: usage(10**13, 0, int(f * pf.GB)))
        c = pf.check_drive(prof, runs_root=str(tmp_path / "runs"))
        assert c.status == status and f"the run needs ~{need_gb:g} GB" in c.found and str(tmp_path) in c.found, c
        assert (c.status == pf.OK) or "free 1 GB more" in c.todo, c


def test_tiny_passes_offline():
    r = _cli("--profile", "tiny")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAILED" not in r.stdout and "dataset assets" in r.stdout


def test_unknown_profile_is_one_line():
    r = _cli("--profile", "nope")
    assert r.returncode == 2 and "unknown profile 'nope'" in r.stderr and "Traceback" not in r.stderr


class GatedRepoError(Exception):
    """Named like huggingface_hub.errors.GatedRepoError (the checks read the class name)."""


class FakeApi:
    def __init__(self, gated=(), role="write"):
        self.gated, self.role = set(gated), role

    def auth_check(self, repo_id, repo_type=None, token=None):
        if repo_id in self.gated:
            raise GatedRepoError(f"Access to {repo_id} is restricted. You must have access to it.")

    def whoami(self, token=None):
        return {"name": "ada", "orgs": [], "auth": {"accessToken": {"role": self.role}}}


def _row(spec, **over):
    row = {c: "x" for c in pf.expected_columns(spec)}
    row[spec.audio_column] = {"bytes": b"RIFF", "path": "a.wav"}
    row.update(over)
    return row


def test_dataset_check_streams_one_row_and_compares_columns():
    spec = get_spec("gigaspeech")
    opened = []

    def opener(s, role, streaming, token):
        opened.append((s.name, role))
        return iter([_row(s, text="HELLO <PERIOD>", speaker="S1", audio_id="A", segment_id="1")])

    ok = pf.check_dataset("gigaspeech", ["train"], "hf_x", api=FakeApi(), opener=opener)
    assert ok.status == pf.OK and "one row streamed" in ok.found and opened == [("gigaspeech", "train")]

    def missing(s, role, streaming, token):
        r = _row(s, text="HELLO <PERIOD>", speaker="S1", audio_id="A")
        del r["segment_id"]
        return iter([r])

    bad = pf.check_dataset("gigaspeech", ["train"], "hf_x", api=FakeApi(), opener=missing)
    assert bad.status == pf.FAILED and "segment_id" in bad.found and "helpers/data/catalog.py" in bad.todo

    def no_split(s, role, streaming, token):
        raise ValueError("Bad split: train. Available splits: ['dev']")

    bad = pf.check_dataset("gigaspeech", ["train"], "hf_x", api=FakeApi(), opener=no_split)
    assert bad.status == pf.FAILED and "Bad split" in bad.found

    gated = pf.check_dataset("gigaspeech", ["train"], None, api=FakeApi(gated={spec.hub_id}), opener=opener)
    assert gated.status == pf.FAILED and "accept the terms" in gated.todo


def test_run_raises_with_the_table_and_token_scope_rows(tmp_path):
    with pytest.raises(pf.PreflightError) as e:
        pf.run("colab", token="hf_secret", api=FakeApi(gated={"meta-llama/Llama-3.2-3B"}, role="read"), publish=True,
               phases=(3,), runs_root=str(tmp_path), opener=lambda s, r, streaming, token: iter([]))
    text = str(e.value)
    assert "base model meta-llama/Llama-3.2-3B" in text and "accept the terms" in text
    assert "scope read" in text and "hf_secret" not in text
    rows = pf.checks("colab", token="hf_x", api=FakeApi(role="read"), phases=(3,), runs_root=str(tmp_path),
                     opener=lambda s, r, streaming, token: iter([]))
    token_row = rows[0]
    assert token_row.status == pf.WARNING and "not for 08" in token_row.found  # read is enough before 08


def test_modelled_drive_need_grows_with_the_profile():
    assert 0 < pf.modelled_drive_gb("pilot") < pf.modelled_drive_gb("colab") <= 100
