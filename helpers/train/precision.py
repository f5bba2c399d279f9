"""The lost-update problem of pure-bf16 training, and two remedies.

bf16 keeps 8 significant bits, so the gap between neighbouring bf16 numbers
(one ulp) near a weight ``w`` is ``2**(floor(log2|w|) - 7)``: 0.0078 for
``|w|`` in [1, 2), 6.1e-5 for ``|w|`` in [0.0078, 0.0156). An optimizer step
writes ``w + Δ`` back into a bf16 tensor with round-to-nearest, so every
``|Δ| < ulp(w) / 2`` is rounded away. Adam's step is roughly ``lr`` per element
(``m / sqrt(v) ≈ ±1``), so at the seed's Stage-4 LR of 5e-6 a weight of typical
LLaMA size (|w| ≈ 0.01–0.05, half-ulp 3e-5–1.2e-4) never moves: the model
silently stops learning while the loss curve still looks plausible (the fp32
loss does not show it).

Remedies (both usable by the training recipe):

(a) fp32 master weights (mixed precision, the default): the optimizer updates an
    fp32 copy and the bf16 weights used for compute are re-derived from it. Either
    keep the model in fp32 under ``torch.autocast(dtype=torch.bfloat16)`` (then any
    optimizer, including bitsandbytes 8-bit AdamW, updates fp32 params), or keep a
    bf16 model and use :class:`BF16AdamW` with ``rounding="master"``, which holds
    the fp32 master inside the optimizer state (4 bytes/param) and writes
    round-to-nearest bf16 copies into the model.
(b) stochastic rounding: :class:`BF16AdamW` with ``rounding="stochastic"`` computes
    the step in fp32 and rounds the result into the bf16 weight up or down with
    probabilities that make the rounding unbiased (``E[round(x)] = x``). Small
    updates then move a weight by one ulp with probability ``|Δ| / ulp``, so the
    expected trajectory follows the fp32 one with no extra memory.

:func:`lost_update_fraction` measures the problem for a given set of weights and
updates (the planner and the notebooks use it to show why pure bf16 needs (a) or
(b)).
"""
from __future__ import annotations

import importlib.util
import math
from typing import Iterable

import torch

__all__ = [
    "bf16_ulp",
    "fused_update_default",
    "step_traffic_per_element",
    "lost_update_fraction",
    "stochastic_round_to_bf16",
    "BF16AdamW",
]

_LOW16 = 0xFFFF  # the 16 mantissa bits of an fp32 number that bf16 drops
_KEEP_HIGH16 = -65536  # int32 mask 0xFFFF0000: keeps sign, exponent and 7 mantissa bits


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """Gap between ``bf16(x)`` and the next bf16 number away from zero (fp32 tensor, same shape).

    bf16 has 7 stored mantissa bits, so for normal numbers the ulp is
    ``2**(exponent - 7)``; zero and subnormals get the subnormal spacing ``2**-133``.
    """
    xb = x.detach().to(torch.bfloat16).float().abs()
    exponent = torch.floor(torch.log2(xb.clamp_min(2.0 ** -126)))
    return torch.exp2(exponent - 7)


def lost_update_fraction(weights: torch.Tensor, update: torch.Tensor) -> float:
    """Fraction of elements for which ``bf16(weights + update) == bf16(weights)``.

    ``weights`` and ``update`` have the same shape (any dtype; the sum is formed
    in fp32 and rounded to nearest bf16, which is what an in-place optimizer step
    on a bf16 parameter does). Elements whose update is exactly zero are not
    counted as lost (nothing was asked of them).
    """
    if weights.shape != update.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and update {tuple(update.shape)} must have the same shape")
    w = weights.detach().to(torch.bfloat16)
    u = update.detach().float()
    asked = u != 0
    n = int(asked.sum())
    if n == 0:
        return 0.0
    moved = (w.float() + u).to(torch.bfloat16)
    return float(((moved == w) & asked).sum()) / n


