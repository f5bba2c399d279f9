"""GPU memory and speed planner for full fine-tuning of the extended LLaMA.

Given a model shape, a GPU and a token budget per micro-batch, :func:`plan_for_gpu`
enumerates the training configurations the recipe can run (precision, optimizer,
activation checkpointing, cross-entropy, DeepSpeed ZeRO sharding and CPU offload),
predicts the peak GPU memory of each (:func:`estimate_memory`) and its speed
(:func:`estimate_throughput`), keeps those that fit, and picks the fastest. The
stage notebooks print the resulting :class:`Plan` — with the assumptions it rests
on (:attr:`Plan.assumptions`) — before training starts.

The planner is split by job; this module re-exports every public name:

- :mod:`helpers.train.plan_model` — model shape, parameter counts, FLOPs per token
  (attention per kernel: SDPA full row vs per-document FlexAttention / flash-attn),
  token budget of a stage;
- :mod:`helpers.train.plan_gpus` — the GPU table, detection, and calibration of ``hfu``
  to a measured benchmark (:data:`~helpers.train.plan_gpus.CALIBRATIONS`);
- :mod:`helpers.train.plan_memory` — :class:`TrainPlan` and :func:`estimate_memory`;
- here — :func:`estimate_throughput` and the choice (:func:`plan_for_gpu`).

Every number is a model, written down so that it can be checked by hand (the
tests do) and corrected when a GPU measurement disagrees. Units: bytes, tokens,
FLOPs, seconds. ``N`` is the parameter count, ``T`` the tokens of one micro-batch
on one GPU (packed sequences: the sequence budget), ``h`` the hidden size, ``I``
the MLP width, ``V`` the (padded) vocabulary, ``L`` the layer count.

Nothing here touches a GPU at import; :func:`detect_gpu` imports torch lazily.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, fields, replace
from typing import Iterable

from .plan_gpus import GPUSpec, _resolve_gpu, detect_gpu, measured_speedups
from .plan_memory import (activation_bytes_per_token_per_layer, checkpointed_layer_count, CHECKPOINTING, CROSS_ENTROPY, HOST_RAM_USABLE_FRACTION, OVERHEAD_FIXED_BYTES, OVERHEAD_FRACTION, MemoryBreakdown, TrainPlan, estimate_memory)
from .plan_model import (ATTENTION_TRAIN_FACTOR, GIB, LLAMA_3_2_3B_AUDIO, STAGE2_AUDIO_HOURS, ModelShape, attention_cost_table, attention_flops_per_token, model_flops_per_token, stage_tokens)

# ============================================================================ throughput

# Optimizer-step HBM traffic per parameter (bytes read + written), all bandwidth-bound:
#   torch AdamW fused on fp32 params: w, g, m, v read (16) + w, m, v written (12)      = 28
#   bitsandbytes 8-bit on fp32 params: w, g read (8) + w written (4) + 8-bit m, v r/w (4) = 16
#   (bf16 params with bnb, the lost-update configuration: 2 + 2 + 2 + 4)               = 10
#   BF16AdamW on bf16 params, by rounding and moment dtype: counted per element by
#   helpers.train.precision.step_traffic_per_element (tests/train/test_planner.py recounts them).
#   The planner plans the fused update (one compiled kernel per piece, BF16AdamW(fused="auto") on
#   CUDA): it reads p (or the fp32 master), g, m, v and the int32 rounding noise, writes p, m, v (and
#   the master), and the noise is written once by randint.
OPT_STEP_BYTES = {"torch_fused": 28.0, "bnb8": 16.0, "bnb8_bf16": 10.0,
                  "bf16adamw_stochastic_bf16": 38.0, "bf16adamw_stochastic_fp32": 30.0,
                  "bf16adamw_master_fp32": 28.0, "bf16adamw_master_bf16": 36.0}
# The eager update of the same (~15 elementwise kernels over fp32 temporaries per piece; what runs
# where Triton is missing, and what ran before the fused update): 36 / 22 / 15 / 29 kernels.
BF16ADAMW_EAGER_STEP_BYTES = {"bf16adamw_stochastic_bf16": 244.0, "bf16adamw_stochastic_fp32": 144.0,
                              "bf16adamw_master_fp32": 92.0, "bf16adamw_master_bf16": 192.0}
HBM_EFFICIENCY = 0.7  # fraction of peak bandwidth elementwise kernels reach
CPU_ADAM_PARAMS_PER_S = 1.0e9  # DeepSpeed CPUAdam on a ~12-vCPU Colab VM (AVX2/512), shared by all ranks
OFFLOAD_OVERLAP = 0.5  # fraction of host<->device copies hidden behind compute
# Data-parallel efficiency (gradient all-reduce / reduce-scatter within one host).
COMM_EFFICIENCY = {0: 0.92, 2: 0.92, 3: 0.85}


@dataclass(frozen=True)
class Throughput:
    """Speed estimate for one configuration. FLOPs are per token."""

    tokens_per_s: float  # all GPUs together
    mfu: float  # model FLOPs (6N + attention) per second / peak of all GPUs
    model_flops_per_token: float
    hardware_flops_per_token: float  # + recompute of checkpointing and chunked CE
    step_time_s: float  # one optimizer step (grad_accum micro-batches)
    compute_s: float  # of which GPU compute
    optimizer_s: float  # of which optimizer step (GPU or CPU)
    offload_s: float  # of which non-overlapped host<->device copies

    def hours_for(self, tokens: float) -> float:
        return tokens / self.tokens_per_s / 3600.0


def _optimizer_kind(plan: TrainPlan) -> str:
    if plan.zero_stage:
        return "torch_fused"
    if plan.optimizer == "adamw_8bit":
        return "bnb8_bf16" if plan.precision == "bf16_pure" else "bnb8"
    if plan.grad_dtype == "fp32":
        return "torch_fused"
    if plan.stochastic_rounding or plan.precision == "bf16_mixed_fp32_master":
        rounding = "stochastic" if plan.stochastic_rounding else "master"
        return f"bf16adamw_{rounding}_{'bf16' if plan.optimizer == 'adamw_bf16' else 'fp32'}"
    return "torch_fused"


def estimate_throughput(shape: ModelShape, plan: TrainPlan, gpu, *, fused_optimizer: bool = True,
                        compute_speedup: float = 1.0) -> Throughput:
    """Tokens per second of ``plan`` on ``plan.n_gpus`` GPUs of type ``gpu``.

    Per micro-batch (T tokens on one GPU):
    ``compute = T · hardware_flops / (bf16_peak · hfu)``, where
    ``hardware_flops = 6N + attention + recompute``: attention is what ``plan.attention``
    really computes (:func:`helpers.train.plan_model.attention_flops_per_token`: the whole row
    for SDPA, each document for FlexAttention / flash-attn); recompute is one extra
    forward of every checkpointed layer (``2·layer_params`` + that layer's forward
    attention per token; full checkpointing ≈ ×4/3 of the layers' work) and, for chunked
    CE, one extra LM-head forward (``2·h·V``). ``model_flops`` (the MFU numerator) stays
    the convention ``6N + 12·L·q_dim·S`` whatever the kernel.

    Per optimizer step: GPU optimizers are bandwidth-bound
    (``N/n · OPT_STEP_BYTES / (HBM · HBM_EFFICIENCY)``); CPU-offloaded Adam runs at
    ``CPU_ADAM_PARAMS_PER_S`` (shared by all ranks) plus copying the bf16 weights
    back (2N/n B). Offload copies (half hidden behind compute): gradients to the
    host every micro-batch (2N/n B) and, with ``offload_params``, the weights for
    every forward, recompute and backward pass.

    ``tokens/s = n · T · grad_accum / step_time · COMM_EFFICIENCY`` (n > 1).

    ``fused_optimizer``: BF16AdamW's compiled update (the default on CUDA); False prices its eager
    update (:data:`BF16ADAMW_EAGER_STEP_BYTES`), e.g. to compare with a run without Triton.
    ``compute_speedup``: a measured factor on the compute part (compiled layers, fused kernels:
    :data:`helpers.train.plan_gpus.SPEEDUPS`); 1 = the model above.
    """
    if not compute_speedup > 0:
        raise ValueError(f"compute_speedup must be > 0, got {compute_speedup}")
    gpu = _resolve_gpu(gpu)
    N, n, T = shape.param_count(), plan.n_gpus, plan.tokens_per_step
    model = model_flops_per_token(shape, plan.mean_doc_tokens)
    attn_fwd = attention_flops_per_token(shape, plan.attention, T, plan.mean_doc_tokens, training=False)
    fwd_layer = 2.0 * shape.layer_params() + attn_fwd / shape.layers
    recomputed = checkpointed_layer_count(shape, plan)
    hardware = 6.0 * N + attn_fwd * ATTENTION_TRAIN_FACTOR + recomputed * fwd_layer + (2.0 * shape.hidden * shape.vocab if plan.ce == "chunked" else 0.0)
    compute = T * hardware / (gpu.bf16_tflops * 1e12 * gpu.hfu) / compute_speedup

    shard = N / n
    pcie = gpu.pcie_gbs * 1e9
    offload_micro = 0.0
    if plan.offload_optimizer:
        optimizer = N / CPU_ADAM_PARAMS_PER_S + 2 * shard / pcie
        offload_micro += 2 * shard / pcie * (1 - OFFLOAD_OVERLAP)
        if plan.offload_params:
            passes = 3 if plan.checkpointing != "none" else 2
            offload_micro += passes * 2 * shard / pcie * (1 - OFFLOAD_OVERLAP)
    else:
        kind = _optimizer_kind(plan)
        per_param = OPT_STEP_BYTES[kind] if fused_optimizer else BF16ADAMW_EAGER_STEP_BYTES.get(kind, OPT_STEP_BYTES[kind])
        optimizer = shard * per_param / (gpu.hbm_gbs * 1e9 * HBM_EFFICIENCY)
    step = plan.grad_accum * (compute + offload_micro) + optimizer
    tps = n * T * plan.grad_accum / step
    if n > 1:
        tps *= COMM_EFFICIENCY[plan.zero_stage]
    mfu = tps * model / (n * gpu.bf16_tflops * 1e12)
    return Throughput(tokens_per_s=tps, mfu=mfu, model_flops_per_token=model, hardware_flops_per_token=hardware,
                      step_time_s=step, compute_s=plan.grad_accum * compute, optimizer_s=optimizer,
                      offload_s=plan.grad_accum * offload_micro)



# ============================================================================ planning


class NoFeasiblePlan(ValueError):
    """No configuration fits the GPU (and host RAM); the message says what would be needed."""


@dataclass
class Plan:
    """The chosen configuration for one GPU, with its memory, speed and the reasons."""

    shape: ModelShape
    gpu: GPUSpec
    train: TrainPlan
    memory: MemoryBreakdown
    throughput: Throughput
    usable_bytes: int
    train_tokens: int
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)  # what the figures rest on (hfu source, kernel, ...)
    auto: list[str] = field(default_factory=list)  # auto_config's choice and why (empty: a plain plan_for_gpu)
    n_candidates: int = 0
    n_fitting: int = 0

    @property
    def hours(self) -> float:
        """Estimated wall-clock hours for ``train_tokens``."""
        return self.throughput.hours_for(self.train_tokens)

    def to_markdown(self) -> str:
        s, t, m, tp = self.shape, self.train, self.memory, self.throughput
        lines = [
            f"### Training plan: {s.param_count() / 1e9:.3f} B parameters (vocab {s.vocab:,}, {s.layers} layers) "
            f"on {t.n_gpus} × {self.gpu.name}",
            "",
            f"GPU memory {self.gpu.memory_gib:.1f} GiB, planning limit {self.usable_bytes / GIB:.1f} GiB; "
            f"{self.n_fitting} of {self.n_candidates} configurations fit.",
            "",
            "| option | choice |",
            "|---|---|",
            f"| precision | {t.precision} |",
            f"| optimizer | {t.optimizer} |",
            f"| gradients | {t.grad_dtype} |",
            f"| activation checkpointing | {t.checkpointing} |",
            f"| cross-entropy | {t.ce}" + (f" ({t.ce_chunk_tokens} tokens/chunk)" if t.ce == "chunked" else "") + " |",
            f"| tokens per micro-batch × accumulation × GPUs | {t.tokens_per_step:,} × {t.grad_accum} × {t.n_gpus} "
            f"= {t.tokens_per_optimizer_step():,} |",
            f"| attention kernel (packed rows) | {t.attention} |",
            f"| ZeRO | {t.zero_stage or 'off'}" + (" + CPU offload (optimizer)" if t.offload_optimizer else "")
            + (" + CPU offload (params)" if t.offload_params else "") + " |",
            f"| implementation | {t.implementation} |",
            "",
            "| memory (per GPU) | GiB |",
            "|---|---:|",
        ]
        for name, value in m.components().items():
            if name in ("peak", "cpu"):
                continue
            lines.append(f"| {name.replace('_', ' ')} | {value / GIB:.2f} |")
        lines.append(f"| **peak** | **{m.peak / GIB:.2f}** |")
        if m.cpu:
            host = "unknown" if self.gpu.host_ram_gib is None else f"{self.gpu.host_ram_gib:.1f} GiB"
            lines.append(f"| host RAM for offload (host has {host}) | {m.cpu / GIB:.2f} |")
        lines += [
            "",
            f"Throughput ≈ {tp.tokens_per_s:,.0f} tokens/s (MFU {tp.mfu:.0%}; step {tp.step_time_s:.1f} s = compute "
            f"{tp.compute_s:.1f} s + optimizer {tp.optimizer_s:.2f} s + offload {tp.offload_s:.2f} s).",
            f"{self.train_tokens / 1e6:,.0f} M training tokens -> ≈ {self.hours:.1f} h.",
            "",
            "Why:",
        ]
        lines += [f"- {r}" for r in self.reasons]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        if self.auto:
            lines += ["", "Auto-config (helpers.train.planner.auto_config):"] + [f"- {a}" for a in self.auto]
        if self.assumptions:
            lines += ["", "Assumptions:"] + [f"- {a}" for a in self.assumptions]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:  # Jupyter renders the tables
        return self.to_markdown()


# Configurations within this fraction of the fastest count as equally fast; among them
# the one with better numerics (then fewer recomputed layers, then less memory) wins.
SPEED_TIE = 0.03
HEADROOM_FRACTION = 0.02  # kept free on top of the modelled overhead


def _precision_variants(allow_lost_updates: bool) -> list[dict]:
    out = [
        dict(precision="bf16_mixed_fp32_master", grad_dtype="fp32", optimizer="adamw_fp32"),
        dict(precision="bf16_mixed_fp32_master", grad_dtype="fp32", optimizer="adamw_8bit"),
        dict(precision="bf16_mixed_fp32_master", grad_dtype="bf16", optimizer="adamw_fp32"),
        dict(precision="bf16_mixed_fp32_master", grad_dtype="bf16", optimizer="adamw_bf16"),
        dict(precision="bf16_pure", optimizer="adamw_fp32", stochastic_rounding=True),
        dict(precision="bf16_pure", optimizer="adamw_bf16", stochastic_rounding=True),
    ]
    if allow_lost_updates:
        out.append(dict(precision="bf16_pure", optimizer="adamw_8bit", stochastic_rounding=False))
    return out


def _zero_variants(n_gpus: int) -> list[dict]:
    out = [dict(zero_stage=0)]
    for stage in (2, 3):
        if n_gpus > 1:  # sharding only pays with several GPUs; on one GPU only offload helps
            out.append(dict(zero_stage=stage))
        out.append(dict(zero_stage=stage, offload_optimizer=True))
    out.append(dict(zero_stage=3, offload_optimizer=True, offload_params=True))
    return out


def enumerate_plans(tokens_per_step: int = 8192, n_gpus: int = 1, grad_accum: int = 8,
                    allow_lost_updates: bool = False, **common) -> list[TrainPlan]:
    """Every valid configuration the planner considers (see :class:`TrainPlan`)."""
    plans = []
    for zero in _zero_variants(n_gpus):
        precisions = _precision_variants(allow_lost_updates) if zero["zero_stage"] == 0 else \
            [dict(precision="bf16_mixed_fp32_master", optimizer="adamw_fp32", grad_dtype="bf16")]
        for prec in precisions:
            for ckpt in CHECKPOINTING:
                for ce in CROSS_ENTROPY:
                    plans.append(TrainPlan(checkpointing=ckpt, ce=ce, tokens_per_step=tokens_per_step,
                                           n_gpus=n_gpus, grad_accum=grad_accum, **zero, **prec, **common))
    return plans


_PRECISION_FIELDS = {"precision", "grad_dtype", "stochastic_rounding", "optimizer"}
_ZERO_FIELDS = {"zero_stage", "offload_optimizer", "offload_params"}
# option -> (label in the reasons, fields an alternative may change along with it)
# (a selective plan's layer count is sized to the memory left by the other options: it moves with any of them)
_DIMENSIONS = {
    "checkpointing": ("activation checkpointing", {"checkpointed_layers"}),
    "ce": ("cross-entropy", {"checkpointed_layers"}),
    "optimizer": ("optimizer", {"grad_dtype", "stochastic_rounding", "checkpointed_layers"}),
    "precision": ("precision", _PRECISION_FIELDS | {"checkpointed_layers"}),
    "zero_stage": ("ZeRO stage", _ZERO_FIELDS | _PRECISION_FIELDS | {"checkpointed_layers"}),
    "offload_optimizer": ("optimizer offload", _ZERO_FIELDS | _PRECISION_FIELDS | {"checkpointed_layers"}),
}


REPLANNABLE = ("checkpointing", "ce", "ce_chunk_tokens", "selective_every", "checkpointed_layers")  # same math


def size_selective(shape: ModelShape, plan: TrainPlan, usable_bytes: int) -> TrainPlan:
    """``plan`` (checkpointing="selective") with the fewest checkpointed layers whose peak fits
    ``usable_bytes``: every other layer keeps its activations (no recompute). Margin: the modelled
    framework overhead, the GPU's headroom (``usable_bytes``) and :func:`selective_margin_bytes`. Returns
    ``plan`` unchanged when it is not selective, or when even L - 1 checkpointed layers do not fit
    (then it does not fit, and full checkpointing is the candidate that may)."""
    if plan.checkpointing != "selective":
        return plan
    margin = selective_margin_bytes(shape, plan)
    for c in range(1, shape.layers):
        p = replace(plan, checkpointed_layers=c)
        if estimate_memory(shape, p).peak + margin <= usable_bytes:
            return p
    return plan


def selective_margin_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """Memory a sized selective plan leaves free beyond the headroom: one more layer's activations
    (``T · A``, ~1 GiB for the 3B model at 8K tokens), so that an activation estimate that is short by
    up to one layer's worth (``1/(L - c)`` of what the kept layers hold) still fits."""
    return plan.tokens_per_step * activation_bytes_per_token_per_layer(shape)


def replan_memory(shape: ModelShape, gpu, fixed: TrainPlan, headroom: float = HEADROOM_FRACTION) -> TrainPlan | None:
    """The fastest plan that keeps every math-changing field of ``fixed`` (precision, optimizer,
    gradient dtype, rounding, ZeRO/offload, tokens per micro-batch, accumulation, GPUs) and varies
    only :data:`REPLANNABLE` fields, that fits ``gpu``; None when none fits.

    What a resumed run uses when the new session got another GPU than the one it started on.
    """
    gpu = _resolve_gpu(gpu)
    usable = int(gpu.memory_bytes * (1 - headroom))
    host_limit = None if gpu.host_ram_gib is None else gpu.host_ram_gib * GIB * HOST_RAM_USABLE_FRACTION
    best = None
    for ckpt in CHECKPOINTING:
        for ce in CROSS_ENTROPY:
            p = size_selective(shape, replace(fixed, checkpointing=ckpt, ce=ce,
                                              checkpointed_layers=None), usable)
            mem = estimate_memory(shape, p)
            if mem.peak > usable or (host_limit is not None and mem.cpu > host_limit):
                continue
            tps = estimate_throughput(shape, p, gpu).tokens_per_s
            if best is None or tps > best[0] * (1 + 1e-9) or (abs(tps - best[0]) <= best[0] * 1e-9 and mem.peak < best[1]):
                best = (tps, mem.peak, p)
    return None if best is None else best[2]


def plan_for_gpu(shape: ModelShape = LLAMA_3_2_3B_AUDIO, gpu=None, tokens_per_step: int = 8192, n_gpus: int = 1,
                 *, grad_accum: int = 8, train_tokens: int | None = None, host_ram_gib: float | None = None,
                 allow_lost_updates: bool = False, headroom: float = HEADROOM_FRACTION,
                 attention: str | None = None, fused_optimizer: bool = True, **common) -> Plan:
    """Pick the fastest configuration that fits ``gpu``.

    Args:
        shape: the model (default: Llama-3.2-3B with the extended, padded vocabulary).
        gpu: a name (``"A100-40GB"``, ``"L4"``, ``"H100"``...), a :class:`GPUSpec`,
            a memory size in GiB, or None to use :func:`detect_gpu` (raises on a
            machine without CUDA: then name the GPU to plan for).
        tokens_per_step: packed tokens per micro-batch per GPU (the sequence budget).
        n_gpus: data-parallel GPUs on one host.
        grad_accum: micro-batches per optimizer step.
        train_tokens: tokens the time estimate is for (default: Stage 2,
            :func:`stage_tokens` of 1,000 h).
        host_ram_gib: host RAM for CPU offload (default: the GPU's typical Colab VM).
        allow_lost_updates: also consider pure bf16 without stochastic rounding.
        headroom: fraction of GPU memory kept free beyond the modelled overhead.
        attention: the packed-row kernel (:data:`ATTENTION_KERNELS`); None = :func:`default_attention`.
        fused_optimizer: price BF16AdamW's compiled update (what ``fused="auto"`` runs on CUDA with
            Triton); False prices the eager update.
        **common: other :class:`TrainPlan` fields (e.g. ``mean_doc_tokens``).
    Raises:
        NoFeasiblePlan: nothing fits; the message names the smallest requirement.
    """
    if gpu is None:
        gpu = detect_gpu()
        if gpu is None:
            raise ValueError("no CUDA GPU detected; pass gpu= a name like 'A100-40GB' to plan for one")
    gpu = _resolve_gpu(gpu)
    if host_ram_gib is not None:
        gpu = replace(gpu, host_ram_gib=float(host_ram_gib))
    usable = int(gpu.memory_bytes * (1 - headroom))
    host_limit = None if gpu.host_ram_gib is None else gpu.host_ram_gib * GIB * HOST_RAM_USABLE_FRACTION
    train_tokens = stage_tokens(STAGE2_AUDIO_HOURS) if train_tokens is None else int(train_tokens)

    attention = default_attention() if attention is None else attention
    candidates = [size_selective(shape, p, usable)
                  for p in enumerate_plans(tokens_per_step, n_gpus, grad_accum, allow_lost_updates,
                                           attention=attention, **common)]
    rows = []  # (plan, memory, throughput, fits_gpu, fits_host)
    for p in candidates:
        mem = estimate_memory(shape, p)
        rows.append((p, mem, estimate_throughput(shape, p, gpu, fused_optimizer=fused_optimizer), mem.peak <= usable,
                     host_limit is None or mem.cpu <= host_limit))
    fitting = [r for r in rows if r[3] and r[4]]
    if not fitting:
        raise NoFeasiblePlan(_no_fit_message(shape, gpu, usable, host_limit, rows, tokens_per_step))
    best_tps = max(r[2].tokens_per_s for r in fitting)
    tied = [r for r in fitting if r[2].tokens_per_s >= best_tps * (1 - SPEED_TIE)]
    # within the tie: better numerics, then fewer recomputed layers (a layer recomputed only to save memory
    # that is not needed costs ~1 % each), then less memory
    chosen = min(tied, key=lambda r: (r[0].numerics_rank, checkpointed_layer_count(shape, r[0]), r[1].peak,
                                      -r[2].tokens_per_s))
    plan, mem, tp = chosen[0], chosen[1], chosen[2]

    reasons = [f"fastest of the {len(fitting)} fitting configurations"
               + (f" ({len(tied) - 1} other(s) within {SPEED_TIE:.0%} of its speed: better numerics / "
                  f"less memory decided)" if len(tied) > 1 else "")]
    reasons += _explain(plan, tp, rows, usable, host_limit)
    notes = []
    if plan.precision == "bf16_pure":
        notes.append("pure bf16 weights: the optimizer must round stochastically (helpers.train.precision.BF16AdamW), "
                     "otherwise updates below half a bf16 ulp (most of them at LR 5e-6) are lost")
    if gpu.assumed_compute:
        notes.append(f"compute figures of an A100 assumed for {gpu.name}: time estimates are rough")
    if plan.offload_optimizer and host_limit is None:
        notes.append(f"host RAM unknown: offload needs {mem.cpu / GIB:.1f} GiB of it")
    if plan.attention == "sdpa":
        notes.append("SDPA computes the whole packed row's attention (dense block-diagonal mask): "
                     "attention='flex_attention' does the same maths per document")
    return Plan(shape=shape, gpu=gpu, train=plan, memory=mem, throughput=tp, usable_bytes=usable,
                train_tokens=train_tokens, reasons=reasons, notes=notes, n_candidates=len(rows),
                n_fitting=len(fitting), assumptions=plan_assumptions(shape, gpu, plan, headroom))


# The auto-config keeps at least this fraction of the card's memory free beyond the modelled framework
# overhead and fragmentation (plan_for_gpu's default keeps 2 %): the A100-40GB plan at 2 % predicted 37.4 of
# 38.6 GiB usable; an activation or allocator estimate a few percent short must not end in an OOM hours in.
AUTO_HEADROOM = 0.05


@dataclass(frozen=True)
class AutoConfig:
    """:func:`auto_config`'s choice: the fastest plan over micro-batch sizes, attention kernels and the measured
    speed options (compiled layers, Liger kernels), and every candidate it weighed (``rows``: micro-batch,
    accumulation, kernel, options, tokens/s, peak GiB, or why it was not possible); ``why``: one line per
    choice the plan table does not show (optimizer update, compiled layers, kernels, memory margin)."""

    plan: Plan
    tokens_per_micro_batch: int
    grad_accum: int
    rows: list[dict]
    fused_optimizer: bool = True  # BF16AdamW's compiled update (False: eager, or not a BF16AdamW optimizer)
    optimizer_update: str = "fused"  # "fused", "eager", or the optimizer when it is not BF16AdamW on the GPU
    compile_layers: bool = False
    kernels: str = "none"
    headroom: float = AUTO_HEADROOM
    why: list[str] = field(default_factory=list)

    @property
    def margin_bytes(self) -> int:
        """The card's memory minus the planned peak (headroom + any selective-checkpointing margin)."""
        return self.plan.gpu.memory_bytes - self.plan.memory.peak

    @property
    def margin_fraction(self) -> float:
        return self.margin_bytes / self.plan.gpu.memory_bytes

    def summary(self) -> str:
        """One line: the chosen configuration, its predicted tokens/s and its peak memory with the margin."""
        t, tp = self.plan.train, self.plan.throughput
        ckpt = t.checkpointing + (f" ({t.checkpointed_layers} layers)" if t.checkpointed_layers else "")
        return (f"{self.tokens_per_micro_batch:,} tokens x {self.grad_accum} micro-batches, {t.attention}, "
                f"checkpointing {ckpt}, optimizer update {self.optimizer_update}, compiled "
                f"layers {'on' if self.compile_layers else 'off'}, kernels {self.kernels}: predicted "
                f"{tp.tokens_per_s:,.0f} tokens/s (MFU {tp.mfu:.0%}), peak {self.plan.memory.peak / GIB:.1f} GiB "
                f"of {self.plan.gpu.memory_gib:.1f} GiB (margin {self.margin_bytes / GIB:.1f} GiB = "
                f"{self.margin_fraction:.0%}, kept >= {self.headroom:.0%})")

    def to_markdown(self) -> str:
        head = ["| tokens/micro-batch | accumulation | attention | options | checkpointing | tokens/s | MFU | "
                "peak GiB | note |", "|---:|---:|---|---|---|---:|---:|---:|---|"]
        body = [f"| {r['tokens_per_micro_batch']:,} | {r['grad_accum']} | {r['attention']} | {r.get('options', '')} | "
                f"{r.get('checkpointing', '')} | {r.get('tokens_per_s', '')} | {r.get('mfu', '')} | "
                f"{r.get('peak_gib', '')} | {r.get('note', '')} |" for r in self.rows]
        return "\n".join([f"Auto-config on {self.plan.gpu.name}: {self.summary()}", ""] + head + body + [""]
                         + [f"- {w}" for w in self.why])


def auto_config(shape: ModelShape = LLAMA_3_2_3B_AUDIO, gpu=None, *, tokens_per_optimizer_step: int = 12 * 8192,
                min_tokens_per_micro_batch: int = 8192, micro_batches: Iterable[int] | None = None,
                attentions: Iterable[str] | None = None, fused_optimizer: bool = True,
                liger_available: bool | None = None, headroom: float = AUTO_HEADROOM, **plan_kwargs) -> AutoConfig:
    """The fastest valid training configuration for ``gpu``, over what :func:`plan_for_gpu` leaves fixed.

    For each micro-batch size ``T`` (``micro_batches``; default: 1, 1.5, 2 and 3 × ``min_tokens_per_micro_batch``)
    with accumulation ``ceil(tokens_per_optimizer_step / T)`` (the optimizer step sees at least as many tokens as
    asked: the same optimisation) and each attention kernel (``attentions``; default: the one
    :func:`default_attention` would train with, and SDPA), :func:`plan_for_gpu` picks precision, optimizer,
    checkpointing (a selective count sized to the memory), CE and ZeRO; the fastest of those is returned.

    Valid means: it fits the GPU (and host RAM for offload) keeping ``headroom`` (default
    :data:`AUTO_HEADROOM`, 5 %) of the card's memory free beyond the modelled overhead, and ``T >=
    min_tokens_per_micro_batch`` — one packed row is one micro-batch, so a smaller one could not hold the
    longest example (the stage's ``max_seq_len``).

    Speed options the FLOP model does not see are weighed only where measured on this GPU model
    (:data:`helpers.train.plan_gpus.SPEEDUPS`): compiled decoder layers, and Liger-Kernel where
    ``liger_available`` (None: the ``liger_kernel`` package is importable here). ``fused_optimizer``: price
    BF16AdamW's compiled update (``fused="auto"`` on CUDA with Triton) or its eager one.

    Raises :class:`NoFeasiblePlan` when no combination fits (the message of the smallest micro-batch's).
    """
    lo = int(min_tokens_per_micro_batch)
    if lo < 1 or int(tokens_per_optimizer_step) < lo:
        raise ValueError(f"need 1 <= min_tokens_per_micro_batch ({lo}) <= tokens_per_optimizer_step "
                         f"({tokens_per_optimizer_step})")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be a fraction in [0, 1), got {headroom}")
    sizes = sorted({int(t) for t in (micro_batches or (lo, lo * 3 // 2, 2 * lo, 3 * lo))})
    too_small = [t for t in sizes if t < lo]
    if too_small:
        raise ValueError(f"micro_batches {too_small} are below min_tokens_per_micro_batch={lo} (a packed row "
                         "must hold the longest example)")
    kernels = list(dict.fromkeys(attentions or (default_attention(), "sdpa")))
    if gpu is None:
        gpu = detect_gpu()
        if gpu is None:
            raise ValueError("no CUDA GPU detected; pass gpu= a name like 'A100-40GB' to plan for one")
    gpu_spec = _resolve_gpu(gpu)
    if liger_available is None:
        liger_available = importlib.util.find_spec("liger_kernel") is not None
    measured = measured_speedups(gpu_spec.name)
    usable_options = {k: v for k, v in measured.items() if liger_available or "liger" not in k}
    variants = [("", 1.0)] + [(k, v.factor) for k, v in sorted(usable_options.items())]
    rows, best, first_error = [], None, None
    for T in sizes:
        accum = -(-int(tokens_per_optimizer_step) // T)
        for kernel in kernels:
            row = dict(tokens_per_micro_batch=T, grad_accum=accum, attention=kernel)
            try:
                p = plan_for_gpu(shape, gpu_spec, tokens_per_step=T, grad_accum=accum, attention=kernel,
                                 headroom=headroom, fused_optimizer=fused_optimizer, **plan_kwargs)
            except NoFeasiblePlan as e:
                first_error = first_error or e
                rows.append(dict(row, note="does not fit"))
                continue
            for option, factor in variants:
                tp = p.throughput if not option else estimate_throughput(
                    shape, p.train, p.gpu, fused_optimizer=fused_optimizer, compute_speedup=factor)
                rows.append(dict(row, options=option or "-", checkpointing=p.train.checkpointing + (
                    f" ({p.train.checkpointed_layers})" if p.train.checkpointed_layers else ""),
                    tokens_per_s=round(tp.tokens_per_s), mfu=round(tp.mfu, 3),
                    peak_gib=round(p.memory.peak / GIB, 1)))
                if best is None or tp.tokens_per_s > best[0].throughput.tokens_per_s:
                    chosen = p if not option else replace(p, throughput=tp, assumptions=p.assumptions + [
                        f"{option}: measured x{factor:.3f} on the compute ({usable_options[option].source})"])
                    best = (chosen, T, accum, option)
    if best is None:
        raise first_error
    plan, T, accum, option = best
    compiled, liger = "compile_layers" in option, "liger" in option
    kind = _optimizer_kind(plan.train)
    bf16adamw = kind.startswith("bf16adamw_") and not plan.train.offload_optimizer
    why = []
    if bf16adamw:
        why.append(f"optimizer update {'fused' if fused_optimizer else 'eager'}: BF16AdamW(fused='auto') compiles it "
                   "into one kernel per piece on CUDA with Triton, priced at "
                   f"{(OPT_STEP_BYTES if fused_optimizer else BF16ADAMW_EAGER_STEP_BYTES)[kind]:g} B/parameter "
                   f"({plan.throughput.optimizer_s:.2f} s per step)"
                   + ("" if fused_optimizer else "; no Triton here, so the eager update is priced"))
    for name, label, avail in (("compile_layers", "compiled decoder layers", True),
                               ("liger", "Liger-Kernel (RMSNorm, SwiGLU, RoPE)", liger_available)):
        on = name in option
        if on:
            why.append(f"{label}: on, measured faster ({usable_options[option].source})")
        elif not avail:
            why.append(f"{label}: off, the liger_kernel package is not installed here")
        elif not any(name in k for k in measured):
            why.append(f"{label}: off, no measured speed-up on {plan.gpu.name} (bench_train --stage 2 measures it; "
                       "record it in helpers.train.plan_gpus.SPEEDUPS)")
        else:
            why.append(f"{label}: off, measured but not faster than the chosen configuration")
    why.append(f"memory: peak {plan.memory.peak / GIB:.1f} GiB of {plan.gpu.memory_gib:.1f} GiB; at least "
               f"{headroom:.0%} of the card kept free beyond the modelled overhead"
               + (" and one more layer's activations beside a sized selective count" if plan.train.checkpointed_layers
                  else "")
               + f": margin {(plan.gpu.memory_bytes - plan.memory.peak) / GIB:.1f} GiB")
    out = AutoConfig(plan=plan, tokens_per_micro_batch=T, grad_accum=accum, rows=rows,
                     fused_optimizer=bool(fused_optimizer and bf16adamw),
                     optimizer_update=("fused" if fused_optimizer else "eager") if bf16adamw else (
                         "DeepSpeed CPU Adam (offload)" if plan.train.offload_optimizer else kind),
                     compile_layers=compiled,
                     kernels="liger" if liger else "none", headroom=headroom, why=why)
    plan.auto = [out.summary()] + why  # the chosen plan is a fresh object: shown with its reasons
    return out


def default_attention() -> str:
    """The kernel ``attention='auto'`` trains with on a CUDA GPU (helpers.train.attention.choose_kernel):
    flash-attn varlen where the ``flash_attn`` package is installed here, else FlexAttention."""
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "flex_attention"


def plan_assumptions(shape: ModelShape, gpu: GPUSpec, plan: TrainPlan, headroom: float = HEADROOM_FRACTION
                     ) -> list[str]:
    """The assumptions a plan's figures rest on, one line each (shown under every plan)."""
    T, d = plan.tokens_per_step, plan.mean_doc_tokens
    costs = {r["kernel"]: r["attention_gflop_per_token"] for r in attention_cost_table(shape, T, d)}
    hfu = (f"calibrated to a measurement ({gpu.calibration})" if gpu.calibration else
           "assumed: no GPU measurement recorded yet (helpers.train.plan_gpus.calibrate + CALIBRATIONS)")
    return [
        f"hardware FLOPs utilisation {gpu.hfu:.0%} of {gpu.bf16_tflops:g} TFLOP/s bf16 on {gpu.name}: {hfu}",
        f"attention kernel {plan.attention}: {costs[plan.attention]:.2f} GFLOP/token (training) for "
        f"{T:,}-token rows of {d:,}-token documents; the kernels: "
        + ", ".join(f"{k} {v:.2f}" for k, v in costs.items())
        + f"; rest of the model {6 * shape.param_count() / 1e9:.1f} GFLOP/token",
        f"rows packed full ({T:,} tokens each; measured budget waste < 0.2 %: benchmarks/bench_packing.py)",
        f"optimizer step bandwidth-bound at {HBM_EFFICIENCY:.0%} of {gpu.hbm_gbs:g} GB/s",
        f"memory: {OVERHEAD_FIXED_BYTES / GIB:.1f} GiB framework overhead + {OVERHEAD_FRACTION:.0%} fragmentation, "
        f"{headroom:.0%} headroom",
    ]


def _explain(plan: TrainPlan, tp: Throughput, rows, usable: int, host_limit) -> list[str]:
    """For each option: what the best alternative value would do (the other options kept).

    An alternative may also change the fields its option drags along (e.g. ZeRO
    forces DeepSpeed's precision and optimizer). Among alternatives with the same
    value the best is described: the fastest that fits, else the smallest.
    """
    out = []
    for dim, (label, drags) in _DIMENSIONS.items():
        best = {}  # alternative value -> (rank, row)
        for row in rows:
            other = row[0]
            value = getattr(other, dim)
            if value == getattr(plan, dim):
                continue
            diff = {f.name for f in fields(TrainPlan) if getattr(other, f.name) != getattr(plan, f.name)}
            if not diff <= {dim} | drags:
                continue
            fits = row[3] and row[4]
            rank = (0, -row[2].tokens_per_s) if fits else (1, row[1].peak)
            if value not in best or rank < best[value][0]:
                best[value] = (rank, row)
        notes = []
        for value, (_, (other, mem, otp, fits_gpu, fits_host)) in best.items():
            name = f"{value}" + (f" ({other.implementation})" if dim in ("precision", "optimizer") else "")
            if not fits_gpu:
                notes.append(f"{name} needs {mem.peak / GIB:.1f} GiB > {usable / GIB:.1f} GiB")
            elif not fits_host:
                notes.append(f"{name} needs {mem.cpu / GIB:.1f} GiB host RAM > {host_limit / GIB:.1f} GiB usable")
            elif otp.tokens_per_s < tp.tokens_per_s * (1 - SPEED_TIE):
                notes.append(f"{name} fits ({mem.peak / GIB:.1f} GiB) but is "
                             f"{1 - otp.tokens_per_s / tp.tokens_per_s:.0%} slower")
            else:
                notes.append(f"{name} is as fast but has worse numerics or needs more memory "
                             f"({mem.peak / GIB:.1f} GiB)")
        if notes:
            out.append(f"{label} = {getattr(plan, dim)}; instead: " + "; ".join(notes))
    return out


def _no_fit_message(shape: ModelShape, gpu: GPUSpec, usable: int, host_limit, rows, tokens_per_step: int) -> str:
    smallest = min(rows, key=lambda r: r[1].peak)
    gpu_ok = [r for r in rows if r[3]]
    msg = (f"no training configuration of this {shape.param_count() / 1e9:.2f} B-parameter model fits "
           f"{gpu.name} ({usable / GIB:.1f} GiB usable) at {tokens_per_step:,} tokens per micro-batch. "
           f"The smallest GPU footprint is {smallest[1].peak / GIB:.1f} GiB ({smallest[0].implementation}, "
           f"checkpointing={smallest[0].checkpointing}, ce={smallest[0].ce})")
    if smallest[1].cpu:
        msg += f" and needs {smallest[1].cpu / GIB:.1f} GiB host RAM for CPU offload"
    if gpu_ok:
        need = min(r[1].cpu for r in gpu_ok)
        msg += (f". Configurations with CPU offload fit the GPU but need ≥ {need / GIB:.1f} GiB host RAM; "
                f"this host has {host_limit / GIB / HOST_RAM_USABLE_FRACTION:.1f} GiB "
                f"({HOST_RAM_USABLE_FRACTION:.0%} usable)")
    msg += (". Options: a larger GPU (A100-40GB or more), several GPUs (n_gpus) with ZeRO sharding, "
            "a host with more RAM (host_ram_gib=) for offload, or fewer tokens_per_step.")
    return msg


def describe_candidates(shape: ModelShape, gpu, candidates: Iterable[TrainPlan]) -> list[dict]:
    """One row per configuration (for a notebook table): options, peak GiB, tokens/s, fits."""
    gpu = _resolve_gpu(gpu)
    out = []
    for p in candidates:
        mem = estimate_memory(shape, p)
        tp = estimate_throughput(shape, p, gpu)
        out.append(dict(precision=p.precision, optimizer=p.optimizer, grad_dtype=p.grad_dtype,
                        checkpointing=p.checkpointing, checkpointed_layers=checkpointed_layer_count(shape, p),
                        ce=p.ce, zero_stage=p.zero_stage,
                        offload_optimizer=p.offload_optimizer, offload_params=p.offload_params,
                        peak_gib=round(mem.peak / GIB, 2), cpu_gib=round(mem.cpu / GIB, 2),
                        tokens_per_s=round(tp.tokens_per_s), fits=mem.peak <= gpu.memory_bytes * (1 - HEADROOM_FRACTION)))
    return out
