"""Tests of the diffusion schedule, loss and samplers (slotbench.models.diffusion)."""

from __future__ import annotations

import math

import pytest
import torch

from slotbench.models.diffusion import (
    DiffusionSchedule,
    VPSchedule,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    diffusion_loss,
    dpm_solver_orders,
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_sample,
    dpm_solver_pp_update,
    make_betas,
    make_noise,
    model_evaluations,
    sample,
)

REF_DIFFUSION = dict(timesteps=1000, beta_schedule="linear", linear_start=0.0015, linear_end=0.0195)


@pytest.fixture(scope="module")
def sched() -> DiffusionSchedule:
    return DiffusionSchedule.from_config(REF_DIFFUSION)


class Recorder:
    """Wraps an ``eps_fn`` and records the model times it is called with."""

    def __init__(self, fn):
        self.fn = fn
        self.times: list[torch.Tensor] = []

    def __call__(self, x, t):
        self.times.append(t.clone())
        return self.fn(x, t)


def _single_point_eps(x0_star, alpha_sigma):
    """The exact noise predictor for data concentrated on ``x0_star``."""

    def eps_fn(x, t):
        a, s = alpha_sigma(t)
        return (x - a * x0_star) / s

    return eps_fn


def _continuous(vp: VPSchedule):
    """alpha, sigma at the continuous time of a DPM-Solver model time ``(t - 1/T) T``."""

    def alpha_sigma(t_in):
        t = t_in.double()[0].item() / vp.total_n + 1.0 / vp.total_n
        return vp.alpha(t).item(), vp.sigma(t).item()

    return alpha_sigma


def _discrete(sched: DiffusionSchedule):
    def alpha_sigma(t):
        ab = sched.alphas_cumprod[int(t[0])].item()
        return math.sqrt(ab), math.sqrt(1 - ab)

    return alpha_sigma


def _snap(values: torch.Tensor):
    """Nearest of a 1-D set of ``values`` per element (a scalar 'codebook')."""

    def fn(x):
        idx = (x.unsqueeze(-1) - values.to(x)).abs().argmin(-1)
        return values.to(x)[idx]

    return fn


# ---------------------------------------------------------------- schedule
def test_betas_and_alphas_cumprod(sched):
    betas = make_betas("linear", 1000, 0.0015, 0.0195)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(0.0015, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.0195, rel=1e-12)
    step = betas.sqrt().diff()
    torch.testing.assert_close(step, torch.full_like(step, step[0].item()), rtol=1e-9, atol=0)
    assert not torch.allclose(betas.diff(), torch.full_like(step, betas.diff()[0].item()))
    torch.testing.assert_close(sched.betas, betas)
    torch.testing.assert_close(sched.alphas_cumprod, torch.cumprod(1 - betas, 0))
    assert sched.alphas_cumprod[-1].item() == pytest.approx(1.423e-4, rel=1e-3)
    assert sched.num_timesteps == 1000
    assert sched.posterior_variance[0].item() == 0.0
    assert sched.posterior_log_variance_clipped[0].item() == pytest.approx(math.log(1e-20))
    with pytest.raises(ValueError, match="beta_schedule"):
        make_betas("cosine", 1000, 0.0015, 0.0195)


def test_q_sample_and_x0_prediction(sched):
    x0 = torch.randn(3, 2, 4, 4)
    noise = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 500, 999])
    xt = sched.q_sample(x0, t, noise)
    for i in range(3):
        ab = sched.alphas_cumprod[t[i]].item()
        torch.testing.assert_close(xt[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i])
    torch.testing.assert_close(sched.predict_x0(xt, t, noise), x0, rtol=1e-4, atol=1e-4)


