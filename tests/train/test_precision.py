"""Lost updates in pure bf16 and the two remedies (helpers.train.precision). CPU, a few seconds."""
import copy

import pytest
import torch
from torch import nn

from helpers.train.precision import BF16AdamW, bf16_ulp, lost_update_fraction, stochastic_round_to_bf16

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- rounding
def test_bf16_ulp_hand_values():
    # bf16 keeps 7 mantissa bits: ulp(1.0) = 2**-7, ulp(0.02) = 2**(-6-7) since 0.02 is in [2**-6, 2**-5).
    got = bf16_ulp(torch.tensor([1.0, 1.5, -3.0, 0.02]))
    assert got.tolist() == [2.0 ** -7, 2.0 ** -7, 2.0 ** -6, 2.0 ** -13]


def test_lost_update_fraction_hand_cases():
    w = torch.ones(4)
    # Half an ulp of 1.0 is 2**-8 = 0.0039: 1e-3 and -1e-3 vanish, 0.01 and -0.01 survive.
    u = torch.tensor([1e-3, -1e-3, 0.01, -0.01])
    assert lost_update_fraction(w, u) == 0.5
    assert lost_update_fraction(w, torch.zeros(4)) == 0.0  # nothing asked, nothing lost
    with pytest.raises(ValueError, match="same shape"):
        lost_update_fraction(w, torch.zeros(3))


def test_stochastic_rounding_is_unbiased_and_picks_a_neighbour():
    g = torch.Generator().manual_seed(0)
    # Values between bf16 neighbours at 30 % and 90 % of the gap, both signs, a tiny and a large magnitude.
    base = torch.tensor([1.0, -1.0, 3.0e-5, -2.0e4]).to(torch.bfloat16).float()  # exact bf16 grid points
    ulp = bf16_ulp(base)
    x = torch.cat([base + 0.3 * ulp * base.sign(), base + 0.9 * ulp * base.sign()])
    n = 20000
    samples = stochastic_round_to_bf16(x.repeat(n, 1), g)  # (n, 8) bf16
    assert samples.dtype == torch.bfloat16
    s = samples.float()
    down = base  # the neighbour towards zero ...
    up = base + ulp * base.sign()  # ... and the one away from zero
    down, up = down.repeat(2), up.repeat(2)
    assert bool(((s == down) | (s == up)).all()), "every draw must be one of the two bf16 neighbours"
    mean = s.double().mean(0)
    # Std of the mean of n Bernoulli draws is ulp*sqrt(p(1-p)/n) <= ulp*0.0036; allow 5 sigma.
    tol = 5 * 0.5 * bf16_ulp(x).double() / n ** 0.5
    assert torch.all((mean - x.double()).abs() <= tol), (mean - x.double(), tol)
    # The probability of rounding away from zero is the fractional position (0.3 / 0.9).
    frac_up = (s == up).double().mean(0)
    assert torch.allclose(frac_up, torch.tensor([0.3] * 4 + [0.9] * 4, dtype=torch.float64), atol=0.02)


def test_stochastic_rounding_edge_values():
    x = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1.0, 3.3895313892515355e38])
    out = stochastic_round_to_bf16(x.repeat(100, 1), torch.Generator().manual_seed(1)).float()
    assert (out[:, :2] == 0).all() and (out[:, 2] == float("inf")).all() and (out[:, 3] == float("-inf")).all()
    assert torch.isnan(out[:, 4]).all()
    assert (out[:, 5] == 1.0).all()  # exactly representable: never moves
    assert torch.isfinite(out[:, 6]).all()  # the largest finite bf16 stays finite
    # A NaN whose payload is only in the low 16 bits must not turn into inf.
    odd_nan = torch.tensor([0x7F800001], dtype=torch.int32).view(torch.float32)
    assert torch.isnan(stochastic_round_to_bf16(odd_nan).float()).all()
    with pytest.raises(TypeError, match="float32"):
        stochastic_round_to_bf16(torch.ones(2, dtype=torch.bfloat16))


# ----------------------------------------------------------------------------- the bug and the fixes
LR = 5e-6  # seed Stage 4
STEPS = 150


def _mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.SiLU(), nn.Linear(64, 32))
    for p in net.parameters():  # LLaMA-like weight scale (std 0.02), where a bf16 half-ulp is ~3e-5..1.2e-4
        nn.init.normal_(p, std=0.02)
    return net


def _train(net, opt, dtype):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 32, generator=gen)
    y = torch.randn(64, 32, generator=gen)  # fixed targets: gradients keep their direction, drift accumulates
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = ((net(x.to(dtype)).float() - y) ** 2).mean()
        loss.backward()
        opt.step()


def _flat(net):
    return torch.cat([p.detach().float().flatten() for p in net.parameters()])


@pytest.fixture(scope="module")
def reference():
    """fp32 weights trained with torch AdamW: initial weights and drift (what bf16 training should match)."""
    net = _mlp()
    start = _flat(net)
    _train(net, torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0), torch.float32)
    return start, _flat(net) - start