def stochastic_round_to_bf16(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round an fp32 tensor to bf16, up or down at random, unbiased: ``E[out] = x``.

    How: bf16 is the top 16 bits of an fp32 number. Adding a uniform random
    integer in ``[0, 2**16)`` to the fp32 bit pattern (read as int32) and then
    zeroing the low 16 bits carries into the kept bits with probability
    ``low16 / 2**16`` — exactly the distance of ``x`` from the bf16 number below it
    (in magnitude) divided by the gap, so the rounding is unbiased. Because fp32 is
    sign-magnitude, the same holds for negative numbers (rounding is on the
    magnitude), subnormals, and a carry out of the mantissa correctly bumps the
    exponent (up to ``inf`` just above the largest finite bf16). NaN stays NaN.

    Args:
        x: fp32 tensor, any shape, any device.
        generator: a ``torch.Generator`` on ``x.device`` (for reproducible
            rounding); ``None`` uses the global RNG.
    Returns:
        bf16 tensor of ``x``'s shape; every element is one of the two bf16
        neighbours of the corresponding element of ``x``.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic_round_to_bf16 expects a float32 tensor, got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    noise = torch.randint(0, _LOW16 + 1, bits.shape, dtype=torch.int32, device=x.device, generator=generator)
    rounded = ((bits + noise) & _KEEP_HIGH16).view(torch.float32)
    # A NaN whose payload sits only in the low 16 bits would truncate to inf; keep it NaN.
    rounded = torch.where(torch.isnan(x), x, rounded)
    # The low 16 bits are zero, so this conversion is exact (no second rounding).
    return rounded.to(torch.bfloat16)


def fused_update_default(device: torch.device | str | None = None) -> bool:
    """Whether :class:`BF16AdamW` compiles its update by default (``fused="auto"``): on CUDA, where
    Triton turns the ~15 elementwise kernels of the eager update into one per tensor piece.

    On the CPU the eager update stays the default: the first fused step compiles (2-18 s per update
    variant measured on the 2-core CI machine) and the CPU tests and demos are short; per step the
    fused update was 3.1-6.7x faster there (``benchmarks/bench_train.py --optimizer-only``,
    benchmarks/README.md), so a long CPU run may pass ``fused=True``.
    """
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type != "cuda":
        return False
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _round_bits_to_bf16(x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """bf16 of an fp32 ``x``: stochastic with the int32 ``noise`` of :func:`stochastic_round_to_bf16`,
    or round to nearest even when ``noise`` is None. Traceable by torch.compile (no RNG inside)."""
    if noise is None:
        return x.to(torch.bfloat16)
    rounded = ((x.view(torch.int32) + noise) & _KEEP_HIGH16).view(torch.float32)
    return torch.where(torch.isnan(x), x, rounded).to(torch.bfloat16)


def _adamw_piece(p, grad, exp_avg, exp_avg_sq, master, noise_m, noise_v, noise_p, hyper):
    """The whole AdamW update of one tensor piece, in place, as one traceable function.

    The same algebra, in the same order, as :meth:`BF16AdamW._update`; each multiply-add that eager
    CUDA fuses is written so that inductor fuses it too (inductor lowers ``addcmul(a, b, c)`` on CUDA to
    ``fma(b, c, a)``; by inductor's own notes eager CUDA computes ``add(a, b, alpha=s)`` as
    ``fma(b, s, a)`` and ``addcmul`` as ``fma(s, t1 * t2, a)``; ``addcdiv`` and the division by the
    Python scalar ``sqrt(bc2)`` are assumed to be ``fma(s, t1 / t2, a)`` and a multiplication by the
    fp32 reciprocal). Whether the compiled CUDA update is then bit-identical to the eager one is
    measured by ``tests/test_gpu.py::test_fused_bf16adamw_matches_the_eager_update_on_cuda`` (which
    allows one bf16 / two fp32 ulps), not yet run. On the CPU inductor's code has no FMA while eager's
    ``add`` with ``alpha`` uses one (measured: 271 of 1,000 first moments differ by an ulp), so the fp32
    results may differ from eager by about one fp32 ulp of the operands; the bound is tested in
    ``tests/train/test_precision.py``.

    ``hyper``: fp32 (8,) on the tensors' device: beta1, 1-beta1, beta2, 1-beta2, 1/sqrt(bias
    correction 2), eps, 1 - lr·wd, -lr / bias correction 1 (each computed in float64 and rounded to
    fp32, as the eager kernels round their Python-float scalars). ``noise_*``: int32 rounding noise
    (None: round to nearest / fp32 store). ``master``: the fp32 master piece or None.
    """
    beta1, omb1, beta2, omb2, inv_sqrt_bc2, eps, decay, step_size = hyper.unbind(0)
    g = grad.float()
    m = torch.addcmul(exp_avg.float() * beta1, g, omb1)
    v = torch.addcmul(exp_avg_sq.float() * beta2, omb2, g * g)
    if exp_avg.dtype == torch.bfloat16:
        exp_avg.copy_(_round_bits_to_bf16(m, noise_m))
        exp_avg_sq.copy_(_round_bits_to_bf16(v, noise_v))
    else:
        exp_avg.copy_(m)
        exp_avg_sq.copy_(v)
    denom = v.sqrt() * inv_sqrt_bc2 + eps
    w = torch.addcmul((master if master is not None else p).float() * decay, step_size, m / denom)
    if master is not None:
        master.copy_(w)
    if p.dtype == torch.bfloat16:
        p.copy_(_round_bits_to_bf16(w, noise_p))
    else:
        p.copy_(w)


_COMPILED_PIECE = None


def _compiled_piece():
    """:func:`_adamw_piece` under ``torch.compile`` (built once per process, on first use).

    ``dynamic=True``: one kernel serves every piece length, so a model's ~250 tensors of ~20
    different sizes compile once per update variant (bf16/fp32 states, stochastic/nearest/master)."""
    global _COMPILED_PIECE
    if _COMPILED_PIECE is None:
        _COMPILED_PIECE = torch.compile(_adamw_piece, dynamic=True, fullgraph=True)
    return _COMPILED_PIECE


class BF16AdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) for bf16 parameters without lost updates.

    The step is always computed in fp32 from the bf16 gradient. How the result
    gets back into the bf16 parameter is ``rounding``:

    - ``"stochastic"``: unbiased stochastic rounding
      (:func:`stochastic_round_to_bf16`); no extra memory.
    - ``"master"``: an fp32 master copy lives in the optimizer state (+4 bytes per
      parameter); the parameter is the master rounded to nearest. This is remedy
      (a) for a model kept in bf16 (bf16 gradients, 2 bytes/param).
    - ``"nearest"``: plain round-to-nearest, i.e. the lost-update bug; only for
      demonstrations and comparisons.

    Moment estimates ``exp_avg`` and ``exp_avg_sq`` are stored in ``state_dtype``
    (fp32: 8 bytes/param; bf16: 4 bytes/param, written back with stochastic
    rounding so their running averages are unbiased too). fp32 parameters (e.g.
    norms kept in fp32) are updated exactly like ``torch.optim.AdamW``.

    Memory per parameter (bytes): param 2 + grad 2 + states (8 or 4) + master (4
    with ``"master"``). The planner (:mod:`helpers.train.planner`) uses the same numbers.

    Reproducibility: the rounding noise comes from one ``torch.Generator`` per
    device seeded from ``seed``; its state is saved in ``state_dict()`` so a
    resumed run draws the same noise as an uninterrupted one.

    ``fused``: compute each piece's update with one compiled kernel (:func:`_adamw_piece` under
    ``torch.compile``) instead of ~15 eager elementwise ops with fp32 temporaries; ``"auto"``
    (:func:`fused_update_default`): on CUDA with Triton. The rounding noise is still drawn from the
    same generator, in the same order and shapes, outside the kernel, so the state dict, the noise
    stream and exact resume are unchanged; only the arithmetic moves into the kernel. It is not
    bit-identical to the eager update on the CPU: eager CPU fuses ``add(alpha=)`` into an FMA and
    inductor's CPU code has none, so fp32 values may differ by ~1 fp32 ulp of their operands and a
    bf16 value, rounded from them with the same noise, by one bf16 ulp (tested:
    ``tests/train/test_precision.py``). On CUDA the kernel is written to make inductor fuse the
    multiply-adds eager fuses (:func:`_adamw_piece`); ``tests/test_gpu.py`` checks the same bound and
    prints the bit-identical fraction (not yet run on a GPU). Don't switch ``fused`` in the middle
    of a run if its resume must be bit-exact.
    Memory traffic per element of a pure-bf16 step with bf16 states: reads p, g, m, v (8 B) and
    three int32 noise words (12 B), writes p, m, v (6 B) and the noise (12 B): 38 B against the
    eager update's 244 B over 36 kernels (both counted: :func:`step_traffic_per_element`).
    """

    ROUNDINGS = ("stochastic", "master", "nearest")
    CHUNK_ELEMENTS = 1 << 24  # elements updated at once: fp32 temporaries stay ~16 M x ~32 B = 0.5 GB

    def __init__(self, params: Iterable, lr: float = 1e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, rounding: str = "stochastic",
                 state_dtype: torch.dtype = torch.float32, seed: int = 0, fused: bool | str = False):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if rounding not in self.ROUNDINGS:
            raise ValueError(f"rounding must be one of {self.ROUNDINGS}, got {rounding!r}")
        if state_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"state_dtype must be torch.float32 or torch.bfloat16, got {state_dtype}")
        if fused not in (True, False, "auto"):
            raise ValueError(f"fused must be True, False or 'auto', got {fused!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.fused = fused
        self.rounding = rounding
        self.state_dtype = state_dtype
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    # ------------------------------------------------------------------ rounding noise
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            g = torch.Generator(device=device)
            # A different stream per device so that multi-device runs do not share noise.
            g.manual_seed(self.seed + 7919 * (device.index or 0))
            self._generators[key] = g
        return self._generators[key]

    def _store(self, target: torch.Tensor, value_fp32: torch.Tensor, stochastic: bool) -> None:
        """Write an fp32 value into ``target`` (bf16 or fp32), rounding as configured."""
        if target.dtype == torch.float32:
            target.copy_(value_fp32)
        elif target.dtype == torch.bfloat16:
            if stochastic:
                target.copy_(stochastic_round_to_bf16(value_fp32, self._generator(target.device)))
            else:
                target.copy_(value_fp32)  # round to nearest even
        else:
            raise TypeError(f"BF16AdamW handles float32 and bfloat16 tensors, got {target.dtype}")

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BF16AdamW does not support sparse gradients")
                if p.dtype not in (torch.float32, torch.bfloat16):
                    raise TypeError(f"BF16AdamW handles float32 and bfloat16 parameters, got {p.dtype}")
                low_precision = p.dtype == torch.bfloat16
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    sdtype = self.state_dtype if low_precision else torch.float32
                    state["exp_avg"] = torch.zeros_like(p, dtype=sdtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=sdtype, memory_format=torch.preserve_format)
                    if low_precision and self.rounding == "master":
                        state["master"] = p.detach().float().clone()
                state["step"] += 1
                t = state["step"]
                stochastic_states = state["exp_avg"].dtype == torch.bfloat16
                stochastic_param = low_precision and self.rounding == "stochastic"
                master = state.get("master")
                # Work on flat chunks so that the fp32 temporaries of a 430 M-element
                # embedding stay ~0.5 GB instead of ~12 GB (the planner counts CHUNK_ELEMENTS).
                flats = [p, p.grad, state["exp_avg"], state["exp_avg_sq"]] + ([master] if master is not None else [])
                if all(x.is_contiguous() for x in flats):
                    views = [x.view(-1) for x in flats]
                    pieces = [[x[lo:lo + self.CHUNK_ELEMENTS] for x in views]
                              for lo in range(0, p.numel(), self.CHUNK_ELEMENTS)]
                else:  # rare (e.g. a non-contiguous parameter view): one piece
                    pieces = [flats]
                fused = self.fused if self.fused != "auto" else fused_update_default(p.device)
                for piece in pieces:
                    if fused:
                        self._update_fused(piece, t, lr, beta1, beta2, eps, wd, stochastic_states,
                                           stochastic_param)
                    else:
                        self._update(piece, t, lr, beta1, beta2, eps, wd, stochastic_states, stochastic_param)
        return loss

    def _update_fused(self, piece, t, lr, beta1, beta2, eps, wd, stochastic_states, stochastic_param):
        """:meth:`_update` as one compiled kernel; the noise drawn exactly as :meth:`_store` draws it."""
        # Detached aliases (same storage): the compiled kernel writes plain tensors, not views of
        # parameters made under no_grad, which dynamo refuses to trace.
        p, grad, exp_avg, exp_avg_sq = (x.detach() for x in piece[:4])
        master = piece[4].detach() if len(piece) > 4 else None
        dev = p.device

        def noise():  # same generator, order (exp_avg, exp_avg_sq, param) and shape as the eager path
            return torch.randint(0, _LOW16 + 1, p.shape, dtype=torch.int32, device=dev,
                                 generator=self._generator(dev))

        noise_m = noise() if stochastic_states else None
        noise_v = noise() if stochastic_states else None
        noise_p = noise() if stochastic_param else None
        bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
        inv = float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(math.sqrt(bc2), dtype=torch.float32))
        hyper = torch.tensor([beta1, 1 - beta1, beta2, 1 - beta2, inv, eps, 1 - lr * wd, -lr / bc1],
                             dtype=torch.float32).to(dev, non_blocking=True)
        _compiled_piece()(p, grad, exp_avg, exp_avg_sq, master, noise_m, noise_v, noise_p, hyper)

    def _update(self, piece, t, lr, beta1, beta2, eps, wd, stochastic_states, stochastic_param):
        """One AdamW update on matching pieces of param, grad, exp_avg, exp_avg_sq (and master)."""
        p, grad, exp_avg, exp_avg_sq = piece[:4]
        master = piece[4] if len(piece) > 4 else None
        g = grad.float()
        m = exp_avg.float().mul_(beta1).add_(g, alpha=1 - beta1)
        v = exp_avg_sq.float().mul_(beta2).addcmul_(g, g, value=1 - beta2)
        self._store(exp_avg, m, stochastic_states)
        self._store(exp_avg_sq, v, stochastic_states)
        # Bias-corrected Adam step, same algebra as torch.optim.AdamW.
        bc1 = 1 - beta1 ** t
        bc2 = 1 - beta2 ** t
        denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)  # not in place: v may be the fp32 state itself
        w = master if master is not None else p.detach().float()
        if wd != 0.0:
            w.mul_(1 - lr * wd)
        w.addcdiv_(m, denom, value=-lr / bc1)
        if master is not None:
            p.copy_(w)  # round-to-nearest copy of the fp32 master
        else:
            self._store(p, w, stochastic=stochastic_param)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self):
        sd = super().state_dict()
        sd["rounding_generators"] = {k: g.get_state() for k, g in self._generators.items()}
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        gens = state_dict.pop("rounding_generators", {})
        saved_groups = state_dict["param_groups"]
        super().load_state_dict(state_dict)
        # torch's loader casts every floating state tensor to its parameter's dtype,
        # which would round the fp32 master (and fp32 moments) of a bf16 parameter
        # to bf16. Put the saved tensors back with their own dtypes.
        saved_ids = [i for g in saved_groups for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for idx, p in zip(saved_ids, params):
            saved = state_dict["state"].get(idx)
            if saved is None:
                continue
            for key, value in saved.items():
                if torch.is_tensor(value) and key != "step":
                    self.state[p][key] = value.to(device=p.device).clone()
            step = self.state[p].get("step")
            if torch.is_tensor(step):
                self.state[p]["step"] = int(step.item())
        self._generators = {}
        for key, gstate in gens.items():
            g = torch.Generator(device=torch.device(key))
            g.set_state(gstate)
            self._generators[key] = g


# ---------------------------------------------------------------------------- memory traffic of a step
_NO_TRAFFIC = ("view", "slice", "detach", "_unsafe_view", "alias", "as_strided", "unbind", "select")


def step_traffic_per_element(rounding: str = "stochastic", state_dtype: torch.dtype = torch.bfloat16, *,
                             fused: bool = False, n: int = 1 << 16) -> tuple[float, int]:
    """Bytes of memory traffic per parameter element of one :class:`BF16AdamW` step on a bf16
    parameter, and the number of kernels (ops) it runs: ``(bytes, kernels)``.

    Eager: counted by running the real step under a dispatch mode that adds up, per aten op, the
    bytes of its tensor inputs and of its outputs that are new tensors (each elementwise kernel reads
    its inputs and writes its output once; views move nothing). Fused: the compiled kernel's
    arguments (each read once, each mutated one written once) plus the ops still dispatched around
    it (the rounding noise's ``randint``), counted the same way — what one fused pointwise kernel
    moves, which is what inductor generates for :func:`_adamw_piece`. The planner's
    ``OPT_STEP_BYTES`` (:mod:`helpers.train.planner`) are these figures; ``tests/train/test_planner.py``
    recounts them.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    def nbytes(ts):
        return sum(t.numel() * t.element_size() for t in ts)

    def tensors(x):
        return [t for t in tree_flatten(x)[0] if torch.is_tensor(t) and t.numel() > 1]

    class _Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bytes, self.ops = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket.__name__ in _NO_TRAFFIC:
                return out
            ins = tensors((args, kwargs))
            self.ops += 1
            self.bytes += nbytes(ins) + nbytes([t for t in tensors(out) if not any(t is i for i in ins)])
            return out

    p = torch.nn.Parameter(torch.randn(n, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16))
    opt = BF16AdamW([p], lr=1e-4, weight_decay=0.01, rounding=rounding, state_dtype=state_dtype, fused=False)
    p.grad = torch.full_like(p, 1e-3)
    opt.step()  # creates the state: the counted step is a steady-state one
    counter = _Count()
    if not fused:
        with counter:
            opt.step()
        return counter.bytes / n, counter.ops
    kernel_args = []

    def record(*args):  # stands for the compiled kernel: note its arguments, run nothing
        kernel_args.extend(a for a in args if torch.is_tensor(a))

    global _COMPILED_PIECE
    saved, _COMPILED_PIECE = _COMPILED_PIECE, record
    try:
        opt.fused = True
        with counter:
            opt.step()
    finally:
        _COMPILED_PIECE = saved
    # the noise, grad, p (or the master) and the moments are read; p, the moments and the master are written
    piece = [x for x in kernel_args if x.numel() == n]
    master = len(piece) > 4 and piece[4] is not None and piece[4].dtype == torch.float32 and rounding == "master"
    reads = [x for x in piece if not (master and x.dtype == torch.bfloat16 and x is piece[0])]
    writes = [piece[0], piece[2], piece[3]] + ([piece[4]] if master else [])
    return (counter.bytes + nbytes(reads) + nbytes(writes)) / n, counter.ops + 1
