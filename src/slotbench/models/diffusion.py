"""Gaussian diffusion for SlotDiffusion's latent decoder: schedule, training loss, samplers.

Split like diffusers: the **schedules** hold numbers only (:class:`DiffusionSchedule`, the
discrete DDPM process; :class:`VPSchedule`, its continuous-time view for DPM-Solver) and the
**samplers** are plain functions that take an ``eps_fn(x, t) -> eps`` noise predictor (the
U-Net with its conditioning bound), the initial noise and a schedule:

* :func:`dpm_solver_pp_sample`: DPM-Solver++ (data prediction), single-step ("DPM-Solver-fast"),
  exactly as the reference evaluation runs it: 20 model evaluations, order 3, time-uniform steps
  from ``t = 1`` to ``t = 1/T`` (1e-3), outer orders ``[3, 3, 3, 3, 3, 3, 2]``, the
  ``'dpmsolver'`` solver type, no final denoising step; the model sees the real-valued time
  ``(t - 1/T) * T`` (999, 949.05, ..., 49.95).
* :func:`ddim_sample`: DDIM as in LDM's ``DDIMSampler`` (uniform steps ``range(0, T, T // steps)
  + 1``, the last step goes to ``alphas_cumprod[0]``, eta 0 by default).
* :func:`ddpm_sample`: ancestral DDPM over all ``T`` steps with the "fixed small" posterior
  variance (log clipped at 1e-20) and no noise at ``t = 0``.

Every sampler applies an optional ``denoise_fn`` to each clean-data prediction ``x0_hat``
before using it; SlotDiffusion passes the VQ codebook snap (``vq_denoised=True`` in the
original). The schedules are computed in float64; coefficients are cast to the sample's dtype
when applied.

Training (:func:`diffusion_loss`): ``t ~ U{0, ..., T-1}`` per sample, ``eps ~ N(0, I)``,
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, loss ``mse(eps_fn(x_t, t), eps)`` (plain mean).

Config keys (:meth:`DiffusionSchedule.from_config`)::

    timesteps: 1000
    beta_schedule: linear        # LDM "linear": betas = linspace(sqrt(start), sqrt(end), T)^2
    linear_start: 0.0015
    linear_end: 0.0195
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "REFERENCE_STEPS",
    "SAMPLERS",
    "DiffusionSchedule",
    "VPSchedule",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "diffusion_loss",
    "dpm_solver_orders",
    "dpm_solver_pp_2m_sample",
    "dpm_solver_pp_sample",
    "dpm_solver_pp_update",
    "make_betas",
    "model_evaluations",
    "make_noise",
    "sample",
]

EpsFn = Callable[[Tensor, Tensor], Tensor]
"""``eps_fn(x [B, ...], t [B]) -> eps [B, ...]``: the noise-prediction model."""
DenoiseFn = Callable[[Tensor], Tensor]
"""``denoise_fn(x0_hat) -> x0_hat``: applied to every clean-data prediction."""

SAMPLERS = ("dpm++", "dpm++2m", "ddim", "ddpm")
#: ``steps`` of each sampler when none is given (the reference's counts; DDPM always runs ``T``)
REFERENCE_STEPS = {"dpm++": 20, "dpm++2m": 20, "ddim": 200}


def make_betas(
    schedule: str, timesteps: int, linear_start: float, linear_end: float
) -> Tensor:
    """float64 ``[T]`` betas; ``"linear"`` is LDM's: ``linspace(sqrt(start), sqrt(end), T) ** 2``.

    Raises:
        ValueError: unknown schedule or values outside ``(0, 1)``.
    """
    if schedule != "linear":
        raise ValueError(f"unknown beta_schedule {schedule!r}; available: linear")
    timesteps = int(timesteps)
    if timesteps < 2:
        raise ValueError(f"diffusion.timesteps must be >= 2, got {timesteps}")
    if not (0.0 < linear_start < 1.0 and 0.0 < linear_end < 1.0):
        raise ValueError(
            f"diffusion.linear_start / linear_end must be in (0, 1), got "
            f"{linear_start} / {linear_end}"
        )
    return (
        torch.linspace(
            math.sqrt(linear_start), math.sqrt(linear_end), timesteps, dtype=torch.float64,
            device="cpu",
        )
        ** 2
    )


def _extract(values: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """``values[t]`` shaped ``[B, 1, ..., 1]`` like ``x``, in ``x``'s dtype and device."""
    out = values.to(t.device)[t.long()].to(x.dtype)
    return out.reshape(t.shape[0], *((1,) * (x.dim() - 1)))


