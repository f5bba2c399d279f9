"""The planner's GPU table, GPU detection, and calibration of its speed constants to a measurement.

Part of :mod:`helpers.train.planner` (which re-exports every name here). Torch-free at import.

The table's compute figures are datasheet peaks; the achievable utilisation ``hfu`` of
a whole training step is an *assumption* until a GPU run measures it. When
``benchmarks/bench_train.py`` has run on a card, :func:`calibrate` derives the ``hfu``
that makes the planner's tokens/s equal the measured one, and the result is recorded
in :data:`CALIBRATIONS` (value, source: card, date, command). A calibrated spec says
so in every plan's assumptions (``GPUSpec.calibration``); an uncalibrated one says its
``hfu`` is assumed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .plan_model import GIB


@dataclass(frozen=True)
class GPUSpec:
    """What the planner needs to know about one GPU model.

    ``memory_gib`` is what ``torch.cuda.get_device_properties().total_memory``
    reports (a little under the marketing number); a detected GPU replaces it
    with the measured value. ``hfu`` is the assumed achievable *hardware* FLOPs
    utilisation of a whole training step (matmuls, attention, norms, CE; the
    recompute of checkpointing counts as useful hardware work): well-tuned bf16
    matmuls at h=3072 reach ~70-75 % of peak on an A100; the step as a whole ~55 %
    (torchtune's 6,960 tokens/s for Llama-3.2-3B with activation checkpointing is
    ~58 % HFU). Hopper is harder to saturate at this model size (~45 %). Replace
    these with measurements from the GPU benchmark when one is recorded.
    ``host_ram_gib`` is the typical Colab VM RAM that goes with the card (None:
    unknown, CPU offload is then not checked against it).
    """

    name: str
    memory_gib: float
    bf16_tflops: float  # dense bf16 tensor-core peak, TFLOP/s
    hbm_gbs: float  # memory bandwidth, GB/s (optimizer steps are bandwidth-bound)
    hfu: float  # achievable hardware FLOPs utilisation (see above)
    host_ram_gib: float | None = None
    pcie_gbs: float = 12.0  # effective host<->device copy rate for offload, GB/s (PCIe 4 x16, pinned)
    assumed_compute: bool = False  # True when compute figures were borrowed (unknown card)
    calibration: str | None = None  # where a measured hfu came from (None: hfu is the assumption above)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


GPUS: dict[str, GPUSpec] = {
    # Colab's "A100": 40 GB SXM4, VM with 83.5 GB RAM.
    "A100-40GB": GPUSpec("A100-40GB", 39.39, 312.0, 1555.0, 0.55, host_ram_gib=83.5 * 1e9 / GIB),
    "A100-80GB": GPUSpec("A100-80GB", 79.15, 312.0, 2039.0, 0.55, host_ram_gib=None),
    # Colab's L4 VM has 53 GB RAM. 121 TFLOP/s dense bf16; power-capped at 72 W, so a lower HFU.
    "L4-24GB": GPUSpec("L4-24GB", 22.03, 121.0, 300.0, 0.45, host_ram_gib=53.0 * 1e9 / GIB),
    "H100-80GB": GPUSpec("H100-80GB", 79.11, 989.0, 3350.0, 0.45, host_ram_gib=None, pcie_gbs=25.0),
    "H200-141GB": GPUSpec("H200-141GB", 139.8, 989.0, 4800.0, 0.45, host_ram_gib=None, pcie_gbs=25.0),
}
_GPU_ALIASES = {"A100": "A100-40GB", "A10040GB": "A100-40GB", "A10080GB": "A100-80GB", "L4": "L4-24GB",
                "L424GB": "L4-24GB", "H100": "H100-80GB", "H10080GB": "H100-80GB", "H200": "H200-141GB",
                "H200141GB": "H200-141GB"}


# H100s that torch names apart from the SXM card ("NVIDIA H100 80GB HBM3"): (planner name, dense bf16 TFLOP/s,
# HBM GB/s) from NVIDIA's H100 datasheet (dense = half the with-sparsity figure); the SXM card's assumed hfu, uncalibrated.
_H100_VARIANTS = {"PCIE": ("H100-PCIe-80GB", 756.0, 2000.0), "NVL": ("H100-NVL-94GB", 835.0, 3900.0)}


def get_gpu(name: str) -> GPUSpec:
    """Look up a GPU by planner name (``"A100-40GB"``, ``"L4"``, ``"H100"``, ... case-insensitive)."""
    key = re.sub(r"[^A-Z0-9]", "", name.upper())
    for canonical in GPUS:
        if re.sub(r"[^A-Z0-9]", "", canonical) == key:
            return calibrated(GPUS[canonical])
    if key in _GPU_ALIASES:
        return calibrated(GPUS[_GPU_ALIASES[key]])
    raise ValueError(f"unknown GPU {name!r}; known: {', '.join(GPUS)} (or pass a memory size in GiB)")


def match_gpu(device_name: str, total_memory_bytes: int) -> GPUSpec:
    """The spec for a CUDA device name as torch reports it, with the measured memory.

    ``"NVIDIA A100-SXM4-40GB"`` -> A100-40GB; an A100 with more than 60 GiB ->
    A100-80GB; ``"NVIDIA L4"`` -> L4-24GB (not L40/L40S); H100 and H200 by name.
    Unknown cards keep their name and memory and borrow A100 compute figures
    (``assumed_compute=True``, shown in the plan).
    """
    mem_gib = total_memory_bytes / GIB
    upper = device_name.upper()
    if "A100" in upper:
        spec = GPUS["A100-80GB" if mem_gib > 60 else "A100-40GB"]
    elif "H200" in upper:
        spec = GPUS["H200-141GB"]
    elif "H100" in upper:
        for marker, (name, tflops, hbm) in _H100_VARIANTS.items():
            if marker in upper:  # not the SXM card: its peak would overstate theirs (MFU read too low)
                return replace(GPUS["H100-80GB"], name=name, memory_gib=mem_gib, bf16_tflops=tflops, hbm_gbs=hbm)
        spec = GPUS["H100-80GB"]
    elif re.search(r"\bL4\b", upper):
        spec = GPUS["L4-24GB"]
    else:
        return replace(GPUS["A100-40GB"], name=device_name, memory_gib=mem_gib, host_ram_gib=None,
                       assumed_compute=True)
    return replace(calibrated(spec), memory_gib=mem_gib)


def detect_gpu(device: int = 0) -> GPUSpec | None:
    """The GPU torch sees (name and total memory), or None on a machine without CUDA."""
    import torch  # lazy: importing the planner must not initialise CUDA

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device)
    return match_gpu(torch.cuda.get_device_name(device), props.total_memory)


def _resolve_gpu(gpu) -> GPUSpec:
    if isinstance(gpu, GPUSpec):
        return gpu
    if isinstance(gpu, str):
        return get_gpu(gpu)
    if isinstance(gpu, (int, float)) and not isinstance(gpu, bool) and gpu > 0:
        # Only the memory is known: borrow A100 compute figures so that candidates can be ranked.
        return replace(GPUS["A100-40GB"], name=f"{gpu:g} GiB GPU", memory_gib=float(gpu), host_ram_gib=None,
                       assumed_compute=True)
    raise ValueError(f"gpu must be a GPUSpec, a GPU name ({', '.join(GPUS)}) or a memory size in GiB, got {gpu!r}")



# ============================================================================ calibration

@dataclass(frozen=True)
class Calibration:
    """A measured hardware utilisation for one GPU model, and where it came from."""

    gpu: str  # GPUS key
    hfu: float
    source: str  # card, date, command and configuration of the measurement


# Measured calibrations, newest last (a GPU without a row keeps the table's assumed hfu; the
# A100s have none yet). Add a row with the output of `calibrate(...)` after a bench_train run
# (benchmarks/README.md says how); get_gpu / match_gpu then use it.
CALIBRATIONS: list[Calibration] = [
    # Refitted 2026-12-07 from the same measurement (the 8K row of
    # benchmarks/results/gpu_check_2026-12-04_NVIDIA_H200.jsonl: 9,928.5 tokens/s, accumulation 1, full
    # checkpointing, CE chunks of 1,024, flex_attention, mean document span 1,807 tokens, pure bf16 +
    # BF16AdamW(stochastic, bf16 states)). That run's optimizer step was BF16AdamW's *eager* update, which
    # moves 244 B per parameter (counted: precision.step_traffic_per_element; BF16ADAMW_EAGER_STEP_BYTES), not
    # the 120 B/param the planner charged then: the first fit (0.3223) put ~0.12 s of optimizer time into the
    # compute. Step time = compute / hfu + optimizer (bandwidth-bound, 0.236 s at 244 B/param on 4.8 TB/s x 0.7):
    # hfu = 0.45 x c / (p/m - (1 - c)) with the planner's prediction p = 11,012 tokens/s at hfu 0.45 (c = its
    # compute share 0.683) and the measurement m = 9,928.5 -> 0.388. (At the 278 B/param the issue quotes:
    # 0.411.) tests/train/test_planner.py::test_h200_calibration_is_refitted_from_the_recorded_row recomputes both
    # fits from the jsonl row.
    Calibration("H200-141GB", 0.388,
                "NVIDIA H200 capped to 40 GB, 2026-12-04, torch 2.11.0+cu130: bash scripts/gpu_check.sh "
                "(bench_train --model llama-3.2-3b --tokens-per-step 8192 --steps 4 --warmup 2 --memory-cap-gb 40; "
                "9,929 tokens/s, flex_attention, full checkpointing, accumulation 1, eager BF16AdamW update priced "
                "at its counted 244 B/param; two timed steps with up to two recompiles among them: a lower bound)"),
]


def calibrated(spec: GPUSpec) -> GPUSpec:
    """``spec`` with the newest recorded :class:`Calibration` of its GPU model applied (if any)."""
    rows = [c for c in CALIBRATIONS if c.gpu == spec.name]
    if not rows:
        return spec
    c = rows[-1]
    return replace(spec, hfu=c.hfu, calibration=c.source)


def calibrate(spec: GPUSpec, predicted_tokens_per_s: float, measured_tokens_per_s: float,
              compute_fraction: float, source: str) -> Calibration:
    """The hfu under which the planner would have predicted ``measured_tokens_per_s``.

    ``predicted_tokens_per_s``: the planner's figure for the measured configuration with
    ``spec``'s current hfu; ``compute_fraction``: the share of its step time that is GPU
    compute (``Throughput.compute_s / step_time_s``; the optimizer and offload parts do not
    scale with hfu). Step time scales as ``compute / hfu + rest``, so
    ``hfu' = hfu · c / (p/m - (1 - c))`` with p, m the predicted and measured tokens/s.
    """
    if predicted_tokens_per_s <= 0 or measured_tokens_per_s <= 0 or not 0 < compute_fraction <= 1:
        raise ValueError(f"need positive tokens/s and 0 < compute_fraction <= 1, got {predicted_tokens_per_s}, "
                         f"{measured_tokens_per_s}, {compute_fraction}")
    ratio = predicted_tokens_per_s / measured_tokens_per_s  # measured step time / predicted step time
    denom = ratio - (1 - compute_fraction)
    if denom <= 0:
        raise ValueError(f"the measurement ({measured_tokens_per_s:.0f} tokens/s) is faster than the planner's "
                         f"non-compute time alone allows; check the configuration matches the prediction")
    return Calibration(spec.name, round(spec.hfu * compute_fraction / denom, 4), source)


# ============================================================================ measured speed-ups

@dataclass(frozen=True)
class Speedup:
    """A measured factor on the compute part of a training step for one GPU model, from an option the
    planner's FLOP model does not see (:func:`helpers.train.planner.auto_config` weighs it).

    ``option``: ``"compile_layers"`` (regional torch.compile of the decoder layers, StageConfig.compile_layers),
    ``"liger"`` (Liger-Kernel's fused RMSNorm / SwiGLU / RoPE, StageConfig.kernels) or both joined by ``+``
    when measured together (a combination is never derived from its parts). ``factor``: tokens/s with the
    option over tokens/s without, same configuration, same card (bench_train --stage 2 rows side by side).
    """

    gpu: str  # GPUS key
    option: str
    factor: float
    source: str  # card, date, command and the two measured rows


SPEEDUP_OPTIONS = ("compile_layers", "liger", "compile_layers+liger")
# Measured speed-ups, newest last. None yet: no GPU run of bench_train --stage 2 with --compile-layers or
# --kernels liger has been recorded, so the auto-config leaves both off (it prices only what was measured).
SPEEDUPS: list[Speedup] = []


def measured_speedups(gpu_name: str) -> dict[str, Speedup]:
    """The newest recorded :class:`Speedup` per option for the GPU model ``gpu_name`` (a GPUS key)."""
    out: dict[str, Speedup] = {}
    for s in SPEEDUPS:
        if s.option not in SPEEDUP_OPTIONS:
            raise ValueError(f"Speedup option {s.option!r}: expected one of {SPEEDUP_OPTIONS}")
        if not s.factor > 0:
            raise ValueError(f"Speedup factor {s.factor!r} of {s.option}: expected > 0")
        if s.gpu == gpu_name:
            out[s.option] = s
    return out
