"""CUDA paths that CPU CI cannot exercise (``pytest -m gpu``; ``bash scripts/gpu_check.sh`` runs them).

Every test here is marked ``gpu`` and skipped with a reason on a machine without CUDA.
All models are random-weight (tiny LLaMA, SNAC 24 kHz architecture): no network, no hub.
Each asserts a property that fails when the CUDA path breaks it (equal tokens, equal
losses, equal bits after resume), not just that the code runs.
"""
import os

# cuBLAS is deterministic only with a fixed workspace; must be set before the first cuBLAS handle.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from assets_utterances import random_code_utterances  # noqa: E402
from tiny_export import extended_tiny  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU: no CUDA device on this machine "
                                            "(run bash scripts/gpu_check.sh on one)"),
]
CUDA = torch.device("cuda")


def _needs(module: str, why: str):
    """pytest.importorskip with a reason that says what the test would check."""
    return pytest.importorskip(module, reason=f"{module} is not installed: {why}")


def _tiny(seed=0, dtype=torch.float32):
    model, tok, layout = extended_tiny(seed)
    return model.to(device=CUDA, dtype=dtype).eval(), tok, layout


def _ex(rng, n, vocab, n_prompt=2):
    from helpers.train.sequences import IGNORE_INDEX, Example

    ids = rng.integers(0, vocab, n).astype(np.int64)
    labels = ids.copy()
    labels[:n_prompt] = IGNORE_INDEX
    return Example("x", ids, labels, "none")


# ----------------------------------------------------------------------------- per-document attention
@pytest.mark.parametrize("kernel", ["flex_attention", "flash_attention_2", "sdpa"])
def test_packed_equals_unpacked_losses_and_gradients_on_cuda(kernel):
    from helpers.train import attention
    from helpers.tiny_models import build_tiny_llama
    from helpers.train.packing import collate
    from helpers.train.recipe import packed_loss_sum

    dtype = torch.float32
    if kernel == "flash_attention_2":
        _needs("flash_attn", "flash-attn varlen is checked only where it is installed")
        dtype = torch.bfloat16  # flash-attn has no fp32 kernels
    model = build_tiny_llama(300, seed=4).to(device=CUDA, dtype=dtype)
    expected = attention.SDPA_DOCUMENTS if kernel == "sdpa" else kernel  # "sdpa" installs per-document SDPA
    assert attention.set_kernel(model, kernel) == expected
    model.train()
    rng = np.random.default_rng(4)
    exs = [_ex(rng, n, 300) for n in (300, 45, 129, 700)]  # rows cross several 128-token blocks
    packed, _ = packed_loss_sum(model, collate(exs))
    packed.backward()
    g_packed = [p.grad.float().clone() for p in model.parameters()]
    model.zero_grad()
    alone = 0.0
    for e in exs:
        s, _ = packed_loss_sum(model, collate([e]))
        s.backward()
        alone += float(s.detach())
    g_alone = [p.grad.float() for p in model.parameters()]
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert abs(float(packed.detach()) - alone) < tol * alone
    worst = max(float((a - b).norm() / (b.norm() + 1e-12)) for a, b in zip(g_packed, g_alone))
    assert worst < (5e-2 if dtype == torch.bfloat16 else 1e-3), f"{kernel}: gradient rel. error {worst:.2e}"


