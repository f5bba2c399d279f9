"""The training's CUDA-only code paths, run on the CPU by forcing the flag that CUDA would set (issue #32).

No GPU has run them yet; each test here runs the same code the GPU runs, with the one switch that picks the
CUDA branch forced, so a crash on first GPU contact shows here first:

- the FlexAttention BlockMask built by ``torch.compile(create_block_mask)`` (CUDA's builder) equals the eager
  one, compiles once for rows of one length, and is built from CPU lengths (no host sync on a GPU);
- FlexAttention under bf16 autocast (precision="bf16-mixed" on CUDA) gets query, key and value in one dtype
  (RoPE's fp32 cos/sin would make query and key fp32 beside a bf16 value), eager and inside compiled layers;
- FlexAttention lowered by inductor inside the compiled layers (forward: no CPU flex backward), the reference
  loss over rows of several lengths and BlockMasks, one graph plus one dynamic recompile;
- the recipe's evaluation and sample generation on compiled layers run eagerly (no recompile storm);
- regional compilation with inductor (the CUDA backend; Triton there, C++ here) with selective activation
  checkpointing in a pure-bf16 model: the reference loss and gradients, one graph for every layer, no
  recompile on the next row;
- bench_train's calibration on a GPU never raises over a measurement (it records the error instead).
Inductor compiles with a C++ compiler on the CPU: ~10-30 s per test on 2 cores.
"""
import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo

from helpers.train import attention
from helpers.train import memory as mem
from helpers.train.packing import collate
from helpers.train.recipe import compile_counts, packed_loss_sum
from helpers.train.sequences import Example

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _ex(rng, n, vocab=300):
    ids = rng.integers(0, vocab, n)
    return Example("x", ids, ids.copy(), "none")


