"""The training recipe: configs, checkpoints, exact resume after a real kill, cut-off copies."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import checkpoints as ckpt
from helpers.config import SEED_STAGES, StageConfig, stage_config
from helpers.profiles import REPO_ROOT, get_profile
from helpers.shards import Utterance, write_shard
from helpers.train import METRICS_FILE, ResumeError, StageRecipe, cosine_lambda

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- config
def test_stage_configs_follow_the_seed():
    for stage, (lr, phase) in SEED_STAGES.items():
        cfg = stage_config(stage, "colab")
        assert (cfg.learning_rate, cfg.phase, cfg.max_seq_len) == (lr, phase, get_profile("colab").max_seq_len)
    assert (SEED_STAGES[2], SEED_STAGES[3], SEED_STAGES[4]) == ((5e-5, 1), (1e-5, 2), (5e-6, 3))
    assert stage_config(3, "tiny", learning_rate=None).learning_rate == 1e-5  # None = keep default
    with pytest.raises(ValueError, match="StageConfig.learning_rate"):
        stage_config(2, "tiny", learning_rate=5.0)
    with pytest.raises(ValueError, match="unknown StageConfig fields"):
        stage_config(2, "tiny", lr=1e-3)
    cfg = stage_config(2, "tiny")
    assert StageConfig.from_dict(json.loads(cfg.to_json())) == cfg
    changed = stage_config(2, "tiny", learning_rate=1e-4, save_every=99)
    assert changed.resume_conflicts(cfg.to_dict()) == ["learning_rate: 5e-05 -> 0.0001"]


def test_cosine_schedule():
    f = cosine_lambda(100, 10, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


# ----------------------------------------------------------------------------- fixtures
def _utts(n=8, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(6, 14))
        out.append(Utterance(f"ds:{i}", "ds", f"ds:spk{i % 3}", ["us", "uk", "us"][i % 3], "female", "",
                             f"sentence number {i}", t / 12,
                             [rng.integers(0, 4096, t), rng.integers(0, 4096, 2 * t), rng.integers(0, 4096, 4 * t)]))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An extended tiny model saved like stage 1, and a shard of random-code utterances."""
    from helpers import models
    from helpers.profiles import TINY_LLAMA

    root = tmp_path_factory.mktemp("train")
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    models.save_stage(model, tok, root / "stage1")
    write_shard(root / "tokens" / "shard-00000.parquet", _utts())
    return root


def _cfg(**kw):
    base = dict(max_seq_len=256, max_steps=14, warmup_steps=2, learning_rate=2e-3, log_every=1, save_every=3,
                eval_every=0, keep_last=2, progress=False, reference_prob=0.5, eval_fraction=0.0)
    base.update(kw)
    return stage_config(2, "tiny", **base)