def test_flex_attention_under_bf16_autocast_on_cuda(monkeypatch):
    """precision="bf16-mixed": an fp32 model under bf16 autocast with FlexAttention (transformers' compiled
    flex_attention). RoPE's fp32 cos/sin make query and key fp32 beside a bf16 value; through
    attention.set_kernel all three reach the kernel in bf16 (refused, or fp32 kernels, otherwise), and the loss
    and gradients match the per-document SDPA under the same autocast (bf16: loss 1e-2, gradients 5e-2 relative)."""
    import transformers.integrations.flex_attention as hf_flex

    from helpers.train import attention
    from helpers.tiny_models import build_tiny_llama
    from helpers.train.packing import collate
    from helpers.train.recipe import packed_loss_sum

    seen = []
    forward = hf_flex.flex_attention_forward

    def spy(module, q, k, v, *args, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return forward(module, q, k, v, *args, **kwargs)

    monkeypatch.setattr(hf_flex, "flex_attention_forward", spy)
    rng = np.random.default_rng(5)
    batch = collate([_ex(rng, n, 300) for n in (300, 45, 129, 200)])
    results = []
    for kernel in ("flex_attention", "sdpa"):
        model = build_tiny_llama(300, seed=5).to(CUDA).train()
        attention.set_kernel(model, kernel)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, n = packed_loss_sum(model, batch, 64)
        (loss / n).backward()
        results.append((float(loss), [p.grad.float().clone() for p in model.parameters()]))
    assert seen and set(seen) == {(torch.bfloat16,) * 3}, seen
    (flex, g_flex), (sdpa, g_sdpa) = results
    assert flex == pytest.approx(sdpa, rel=1e-2)
    worst = max(float((a - b).norm() / (b.norm() + 1e-12)) for a, b in zip(g_flex, g_sdpa))
    assert worst < 5e-2, f"flex vs sdpa under autocast: gradient rel. error {worst:.2e}"


# ----------------------------------------------------------------------------- precision and optimizers
def test_bf16_mixed_autocast_with_bitsandbytes_8bit_trains():
    """The A100-80GB plan: fp32 parameters, bf16 autocast, bitsandbytes AdamW8bit states."""
    _needs("bitsandbytes", "the 8-bit optimizer step")
    from helpers.train import memory
    from helpers.train.packing import collate
    from helpers.train.recipe import packed_loss_sum

    model, _, _ = _tiny(seed=1)
    model.train()
    opt = memory.build_optimizer(model, "adamw_8bit", lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8)
    assert type(opt).__name__ == "AdamW8bit"
    rng = np.random.default_rng(1)
    batch = collate([_ex(rng, n, model.config.vocab_size) for n in (200, 120)])
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(12):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, n = packed_loss_sum(model, batch)
        (loss / n).backward()
        opt.step()
        losses.append(float(loss) / n)
    assert all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    states = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.numel() > 1]
    assert any(t.dtype == torch.uint8 for t in states), "bitsandbytes kept no 8-bit state"


@pytest.mark.parametrize("rounding,tol", [("master", 0.10), ("stochastic", 0.45)])
def test_bf16adamw_on_cuda_follows_the_fp32_reference(rounding, tol):
    from helpers.train.precision import BF16AdamW

    def mlp():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.SiLU(), torch.nn.Linear(64, 32))
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.02)
        return net.to(CUDA)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 32, generator=g).to(CUDA), torch.randn(64, 32, generator=g).to(CUDA)

    def train(net, opt, dtype):
        for _ in range(150):
            opt.zero_grad(set_to_none=True)
            ((net(x.to(dtype)).float() - y) ** 2).mean().backward()
            opt.step()
        return torch.cat([p.detach().float().flatten() for p in net.parameters()])

    ref_net = mlp()
    start = torch.cat([p.detach().float().flatten() for p in ref_net.parameters()])
    ref = train(ref_net, torch.optim.AdamW(ref_net.parameters(), lr=5e-6, weight_decay=0.0), torch.float32) - start
    net = mlp().to(torch.bfloat16)
    start16 = torch.cat([p.detach().float().flatten() for p in net.parameters()])
    opt = BF16AdamW(net.parameters(), lr=5e-6, rounding=rounding, state_dtype=torch.float32, seed=3)
    drift = train(net, opt, torch.bfloat16) - start16
    err = float((drift - ref).norm() / ref.norm())
    assert err < tol, f"{rounding} on CUDA: drift differs from fp32 by {err:.0%}"
    assert float(F.cosine_similarity(drift, ref, dim=0)) > 0.9
    # and plain bf16 AdamW really loses the updates on CUDA too (the test can tell the difference)
    bug = mlp().to(torch.bfloat16)
    b0 = torch.cat([p.detach().float().flatten() for p in bug.parameters()])
    lost = train(bug, torch.optim.AdamW(bug.parameters(), lr=5e-6, weight_decay=0.0), torch.bfloat16) - b0
    assert float((lost - ref).norm() / ref.norm()) > 0.8