def _drift_of(opt_factory, start):
    net = _mlp().to(torch.bfloat16)
    start_bf16 = _flat(net)
    _train(net, opt_factory(net.parameters()), torch.bfloat16)
    return _flat(net) - start_bf16, start_bf16


def _rel_err(d, ref):
    return float((d - ref).norm() / ref.norm())


def test_pure_bf16_adamw_loses_most_updates(reference):
    start, ref = reference
    drift, _ = _drift_of(lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=0.0), start)
    unchanged = float((drift == 0).float().mean())
    # Each step asks for ~5e-6 per weight; half a bf16 ulp at |w| ~ 0.02 is ~3e-5: rounded away.
    assert unchanged > 0.8, f"only {unchanged:.0%} of bf16 weights stayed put"
    assert float(ref.abs().mean()) > 1e-4  # the fp32 reference did move (~STEPS * LR scale)
    assert _rel_err(drift, ref) > 0.8  # the bf16 run missed almost all of the fp32 drift


@pytest.mark.parametrize("rounding,state_dtype,tol", [
    ("master", torch.float32, 0.10),
    ("stochastic", torch.float32, 0.45),
    ("stochastic", torch.bfloat16, 0.45),
])
def test_remedies_follow_fp32_reference(reference, rounding, state_dtype, tol):
    start, ref = reference
    drift, _ = _drift_of(lambda ps: BF16AdamW(ps, lr=LR, rounding=rounding, state_dtype=state_dtype, seed=3), start)
    err = _rel_err(drift, ref)
    # Per-element residue is bounded by bf16 rounding of the *final* weight (and unbiased noise for
    # stochastic rounding); the drift itself is followed: the error is a fraction of the buggy run's ~100 %.
    assert err < tol, f"{rounding}/{state_dtype}: drift differs from fp32 by {err:.0%}"
    cos = float(torch.nn.functional.cosine_similarity(drift, ref, dim=0))
    assert cos > 0.9
    # Mean movement along the reference direction is recovered within 10 %.
    along = float((drift * ref.sign()).mean() / ref.abs().mean())
    assert 0.9 < along < 1.1


def test_nearest_rounding_reproduces_the_bug(reference):
    start, ref = reference
    drift, _ = _drift_of(lambda ps: BF16AdamW(ps, lr=LR, rounding="nearest"), start)
    assert float((drift == 0).float().mean()) > 0.8


@pytest.mark.parametrize("chunk", [BF16AdamW.CHUNK_ELEMENTS, 5])  # 5: every tensor is updated in pieces
def test_fp32_params_match_torch_adamw_exactly(chunk):
    torch.manual_seed(0)
    a = nn.Linear(8, 4)
    b = copy.deepcopy(a)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    opt_b = BF16AdamW(b.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt_b.CHUNK_ELEMENTS = chunk
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rounding,state_dtype,fused", [("stochastic", torch.bfloat16, False),
                                                         ("master", torch.float32, False),
                                                         ("stochastic", torch.bfloat16, True)])
def test_state_dict_resume_is_exact(rounding, state_dtype, fused):
    """Six steps straight == three, a state-dict round trip, three more; fused too (the noise
    generator's state travels in the state dict as before)."""
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)

    def run(net, opt, n):
        for _ in range(n):
            opt.zero_grad()
            net(x).float().square().mean().backward()
            opt.step()

    make = lambda net: BF16AdamW(net.parameters(), lr=1e-3, rounding=rounding, state_dtype=state_dtype, seed=5,
                                 fused=fused)
    straight = _mlp().to(torch.bfloat16)
    opt = make(straight)
    run(straight, opt, 6)

    first = _mlp().to(torch.bfloat16)
    opt1 = make(first)
    run(first, opt1, 3)
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt1.state_dict())
    resumed = _mlp().to(torch.bfloat16)
    resumed.load_state_dict(saved_model)
    opt2 = make(resumed)
    opt2.load_state_dict(saved_opt)
    for p in resumed.parameters():  # the loader must keep our state dtypes (fp32 master stays fp32)
        st = opt2.state[p]
        assert st["exp_avg"].dtype == state_dtype
        if rounding == "master":
            assert st["master"].dtype == torch.float32
    run(resumed, opt2, 3)
    for pa, pb in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(straight[0].weight, _mlp().to(torch.bfloat16)[0].weight)


def test_bad_arguments_are_rejected():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="rounding"):
        BF16AdamW(p, rounding="floor")
    with pytest.raises(ValueError, match="state_dtype"):
        BF16AdamW(p, state_dtype=torch.float16)
    with pytest.raises(ValueError, match="lr"):
        BF16AdamW(p, lr=-1.0)


