"""Training-step benchmark: tokens/s, MFU and peak memory of the planner's configuration.

No hub access needed: the model is Llama-3.2-3B's architecture built from its
config with random weights and the extended (padded) vocabulary of the token
contract. Each step trains on packed rows of random token ids whose position ids
restart every ~1-3K tokens (like real packed TTS examples), with the memory
techniques of :mod:`helpers.train.memory` chosen by :mod:`helpers.train.planner` for the
``--plan-gpu`` (default: Colab's A100 40 GB) unless overridden.

GPU (see benchmarks/README.md)::

    python benchmarks/bench_train.py --model llama-3.2-3b --tokens-per-step 4096 8192 \
        --steps 10 --memory-cap-gb 40 --record benchmarks/results.jsonl

CPU smoke run (CI)::

    python benchmarks/bench_train.py --model tiny --tokens-per-step 512 1024 --steps 2

Stage 2 as Colab runs it (the stage's own config: accumulation, tokens per micro-batch,
checkpointing, optimizer, attention, CE chunking, planned for ``--plan-gpu``), with the time split
per optimizer step; today's path and the fused/compiled one side by side (GPU)::

    python benchmarks/bench_train.py --stage 2 --profile colab --steps 6 --warmup 2 --memory-cap-gb 40 \
        --fused-optimizer off
    python benchmarks/bench_train.py --stage 2 --profile colab --steps 6 --warmup 2 --memory-cap-gb 40 \
        --fused-optimizer on --compile-layers
    python benchmarks/bench_train.py --stage 2 --profile colab --steps 6 --warmup 2 --memory-cap-gb 40 \
        --optimizer adamw_bf16_torchao          # torchao's AdamW + bf16 stochastic rounding instead
    python benchmarks/bench_train.py --stage 2 --profile colab --steps 6 --warmup 2 --memory-cap-gb 40 \
        --kernels liger                         # Liger-Kernel's RMSNorm / SwiGLU / RoPE / fused linear CE

CPU (the same code on the tiny model, smaller micro-batches)::

    python benchmarks/bench_train.py --stage 2 --profile colab --model tiny --tokens-per-step 1024 \
        --grad-accum 4 --steps 2 --warmup 1

Packed loop vs HF Trainer (CPU; useful tokens/s on the same examples, see benchmarks/README.md)::

    python benchmarks/bench_train.py --model tiny --vs-trainer 24 --tokens-per-step 4096 --threads 1

Prints one block per token budget and a final JSON line per budget (``BENCH {...}``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

import torch  # noqa: E402

from helpers.train import attention  # noqa: E402
from helpers.train import memory as mem  # noqa: E402
from helpers.train import planner  # noqa: E402
from helpers.train import plan_gpus
from helpers.train import plan_memory
from helpers.train import plan_model
from helpers.tokens import TokenLayout  # noqa: E402
from helpers.train.recipe import compile_counts  # noqa: E402

LLAMA_3_2_3B_BASE_VOCAB = plan_model.LLAMA_3_2_3B.vocab  # 128,256 (meta-llama/Llama-3.2-3B config.json)


def llama_config(name: str):
    """LlamaConfig of ``name`` ("llama-3.2-3b" or "tiny") with the extended, padded vocabulary."""
    from transformers import LlamaConfig

    if name == "llama-3.2-3b":
        s = plan_model.LLAMA_3_2_3B
        vocab = TokenLayout(LLAMA_3_2_3B_BASE_VOCAB).padded_vocab_size()
        return LlamaConfig(
            vocab_size=vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads, head_dim=s.head_dim, intermediate_size=s.intermediate,
            max_position_embeddings=131_072, rms_norm_eps=1e-5, tie_word_embeddings=True,
            # Llama 3.2's RoPE: theta 500k with the "llama3" frequency scaling of its config.json
            rope_parameters={"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 32.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192},
            use_cache=False)
    if name == "tiny":
        from helpers.tiny_models import TINY_BPE_VOCAB_SIZE, TINY_LLAMA_CONFIG

        c = dict(TINY_LLAMA_CONFIG)
        theta = c.pop("rope_theta")
        return LlamaConfig(vocab_size=TokenLayout(TINY_BPE_VOCAB_SIZE).padded_vocab_size(),
                           rope_parameters={"rope_type": "default", "rope_theta": theta}, use_cache=False, **c)
    raise ValueError(f"unknown model {name!r}; expected 'llama-3.2-3b' or 'tiny'")


def packed_batch(vocab: int, tokens: int, doc_range: tuple[int, int], generator: torch.Generator):
    """(input_ids, labels, position_ids), each (1, tokens) int64; documents of doc_range tokens.

    Positions restart at 0 per document; the first label of each document is -100
    (as :func:`helpers.train.packing.collate` does). Returns also the document lengths.
    """
    lo, hi = doc_range
    lens = []
    while sum(lens) < tokens:
        lens.append(int(torch.randint(lo, hi + 1, (1,), generator=generator)))
    lens[-1] -= sum(lens) - tokens
    ids = torch.randint(0, vocab, (1, tokens), generator=generator)
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    labels = ids.clone()
    labels[0, pos[0] == 0] = -100
    return ids, labels, pos, lens


def peak_tflops(device: torch.device) -> tuple[str, float | None, int | None]:
    """(card name, dense bf16 peak TFLOP/s from the planner's table or None, total memory bytes)."""
    if device.type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()})", None, None
    name = torch.cuda.get_device_name(device)
    total = torch.cuda.get_device_properties(device).total_memory
    spec = plan_gpus.match_gpu(name, total)
    return name, (None if spec.assumed_compute else spec.bf16_tflops), total


