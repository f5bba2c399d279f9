"""Memory techniques for full fine-tuning of the extended LLaMA, each one optional.

What is here (the planner, :mod:`helpers.train.planner`, decides which to use; the
training recipe calls these functions):

- :func:`chunked_causal_lm_loss` — LM head + cross entropy over the ~140K-token
  vocabulary without ever holding the (tokens, vocab) logits of the whole
  micro-batch: logits exist for ``chunk_size`` tokens at a time, in the forward
  *and* in the backward pass (a custom autograd Function that computes the
  gradients chunk by chunk during the forward pass and only scales them in
  backward). Uses Liger's fused Triton kernel instead when ``liger_kernel`` is
  installed and the tensors are on CUDA.
- :func:`causal_lm_loss` — the whole model: ``model.model(...)`` (decoder) -> final
  hidden states -> shifted labels -> chunked CE. Equals ``model(..., labels=).loss``.
- :func:`build_optimizer` — torch AdamW, bitsandbytes 8-bit AdamW, or
  :class:`helpers.train.precision.BF16AdamW` (stochastic rounding / fp32 master), with
  the no-decay parameter groups documented there.
- :func:`enable_checkpointing` — activation checkpointing: none, full (every
  decoder layer) or selective (every k-th layer).
- :func:`compile_layers` — regional ``torch.compile``: each decoder layer compiled on its own (one
  graph serves all layers: same code, same shapes), the rest of the model eager.
- :func:`apply_kernels` — Liger-Kernel's fused RMSNorm / SwiGLU / RoPE / linear CE (CUDA only).
- :func:`choose_attention` / :func:`set_attention` — the packed-row attention kernel
  (:mod:`helpers.train.attention`: flash-attn varlen, FlexAttention with a document mask, or SDPA).
- :func:`settings_for_plan` — turns a planner :class:`helpers.train.planner.TrainPlan`
  into the arguments of the functions above.

Packed sequences (several examples in one row, ``position_ids`` restarting at 0,
``attention_mask=None``, or FlexAttention's document BlockMask) work with every
kernel of :mod:`helpers.train.attention`; ``tests/train/test_packing.py`` proves packed ==
separate forwards; this module does not repeat that test.

Nothing here touches a GPU or loads a model at import.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
import torch
import torch.nn.functional as F

from . import attention
from .sequences import IGNORE_INDEX
from .precision import BF16AdamW

__all__ = [
    "DEFAULT_CE_CHUNK",
    "chunked_causal_lm_loss",
    "causal_lm_loss",
    "liger_available",
    "KERNELS",
    "apply_kernels",
    "applied_kernels",
    "OPTIMIZER_KINDS",
    "param_groups",
    "build_optimizer",
    "CHECKPOINTING_MODES",
    "enable_checkpointing",
    "checkpointed_layers",
    "compile_layers",
    "flash_attn_available",
    "choose_attention",
    "set_attention",
    "MemorySettings",
    "settings_for_plan",
]

# Tokens per CE chunk. 1,024 tokens × 128,256+ vocab × ~12 B per logit ≈ 1.7 GB at
# the peak of one chunk, vs ~13.8 GB for an 8K-token micro-batch in one go.
DEFAULT_CE_CHUNK = 1024


# ============================================================================ cross entropy


def liger_available() -> bool:
    """True when ``liger_kernel`` can be imported (its fused linear CE needs CUDA + Triton)."""
    return importlib.util.find_spec("liger_kernel") is not None


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype: autocast's when autocast is on for the device, else the inputs'."""
    dev = hidden.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return torch.promote_types(hidden.dtype, weight.dtype)


