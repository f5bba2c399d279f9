"""Training configurations and their GPU memory: what the planner enumerates and how much each needs.

Part of :mod:`helpers.train.planner` (which re-exports every name here). Torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .plan_model import ATTENTION_KERNELS, GIB, ModelShape

# ============================================================================ training configuration

PRECISIONS = ("bf16_mixed_fp32_master", "bf16_pure")
OPTIMIZERS = ("adamw_fp32", "adamw_bf16", "adamw_8bit")
CHECKPOINTING = ("none", "selective", "full")
CROSS_ENTROPY = ("full", "chunked")

# Optimizer state bytes per parameter: AdamW keeps two moments.
#   fp32: 2 × 4; bf16 (helpers.train.precision.BF16AdamW(state_dtype=bf16)): 2 × 2;
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
      :class:`helpers.train.precision.BF16AdamW` ``(rounding="master")`` holding the fp32
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
    # "selective": exactly this many layers checkpointed (the lowest), None = L // selective_every. The
    # planner sizes it (plan_for_gpu): the fewest that fit, so every other layer keeps its activations.
    checkpointed_layers: int | None = None
    mean_doc_tokens: int = 1024  # mean example length in a packed row (per-document attention spans it)
    attention: str = "flex_attention"  # packed-row kernel (helpers.train.attention): its FLOPs and mask memory differ

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
        if self.attention not in ATTENTION_KERNELS:
            bad("attention", f"one of {ATTENTION_KERNELS}")
        if self.checkpointed_layers is not None and (self.checkpointing != "selective"
                                                     or int(self.checkpointed_layers) < 1):
            bad("checkpointed_layers", "None, or a positive layer count with checkpointing='selective'")
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
                return f"bf16 model + helpers.train.precision.BF16AdamW(rounding='stochastic', state_dtype={state})"
            opt = "bitsandbytes AdamW8bit" if self.optimizer == "adamw_8bit" else "torch AdamW"
            return f"bf16 model + {opt} (LOST UPDATES: small steps round away)"
        if self.grad_dtype == "fp32":
            opt = "bitsandbytes AdamW8bit" if self.optimizer == "adamw_8bit" else "torch AdamW(fused=True)"
            return f"fp32 model + torch.autocast(bfloat16) + {opt}"
        return f"bf16 model + helpers.train.precision.BF16AdamW(rounding='master', state_dtype={state})"

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
# The chunked CE (helpers.train.memory._ChunkedLinearCE) holds per chunk logit only its fp32
# logits (4, overwritten in place by softmax - onehot) and their compute-dtype copy (2).
CE_CHUNK_BYTES_PER_LOGIT = 6
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

    ``peak = overhead + max(static + activations + attention_mask + logits + ce_weight_grad,
    static + optimizer_step)``
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
    attention_mask: int = 0  # the packed row's attention mask (attention_mask_bytes; dense for SDPA)
    ce_weight_grad: int = 0  # chunked CE: its fp32 LM-head gradient accumulator and (V, H) temporaries

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


def checkpointed_layer_count(shape: ModelShape, plan: TrainPlan) -> int:
    """Decoder layers whose activations are recomputed: 0 (none), L (full), or for selective
    ``plan.checkpointed_layers`` (at most L) / ``L // selective_every``."""
    L = shape.layers
    if plan.checkpointing == "none":
        return 0
    if plan.checkpointing == "full":
        return L
    if plan.checkpointed_layers is not None:
        return min(L, int(plan.checkpointed_layers))
    return L // plan.selective_every


