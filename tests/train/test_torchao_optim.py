"""torchao's AdamW with bf16 stochastic rounding (optimizer="adamw_bf16_torchao") against BF16AdamW, on the CPU.

The two round the fp32 update of a bf16 weight stochastically, so their results differ draw by draw; what must
agree is the expectation. Bounds (stated and checked below):

- one step, per element: each result is one of the two bf16 neighbours of the exact update (|result - exact|
  < 1 bf16 ulp of the exact value); the moments torchao rounds to nearest (ours stochastically) change the
  update by < 2^-8 of itself, far below an ulp of the weight here;
- expectation: with an update 1/78 of an ulp (lr 1e-4 on weights in [1, 2), ulp 2^-7), round-to-nearest
  would lose every update; the mean over 2^18 elements of the realised update / the exact update is 1 within
  0.1 for both (stochastic rounding is unbiased; per element the ratio has a standard deviation of
  ~sqrt(78) ~ 8.8, so the mean's is 8.8 / 512 ~ 0.017: 0.1 is ~6 of them);
- a resumed optimizer (state_dict + torch's RNG state) continues bit for bit.

torchao's step compiles one kernel per parameter shape (torch.compile with inductor, a C++ compiler on the
CPU: ~15 s each here), so the tests use one shape.

torchao is optional (not in requirements-ci.txt: installed, it is imported by every transformers model import,
see helpers.train.memory.TORCHAO_VERSION): scripts/setup.sh installs it into ``.venv/torchao``, which only this
pytest process puts on its path (tests/optional_torchao.py); without it these tests skip.
"""
import copy

import pytest
import torch

from helpers.train import memory
from helpers.train.precision import BF16AdamW, bf16_ulp
from optional_torchao import have_torchao

have_torchao()
torchao = pytest.importorskip("torchao", reason=f"torchao is not installed (optional: pip install "
                                                f"torchao=={memory.TORCHAO_VERSION}; see the module doc)")

torch.set_num_threads(1)
N = 1 << 18
BETAS, EPS, WD = (0.9, 0.95), 1e-8, 0.01