class _ChunkedLinearCE(torch.autograd.Function):
    """Summed cross entropy of ``hidden @ weight.T`` over the rows ``rows``, in chunks.

    Forward, per chunk of C rows: logits (C, V) in the compute dtype, upcast to
    fp32, log-sum-exp, loss; then, while the chunk's logits are still alive, the
    gradient of the summed loss w.r.t. those logits (``softmax - onehot``) and
    from it the chunk's share of ``d hidden`` (C, H) and ``d weight`` (V, H,
    accumulated in fp32). Backward only multiplies the stored gradients by the
    incoming scalar. So the full (N, V) logits never exist, nothing is
    recomputed (3 matmuls per chunk, one fewer than checkpointing each chunk),
    and what is kept between forward and backward is ``d hidden`` (same size as
    ``hidden``) and ``d weight`` (the size of the gradient the weight gets anyway).
    """

    @staticmethod
    def forward(ctx, hidden, weight, rows, targets, chunk_size, compute_dtype):
        # hidden (N, H); weight (V, H); rows (M,) int64 indices into N; targets (M,) int64 in [0, V)
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            w = weight.detach().to(compute_dtype)
            acc = torch.promote_types(compute_dtype, torch.float32)  # softmax / accumulation dtype (>= fp32)
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_h = torch.zeros_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
            total = torch.zeros((), dtype=acc, device=hidden.device)
            for lo in range(0, rows.numel(), chunk_size):
                r = rows[lo:lo + chunk_size]
                y = targets[lo:lo + chunk_size]
                h = hidden.detach().index_select(0, r).to(compute_dtype)  # (C, H)
                logits = (h @ w.T).to(acc)  # (C, V) fp32: the only chunk-sized big tensors
                lse = torch.logsumexp(logits, dim=-1)  # (C,)
                total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
                if need_h or need_w:
                    # d(sum of losses)/d logits = softmax - onehot, written over the logits buffer
                    g = logits.sub_(lse[:, None]).exp_()
                    g[torch.arange(y.numel(), device=y.device), y] -= 1.0
                    g = g.to(compute_dtype)
                    if need_h:
                        grad_h.index_copy_(0, r, (g @ w).to(hidden.dtype))
                    if need_w:
                        grad_w += g.T @ h  # mixed-dtype in-place add: no fp32 copy of the (V, H) product
                del logits
        ctx.save_for_backward(*(t for t in (grad_h, grad_w) if t is not None))
        ctx.has = (need_h, need_w)
        ctx.weight_dtype = weight.dtype
        ctx.used = False
        return total

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.used:
            raise RuntimeError("the chunked CE scales its stored gradients in place: backward through it once "
                               "(retain_graph=True with a second backward is not supported)")
        ctx.used = True
        saved = list(ctx.saved_tensors)
        need_h, need_w = ctx.has
        # In place: these buffers are the gradients themselves, a copy would double their memory.
        gh = saved.pop(0).mul_(grad_out) if need_h else None
        gw = saved.pop(0).mul_(grad_out).to(ctx.weight_dtype) if need_w else None
        return gh, gw, None, None, None, None