class DiffusionSchedule:
    """The discrete DDPM process ``q(x_t | x_0)`` and its posterior, in float64 (CPU).

    Attributes (float64 ``[T]``): ``betas``, ``alphas_cumprod`` (``abar``),
    ``alphas_cumprod_prev``, ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``,
    ``posterior_variance``, ``posterior_log_variance_clipped``, ``posterior_mean_coef1``,
    ``posterior_mean_coef2``; ``num_timesteps`` = ``T``.
    """

    def __init__(self, betas: Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu")
        if betas.dim() != 1 or betas.numel() < 2:
            raise ValueError("betas must be a 1-D tensor with at least 2 values")
        if torch.any(betas <= 0) or torch.any(betas >= 1):
            raise ValueError("betas must lie in (0, 1)")
        self.num_timesteps = betas.numel()
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat(
            [torch.ones(1, dtype=torch.float64, device="cpu"), self.alphas_cumprod[:-1]]
        )
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.posterior_variance = (
            betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        self.posterior_log_variance_clipped = self.posterior_variance.clamp(min=1e-20).log()
        self.posterior_mean_coef1 = (
            betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        )
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / (1.0 - self.alphas_cumprod)
        )

    @classmethod
    def from_config(cls, cfg: dict) -> DiffusionSchedule:
        """Build from ``{timesteps, beta_schedule, linear_start, linear_end}``."""
        return cls(
            make_betas(
                str(cfg["beta_schedule"]),
                int(cfg["timesteps"]),
                float(cfg["linear_start"]),
                float(cfg["linear_end"]),
            )
        )

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        return (
            x_t - _extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * eps
        ) / _extract(self.sqrt_alphas_cumprod, t, x_t)

    def q_posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Mean of ``q(x_{t-1} | x_t, x_0)``."""
        return (
            _extract(self.posterior_mean_coef1, t, x_t) * x0
            + _extract(self.posterior_mean_coef2, t, x_t) * x_t
        )


def diffusion_loss(eps_fn: EpsFn, x0: Tensor, schedule: DiffusionSchedule) -> Tensor:
    """The epsilon-prediction loss: ``mse(eps_fn(x_t, t), eps)`` (plain mean).

    ``t`` (long, ``[B]``) and ``eps`` are drawn from the global torch RNG on ``x0``'s device, so a
    seeded run is deterministic; ``eps`` in logical (contiguous) order whatever ``x0``'s memory
    format, so channels-last runs draw the same noise.
    """
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0, memory_format=torch.contiguous_format)
    x_t = schedule.q_sample(x0, t, noise)
    return F.mse_loss(eps_fn(x_t, t), noise)


def make_noise(
    shape: tuple[int, ...] | torch.Size,
    same_noise: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise of ``shape``; ``same_noise`` draws one ``[1, ...]`` sample and
    repeats it over the batch. Drawn on ``generator``'s device (CPU by default) and then moved to
    ``device``, so a seeded generator gives the same noise on every device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    draw = (1, *shape[1:]) if same_noise else tuple(shape)
    noise = torch.randn(draw, generator=generator, device=gen_device, dtype=dtype)
    if same_noise:
        noise = noise.expand(*shape).contiguous()
    return noise.to(device) if device is not None else noise


# ====================================================================== DPM-Solver++
def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear ``f(x)`` through ``(xp, fp)`` (``xp`` increasing), extended linearly
    beyond both ends with the outermost segments (as the official ``interpolate_fn``)."""
    k = xp.numel()
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, k - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    return f0 + (x - x0) * (f1 - f0) / (x1 - x0)


class VPSchedule:
    """Continuous-time view of a discrete schedule (DPM-Solver's ``NoiseScheduleVP('discrete')``).

    Step ``n`` of ``T`` sits at time ``t_n = (n + 1) / T``; ``log alpha_t`` (``alpha_t =
    sqrt(abar)``) is the piecewise-linear interpolation of ``0.5 * cumsum(log(1 - beta))`` over
    those times, ``sigma_t = sqrt(1 - alpha_t^2)``, ``lambda_t = log alpha_t - log sigma_t``.
    Times run from ``1/T`` to ``1``; the model sees ``(t - 1/T) * T`` (in ``[0, T - 1]``). All in
    float64.
    """

    def __init__(self, schedule: DiffusionSchedule):
        self.total_n = schedule.num_timesteps
        self.t_array = torch.linspace(
            0.0, 1.0, self.total_n + 1, dtype=torch.float64, device="cpu"
        )[1:]
        self.log_alpha_array = 0.5 * torch.log(1.0 - schedule.betas).cumsum(dim=0)
        self.t_min = 1.0 / self.total_n
        self.t_max = 1.0

    def _t(self, t) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64, device="cpu").reshape(-1)

    def log_alpha(self, t) -> Tensor:
        return _interp(self._t(t), self.t_array, self.log_alpha_array)

    def alpha(self, t) -> Tensor:
        return self.log_alpha(t).exp()

    def sigma(self, t) -> Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def lam(self, t) -> Tensor:
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))

    def inverse_lambda(self, lam) -> Tensor:
        """The time whose ``lambda_t`` is ``lam``."""
        lam = self._t(lam)
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        return _interp(
            log_alpha, self.log_alpha_array.flip(0), self.t_array.flip(0)
        )

    def model_time(self, t) -> Tensor:
        """The U-Net's time input for continuous time ``t``: ``(t - 1/T) * T``."""
        return (self._t(t) - 1.0 / self.total_n) * self.total_n


