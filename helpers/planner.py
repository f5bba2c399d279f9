"""GPU memory and speed planner for full fine-tuning of the extended LLaMA.

Given a model shape, a GPU and a token budget per micro-batch, :func:`plan_for_gpu`
enumerates the training configurations the recipe can run (precision, optimizer,
activation checkpointing, cross-entropy, DeepSpeed ZeRO sharding and CPU offload),
predicts the peak GPU memory of each (:func:`estimate_memory`) and its speed
(:func:`estimate_throughput`), keeps those that fit, and picks the fastest. The
stage notebooks print the resulting :class:`Plan` before training starts.

Every number is a model, written down so that it can be checked by hand (the
tests do) and corrected when a GPU measurement disagrees. Units: bytes, tokens,
FLOPs, seconds. ``N`` is the parameter count, ``T`` the tokens of one micro-batch
on one GPU (packed sequences: the sequence budget), ``h`` the hidden size, ``I``
the MLP width, ``V`` the (padded) vocabulary, ``L`` the layer count.

Nothing here touches a GPU at import; :func:`detect_gpu` imports torch lazily.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Iterable

from .tokens import CODES_PER_FRAME, FRAME_SIZE, TokenLayout

GIB = 1 << 30

# ============================================================================ model shape


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a LLaMA-family decoder that memory and FLOPs depend on."""

    hidden: int  # model width h
    layers: int  # decoder layers L
    heads: int  # query heads
    kv_heads: int  # key/value heads (GQA); == heads for plain multi-head attention
    intermediate: int  # SwiGLU MLP width I
    vocab: int  # embedding rows V (after padding to a multiple of 64 for the extended model)
    tied: bool = True  # LM head shares the embedding matrix (Llama 3.2 1B/3B do)
    head_dim: int | None = None  # None: hidden // heads

    def __post_init__(self):
        for name in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ModelShape.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}) for GQA")
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(f"hidden ({self.hidden}) is not divisible by heads ({self.heads}); give head_dim")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    # Parameter counts (no biases: LLaMA has none).
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def attention_params_per_layer(self) -> int:
        """q: h×(heads·d), k and v: h×(kv_heads·d) each (GQA), o: (heads·d)×h."""
        return 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim

    def mlp_params_per_layer(self) -> int:
        """SwiGLU: gate and up h×I, down I×h."""
        return 3 * self.hidden * self.intermediate

    def layer_params(self) -> int:
        """Attention + MLP + two RMSNorm weight vectors (h each)."""
        return self.attention_params_per_layer() + self.mlp_params_per_layer() + 2 * self.hidden

    def param_count(self) -> int:
        """Embeddings (+ a separate LM head when untied) + L layers + the final RMSNorm."""
        emb = self.embedding_params() * (1 if self.tied else 2)
        return emb + self.layers * self.layer_params() + self.hidden

    def with_vocab(self, vocab: int) -> "ModelShape":
        return replace(self, vocab=int(vocab))

    @classmethod
    def from_config(cls, config, vocab: int | None = None) -> "ModelShape":
        """Read a ``transformers`` LLaMA config (any object with the same attribute names).

        ``vocab`` overrides ``config.vocab_size`` (e.g. the padded extended size
        before the embeddings have been resized).
        """
        missing = [a for a in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if getattr(config, a, None) is None]
        if missing:
            raise ValueError(f"config {type(config).__name__} lacks {missing}; expected a LLaMA-style config")
        heads = int(config.num_attention_heads)
        return cls(
            hidden=int(config.hidden_size),
            layers=int(config.num_hidden_layers),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            intermediate=int(config.intermediate_size),
            vocab=int(vocab if vocab is not None else config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
            head_dim=getattr(config, "head_dim", None),
        )


# meta-llama/Llama-3.2-3B config.json: hidden 3072, 28 layers, 24 heads, 8 KV heads,
# head_dim 128, intermediate 8192, vocab 128,256, tied embeddings -> 3,212,749,824
# parameters. (The seed's architecture figure says "36 layers"; that is wrong for
# Llama 3.2 3B — 36 layers would be ~4.0 B parameters. We follow the config.)
LLAMA_3_2_3B = ModelShape(hidden=3072, layers=28, heads=24, kv_heads=8, intermediate=8192, vocab=128_256, tied=True)
# The same model after Stage 1: base vocabulary + the token contract, padded to a multiple of 64.
LLAMA_3_2_3B_AUDIO = LLAMA_3_2_3B.with_vocab(TokenLayout(LLAMA_3_2_3B.vocab).padded_vocab_size())

# ============================================================================ GPUs


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


def get_gpu(name: str) -> GPUSpec:
    """Look up a GPU by planner name (``"A100-40GB"``, ``"L4"``, ``"H100"``, ... case-insensitive)."""
    key = re.sub(r"[^A-Z0-9]", "", name.upper())
    for canonical in GPUS:
        if re.sub(r"[^A-Z0-9]", "", canonical) == key:
            return GPUS[canonical]
    if key in _GPU_ALIASES:
        return GPUS[_GPU_ALIASES[key]]
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
        spec = GPUS["H100-80GB"]
    elif re.search(r"\bL4\b", upper):
        spec = GPUS["L4-24GB"]
    else:
        return replace(GPUS["A100-40GB"], name=device_name, memory_gib=mem_gib, host_ram_gib=None,
                       assumed_compute=True)
    return replace(spec, memory_gib=mem_gib)


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


# ============================================================================ training configuration

PRECISIONS = ("bf16_mixed_fp32_master", "bf16_pure")
OPTIMIZERS = ("adamw_fp32", "adamw_bf16", "adamw_8bit")
CHECKPOINTING = ("none", "selective", "full")
CROSS_ENTROPY = ("full", "chunked")

# Optimizer state bytes per parameter: AdamW keeps two moments.
#   fp32: 2 × 4; bf16 (helpers.precision.BF16AdamW(state_dtype=bf16)): 2 × 2;
#   8-bit (bitsandbytes AdamW8bit): 2 × 1 plus one fp32 absmax per 256-element block per moment.
BNB_BLOCK = 256
STATE_BYTES = {"adamw_fp32": 8.0, "adamw_bf16": 4.0, "adamw_8bit": 2.0 + 2 * 4 / BNB_BLOCK}


@dataclass(frozen=True)
class TrainPlan:
    """One training configuration. Invalid combinations raise in ``__post_init__``.

    How each is realised by the recipe is :attr:`implementation`. The supported
    combinations are exactly those the code can run:

    - mixed precision with fp32 gradients = an fp32 model under
      ``torch.autocast(bfloat16)``; optimizer torch AdamW (``fused=True``, fp32
      states) or bitsandbytes AdamW8bit.
    - mixed precision with bf16 gradients = a bf16 model and
      :class:`helpers.precision.BF16AdamW` ``(rounding="master")`` holding the fp32
      master (states fp32 or bf16).
    - pure bf16 with stochastic rounding = a bf16 model and ``BF16AdamW``
      ``(rounding="stochastic")``.
    - pure bf16 without stochastic rounding = the lost-update configuration (e.g.
      bitsandbytes 8-bit on bf16 weights, as torchtune's recipe does); allowed but
      flagged by :attr:`lost_updates`, and never picked by the planner unless asked.
    - ZeRO-2/3 = DeepSpeed with ``bf16`` enabled, which always keeps fp32 master
      weights and fp32 Adam states in its optimizer partition.
    """

    precision: str = "bf16_mixed_fp32_master"  # see PRECISIONS
    optimizer: str = "adamw_fp32"  # see OPTIMIZERS / STATE_BYTES
    grad_dtype: str | None = None  # "fp32" | "bf16"; None: fp32 for mixed (autocast), bf16 otherwise
    checkpointing: str = "full"  # none | selective (every `selective_every`-th layer) | full (every layer)
    ce: str = "chunked"  # full: logits for all T tokens at once; chunked: ce_chunk_tokens at a time
    ce_chunk_tokens: int = 1024  # tokens per CE chunk (chunked CE only)
    tokens_per_step: int = 8192  # tokens of one packed micro-batch on one GPU (the sequence budget)
    grad_accum: int = 8  # micro-batches per optimizer step
    zero_stage: int = 0  # 0 (no DeepSpeed), 2 or 3
    n_gpus: int = 1  # data-parallel GPUs (one host)
    offload_optimizer: bool = False  # ZeRO >= 2: master weights, Adam states and fp32 grads in CPU RAM
    offload_params: bool = False  # ZeRO-3 only: bf16 weights in CPU RAM too
    stochastic_rounding: bool | None = None  # pure bf16: None -> True; mixed: must be False/None
    selective_every: int = 2  # "selective": checkpoint one layer in every k
    mean_doc_tokens: int = 1024  # mean attention span (packed documents attend within themselves)

    def __post_init__(self):
        def bad(field_name, expected):
            raise ValueError(f"TrainPlan.{field_name}={getattr(self, field_name)!r}: expected {expected}")

        if self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {OPTIMIZERS}")
        if self.checkpointing not in CHECKPOINTING:
            bad("checkpointing", f"one of {CHECKPOINTING}")
        if self.ce not in CROSS_ENTROPY:
            bad("ce", f"one of {CROSS_ENTROPY}")
        for name in ("ce_chunk_tokens", "tokens_per_step", "grad_accum", "n_gpus", "selective_every",
                     "mean_doc_tokens"):
            if int(getattr(self, name)) < 1:
                bad(name, "a positive integer")
        if self.zero_stage not in (0, 2, 3):
            bad("zero_stage", "0, 2 or 3")
        if self.offload_optimizer and self.zero_stage < 2:
            bad("offload_optimizer", "False unless zero_stage is 2 or 3 (offload is a DeepSpeed ZeRO feature)")
        if self.offload_params and not (self.zero_stage == 3 and self.offload_optimizer):
            bad("offload_params", "False unless zero_stage=3 with offload_optimizer=True")
        pure = self.precision == "bf16_pure"
        sr = self.stochastic_rounding
        if sr is None:
            sr = pure
            object.__setattr__(self, "stochastic_rounding", sr)
        if sr and not pure:
            bad("stochastic_rounding", "False with fp32 master weights (nothing is rounded away there)")
        gd = self.grad_dtype
        if gd is None:
            gd = "fp32" if (not pure and self.zero_stage == 0) else "bf16"
            object.__setattr__(self, "grad_dtype", gd)
        if gd not in ("fp32", "bf16"):
            bad("grad_dtype", "'fp32' or 'bf16'")
        if self.zero_stage:
            if pure:
                bad("precision", "'bf16_mixed_fp32_master' with ZeRO (DeepSpeed bf16 always keeps fp32 masters)")
            if self.optimizer != "adamw_fp32":
                bad("optimizer", "'adamw_fp32' with ZeRO (DeepSpeed's fused/CPU Adam keeps fp32 states)")
            if gd != "bf16":
                bad("grad_dtype", "'bf16' with ZeRO (bf16 gradients, reduced into fp32 partitions)")
        elif pure:
            if gd != "bf16":
                bad("grad_dtype", "'bf16' for bf16_pure (gradients have the parameters' dtype)")
            if sr and self.optimizer == "adamw_8bit":
                bad("optimizer", "'adamw_fp32' or 'adamw_bf16' with stochastic rounding "
                                 "(BF16AdamW; bitsandbytes 8-bit cannot round stochastically)")
        else:  # mixed, no ZeRO
            if gd == "fp32" and self.optimizer == "adamw_bf16":
                bad("optimizer", "'adamw_fp32' or 'adamw_8bit' for an fp32 model under autocast")
            if gd == "bf16" and self.optimizer == "adamw_8bit":
                bad("optimizer", "'adamw_fp32' or 'adamw_bf16' for fp32 masters with bf16 grads "
                                 "(BF16AdamW rounding='master'); 8-bit needs grad_dtype='fp32' (autocast)")

    @property
    def lost_updates(self) -> bool:
        """True when small updates are rounded away (pure bf16 without stochastic rounding)."""
        return self.precision == "bf16_pure" and not self.stochastic_rounding

    @property
    def implementation(self) -> str:
        """How the recipe realises this configuration (one line)."""
        state = {"adamw_fp32": "fp32", "adamw_bf16": "bf16"}.get(self.optimizer)
        if self.zero_stage:
            off = []
            if self.offload_optimizer:
                off.append("offload_optimizer=cpu")
            if self.offload_params:
                off.append("offload_param=cpu")
            return f"DeepSpeed ZeRO-{self.zero_stage}, bf16 enabled" + (f", {', '.join(off)}" if off else "")
        if self.precision == "bf16_pure":
            if self.stochastic_rounding:
                return f"bf16 model + helpers.precision.BF16AdamW(rounding='stochastic', state_dtype={state})"
            opt = "bitsandbytes AdamW8bit" if self.optimizer == "adamw_8bit" else "torch AdamW"
            return f"bf16 model + {opt} (LOST UPDATES: small steps round away)"
        if self.grad_dtype == "fp32":
            opt = "bitsandbytes AdamW8bit" if self.optimizer == "adamw_8bit" else "torch AdamW(fused=True)"
            return f"fp32 model + torch.autocast(bfloat16) + {opt}"
        return f"bf16 model + helpers.precision.BF16AdamW(rounding='master', state_dtype={state})"

    @property
    def numerics_rank(self) -> int:
        """Lower is better: used to break ties between equally fast configurations."""
        if self.lost_updates:
            return 9
        if self.precision == "bf16_mixed_fp32_master":
            return 0 if self.optimizer == "adamw_fp32" else 1
        return 2 if self.optimizer == "adamw_fp32" else 3

    def tokens_per_optimizer_step(self) -> int:
        return self.tokens_per_step * self.grad_accum * self.n_gpus


# ============================================================================ memory

# Framework overhead: CUDA context + cuBLAS/cuDNN workspaces + NCCL buffers (~1-1.5 GiB)
# and caching-allocator fragmentation (a few % of what is allocated).
OVERHEAD_FIXED_BYTES = int(1.5 * GIB)
OVERHEAD_FRACTION = 0.05
# Peak cross-entropy bytes per logit (token × vocab entry), measured as the backward of
# fp32 log-softmax: saved fp32 log-probs (4) + their gradient (4) + the gradient w.r.t.
# the fp32 logits (4); the bf16 logits (2) and their bf16 gradient (2) overlap the ends.
CE_BYTES_PER_LOGIT = 12
# ZeRO gradient buckets (set "reduce_bucket_size"/"allgather_bucket_size" to this in the
# DeepSpeed config); two are in flight at a time.
ZERO_BUCKET_ELEMENTS = 50_000_000
# Elements BF16AdamW updates at once and the fp32 temporaries per element it holds meanwhile
# (grad, m, v, denom, weight, rounding noise and result, ~8 × 4 B).
BF16ADAMW_CHUNK_ELEMENTS = 1 << 24
BF16ADAMW_TEMP_BYTES_PER_ELEMENT = 32
# Part of host RAM the offloaded tensors may use (the OS, Python, the data loader need the rest).
HOST_RAM_USABLE_FRACTION = 0.85


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU by component, and host RAM for offload. ``peak`` is the planning number.

    ``peak = overhead + max(static + activations + logits, static + optimizer_step)``
    where ``static = weights + master_weights + gradients + optimizer_states``: the
    backward pass (all checkpoints and the CE live at once) and the optimizer step
    (activations freed, step temporaries alive) are the two candidates for the peak.
    """

    weights: int  # bf16 compute weights (incl. ZeRO-3 gather buffers)
    master_weights: int  # fp32 master copy on the GPU
    gradients: int
    optimizer_states: int
    activations: int  # saved for backward, incl. one recomputed layer and backward working set
    logits: int  # cross-entropy peak (full logits or one chunk)
    optimizer_step: int  # temporaries of the optimizer step
    overhead: int  # framework: fixed + fraction
    peak: int
    cpu: int = 0  # host RAM for offloaded tensors (all processes on the host)

    def components(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def static(self) -> int:
        return self.weights + self.master_weights + self.gradients + self.optimizer_states


def activation_bytes_per_token_per_layer(shape: ModelShape) -> int:
    """Bytes one decoder layer saves for backward per token without checkpointing (bf16, SDPA).

    Counted from what autograd keeps in HF's LlamaDecoderLayer (bf16 = 2 B/element,
    flash/memory-efficient SDPA: no T×T score matrix, only a per-head fp32 logsumexp):

    - each RMSNorm (×2): its fp32 upcast input (4h), the normalised bf16 value (2h)
      and the output that feeds the projections (2h)                     -> 16h
    - attention: RoPE'd q (2·q_dim), RoPE'd k and v (2·kv_dim each), the SDPA output
      that is also o_proj's input (2·q_dim), logsumexp (4·heads)         -> 4h + 4kv + 4·heads
    - SwiGLU MLP: gate out, silu(gate), up out, their product (2I each)  -> 8I

    Total ``20h + 4·kv_dim + 8I + 4·heads`` (q_dim = h for LLaMA). For Llama-3.2-3B:
    20·3072 + 4·1024 + 8·8192 + 4·24 = 131,168 B. A test measures the real layer.
    """
    h, I = shape.hidden, shape.intermediate
    return 16 * h + 4 * shape.q_dim + 4 * shape.kv_dim + 8 * I + 4 * shape.heads


def activation_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """Peak bytes of saved activations for one micro-batch of ``T = plan.tokens_per_step`` tokens.

    With ``A`` = :func:`activation_bytes_per_token_per_layer`, per token:

    - ``none``:      ``L·A``
    - ``selective``: ``(L - c)·A + c·2h + A`` with ``c = L // selective_every``
      checkpointed layers (each keeps only its bf16 input, 2h) and one of them
      recomputed at a time during backward
    - ``full``:      ``L·2h + A`` (every layer keeps its input; one is recomputed)

    plus for every mode the final RMSNorm (8h) and the backward working set of the
    layer being differentiated: gradient of the residual stream in and out (2·2h)
    and of the three MLP intermediates (3·2I) = ``4h + 6I``.
    """
    h, L, T = shape.hidden, shape.layers, plan.tokens_per_step
    A = activation_bytes_per_token_per_layer(shape)
    if plan.checkpointing == "none":
        layers = L * A
    elif plan.checkpointing == "selective":
        c = L // plan.selective_every
        layers = (L - c) * A + c * 2 * h + (A if c else 0)
    else:
        layers = L * 2 * h + A
    per_token = layers + 8 * h + (4 * h + 6 * shape.intermediate)
    return T * per_token


def logits_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """Cross-entropy peak: ``rows · V · CE_BYTES_PER_LOGIT``.

    ``rows`` is T for the full CE (HF's default: bf16 logits for the whole
    micro-batch, upcast to fp32) and ``min(ce_chunk_tokens, T)`` for the chunked
    CE (LM head + CE per chunk under checkpointing, recomputed in backward; the
    full logits are never materialised), which also keeps the gradient w.r.t. the
    final hidden states (T·2h).
    """
    T, V = plan.tokens_per_step, shape.vocab
    if plan.ce == "full":
        return T * V * CE_BYTES_PER_LOGIT
    return min(plan.ce_chunk_tokens, T) * V * CE_BYTES_PER_LOGIT + T * 2 * shape.hidden


def estimate_memory(shape: ModelShape, plan: TrainPlan) -> MemoryBreakdown:
    """Predict per-GPU memory of one training configuration.

    Bytes per parameter (N) on each GPU, n = ``plan.n_gpus``:

    ==========================  =======  ========  ==========  ======================
    configuration               weights  master    gradients   optimizer states
    ==========================  =======  ========  ==========  ======================
    mixed, autocast (fp32 grad) 2        4         4           8 / 2.03 (8-bit)
    mixed, BF16AdamW master     2        4         2           8 / 4 (bf16 states)
    pure bf16                   2        0         2           8 / 4 / 2.03
    ZeRO-2                      2        4/n       2/n         8/n
    ZeRO-3                      2/n + G  4/n       2/n         8/n
    ZeRO + offload_optimizer    (same)   0 (CPU)   buckets     0 (CPU)
    ZeRO-3 + offload_params     G        0 (CPU)   buckets     0 (CPU)
    ==========================  =======  ========  ==========  ======================

    Under autocast the 2 B/param "weights" are the bf16 casts of the fp32
    parameters that autocast caches during the forward pass. ZeRO gradients:
    a bf16 partition (2N/n) plus two reduce buckets
    (``2 · ZERO_BUCKET_ELEMENTS · 2 B``); DeepSpeed builds the fp32 gradient
    partition (4N/n) at the optimizer step. ``G`` is ZeRO-3's gather buffer: the
    embedding plus two prefetched layers in bf16. Offloaded tensors are counted
    in ``cpu`` (fp32 master 4N + states 8N + fp32 grads 4N, + bf16 params 2N).

    Activations: :func:`activation_bytes`; logits: :func:`logits_bytes`. Optimizer
    step temporaries: BF16AdamW ``BF16ADAMW_CHUNK_ELEMENTS × 32 B``; torch AdamW
    (``fused=True``) and bitsandbytes are fused kernels (≈ 0); ZeRO without
    offload: the fp32 gradient partition 4N/n. Overhead:
    ``OVERHEAD_FIXED_BYTES + OVERHEAD_FRACTION × peak-before-overhead``.
    """
    N, n = shape.param_count(), plan.n_gpus
    bucket = 2 * ZERO_BUCKET_ELEMENTS * 2
    gather = 2 * (shape.embedding_params() + 2 * shape.layer_params())
    cpu = 0
    step = 0
    if plan.zero_stage == 0:
        weights = 2 * N
        master = 4 * N if plan.precision == "bf16_mixed_fp32_master" else 0
        grads = (4 if plan.grad_dtype == "fp32" else 2) * N
        states = math.ceil(STATE_BYTES[plan.optimizer] * N)
        uses_bf16adamw = plan.grad_dtype == "bf16" and (plan.precision == "bf16_mixed_fp32_master"
                                                        or plan.stochastic_rounding)
        if uses_bf16adamw:
            step = min(BF16ADAMW_CHUNK_ELEMENTS, N) * BF16ADAMW_TEMP_BYTES_PER_ELEMENT
    else:
        shard = math.ceil(N / n)
        if plan.zero_stage == 3:
            weights = (0 if plan.offload_params else 2 * shard) + gather
        else:
            weights = 2 * N
        if plan.offload_optimizer:
            master, states, grads = 0, 0, bucket
            cpu = (4 + 8 + 4) * N + (2 * N if plan.offload_params else 0)
        else:
            master, states = 4 * shard, 8 * shard
            grads = 2 * shard + bucket
            step = 4 * shard
    acts = activation_bytes(shape, plan)
    logits = logits_bytes(shape, plan)
    static = weights + master + grads + states
    before = max(static + acts + logits, static + step)
    overhead = OVERHEAD_FIXED_BYTES + int(OVERHEAD_FRACTION * before)
    return MemoryBreakdown(weights=weights, master_weights=master, gradients=grads, optimizer_states=states,
                           activations=acts, logits=logits, optimizer_step=step, overhead=overhead,
                           peak=before + overhead, cpu=cpu)


# ============================================================================ throughput

# Optimizer-step HBM traffic per parameter (bytes read + written), all bandwidth-bound:
#   torch AdamW fused on fp32 params: w, g, m, v read (16) + w, m, v written (12)      = 28
#   bitsandbytes 8-bit on fp32 params: w, g read (8) + w written (4) + 8-bit m, v r/w (4) = 16
#   BF16AdamW (unfused PyTorch, ~15 elementwise kernels over fp32 temporaries)        ≈ 120
#   (bf16 params with bnb, the lost-update configuration: 2 + 2 + 2 + 4)               = 10
OPT_STEP_BYTES = {"torch_fused": 28.0, "bnb8": 16.0, "bnb8_bf16": 10.0, "bf16adamw": 120.0}
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


def model_flops_per_token(shape: ModelShape, mean_doc_tokens: int) -> float:
    """``6N + 12·L·q_dim·S`` (training FLOPs per token, PaLM's MFU convention).

    6N: forward 2N (one multiply-add per parameter, the tied LM head included),
    backward 4N. Attention scores and values add ``2·2·q_dim·S`` forward per layer
    (×3 for training) where S is the attention span: with packed documents and
    per-document masking it is the mean document length, not the pack length.
    """
    return 6.0 * shape.param_count() + 12.0 * shape.layers * shape.q_dim * mean_doc_tokens


def _optimizer_kind(plan: TrainPlan) -> str:
    if plan.zero_stage:
        return "torch_fused"
    if plan.optimizer == "adamw_8bit":
        return "bnb8_bf16" if plan.precision == "bf16_pure" else "bnb8"
    if plan.grad_dtype == "fp32":
        return "torch_fused"
    return "bf16adamw" if plan.stochastic_rounding or plan.precision == "bf16_mixed_fp32_master" else "torch_fused"


def estimate_throughput(shape: ModelShape, plan: TrainPlan, gpu) -> Throughput:
    """Tokens per second of ``plan`` on ``plan.n_gpus`` GPUs of type ``gpu``.

    Per micro-batch (T tokens on one GPU):
    ``compute = T · hardware_flops / (bf16_peak · hfu)``, where
    ``hardware_flops = model_flops + recompute``; recompute is one extra forward of
    every checkpointed layer (``2·layer_params + 4·q_dim·S`` per token; full
    checkpointing ≈ ×4/3 of the layers' 6N) and, for chunked CE, one extra LM-head
    forward (``2·h·V``).

    Per optimizer step: GPU optimizers are bandwidth-bound
    (``N/n · OPT_STEP_BYTES / (HBM · HBM_EFFICIENCY)``); CPU-offloaded Adam runs at
    ``CPU_ADAM_PARAMS_PER_S`` (shared by all ranks) plus copying the bf16 weights
    back (2N/n B). Offload copies (half hidden behind compute): gradients to the
    host every micro-batch (2N/n B) and, with ``offload_params``, the weights for
    every forward, recompute and backward pass.

    ``tokens/s = n · T · grad_accum / step_time · COMM_EFFICIENCY`` (n > 1).
    """
    gpu = _resolve_gpu(gpu)
    N, n, T = shape.param_count(), plan.n_gpus, plan.tokens_per_step
    model = model_flops_per_token(shape, plan.mean_doc_tokens)
    fwd_layer = 2.0 * shape.layer_params() + 4.0 * shape.q_dim * plan.mean_doc_tokens
    if plan.checkpointing == "full":
        recomputed = shape.layers
    elif plan.checkpointing == "selective":
        recomputed = shape.layers // plan.selective_every
    else:
        recomputed = 0
    hardware = model + recomputed * fwd_layer + (2.0 * shape.hidden * shape.vocab if plan.ce == "chunked" else 0.0)
    compute = T * hardware / (gpu.bf16_tflops * 1e12 * gpu.hfu)

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
        optimizer = shard * OPT_STEP_BYTES[_optimizer_kind(plan)] / (gpu.hbm_gbs * 1e9 * HBM_EFFICIENCY)
    step = plan.grad_accum * (compute + offload_micro) + optimizer
    tps = n * T * plan.grad_accum / step
    if n > 1:
        tps *= COMM_EFFICIENCY[plan.zero_stage]
    mfu = tps * model / (n * gpu.bf16_tflops * 1e12)
    return Throughput(tokens_per_s=tps, mfu=mfu, model_flops_per_token=model, hardware_flops_per_token=hardware,
                      step_time_s=step, compute_s=plan.grad_accum * compute, optimizer_s=optimizer,
                      offload_s=plan.grad_accum * offload_micro)


# ============================================================================ token budget of a stage

_SNAC_24KHZ_SAMPLE_RATE = 24_000  # Hz
_SNAC_24KHZ_HOP = 512  # samples per finest-codebook step
# Coarsest codebook: one code per max(CODES_PER_FRAME) finest steps; a frame holds FRAME_SIZE tokens.
AUDIO_TOKENS_PER_SECOND = _SNAC_24KHZ_SAMPLE_RATE / _SNAC_24KHZ_HOP / max(CODES_PER_FRAME) * FRAME_SIZE  # 82.03


def stage_tokens(audio_hours: float, *, epochs: float = 1.0, text_tokens_per_second: float = 3.5,
                 mean_utterance_s: float = 8.0, tokens_per_utterance_overhead: int = 12) -> int:
    """Training tokens of a stage: audio tokens + transcript + prompt structure.

    ``audio_hours · 3600 · (82.03 audio tokens/s + text_tokens_per_second)`` plus
    ``tokens_per_utterance_overhead`` (bos, text/speaker/audio markers, emotion,
    voice) per utterance of ``mean_utterance_s``. English read speech is ~2.5
    words/s at ~1.4 LLaMA tokens/word -> ~3.5 text tokens/s. Stage 2 (1,000 h):
    ~310 M tokens per epoch.
    """
    if audio_hours <= 0 or epochs <= 0 or mean_utterance_s <= 0:
        raise ValueError(f"audio_hours, epochs and mean_utterance_s must be positive, got "
                         f"{audio_hours}, {epochs}, {mean_utterance_s}")
    seconds = audio_hours * 3600.0
    per_epoch = seconds * (AUDIO_TOKENS_PER_SECOND + text_tokens_per_second) \
        + seconds / mean_utterance_s * tokens_per_utterance_overhead
    return int(round(per_epoch * epochs))


STAGE2_AUDIO_HOURS = 1000.0  # seed §11: Stage 2 trains on 1,000 h


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
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:  # Jupyter renders the tables
        return self.to_markdown()


# Configurations within this fraction of the fastest count as equally fast; among them
# the one with better numerics (then less memory) wins.
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
_DIMENSIONS = {
    "checkpointing": ("activation checkpointing", set()),
    "ce": ("cross-entropy", set()),
    "optimizer": ("optimizer", {"grad_dtype", "stochastic_rounding"}),
    "precision": ("precision", _PRECISION_FIELDS),
    "zero_stage": ("ZeRO stage", _ZERO_FIELDS | _PRECISION_FIELDS),
    "offload_optimizer": ("optimizer offload", _ZERO_FIELDS | _PRECISION_FIELDS),
}


REPLANNABLE = ("checkpointing", "ce", "ce_chunk_tokens", "selective_every")  # same math, other memory/speed


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
            p = replace(fixed, checkpointing=ckpt, ce=ce)
            mem = estimate_memory(shape, p)
            if mem.peak > usable or (host_limit is not None and mem.cpu > host_limit):
                continue
            tps = estimate_throughput(shape, p, gpu).tokens_per_s
            if best is None or tps > best[0] * (1 + 1e-9) or (abs(tps - best[0]) <= best[0] * 1e-9 and mem.peak < best[1]):
                best = (tps, mem.peak, p)
    return None if best is None else best[2]


def plan_for_gpu(shape: ModelShape = LLAMA_3_2_3B_AUDIO, gpu=None, tokens_per_step: int = 8192, n_gpus: int = 1,
                 *, grad_accum: int = 8, train_tokens: int | None = None, host_ram_gib: float | None = None,
                 allow_lost_updates: bool = False, headroom: float = HEADROOM_FRACTION, **common) -> Plan:
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

    candidates = enumerate_plans(tokens_per_step, n_gpus, grad_accum, allow_lost_updates, **common)
    rows = []  # (plan, memory, throughput, fits_gpu, fits_host)
    for p in candidates:
        mem = estimate_memory(shape, p)
        rows.append((p, mem, estimate_throughput(shape, p, gpu), mem.peak <= usable,
                     host_limit is None or mem.cpu <= host_limit))
    fitting = [r for r in rows if r[3] and r[4]]
    if not fitting:
        raise NoFeasiblePlan(_no_fit_message(shape, gpu, usable, host_limit, rows, tokens_per_step))
    best_tps = max(r[2].tokens_per_s for r in fitting)
    tied = [r for r in fitting if r[2].tokens_per_s >= best_tps * (1 - SPEED_TIE)]
    chosen = min(tied, key=lambda r: (r[0].numerics_rank, r[1].peak, -r[2].tokens_per_s))
    plan, mem, tp = chosen[0], chosen[1], chosen[2]

    reasons = [f"fastest of the {len(fitting)} fitting configurations"
               + (f" ({len(tied) - 1} other(s) within {SPEED_TIE:.0%} of its speed: better numerics / "
                  f"less memory decided)" if len(tied) > 1 else "")]
    reasons += _explain(plan, tp, rows, usable, host_limit)
    notes = []
    if plan.precision == "bf16_pure":
        notes.append("pure bf16 weights: the optimizer must round stochastically (helpers.precision.BF16AdamW), "
                     "otherwise updates below half a bf16 ulp (most of them at LR 5e-6) are lost")
    if gpu.assumed_compute:
        notes.append(f"compute figures of an A100 assumed for {gpu.name}: time estimates are rough")
    if plan.offload_optimizer and host_limit is None:
        notes.append(f"host RAM unknown: offload needs {mem.cpu / GIB:.1f} GiB of it")
    notes.append("speed uses an assumed hardware utilisation of "
                 f"{gpu.hfu:.0%} for {gpu.name}; replace it with a measured benchmark")
    return Plan(shape=shape, gpu=gpu, train=plan, memory=mem, throughput=tp, usable_bytes=usable,
                train_tokens=train_tokens, reasons=reasons, notes=notes, n_candidates=len(rows),
                n_fitting=len(fitting))


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
                        checkpointing=p.checkpointing, ce=p.ce, zero_stage=p.zero_stage,
                        offload_optimizer=p.offload_optimizer, offload_params=p.offload_params,
                        peak_gib=round(mem.peak / GIB, 2), cpu_gib=round(mem.cpu / GIB, 2),
                        tokens_per_s=round(tp.tokens_per_s), fits=mem.peak <= gpu.memory_bytes * (1 - HEADROOM_FRACTION)))
    return out
