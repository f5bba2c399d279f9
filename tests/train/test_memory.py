"""Memory techniques: chunked CE (values, gradients, no full logits), optimizer factory,
activation checkpointing, attention choice, plan -> settings; and the CPU benchmark smoke run.

Packed forward == separate forwards with SDPA is proven in tests/train/test_packing.py (not repeated)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from optional_torchao import have_torchao

from helpers.train import memory as mem
from helpers.tiny_models import build_tiny_llama

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _rand_problem(n=300, h=32, v=1000, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, dtype=dtype, generator=g, requires_grad=True)
    weight = (0.3 * torch.randn(v, h, dtype=dtype, generator=g)).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::7] = -100
    return hidden, weight, labels


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk", [1, 64, 299, 5000])
def test_chunked_ce_equals_full_ce_and_its_gradients(reduction, chunk):
    h, w, y = _rand_problem()
    loss = mem.chunked_causal_lm_loss(h, w, y, chunk_size=chunk, reduction=reduction)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.T, y, reduction=reduction, ignore_index=-100)
    ref.backward()
    assert loss.dtype == torch.float64 or loss.dtype == torch.float32
    assert torch.allclose(loss.double(), ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(gh, h.grad, rtol=1e-6, atol=1e-9)
    assert torch.allclose(gw, w.grad, rtol=1e-6, atol=1e-9)


def test_chunked_ce_fp32_and_scaled_backward():
    h, w, y = _rand_problem(dtype=torch.float32, seed=3)
    (3.0 * mem.chunked_causal_lm_loss(h, w, y, chunk_size=50)).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    (3.0 * F.cross_entropy(h @ w.T, y)).backward()
    assert torch.allclose(gh, h.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(gw, w.grad, rtol=1e-4, atol=1e-7)


def test_chunked_ce_edge_cases_and_errors():
    h, w, y = _rand_problem(n=20)
    none = torch.full_like(y, -100)
    z = mem.chunked_causal_lm_loss(h, w, none)
    z.backward()
    assert float(z.detach()) == 0.0 and float(h.grad.abs().sum()) == 0.0  # no targets: 0, not NaN
    with torch.no_grad():  # evaluation path: same value, nothing stored
        assert torch.allclose(mem.chunked_causal_lm_loss(h, w, y, chunk_size=3).double(),
                              F.cross_entropy(h @ w.T, y), rtol=1e-6)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mem.chunked_causal_lm_loss(h, w, torch.full_like(y, 5000))
    with pytest.raises(ValueError, match="labels must have shape"):
        mem.chunked_causal_lm_loss(h, w, y[:-1])
    with pytest.raises(ValueError, match="hidden size mismatch"):
        mem.chunked_causal_lm_loss(h, w[:, :5], y)
    with pytest.raises(ValueError, match="chunk_size"):
        mem.chunked_causal_lm_loss(h, w, y, chunk_size=0)
    with pytest.raises(RuntimeError, match="liger_kernel"):
        mem.chunked_causal_lm_loss(h, w, y, use_liger=True)  # not installed / no CUDA here


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor (elements) any aten op creates while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_ce_never_creates_full_logits():
    # N*V = 2M logits; a chunk is 64*2000 = 128K; d weight is V*H = 64K.
    n, hdim, v, chunk = 1024, 32, 2000, 64
    h, w, y = _rand_problem(n=n, h=hdim, v=v, dtype=torch.float32)
    with _LargestTensor() as full:
        F.cross_entropy(h @ w.T, y).backward()
    h.grad = w.grad = None
    with _LargestTensor() as chunked:
        mem.chunked_causal_lm_loss(h, w, y, chunk_size=chunk).backward()
    assert full.largest >= n * v
    assert chunked.largest <= max(chunk * v, v * hdim, n * hdim), chunked.largest


def _packed_batch(vocab, lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, sum(lens)), generator=g)
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    labels = ids.clone()
    labels[0, pos[0] == 0] = -100  # as helpers.train.packing.collate: no target across examples
    labels[0, 3] = -100  # a prompt token
    return ids, labels, pos


def test_causal_lm_loss_equals_hf_loss_on_packed_batch_with_grads():
    model = build_tiny_llama(500, seed=0).train()
    ids, labels, pos = _packed_batch(500, [23, 40, 17])
    ref = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
    ref.backward()
    g_ref = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss, n = mem.causal_lm_loss(model, ids, labels, position_ids=pos, chunk_size=16)
    loss.backward()
    assert n == int((labels[:, 1:] != -100).sum())
    assert abs(float(loss) - float(ref)) < 1e-5
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, g_ref[k], rtol=1e-4, atol=1e-6), k
    # the packing matters: the same rows without restarting positions give another loss
    other, _ = mem.causal_lm_loss(model, ids, labels, chunk_size=16)
    assert abs(float(other) - float(loss)) > 1e-4


def test_param_groups_and_optimizers_train_new_rows():
    model = build_tiny_llama(300, seed=0)
    groups = mem.param_groups(model, 0.01)
    decay, no_decay = groups
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    assert any(p is emb for p in decay["params"])  # tied embedding / LM head is decayed (documented choice)
    ids = torch.randint(250, 300, (1, 24))  # "new audio tokens": the top rows of the vocabulary
    for kind in mem.OPTIMIZER_KINDS:
        if kind == "adamw_bf16_torchao" and not have_torchao():
            continue  # optional (not in requirements-ci.txt): tests/train/test_torchao_optim.py covers it
        m = build_tiny_llama(300, seed=0)
        if kind.startswith("adamw_bf16"):
            m = m.to(torch.bfloat16)
        opt = mem.build_optimizer(m, kind, lr=1e-2, weight_decay=0.01)
        before = m.get_input_embeddings().weight.detach().float().clone()
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss, _ = mem.causal_lm_loss(m, ids, ids.clone(), chunk_size=8)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        after = m.get_input_embeddings().weight.detach().float()
        moved = (after - before).abs().sum(1) > 0
        assert moved[ids.unique()].all(), kind  # every used new row trained
        assert losses[-1] < losses[0], (kind, losses)
    with pytest.raises(ValueError, match="optimizer kind"):
        mem.build_optimizer(model, "sgd", lr=1e-3)


def test_settings_for_plan_covers_planner_choices():
    from helpers.train.planner import plan_for_gpu
    from helpers.train.plan_memory import TrainPlan

    s = mem.settings_for_plan(plan_for_gpu(gpu="A100-40GB", tokens_per_step=8192).train)
    assert s.optimizer == "adamw_bf16_stochastic" and s.model_dtype == torch.bfloat16 and s.ce_chunk > 0
    s = mem.settings_for_plan(TrainPlan(optimizer="adamw_8bit"))
    assert (s.optimizer, s.model_dtype, s.autocast) == ("adamw_8bit", torch.float32, True)
    s = mem.settings_for_plan(TrainPlan(grad_dtype="bf16", optimizer="adamw_bf16"))
    assert (s.optimizer, s.state_dtype) == ("adamw_bf16_master", torch.bfloat16)
    s = mem.settings_for_plan(TrainPlan(zero_stage=3, offload_optimizer=True, checkpointing="selective", ce="full"))
    assert s.zero_stage == 3 and s.offload_optimizer and s.ce_chunk == 0 and s.checkpointing == "selective"


def _count_layer_calls(model):
    calls = [0] * len(model.model.layers)
    for i, layer in enumerate(model.model.layers):
        # a pre-hook: the recompute stops early once it has rebuilt what backward needs, so a
        # post-forward hook would not see it
        layer.register_forward_pre_hook(lambda mod, a, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def _reference_and_copy(chunk=1024):
    """A 3-layer LLaMA (fp32, SDPA) after one backward of a packed batch, and an untouched copy of it:
    (reference model, reference loss, copy, (ids, labels, position_ids))."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=200, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, use_cache=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    ref_model = LlamaForCausalLM(cfg).train()
    batch = _packed_batch(200, [20, 12], seed=1)
    ref, _ = mem.causal_lm_loss(ref_model, batch[0], batch[1], position_ids=batch[2], chunk_size=chunk)
    ref.backward()
    model = LlamaForCausalLM(cfg).train()
    model.load_state_dict(ref_model.state_dict())
    return ref_model, ref, model, batch