def _weights(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (1 + torch.rand(N, generator=g)).to(torch.bfloat16)  # [1, 2): one binade, ulp 2^-7


def _grads(steps: int, seed: int = 1) -> list[torch.Tensor]:
    """One random direction per element, its size varying from step to step (the sign kept: the drift of
    each weight adds up over the steps instead of cancelling)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(N, generator=g)
    return [(base * (0.5 + torch.rand(N, generator=g))).to(torch.bfloat16) for _ in range(steps)]


def _exact(p0: torch.Tensor, grads, lr: float) -> torch.Tensor:
    """AdamW in float64 from the same bf16 start, no rounding anywhere."""
    p, m, v = p0.double(), torch.zeros(N, dtype=torch.float64), torch.zeros(N, dtype=torch.float64)
    for t, g in enumerate(grads, 1):
        g = g.double()
        p = p * (1 - lr * WD)
        m = BETAS[0] * m + (1 - BETAS[0]) * g
        v = BETAS[1] * v + (1 - BETAS[1]) * g * g
        p = p - lr * (m / (1 - BETAS[0] ** t)) / ((v / (1 - BETAS[1] ** t)).sqrt() + EPS)
    return p


def _run(kind: str, p0: torch.Tensor, grads, lr: float):
    p = torch.nn.Parameter(p0.clone())
    if kind == "ours":
        opt = BF16AdamW([p], lr=lr, betas=BETAS, eps=EPS, weight_decay=WD, rounding="stochastic",
                        state_dtype=torch.bfloat16, seed=3)
    else:
        opt = memory.build_optimizer([p], "adamw_bf16_torchao", lr=lr, betas=BETAS, eps=EPS, weight_decay=WD)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach(), opt


def test_torchao_and_bf16adamw_agree_in_expectation():
    torch.manual_seed(0)
    p0, lr = _weights(), 1e-4
    grads = _grads(1)
    exact = _exact(p0, grads, lr)
    delta = exact - p0.double()
    ulp = bf16_ulp(exact.float()).double()
    assert (delta.abs() < ulp / 50).all()  # every update is far below half an ulp: round-to-nearest loses it
    for kind in ("ours", "torchao"):
        p, opt = _run(kind, p0, grads, lr)
        assert p.dtype == torch.bfloat16
        err = (p.double() - exact).abs()
        assert (err < ulp).all(), (kind, float((err / ulp).max()))  # one of the two neighbours
        moved = (p != p0).float().mean()
        ratio = float(((p.double() - p0.double()) / delta).mean())
        assert abs(ratio - 1) < 0.1, (kind, ratio)  # unbiased: the mean update is the exact one
        assert 0.003 < moved < 0.05, (kind, float(moved))  # ~1/78 of the weights take a whole-ulp step
    _, opt = _run("torchao", p0, grads, lr)
    assert type(opt).__module__.startswith("torchao.optim")
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state["exp_avg"].dtype == torch.bfloat16 and state["exp_avg_sq"].dtype == torch.bfloat16
    # round-to-nearest (torch.optim.AdamW on the same bf16 weights) loses every one of these updates
    p = torch.nn.Parameter(p0.clone())
    rtn = torch.optim.AdamW([p], lr=lr, betas=BETAS, eps=EPS, weight_decay=WD)
    p.grad = grads[0].clone()
    rtn.step()
    assert torch.equal(p.detach(), p0)


def test_torchao_several_steps_track_the_exact_trajectory_like_ours():
    """Five steps: the mean drift of both from the start, along each weight's gradient sign, is the exact one
    within 0.1 (the noise of five rounded steps averages out over 2^18 elements; measured: 0.996 ours, 1.007
    torchao), and they differ from each other by at most 2 ulps per step (measured: 4 ulps at most)."""
    torch.manual_seed(1)
    p0, lr, grads = _weights(2), 1e-4, _grads(5, seed=4)
    exact = _exact(p0, grads, lr)
    sign = grads[0].double().sign()
    drift = float(((exact - p0.double()) * sign).mean())
    outs = {}
    for kind in ("ours", "torchao"):
        p, _ = _run(kind, p0, grads, lr)
        outs[kind] = p.double()
        assert abs(float(((p.double() - p0.double()) * sign).mean()) / drift - 1) < 0.1, kind
    ulp = bf16_ulp(exact.float()).double()
    # hard bound: each step each rounds within 1 ulp of its own fp32 value, and the fp32 updates agree to far
    # below an ulp (the same lr·m/sqrt(v) from weights that differ by the rounding so far): <= 2 ulps per step
    assert ((outs["ours"] - outs["torchao"]).abs() / ulp).max() <= 2 * len(grads)


def test_torchao_resumes_bit_for_bit_from_its_state_dict_and_the_rng():
    """What the recipe saves (optimizer.state_dict(), torch.get_rng_state()) is all torchao's step needs: two
    steps after a restore equal two steps straight on."""
    p0, lr, grads = _weights(3), 1e-3, _grads(4, seed=5)
    torch.manual_seed(7)
    p, opt = _run("torchao", p0, grads[:2], lr)
    saved, rng, at = copy.deepcopy(opt.state_dict()), torch.get_rng_state(), p.clone()
    for g in grads[2:]:
        opt.param_groups[0]["params"][0].grad = g.clone()
        opt.step()
    straight = opt.param_groups[0]["params"][0].detach().clone()
    q = torch.nn.Parameter(at.clone())
    opt2 = memory.build_optimizer([q], "adamw_bf16_torchao", lr=lr, betas=BETAS, eps=EPS, weight_decay=WD)
    opt2.load_state_dict(saved)
    torch.set_rng_state(rng)
    for g in grads[2:]:
        q.grad = g.clone()
        opt2.step()
    assert torch.equal(q.detach(), straight)
    assert not torch.equal(straight, at)


def test_torchao_refuses_fp32_parameters_and_the_config_checks_its_state_dtype():
    from helpers.train.config import stage_config

    with pytest.raises(ValueError, match="pure-bf16 model.*torch.float32"):
        memory.build_optimizer([torch.nn.Parameter(torch.zeros(4))], "adamw_bf16_torchao", lr=1e-3)
    cfg = stage_config(2, "tiny", precision="bf16-pure", optimizer="adamw_bf16_torchao", optimizer_state="bf16")
    assert cfg.model_dtype == "bfloat16"
    with pytest.raises(ValueError, match="optimizer_state.*'bf16' with optimizer='adamw_bf16_torchao'"):
        stage_config(2, "tiny", precision="bf16-pure", optimizer="adamw_bf16_torchao", optimizer_state="fp32")
    with pytest.raises(ValueError, match="optimizer"):
        stage_config(2, "tiny", precision="bf16-mixed", optimizer="adamw_bf16_torchao", optimizer_state="bf16")