def activation_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """Peak bytes of saved activations for one micro-batch of ``T = plan.tokens_per_step`` tokens.

    With ``A`` = :func:`activation_bytes_per_token_per_layer`, per token:

    - ``none``:      ``L·A``
    - ``selective``: ``(L - c)·A + c·2h + A`` with ``c = L // selective_every``
      checkpointed layers (each keeps only its bf16 input, 2h) and one of them
      recomputed at a time during backward, interleaved with kept layers; with a count
      (``checkpointed_layers``: the lowest c layers) ``max(L - c, 1)·A + c·2h``: every recompute
      happens after the kept layers above it were freed
    - ``full``:      ``L·2h + A`` (every layer keeps its input; one is recomputed)

    plus for every mode the final RMSNorm (8h) and the backward working set of the
    layer being differentiated: gradient of the residual stream in and out (2·2h)
    and of the three MLP intermediates (3·2I) = ``4h + 6I``.
    """
    h, L, T = shape.hidden, shape.layers, plan.tokens_per_step
    A = activation_bytes_per_token_per_layer(shape)
    if plan.checkpointing == "none":
        layers = L * A
    elif plan.checkpointing == "selective" and plan.checkpointed_layers is not None:
        # the lowest c layers checkpointed (helpers.train.memory.enable_checkpointing(layers=c)): each is
        # recomputed after backward has freed every kept layer above it, so the two never coincide
        c = checkpointed_layer_count(shape, plan)
        layers = max(L - c, 1) * A + c * 2 * h
    elif plan.checkpointing == "selective":
        c = checkpointed_layer_count(shape, plan)
        layers = (L - c) * A + c * 2 * h + (A if c else 0)
    else:
        layers = L * 2 * h + A
    per_token = layers + 8 * h + (4 * h + 6 * shape.intermediate)
    return T * per_token


def logits_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """Cross-entropy peak of the logits: ``rows · V · bytes per logit``.

    Full CE (HF's default): bf16 logits for the whole micro-batch, upcast to fp32, rows = T,
    :data:`CE_BYTES_PER_LOGIT`. Chunked CE (:func:`helpers.train.memory.chunked_causal_lm_loss`:
    the full logits are never materialised): rows = ``min(ce_chunk_tokens, T)`` at
    :data:`CE_CHUNK_BYTES_PER_LOGIT`, plus the gradient w.r.t. the final hidden states it
    keeps until backward (T·2h). Its LM-head gradient is :func:`ce_weight_grad_bytes`.
    """
    T, V = plan.tokens_per_step, shape.vocab
    if plan.ce == "full":
        return T * V * CE_BYTES_PER_LOGIT
    return min(plan.ce_chunk_tokens, T) * V * CE_CHUNK_BYTES_PER_LOGIT + T * 2 * shape.hidden


def ce_weight_grad_bytes(shape: ModelShape, plan: TrainPlan) -> int:
    """What the chunked CE holds for the LM head (V × h) besides the model's own gradient buffer.

    It accumulates ``d weight`` over the chunks in an fp32 (V, h) buffer kept from the forward
    to the backward, i.e. alive at the activation peak (4·V·h: 1.65 GB for the extended
    Llama-3.2-3B); each chunk's ``g.T @ h`` product is a (V, h) bf16 temporary (2·V·h);
    under autocast (fp32 model) the weight is also cast to bf16 for the chunk matmuls
    (2·V·h). 0 for the full CE (autograd writes the LM head's gradient straight into its
    ``.grad``, counted in ``gradients``).
    """
    if plan.ce == "full":
        return 0
    vh = shape.vocab * shape.hidden
    cast = 2 * vh if (plan.precision == "bf16_mixed_fp32_master" and plan.grad_dtype == "fp32"
                      and plan.zero_stage == 0) else 0
    return 4 * vh + 2 * vh + cast


def attention_mask_bytes(plan: TrainPlan) -> int:
    """The packed row's attention mask: SDPA gets a dense (T, T) bool mask from transformers and its
    memory-efficient kernel an additive bf16 copy (1 + 2 B per pair); FlexAttention's BlockMask holds
    a few int32 per 128 × 128 tile (≈ 0); flash-attn varlen only cumulative lengths (0)."""
    T = plan.tokens_per_step
    if plan.attention == "sdpa":
        return 3 * T * T
    if plan.attention == "flex_attention":
        return 4 * 4 * (-(-T // 128)) ** 2
    return 0


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

    Activations: :func:`activation_bytes`; attention mask: :func:`attention_mask_bytes`; logits:
    :func:`logits_bytes`; the chunked CE's LM-head gradient: :func:`ce_weight_grad_bytes`. Optimizer
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
    mask = attention_mask_bytes(plan)
    logits = logits_bytes(shape, plan)
    ce_w = ce_weight_grad_bytes(shape, plan)
    static = weights + master + grads + states
    before = max(static + acts + mask + logits + ce_w, static + step)
    overhead = OVERHEAD_FIXED_BYTES + int(OVERHEAD_FRACTION * before)
    return MemoryBreakdown(weights=weights, master_weights=master, gradients=grads, optimizer_states=states,
                           activations=acts, logits=logits, optimizer_step=step, overhead=overhead,
                           peak=before + overhead, cpu=cpu, attention_mask=mask, ce_weight_grad=ce_w)