def test_chunked_ce_equals_full_ce_on_cuda():
    from helpers.train import memory

    g = torch.Generator().manual_seed(5)
    n, h, v = 1500, 64, 5003
    hidden = torch.randn(n, h, generator=g).to(CUDA).requires_grad_()
    weight = (0.3 * torch.randn(v, h, generator=g)).to(CUDA).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g).to(CUDA)
    labels[::7] = -100
    loss = memory.chunked_causal_lm_loss(hidden, weight, labels, chunk_size=256, reduction="sum", use_liger=False)
    loss.backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = F.cross_entropy(hidden @ weight.T, labels, reduction="sum", ignore_index=-100)
    ref.backward()
    assert torch.allclose(loss.float(), ref.float(), rtol=1e-5)
    assert torch.allclose(gh, hidden.grad, rtol=1e-4, atol=1e-6)
    # The weight gradient sums 1,500 rows: chunks of 256 vs one cuBLAS matmul (split-K) add in a different
    # order, so compare in norm (a wrong chunk or a dropped row moves it by orders of magnitude more).
    rel = (gw - weight.grad).norm() / weight.grad.norm()
    assert rel < 1e-5, f"chunked CE weight gradient differs from the full CE's by {rel:.2e} (relative norm)"


# ----------------------------------------------------------------------------- exact resume on CUDA
@pytest.mark.parametrize("attention_kernel,optimizer", [("sdpa", "adamw_torch"), ("auto", "adamw_torch"),
                                                        ("auto", "adamw_bf16_stochastic")])
def test_two_cuda_runs_give_the_same_losses_and_resume_is_exact(tmp_path_factory, attention_kernel, optimizer):
    """Deterministic settings (torch.use_deterministic_algorithms + CUBLAS_WORKSPACE_CONFIG): two runs of
    the recipe on CUDA give the same loss bits, and a run resumed from its step-3 checkpoint lands on them.
    ``adamw_bf16_stochastic``: Colab's stage-2 optimizer on a pure-bf16 model, BF16AdamW with its compiled
    update (fused="auto" on CUDA): moments, rounding-noise generators (CUDA) and weights after the resume."""
    import shutil

    from helpers.train import checkpoints as ckpt
    from helpers import models
    from helpers.train.config import stage_config
    from helpers.profiles import TINY_LLAMA
    from helpers.train.sequences import choose_builtin_voices
    from helpers.train.recipe import METRICS_FILE, StageRecipe

    root = tmp_path_factory.mktemp("gpu_resume")
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    models.save_stage(model, tok, root / "stage1")
    utts = random_code_utterances(24, seed=0, accents=("us",) * 3, frames=(6, 14), text="sentence {i}")
    kw = dict(max_seq_len=256, max_steps=6, warmup_steps=2, learning_rate=2e-3, log_every=1, save_every=3,
              eval_every=0, keep_last=3, progress=False, reference_prob=0.5, eval_fraction=0.0,
              precision="fp32", optimizer="adamw_torch", optimizer_state="fp32", checkpointing="none", ce_chunk=0,
              selective_every=2, attention=attention_kernel)
    if optimizer == "adamw_bf16_stochastic":
        kw.update(precision="bf16-pure", optimizer=optimizer, optimizer_state="bf16", learning_rate=2e-4)

    def run(stage):
        m, t = models.load_stage(root / "stage1")
        r = StageRecipe(stage_config(2, "tiny", local_dir=str(stage / "l"), **kw), m, t, utts, stage,
                        choose_builtin_voices(utts), log=lambda s: None).setup()
        assert r.device.type == "cuda"
        r.train()
        return r

    def losses(stage):
        return [line.split(",")[:3] for line in (stage / METRICS_FILE).read_text().splitlines()[1:]]

    torch.use_deterministic_algorithms(True)
    try:
        a, b = root / "a", root / "b"
        ra = run(a)
        run(b)
        assert len(losses(a)) == 6 and losses(a) == losses(b), (losses(a), losses(b))
        weights = {k: v.detach().clone() for k, v in ra.model.state_dict().items()}
        shutil.rmtree(a / "checkpoints" / ckpt.step_dir_name(6))
        straight = losses(a)
        rc = run(a)
        assert rc.resumed_from and rc.resumed_from.endswith(ckpt.step_dir_name(3))
        assert losses(a) == straight
        got = rc.model.state_dict()
        assert all(torch.equal(weights[k], got[k]) for k in weights)
        if optimizer == "adamw_bf16_stochastic":
            assert rc.optimizer.fused == "auto" and getattr(rc.optimizer, "_generators")
            assert all(str(k).startswith("cuda") for k in rc.optimizer._generators)  # the noise stream is the GPU's
            for p, st in rc.optimizer.state.items():
                assert st["exp_avg"].dtype == torch.bfloat16 and st["exp_avg"].device == p.device
    finally:
        torch.use_deterministic_algorithms(False)