def chunked_causal_lm_loss(hidden_states: torch.Tensor, lm_head_weight: torch.Tensor, labels: torch.Tensor, *,
                           chunk_size: int = DEFAULT_CE_CHUNK, reduction: str = "mean",
                           ignore_index: int = IGNORE_INDEX, use_liger: bool | None = None) -> torch.Tensor:
    """Cross entropy of ``hidden_states @ lm_head_weight.T`` against ``labels``, in token chunks.

    Labels are already aligned (``labels[i]`` is the target for ``hidden_states[i]``;
    :func:`causal_lm_loss` does the causal shift). The result equals
    ``F.cross_entropy(hidden_states @ lm_head_weight.T, labels, ignore_index=..., reduction=...)``
    and so do its gradients w.r.t. both inputs, but at most ``chunk_size`` rows of
    logits exist at any time, forward and backward.

    Args:
        hidden_states: (N, H) float — final (normed) hidden states, any float dtype.
        lm_head_weight: (V, H) float — the LM head (the tied embedding for Llama 3.2).
        labels: (N,) int64 — target ids in [0, V), or ``ignore_index`` for no loss.
        chunk_size: rows of logits computed at once (memory ≈ chunk_size × V × 12 B).
        reduction: ``"mean"`` over non-ignored tokens (HF's convention) or ``"sum"``
            (for normalising over a whole gradient-accumulation step yourself).
            With no target token at all, both return 0 (HF's mean would be NaN).
        ignore_index: label value that carries no loss.
        use_liger: None = Liger's fused kernel when installed and on CUDA; True =
            require it (error otherwise); False = never.
    Returns:
        fp32 scalar. Matmuls run in autocast's dtype when autocast is on, else in
        the inputs' dtype; log-softmax is always fp32.
    """
    if hidden_states.ndim != 2 or lm_head_weight.ndim != 2:
        raise ValueError(f"hidden_states must be (N, H) and lm_head_weight (V, H); got "
                         f"{tuple(hidden_states.shape)} and {tuple(lm_head_weight.shape)}")
    if hidden_states.shape[1] != lm_head_weight.shape[1]:
        raise ValueError(f"hidden size mismatch: hidden_states has {hidden_states.shape[1]} features, "
                         f"lm_head_weight has {lm_head_weight.shape[1]}")
    if labels.shape != hidden_states.shape[:1]:
        raise ValueError(f"labels must have shape ({hidden_states.shape[0]},) to match hidden_states; "
                         f"got {tuple(labels.shape)} (shift causal labels first, or use causal_lm_loss)")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    # Rows and targets are selected where the labels live (the CPU, for packed batches from
    # collate), so picking them and checking them costs no GPU sync; then moved to the device.
    labels = labels.to(dtype=torch.int64)
    keep = labels != ignore_index
    rows = keep.nonzero().squeeze(1)  # (M,)
    targets = labels.index_select(0, rows)
    V = lm_head_weight.shape[0]
    if targets.numel() and bool(((targets < 0) | (targets >= V)).any()):
        bad = targets[(targets < 0) | (targets >= V)][:5].tolist()
        raise ValueError(f"labels {bad} are outside the vocabulary [0, {V}) (and not ignore_index={ignore_index})")
    n = int(targets.numel())
    rows = rows.to(hidden_states.device, non_blocking=True)
    targets = targets.to(hidden_states.device, non_blocking=True)

    want_liger = use_liger if use_liger is not None else (liger_available() and hidden_states.is_cuda)
    if want_liger:
        if not (liger_available() and hidden_states.is_cuda):
            raise RuntimeError("use_liger=True needs the liger_kernel package and CUDA tensors")
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        # accum_dtype fp32: the LM head's gradient summed over the token chunks in fp32, as _ChunkedLinearCE
        # does (Liger's default sums a bf16 weight's gradient in bf16: ~8 bits lost over ~8 chunks of 1K tokens)
        total = LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_index, reduction="sum", accum_dtype=torch.float32)(
            lm_head_weight, hidden_states, labels.to(hidden_states.device)).float()
    elif n == 0:
        # Keep the graph connected so backward works and gives zero gradients.
        total = (hidden_states.sum() * 0.0 + lm_head_weight.sum() * 0.0).float()
    else:
        grad_needed = torch.is_grad_enabled() and (hidden_states.requires_grad or lm_head_weight.requires_grad)
        dtype = _compute_dtype(hidden_states, lm_head_weight)
        if grad_needed:
            total = _ChunkedLinearCE.apply(hidden_states, lm_head_weight, rows, targets, int(chunk_size), dtype)
        else:
            total = _ChunkedLinearCE.forward(_NoGradCtx(), hidden_states, lm_head_weight, rows, targets,
                                             int(chunk_size), dtype)
    return total / max(n, 1) if reduction == "mean" else total


class _NoGradCtx:
    """Stand-in autograd context for evaluation (no gradients are computed or stored)."""

    needs_input_grad = (False, False, False, False, False, False)

    def save_for_backward(self, *tensors):
        return None