def test_loss_uses_the_global_rng_and_plain_mse(sched):
    x0 = torch.randn(4, 3, 8, 8)
    seen = {}

    def eps_fn(x, t):
        seen["x"], seen["t"] = x, t
        return 0.5 * x

    torch.manual_seed(7)
    loss = diffusion_loss(eps_fn, x0, sched)
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (4,))
    noise = torch.randn_like(x0)
    assert torch.equal(seen["t"], t) and seen["t"].dtype == torch.long
    xt = sched.q_sample(x0, t, noise)
    torch.testing.assert_close(seen["x"], xt)
    torch.testing.assert_close(loss, ((0.5 * xt - noise) ** 2).mean())
    torch.manual_seed(7)
    assert diffusion_loss(eps_fn, x0, sched).item() == loss.item()


def test_vp_schedule_matches_the_discrete_one(sched):
    vp = VPSchedule(sched)
    n = torch.tensor([0, 1, 499, 998, 999])
    t = (n + 1).double() / 1000
    torch.testing.assert_close(vp.alpha(t), sched.sqrt_alphas_cumprod[n], rtol=1e-12, atol=0)
    torch.testing.assert_close(vp.model_time(t), n.double(), rtol=0, atol=1e-9)
    ts = torch.tensor([1e-3, 0.0173, 0.5, 0.9491, 1.0], dtype=torch.float64)
    torch.testing.assert_close(vp.inverse_lambda(vp.lam(ts)), ts, rtol=0, atol=1e-9)
    one = torch.ones(5, dtype=torch.float64)
    torch.testing.assert_close(vp.sigma(ts) ** 2 + vp.alpha(ts) ** 2, one)


