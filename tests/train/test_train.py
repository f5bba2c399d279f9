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
from assets_utterances import random_code_utterances
from optional_torchao import have_torchao

from helpers.train import checkpoints as ckpt
from helpers.train.config import SEED_STAGES, StageConfig, stage_config
from helpers.profiles import REPO_ROOT, get_profile
from helpers.train.recipe import METRICS_FILE, ResumeError, StageRecipe, cosine_lambda

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
    # spk2 ("other" accent) is no built-in voice: its examples carry cloning references
    return random_code_utterances(n, seed, accents=("us", "uk", "other"))


def _cfg(**kw):
    base = dict(max_seq_len=256, max_steps=14, warmup_steps=2, learning_rate=2e-3, log_every=1, save_every=3,
                eval_every=0, keep_last=1, progress=False, reference_prob=0.5, eval_fraction=0.0,
                save_every_minutes=None,
                reference_min_frames=4, reference_max_frames=16)  # ~1 s clips: references of 0.3-1.4 s fit
    base.update(kw)
    return stage_config(2, "tiny", **base)


def _run(world, cfg, stage_dir, wait=True):
    cfgf = stage_dir.parent / f"{stage_dir.name}.json"
    cfgf.write_text(cfg.to_json())
    cmd = [sys.executable, "-m", "helpers.train.recipe", "--config", str(cfgf), "--stage-dir", str(stage_dir),
           "--init", str(world / "stage1"), "--tokens", str(world / "tokens")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    p = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = p.communicate(timeout=900)  # DeepSpeed builds a CPU op on first use: slow on a loaded machine
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
    # retention policy: the finished stage leaves its final model and no checkpoints
    assert not (stage / "checkpoints").exists() and not (tmp_path / "straight" / "checkpoints").exists()



# ----------------------------------------------------------------------------- saves off the training path
def test_training_advances_while_a_checkpoint_is_copied(world, tmp_path, monkeypatch):
    """Only the local write blocks: hashing and the copy into the run directory run while training goes on."""
    real = ckpt.publish
    spans = []  # (step of the checkpoint being copied, step training had reached when the copy ended)
    rec = _recipe(world, tmp_path / "stage", local_dir=str(tmp_path / "local"))

    def slow_publish(local, *a, **k):
        start = int(Path(local).name.split("-")[-1])  # the step the checkpoint holds
        deadline = time.time() + 20
        while rec.step < start + 2 and time.time() < deadline and rec.step < rec.total_steps:
            time.sleep(0.005)  # a slow Drive copy: the loop keeps stepping meanwhile
        spans.append((start, rec.step))
        return real(local, *a, **k)

    monkeypatch.setattr(ckpt, "publish", slow_publish)
    rec.setup()
    rec.train()
    assert [a for a, _ in spans] == [3, 6, 9, 12, 14] and all(b >= a for a, b in spans), spans
    assert any(b >= a + 2 for a, b in spans), f"no step ran while a checkpoint was being copied: {spans}"
    assert rec.publisher.failures == [] and len(rec.publisher.published) == len(spans)
    assert ckpt.find_resume_path(rec.ckpt_dir, log=lambda m: None).name == ckpt.step_dir_name(14)


def test_a_failed_background_copy_is_retried_and_reported(world, tmp_path, monkeypatch):
    real, calls, logs = ckpt.publish, [], []

    def flaky(local, *a, **k):
        calls.append(local.name)
        if len(calls) == 1:
            raise OSError("Transport endpoint is not connected")  # a dropped Drive mount
        return real(local, *a, **k)

    monkeypatch.setattr(ckpt, "publish", flaky)
    rec = _recipe(world, tmp_path / "stage", local_dir=str(tmp_path / "local"))
    rec.log = logs.append
    rec.setup()
    rec.publisher._log, rec.publisher.backoff_s = logs.append, 0.0
    rec.train()
    assert calls[:2] == [ckpt.step_dir_name(3)] * 2, calls  # the same checkpoint, retried
    assert any("publication failed" in m and "retrying" in m for m in logs), logs
    assert rec.publisher.failures == []

    # a copy that keeps failing: after FAULT_AFTER publications in a row training STOPS (never hours with
    # nothing reaching the run directory), with one message naming the fault, what is safe where, the remedy
    def broken(local, *a, **k):
        raise OSError("something odd")

    monkeypatch.setattr(ckpt, "publish", broken)
    logs.clear()
    rec2 = _recipe(world, tmp_path / "stage2", local_dir=str(tmp_path / "local2"), save_every=2)
    rec2.log = logs.append
    rec2.setup()
    rec2.publisher._log, rec2.publisher.backoff_s = logs.append, 0.0
    from helpers.colab.drive import StorageFault
    with pytest.raises(StorageFault) as e:
        rec2.train()
    assert len(rec2.publisher.failures) == 3 and rec2.step < rec2.total_steps  # stopped early
    msg = str(e.value)
    # the run directory is a plain disk here: no Drive advice (quota, Trash, remount), the write's own failure
    assert "[write_failed]" in msg and "3 checkpoint publications in a row failed" in msg and "something odd" in msg
    assert f"step {rec2.step} (now) on this VM's local disk" in msg and "is writable and has room" in msg
    assert "force_remount" not in msg and "Trash" not in msg
    local = tmp_path / "local2" / ckpt.step_dir_name(rec2.step)
    assert ckpt.verify(local) is None  # the state at the stop is sealed on local disk
    # the rerun (Drive fixed) continues from that local checkpoint: nothing is retrained
    monkeypatch.undo()
    rec3 = _recipe(world, tmp_path / "stage2", local_dir=str(tmp_path / "local2"), save_every=2).setup()
    assert rec3.step == rec2.step and rec3.resumed_from == str(local)


KILL_DURING_COPY = """
import pathlib, sys, time
from helpers.train import checkpoints as ckpt, recipe
real = ckpt.publish
def slow(local, *a, **k):
    pathlib.Path({mark!r}).write_text(local.name)
    time.sleep(0.5)  # the copy is in flight: the test kills the process now
    return real(local, *a, **k)
ckpt.publish = slow
sys.exit(recipe._cli({args!r}))
"""


def test_a_kill_during_the_background_copy_resumes_exactly(world, tmp_path):
    cfg = _cfg(local_dir=str(tmp_path / "local"))
    _run(world, cfg, tmp_path / "straight")
    straight = _trajectory(tmp_path / "straight")

    stage, mark = tmp_path / "killed", tmp_path / "copying.txt"
    cfgf = tmp_path / "killed.json"
    cfgf.write_text(_cfg(local_dir=str(tmp_path / "local2")).to_json())
    args = ["--config", str(cfgf), "--stage-dir", str(stage), "--init", str(world / "stage1"),
            "--tokens", str(world / "tokens")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    p = subprocess.Popen([sys.executable, "-c", KILL_DURING_COPY.format(mark=str(mark), args=args)], cwd=REPO_ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    # the second publication (step 6, or a newer save that superseded it in the queue while step 3's was slow)
    while not (mark.is_file() and mark.read_text() not in ("", ckpt.step_dir_name(3))):
        assert p.poll() is None, f"training ended first: {p.stdout.read()}"
        assert time.time() < deadline, "the second checkpoint's copy never started"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (stage / "model").exists()
    # the second copy was in flight: the run directory holds step 3 (complete) at most
    found = ckpt.find_resume_path(stage / "checkpoints", log=lambda m: None)
    assert found is None or found.name == ckpt.step_dir_name(3), found

    out = _run(world, _cfg(local_dir=str(tmp_path / "local2")), stage)
    assert _trajectory(stage) == straight, out
    a, b = _weights(tmp_path / "straight"), _weights(stage)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- cut-off copies, config changes
def _recipe(world, stage_dir, **kw):
    from helpers import models
    from helpers.train.sequences import choose_builtin_voices

    model, tok = models.load_stage(world / "stage1")
    utts = _utts()
    return StageRecipe(_cfg(**kw), model, tok, utts, stage_dir, choose_builtin_voices(utts), log=lambda m: None)


def test_cut_off_checkpoint_falls_back_and_config_changes_refuse(world, tmp_path):
    stage = tmp_path / "stage2"
    r = _recipe(world, stage, max_steps=6, keep_last=2, local_dir=str(tmp_path / "l")).setup()
    rows = {row["what"]: row["value"] for row in r.data_report()}
    assert rows["examples: with_reference"] > 0  # the non-voice speaker's examples carry references
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
    r2 = _recipe(world, stage, max_steps=6, keep_last=2, local_dir=str(tmp_path / "l")).setup()
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
    r.train()  # a checkpoint at step 3, no final model yet
    with pytest.raises(ResumeError, match=r"learning_rate: 0.002 -> 0.001"):
        _recipe(world, stage, max_steps=3, learning_rate=1e-3).setup()
    with pytest.raises(ResumeError, match="max_steps"):
        _recipe(world, stage, max_steps=5).setup()
    # safe changes (how often to log, how checkpoints are deleted) resume
    again = _recipe(world, stage, max_steps=3, log_every=2, drive_deletion="permanent",
                    local_dir=str(tmp_path / "l")).setup()
    assert again.step == 3
    # changed data: one utterance's text differs
    from helpers import models
    from helpers.train.sequences import choose_builtin_voices

    model, tok = models.load_stage(world / "stage1")
    utts = _utts()
    utts[0].text = "a different sentence"
    with pytest.raises(ResumeError, match="training data changed"):
        StageRecipe(_cfg(max_steps=3), model, tok, utts, stage, choose_builtin_voices(utts)).setup()
    # the same data through a tokenizer that encodes it otherwise (another BOS: what a dropped tokenizer file
    # on a failing mount can give): the data fingerprint cannot see it, the tokenizer's can
    utts = _utts()
    bos = tok.bos_token
    tok.bos_token = tok.convert_ids_to_tokens(7)
    with pytest.raises(ResumeError, match="the tokenizer encodes text differently"):
        StageRecipe(_cfg(max_steps=3), model, tok, utts, stage, choose_builtin_voices(utts)).setup()
    tok.bos_token = bos
    # finishing: the final model is verified, then the stage's checkpoints are deleted
    assert ckpt.list_checkpoints(stage / "checkpoints")
    again.train()
    again.save_final()
    assert not (stage / "checkpoints").exists() and (stage / "model" / "COMPLETE.json").is_file()
    done = _recipe(world, stage, max_steps=3, local_dir=str(tmp_path / "l")).setup()
    assert done.skipped and done.train().skipped  # rerunning a finished stage is a no-op
    with pytest.raises(ResumeError, match="finished stage 2 trained with another config"):
        _recipe(world, stage, max_steps=3, learning_rate=1e-3).setup()


# ----------------------------------------------------------------------------- memory techniques in the recipe
def _copy_state(sd):
    """Deep copy of a (nested) state dict, tensors cloned."""
    if torch.is_tensor(sd):
        return sd.detach().clone()
    if isinstance(sd, dict):
        return {k: _copy_state(v) for k, v in sd.items()}
    if isinstance(sd, (list, tuple)):
        return type(sd)(_copy_state(v) for v in sd)
    return sd


def _same_state(a, b):
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("precision,optimizer,state,checkpointing,layers,fused", [
    ("bf16-pure", "adamw_bf16_stochastic", "bf16", "full", None, False),  # BF16AdamW: bf16 moments + rounding RNG
    ("fp32", "adamw_8bit", "fp32", "selective", None, False),  # bitsandbytes 8-bit states (bnb steps on CPU too)
    ("bf16-pure", "adamw_bf16_stochastic", "bf16", "selective", 1, False),  # the planner's sized count: lowest layer
    # BF16AdamW's compiled update, as fused="auto" picks it on CUDA (forced here): Colab's stage-2 optimizer
    ("bf16-pure", "adamw_bf16_stochastic", "bf16", "selective", 1, True),
    # torchao's AdamW + bf16 stochastic rounding: its noise comes from torch's generator, which the checkpoint holds
    pytest.param("bf16-pure", "adamw_bf16_torchao", "bf16", "full", None, False, marks=pytest.mark.skipif(
        not have_torchao(), reason="torchao is optional (tests/train/test_torchao_optim.py)")),
])
def test_memory_techniques_train_and_resume_exactly(world, tmp_path, monkeypatch, precision, optimizer, state,
                                                    checkpointing, layers, fused):
    import shutil

    from helpers.train import memory, precision as prec
    from helpers.colab import session
    from helpers.models import COMPLETE_MARKER

    fused_calls = []
    if fused:  # the recipe builds its optimizer with fused="auto": what CUDA answers, on this CPU
        monkeypatch.setattr(prec, "fused_update_default", lambda device=None: True)
        update_fused = prec.BF16AdamW._update_fused
        monkeypatch.setattr(prec.BF16AdamW, "_update_fused",
                            lambda self, *a, **k: fused_calls.append(1) or update_fused(self, *a, **k))

    kw = dict(max_steps=6, save_every=3, keep_last=2, precision=precision, optimizer=optimizer, optimizer_state=state,
              checkpointing=checkpointing, selective_every=2, ce_chunk=24, local_dir=str(tmp_path / "l"),
              checkpoint_layers=layers)
    stage = tmp_path / "stage2"
    r1 = _recipe(world, stage, **kw).setup()
    n_layers = r1.model.config.num_hidden_layers
    want_layers = list(range(n_layers)) if checkpointing == "full" else \
        list(range(layers)) if layers else [i for i in range(n_layers) if i % 2 == 1]
    assert memory.checkpointed_layers(r1.model) == want_layers and r1.checkpointed == want_layers
    assert next(r1.model.parameters()).dtype == (torch.bfloat16 if precision == "bf16-pure" else torch.float32)
    assert type(r1.optimizer).__name__ == {"adamw_bf16_stochastic": "BF16AdamW", "adamw_8bit": "AdamW8bit",
                                           "adamw_bf16_torchao": "_AdamW"}[optimizer]
    r1.train()
    straight = _trajectory(stage)
    assert len(straight) == 6 and float(straight[-1][1]) < float(straight[0][1]), straight  # it learns
    weights = _copy_state(r1.model.state_dict())
    opt_state = _copy_state(r1.optimizer.state_dict())
    if optimizer == "adamw_bf16_stochastic":
        moments = [s["exp_avg"] for s in r1.optimizer.state.values()]
        assert moments and all(m.dtype == torch.bfloat16 for m in moments)
        assert opt_state["rounding_generators"]  # the rounding noise stream is part of the state
        assert bool(fused_calls) == fused  # the compiled update ran exactly when forced
    rows = (stage / METRICS_FILE).read_text().splitlines()
    lr_col = rows[0].split(",").index("lr")
    assert all(float(r.split(",")[lr_col]) >= 0 for r in rows[1:])  # a number (torchao's LR is a tensor)

    # Lose the newest checkpoint: a fresh recipe resumes at step 3 and must land on the same bits.
    shutil.rmtree(stage / "checkpoints" / ckpt.step_dir_name(6))
    r2 = _recipe(world, stage, **kw).setup()
    assert r2.step == 3 and r2.resumed_from.endswith(ckpt.step_dir_name(3))
    r2.train()
    assert _trajectory(stage) == straight
    got = r2.model.state_dict()
    assert all(torch.equal(weights[k], got[k]) for k in weights)
    assert _same_state(opt_state, r2.optimizer.state_dict())  # moments (their dtype too), steps, RNG streams
    final = r2.save_final()
    meta = json.loads((final / COMPLETE_MARKER).read_text())["metadata"]
    assert meta["hardware"] == session.device_summary()  # helpers.publish.upload reads this key for the model card
    assert meta["config"]["optimizer"] == optimizer


def test_config_memory_fields_are_validated():
    from helpers.train import config, memory

    assert config.OPTIMIZERS == memory.OPTIMIZER_KINDS
    assert set(config.CHECKPOINTING) == set(memory.CHECKPOINTING_MODES)
    with pytest.raises(ValueError, match="loses every update"):
        stage_config(2, "tiny", precision="bf16-pure", optimizer="adamw_torch")
    with pytest.raises(ValueError, match="is for precision='bf16-pure'"):
        stage_config(2, "tiny", optimizer="adamw_bf16_master")
    for field, value in (("checkpointing", "some"), ("ce_chunk", -1), ("attention", "flash"),
                         ("deepspeed", "zero2"), ("optimizer_state", "fp16"), ("precision", "fp16")):
        with pytest.raises(ValueError, match=f"StageConfig.{field}"):
            stage_config(2, "tiny", **{field: value})
    colab = stage_config(2, "colab")
    assert colab.unplanned() == ["precision", "optimizer", "optimizer_state", "checkpointing", "selective_every",
                                 "ce_chunk"]
    with pytest.raises(ValueError, match="plan_stage"):
        colab.require_planned()
    assert stage_config(2, "tiny").model_dtype == "float32"
    assert stage_config(2, "tiny", precision="bf16-pure", optimizer="adamw_bf16_master").model_dtype == "bfloat16"


def _shape_config(shape):
    """A stand-in for the loaded model's config with the real Llama-3.2-3B (extended) dimensions."""
    from types import SimpleNamespace

    return SimpleNamespace(hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                           num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                           intermediate_size=shape.intermediate, vocab_size=shape.vocab, tie_word_embeddings=True,
                           head_dim=shape.head_dim)


def test_plan_stage_applies_the_planners_choice_on_a_40gb_gpu(monkeypatch, tmp_path):
    from helpers.train import memory, planner
    from helpers.train import plan_gpus
    from helpers.train import plan_model
    from helpers.train.stage_plan import plan_stage

    fake = plan_gpus.match_gpu("NVIDIA A100-SXM4-40GB", int(39.4 * plan_model.GIB))
    monkeypatch.setattr(planner, "detect_gpu", lambda device=0: fake)
    model_config = _shape_config(plan_model.LLAMA_3_2_3B_AUDIO)
    logs = []
    plan, cfg = plan_stage(stage_config(2, "colab"), model_config, audio_hours=1050, log=logs.append)
    assert plan.gpu.name == "A100-40GB" and plan.shape == plan_model.LLAMA_3_2_3B_AUDIO
    assert plan.train.tokens_per_step == cfg.max_seq_len and plan.train.grad_accum == cfg.grad_accum
    s = memory.settings_for_plan(plan.train)
    assert (cfg.optimizer, cfg.checkpointing, cfg.selective_every, cfg.ce_chunk) == \
        (s.optimizer, s.checkpointing, s.selective_every, s.ce_chunk)
    assert cfg.model_dtype == ("bfloat16" if s.model_dtype == torch.bfloat16 else "float32")
    assert cfg.optimizer_state == ("bf16" if s.state_dtype == torch.bfloat16 else "fp32")
    # on this card the planner picks pure bf16 + stochastic rounding (tests/train/test_planner.py)
    assert (cfg.precision, cfg.optimizer, cfg.deepspeed) == ("bf16-pure", "adamw_bf16_stochastic", None)
    assert cfg.unplanned() == [] and "from the plan for A100-40GB" in logs[0]
    # the plan's selective count (the fewest recomputed layers that fit) travels into the config
    assert cfg.checkpointing == "selective" and cfg.checkpoint_layers == plan.train.checkpointed_layers >= 1
    assert "Training plan" in str(plan) and "settings fit A100-40GB" in logs[-1]

    # explicit settings win; a configuration that cannot fit is kept but flagged loudly
    mine = dict(precision="bf16-mixed", optimizer="adamw_torch", optimizer_state="fp32", checkpointing="none",
                selective_every=2, ce_chunk=0)
    logs.clear()
    _, kept = plan_stage(stage_config(2, "colab", **mine), model_config, log=logs.append)
    assert {k: getattr(kept, k) for k in mine} == mine
    assert any("WARNING" in m and "out of memory" in m for m in logs), logs

    # a run in progress keeps the settings that change the math and re-plans the rest for this GPU:
    # started on an 80 GB card without activation checkpointing, resumed on a 40 GB card
    import dataclasses

    started = dataclasses.replace(cfg, checkpointing="none", ce_chunk=0)
    (tmp_path / "config.json").write_text(started.to_json())
    logs.clear()
    _, resumed = plan_stage(stage_config(2, "colab"), model_config, stage_dir=tmp_path, log=logs.append)
    assert (resumed.precision, resumed.optimizer, resumed.optimizer_state) == \
        (started.precision, started.optimizer, started.optimizer_state)
    assert (resumed.checkpointing, resumed.ce_chunk) == (cfg.checkpointing, cfg.ce_chunk) != ("none", 0)
    assert resumed.checkpoint_layers == cfg.checkpoint_layers
    assert "re-planning checkpointing" in logs[0] and "settings fit A100-40GB" in logs[-1]
    # settings whose math cannot fit this GPU at all are refused, naming them
    (tmp_path / "config.json").write_text(kept.to_json())
    with pytest.raises(planner.NoFeasiblePlan, match="precision='bf16-mixed', optimizer='adamw_torch'"):
        plan_stage(stage_config(2, "colab"), model_config, stage_dir=tmp_path, log=logs.append)

    # Colab's L4 (24 GB, 53 GB host RAM): nothing fits, the message says what would
    with pytest.raises(planner.NoFeasiblePlan, match="no training configuration"):
        plan_stage(stage_config(2, "colab"), model_config, gpu="L4", log=logs.append)


def test_plan_stage_on_cpu_shows_the_target_gpu_plan_and_keeps_cpu_settings(monkeypatch):
    from helpers.train import planner
    from helpers.train import plan_model
    from helpers.train.config import PLAN_TARGET_GPU
    from helpers.train.stage_plan import plan_stage

    monkeypatch.setattr(planner, "detect_gpu", lambda device=0: None)
    tiny = stage_config(2, "tiny")
    logs = []
    plan, cfg = plan_stage(tiny, _shape_config(plan_model.LLAMA_3_2_3B_AUDIO), log=logs.append)
    assert plan.gpu.name == PLAN_TARGET_GPU and cfg == tiny and "information" in logs[-1]
    _, colab = plan_stage(stage_config(2, "colab"), _shape_config(plan_model.LLAMA_3_2_3B_AUDIO), log=logs.append)
    assert (colab.precision, colab.optimizer, colab.checkpointing, colab.ce_chunk) == ("fp32", "adamw_torch", "none", 0)


def test_launch_command_runs_this_modules_cli(tmp_path):
    from helpers.profiles import RunPaths
    from helpers.train.recipe import launch_command

    paths = RunPaths(tmp_path / "run")
    cmd = launch_command(paths, 3, stage_config(3, "tiny"), 4)
    assert cmd.startswith("accelerate launch --num_processes 4") and "--module helpers.train.recipe" in cmd
    assert "--deepspeed_config_file configs/ds_zero2.json" in cmd and "--phase 2" in cmd
    assert f"--init {paths.stage(2) / 'model'}" in cmd and f"--config {paths.stage(3) / 'config.json'}" in cmd


def test_deepspeed_config_dispatches_to_hf_trainer(world, tmp_path):
    """cfg.deepspeed set: the same recipe/CLI trains through HF Trainer + ZeRO-2 (one process, CPU)."""
    from helpers.models import COMPLETE_MARKER
    from helpers.profiles import HF_TRAINER_DIR

    stage = tmp_path / "stage2"
    cfg = _cfg(max_steps=4, save_every=2, log_every=1, deepspeed="configs/ds_zero2.json", ce_chunk=16,
               checkpointing="full", local_dir=str(tmp_path / "l"))
    out = _run(world, cfg, stage)
    assert "DeepSpeed ds_zero2.json, 1 process(es), 4 steps" in out, out
    losses = [float(r[1]) for r in _trajectory(stage)]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    # HF Trainer's checkpoints were written locally and published like the main loop's (manifest, atomic
    # copy, one kept); the finished stage leaves its final model and no checkpoints
    assert "published DeepSpeed checkpoint step-00000002" in out and "step-00000004" in out, out
    assert not (stage / HF_TRAINER_DIR).exists() and not (stage / "checkpoints").exists()
    meta = json.loads((stage / "model" / COMPLETE_MARKER).read_text())["metadata"]
    assert meta["config"]["deepspeed"] == "configs/ds_zero2.json" and meta["step"] == 4 and meta["hardware"]
    assert meta["checkpoint_saves"] == 2 and meta["checkpoint_bytes"] > 0


# ----------------------------------------------------------------------------- Drive failures
def test_failing_drive_sync_of_metrics_does_not_stop_training(world, tmp_path, monkeypatch):
    from collections import namedtuple

    from helpers.colab import drive
    from helpers import models
    from helpers.train.sequences import choose_builtin_voices
    from helpers.colab.runlog import CsvLog

    def broken(src, dst):
        raise OSError(107, "Transport endpoint is not connected")

    monkeypatch.setattr(drive, "_copy", broken)
    monkeypatch.setattr(CsvLog, "sync_wait_s", 0.0)
    stage, logs = tmp_path / "stage2", []
    model, tok = models.load_stage(world / "stage1")
    utts = _utts()
    r = StageRecipe(_cfg(max_steps=4, local_dir=str(tmp_path / "l")), model, tok, utts, stage,
                    choose_builtin_voices(utts), log=logs.append).setup()
    res = r.train()
    assert res.steps == 4 and r.metrics.sync_failures >= 1
    assert any("could not copy metrics.csv" in m and "training continues" in m for m in logs), logs
    assert [int(row["step"]) for row in r.metrics.rows()] == [1, 2, 3, 4]  # the local log is complete
    assert not (stage / METRICS_FILE).exists()
    monkeypatch.setattr(drive, "_copy", __import__("shutil").copyfile)  # Drive is back
    assert r.metrics.sync(force=True)
    assert (stage / METRICS_FILE).read_text() == r.metrics.path.read_text()

    # the final model does not fit: a clear error before writing, the checkpoint stays
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(drive.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 10, 10))
    with pytest.raises(drive.InsufficientSpace, match="stage 2's final model.*needs"):
        r.save_final()
    assert not (stage / "model").exists()
    assert ckpt.find_resume_path(stage / "checkpoints").name == ckpt.step_dir_name(4)


# ----------------------------------------------------------------------------- host syncs
def test_training_loop_reads_device_values_only_at_log_steps(world, tmp_path, monkeypatch):
    """No .item() / float() of a floating-point tensor (a host <-> GPU sync on CUDA) per micro-batch or
    per step: the loss and the grad norm are read only when a metrics row is written. Counted on CPU by
    wrapping the Tensor methods and keeping the calls made from helpers/ (torch's own AdamW reads its CPU
    step counter, which is no GPU sync); the logged losses still match a run that logs every step."""
    from helpers import models
    from helpers.train.sequences import choose_builtin_voices

    utts = _utts()
    reads = []
    for name in ("item", "__float__"):
        orig = getattr(torch.Tensor, name)

        def wrapped(self, _orig=orig):
            caller = sys._getframe(1).f_code.co_filename
            if self.is_floating_point() and "helpers" in Path(caller).parts:  # the project's reads
                reads.append(f"{caller}:{sys._getframe(1).f_lineno}")
            return _orig(self)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    def run(log_every, sub):
        model, tok = models.load_stage(world / "stage1")
        r = StageRecipe(_cfg(max_steps=8, grad_accum=2, log_every=log_every, save_every=100,
                             local_dir=str(tmp_path / sub / "l")), model, tok, utts, tmp_path / sub / "stage2",
                        choose_builtin_voices(utts), log=lambda m: None).setup()
        reads.clear()
        r.train()
        return len(reads), {row["step"]: row["loss"] for row in r.metrics.rows()}

    n4, losses4 = run(4, "a")  # 8 steps x 2 micro-batches, log at steps 4 and 8
    assert n4 <= 2 * 2, reads  # loss + grad norm per log step, nothing per micro-batch
    n1, losses1 = run(1, "b")
    assert n1 <= 8 * 2
    assert losses4 == {k: v for k, v in losses1.items() if k in losses4}  # same values, read later


# ----------------------------------------------------------------------------- compile without storms
def test_compiled_attention_trains_over_many_lengths_without_recompile_storm(world, tmp_path, monkeypatch):
    """The recipe with the compiled per-document SDPA (torch.compile(dynamic=True); backend aot_eager to keep
    CI fast: recompiles come from dynamo's guards, the same whatever the backend) over packed rows of many
    lengths: rows are padded to a few bucket lengths, documents have many lengths, and the trainer's
    recompile count stays bounded (a static-shape compile would recompile for every new length)."""
    from helpers import models
    from helpers.train import attention, packing
    from helpers.train.recipe import compile_counts
    from helpers.train.sequences import choose_builtin_voices

    monkeypatch.setattr(attention, "COMPILE_BACKEND", "aot_eager")
    utts = _utts(n=30)
    model, tok = models.load_stage(world / "stage1")
    logs = []
    r = StageRecipe(_cfg(max_steps=8, log_every=2, save_every=100, max_seq_len=128, local_dir=str(tmp_path / "l")),
                    model, tok, utts, tmp_path / "stage2", choose_builtin_voices(utts), log=logs.append).setup()
    attention.set_kernel(r.model, "sdpa", compiled=True)
    seen_rows, seen_docs = set(), set()
    original = packing.collate

    def spy(examples, pad_to=None, pad_id=0):
        b = original(examples, pad_to=pad_to, pad_id=pad_id)
        seen_rows.add((sum(len(e) for e in examples), b["input_ids"].shape[1]))
        seen_docs.update(len(e) for e in examples)
        return b

    monkeypatch.setattr("helpers.train.recipe.collate", spy)
    before = compile_counts()
    res = r.train()
    after = compile_counts()
    assert res.steps == 8
    raw = {n for n, _ in seen_rows}
    padded = {p for _, p in seen_rows}
    assert len(raw) >= 5 and len(seen_docs) >= 5, (raw, seen_docs)  # >= 5 distinct packed lengths
    assert padded <= {packing.bucket_length(n, 128) for n in raw} and len(padded) <= packing.ROW_BUCKETS
    assert after["graphs"] > before["graphs"]  # it did compile
    assert after["recompiles"] - before["recompiles"] <= 2, (before, after)
    assert all(np.isfinite(float(row["loss"])) for row in r.metrics.rows())


def test_bucket_length_and_padded_collate():
    from helpers.train.packing import bucket_length, collate
    from helpers.train.sequences import Example

    assert [bucket_length(n, 4096) for n in (1, 512, 513, 4000, 4096)] == [512, 512, 1024, 4096, 4096]
    assert len({bucket_length(n, 8192) for n in range(1, 8193)}) == 8
    with pytest.raises(ValueError):
        bucket_length(5000, 4096)
    ex = [Example("a", np.arange(5), np.arange(5), "none"), Example("b", np.arange(3), np.arange(3), "none")]
    b = collate(ex, pad_to=lambda n: 12)
    assert b["input_ids"].shape == (1, 12) and b["seq_lens"].tolist() == [5, 3, 4]
    assert b["position_ids"][0, 8:].tolist() == [0, 1, 2, 3] and (b["labels"][0, 8:] == -100).all()