def causal_lm_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, *, position_ids: torch.Tensor | None = None,
                   attention_mask: torch.Tensor | None = None, chunk_size: int = DEFAULT_CE_CHUNK,
                   reduction: str = "mean", ignore_index: int = IGNORE_INDEX,
                   use_liger: bool | None = None, **decoder_kwargs) -> tuple[torch.Tensor, int]:
    """Loss of a HF causal LM (e.g. ``LlamaForCausalLM``) with the chunked CE; labels in HF convention.

    Runs the decoder (``model.get_decoder()``, i.e. ``model.model``) to the final
    normed hidden states, shifts (hidden state t predicts ``labels[t + 1]``, exactly
    as ``model(..., labels=labels).loss`` does) and applies
    :func:`chunked_causal_lm_loss` with ``model.get_output_embeddings().weight``.
    For a packed batch pass ``position_ids`` restarting at 0 per example and no
    ``attention_mask``; :func:`helpers.train.packing.collate` already puts -100 on the
    first label of every example, so no target crosses an example boundary.

    Args:
        input_ids, labels: (B, T) int64; labels -100 where no loss is wanted.
        position_ids: (B, T) int64 or None; attention_mask: (B, T) or None.
        reduction: "mean" (= HF's loss) or "sum".
        decoder_kwargs: passed to the decoder (e.g. ``doc_lens`` of
            :func:`helpers.train.attention.packed_kwargs`).
        use_liger: Liger's fused linear CE; None = where :func:`apply_kernels` put Liger into the model.
    Returns:
        (loss fp32 scalar, number of target tokens).
    """
    if input_ids.ndim != 2 or labels.shape != input_ids.shape:
        raise ValueError(f"input_ids and labels must both be (B, T); got {tuple(input_ids.shape)} "
                         f"and {tuple(labels.shape)}")
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("the chunked CE supports an LM head without bias (LLaMA has none)")
    scaling = getattr(model.config, "logit_scale", None) or getattr(model.config, "final_logit_softcapping", None)
    if scaling:
        raise ValueError("models with logit scaling / soft-capping need the plain HF loss")
    dev = head.weight.device
    out = model.get_decoder()(input_ids=input_ids.to(dev),
                              position_ids=None if position_ids is None else position_ids.to(dev),
                              attention_mask=None if attention_mask is None else attention_mask.to(dev),
                              use_cache=False, **decoder_kwargs)
    h = out.last_hidden_state[:, :-1]  # (B, T-1, H)
    y = labels[:, 1:]  # (B, T-1), left where it is (CPU for collate's batches: counting needs no GPU sync)
    n = int((y != ignore_index).sum())
    if use_liger is None:  # Liger's fused linear CE where the model runs Liger's kernels (apply_kernels)
        use_liger = applied_kernels(model) == "liger"
    loss = chunked_causal_lm_loss(h.reshape(-1, h.shape[-1]), head.weight, y.reshape(-1), chunk_size=chunk_size,
                                  reduction=reduction, ignore_index=ignore_index, use_liger=use_liger)
    return loss, n


# ============================================================================ optimizer

OPTIMIZER_KINDS = ("adamw_torch", "adamw_8bit", "adamw_bf16_stochastic", "adamw_bf16_master", "adamw_bf16_torchao")