def test_make_noise_same_noise_and_generator():
    a = make_noise((4, 3, 2, 2), True, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 2, 2) and all(torch.equal(a[0], a[i]) for i in range(4))
    b = make_noise((4, 3, 2, 2), False, torch.Generator().manual_seed(0))
    assert not torch.equal(b[1], b[0])
    assert torch.equal(b, make_noise((4, 3, 2, 2), False, torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------- DPM-Solver++
def test_dpm_solver_orders():
    assert dpm_solver_orders(20, 3) == [3, 3, 3, 3, 3, 3, 2]
    assert dpm_solver_orders(21, 3) == [3] * 6 + [2, 1]
    assert dpm_solver_orders(19, 3) == [3] * 6 + [1]
    assert dpm_solver_orders(7, 2) == [2, 2, 2, 1]
    assert dpm_solver_orders(4, 1) == [1] * 4
    with pytest.raises(ValueError):
        dpm_solver_orders(20, 4)


def test_dpm_solver_reference_time_steps_and_nfe(sched):
    rec = Recorder(lambda x, t: torch.zeros_like(x))
    x = torch.randn(2, 3, 4, 4)
    dpm_solver_pp_sample(rec, x, sched)
    assert len(rec.times) == 20
    times = torch.stack([t[0] for t in rec.times]).double()
    assert all(t.shape == (2,) and t.dtype == torch.float32 for t in rec.times)
    # time-uniform: t_k = 1 - k (1 - 1e-3) / 20, model time (t - 1e-3) * 1000 = 999 - 49.95 k
    expected = 999.0 - 49.95 * torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(times, expected, rtol=0, atol=1e-3)
    assert [round(v, 2) for v in times[:3].tolist()] == [999.0, 949.05, 899.1]
    assert round(times[-1].item(), 2) == 49.95
    rec64 = Recorder(lambda x, t: torch.zeros_like(x))
    dpm_solver_pp_sample(rec64, x.double(), sched)
    times64 = torch.stack([t[0] for t in rec64.times])
    assert times64.dtype == torch.float64
    torch.testing.assert_close(times64, expected, rtol=0, atol=1e-8)
    for steps, order in [(10, 3), (7, 2), (5, 1)]:
        rec = Recorder(lambda x, t: torch.zeros_like(x))
        dpm_solver_pp_sample(rec, x, sched, steps=steps, order=order)
        assert len(rec.times) == steps


def test_dpm_solver_single_point_data_is_solved_exactly(sched):
    vp = VPSchedule(sched)
    g = torch.Generator().manual_seed(0)
    x0_star = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    preds = []
    eps_fn = _single_point_eps(x0_star, _continuous(vp))

    def snoop(x0):
        preds.append(x0)
        return x0

    out = dpm_solver_pp_sample(eps_fn, x_t, sched, denoise_fn=snoop)
    assert len(preds) == 20
    for p in preds:  # every data prediction is x0* itself
        torch.testing.assert_close(p, x0_star.expand_as(p), rtol=0, atol=1e-10)
    # the ODE solution: eps_T = (x_T - alpha_1 x0*) / sigma_1 is kept; at t = 1e-3
    a1, s1 = vp.alpha(1.0).item(), vp.sigma(1.0).item()
    a0, s0 = vp.alpha(1e-3).item(), vp.sigma(1e-3).item()
    expected = a0 * x0_star + s0 * (x_t - a1 * x0_star) / s1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    # the final denoising step (off in the reference) returns x0* itself
    out0 = dpm_solver_pp_sample(eps_fn, x_t, sched, denoise_to_zero=True)
    torch.testing.assert_close(out0, x0_star.expand_as(out0), rtol=0, atol=1e-10)


def test_dpm_solver_with_codebook_snap_recovers_the_code(sched):
    vp = VPSchedule(sched)
    codebook = torch.tensor([-1.0, -0.25, 0.5, 1.25], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x0_star = codebook[torch.randint(0, 4, (1, 3, 4, 4), generator=g)]
    x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    exact = _single_point_eps(x0_star, _continuous(vp))
    bias = 0.2 * torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64).clamp(-1, 1)

    def wrong_eps(x, t):  # its x0 prediction is off by `bias` (less than half a code gap)
        a, s = _continuous(vp)(t)
        return exact(x, t) - a / s * bias

    a0, s0 = vp.alpha(1e-3).item(), vp.sigma(1e-3).item()
    a1, s1 = vp.alpha(1.0).item(), vp.sigma(1.0).item()
    expected = a0 * x0_star + s0 * (x_t - a1 * x0_star) / s1
    snap = _snap(codebook)
    snapped = dpm_solver_pp_sample(wrong_eps, x_t, sched, denoise_fn=snap)
    torch.testing.assert_close(snapped, expected, rtol=0, atol=1e-10)
    assert torch.equal(snap(snapped), x0_star.expand_as(snapped))
    raw = dpm_solver_pp_sample(wrong_eps, x_t, sched)
    assert (raw - expected).abs().max() > 0.05


def test_dpm_solver_order3_step_is_exact_for_data_linear_in_lambda(sched):
    vp = VPSchedule(sched)
    c0 = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    c1 = torch.tensor([[0.05], [0.4]], dtype=torch.float64)

    def data_pred(x, t):
        return c0 + c1 * vp.lam(t).item()

    x = torch.tensor([[0.7], [-0.1]], dtype=torch.float64)
    for t_s, t_t in [(1.0, 0.85), (0.4, 0.1), (0.2, 1e-3)]:
        ls, lt = vp.lam(t_s).item(), vp.lam(t_t).item()
        # x_t / sigma_t = x_s / sigma_s + int_{ls}^{lt} e^l (c0 + c1 l) dl
        integral = c0 * (math.exp(lt) - math.exp(ls)) + c1 * (
            math.exp(lt) * (lt - 1) - math.exp(ls) * (ls - 1)
        )
        expected = vp.sigma(t_t).item() * (x / vp.sigma(t_s).item() + integral)
        out = dpm_solver_pp_update(data_pred, x, t_s, t_t, 3, vp)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
        first = dpm_solver_pp_update(data_pred, x, t_s, t_t, 1, vp)
        assert (first - expected).abs().max() > 1e-4  # a first-order step is not exact


def _toy_eps(sched):
    """A closed-form, nonlinear noise predictor in model time (see the golden values below)."""
    ab = sched.alphas_cumprod

    def eps_fn(x, t):
        t = t.double()
        n = t.floor().long().clamp(0, 998)
        w = t - n
        a = (0.5 * ((1 - w) * ab[n].log() + w * ab[n + 1].log())).exp().view(-1, 1)
        s = (1 - a * a).sqrt()
        x0 = 0.7 + a * 0.09 / (a * a * 0.09 + s * s) * (x - a * 0.7) + 0.1 * torch.sin(3 * x) * s
        return ((x - a * x0) / s).to(x.dtype)

    return eps_fn


def test_dpm_solver_matches_the_official_implementation(sched):
    # Golden values: the official dpm_solver.py of SlotDiffusion (NoiseScheduleVP('discrete',
    # float64 betas), model_wrapper(model_type='noise'), DPM_Solver(algorithm_type='dpmsolver++'),
    # sample(steps=20, order=3, method='singlestep')) on this toy model, with and without
    # vq_denoised (a quantiser rounding to multiples of 0.25).
    x_t = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64).view(11, 1)
    plain = [-0.09852361, 0.09011727, 0.24859714, 0.39727816, 0.56694658, 0.74778363,
             0.89064884, 1.00394975, 1.12612172, 1.28726068, 1.45845977]
    snapped = [-0.49662706, 0.19903474, 0.44654646, 0.46205203, 0.72370693, 0.74909075,
               0.76845705, 1.44790819, 1.0347103, 1.06566052, 1.75255904]
    out = dpm_solver_pp_sample(_toy_eps(sched), x_t, sched)
    torch.testing.assert_close(out.view(-1), torch.tensor(plain, dtype=torch.float64),
                               rtol=0, atol=2e-7)
    out = dpm_solver_pp_sample(
        _toy_eps(sched), x_t, sched, denoise_fn=lambda x: torch.round(x * 4) / 4
    )
    torch.testing.assert_close(out.view(-1), torch.tensor(snapped, dtype=torch.float64),
                               rtol=0, atol=2e-7)
    out32 = dpm_solver_pp_sample(_toy_eps(sched), x_t.float(), sched)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.view(-1), torch.tensor(plain), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- DDIM / DDPM
def test_ddim_time_steps_and_single_point(sched):
    taus = ddim_timesteps(1000, 200)
    assert taus.tolist() == list(range(1, 1000, 5))
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 1000)
    g = torch.Generator().manual_seed(2)
    x0_star = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    rec = Recorder(_single_point_eps(x0_star, _discrete(sched)))
    out = ddim_sample(rec, x_t, sched, steps=200)
    assert len(rec.times) == 200 and rec.times[0].dtype == torch.long
    assert [int(t[0]) for t in rec.times[:2]] == [996, 991] and int(rec.times[-1][0]) == 1
    # eta = 0 keeps eps_T; the last step lands on abar[0] (LDM's DDIM)
    ab_t, ab_0 = sched.alphas_cumprod[996].item(), sched.alphas_cumprod[0].item()
    eps = (x_t - math.sqrt(ab_t) * x0_star) / math.sqrt(1 - ab_t)
    expected = math.sqrt(ab_0) * x0_star + math.sqrt(1 - ab_0) * eps
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    # a biased model: the snap hook sees every x0 prediction; the snapped output is the code
    codebook = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    x0_code = torch.round(x0_star).clamp(-1, 1)
    exact = _single_point_eps(x0_code, _discrete(sched))
    snapped = []

    def biased(x, t):
        a, s = _discrete(sched)(t)
        return exact(x, t) - a / s * 0.1

    def snap(x0):
        snapped.append(x0)
        return _snap(codebook)(x0)

    out = ddim_sample(biased, x_t, sched, steps=50, denoise_fn=snap)
    assert len(snapped) == 50
    torch.testing.assert_close(snapped[-1], x0_code.expand_as(out) + 0.1, rtol=0, atol=1e-10)
    assert torch.equal(_snap(codebook)(out), x0_code.expand_as(out))