def test_flex_attention_training_has_no_recompile_storm_on_cuda(tmp_path):
    """The recipe with FlexAttention on CUDA (compiled kernel + compiled BlockMask builder) over packed
    rows of >= 5 distinct lengths, with an evaluation (eval mode + greedy generation) in the middle:
    rows are padded to the bucket lengths, generation runs SDPA, and the recompile count stays bounded
    (at most one compile per bucket length and mode, far below dynamo's recompile limit of 8)."""
    from helpers import models
    from helpers.train.config import stage_config
    from helpers.profiles import TINY_LLAMA
    from helpers.train.sequences import choose_builtin_voices
    from helpers.train.recipe import StageRecipe, compile_counts

    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    utts = random_code_utterances(40, seed=1, accents=("us",) * 3, frames=(4, 20), text="sentence {i}")
    cfg = stage_config(2, "tiny", max_seq_len=256, max_steps=12, warmup_steps=2, log_every=2, save_every=100,
                       eval_every=6, eval_max_new_frames=4, progress=False, eval_fraction=0.1, precision="fp32",
                       optimizer="adamw_torch", optimizer_state="fp32", checkpointing="none", ce_chunk=0,
                       attention="flex_attention", local_dir=str(tmp_path / "l"))
    logs = []
    r = StageRecipe(cfg, model, tok, utts, tmp_path / "stage2", choose_builtin_voices(utts), log=logs.append).setup()
    assert r.attention == "flex_attention"
    before = compile_counts()
    r.train()
    after = compile_counts()
    print(f"recompiles: {after['recompiles'] - before['recompiles']}, graphs: {after['graphs'] - before['graphs']}")
    assert after["recompiles"] - before["recompiles"] <= 16, (before, after, logs)


# ----------------------------------------------------------------------------- codec and decoding
def test_snac_batch_equals_single_on_cuda():
    _needs("snac", "the SNAC codec")
    from helpers.codec import SnacCodec
    from helpers.profiles import RANDOM_SNAC_24KHZ

    codec = SnacCodec.load(RANDOM_SNAC_24KHZ, device="cuda")
    lengths = [24000, 2400, 120000, 2049, 55200]
    rng = np.random.default_rng(0)
    wavs = [(0.1 * rng.standard_normal(n) * np.sin(np.linspace(0, 40, n)) ** 2).astype(np.float32)
            for n in lengths]
    single = [codec.encode(w) for w in wavs]
    for bs in (3, 2):
        batched = codec.encode_batch(wavs, batch_size=bs)
        for i, (s, b) in enumerate(zip(single, batched)):
            for cs, cb in zip(s, b):
                assert np.array_equal(cs, cb), f"clip {i}, batch_size {bs}: codes differ on CUDA"


