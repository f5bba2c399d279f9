"""Attention kernels for packed rows: which one runs, and the per-document mask it needs.

A packed row (``helpers.train.packing.collate``) lays several examples end to end; an
example must attend only to itself. Three kernels can do that, at very different
cost (the planner, :func:`helpers.train.plan_model.attention_flops_per_token`, prices each):

- ``flex_attention``: a :class:`~torch.nn.attention.flex_attention.BlockMask` built here
  from the row's example lengths; PyTorch-native, no extra install. Work: only the
  128-token tiles on each example's causal diagonal (~ sum of len² / 2, rounded up to tiles).
- ``flash_attention_2``: flash-attn's varlen kernel; transformers derives the boundaries
  from the restarting ``position_ids``. Needs the ``flash_attn`` wheel, CUDA and bf16/fp16.
  Work: each example's causal triangle.
- ``sdpa``: :func:`set_kernel` installs :data:`SDPA_DOCUMENTS`, which cuts a packed row at its
  example boundaries (``doc_lens``, passed by :func:`packed_kwargs`) and runs one causal SDPA call
  per example: each example's causal triangle, no (N, N) mask, backward on CPU and CUDA. (Plain
  transformers SDPA would get a dense block-diagonal mask and compute the whole N × N square:
  ~16x the attention FLOPs at 8K-token rows of ~1K-token examples; measured on CPU, packing then
  lost to unpacked batch-1 training, benchmarks/README.md.) Outside packed rows (generation,
  padded batches) it is transformers' SDPA. The planner still prices ``sdpa`` as the whole row
  (an upper bound).

All three give the same losses and gradients (``tests/train/test_packing.py`` on CPU,
``tests/test_gpu.py`` on CUDA). Why not always flex: PyTorch has no FlexAttention
*backward* on CPU (torch <= 2.13 raises "FlexAttention does not support backward on
CPU"), so on CPU training uses the per-document SDPA; flex's forward runs on CPU and is tested there.

Compiled kernels see few shapes: the recipe pads packed rows to
:func:`helpers.train.packing.bucket_length` (8 lengths per budget) under FlexAttention (whose
BlockMask is built by the compiled helper on CUDA) and under :data:`SDPA_DOCUMENTS_COMPILED`
(``set_kernel(model, "sdpa", compiled=True)``: the per-document calls through
``torch.compile(dynamic=True)``); evaluation and generation switch FlexAttention to SDPA.

``choose_kernel("auto")``: flash-attn varlen where it is installed on CUDA with a
bf16/fp16 model, else FlexAttention on CUDA, else SDPA. Nothing here touches a GPU
at import.
"""
from __future__ import annotations

import importlib.util
from typing import Sequence

import torch

KERNELS = ("sdpa", "flex_attention", "flash_attention_2")
"""attn_implementation names transformers knows; = :data:`helpers.train.config.ATTENTION` minus "auto" and
:data:`helpers.train.plan_model.ATTENTION_KERNELS` (a test keeps them equal)."""
PER_DOCUMENT = ("flex_attention", "flash_attention_2")
"""Kernels the planner prices per example; it prices ``sdpa`` as the whole causal row (an upper bound
now that :func:`set_kernel` installs the per-document :data:`SDPA_DOCUMENTS`)."""
SDPA_DOCUMENTS = "sdpa_documents"
SDPA_DOCUMENTS_COMPILED = "sdpa_documents_compiled"  # the same, each call through torch.compile(dynamic=True)
"""What ``set_kernel(model, "sdpa")`` installs: SDPA run per document of a packed row
(:func:`sdpa_documents_forward`), plain SDPA for anything else (generation, padded batches)."""


def flash_attn_available() -> bool:
    """True when the ``flash_attn`` package is importable (FlashAttention-2 kernels)."""
    return importlib.util.find_spec("flash_attn") is not None


def flex_attention_available() -> bool:
    """True when this torch has FlexAttention (torch >= 2.5)."""
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