def choose_settings(args, shape, tokens: int, attention: str):
    """The planner's TrainPlan for ``--plan-gpu`` at ``tokens`` with this attention kernel, then the
    command-line overrides."""
    from dataclasses import replace

    plan = planner.plan_for_gpu(shape, gpu=args.plan_gpu, tokens_per_step=tokens, grad_accum=args.grad_accum,
                                attention=attention).train
    if plan.zero_stage:
        raise SystemExit(f"the planner chose DeepSpeed ZeRO-{plan.zero_stage} for {args.plan_gpu}; this benchmark "
                         "measures single-GPU configurations (pass --checkpointing/--optimizer to pick one)")
    s = mem.settings_for_plan(plan)
    over = {}
    if args.optimizer != "auto":
        over["optimizer"] = args.optimizer
        over["model_dtype"] = torch.float32 if args.optimizer in ("adamw_torch", "adamw_8bit") else torch.bfloat16
        over["autocast"] = over["model_dtype"] == torch.float32
    if args.checkpointing != "auto":
        over["checkpointing"] = args.checkpointing
    if args.ce_chunk is not None:
        over["ce_chunk"] = args.ce_chunk
    return plan, replace(s, **over)


def run_budget(args, config, device, tokens: int) -> dict:
    from transformers import LlamaForCausalLM

    shape = plan_model.ModelShape.from_config(config)
    # the kernel the recipe would pick here (bf16 compute: autocast or a bf16 model)
    attn = mem.choose_attention(device, torch.bfloat16, prefer=args.attention)
    plan, s = choose_settings(args, shape, tokens, attn)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    dtype = s.model_dtype
    config._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.train()
    attention.set_kernel(model, attn)  # as the recipe does: "sdpa" becomes SDPA per document
    layers = mem.enable_checkpointing(model, s.checkpointing, every=s.selective_every,
                                      layers=s.checkpoint_layers if s.checkpointing == "selective" else None)
    opt = mem.build_optimizer(model, s.optimizer, lr=5e-6, weight_decay=0.01, state_dtype=s.state_dtype)
    gen = torch.Generator().manual_seed(1)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=s.autocast)
    chunk = s.ce_chunk if s.ce_chunk > 0 else tokens

    def step():
        opt.zero_grad(set_to_none=True)
        n_tok, docs = 0, []
        for _ in range(args.grad_accum):
            ids, labels, pos, lens = packed_batch(config.vocab_size, tokens, tuple(args.doc_tokens), gen)
            # (rows are exactly `tokens` long here: one shape per budget, as the recipe's bucketed rows)
            # labels stay on the CPU, as collate's in the recipe: counting targets then needs no GPU sync
            # flex_attention: the row's document BlockMask (per-document work); sdpa / flash: from positions.
            # Checked and built from CPU tensors (as collate's in the recipe): no host sync per micro-batch
            amask = attention.packed_attention_mask(model, {"input_ids": ids, "position_ids": pos,
                                                            "seq_lens": torch.tensor(lens)})
            ids, pos = ids.to(device), pos.to(device)
            with autocast:
                loss, n = mem.causal_lm_loss(model, ids, labels, position_ids=pos, attention_mask=amask,
                                             chunk_size=chunk, **attention.packed_kwargs(
                                                 model, {"input_ids": ids, "seq_lens": torch.tensor(lens)}))
            (loss / args.grad_accum).backward()
            n_tok += tokens
            docs += lens
        opt.step()
        return float(loss.detach()), n_tok, docs

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    n_tokens, docs, last = 0, [], float("nan")
    for _ in range(args.steps):
        last, n, d = step()
        n_tokens += n
        docs += d
    sync()
    dt = time.perf_counter() - t0
    tps = n_tokens / dt
    card, peak, total = peak_tflops(device)
    mean_span = sum(n * n for n in docs) / max(1, sum(docs))  # token-weighted attention span
    flops_tok = plan_model.model_flops_per_token(shape, int(round(mean_span)))
    mfu = tps * flops_tok / (peak * 1e12) if peak else None
    if device.type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated(device)
        mem_kind = "torch.cuda.max_memory_allocated"
    else:
        import resource

        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        mem_kind = "process max RSS (CPU)"
    ran = model.config._attn_implementation  # the kernel that actually ran
    if ran in (attention.SDPA_DOCUMENTS, attention.SDPA_DOCUMENTS_COMPILED):
        ran = "sdpa"  # the planner's name (it still prices SDPA as one whole-row call: an upper bound)
    pred_plan = replace_tokens(plan, mean_doc_tokens=max(1, int(round(mean_span))), attention=ran)
    pred_mem = plan_memory.estimate_memory(shape, pred_plan).peak
    pred_gpu = args.plan_gpu if device.type != "cuda" else plan_gpus.match_gpu(card, total)
    pred_tp = planner.estimate_throughput(shape, pred_plan, pred_gpu)
    result = {
        "date": _dt.date.today().isoformat(), "card": card, "model": args.model, "params": shape.param_count(),
        "vocab": shape.vocab, "tokens_per_step": tokens, "grad_accum": args.grad_accum, "steps": args.steps,
        "memory_cap_gb": args.memory_cap_gb if device.type == "cuda" else None,
        "precision": "bf16-mixed (fp32 master, autocast)" if s.autocast else str(dtype).replace("torch.", ""),
        "optimizer": s.optimizer, "state_dtype": str(s.state_dtype).replace("torch.", ""),
        "checkpointing": s.checkpointing, "checkpointed_layers": len(layers), "ce_chunk": s.ce_chunk,
        "attention": ran, "attention_gflop_per_token": round(plan_model.attention_flops_per_token(
            shape, ran, tokens, max(1, int(round(mean_span)))) / 1e9, 3), "mean_doc_tokens": round(mean_span, 1), "last_loss": round(last, 4),
        "tokens_per_s": round(tps, 1), "mfu": None if mfu is None else round(mfu, 4),
        "model_flops_per_token": flops_tok, "peak_memory_gib": round(peak_mem / plan_model.GIB, 3),
        "peak_memory_kind": mem_kind, "peak_reserved_gib": _peak_reserved_gib(device),
        "planner_gpu": pred_gpu if isinstance(pred_gpu, str) else pred_gpu.name,
        "planner_peak_gib": round(pred_mem / plan_model.GIB, 3),
        "planner_tokens_per_s": round(pred_tp.tokens_per_s, 1), "planner_mfu": round(pred_tp.mfu, 4),
        "torch": torch.__version__,
        # torch.compile activity of the whole run (FlexAttention compiles its kernel and, on CUDA, the
        # BlockMask builder): recompiles should stay at a handful, not one per micro-batch
        **{f"compile_{k}": v for k, v in compile_counts().items()},
    }
    if device.type == "cuda":
        result.update(calibration_fields(pred_gpu, pred_tp, tps, f"bench_train {result['date']} {card}, "
                                                                   f"{tokens} tokens/step, {ran}"))
    del model, opt
    return result