def test_ddim_eta_noise_is_seeded(sched):
    x = torch.randn(2, 1, 2, 2)

    def eps_fn(x, t):
        return 0.1 * x

    a = ddim_sample(eps_fn, x, sched, steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = ddim_sample(eps_fn, x, sched, steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    c = ddim_sample(eps_fn, x, sched, steps=10, eta=0.0)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_ddpm_single_point_is_exact_and_seeded(sched):
    g = torch.Generator().manual_seed(4)
    x0_star = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    rec = Recorder(_single_point_eps(x0_star, _discrete(sched)))
    out = ddpm_sample(rec, x_t, sched, generator=torch.Generator().manual_seed(0))
    assert len(rec.times) == 1000
    assert [int(t[0]) for t in rec.times[:2]] == [999, 998] and int(rec.times[-1][0]) == 0
    # the last step (t = 0, no noise) returns the x0 prediction, here x0* exactly
    torch.testing.assert_close(out, x0_star.expand_as(out), rtol=0, atol=1e-10)

    calls = []

    def snap(x0):
        calls.append(1)
        return torch.zeros_like(x0)

    def eps_fn(x, t):
        return 0.3 * x

    kw = dict(denoise_fn=snap, same_noise=True)
    a = ddpm_sample(eps_fn, x_t.float(), sched, generator=torch.Generator().manual_seed(5), **kw)
    b = ddpm_sample(eps_fn, x_t.float(), sched, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a, b) and len(calls) == 2000
    assert torch.equal(a, torch.zeros_like(a))  # x0 hook applied, final step = hooked x0
    same = ddpm_sample(
        eps_fn, x_t[:1].float().expand(3, -1, -1, -1), sched, same_noise=True,
        generator=torch.Generator().manual_seed(6),
    )
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])


