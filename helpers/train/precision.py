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

import math
from typing import Iterable

import torch

__all__ = [
    "bf16_ulp",
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
    """

    ROUNDINGS = ("stochastic", "master", "nearest")
    CHUNK_ELEMENTS = 1 << 24  # elements updated at once: fp32 temporaries stay ~16 M x ~32 B = 0.5 GB

    def __init__(self, params: Iterable, lr: float = 1e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, rounding: str = "stochastic",
                 state_dtype: torch.dtype = torch.float32, seed: int = 0):
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
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
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
                for piece in pieces:
                    self._update(piece, t, lr, beta1, beta2, eps, wd, stochastic_states, stochastic_param)
        return loss

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