def param_groups(model_or_params, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group.

    Choice: every matrix (``ndim >= 2``: attention and MLP projections *and* the
    tied embedding / LM head) is decayed; vectors (RMSNorm weights; LLaMA has no
    biases) are not, since shrinking a norm's gain towards 0 is not regularisation.
    The embedding is decayed like the rest because in Llama 3.2 it is also the LM
    head; decay at the seed's 0.01 × lr is far too small to hold back the new
    audio-token rows, which get gradients every step and train normally
    (``tests/train/test_memory.py`` checks that they move). Frozen parameters are skipped.

    ``model_or_params``: an ``nn.Module``, an iterable of parameters, or ready-made
    param-group dicts (returned unchanged).
    """
    if isinstance(model_or_params, torch.nn.Module):
        params = list(model_or_params.parameters())
    else:
        params = list(model_or_params)
    if params and isinstance(params[0], dict):
        return params
    seen, decay, no_decay = set(), [], []
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"expected parameters (tensors), got {type(p).__name__}")
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters (all requires_grad=False?)")
    return [g for g in ({"params": decay, "weight_decay": float(weight_decay)},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model_or_params, kind: str = "adamw_torch", *, lr: float, betas: tuple[float, float] = (0.9, 0.95),
                    weight_decay: float = 0.01, eps: float = 1e-8, state_dtype: torch.dtype = torch.float32,
                    seed: int = 0, fused: bool | str = "auto") -> torch.optim.Optimizer:
    """The optimizer for the recipe. Parameter groups as in :func:`param_groups`.

    ``kind``:

    - ``"adamw_torch"``: ``torch.optim.AdamW`` (fp32 states, 8 B/param); ``fused=True``
      when every parameter is a CUDA float tensor. Use with fp32 parameters (fp32
      model + autocast): no lost updates.
    - ``"adamw_8bit"``: ``bitsandbytes.optim.AdamW8bit`` (8-bit block-quantised states,
      ~2 B/param). With fp32 parameters it is exact in the weights; on *bf16*
      parameters small updates are lost (see :mod:`helpers.train.precision`) — pair it
      with an fp32 model under autocast.
    - ``"adamw_bf16_stochastic"``: :class:`helpers.train.precision.BF16AdamW` with
      ``rounding="stochastic"`` for a pure-bf16 model (no fp32 copy, unbiased).
    - ``"adamw_bf16_master"``: ``BF16AdamW(rounding="master")``: a bf16 model with
      the fp32 master inside the optimizer state.
    - ``"adamw_bf16_torchao"``: torchao's AdamW with bf16 stochastic rounding
      (``torchao.optim._AdamW(bf16_stochastic_round=True)``, torchao 0.18.0) for a pure-bf16 model: the
      same update as ``adamw_bf16_stochastic`` with bf16 moments, one compiled kernel per parameter shape
      (torch.compile, also on the CPU), moments rounded to nearest (ours: stochastically), rounding noise
      from torch's global generator (the recipe saves and restores it). The alternative measured against
      BF16AdamW's fused update (gpu_check.sh, stage 2); tests/train/test_torchao_optim.py compares the two.

    ``state_dtype`` (BF16AdamW only): fp32 or bf16 moments. ``seed``: BF16AdamW's
    rounding-noise seed (saved in its state_dict). ``fused`` (BF16AdamW only): its compiled update
    (``"auto"``: on CUDA with Triton; :func:`helpers.train.precision.fused_update_default`).
    """
    if kind not in OPTIMIZER_KINDS:
        raise ValueError(f"optimizer kind must be one of {OPTIMIZER_KINDS}, got {kind!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    groups = param_groups(model_or_params, weight_decay)
    betas = (float(betas[0]), float(betas[1]))
    if kind == "adamw_torch":
        flat = [p for g in groups for p in g["params"]]
        fused = all(p.is_cuda and p.is_floating_point() for p in flat)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)
    if kind == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ImportError("optimizer 'adamw_8bit' needs bitsandbytes (pip install bitsandbytes==0.50.2); "
                              "use 'adamw_torch' otherwise") from e
        return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas, eps=eps)

    if kind == "adamw_bf16_torchao":
        return _torchao_adamw(groups, lr=lr, betas=betas, eps=eps)
    rounding = "stochastic" if kind == "adamw_bf16_stochastic" else "master"
    return BF16AdamW(groups, lr=lr, betas=betas, eps=eps, rounding=rounding, state_dtype=state_dtype, seed=seed,
                     fused=fused)


# = scripts/gpu_wheels.sh. torchao 0.18.0 supports torch >= 2.11 (the GPU image's 2.11, the CPU venv's 2.13). Not in
# requirements-ci.txt: with torchao installed, every `from transformers import LlamaForCausalLM` imports it
# (transformers' torchao quantizer), ~2 s and warnings on stderr in every process, for an optional optimizer.
TORCHAO_VERSION = "0.18.0"


def _torchao_adamw(groups: list[dict], *, lr: float, betas: tuple[float, float], eps: float):
    """torchao's AdamW with bf16 stochastic rounding of the weights (see :func:`build_optimizer`)."""
    try:
        from torchao.optim import _AdamW
    except ImportError as e:
        raise ImportError(f"optimizer 'adamw_bf16_torchao' needs torchao (pip install torchao=={TORCHAO_VERSION}); "
                          "use 'adamw_bf16_stochastic' (helpers.train.precision.BF16AdamW) otherwise") from e
    wrong = sorted({str(p.dtype) for g in groups for p in g["params"] if p.dtype != torch.bfloat16})
    if wrong:
        raise ValueError(f"optimizer 'adamw_bf16_torchao' is for a pure-bf16 model (precision='bf16-pure'): got "
                         f"parameters of dtype {', '.join(wrong)}; expected torch.bfloat16 only")
    return _AdamW(groups, lr=lr, betas=betas, eps=eps, bf16_stochastic_round=True)


# ============================================================================ activation checkpointing

CHECKPOINTING_MODES = ("none", "full", "selective")


def _decoder_layers(model) -> list[torch.nn.Module]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no decoder `.layers`; expected a LLaMA-style HF model")
    return list(layers)


def enable_checkpointing(model, mode: str = "full", *, every: int = 2, layers: int | None = None) -> list[int]:
    """Activation checkpointing on a HF decoder model; returns the checkpointed layer indices.

    - ``"none"``: off (every layer keeps its activations).
    - ``"full"``: every decoder layer keeps only its input and is recomputed in
      backward (``gradient_checkpointing_enable(use_reentrant=False)``): ~1/3 more
      layer FLOPs, activation memory ≈ one layer's worth.
    - ``"selective"``: only layers ``i`` with ``i % every == every - 1`` are
      checkpointed (``L // every`` layers, as the planner counts them): a middle
      ground when full checkpointing is not needed to fit. (Checkpointing whole
      layers rather than only MLPs keeps HF's own mechanism; an MLP-only scheme
      would need patching the layer code.) ``layers``: instead of every k-th, exactly this many
      layers, the lowest ones (0 … layers-1) — the count the planner sizes to the memory
      (:func:`helpers.train.planner.size_selective`). Why the lowest: backward runs from the last
      layer down, freeing each kept layer's activations as it passes; a checkpointed layer is
      recomputed only when backward reaches it, so with the checkpointed layers at the bottom every
      recompute happens after all kept layers are freed, and the peak is the kept layers' activations
      alone, not those plus one recomputed layer (measured: tests/train/test_planner.py).

    Checkpointing acts only in ``model.train()`` mode; the loss and gradients
    are the same as without it (``tests/train/test_memory.py``).
    """
    if mode not in CHECKPOINTING_MODES:
        raise ValueError(f"checkpointing mode must be one of {CHECKPOINTING_MODES}, got {mode!r}")
    if int(every) < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    count = layers
    layers = _decoder_layers(model)
    if count is not None and not (mode == "selective" and 1 <= int(count) <= len(layers)):
        raise ValueError(f"layers={count!r}: expected a count in [1, {len(layers)}] with mode='selective'")
    if mode == "none":
        if getattr(model, "is_gradient_checkpointing", False):
            model.gradient_checkpointing_disable()
        return []
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if mode == "full":
        chosen = list(range(len(layers)))
    elif count is not None:
        chosen = list(range(int(count)))
    else:
        chosen = [i for i in range(len(layers)) if i % every == every - 1]
    for i, layer in enumerate(layers):
        if not hasattr(layer, "gradient_checkpointing"):
            raise ValueError(f"layer {i} ({type(layer).__name__}) does not support HF gradient checkpointing")
        layer.gradient_checkpointing = i in chosen
    return chosen


def checkpointed_layers(model) -> list[int]:
    """Indices of decoder layers that are currently checkpointed."""
    return [i for i, layer in enumerate(_decoder_layers(model)) if getattr(layer, "gradient_checkpointing", False)]


def compile_layers(model, *, backend: str = "inductor", dynamic: bool | None = None) -> int:
    """Regional compilation: ``torch.compile`` each decoder layer in place (``nn.Module.compile``);
    returns how many were compiled.

    Why per layer and not the whole model: every LLaMA decoder layer runs the same code on the same
    shapes, so dynamo compiles one graph and reuses it for all of them (compile time of one layer,
    not of 28), and the parts outside the layers that do not trace well (the chunked CE's custom
    autograd Function, FlexAttention's BlockMask building, HF's checkpointing wrapper) stay eager.
    Inductor fuses each layer's RMSNorms, RoPE, SwiGLU and residual adds into a few kernels around
    the matmuls and the attention kernel. Activation checkpointing still works: HF's checkpoint wrapper
    calls the compiled layer, and the recompute runs the same compiled graph (tests/train/test_cuda_paths.py:
    inductor on the CPU, 12 layers with the lower half checkpointed, one graph). Evaluation and sample
    generation run the layers eagerly (:func:`helpers.train.recipe.eager_stance`): generation would recompile
    them per layer index and cache state.

    ``backend``: ``"inductor"`` (Triton kernels on CUDA); ``"aot_eager"`` traces and partitions
    forward/backward like inductor but runs eager kernels — what the CPU tests use to prove the
    compiled layers compute the same loss and gradients. ``dynamic``: passed to ``torch.compile``
    (None: torch's default, a second shape compiles a dynamic graph). Refused under the per-document
    SDPA (:data:`helpers.train.attention.SDPA_DOCUMENTS`): see the error.
    """
    kernel = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if kernel in (attention.SDPA_DOCUMENTS, attention.SDPA_DOCUMENTS_COMPILED):
        # the per-document SDPA passes each row's document lengths to every layer as Python ints: dynamo
        # would specialise on them and recompile for every new row (measured: 2 recompiles in 2 CPU steps)
        raise ValueError(f"compile_layers needs an attention kernel whose packed-row layout is a tensor "
                         f"(flex_attention's BlockMask, flash_attention_2's positions), not {kernel!r}: its "
                         "document lengths are Python ints that recompile the layers for every row")
    layers = _decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend, dynamic=dynamic)
    return len(layers)