# ----------------------------------------------------------------------------- fused (compiled) update
def _one_piece_step(fused, p_dtype, rounding, state_dtype, n=4099, t=3, wd=0.1):
    """One update of one piece from a fixed random state: (param, {state}, generator state) after it."""
    g = torch.Generator().manual_seed(11)
    p = (torch.randn(n, generator=g) * 0.02).to(p_dtype)
    grad = (torch.randn(n, generator=g) * 1e-3).to(p_dtype)
    m = (torch.randn(n, generator=g) * 1e-3).to(state_dtype)
    v = (torch.rand(n, generator=g) * 1e-6).to(state_dtype)
    master = p.float() + torch.randn(n, generator=g) * 1e-5 if (rounding == "master" and p_dtype == torch.bfloat16) \
        else None
    opt = BF16AdamW([nn.Parameter(torch.zeros(1))], rounding=rounding, state_dtype=state_dtype, seed=4, fused=fused)
    before = dict(p=p.clone(), grad=grad.clone(), m=m.clone(), v=v.clone(),
                  master=None if master is None else master.clone())
    piece = [p, grad, m, v] + ([master] if master is not None else [])
    stochastic_states = state_dtype == torch.bfloat16 and p_dtype == torch.bfloat16
    stochastic_param = p_dtype == torch.bfloat16 and rounding == "stochastic"
    if p_dtype == torch.float32:
        stochastic_states = False
    update = opt._update_fused if fused else opt._update
    update(piece, t, 1e-3, 0.9, 0.95, 1e-8, wd, stochastic_states, stochastic_param)
    gens = {k: gen.get_state() for k, gen in opt._generators.items()}
    return dict(p=p, m=m, v=v, master=master), gens, before


def _bound(scale, x, y, carried=0.0):
    """Allowed |fused - eager|: two fp32 ulps of the operand scale (one extra rounding of a product,
    eager CPU's FMA against inductor's separate multiply and add, plus a reciprocal multiply against a
    division), plus one ulp of ``x``'s own dtype where ``x`` is stored in bf16 (the same stochastic or
    nearest rounding of two fp32 values that close lands on the same or the neighbouring bf16 value,
    whose gap is the ulp of the larger of the two, ``x`` or ``y``). ``carried``: the error an input
    already carries (the weight update's from the first moment's)."""
    tol = 2.0 ** -22 * scale + carried
    if x.dtype == torch.bfloat16:
        tol = tol + bf16_ulp(torch.maximum(x.float().abs(), y.float().abs()) + tol.float()).double()
    return tol


@pytest.mark.parametrize("p_dtype,rounding,state_dtype", [
    (torch.bfloat16, "stochastic", torch.bfloat16),  # the Colab stage-2 configuration
    (torch.bfloat16, "master", torch.float32),
    (torch.float32, "stochastic", torch.float32),  # fp32 parameters: exact AdamW, no rounding noise
])
def test_fused_update_matches_eager_within_the_stated_bound(p_dtype, rounding, state_dtype):
    """The compiled update against today's eager update from the same state and the same noise stream.

    Exact: the generator state afterwards (the same draws, in the same order and shapes), so the state
    dict and exact resume do not depend on which path ran. Within :func:`_bound`: every value; and
    almost every value bit-identical (the FMA difference moves a result only when it is not exact)."""
    eager, gen_e, b = _one_piece_step(False, p_dtype, rounding, state_dtype)
    fused, gen_f, _ = _one_piece_step(True, p_dtype, rounding, state_dtype)
    assert gen_e.keys() == gen_f.keys() and all(torch.equal(gen_e[k], gen_f[k]) for k in gen_e)
    if p_dtype == torch.bfloat16:
        assert len(gen_e) == (1 if rounding == "stochastic" else 0)
    g = b["grad"].double()
    scale_m = (0.9 * b["m"].double()).abs() + (0.1 * g).abs()
    scale_v = 0.95 * b["v"].double() + 0.05 * g * g
    m_ref = 0.9 * b["m"].double() + 0.1 * g
    denom = (0.95 * b["v"].double() + 0.05 * g * g).sqrt() / (1 - 0.95 ** 3) ** 0.5 + 1e-8
    w0 = (b["master"] if b["master"] is not None else b["p"]).double()
    step = 1e-3 / (1 - 0.9 ** 3)
    scale_w = (w0 * (1 - 1e-4)).abs() + step * m_ref.abs() / denom
    # the first moment's own deviation (two fp32 ulps of its scale), carried into the weight by the step
    from_m = step * 2.0 ** -22 * scale_m / denom
    for key, scale, carried in (("m", scale_m, 0.0), ("v", scale_v, 0.0), ("p", scale_w, from_m),
                                ("master", scale_w, from_m)):
        a, f = eager[key], fused[key]
        if a is None:
            assert f is None
            continue
        assert a.dtype == f.dtype
        diff = (a.double() - f.double()).abs()
        tol = _bound(scale, a, f, carried)
        assert bool((diff <= tol).all()), f"{key}: max excess {float((diff - tol).max())}"
        assert float((a != f).float().mean()) < 0.5, key  # mostly the same bits, not merely close
    moved = eager["p"] != b["p"]
    assert float(moved.float().mean()) > 0.1  # the update did something to compare


def test_fused_flag_is_checked_and_auto_stays_eager_on_cpu():
    from helpers.train.precision import fused_update_default

    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="fused"):
        BF16AdamW(p, fused="yes")
    assert fused_update_default("cpu") is False