def choose_kernel(device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  prefer: str = "auto", *, training: bool = True) -> str:
    """The attention kernel for packed rows on ``device`` with parameters (or autocast) in ``dtype``.

    ``prefer="auto"``: ``flash_attention_2`` where flash-attn is installed, the device is CUDA
    and ``dtype`` is bf16/fp16; else ``flex_attention`` on CUDA (or on CPU when not
    ``training``: no CPU backward); else ``sdpa``. An explicit ``prefer`` is returned when it
    can run here and raises a clear error when it cannot.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    flash_ok = flash_attn_available() and dev.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    flex_ok = flex_attention_available() and (dev.type == "cuda" or not training)
    if prefer == "sdpa":
        return "sdpa"
    if prefer == "flash_attention_2":
        if not flash_ok:
            raise RuntimeError("flash_attention_2 needs the flash_attn package, a CUDA device and a bf16/fp16 model "
                               f"(here: flash_attn {'found' if flash_attn_available() else 'missing'}, "
                               f"device {dev}, dtype {dtype})")
        return "flash_attention_2"
    if prefer == "flex_attention":
        if not flex_ok:
            raise RuntimeError(f"flex_attention cannot train on {dev}: PyTorch has no FlexAttention backward on CPU "
                               f"(torch {torch.__version__}); use attention='sdpa' or 'auto' there")
        return "flex_attention"
    if prefer != "auto":
        raise ValueError(f"attention must be 'auto' or one of {KERNELS}, got {prefer!r}")
    if flash_ok:
        return "flash_attention_2"
    return "flex_attention" if flex_ok else "sdpa"


def sdpa_documents_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                           doc_lens: Sequence[int] | None = None, compiled: bool = False, **kwargs):
    """SDPA per document of a packed row: the row (1, heads, N, d) is cut at the example boundaries
    ``doc_lens`` (Python ints, so cutting needs no device sync) and each example attends causally to
    itself with ``is_causal=True`` and no mask: ~sum of len² / 2 work instead of the N² of one SDPA
    call with a dense block-diagonal mask, and SDPA's flash kernel (CPU and CUDA, with backward).
    Without ``doc_lens`` (generation, evaluation of unpacked batches) it is transformers' SDPA."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if doc_lens is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if sum(doc_lens) != query.shape[2]:
        raise ValueError(f"doc_lens {list(doc_lens)} (sum {sum(doc_lens)}) do not tile a row of {query.shape[2]} tokens")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    p = dropout if module.training else 0.0
    attend = _compiled_document_sdpa() if compiled else _document_sdpa
    outs, lo = [], 0
    for n in doc_lens:
        hi = lo + int(n)
        outs.append(attend(query[:, :, lo:hi], key[:, :, lo:hi], value[:, :, lo:hi], p, scaling))
        lo = hi
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _document_sdpa(q, k, v, dropout_p: float, scale):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)


COMPILE_BACKEND = "inductor"  # torch.compile backend of the compiled per-document SDPA (tests: "aot_eager")
_COMPILED: dict = {}


def _compiled_document_sdpa():
    """:func:`_document_sdpa` under ``torch.compile(dynamic=True)``: one graph with symbolic lengths
    serves every document length (compiled once, not once per length)."""
    fn = _COMPILED.get(COMPILE_BACKEND)
    if fn is None:
        fn = _COMPILED[COMPILE_BACKEND] = torch.compile(_document_sdpa, dynamic=True, backend=COMPILE_BACKEND)
    return fn