# ============================================================================ attention


# ============================================================================ fused layer kernels

KERNELS = ("none", "liger")  # = helpers.train.config.KERNELS (a test keeps them equal)
LIGER_VERSION = "0.8.5"  # = scripts/gpu_wheels.sh (pure-Python wheel; needs Triton, which CUDA torch ships)
_KERNELS_ATTR = "_helpers_kernels"  # set on a model by apply_kernels; causal_lm_loss reads it


def applied_kernels(model) -> str:
    """The fused kernels :func:`apply_kernels` put into ``model`` ("none" when never called)."""
    return getattr(model, _KERNELS_ATTR, "none")


def apply_kernels(model, kernels: str = "none") -> list[str]:
    """Fused layer kernels in a HF LLaMA model; returns what was replaced.

    - ``"none"``: nothing (the model's own modules).
    - ``"liger"``: Liger-Kernel's Triton RMSNorm (every norm of this model), SwiGLU MLP (every layer of this
      model) and RoPE, and its fused linear cross entropy in :func:`causal_lm_loss` (the LM head and the CE
      over the ~140K vocabulary in one kernel, logits never materialised). CUDA only: the kernels are Triton;
      on a model on the CPU (or without liger_kernel / Triton installed) it refuses, saying so. The norms and
      MLPs are patched on this instance only (Liger's ``apply_liger_kernel_to_llama(model=...)``, after which
      the module-level classes it replaces are put back, so models built later stay plain); RoPE is a
      module-level function in transformers, so it is replaced by one that uses Liger's kernel for CUDA
      tensors and the original for any other. Same math up to rounding order
      (tests/test_gpu.py::test_liger_kernels_match_the_reference_on_cuda states the tolerances).
    Apply before :func:`compile_layers` and before building the optimizer (the parameters stay the same
    tensors either way).
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if kernels == "none":
        return []
    device = next(model.parameters()).device
    missing = [m for m in ("liger_kernel", "triton") if importlib.util.find_spec(m) is None]
    if device.type != "cuda" or missing:
        raise RuntimeError(
            "kernels='liger' needs a CUDA model with Triton and liger_kernel installed (Liger-Kernel's kernels are "
            f"Triton GPU kernels): this model is on {device.type}"
            + (f" and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed (pip install liger-kernel=={LIGER_VERSION})" if missing
               else "") + "; use kernels='none' here")
    if getattr(model.config, "model_type", None) != "llama":
        raise ValueError(f"kernels='liger' is wired for LLaMA models, got model_type={model.config.model_type!r}")
    from liger_kernel.transformers import apply_liger_kernel_to_llama
    from transformers.models.llama import modeling_llama

    saved = {k: getattr(modeling_llama, k) for k in ("LlamaRMSNorm", "LlamaMLP", "apply_rotary_pos_emb")}
    original_rope = getattr(modeling_llama.apply_rotary_pos_emb, "_helpers_original", saved["apply_rotary_pos_emb"])
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=False, model=model)
    liger_rope = modeling_llama.apply_rotary_pos_emb
    modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP = saved["LlamaRMSNorm"], saved["LlamaMLP"]

    def rotary(q, k, cos, sin, *args, **kwargs):
        return (liger_rope if q.is_cuda else original_rope)(q, k, cos, sin, *args, **kwargs)

    rotary._helpers_original = original_rope
    modeling_llama.apply_rotary_pos_emb = rotary
    setattr(model, _KERNELS_ATTR, "liger")
    decoder = model.get_decoder()
    return [f"RMSNorm x {2 * len(decoder.layers) + 1}", f"SwiGLU MLP x {len(decoder.layers)}", "RoPE",
            "fused linear cross entropy"]


def flash_attn_available() -> bool:
    """True when the ``flash_attn`` package is importable (FlashAttention-2 kernels)."""
    return attention.flash_attn_available()


def choose_attention(device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                     prefer: str = "auto") -> str:
    """The ``attn_implementation`` for training packed rows: :func:`helpers.train.attention.choose_kernel`
    (flash-attn varlen where installed on CUDA with bf16/fp16, else FlexAttention on CUDA, else SDPA)."""
    return attention.choose_kernel(device, dtype, prefer, training=True)


def set_attention(model, implementation: str) -> str:
    """Switch a loaded HF model to ``implementation`` (:func:`helpers.train.attention.set_kernel`); returns it."""
    return attention.set_kernel(model, implementation)


# ============================================================================ plan -> settings


@dataclass(frozen=True)
class MemorySettings:
    """How the recipe realises a planner :class:`~helpers.train.planner.TrainPlan` (arguments of this module).

    model_dtype: dtype to hold the parameters in (fp32 for autocast mixed precision).
    autocast: run forward/backward under ``torch.autocast(dtype=bfloat16)``.
    optimizer / state_dtype: :func:`build_optimizer` arguments.
    checkpointing / selective_every / checkpoint_layers: :func:`enable_checkpointing` arguments
    (``checkpoint_layers``: its ``layers``, None = every ``selective_every``-th).
    ce_chunk: ``chunk_size`` of :func:`causal_lm_loss` (0 = one chunk holding all tokens).
    zero_stage / offload_*: for :func:`helpers.train.distributed.deepspeed_config` (0 = no DeepSpeed).
    """

    model_dtype: torch.dtype
    autocast: bool
    optimizer: str
    state_dtype: torch.dtype
    checkpointing: str
    selective_every: int
    ce_chunk: int
    zero_stage: int
    offload_optimizer: bool
    offload_params: bool
    checkpoint_layers: int | None = None


def settings_for_plan(plan) -> MemorySettings:
    """Translate the planner's choice into this module's arguments (see ``TrainPlan.implementation``)."""
    state = torch.bfloat16 if plan.optimizer == "adamw_bf16" else torch.float32
    if plan.zero_stage:
        # DeepSpeed bf16: bf16 model, fp32 master + states inside DeepSpeed's optimizer.
        model_dtype, autocast, opt = torch.bfloat16, False, "adamw_torch"
    elif plan.precision == "bf16_pure":
        model_dtype, autocast = torch.bfloat16, False
        if plan.stochastic_rounding:
            opt = "adamw_bf16_stochastic"
        else:
            opt = "adamw_8bit" if plan.optimizer == "adamw_8bit" else "adamw_torch"
    elif plan.grad_dtype == "fp32":
        model_dtype, autocast = torch.float32, True
        opt = "adamw_8bit" if plan.optimizer == "adamw_8bit" else "adamw_torch"
    else:
        model_dtype, autocast, opt = torch.bfloat16, False, "adamw_bf16_master"
    return MemorySettings(model_dtype=model_dtype, autocast=autocast, optimizer=opt, state_dtype=state,
                          checkpointing=plan.checkpointing, selective_every=plan.selective_every,
                          ce_chunk=plan.ce_chunk_tokens if plan.ce == "chunked" else 0,
                          zero_stage=plan.zero_stage, offload_optimizer=plan.offload_optimizer,
                          offload_params=plan.offload_params, checkpoint_layers=plan.checkpointed_layers)