def test_compiled_decode_equals_eager_tokens_and_syncs_once_per_frame():
    """The engine's compiled decoding on CUDA (inductor, CUDA graphs) gives eager's tokens in fp32, compiles
    once per bucket, and the device is synchronised once per frame (counted by CUDA's sync debug mode)."""
    from helpers.infer.decode_step import CompiledDecoding
    from helpers.infer.generation import GREEDY, AudioDecoder, SamplingConfig, generate_audio_tokens

    model, tok, layout = _tiny(seed=2)
    prompts = [layout.build_prompt(tok.encode(t, add_special_tokens=False), bos_id=tok.bos_token_id, voice=v)
               for t, v in (("Hi there.", "female_uk_01"), ("A longer second prompt, padded on the left.",
                                                          "male_us_01"))]
    comp = CompiledDecoding(model)
    for cfg in (GREEDY, SamplingConfig()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eager = generate_audio_tokens(model, layout, prompts, seeds=[1, 2], max_frames=[12, 9], sampling=cfg,
                                          loop_guard=None)
            compiled = generate_audio_tokens(model, layout, prompts, seeds=[1, 2], max_frames=[12, 9],
                                             sampling=cfg, loop_guard=None, compiled=comp)
        for e, c in zip(eager, compiled):
            assert e.n_frames > 0
            np.testing.assert_array_equal(e.tokens, c.tokens)
    assert comp.compiles == 2, comp.compiles  # one bucket (batch 2, 512 positions) per sampling kind
    syncs = {}
    for frames in (3, 9):
        dec = AudioDecoder(model, layout, prompts[:1], seeds=[0], max_frames=[frames], loop_guard=None,
                           compiled=comp)
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                dec.run()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs[frames] = sum("synchroniz" in str(w.message) for w in got)
        assert dec.host_syncs == frames
    assert syncs[9] - syncs[3] == 6, syncs  # one per extra frame, none per token
    report = comp.cudagraph_report()  # "reduce-overhead": the steps replay as CUDA graphs, none skipped
    assert report["wanted"] and report["recorded"] >= 2 and report["skips"] == 0, report
    assert report["non_static_inputs"] == 0, report  # no input copied into the graph at each replay
    print(f"CUDA syncs per request: {syncs}; compiles {comp.compiles}, {comp.compile_seconds:.1f} s compiling; "
          f"CUDA graphs {report}")


def test_compiled_decoding_records_cuda_graphs_in_a_thread_that_did_not_import_inductor():
    """The server decodes on its worker thread. Before pytorch#184357 (torch 2.11 has it not), a
    "reduce-overhead" graph first run in such a thread failed an assert in cudagraph_trees.get_obj;
    the engine sets the thread up (ensure_cudagraph_tls). There the steps are recorded as CUDA graphs,
    none skipped, and the audio equals the eager engine's (fp32)."""
    import threading

    _needs("snac", "the SNAC codec")
    from helpers.codec import SnacCodec
    from helpers.infer.engine import OptimumTTS
    from helpers.infer.generation import LengthGuard
    from helpers.profiles import RANDOM_SNAC_24KHZ

    model, tok, _ = _tiny(seed=1)
    codec = SnacCodec.load(RANDOM_SNAC_24KHZ, device="cuda")
    guard = LengthGuard(base_seconds=0.3, chars_per_second=60)
    tts = OptimumTTS(model, tok, codec, length_guard=guard)  # compile="auto": compiled on CUDA
    assert tts.compiled is not None and tts.compiled.cudagraphs
    out = {}

    def worker():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["audio"] = tts.generate("Decoded on a worker thread.", seed=3)
            out["report"] = tts.compiled.cudagraph_report()
        except BaseException as e:  # handed to the test thread
            out["error"] = e
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    report = out["report"]
    assert report["recorded"] >= 1 and report["skips"] == 0 and report["non_static_inputs"] == 0, report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = OptimumTTS(model, tok, codec, length_guard=guard, compile=False).generate(
            "Decoded on a worker thread.", seed=3)
    np.testing.assert_array_equal(out["audio"], want)
    print(f"worker-thread CUDA graphs: {report}")


def test_streaming_equals_non_streaming_on_cuda():
    _needs("snac", "the SNAC codec")
    from helpers.codec import SnacCodec
    from helpers.infer.generation import LengthGuard
    from helpers.infer.engine import OptimumTTS
    from helpers.infer.snac_decode import STREAM_TOLERANCE
    from helpers.profiles import RANDOM_SNAC_24KHZ

    model, tok, _ = _tiny(seed=0)
    tts = OptimumTTS(model, tok, SnacCodec.load(RANDOM_SNAC_24KHZ, device="cuda"),
                     length_guard=LengthGuard(base_seconds=0.3, chars_per_second=60))
    text = "Hello there. [happy] How are you today?"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = tts.generate(text, seed=7, return_result=True)
        stream = tts.stream(text, seed=7, chunk_frames=2, first_chunk_frames=1)
        pieces = list(stream)
    streamed = np.concatenate(pieces)
    assert len(pieces) > 3 and streamed.shape == full.audio.shape
    assert np.abs(streamed - full.audio).max() <= STREAM_TOLERANCE
    assert [c.codes[0].tolist() for c in stream.chunks] == [c.codes[0].tolist() for c in full.chunks]


# ----------------------------------------------------------------------------- evaluation judges
def test_evaluation_judges_run_on_cuda_when_their_weights_are_local():
    """Judges whose weights ship inside pip packages (no hub): the speaker encoder on CUDA agrees with CPU,
    and Whisper on CUDA transcribes a clean corpus clip."""
    _needs("resemblyzer", "the speaker-similarity judge's weights ship with it")
    from helpers.evaluate import judges as em
    from helpers.audio import load_audio
    from helpers.data.corpus import read_metadata

    meta = {r["utterance_id"]: r for r in read_metadata()}
    utt = "male_us_01_01_neutral"
    wav, sr = load_audio(meta[utt]["file"], target_sr=None)
    gpu_enc, cpu_enc = em.load_speaker_encoder(em.RESEMBLYZER, "cuda"), em.load_speaker_encoder(em.RESEMBLYZER, "cpu")
    a, b = gpu_enc.embed(wav, sr), cpu_enc.embed(wav, sr)
    assert float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.999
    try:
        asr = em.load_asr(em.WHISPER_TINY_EN_OFFLINE, device="cuda")
    except (ImportError, FileNotFoundError, RuntimeError, ValueError) as e:
        pytest.skip(f"Whisper tiny.en (offline package) cannot load on CUDA here: {e}")
    from helpers.scores import error_rates

    assert error_rates(meta[utt]["text"], asr.transcribe(wav, sr))["wer"] < 0.35


# ----------------------------------------------------------------------------- fused optimizer, compiled layers
@pytest.mark.parametrize("rounding,state_dtype", [("stochastic", torch.bfloat16), ("master", torch.float32)])
def test_fused_bf16adamw_matches_the_eager_update_on_cuda(rounding, state_dtype):
    """BF16AdamW's compiled update (Triton) against its eager update on CUDA, one step from the same state
    with the same noise stream: the generator states are equal afterwards (same draws); fp32 values agree
    to 2 fp32 ulps of their size and bf16 values are equal or neighbours (inductor mirrors eager CUDA's
    FMAs, so most are bit-identical: the fraction is printed)."""
    _needs("triton", "the fused update compiles with Triton")
    from helpers.train.precision import BF16AdamW, bf16_ulp

    n = (1 << 20) + 7
    g = torch.Generator().manual_seed(0)
    p0 = (torch.randn(n, generator=g) * 0.02).to(torch.bfloat16)
    grads = [(torch.randn(n, generator=g) * 1e-3).to(torch.bfloat16) for _ in range(3)]
    out = []
    for fused in (False, True):
        p = torch.nn.Parameter(p0.to(CUDA))
        opt = BF16AdamW([p], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01, rounding=rounding,
                        state_dtype=state_dtype, seed=1, fused=False)
        for gr in grads[:2]:  # the same eager history for both
            p.grad = gr.to(CUDA)
            opt.step()
        opt.fused = fused
        p.grad = grads[2].to(CUDA)
        opt.step()
        out.append((p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)},
                    {k: s.get_state() for k, s in opt._generators.items()}))
    (pa, sa, ga), (pb, sb, gb) = out
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)
    same = {}
    for key, a, b in [("param", pa, pb)] + [(k, sa[k], sb[k]) for k in sa]:
        a64, b64 = a.double(), b.double()
        if a.dtype == torch.bfloat16:
            tol = bf16_ulp(torch.maximum(a.float().abs(), b.float().abs())).double() * 1.01
        else:
            tol = 2.0 ** -22 * torch.maximum(a64.abs(), b64.abs()) + 1e-30
        assert bool(((a64 - b64).abs() <= tol).all()), key
        same[key] = float((a == b).double().mean())
    print(f"fused vs eager on CUDA ({rounding}, {state_dtype}): bit-identical fraction {same}")


