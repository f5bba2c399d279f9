"""The decode step as one device-side function, and the compiled version the engine runs on CUDA.

Why: one eager step of the 28-layer 3B model is ~1,150 aten ops; at ~29 us of host time per op
the host, not the card, sets the pace (29.9 tokens/s measured on an H200, RTF 2.8). And a token
step that reads each picked id back to the host (to choose the next grammar row, to draw with a
CPU generator) adds a host sync per token. Here the *whole* token step - model forward of the
last token, repetition penalty, the frame grammar's row choice, top-k / top-p, the seeded draw -
is one function of device tensors (:func:`token_step`), so ``torch.compile`` turns it into one
graph (CUDA graphs on the card) and the host only reads the ids once per 7-token frame.

Seeded draws without a host generator (:func:`counter_uniforms`): the uniform number of row
``b`` at token ``n`` is a hash of ``(seed_b, n)`` (murmur3's 32-bit finaliser, twice, 53 bits),
computed with int64 tensor ops that never overflow (products stay below 2^49), so it is the same
bits on CPU, CUDA, eager and compiled. A row's draw depends only on its seed and its token
index: a batch still equals one-by-one calls, and eager equals compiled.

Shape buckets (:class:`CompiledDecoding`): ``dynamic=False`` graphs are fastest, so a request is
padded to a batch bucket (1, 2, 4, 8, then powers of two; extra rows are dummies marked done)
and its KV cache to a length bucket (512, 1024, 2048, ... positions). Each (batch, length,
sampling kind) bucket compiles once; its ``StaticCache`` is kept and reset between requests.
Temperature, top-p and the penalty are tensors (no recompile when a request changes them);
greedy-or-not, ``top_k`` and whether top-p / the penalty are on change the graph's ops and so
are part of the bucket key.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, fields

import torch

from ..tokens import FRAME_SIZE

M32 = 0xFFFFFFFF
FRAME_BUFFER = 2 * FRAME_SIZE  # token n is written to column n % 14: one frame plus the next slot 0 fit
BATCH_BUCKETS = (1, 2, 4, 8)
LENGTH_BUCKETS = tuple(512 << i for i in range(5))  # 512 ... 8,192 cache positions (doubling)


# ----------------------------------------------------------------------------- seeded uniforms
def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2^32`` for ``0 <= x < 2^32`` without int64 overflow (16-bit halves of ``c``)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + ((x * hi) & 0xFFFF) * 65536) & M32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's finaliser on values in ``[0, 2^32)`` held in int64 (``>>`` is logical there)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def seed_words(seeds, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Python int seeds (any sign, any size) -> their low and high 32-bit words as int64 ``(B,)``."""
    s = [int(x) % (1 << 64) for x in seeds]
    return (torch.tensor([x & M32 for x in s], dtype=torch.long, device=device),
            torch.tensor([x >> 32 for x in s], dtype=torch.long, device=device))