def flex_attention_forward(module, query, key, value, *args, **kwargs):
    """transformers' FlexAttention forward with query, key and value in autocast's dtype when autocast is on.

    Why: under bf16 autocast with an fp32 model (precision="bf16-mixed") LLaMA's RoPE multiplies the bf16
    projections by fp32 cos/sin, so query and key reach the attention as fp32 and value as bf16. SDPA is an
    autocast op and casts all three to bf16; flex_attention is a higher-order op that, depending on the torch
    release, either refuses mixed dtypes or runs its kernels in fp32 (silently several times slower). Casting
    here makes it compute what SDPA computes under autocast. Outside autocast (pure bf16, fp32) nothing is cast.
    transformers' function is looked up outside the traced code (:func:`_hf_flex_forward`): an import inside a
    compiled layer is a graph break on torch 2.11 ("Bad import result": transformers.integrations is a lazy
    module), which split every compiled decoder layer into five graphs there.
    """
    hf_forward = _HF_FLEX_FORWARD or _hf_flex_forward()
    device = query.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        query, key, value = (t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t
                             for t in (query, key, value))
    return hf_forward(module, query, key, value, *args, **kwargs)


_HF_FLEX_FORWARD = None  # transformers.integrations.flex_attention.flex_attention_forward, once imported


def _hf_flex_forward():
    global _HF_FLEX_FORWARD
    from transformers.integrations.flex_attention import flex_attention_forward as hf_forward

    _HF_FLEX_FORWARD = hf_forward
    return hf_forward


def _register_flex_autocast() -> None:
    """Route transformers' "flex_attention" through :func:`flex_attention_forward` (process-wide: the
    cast is a no-op outside autocast, so every other user of the name computes as before)."""
    from transformers import AttentionInterface

    _hf_flex_forward()  # imported here, before any compiled layer traces the wrapper
    AttentionInterface.register("flex_attention", flex_attention_forward)


def _register_sdpa_documents() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(SDPA_DOCUMENTS, sdpa_documents_forward)
    AttentionMaskInterface.register(SDPA_DOCUMENTS, sdpa_mask)

    def compiled_forward(*args, **kwargs):
        return sdpa_documents_forward(*args, compiled=True, **kwargs)

    AttentionInterface.register(SDPA_DOCUMENTS_COMPILED, compiled_forward)
    AttentionMaskInterface.register(SDPA_DOCUMENTS_COMPILED, sdpa_mask)


def set_kernel(model, kernel: str, *, compiled: bool = False) -> str:
    """Switch a loaded HF model to ``kernel`` (one of :data:`KERNELS` or "eager"); returns the name now set.

    ``"sdpa"`` installs :data:`SDPA_DOCUMENTS` (SDPA per document when a packed row's ``doc_lens``
    are passed, see :func:`packed_kwargs`; plain SDPA otherwise); ``compiled=True`` runs its
    per-document calls through ``torch.compile(dynamic=True)`` (and the recipe then pads rows to
    a few bucket lengths, as for FlexAttention). ``"flex_attention"`` runs through
    :func:`flex_attention_forward` (query, key and value in autocast's dtype under autocast)."""
    if kernel not in KERNELS + ("eager",):
        raise ValueError(f"attention implementation must be one of {KERNELS + ('eager',)}, got {kernel!r}")
    if compiled and kernel != "sdpa":
        raise ValueError("compiled=True applies to the per-document SDPA; flex_attention is compiled by transformers")
    if kernel == "sdpa":
        _register_sdpa_documents()
        kernel = SDPA_DOCUMENTS_COMPILED if compiled else SDPA_DOCUMENTS
    elif kernel == "flex_attention":
        _register_flex_autocast()
    model.set_attn_implementation(kernel)
    return model.config._attn_implementation


def packed_kwargs(model, batch: dict) -> dict:
    """Extra decoder keywords for a packed batch: ``doc_lens`` (the row's example lengths, Python ints
    from the CPU ``seq_lens``) under :data:`SDPA_DOCUMENTS`, else nothing."""
    if model.config._attn_implementation not in (SDPA_DOCUMENTS, SDPA_DOCUMENTS_COMPILED) or batch.get("seq_lens") is None:
        return {}
    if batch["input_ids"].shape[0] != 1:
        return {}
    return {"doc_lens": tuple(int(n) for n in batch["seq_lens"].tolist())}