def dpm_solver_orders(steps: int, order: int) -> list[int]:
    """Orders of the outer steps of single-step DPM-Solver ("DPM-Solver-fast") for ``steps``
    model evaluations: order 3 uses ``K = steps // 3 + 1`` outer steps, e.g. 20 -> ``[3] * 6 +
    [2]``; order 2 uses ``[2] * (steps // 2)`` (+ ``[1]`` when odd); order 1 ``[1] * steps``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if order == 3:
        k = steps // 3 + 1
        if steps % 3 == 0:
            orders = [3] * (k - 2) + [2, 1]
        elif steps % 3 == 1:
            orders = [3] * (k - 1) + [1]
        else:
            orders = [3] * (k - 1) + [2]
    elif order == 2:
        orders = [2] * (steps // 2) + [1] * (steps % 2)
    elif order == 1:
        orders = [1] * steps
    else:
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    if sum(orders) != steps or any(o < 1 for o in orders):
        raise ValueError(f"steps={steps} is too few for order {order}")
    return orders


def _time_range(vp: VPSchedule, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    """``(t_start, t_end)``, defaulting to ``1`` and ``1/T``, checked ``0 < t_end < t_start <= 1``."""
    t_start = vp.t_max if t_start is None else float(t_start)
    t_end = vp.t_min if t_end is None else float(t_end)
    if not (0.0 < t_end < t_start <= 1.0):
        raise ValueError(f"need 0 < t_end < t_start <= 1, got t_start={t_start}, t_end={t_end}")
    return t_start, t_end


def _data_predictor(eps_fn: EpsFn, vp: VPSchedule, denoise_fn: DenoiseFn | None,
                    dtype: torch.dtype) -> Callable[[Tensor, float], Tensor]:
    """``data_pred(x, t) -> x0_hat = denoise_fn((x - sigma_t eps) / alpha_t)``, calling ``eps_fn``
    with the model time ``(t - 1/T) * T`` as a ``[B]`` tensor (float64 for float64 ``x``)."""
    t_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    def data_pred(x_in: Tensor, t: float) -> Tensor:
        t_in = torch.full(
            (x_in.shape[0],), float(vp.model_time(t)), dtype=t_dtype, device=x_in.device
        )
        eps = eps_fn(x_in, t_in)
        x0 = (x_in - float(vp.sigma(t)) * eps) / float(vp.alpha(t))
        return denoise_fn(x0) if denoise_fn is not None else x0

    return data_pred


def dpm_solver_pp_sample(
    eps_fn: EpsFn,
    x: Tensor,
    schedule: DiffusionSchedule,
    steps: int = 20,
    order: int = 3,
    t_start: float | None = None,
    t_end: float | None = None,
    denoise_fn: DenoiseFn | None = None,
    denoise_to_zero: bool = False,
) -> Tensor:
    """Single-step DPM-Solver++ ("DPM-Solver-fast", data prediction, ``'dpmsolver'`` type).

    Args:
        eps_fn: noise predictor; called exactly ``steps`` times (plus one with
            ``denoise_to_zero``) with the model time ``(t - 1/T) * T`` as a ``[B]`` tensor
            (float64 when ``x`` is float64, float32 otherwise).
        x: the initial noise at ``t_start``, ``[B, ...]``.
        schedule: the discrete schedule the model was trained with.
        steps: number of model evaluations (reference 20).
        order: maximum solver order (reference 3): outer orders from
            :func:`dpm_solver_orders`, ``[3, 3, 3, 3, 3, 3, 2]`` for 20 steps.
        t_start, t_end: continuous times, default ``1`` and ``1/T``. The ``steps + 1`` times are
            uniform in ``t`` (``skip_type='time_uniform'``); an order-``k`` step spans ``k`` of
            them and evaluates the model at each but the last (the intermediate ratios ``r1,
            r2`` are the lambda positions of those times).
        denoise_fn: applied to every data prediction ``x0_hat = (x - sigma eps) / alpha``
            (SlotDiffusion: the VQ codebook snap).
        denoise_to_zero: one more data prediction at ``t_end`` as the output (reference: off).

    Returns:
        the sample at ``t_end``, same shape and dtype as ``x``.

    (The official ``lower_order_final`` option only affects the multistep method; the
    single-step method used here has no such switch.)
    """
    vp = VPSchedule(schedule)
    t_start, t_end = _time_range(vp, t_start, t_end)
    orders = dpm_solver_orders(int(steps), int(order))
    grid = torch.linspace(t_start, t_end, int(steps) + 1, dtype=torch.float64, device="cpu")
    bounds = list(itertools.accumulate(orders, initial=0))
    data_pred = _data_predictor(eps_fn, vp, denoise_fn, x.dtype)
    for k, step_order in enumerate(orders):
        x = dpm_solver_pp_update(
            data_pred, x, float(grid[bounds[k]]), float(grid[bounds[k + 1]]), step_order, vp
        )
    if denoise_to_zero:
        x = data_pred(x, t_end)
    return x


def dpm_solver_pp_update(
    data_pred: Callable[[Tensor, float], Tensor],
    x: Tensor,
    t_s: float,
    t_t: float,
    order: int,
    vp: VPSchedule,
) -> Tensor:
    """One single-step DPM-Solver++ update of ``order`` 1, 2 or 3 from time ``t_s`` to ``t_t``.

    ``data_pred(x, t) -> x0_hat`` is called ``order`` times: at ``t_s`` and at the intermediate
    times ``s_i = lambda^-1(lambda_s + r_i h)``, where ``r_i`` are the lambda positions of the
    ``order + 1`` time-uniform points between ``t_s`` and ``t_t`` (so ``s_i`` are those points)
    and ``h = lambda_t - lambda_s``. With ``phi_1 = expm1(-h)``:

    * order 1: ``x_t = sigma_t / sigma_s x - alpha_t phi_1 m_s`` (DDIM);
    * order 2: ``x_t = ... - 0.5 / r1 alpha_t phi_1 (m_1 - m_s)``;
    * order 3: ``x_t = ... + 1 / r2 alpha_t (phi_1 / h + 1) (m_2 - m_s)``, with ``x_{s2}`` from
      ``m_s`` and ``m_1`` (``phi_22 = expm1(-r2 h) / (r2 h) + 1``).

    (The ``'dpmsolver'`` solver type of the official code: the order-3 step is exact when the
    data prediction is linear in lambda.)
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    inner = torch.linspace(t_s, t_t, order + 1, dtype=torch.float64, device="cpu")
    lam = vp.lam(inner).tolist()
    lam_s, h = lam[0], lam[-1] - lam[0]

    def a(t: float) -> float:
        return float(vp.alpha(t))

    def s(t: float) -> float:
        return float(vp.sigma(t))

    phi_1 = math.expm1(-h)
    m_s = data_pred(x, t_s)
    x_t = (s(t_t) / s(t_s)) * x - (a(t_t) * phi_1) * m_s
    if order == 1:
        return x_t
    r1 = (lam[1] - lam_s) / h
    t_1 = float(vp.inverse_lambda(lam_s + r1 * h))
    x_1 = (s(t_1) / s(t_s)) * x - (a(t_1) * math.expm1(-r1 * h)) * m_s
    m_1 = data_pred(x_1, t_1)
    if order == 2:
        return x_t - (0.5 / r1) * (a(t_t) * phi_1) * (m_1 - m_s)
    r2 = (lam[2] - lam_s) / h
    t_2 = float(vp.inverse_lambda(lam_s + r2 * h))
    phi_22 = math.expm1(-r2 * h) / (r2 * h) + 1.0
    x_2 = (
        (s(t_2) / s(t_s)) * x
        - (a(t_2) * math.expm1(-r2 * h)) * m_s
        + (r2 / r1) * (a(t_2) * phi_22) * (m_1 - m_s)
    )
    m_2 = data_pred(x_2, t_2)
    return x_t + (1.0 / r2) * (a(t_t) * (phi_1 / h + 1.0)) * (m_2 - m_s)