def counter_uniforms(seed_lo: torch.Tensor, seed_hi: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Uniform float64 in ``[0, 1)`` for each row: a hash of ``(seed, n)``, 53 random bits.

    ``seed_lo``/``seed_hi`` ``(B,)`` int64 from :func:`seed_words`; ``n`` 0-d int64, the token index.
    """
    key = _fmix32(seed_lo ^ _fmix32(seed_hi ^ 0x9E3779B9))
    c = (n & 0x7FFFFFFF) * 2
    h1 = _fmix32(key ^ _fmix32(c))
    h2 = _fmix32(key ^ _fmix32(c + 1))
    return ((h1 >> 5) * (1 << 26) + (h2 >> 6)).double() * (2.0 ** -53)


# ----------------------------------------------------------------------------- the token step
@dataclass(frozen=True)
class StepKind:
    """What changes the ops of the token step (part of a compiled bucket's key).

    ``greedy``: argmax; ``top_k``: 0 = off; ``top_p``: nucleus filter on; ``penalty_window``:
    tokens of generated history penalised (0 = no penalty)."""

    greedy: bool
    top_k: int
    top_p: bool
    penalty_window: int

    @classmethod
    def of(cls, sampling) -> "StepKind":
        greedy = sampling.temperature == 0
        on = sampling.repetition_penalty != 1.0 and sampling.repetition_window > 0
        return cls(greedy=greedy, top_k=0 if greedy else int(sampling.top_k),
                   top_p=not greedy and sampling.top_p < 1.0, penalty_window=sampling.repetition_window if on else 0)


@dataclass
class StepState:
    """The device tensors of one decode batch (all on the model's device), updated in place by each step.

    Carried: ``ids`` (B, 1) the token fed next, ``pos`` (B, 1) its RoPE positions, ``cpos`` (1,) its
    cache slot, ``n`` 0-d int64 the index of the token the step picks, ``done`` (B,) bool, ``ring``
    (B, W) int64 the last W fed tokens (W = penalty window; id V = empty slot), ``frames`` (B, 14)
    int64 token n in column n % 14. Constants: ``mask`` (B, T) attention mask of the whole cache,
    ``seed_lo``/``seed_hi`` (B,), ``max_frames`` (B,) int64, ``table`` (9, V) float32 grammar rows,
    ``temperature``/``top_p`` (1,) float64, ``penalty`` (1,) float32, ``min_frames``/``pad_id``/
    ``end_id`` 0-d int64. In place, because CUDA graphs replay on fixed addresses: a compiled
    bucket keeps one StepState (like its StaticCache) and each request loads its values into it."""

    ids: torch.Tensor
    pos: torch.Tensor
    cpos: torch.Tensor
    n: torch.Tensor
    done: torch.Tensor
    ring: torch.Tensor
    frames: torch.Tensor
    mask: torch.Tensor
    seed_lo: torch.Tensor
    seed_hi: torch.Tensor
    max_frames: torch.Tensor
    table: torch.Tensor
    temperature: torch.Tensor
    top_p: torch.Tensor
    penalty: torch.Tensor
    min_frames: torch.Tensor
    pad_id: torch.Tensor
    end_id: torch.Tensor

    def tensors(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))

    def carried(self) -> tuple:
        """What :func:`token_step` reads and returns: ``(n, done, ring, frames)``."""
        return self.n, self.done, self.ring, self.frames

    def constants(self) -> tuple:
        return (self.seed_lo, self.seed_hi, self.max_frames, self.table, self.temperature, self.top_p, self.penalty,
                self.min_frames, self.pad_id, self.end_id)

    def load(self, other: "StepState") -> "StepState":
        """Copy ``other``'s values into these tensors (same shapes); returns self."""
        for a, b in zip(self.tensors(), other.tensors()):
            a.copy_(b)
        return self

    def take(self, fed, n, done, ring, frames) -> None:
        """Store a token step's results in place."""
        self.ids.copy_(fed)
        self.n.copy_(n)
        self.done.copy_(done)
        self.ring.copy_(ring)
        self.frames.copy_(frames)


def init_state(*, seeds, max_frames, done, mask, table, sampling, kind: StepKind, min_frames: int, pad_id: int,
               end_id: int, device) -> StepState:
    B, V = len(seeds), table.shape[1]
    lo, hi = seed_words(seeds, device)
    f64 = dict(dtype=torch.float64, device=device)
    i64 = dict(dtype=torch.long, device=device)
    return StepState(
        ids=torch.zeros((B, 1), **i64), pos=torch.zeros((B, 1), **i64), cpos=torch.zeros(1, **i64),
        n=torch.zeros((), **i64), done=torch.tensor(done, dtype=torch.bool, device=device),
        ring=torch.full((B, max(1, kind.penalty_window)), V, **i64),
        frames=torch.zeros((B, FRAME_BUFFER), **i64), mask=mask, seed_lo=lo, seed_hi=hi,
        max_frames=torch.tensor([int(m) for m in max_frames], **i64), table=table,
        # (1,), not 0-d: dynamo guards a 0-d CPU float tensor by reading its value (a sync per call)
        temperature=torch.tensor([float(sampling.temperature) or 1.0], **f64),
        top_p=torch.tensor([float(sampling.top_p)], **f64),
        penalty=torch.tensor([float(sampling.repetition_penalty)], dtype=torch.float32, device=device),
        min_frames=torch.tensor(int(min_frames), **i64), pad_id=torch.tensor(int(pad_id), **i64),
        end_id=torch.tensor(int(end_id), **i64))


def _sample(scores: torch.Tensor, u: torch.Tensor, kind: StepKind, temperature, top_p) -> torch.Tensor:
    """One id per row of masked ``scores (B, V)``: top-k on the device, then in float64 temperature,
    softmax, top-p (the top token always kept), inverse-CDF draw with ``u (B,)``. Row-wise only."""
    if kind.greedy:
        return scores.argmax(dim=-1)
    V = scores.shape[1]
    ranked = kind.top_k > 0 or kind.top_p
    if ranked:  # masked ids rank last with p = 0
        vals, idx = torch.topk(scores, k=min(kind.top_k or V, V), dim=-1)  # (B, k) sorted descending
    else:
        vals, idx = scores, None
    p = torch.softmax(vals.double() / temperature, dim=-1)  # -inf -> 0
    if kind.top_p:
        before = torch.cumsum(p, dim=-1) - p  # mass of the tokens ranked above each one
        p = torch.where(before < top_p, p, torch.zeros_like(p))
    cdf = torch.cumsum(p, dim=-1)
    # == searchsorted(cdf, u * total, right=True): the count of cdf entries <= the target
    j = (cdf <= (u * cdf[:, -1]).unsqueeze(1)).sum(dim=-1)
    last = (torch.arange(p.shape[1], device=p.device) * (p > 0)).amax(dim=-1)  # last id with p > 0
    j = torch.minimum(j, last)  # guard the u*total == total rounding edge
    return j if idx is None else idx.gather(1, j.unsqueeze(1)).squeeze(1)


def penalize(scores: torch.Tensor, history: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """HF's repetition penalty on ``scores (B, V)`` for the ids in ``history (B, W)`` (id ``V`` = an
    empty slot): a seen id's logit is divided by ``penalty`` if > 0, else multiplied. ``penalty``
    (1,) or (B, 1). Each id counts once however often it was seen (as in HF's gather/scatter)."""
    B, V = scores.shape
    seen = torch.zeros((B, V + 1), dtype=torch.bool, device=scores.device)
    seen = seen.scatter(1, history, torch.ones_like(history, dtype=torch.bool))[:, :V]
    return torch.where(seen, torch.where(scores > 0, scores / penalty, scores * penalty), scores)


def grammar_rows(n: torch.Tensor, max_frames: torch.Tensor, min_frames: torch.Tensor) -> torch.Tensor:
    """Which row of :meth:`FrameGrammar.mask_rows` each batch row gets at token index ``n`` (0-d or
    (B,)): slot ``n % 7``; at a frame boundary 8 (end only) once ``max_frames`` frames exist, 7
    (slot 0 or end) after ``min_frames``, else 0. ``max_frames``/``min_frames`` (B,) or 0-d."""
    slot = n % FRAME_SIZE
    n_frames = n // FRAME_SIZE
    boundary = torch.where(n_frames >= max_frames, FRAME_SIZE + 1,
                           torch.where(n_frames >= min_frames, FRAME_SIZE, 0))
    return torch.where(slot == 0, boundary, slot).expand(max_frames.shape[0])


def token_step(logits: torch.Tensor, kind: StepKind, n, done, ring, frames, seed_lo, seed_hi, max_frames, table,
               temperature, top_p, penalty, min_frames, pad_id, end_id):
    """Pick token ``n`` for every row from ``logits (B, V)``; no host sync, no Python branch on values.

    Order (as :mod:`helpers.infer.generation` documents): repetition penalty over the last W fed
    tokens (HF rule) -> grammar row (slot ``n % 7``; at a boundary: end only once ``max_frames``
    frames exist, end allowed after ``min_frames``, else slot 0) -> temperature -> top-k -> top-p
    -> draw. Returns ``(fed (B, 1), n + 1, done, ring, frames)``: ``fed`` is the picked id, or
    ``pad_id`` for rows already done (what the next forward reads).
    """
    B, V = logits.shape
    scores = logits.float()
    if kind.penalty_window:
        scores = penalize(scores, ring, penalty)
    scores = scores + table.index_select(0, grammar_rows(n, max_frames, min_frames))
    u = counter_uniforms(seed_lo, seed_hi, n)
    picked = _sample(scores, u, kind, temperature, top_p)  # (B,)
    done = done | (picked == end_id)  # a row that picks <|audio_end|> feeds padding from then on
    fed = torch.where(done, pad_id, picked)
    if kind.penalty_window:
        ring = ring.scatter(1, (n % kind.penalty_window).expand(B, 1), fed.unsqueeze(1))
    frames = frames.scatter(1, (n % FRAME_BUFFER).expand(B, 1), picked.unsqueeze(1))
    return fed.unsqueeze(1), n + 1, done, ring, frames


def model_step(model, kind: StepKind, cache, mask, ids, pos, cpos, n, done, ring, frames, *constants) -> None:
    """One decode step, in place: the forward of the fed token ``ids (B, 1)`` at ``pos (B, 1)`` /
    cache slot ``cpos (1,)`` under ``mask``, then :func:`token_step`; the carried tensors (see
    :class:`StepState`) are updated in place and nothing is returned."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                logits_to_keep=1, cache_position=cpos)
    fed, n2, done2, ring2, frames2 = token_step(out.logits[:, -1, :], kind, n, done, ring, frames, *constants)
    ids.copy_(fed)
    pos.add_(1)
    cpos.add_(1)
    n.copy_(n2)
    done.copy_(done2)
    ring.copy_(ring2)
    frames.copy_(frames2)


# ----------------------------------------------------------------------------- buckets
def batch_bucket(b: int) -> int:
    """The compiled batch size for ``b`` rows: 1, 2, 4, 8, then the next power of two."""
    if b < 1:
        raise ValueError(f"batch must have at least one row, got {b}")
    for k in BATCH_BUCKETS:
        if b <= k:
            return k
    return 1 << (b - 1).bit_length()


def length_bucket(need: int, limit: int | None = None) -> int:
    """The static cache length for ``need`` positions: 512, 1024, ... (next power of two above
    the table), but never past the model's ``limit`` positions when ``need`` fits under it."""
    size = next((k for k in LENGTH_BUCKETS if need <= k), 1 << (need - 1).bit_length())
    return min(size, limit) if limit is not None and need <= limit else size


class CompileCounter:
    """A ``torch.compile`` backend that counts the graphs it compiles and compiles each one exactly as
    ``torch.compile(fn, backend=backend, mode=mode, dynamic=dynamic)`` would have.

    Why not pass ``mode=`` to ``torch.compile`` next to this backend: for a callable backend torch
    forwards the mode as a keyword (``backend(gm, inputs, mode=...)``), and a mode means something
    only to inductor, which turns it into config patches (``"reduce-overhead"``:
    ``{"triton.cudagraphs": True}``, CUDA graphs). So the counter builds the very wrapper
    ``torch.compile`` builds for ``(backend, mode, dynamic)`` and delegates to it: for "inductor"
    the mode's patches reach ``compile_fx``; any other backend gets the mode as ``torch.compile``
    would hand it over (the aot backends log that they ignore it). ``config``: the inductor config
    patches applied to every graph (empty for other backends).
    """

    def __init__(self, backend="inductor", mode: str | None = None, dynamic: bool | None = None):
        self.backend, self.mode, self.graphs = backend, mode, 0
        if backend == "inductor":  # raises naming the known modes for an unknown one
            self.inner = torch._TorchCompileInductorWrapper(mode, None, dynamic)
        else:
            self.inner = torch._TorchCompileWrapper(backend, mode, None, dynamic)

    @property
    def config(self) -> dict:
        return dict(getattr(self.inner, "config", {}))

    def __call__(self, gm, example_inputs, **kwargs):
        self.graphs += 1
        return self.inner(gm, example_inputs, **kwargs)

    def reset(self) -> None:
        """Called by ``torch._dynamo.reset()`` (inductor: frees the CUDA graph trees)."""
        self.inner.reset()


def ensure_cudagraph_tls() -> None:
    """Set up inductor's CUDA-graph-tree state for the calling thread, as torch does at import.

    CUDA graph trees keep their managers in thread-local state that torch before the fix of
    pytorch#123177 (PR #184357, June 2026: after the 2.11 the GPU image runs) creates only in the
    thread that imported ``torch._inductor.cudagraph_trees``: the first "reduce-overhead" step run
    in any other Python thread (the server's worker) failed ``assert torch._C._is_key_in_tls(...)``.
    A no-op where the state exists (the importing thread; a torch that creates it lazily)."""
    from torch._inductor import cudagraph_trees as ct

    if hasattr(ct.local, "tree_manager_containers") or torch._C._is_key_in_tls("tree_manager_containers"):
        return
    init = getattr(ct, "_initialize_tls", None)  # torch with the fix: its own lazy set-up
    if init is not None:
        init(ct.local)
        return
    ct.local.tree_manager_containers = {}
    ct.local.tree_manager_locks = defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls("tree_manager_containers", ct.local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", ct.local.tree_manager_locks)


class _SkipLog:
    """Inductor's "skipping cudagraphs due to ..." messages, kept as they are logged (one handler
    for the process). Every skip goes through ``log_cudagraph_skip_and_bump_counter``, which logs
    on ``cudagraph_utils``' "cudagraphs" logger at WARNING and bumps ``counters["inductor"]
    ["cudagraph_skips"]``; the counter is the ground truth, the messages say why."""

    messages: list = []
    _installed = False
    _lock = threading.Lock()

    @classmethod
    def install(cls) -> None:
        import logging

        from torch._inductor import cudagraph_utils

        with cls._lock:
            if cls._installed:
                return

            class _Handler(logging.Handler):
                def emit(self, record):
                    if len(cls.messages) < 1000:  # a bounded diagnostic, not a log store
                        cls.messages.append(record.getMessage())

            log = getattr(cudagraph_utils, "cudagraphs_log", None)  # a torch without it: the counter only
            if log is not None:
                log.addHandler(_Handler(logging.WARNING))
            cls._installed = True


def _inductor_counter(name: str) -> int:
    from torch._dynamo.utils import counters

    return int(counters["inductor"][name])


class CompiledDecoding:
    """The engine's compiled decoding for one model: buckets, kept ``StaticCache`` s, compiled steps.

    ``backend``: a ``torch.compile`` backend ("inductor", "aot_eager", ...); ``mode``: default
    "reduce-overhead" on CUDA (CUDA graphs: the launch overhead is the problem), none on CPU.
    ``compiles`` counts the graphs compiled (one per bucket used); ``compile_seconds`` the time
    spent in steps that compiled (first use of a bucket).

    CUDA graphs (``cudagraphs``: inductor with ``triton.cudagraphs`` on a CUDA model) replay on
    fixed addresses: every tensor the step reads as state or mutates - the kept :class:`StepState`
    (marked here) and the ``StaticCache`` 's keys, values and length (transformers marks them when
    the eager prefill allocates them) - is a static input, and the step returns nothing a later
    replay could overwrite. The graphs belong to the thread that records them (inductor keeps its
    CUDA graph trees per thread): the first thread that decodes owns this object's compiled
    steps; a decoder on another thread decodes eagerly (the same frames) and says so once.
    :meth:`cudagraph_report` says whether CUDA graphs were recorded or skipped, and why.
    """

    def __init__(self, model, *, backend="inductor", mode: str | None = "auto"):
        self.model = model
        device = next(model.parameters()).device
        self.mode = ("reduce-overhead" if device.type == "cuda" else None) if mode == "auto" else mode
        self.counter = CompileCounter(backend, self.mode, dynamic=False)
        self.device = device
        self._steps: dict = {}  # StepKind -> compiled model_step
        self._caches: dict = {}  # (batch, length) -> StaticCache
        self._states: dict = {}  # (kind, batch, length) -> StepState kept at fixed addresses
        self._seen: set = set()  # (kind, batch, length) buckets already compiled
        self._busy: set = set()  # (batch, length) cache buckets a live decoder is using
        self.compile_seconds = 0.0
        self._owner: int | None = None  # thread that records and replays the CUDA graphs
        self._warned_thread = False
        if self.cudagraphs:
            _SkipLog.install()
        self._base = {"skips": self._skips_now(), "non_static": self._non_static_now(),
                      "messages": len(_SkipLog.messages)}

    @property
    def compiles(self) -> int:
        return self.counter.graphs

    @property
    def cudagraphs(self) -> bool:
        """Whether inductor will try CUDA graphs for this model's steps (the mode's config patch,
        or inductor's global ``triton.cudagraphs``, on a CUDA model)."""
        if self.counter.backend != "inductor" or self.device.type != "cuda":
            return False
        from torch._inductor import config

        return bool(self.counter.config.get("triton.cudagraphs", config.triton.cudagraphs))

    def _skips_now(self) -> int:
        return _inductor_counter("cudagraph_skips") if self.cudagraphs else 0

    def _non_static_now(self) -> int:
        return _inductor_counter("cudagraph_recorded_non_static_inputs") if self.cudagraphs else 0

    def _recorded_graphs(self) -> int | None:
        """CUDA graphs the calling thread's graph tree holds for this device (None: not known)."""
        from torch._inductor import cudagraph_trees as ct

        if self.device.type != "cuda":
            return None
        ensure_cudagraph_tls()
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        get_manager = getattr(ct, "get_manager", None)
        if get_manager is None:
            return None
        manager = get_manager(index, create_if_none_exists=False)
        if manager is None:
            return 0
        roots = getattr(manager, "roots", None)
        if roots is None:
            return None
        count, todo = 0, [n for nodes in roots.values() for n in nodes]
        while todo:
            node = todo.pop()
            count += 1
            todo += [c for nodes in getattr(node, "children", {}).values() for c in nodes]
        return count

    def cudagraph_report(self) -> dict:
        """Whether the compiled steps run as CUDA graphs, from what torch counted since this object
        was made: ``wanted`` (see :attr:`cudagraphs`), ``recorded`` (graphs in the owner thread's
        graph tree; None when asked from another thread or unknown), ``skips`` (inductor's
        ``cudagraph_skips``: a graph that runs without CUDA graphs), ``reasons`` (inductor's skip
        messages), ``non_static_inputs`` (inputs copied into the graph at every replay: 0 expected).
        Counters are process-wide: another engine compiling at the same time adds to them."""
        if not self.cudagraphs:
            return {"wanted": False, "recorded": 0, "skips": 0, "reasons": [], "non_static_inputs": 0}
        owner = self._owner == threading.get_ident()
        return {"wanted": True, "recorded": self._recorded_graphs() if owner else None,
                "skips": self._skips_now() - self._base["skips"],
                "reasons": [m.splitlines()[0][:300] for m in _SkipLog.messages[self._base["messages"]:]],
                "non_static_inputs": self._non_static_now() - self._base["non_static"]}

    def cache(self, batch: int, length: int):
        """The kept ``StaticCache`` of a bucket, reset (a new one the first time). Its tensors are
        allocated by the first (eager) prefill on the model's device and marked static there."""
        from transformers import StaticCache

        c = self._caches.get((batch, length))
        if c is None:
            c = self._caches[(batch, length)] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            c.reset()
        return c

    def _on_owner_thread(self) -> bool:
        if not self.cudagraphs:
            return True
        me = threading.get_ident()
        if self._owner is None:
            self._owner = me
            ensure_cudagraph_tls()
        if self._owner == me:
            return True
        if not self._warned_thread:
            self._warned_thread = True
            warnings.warn(f"compiled decoding's CUDA graphs belong to thread {self._owner}, the first that decoded; "
                          f"thread {me} decodes eagerly (the same frames, slower). Decode on one thread (the "
                          f"server's worker does) or give each thread its own engine", stacklevel=3)
        return False

    def acquire(self, kind: StepKind, batch: int, length: int) -> bool:
        """Claim a bucket's kept cache and state for one decoder; False while another live decoder
        holds the cache of this (batch, length) - of any step kind: a greedy and a sampled bucket
        share it (e.g. a half-read ``stream`` and a ``generate`` of the same shape) - or when called
        on a thread that does not own the CUDA graphs. That decoder then runs eagerly on its own
        cache (the same frames), never on another's buffers."""
        key = (batch, length)
        if key in self._busy or not self._on_owner_thread():
            return False
        self._busy.add(key)
        return True

    def release(self, kind: StepKind, batch: int, length: int) -> None:
        self._busy.discard((batch, length))

    def state(self, kind: StepKind, fresh: StepState) -> StepState:
        """The bucket's kept :class:`StepState` (marked as static addresses for CUDA graphs), loaded
        with ``fresh``'s values; ``fresh`` itself becomes the kept one the first time."""
        key = (kind, fresh.mask.shape[0], fresh.mask.shape[1])
        kept = self._states.get(key)
        if kept is None or kept.table.shape != fresh.table.shape:
            for t in fresh.tensors():
                torch._dynamo.mark_static_address(t)
            kept = self._states[key] = fresh
            return kept
        return kept.load(fresh)

    def step(self, kind: StepKind, batch: int, length: int):
        """The compiled step of a bucket; the first call of a new bucket compiles (timed)."""
        fn = self._steps.get(kind)
        if fn is None:
            def step(*args):
                return model_step(self.model, kind, *args)
            fn = self._steps[kind] = torch.compile(step, backend=self.counter, fullgraph=True, dynamic=False)
        key = (kind, batch, length)
        if key in self._seen:
            return fn
        self._seen.add(key)
        first = [True]

        def first_call(*args):
            if not first[0]:
                return fn(*args)
            first[0] = False
            t0 = time.perf_counter()
            # each bucket is a new guard set on the same code: allow as many as there are buckets
            with torch._dynamo.config.patch(recompile_limit=max(64, 2 * len(self._seen)),
                                            accumulated_recompile_limit=max(256, 4 * len(self._seen))):
                out = fn(*args)
            self.compile_seconds += time.perf_counter() - t0
            return out
        return first_call


__all__ = ["ensure_cudagraph_tls", "StepKind", "StepState", "init_state", "token_step", "penalize", "grammar_rows", "model_step", "counter_uniforms", "seed_words",
           "batch_bucket", "length_bucket", "CompileCounter", "CompiledDecoding", "BATCH_BUCKETS", "LENGTH_BUCKETS",
           "FRAME_BUFFER"]