def document_ids(seq_lens: Sequence[int] | torch.Tensor, device=None) -> torch.Tensor:
    """(N,) int64: the example index of every token of a packed row with these example lengths.

    Built and checked on the CPU (``seq_lens`` comes from collate's CPU tensors), then copied to
    ``device``: building it on a GPU would sync the host twice per row (the check's ``any`` and
    ``repeat_interleave``'s unknown output size)."""
    lens = torch.as_tensor(seq_lens, dtype=torch.int64).cpu()
    if lens.ndim != 1 or lens.numel() == 0 or bool((lens <= 0).any()):
        raise ValueError(f"seq_lens must be a non-empty 1-D list of positive lengths, got {lens.tolist()}")
    doc = torch.repeat_interleave(torch.arange(lens.numel()), lens)
    return doc if device is None else doc.to(device, non_blocking=True)


def document_block_mask(seq_lens: Sequence[int] | torch.Tensor, device=None, *, compiled: bool | None = None):
    """The FlexAttention :class:`BlockMask` of one packed row: causal *and* inside its own example.

    ``seq_lens``: the row's example lengths (``collate(...)["seq_lens"]``); N = their sum.
    Shape (1, 1, N, N) in 128-token blocks; blocks wholly across two examples are skipped by
    the kernel, which is where the per-document saving comes from. ``compiled``: build it with
    ``torch.compile(create_block_mask)`` (None: on CUDA; the CPU tests force it to prove the
    compiled builder gives the eager mask).
    """
    doc = document_ids(seq_lens, device)
    n = int(doc.numel())

    def same_doc_causal(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    # Built by the compiled helper on CUDA (one compiled graph per row length: the recipe pads rows to
    # helpers.train.packing.bucket_length, so a handful); eager on CPU, where compiling costs more than it saves.
    if compiled is None:
        compiled = doc.device.type == "cuda"
    return _block_mask_builder(bool(compiled))(same_doc_causal, B=1, H=None, Q_LEN=n, KV_LEN=n, device=doc.device)


def _block_mask_builder(compiled: bool):
    """``create_block_mask``, or it under ``torch.compile`` (built once per process). What its ``_compile=True``
    does, which torch 2.11 deprecates in favour of this (DeprecationWarning on every row, measured on the H200)."""
    from torch.nn.attention.flex_attention import create_block_mask

    if not compiled:
        return create_block_mask
    fn = _COMPILED.get("create_block_mask")
    if fn is None:
        fn = _COMPILED["create_block_mask"] = torch.compile(create_block_mask)
    return fn


def packed_attention_mask(model, batch: dict):
    """What to pass as ``attention_mask`` for a packed batch under the model's current kernel.

    ``flex_attention``: the row's :func:`document_block_mask` (checked against the restarting
    ``position_ids``); ``sdpa`` / ``flash_attention_2`` / ``eager``: None — transformers derives
    the per-example mask (sdpa, eager) or the varlen boundaries (flash) from ``position_ids``.
    """
    if model.config._attn_implementation != "flex_attention":
        return None
    ids, seq_lens = batch["input_ids"], batch.get("seq_lens")
    if seq_lens is None:
        raise ValueError("a packed batch for flex_attention needs 'seq_lens' (helpers.train.packing.collate output)")
    if ids.shape[0] != 1 or int(seq_lens.sum()) != ids.shape[1]:
        raise ValueError(f"seq_lens {seq_lens.tolist()} (sum {int(seq_lens.sum())}) do not tile the packed row "
                         f"of shape {tuple(ids.shape)}; expected one row whose length is their sum")
    pos = batch.get("position_ids")
    if pos is not None:
        starts = torch.cumsum(seq_lens, 0) - seq_lens
        if bool((pos[0, starts] != 0).any()) or int((pos[0] == 0).sum()) != seq_lens.numel():
            raise ValueError("position_ids do not restart at 0 exactly at the seq_lens boundaries")
    dev = next(model.parameters()).device
    return document_block_mask(seq_lens, device=dev)