def test_sample_dispatch(sched):
    counts = {}
    for name, n in [("dpm++", 20), ("ddim", 200), ("ddpm", 1000)]:
        rec = Recorder(lambda x, t: torch.zeros_like(x))
        sample(name, rec, torch.randn(1, 1, 2, 2), sched)
        counts[name] = len(rec.times)
        assert counts[name] == n
    rec = Recorder(lambda x, t: torch.zeros_like(x))
    sample("ddim", rec, torch.randn(1, 1, 2, 2), sched, steps=20)
    assert len(rec.times) == 20
    with pytest.raises(ValueError, match="unknown sampler"):
        sample("euler", rec, torch.randn(1, 1, 2, 2), sched)
    with pytest.raises(ValueError, match="ddpm"):
        sample("ddpm", rec, torch.randn(1, 1, 2, 2), sched, steps=20)


# ---------------------------------------------------------------- toy Gaussian data
def _gaussian_eps(mu: float, std: float, alpha_sigma):
    """The exact noise predictor for 1-D data ``x0 ~ N(mu, std^2)``: with ``x_t = a x0 + s eps``,
    ``E[eps | x_t] = s (x_t - a mu) / (a^2 std^2 + s^2)``."""

    def eps_fn(x, t):
        a, s = alpha_sigma(t)
        return s * (x - a * mu) / (a * a * std * std + s * s)

    return eps_fn


def test_ddim_eta1_and_ddpm_sample_the_data_marginal(sched):
    """Stochastic DDIM (eta 1, the most steps LDM's spacing allows) and DDPM both draw from the
    data distribution when the noise predictor is exact: mean and std of 20,000 samples."""
    mu, std, n = 0.7, 0.3, 20_000
    eps_fn = _gaussian_eps(mu, std, _discrete(sched))
    x_t = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ddim = ddim_sample(eps_fn, x_t, sched, steps=500, eta=1.0, generator=torch.Generator().manual_seed(1))
    ddpm = ddpm_sample(eps_fn, x_t, sched, generator=torch.Generator().manual_seed(2))
    # standard errors: 0.3 / sqrt(n) = 0.002 (mean), about 0.0015 (std). Both samplers end on the
    # x0 prediction and use the posterior variance of a known x0 (beta-tilde), which leaves the
    # samples slightly under-dispersed (std 0.291 here, both samplers alike): a property of the
    # algorithms, not of the implementation.
    for out in (ddim, ddpm):
        assert abs(out.mean().item() - mu) < 0.01
        assert abs(out.std().item() - std) < 0.015
    assert abs(ddim.std().item() - ddpm.std().item()) < 0.005