@pytest.mark.parametrize("mode,every,layers,expected", [
    ("none", 2, None, []), ("full", 2, None, [0, 1, 2]), ("selective", 2, None, [1]), ("selective", 1, None, [0, 1, 2]),
    # a count (the planner's sized selective): exactly that many layers, the lowest ones
    ("selective", 2, 1, [0]), ("selective", 2, 2, [0, 1]), ("selective", 2, 3, [0, 1, 2])])
def test_checkpointing_same_loss_and_grads_and_recomputes(mode, every, layers, expected):
    ref_model, ref, model, (ids, labels, pos) = _reference_and_copy()
    assert mem.enable_checkpointing(model, mode, every=every, layers=layers) == expected
    assert mem.checkpointed_layers(model) == expected
    calls = _count_layer_calls(model)
    loss, _ = mem.causal_lm_loss(model, ids, labels, position_ids=pos)
    loss.backward()
    assert float(loss) == pytest.approx(float(ref), abs=1e-6)
    for (k, p), q in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), k
    # a checkpointed layer runs twice (forward + recompute), the others once
    assert calls == [2 if i in expected else 1 for i in range(3)]
    mem.enable_checkpointing(model, "none")
    assert mem.checkpointed_layers(model) == []
    with pytest.raises(ValueError, match="checkpointing mode"):
        mem.enable_checkpointing(model, "some")
    for bad_mode, bad in (("selective", 0), ("selective", 4), ("full", 2)):
        with pytest.raises(ValueError, match="layers="):
            mem.enable_checkpointing(model, bad_mode, layers=bad)