def test_compiled_decoder_layers_match_eager_on_cuda():
    """memory.compile_layers (inductor, Triton) on a tiny LLaMA in fp32 with FlexAttention: loss within 1e-4 relative and gradients
    within 1e-3 relative norm of the eager model (fused kernels reassociate reductions), with checkpointing on."""
    _needs("triton", "inductor compiles the layers with Triton")
    from helpers.tiny_models import build_tiny_llama
    from helpers.train import memory
    from helpers.train.packing import collate
    from helpers.train.recipe import packed_loss_sum

    from helpers.train import attention

    rng = np.random.default_rng(0)
    ref = build_tiny_llama(300).to(CUDA).train()
    ref.config.use_cache = False
    attention.set_kernel(ref, "flex_attention")  # the Colab kernel: the row's layout is a BlockMask (tensors)
    batch = collate([_ex(rng, n, 300) for n in (40, 70, 18)])
    batch = {k: (v.to(CUDA) if k != "labels" and k != "seq_lens" else v) for k, v in batch.items()}
    loss_ref, n = packed_loss_sum(ref, batch, 32)
    (loss_ref / n).backward()
    model = build_tiny_llama(300).to(CUDA).train()
    model.config.use_cache = False
    model.load_state_dict(ref.state_dict())
    attention.set_kernel(model, "flex_attention")
    memory.enable_checkpointing(model, "full")
    assert memory.compile_layers(model) == len(model.model.layers)
    loss, _ = packed_loss_sum(model, batch, 32)
    (loss / n).backward()
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-4)
    for (k, p), q in zip(model.named_parameters(), ref.parameters()):
        rel = float((p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-30))
        assert rel < 1e-3, (k, rel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_liger_kernels_match_the_reference_on_cuda(dtype, monkeypatch):
    """memory.apply_kernels(model, "liger") (Liger-Kernel's RMSNorm, SwiGLU, RoPE and fused linear CE) on a tiny
    LLaMA with FlexAttention and packed rows, against the same weights without it. Tolerances: fp32 — loss within
    1e-4 relative, every parameter's gradient within 1e-3 relative norm (the kernels reassociate the same sums);
    bf16 — loss within 1e-2 relative, gradients within 5e-2 relative norm (bf16 has 8 bits of mantissa: each
    kernel rounds its intermediates in its own order). Also: a model built after it is plain (the patch is per
    instance) and the kernels really ran (the modules' forwards are Liger's)."""
    _needs("liger_kernel", "Liger-Kernel's fused kernels are compared with the reference")
    _needs("triton", "Liger-Kernel's kernels are Triton")
    from helpers.tiny_models import build_tiny_llama
    from helpers.train import attention, memory
    from helpers.train.packing import collate
    from helpers.train.recipe import packed_loss_sum

    rng = np.random.default_rng(0)
    batch = collate([_ex(rng, n, 300) for n in (40, 70, 18)])
    batch = {k: (v.to(CUDA) if k != "labels" and k != "seq_lens" else v) for k, v in batch.items()}

    def build():
        m = build_tiny_llama(300).to(device=CUDA, dtype=dtype).train()
        m.config.use_cache = False
        attention.set_kernel(m, "flex_attention")
        return m

    from transformers.models.llama import modeling_llama

    ref = build()
    model = build()
    model.load_state_dict(ref.state_dict())
    # the reference runs HF's own RoPE: apply_kernels replaces the module-level function (for CUDA tensors) for the
    # whole process, so after it (or after the first parametrisation) every CUDA LLaMA would run Liger's RoPE
    hf_rope = getattr(modeling_llama.apply_rotary_pos_emb, "_helpers_original", modeling_llama.apply_rotary_pos_emb)
    with monkeypatch.context() as mp:
        mp.setattr(modeling_llama, "apply_rotary_pos_emb", hf_rope)
        loss_ref, n = packed_loss_sum(ref, batch, 32)
        (loss_ref / n).backward()
    done = memory.apply_kernels(model, "liger")
    assert modeling_llama.apply_rotary_pos_emb._helpers_original is hf_rope
    assert memory.applied_kernels(model) == "liger" and any("RMSNorm" in d for d in done)
    def impl(module):  # the module that defines the forward this instance runs
        return module.forward.__func__.__module__

    assert "liger_kernel" in impl(model.model.layers[0].mlp) and "liger_kernel" in impl(model.model.norm)
    plain = build()  # built after: the patch was per instance
    assert memory.applied_kernels(plain) == "none" and "liger_kernel" not in impl(plain.model.layers[0].mlp)
    assert "liger_kernel" not in impl(plain.model.layers[0].input_layernorm)
    loss, n = packed_loss_sum(model, batch, 32)
    (loss / n).backward()
    losses = [float(loss_ref), float(loss)]
    loss_tol, grad_tol = (1e-4, 1e-3) if dtype == torch.float32 else (1e-2, 5e-2)
    assert losses[1] == pytest.approx(losses[0], rel=loss_tol)
    worst = 0.0
    for (k, p), q in zip(model.named_parameters(), ref.parameters()):
        rel = float((p.grad.float() - q.grad.float()).norm() / q.grad.float().norm().clamp_min(1e-30))
        worst = max(worst, rel)
        assert rel < grad_tol, (k, rel)
    print(f"liger vs reference ({dtype}): loss {losses[1]:.6f} vs {losses[0]:.6f}, worst gradient rel-norm {worst:.2e}")