def test_dpm_solver_with_many_steps_agrees_with_ddim(sched):
    """Both solve the probability-flow ODE: from the same noise, DPM-Solver++ (100 steps) and
    deterministic DDIM (500 steps) end at the same points on a toy Gaussian."""
    mu, std = -0.4, 0.5
    x_t = torch.randn(256, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ddim = ddim_sample(_gaussian_eps(mu, std, _discrete(sched)), x_t, sched, steps=500, eta=0.0)
    dpm = dpm_solver_pp_sample(_gaussian_eps(mu, std, _continuous(VPSchedule(sched))), x_t, sched, steps=100)
    assert (dpm - ddim).abs().max().item() < 0.02
    assert abs(dpm.std().item() - std) < 0.1 and abs(dpm.mean().item() - mu) < 0.1


def test_dpm_solver_2m_single_point_is_exact_and_one_evaluation_per_step(sched):
    vp = VPSchedule(sched)
    g = torch.Generator().manual_seed(7)
    x0_star = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64)
    for steps in (5, 20):
        rec = Recorder(_single_point_eps(x0_star, _continuous(vp)))
        out = dpm_solver_pp_2m_sample(rec, x_t, sched, steps=steps)
        assert len(rec.times) == steps
        a1, s1 = vp.alpha(1.0).item(), vp.sigma(1.0).item()
        a0, s0 = vp.alpha(1e-3).item(), vp.sigma(1e-3).item()
        torch.testing.assert_close(out, a0 * x0_star + s0 * (x_t - a1 * x0_star) / s1, rtol=0, atol=1e-10)
    out = sample("dpm++2m", _single_point_eps(x0_star, _continuous(vp)), x_t, sched)
    torch.testing.assert_close(out, a0 * x0_star + s0 * (x_t - a1 * x0_star) / s1, rtol=0, atol=1e-10)


def test_dpm_solver_2m_converges_to_the_ode_solution(sched):
    """On the toy Gaussian the 2M error against the single-step solver at 999 evaluations shrinks
    about fourfold per doubling of the steps (second order) and is small at 40."""
    mu, std = -0.4, 0.5
    x_t = torch.randn(256, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps_fn = _gaussian_eps(mu, std, _continuous(VPSchedule(sched)))
    ode = dpm_solver_pp_sample(eps_fn, x_t, sched, steps=999)
    errors = [(dpm_solver_pp_2m_sample(eps_fn, x_t, sched, steps=n) - ode).abs().max().item() for n in (10, 20, 40)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    assert errors[0] / errors[2] > 5


@pytest.mark.parametrize("sampler,steps", [("dpm++", None), ("dpm++", 7), ("dpm++2m", None), ("dpm++2m", 5),
                                           ("ddim", None), ("ddim", 30), ("ddim", 50), ("ddpm", None)])
def test_model_evaluations_counts_the_calls_sample_makes(sampler, steps, sched):
    """recon.json's ``unet_evaluations_per_frame``: DDIM with a step count that does not divide T
    runs more evaluations than asked (LDM's time grid), e.g. 31 for 30."""
    calls = Recorder(lambda x, t: torch.zeros_like(x))
    sample(sampler, calls, torch.zeros(1, 2), sched, steps=steps, generator=torch.Generator().manual_seed(0))
    assert model_evaluations(sampler, steps, sched.num_timesteps) == len(calls.times)
    if (sampler, steps) == ("ddim", 30):
        assert len(calls.times) == 31