def test_attention_choice_on_cpu():
    assert mem.choose_attention("cpu", torch.bfloat16) == "sdpa"
    assert mem.choose_attention("cpu", torch.float32, prefer="sdpa") == "sdpa"
    with pytest.raises(RuntimeError, match="flash_attention_2 needs"):
        mem.choose_attention("cpu", torch.bfloat16, prefer="flash_attention_2")
    model = build_tiny_llama(100)
    assert mem.set_attention(model, "eager") == "eager"
    assert mem.set_attention(model, "sdpa") == "sdpa_documents"  # per-document SDPA for packed rows (issue 23)


def test_benchmark_runs_on_cpu_and_prints_figures(tmp_path):
    record = tmp_path / "results.jsonl"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--model", "tiny", "--tokens-per-step",
           "256", "--steps", "1", "--warmup", "1", "--threads", "1", "--optimizer", "adamw_bf16_stochastic",
           "--checkpointing", "selective", "--ce-chunk", "64", "--record", str(record)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")]
    assert len(line) == 1
    r = json.loads(line[0][6:])
    for key in ("tokens_per_s", "peak_memory_gib", "planner_peak_gib", "planner_tokens_per_s", "card", "date"):
        assert key in r, key
    assert r["tokens_per_s"] > 0 and r["peak_memory_gib"] > 0 and r["checkpointed_layers"] == 1
    assert r["optimizer"] == "adamw_bf16_stochastic" and r["ce_chunk"] == 64 and r["mfu"] is None  # CPU: no peak
    assert json.loads(record.read_text().splitlines()[0]) == r