def _run(world, cfg, stage_dir, wait=True):
    cfgf = stage_dir.parent / f"{stage_dir.name}.json"
    cfgf.write_text(cfg.to_json())
    cmd = [sys.executable, "-m", "helpers.train", "--config", str(cfgf), "--stage-dir", str(stage_dir),
           "--init", str(world / "stage1"), "--tokens", str(world / "tokens")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    p = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
        return out
    return p


def _trajectory(stage_dir):
    rows = [l.split(",") for l in (stage_dir / METRICS_FILE).read_text().splitlines()[1:]]
    return [(r[0], r[2], r[3], r[4]) for r in rows]  # step, loss, lr, grad_norm (exact reprs)


def _weights(stage_dir):
    from safetensors.torch import load_file

    return load_file(str(stage_dir / "model" / "model.safetensors"))


# ----------------------------------------------------------------------------- exact resume
def test_killed_run_resumes_bitwise(world, tmp_path):
    cfg = _cfg(local_dir=str(tmp_path / "local"))
    _run(world, cfg, tmp_path / "straight")
    straight = _trajectory(tmp_path / "straight")
    assert len(straight) == 14 and float(straight[-1][1]) < float(straight[0][1])

    # Kill with SIGKILL right after a randomly chosen checkpoint has been published.
    kill_after = random.Random().choice([3, 6, 9])
    stage = tmp_path / "killed"
    p = _run(world, _cfg(local_dir=str(tmp_path / "local2")), stage, wait=False)
    target = stage / "checkpoints" / ckpt.step_dir_name(kill_after)
    deadline = time.time() + 240
    while not (target / ckpt.MANIFEST).is_file():
        assert p.poll() is None, f"training ended before step {kill_after}: {p.stdout.read()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (stage / "model").exists()  # it really died before finishing
    done_before = len(_trajectory(stage))
    assert done_before >= kill_after

    out = _run(world, _cfg(local_dir=str(tmp_path / "local2")), stage)
    assert _trajectory(stage) == straight, f"killed after step {kill_after}\n{out}"
    a, b = _weights(tmp_path / "straight"), _weights(stage)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [s for s, _ in ckpt.list_checkpoints(stage / "checkpoints")] == [12, 14]  # keep_last=2



# ----------------------------------------------------------------------------- cut-off copies, config changes
def _recipe(world, stage_dir, **kw):
    from helpers import models
    from helpers.sequences import choose_builtin_voices

    model, tok = models.load_stage(world / "stage1")
    utts = _utts()
    return StageRecipe(_cfg(**kw), model, tok, utts, stage_dir, choose_builtin_voices(utts), log=lambda m: None)


def test_cut_off_checkpoint_falls_back_and_config_changes_refuse(world, tmp_path):
    stage = tmp_path / "stage2"
    r = _recipe(world, stage, max_steps=6, local_dir=str(tmp_path / "l")).setup()
    r.train()
    steps = [s for s, _ in ckpt.list_checkpoints(stage / "checkpoints")]
    assert steps == [3, 6]
    newest = stage / "checkpoints" / ckpt.step_dir_name(6)
    # a copy cut off mid-file: truncated model.pt
    with open(newest / ckpt.MODEL_FILE, "r+b") as f:
        f.truncate(100)
    logs = []
    assert ckpt.find_resume_path(stage / "checkpoints", log=logs.append).name == ckpt.step_dir_name(3)
    assert "truncated" in logs[0]
    r2 = _recipe(world, stage, max_steps=6, local_dir=str(tmp_path / "l")).setup()
    assert r2.resumed_from.endswith(ckpt.step_dir_name(3)) and r2.step == 3
    # a copy whose manifest never arrived
    (newest / ckpt.MODEL_FILE).unlink()
    (newest / ckpt.MANIFEST).unlink()
    assert ckpt.find_resume_path(stage / "checkpoints", log=logs.append).name == ckpt.step_dir_name(3)
    assert "no manifest.json" in logs[-1]
    # flipped bytes are caught by the hash
    older = stage / "checkpoints" / ckpt.step_dir_name(3)
    raw = bytearray((older / ckpt.TRAINER_FILE).read_bytes())
    raw[-5] ^= 0xFF
    (older / ckpt.TRAINER_FILE).write_bytes(bytes(raw))
    assert ckpt.find_resume_path(stage / "checkpoints", log=logs.append) is None
    assert "SHA-256" in logs[-1]


def test_resume_refuses_changed_config_or_data(world, tmp_path):
    stage = tmp_path / "stage2"
    r = _recipe(world, stage, max_steps=3, local_dir=str(tmp_path / "l")).setup()
    r.train()
    r.save_final()
    again = _recipe(world, stage, max_steps=3, local_dir=str(tmp_path / "l")).setup()
    assert again.skipped and again.train().skipped  # rerunning a finished stage is a no-op
    import shutil
    shutil.rmtree(stage / "model")
    with pytest.raises(ResumeError, match=r"learning_rate: 0.002 -> 0.001"):
        _recipe(world, stage, max_steps=3, learning_rate=1e-3).setup()
    with pytest.raises(ResumeError, match="max_steps"):
        _recipe(world, stage, max_steps=5).setup()
    # a safe change (how often to log) resumes
    assert _recipe(world, stage, max_steps=3, log_every=2, local_dir=str(tmp_path / "l")).setup().step == 3
    # changed data: one utterance's text differs
    from helpers import models
    from helpers.sequences import choose_builtin_voices

    model, tok = models.load_stage(world / "stage1")
    utts = _utts()
    utts[0].text = "a different sentence"
    with pytest.raises(ResumeError, match="training data changed"):
        StageRecipe(_cfg(max_steps=3), model, tok, utts, stage, choose_builtin_voices(utts)).setup()