def _peak_reserved_gib(device: torch.device) -> float | None:
    """Peak of what the caching allocator held from the GPU (GiB; None on the CPU). The memory cap
    (set_per_process_memory_fraction) and an out-of-memory error act on this, not on the allocated peak:
    the gap is fragmentation, which a 40 GB card must hold too."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_reserved(device) / plan_model.GIB, 3)


def calibration_fields(gpu, predicted, measured_tokens_per_s: float, source: str) -> dict:
    """``calibrated_hfu`` (the hfu under which the planner would have predicted this measurement:
    :func:`helpers.train.plan_gpus.calibrate`) and ``planner_hfu`` for a known card; for a card the planner
    borrows figures for (``assumed_compute``), nothing. A measurement the planner's model cannot explain
    (faster than its non-compute time alone allows) gives ``calibration_error`` instead of raising: the
    measurement itself is recorded either way (it ran minutes of a scarce GPU)."""
    if isinstance(gpu, str) or gpu.assumed_compute:
        return {}
    try:
        cal = plan_gpus.calibrate(gpu, predicted.tokens_per_s, measured_tokens_per_s,
                                  predicted.compute_s / predicted.step_time_s, source)
    except ValueError as e:
        return {"calibrated_hfu": None, "planner_hfu": gpu.hfu, "calibration_error": str(e)}
    return {"calibrated_hfu": cal.hfu, "planner_hfu": gpu.hfu}


def _examples(n: int, vocab: int, seed: int, max_len: int):
    """``n`` (input_ids, labels) of realistic TTS example lengths: bench_packing's lognormal 1-30 s
    clips, half with a cloning reference (mean ~775 tokens), capped at ``max_len``."""
    from bench_packing import synthetic_lengths

    g = torch.Generator().manual_seed(seed)
    lens = [min(max_len, x) for x in synthetic_lengths(n, "lognormal", 0.5, seed)]
    out = []
    for n_tok in lens:
        ids = torch.randint(0, vocab, (n_tok,), generator=g)
        out.append((ids, ids.clone()))
    return out


def _ours(config, examples, budget: int, kernel: str, ce_chunk: int) -> tuple[float, float]:
    """(wall, CPU) seconds for one epoch of the recipe's loop over ``examples``: packed rows of ``budget`` tokens,
    the chunked CE, ``kernel`` ("sdpa" = per-document SDPA; "sdpa-row" = one SDPA over the whole row)."""
    import numpy as np
    from transformers import LlamaForCausalLM

    from helpers.train.packing import collate, pack
    from helpers.train.recipe import packed_loss_sum
    from helpers.train.sequences import Example

    torch.manual_seed(0)
    model = LlamaForCausalLM(config).train()
    if kernel == "sdpa-row":
        model.set_attn_implementation("sdpa")
    else:
        attention.set_kernel(model, kernel)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    exs = [Example("x", i.numpy(), l.numpy(), "none") for i, l in examples]
    bins = pack([len(e) for e in exs], budget)

    def step(b):
        opt.zero_grad(set_to_none=True)
        batch = collate([exs[i] for i in b])
        s, n = packed_loss_sum(model, batch, ce_chunk)
        (s / max(1, n)).backward()
        opt.step()

    step(bins[0])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for b in bins:
        step(b)
    return time.perf_counter() - t0, time.process_time() - c0


def _trainer(config, examples, batch_size: int, tmp: str) -> tuple[float, float]:
    """(wall, CPU) seconds of ``transformers.Trainer.train()`` for one epoch over
    ``examples`` at ``batch_size``, padded to the longest of each batch (no packing), sdpa, fp32."""
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation("sdpa")
    data = [{"input_ids": i, "labels": l} for i, l in examples]

    def collate(rows):
        n = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        lab = torch.full((len(rows), n), -100, dtype=torch.long)
        att = torch.zeros(len(rows), n, dtype=torch.long)
        for k, r in enumerate(rows):
            m = len(r["input_ids"])
            ids[k, :m], lab[k, :m], att[k, :m] = r["input_ids"], r["labels"], 1
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, num_train_epochs=1,
                             learning_rate=1e-4, save_strategy="no", report_to=[], logging_strategy="no",
                             use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False)
    warm = Trainer(model=model, args=args, train_dataset=data[:batch_size], data_collator=collate)
    warm.train()
    tr = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
    t0, c0 = time.perf_counter(), time.process_time()
    tr.train()
    return time.perf_counter() - t0, time.process_time() - c0


def vs_trainer(args, config) -> list[dict]:
    """Useful (non-padding) tokens per CPU-second of the recipe's packed loop against HF Trainer at batch 1
    and padded batch 8 on the same examples (CPU, fp32; CPU time because a shared VM's wall time mostly
    measures the other jobs; wall figures are printed too)."""
    import tempfile

    examples = _examples(args.vs_trainer, config.vocab_size, 0, args.tokens_per_step[0])
    useful = sum(len(i) for i, _ in examples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("recipe, packed rows, per-document SDPA", lambda: _ours(config, examples, args.tokens_per_step[0],
                                                                          "sdpa", args.ce_chunk or 1024)),
                ("recipe, packed rows, whole-row SDPA (before)",
                 lambda: _ours(config, examples, args.tokens_per_step[0], "sdpa-row", args.ce_chunk or 1024)),
                ("HF Trainer, batch 1 (no padding)", lambda: _trainer(config, examples, 1, tmp)),
                ("HF Trainer, batch 8 (padded)", lambda: _trainer(config, examples, 8, tmp))]
        for name, fn in runs:
            wall, cpu = fn()
            # per CPU-second: on a shared VM wall time includes waiting for a core (use --threads 1)
            rows.append({"run": name, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                         "useful_tokens_per_s": round(useful / cpu, 1),
                         "useful_tokens_per_wall_s": round(useful / wall, 1)})
    base = {r["run"]: r["useful_tokens_per_s"] for r in rows}
    b1 = base["HF Trainer, batch 1 (no padding)"]
    b8 = base["HF Trainer, batch 8 (padded)"]
    print(f"\n== {args.model}: {len(examples)} examples, {useful} tokens (mean {useful / len(examples):.0f}), "
          f"packed rows of {args.tokens_per_step[0]} tokens, {torch.get_num_threads()} thread(s)")
    for r in rows:
        r.update(vs_trainer_batch1=round(r["useful_tokens_per_s"] / b1, 3),
                 vs_trainer_batch8=round(r["useful_tokens_per_s"] / b8, 3))
        print(f"  {r['run']:46s} {r['useful_tokens_per_s']:>9} useful tokens per CPU-second "
              f"({r['useful_tokens_per_wall_s']} per wall s)  "
              f"x{r['vs_trainer_batch1']:.2f} of Trainer batch 1, x{r['vs_trainer_batch8']:.2f} of padded batch 8")
        print("BENCH " + json.dumps(dict(r, date=_dt.date.today().isoformat(), model=args.model), sort_keys=True))
    return rows


class _PhaseTimer:
    """Wall time per phase of a step: CUDA events on a GPU (no host sync until :meth:`totals`), else
    ``perf_counter`` (CPU work is synchronous)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object, object]] = []

    def _now(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def phase(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t0 = timer._now()

            def __exit__(self, *exc):
                timer.marks.append((name, self.t0, timer._now()))

        return _Span()

    def totals(self) -> dict[str, float]:
        """Seconds per phase name (synchronises once on a GPU)."""
        if self.cuda:
            torch.cuda.synchronize()
        out: dict[str, float] = {}
        for name, a, b in self.marks:
            out[name] = out.get(name, 0.0) + (a.elapsed_time(b) / 1e3 if self.cuda else b - a)
        self.marks = []
        return out


def _stage_batches(vocab: int, tokens: int, doc_range: tuple[int, int], n: int, gen: torch.Generator) -> list[dict]:
    """``n`` packed rows of ``tokens`` tokens as :func:`helpers.train.packing.collate` builds them (CPU tensors:
    counting targets needs no GPU sync), documents of ``doc_range`` tokens."""
    import numpy as np

    from helpers.train.packing import collate
    from helpers.train.sequences import Example

    out = []
    for _ in range(n):
        ids, labels, _, lens = packed_batch(vocab, tokens, doc_range, gen)
        cuts = np.cumsum([0] + lens)
        exs = [Example("b", ids[0, a:b].numpy(), labels[0, a:b].numpy(), "none") for a, b in zip(cuts[:-1], cuts[1:])]
        out.append(collate(exs))
    return out


def run_stage(args, config, device) -> dict:
    """One benchmark of a training stage's own configuration (see the module docstring)."""
    import resource
    import warnings

    from transformers import LlamaForCausalLM

    from helpers.train.config import stage_config
    from helpers.train.recipe import packed_loss_sum
    from helpers.train.sequences import IGNORE_INDEX
    from helpers.train.stage_plan import plan_stage

    from dataclasses import replace

    # The configuration Colab runs is the one planned for the 3B model on --plan-gpu at the stage's own
    # sizes; --tokens-per-step / --grad-accum (a CPU run on a smaller --model) change only the sizes
    # afterwards, so the code path (precision, optimizer, checkpointing, CE chunk, attention) is Colab's.
    plan, cfg = plan_stage(stage_config(args.stage, args.profile), llama_config("llama-3.2-3b"), gpu=args.plan_gpu,
                           n_gpus=1, log=lambda *_: None)
    over = {k: v for k, v in (("grad_accum", args.grad_accum),
                              ("max_seq_len", args.tokens_per_step[0] if args.tokens_per_step else None)) if v}
    if args.optimizer != "auto":  # e.g. adamw_bf16_torchao beside the planned BF16AdamW (same memory model)
        over["optimizer"] = args.optimizer
    # (these were ignored with --stage: the plan's values ran instead of what was asked)
    if args.attention != "auto":  # the packed-row kernel
        over["attention"] = args.attention
    if args.checkpointing != "auto":
        over["checkpointing"] = args.checkpointing
    if args.ce_chunk is not None:
        over["ce_chunk"] = args.ce_chunk
    cfg = replace(cfg, **over)
    plan_t = replace(plan.train, tokens_per_step=cfg.max_seq_len, grad_accum=cfg.grad_accum)
    if "checkpointing" in over:  # the planner predicts what runs
        plan_t = replace(plan_t, checkpointing=cfg.checkpointing,
                         checkpointed_layers=plan_t.checkpointed_layers if cfg.checkpointing == "selective" else None)
    if "ce_chunk" in over:
        plan_t = replace(plan_t, **({"ce": "chunked", "ce_chunk_tokens": cfg.ce_chunk} if cfg.ce_chunk > 0
                                    else {"ce": "full"}))
    if cfg.deepspeed is not None:
        raise SystemExit(f"the plan for {args.plan_gpu} needs DeepSpeed ({cfg.deepspeed}); this benchmark is single-GPU")
    dtype = getattr(torch, cfg.model_dtype)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    model.config.use_cache = False
    attn = attention.set_kernel(model, mem.choose_attention(device, dtype, cfg.attention))
    kernels = mem.apply_kernels(model, args.kernels)  # "liger": CUDA only (refuses on the CPU with the reason)
    n_ckpt = None
    if cfg.checkpointing == "selective" and cfg.checkpoint_layers:
        # the 3B plan's count, scaled to a smaller --model's depth (same fraction of layers recomputed)
        L = config.num_hidden_layers
        n_ckpt = max(1, min(L, round(cfg.checkpoint_layers * L / plan_model.LLAMA_3_2_3B.layers)))
        plan_t = replace(plan_t, checkpointed_layers=n_ckpt)
    ckpt_layers = mem.enable_checkpointing(model, cfg.checkpointing, every=cfg.selective_every, layers=n_ckpt)
    compiled = mem.compile_layers(model, backend=args.compile_backend) if args.compile_layers else 0
    model.train()
    fused = {"auto": "auto", "on": True, "off": False}[args.fused_optimizer]
    opt = mem.build_optimizer(model, cfg.optimizer, lr=cfg.learning_rate, betas=cfg.adam_betas,
                              weight_decay=cfg.weight_decay, eps=cfg.adam_eps,
                              state_dtype=torch.bfloat16 if cfg.optimizer_state == "bf16" else torch.float32,
                              seed=cfg.seed, fused=fused)
    fused_on = cfg.optimizer == "adamw_bf16_torchao" or (  # torchao's update is always compiled
        bool(getattr(opt, "fused", False)) and (fused is True or (fused == "auto" and device.type == "cuda")))
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")
    gen = torch.Generator().manual_seed(1)
    params = [p for g in opt.param_groups for p in g["params"]]
    if device.type == "cuda":  # the fp32 -> bf16 cast of the freshly built model is not training memory
        torch.cuda.reset_peak_memory_stats(device)
    timer = _PhaseTimer(device)

    def step():
        # as StageRecipe.train: labels stay on the CPU (no sync to count targets), loss summed on the device,
        # one optimizer step per grad_accum micro-batches, gradient clipping
        with timer.phase("data"):
            batches = _stage_batches(config.vocab_size, cfg.max_seq_len, tuple(args.doc_tokens), cfg.grad_accum, gen)
            n_target = sum(int((b["labels"][0, 1:] != IGNORE_INDEX).sum()) for b in batches)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64 if device.type != "mps" else torch.float32, device=device)
        docs = []
        for b in batches:
            with timer.phase("forward"), autocast:
                loss_sum, _ = packed_loss_sum(model, b, cfg.ce_chunk)
            with timer.phase("backward"):
                (loss_sum / max(1, n_target)).backward()
            total += loss_sum.detach().to(total.dtype)
            docs += b["seq_lens"].tolist()
        with timer.phase("optimizer"):
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
        return total, n_target, docs

    for _ in range(args.warmup):
        step()
    timer.totals()
    syncs = 0
    t0 = time.perf_counter()
    split: dict[str, float] = {}
    docs, losses = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")  # every host<->GPU synchronisation warns: counted below
        try:
            for _ in range(args.steps):
                total, n_target, d = step()
                losses.append((total, n_target))
                docs += d
                for k, v in timer.totals().items():  # the one deliberate sync per step (timing)
                    split[k] = split.get(k, 0.0) + v
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    dt = time.perf_counter() - t0
    tokens = args.steps * cfg.grad_accum * cfg.max_seq_len
    tps = tokens / dt
    last = float(losses[-1][0]) / max(1, losses[-1][1])
    card, peak, total_mem = peak_tflops(device)
    shape = plan_model.ModelShape.from_config(config)
    mean_span = sum(n * n for n in docs) / max(1, sum(docs))
    ran = "sdpa" if attn in (attention.SDPA_DOCUMENTS, attention.SDPA_DOCUMENTS_COMPILED) else attn
    measured_plan = replace(plan_t, mean_doc_tokens=max(1, int(round(mean_span))), attention=ran)
    pred_gpu = args.plan_gpu if device.type != "cuda" else plan_gpus.match_gpu(card, total_mem)
    pred = planner.estimate_throughput(shape, measured_plan, pred_gpu, fused_optimizer=fused_on)
    pred_mem = plan_memory.estimate_memory(shape, measured_plan).peak
    flops_model = plan_model.model_flops_per_token(shape, int(round(mean_span)))
    if device.type == "cuda":
        peak_mem, mem_kind = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    else:
        peak_mem, mem_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS (CPU)"
    per_step = {k: round(v / args.steps, 4) for k, v in sorted(split.items())}
    result = {
        "date": _dt.date.today().isoformat(), "card": card, "model": args.model, "params": shape.param_count(),
        "stage": args.stage, "profile": args.profile, "overrides": over or None, "plan_gpu": args.plan_gpu,
        "memory_cap_gb": args.memory_cap_gb if device.type == "cuda" else None,
        "tokens_per_micro_batch": cfg.max_seq_len, "grad_accum": cfg.grad_accum, "steps": args.steps,
        "warmup": args.warmup, "precision": cfg.precision, "optimizer": cfg.optimizer,
        "optimizer_state": cfg.optimizer_state, "fused_optimizer": fused_on, "checkpointing": cfg.checkpointing,
        "checkpointed_layers": len(ckpt_layers), "compiled_layers": compiled, "kernels": args.kernels,
        "kernels_replaced": kernels or None, "ce_chunk": cfg.ce_chunk,
        "attention": ran, "mean_doc_tokens": round(mean_span, 1), "last_loss": round(last, 4),
        "tokens_per_s": round(tps, 1), "step_s": round(dt / args.steps, 4),
        # forward / backward / optimizer / data seconds per optimizer step (CUDA events on a GPU);
        # "other" = the step minus those (Python, the loss accumulation, host syncs)
        "split_s": dict(per_step, other=round(dt / args.steps - sum(per_step.values()), 4)),
        "host_syncs_per_step": round(syncs / args.steps, 2) if device.type == "cuda" else None,
        "model_flops_per_token": flops_model, "hardware_flops_per_token": pred.hardware_flops_per_token,
        "achieved_model_tflops": round(tps * flops_model / 1e12, 3),
        "mfu": round(tps * flops_model / (peak * 1e12), 4) if peak else None,
        "hfu": round(tps * pred.hardware_flops_per_token / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(peak_mem / plan_model.GIB, 3), "peak_memory_kind": mem_kind,
        "peak_reserved_gib": _peak_reserved_gib(device), "planner_gpu": pred_gpu if isinstance(pred_gpu, str) else pred_gpu.name,
        "planner_tokens_per_s": round(pred.tokens_per_s, 1), "planner_mfu": round(pred.mfu, 4),
        "planner_peak_gib": round(pred_mem / plan_model.GIB, 3),
        "planner_step_s": round(pred.step_time_s, 4), "planner_optimizer_s": round(pred.optimizer_s, 4),
        "torch": torch.__version__, **{f"compile_{k}": v for k, v in compile_counts().items()},
    }
    try:  # what the planner's auto-config would run on --plan-gpu (3B model), beside what ran
        auto = planner.auto_config(plan_model.ModelShape.from_config(llama_config("llama-3.2-3b")), args.plan_gpu,
                                   tokens_per_optimizer_step=plan.train.tokens_per_step * plan.train.grad_accum,
                                   min_tokens_per_micro_batch=plan.train.tokens_per_step)
        a = auto.plan.train
        result["auto_config"] = {"tokens_per_micro_batch": auto.tokens_per_micro_batch, "grad_accum": auto.grad_accum,
                                 "attention": a.attention, "checkpointing": a.checkpointing,
                                 "checkpointed_layers": a.checkpointed_layers,
                                 "planner_tokens_per_s": round(auto.plan.throughput.tokens_per_s, 1),
                                 "planner_peak_gib": round(auto.plan.memory.peak / plan_model.GIB, 2)}
    except planner.NoFeasiblePlan as e:
        result["auto_config"] = {"error": str(e)[:200]}
    if device.type == "cuda":
        result.update(calibration_fields(pred_gpu, pred, tps,
                                         f"bench_train --stage {args.stage} {result['date']} {card}, "
                                         f"accumulation {cfg.grad_accum}, {ran}, {cfg.optimizer} (fused {fused_on}), "
                                         f"{compiled} compiled layers, kernels {args.kernels}"))
    del model, opt
    return result


def optimizer_only(args, device) -> list[dict]:
    """BF16AdamW's step, eager vs fused (compiled), per configuration: seconds per step on one bf16 tensor
    of ``--optimizer-only`` elements, and bytes moved per element (counted:
    :func:`helpers.train.precision.step_traffic_per_element`). Compile time is excluded (one warm-up step)."""
    from helpers.train.precision import BF16AdamW, step_traffic_per_element

    n = int(args.optimizer_only)
    rows = []
    for rounding, state in (("stochastic", torch.bfloat16), ("stochastic", torch.float32), ("master", torch.float32)):
        row = {"date": _dt.date.today().isoformat(), "card": peak_tflops(device)[0], "what": "bf16adamw_step",
               "elements": n, "rounding": rounding, "state_dtype": str(state).replace("torch.", ""),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
        for fused in (False, True):
            p = torch.nn.Parameter(torch.randn(n, device=device).to(torch.bfloat16))
            opt = BF16AdamW([p], lr=1e-4, weight_decay=0.01, rounding=rounding, state_dtype=state, fused=fused)
            p.grad = torch.full_like(p, 1e-3)
            t0 = time.perf_counter()
            opt.step()  # warm-up: state allocation and, fused, the compile
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            key = "fused" if fused else "eager"
            row[f"{key}_step_s"] = round((time.perf_counter() - t0) / args.steps, 5)
            row[f"{key}_first_step_s"] = round(first, 2)
            row[f"{key}_bytes_per_element"], row[f"{key}_kernels"] = step_traffic_per_element(rounding, state,
                                                                                              fused=fused)
            del p, opt
        row["speedup"] = round(row["eager_step_s"] / row["fused_step_s"], 2)
        rows.append(row)
        print("BENCH " + json.dumps(row, sort_keys=True))
    return rows


def replace_tokens(plan, **kw):
    from dataclasses import replace

    return replace(plan, **kw)



def _emit(r: dict, title: str, record, width: int) -> None:
    """Print one result row (a block, then a ``BENCH {json}`` line) and append it to ``record``."""
    print(f"\n== {title}")
    for k, v in r.items():
        print(f"  {k:{width}s} {v}")
    print("BENCH " + json.dumps(r, sort_keys=True))
    if record:
        with open(record, "a") as f:
            f.write(json.dumps(r, sort_keys=True) + "\n")

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("llama-3.2-3b", "tiny"), default="llama-3.2-3b")
    ap.add_argument("--tokens-per-step", type=int, nargs="+", default=None,
                    help="packed tokens per micro-batch (each value is benchmarked in turn; default 4096 8192); "
                         "with --stage: overrides the stage's max_seq_len (first value)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (allocator, kernels)")
    ap.add_argument("--grad-accum", type=int, default=None,
                    help="micro-batches per optimizer step (default 1; with --stage: the stage's own)")
    ap.add_argument("--stage", type=int, default=None, choices=(2, 3, 4),
                    help="benchmark this training stage's own configuration (helpers.train.config.stage_config "
                         "of --profile, planned for --plan-gpu by helpers.train.stage_plan.plan_stage)")
    ap.add_argument("--profile", default="colab", help="with --stage: the profile whose stage sizes are used")
    ap.add_argument("--fused-optimizer", default="auto", choices=("auto", "on", "off"),
                    help="with --stage: BF16AdamW's compiled update (auto: on CUDA with Triton)")
    ap.add_argument("--compile-layers", action="store_true",
                    help="with --stage: torch.compile each decoder layer (helpers.train.memory.compile_layers)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend for --compile-layers")
    ap.add_argument("--kernels", default="none", choices=mem.KERNELS,
                    help="with --stage: fused layer kernels (helpers.train.memory.apply_kernels; liger: CUDA only)")
    ap.add_argument("--memory-cap-gb", type=float, default=40.0,
                    help="cap this process's GPU memory (GB of 1e9 bytes) to stand for a smaller card; 0 = no cap")
    ap.add_argument("--plan-gpu", default="A100-40GB", help="GPU the planner chooses the configuration for")
    ap.add_argument("--optimizer", default="auto", choices=("auto",) + mem.OPTIMIZER_KINDS,
                    help="override the planned optimizer (with --stage too: e.g. adamw_bf16_torchao)")
    ap.add_argument("--checkpointing", default="auto", choices=("auto",) + mem.CHECKPOINTING_MODES)
    ap.add_argument("--ce-chunk", type=int, default=None, help="tokens per CE chunk (0 = all at once)")
    ap.add_argument("--attention", default="auto", choices=("auto",) + plan_model.ATTENTION_KERNELS,
                    help="packed-row kernel (helpers.train.attention); auto: flash-attn if installed, else flex on CUDA")
    ap.add_argument("--doc-tokens", type=int, nargs=2, default=[1024, 3072], metavar=("MIN", "MAX"),
                    help="packed document lengths (position ids restart per document)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--record", default=None, help="append each result as a JSON line to this file")
    ap.add_argument("--optimizer-only", type=int, default=0, metavar="N",
                    help="instead: BF16AdamW's step, eager vs fused, on one tensor of N elements (--steps timed)")
    ap.add_argument("--vs-trainer", type=int, default=0, metavar="N",
                    help="instead: useful tokens/s of the recipe's packed loop vs HF Trainer (batch 1, padded "
                         "batch 8) on N examples of realistic lengths, packed rows of the first --tokens-per-step")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.model == "tiny" and args.doc_tokens == [1024, 3072]:
        args.doc_tokens = [64, 256]  # the tiny model's budgets are small too
    if min(args.doc_tokens) < 2 or args.doc_tokens[0] > args.doc_tokens[1]:
        ap.error("--doc-tokens MIN MAX needs 2 <= MIN <= MAX")
    if device.type == "cuda" and args.memory_cap_gb > 0:
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        frac = min(1.0, args.memory_cap_gb * 1e9 / total)
        torch.cuda.set_per_process_memory_fraction(frac, index)
        print(f"GPU memory capped to {args.memory_cap_gb:g} GB ({frac:.3f} of {total / 1e9:.1f} GB)")
    if args.optimizer_only:
        rows = optimizer_only(args, device)
        if args.record:
            with open(args.record, "a") as f:
                f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        return 0
    config = llama_config(args.model)
    if args.stage is not None:
        try:
            r = run_stage(args, config, device)
        except torch.OutOfMemoryError as e:  # recorded like a measurement: which configuration did not fit
            r = {"date": _dt.date.today().isoformat(), "card": peak_tflops(device)[0], "model": args.model,
                 "stage": args.stage, "profile": args.profile, "memory_cap_gb": args.memory_cap_gb,
                 "fused_optimizer": args.fused_optimizer, "compile_layers": args.compile_layers,
                 "kernels": args.kernels, "optimizer": args.optimizer, "error": f"OOM: {str(e)[:300]}",
                 "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / plan_model.GIB, 3)
                 if device.type == "cuda" else None}
        _emit(r, f"stage {args.stage} ({args.profile} config) on {r['card']}", args.record, width=26)
        return 1 if "error" in r else 0
    if args.grad_accum is None:
        args.grad_accum = 1
    if args.tokens_per_step is None:
        args.tokens_per_step = [4096, 8192]
    if args.vs_trainer:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        rows = vs_trainer(args, config)
        if args.record:
            with open(args.record, "a") as f:
                for r in rows:
                    f.write(json.dumps(dict(r, date=_dt.date.today().isoformat(), model=args.model)) + "\n")
        return 0
    results = []
    for tokens in args.tokens_per_step:
        try:
            r = run_budget(args, config, device, tokens)
        except torch.OutOfMemoryError as e:
            r = {"date": _dt.date.today().isoformat(), "card": peak_tflops(device)[0], "model": args.model,
                 "tokens_per_step": tokens, "memory_cap_gb": args.memory_cap_gb, "error": f"OOM: {str(e)[:200]}"}
        results.append(r)
        _emit(r, f"{args.model}, {tokens} tokens/step on {r['card']}", args.record, width=24)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