def _llama(layers: int, dtype=torch.float32):
    """A LLaMA of ``layers`` layers with Llama 3.2's non-power-of-two head count (6 query, 2 kv heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=96, num_hidden_layers=layers, num_attention_heads=6,
                      num_key_value_heads=2, head_dim=16, intermediate_size=172, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 5e5}, use_cache=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(dtype).train()


def test_block_mask_compiled_builder_equals_eager_and_compiles_once():
    """document_block_mask(compiled=True) is what CUDA runs (torch.compile(create_block_mask)): the same
    block layout as the eager builder, one graph for every row of one length (the recipe pads rows to a
    few bucket lengths), and the document ids are built on the CPU whatever ``seq_lens`` is."""
    import warnings

    torch._dynamo.reset()
    before = compile_counts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for lens in ([300, 200, 524], [100, 700, 224], [1024]):
            a = attention.document_block_mask(lens, compiled=True)
            b = attention.document_block_mask(lens, compiled=False)
            assert torch.equal(a.to_dense(), b.to_dense()), lens
            assert torch.equal(a.kv_num_blocks, b.kv_num_blocks) and torch.equal(a.full_kv_num_blocks,
                                                                                  b.full_kv_num_blocks)
    # torch.compile(create_block_mask), not its deprecated _compile=True (a warning per row on the H200's 2.11)
    assert not [w for w in caught if "_compile" in str(w.message)]
    after = compile_counts()
    assert after["graphs"] - before["graphs"] == 1 and after["recompiles"] == before["recompiles"]
    # a multi-document row is not the causal mask of one document: the comparison can fail
    assert not torch.equal(attention.document_block_mask([1024]).to_dense(),
                           attention.document_block_mask([300, 724]).to_dense())
    assert attention.document_ids(torch.tensor([2, 1])).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="positive lengths"):
        attention.document_block_mask([3, 0])


def test_flex_attention_under_autocast_gets_one_dtype(monkeypatch):
    """precision="bf16-mixed" on CUDA: an fp32 model under bf16 autocast with FlexAttention. LLaMA's RoPE
    multiplies the bf16 projections by fp32 cos/sin, so without the cast query and key reach flex_attention
    as fp32 beside a bf16 value (measured here before the fix: fp32, fp32, bf16). Through set_kernel all three
    are bf16, eager and inside compiled layers (aot_eager), and the loss equals the per-document SDPA's under
    the same autocast within bf16 rounding (1e-2 relative)."""
    import transformers.integrations.flex_attention as hf_flex
    from torch.nn.attention.flex_attention import flex_attention

    seen = []

    def eager_flex(q, k, v, training=False, **kw):  # transformers compiles flex_attention; eager is the same math
        seen.append((q.dtype, k.dtype, v.dtype))
        return flex_attention(q, k, v, **kw)

    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention", eager_flex)
    rng = np.random.default_rng(0)
    batch = collate([_ex(rng, n) for n in (40, 70, 18)])
    model = _llama(2)
    attention.set_kernel(model, "flex_attention")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        flex, n = packed_loss_sum(model, batch, 32)
    assert seen and set(seen) == {(torch.bfloat16,) * 3}, seen
    with torch.no_grad():  # outside autocast nothing is cast: an fp32 model attends in fp32
        seen.clear()
        packed_loss_sum(model, batch, 32)
        assert set(seen) == {(torch.float32,) * 3}
    torch._dynamo.reset()
    compiled = copy.deepcopy(model)
    mem.compile_layers(compiled, backend="aot_eager")
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        flex_compiled, _ = packed_loss_sum(compiled, batch, 32)
    assert seen and set(seen) == {(torch.bfloat16,) * 3}, seen
    attention.set_kernel(model, "sdpa")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        sdpa, _ = packed_loss_sum(model, batch, 32)
    assert float(flex) == pytest.approx(float(sdpa), rel=1e-2)
    assert float(flex_compiled) == pytest.approx(float(flex), rel=1e-6)


def test_compiled_layers_with_inductor_and_selective_checkpointing_in_bf16():
    """compile_layers(backend="inductor") — CUDA's backend — in a pure-bf16 model (stage 2's precision) with
    the lower half of 12 layers checkpointed (the planner's selective layout; checkpointing wraps the compiled
    layer and its recompute runs the same compiled graph). Against the same model eager on two packed rows:
    loss within 1e-3 relative, every gradient within 0.15 relative norm (bf16 keeps 8 bits and inductor fuses
    and reorders the roundings of whole layers: measured worst 0.05). One graph serves all 12 layers (more than
    dynamo's recompile limit of 8: one graph per layer would leave the last ones eager without an error) and
    the second row recompiles nothing. Attention: transformers' SDPA (packed rows from position_ids); the
    per-document SDPA is refused by compile_layers, and FlexAttention has no CPU backward."""
    torch._dynamo.reset()
    before = compile_counts()
    ref = _llama(12, torch.bfloat16)
    model = copy.deepcopy(ref)
    for m in (ref, model):
        assert mem.enable_checkpointing(m, "selective", layers=6) == list(range(6))
    assert mem.compile_layers(model, backend="inductor") == 12
    rng = np.random.default_rng(0)
    for lens in ((40, 70, 18), (50, 60, 18)):
        batch = collate([_ex(rng, n) for n in lens])
        losses = []
        for m in (ref, model):
            m.zero_grad(set_to_none=True)
            loss, n = packed_loss_sum(m, batch, 32)
            (loss / n).backward()
            losses.append(float(loss))
        assert losses[1] == pytest.approx(losses[0], rel=1e-3)
        for (k, p), q in zip(model.named_parameters(), ref.parameters()):
            rel = float((p.grad.float() - q.grad.float()).norm() / q.grad.float().norm().clamp_min(1e-30))
            assert rel < 0.15, (k, rel)
    after = compile_counts()
    assert after["graphs"] - before["graphs"] == 1 and after["recompiles"] == before["recompiles"], (before, after)


def test_bench_calibration_records_instead_of_raising():
    """bench_train's calibration runs only on a GPU, after minutes of measuring: a known card gets its
    calibrated hfu; a measurement faster than the planner's non-compute time allows gets an error field
    (helpers.train.plan_gpus.calibrate raises there) and the measurement is still returned; an unknown card
    (borrowed figures) gets nothing."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_train

    from helpers.train import plan_gpus
    from helpers.train.planner import Throughput

    h100 = plan_gpus.match_gpu("NVIDIA H100 80GB HBM3", 85_045_870_592)
    tp = Throughput(tokens_per_s=10_000.0, mfu=0.2, model_flops_per_token=1.0, hardware_flops_per_token=1.0,
                    step_time_s=10.0, compute_s=8.0,
                    optimizer_s=2.0, offload_s=0.0)
    ok = bench_train.calibration_fields(h100, tp, 12_000.0, "test")
    assert ok["planner_hfu"] == h100.hfu and ok["calibrated_hfu"] > h100.hfu and "calibration_error" not in ok
    too_fast = bench_train.calibration_fields(h100, tp, 60_000.0, "test")  # 10/6 s < the 2 s optimizer alone
    assert too_fast["calibrated_hfu"] is None and "faster than the planner" in too_fast["calibration_error"]
    unknown = plan_gpus.match_gpu("NVIDIA B300", 200e9)
    assert unknown.assumed_compute and bench_train.calibration_fields(unknown, tp, 12_000.0, "test") == {}
    assert bench_train.calibration_fields("A100-40GB", tp, 12_000.0, "test") == {}  # CPU runs: a GPU name only


def test_evaluation_runs_compiled_layers_eagerly():
    """The recipe's evaluation sample (generate_codes) and held-out loss on a model whose layers are compiled
    (compile_layers, which only CUDA runs in the recipe: on the CPU its attention refuses). Without the eager
    stance generation recompiles the layers for eval mode, the KV cache and each layer index (measured: a
    10-layer model hit dynamo's recompile limit of 8 in one sample); with it nothing compiles, the tokens equal
    the uncompiled model's, and the next training step still runs the training graph without recompiling."""
    from tiny_export import extended_tiny

    from helpers.train.recipe import eager_stance, generate_codes

    torch._dynamo.reset()
    model, _, layout = extended_tiny(0)
    model.set_attn_implementation("sdpa")
    model.config.use_cache = True
    plain = copy.deepcopy(model)
    mem.compile_layers(model, backend="aot_eager")
    rng = np.random.default_rng(0)
    batch = collate([_ex(rng, n, model.config.vocab_size) for n in (30, 20)])
    model.train()
    loss, n = packed_loss_sum(model, batch, 16)
    (loss / n).backward()
    before = compile_counts()
    prompt = [int(t) for t in rng.integers(0, layout.audio_start_id, 9)] + [layout.audio_start_id]
    codes, _ = generate_codes(model, layout, prompt, 3, constrained=True)
    ref, _ = generate_codes(plain, layout, prompt, 3, constrained=True)
    assert all(np.array_equal(a, b) for a, b in zip(codes, ref)) and codes[0].size == 3
    with torch.no_grad(), eager_stance():
        packed_loss_sum(model.eval(), batch, 16)
    assert compile_counts() == before, (before, compile_counts())
    model.train()
    loss, n = packed_loss_sum(model, batch, 16)
    (loss / n).backward()
    assert compile_counts() == before


def test_flex_attention_inside_inductor_compiled_layers_forward():
    """CUDA's compile_layers path with FlexAttention: inductor lowers flex_attention inside each layer's graph
    (transformers calls the raw flex_attention while dynamo traces). Forward only (no CPU flex backward): the
    packed loss equals the per-document SDPA's on rows of three lengths (1e-5 relative, fp32), one graph serves
    both layers, new BlockMasks of the same length reuse it, and a new length recompiles once (dynamic)."""
    torch._dynamo.reset()
    model = _llama(2)
    ref = copy.deepcopy(model)
    attention.set_kernel(model, "flex_attention")
    attention.set_kernel(ref, "sdpa")
    model.eval(), ref.eval()
    assert mem.compile_layers(model, backend="inductor") == 2
    rng = np.random.default_rng(1)
    before = compile_counts()
    for lens in ((40, 70, 18), (60, 50, 18), (100, 100, 56), (300, 84)):
        batch = collate([_ex(rng, n) for n in lens])
        with torch.no_grad():
            flex, _ = packed_loss_sum(model, batch, 32)
            sdpa, _ = packed_loss_sum(ref, batch, 32)
        assert float(flex) == pytest.approx(float(sdpa), rel=1e-5), lens
    after = compile_counts()
    assert after["graphs"] - before["graphs"] == 2 and after["recompiles"] - before["recompiles"] == 1, (before, after)