def dpm_solver_pp_2m_sample(
    eps_fn: EpsFn,
    x: Tensor,
    schedule: DiffusionSchedule,
    steps: int = 20,
    t_start: float | None = None,
    t_end: float | None = None,
    denoise_fn: DenoiseFn | None = None,
) -> Tensor:
    """Multistep second-order DPM-Solver++ ("2M", Lu et al. 2022, Algorithm 2): one model
    evaluation per step over ``steps + 1`` times uniform in ``lambda = log(alpha / sigma)``
    (``skip_type='logSNR'``: equal ``h``, which the multistep extrapolation needs; time-uniform
    steps make the last ``h`` many times the first and the method lose its order).

    Step ``i`` (``h_i = lambda_i - lambda_{i-1}``, ``m_j`` the data prediction at ``t_j``):
    the first step is first order (DDIM), ``x_i = sigma_i / sigma_{i-1} x_{i-1} - alpha_i
    expm1(-h_i) m_{i-1}``; later steps replace ``m_{i-1}`` with ``(1 + 1/(2 r)) m_{i-1} -
    1/(2 r) m_{i-2}``, ``r = h_{i-1} / h_i``. With fewer than 10 steps the last step is first
    order again (the official ``lower_order_final``). Not the reference evaluation's sampler
    (that is the single-step order-3 :func:`dpm_solver_pp_sample`).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    vp = VPSchedule(schedule)
    t_start, t_end = _time_range(vp, t_start, t_end)
    ends = vp.lam(torch.tensor([t_start, t_end], dtype=torch.float64)).tolist()
    lam = torch.linspace(ends[0], ends[1], int(steps) + 1, dtype=torch.float64).tolist()
    times = [t_start] + [float(vp.inverse_lambda(v)) for v in lam[1:-1]] + [t_end]
    data_pred = _data_predictor(eps_fn, vp, denoise_fn, x.dtype)
    m_prev = None
    for i in range(1, int(steps) + 1):
        m = data_pred(x, times[i - 1])
        h = lam[i] - lam[i - 1]
        first_order = m_prev is None or (i == steps and steps < 10)
        d = m if first_order else m + (m - m_prev) * (h / (2.0 * (lam[i - 1] - lam[i - 2])))
        x = (float(vp.sigma(times[i])) / float(vp.sigma(times[i - 1]))) * x \
            - (float(vp.alpha(times[i])) * math.expm1(-h)) * d
        m_prev = m
    return x


# ====================================================================== DDIM
def ddim_timesteps(num_timesteps: int, steps: int) -> Tensor:
    """LDM's uniform DDIM time steps: ``range(0, T, T // steps) + 1`` (increasing, long).

    For ``T = 1000, steps = 200``: 1, 6, ..., 996.

    Raises:
        ValueError: if ``steps`` is not in ``[1, T // 2]`` (with ``T // steps == 1`` the shifted
            last step would be ``T``, outside the schedule).
    """
    if not 1 <= steps <= num_timesteps // 2:
        raise ValueError(f"DDIM steps must be in [1, {num_timesteps // 2}], got {steps}")
    return torch.arange(0, num_timesteps, num_timesteps // steps, device="cpu") + 1


def ddim_sample(
    eps_fn: EpsFn,
    x: Tensor,
    schedule: DiffusionSchedule,
    steps: int = 200,
    eta: float = 0.0,
    denoise_fn: DenoiseFn | None = None,
    same_noise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DDIM from ``x`` (pure noise) over :func:`ddim_timesteps` (reference: 200 steps, eta 0).

    At step ``tau_i`` (fed to the model as a long ``[B]`` tensor) with ``a = abar[tau_i]`` and
    ``a_prev = abar[tau_{i-1}]`` (``abar[0]`` for the last step, as in LDM):
    ``x0_hat = denoise_fn((x - sqrt(1-a) eps) / sqrt(a))``, ``sigma = eta sqrt((1-a_prev)/(1-a)
    (1 - a/a_prev))``, ``x <- sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps + sigma z``.
    ``z`` comes from :func:`make_noise` (``same_noise``, ``generator``) and only when
    ``eta > 0``.
    """
    taus = ddim_timesteps(schedule.num_timesteps, int(steps))
    abar = schedule.alphas_cumprod
    a_all = abar[taus]
    a_prev_all = torch.cat([abar[:1], abar[taus[:-1]]])
    b = x.shape[0]
    for i in reversed(range(taus.numel())):
        a, a_prev = float(a_all[i]), float(a_prev_all[i])
        t = torch.full((b,), int(taus[i]), dtype=torch.long, device=x.device)
        eps = eps_fn(x, t)
        x0 = (x - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
        if denoise_fn is not None:
            x0 = denoise_fn(x0)
        sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * make_noise(x.shape, same_noise, generator, x.device, x.dtype)
    return x


# ====================================================================== DDPM
def ddpm_sample(
    eps_fn: EpsFn,
    x: Tensor,
    schedule: DiffusionSchedule,
    denoise_fn: DenoiseFn | None = None,
    same_noise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral sampling over all ``T`` steps (``t = T-1, ..., 0``, long ``[B]`` tensors).

    Each step: ``x0_hat = denoise_fn(predict_x0(x, t, eps))``, ``x <- posterior_mean(x0_hat, x,
    t) + exp(0.5 log_var_clipped(t)) z`` with no noise at ``t = 0``; ``z`` from
    :func:`make_noise` (``same_noise``, ``generator``).
    """
    b = x.shape[0]
    for i in reversed(range(schedule.num_timesteps)):
        t = torch.full((b,), i, dtype=torch.long, device=x.device)
        x0 = schedule.predict_x0(x, t, eps_fn(x, t))
        if denoise_fn is not None:
            x0 = denoise_fn(x0)
        x = schedule.q_posterior_mean(x0, x, t)
        if i > 0:
            std = math.exp(0.5 * float(schedule.posterior_log_variance_clipped[i]))
            x = x + std * make_noise(x.shape, same_noise, generator, x.device, x.dtype)
    return x


def sample(
    sampler: str,
    eps_fn: EpsFn,
    x: Tensor,
    schedule: DiffusionSchedule,
    steps: int | None = None,
    denoise_fn: DenoiseFn | None = None,
    same_noise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run ``sampler`` (``"dpm++"``, ``"ddim"`` or ``"ddpm"``) with the reference settings.

    ``steps=None`` takes each sampler's reference count: 20 model evaluations for DPM-Solver++
    (order 3, single-step) and for DPM-Solver++(2M) (multistep, order 2), 200 for DDIM (eta 0), ``T`` for DDPM
    (which takes no ``steps``).
    ``same_noise`` / ``generator`` only matter for the stochastic DDPM steps.
    """
    if steps is None:
        steps = REFERENCE_STEPS.get(sampler)
    if sampler == "dpm++":
        return dpm_solver_pp_sample(eps_fn, x, schedule, steps=steps, denoise_fn=denoise_fn)
    if sampler == "dpm++2m":
        return dpm_solver_pp_2m_sample(eps_fn, x, schedule, steps=steps, denoise_fn=denoise_fn)
    if sampler == "ddim":
        return ddim_sample(
            eps_fn, x, schedule, steps=steps, denoise_fn=denoise_fn,
            same_noise=same_noise, generator=generator,
        )
    if sampler == "ddpm":
        if steps is not None and steps != schedule.num_timesteps:
            raise ValueError(
                f"ddpm sampling runs all {schedule.num_timesteps} steps, got steps={steps}"
            )
        return ddpm_sample(
            eps_fn, x, schedule, denoise_fn=denoise_fn, same_noise=same_noise,
            generator=generator,
        )
    raise ValueError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")


def model_evaluations(sampler: str, steps: int | None, num_timesteps: int) -> int:
    """How many times :func:`sample` calls the noise predictor per frame: ``steps`` (or the
    reference count) for the DPM-Solvers, the length of LDM's DDIM time grid for DDIM (more than
    ``steps`` when it does not divide ``T``, e.g. 31 for 30 of 1000), ``T`` for DDPM."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
    if sampler == "ddpm":
        return num_timesteps
    steps = REFERENCE_STEPS[sampler] if steps is None else steps
    return len(ddim_timesteps(num_timesteps, steps)) if sampler == "ddim" else steps