@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_compiled_layers_give_the_reference_loss_and_gradients(checkpointing):
    """Regional compilation (each decoder layer under torch.compile, backend aot_eager: dynamo's graph
    and AOTAutograd's forward/backward split, eager kernels — what CPU can prove) against the eager
    model on a packed batch, with and without activation checkpointing. Tolerance 1e-5 relative (fp32):
    the traced graph runs the same ops, but decompositions may reassociate a reduction (RMSNorm's mean)."""
    import torch._dynamo

    ref_model, ref, model, (ids, labels, pos) = _reference_and_copy(chunk=8)
    mem.enable_checkpointing(model, checkpointing)
    torch._dynamo.reset()
    assert mem.compile_layers(model, backend="aot_eager") == 3
    loss, _ = mem.causal_lm_loss(model, ids, labels, position_ids=pos, chunk_size=8)
    loss.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    for (k, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=k)
    from helpers.train.recipe import compile_counts

    assert compile_counts()["graphs"] >= 1  # the layers really ran through dynamo
    mem.set_attention(model, "sdpa")  # per-document SDPA: document lengths as Python ints
    with pytest.raises(ValueError, match="recompile the layers for every row"):
        mem.compile_layers(model, backend="aot_eager")


def test_stage_benchmark_runs_the_stage_config_on_cpu(tmp_path):
    """bench_train --stage 2 --profile colab on the tiny model: the Colab plan's configuration (pure bf16,
    BF16AdamW with stochastic rounding, full checkpointing, chunked CE) at CPU sizes, with the split."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--stage", "2", "--profile", "colab",
           "--model", "tiny", "--tokens-per-step", "256", "--grad-accum", "3", "--steps", "1", "--warmup", "0",
           "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"),
                       cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    r = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")][0][6:])
    # the A100-40GB plan: selective checkpointing of 24 of 28 layers, scaled to the tiny model's 2
    assert (r["precision"], r["optimizer"], r["checkpointing"]) == ("bf16-pure", "adamw_bf16_stochastic", "selective")
    assert r["checkpointed_layers"] == 2
    assert r["grad_accum"] == 3 and r["tokens_per_micro_batch"] == 256 and r["ce_chunk"] > 0
    assert r["fused_optimizer"] is False  # auto: eager on the CPU
    assert set(r["split_s"]) == {"data", "forward", "backward", "optimizer", "other"}
    assert all(v >= 0 for k, v in r["split_s"].items() if k != "other")
    assert sum(r["split_s"].values()) == pytest.approx(r["step_s"], abs=2e-3)
    assert r["tokens_per_s"] > 0 and r["planner_tokens_per_s"] > 0 and r["hfu"] is None
    assert r["auto_config"]["tokens_per_micro_batch"] >= 8192 and r["auto_config"]["planner_tokens_per_s"] > 0


def test_stage_benchmark_honours_its_overrides(tmp_path):
    """--checkpointing / --ce-chunk / --attention with --stage change what runs (they were silently ignored: the
    plan's values ran) and are listed in ``overrides``; the planner's prediction follows the checkpointing."""
    base = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--stage", "2", "--profile", "colab",
            "--model", "tiny", "--tokens-per-step", "256", "--grad-accum", "2", "--steps", "1", "--warmup", "0",
            "--threads", "1"]
    rows = []
    for extra in ([], ["--checkpointing", "none", "--ce-chunk", "64", "--attention", "sdpa"]):
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        rows.append(json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")][0][6:]))
    planned, asked = rows
    assert planned["checkpointing"] == "selective" and planned["ce_chunk"] == 1024
    assert (asked["checkpointing"], asked["checkpointed_layers"], asked["ce_chunk"]) == ("none", 0, 64)
    assert asked["overrides"] == {"grad_accum": 2, "max_seq_len": 256, "checkpointing": "none", "ce_chunk": 64,
                                  "attention": "sdpa"}
    # no recompute: fewer hardware FLOPs per token predicted (the tiny model's memory peak is the optimizer's)
    assert asked["hardware_flops_per_token"] < planned["hardware_flops_per_token"]
