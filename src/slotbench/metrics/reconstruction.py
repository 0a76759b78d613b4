"""Per-frame reconstruction metrics as SlotDiffusion's ``test_recon.py`` computes them, in torch.

For predictions and targets ``[N, 3, H, W]`` in [-1, 1] (the models' output scale):

* **MSE**: both images mapped to [0, 1] by ``clamp(x * 0.5 + 0.5, 0, 1)``; the **sum** over
  C, H, W of the squared error, per frame (49,152 terms at 3x128x128), not a mean.
* **PSNR**: ``10 log10(1 / mean squared error)`` on the same clamped [0, 1] images, i.e.
  ``skimage.metrics.peak_signal_noise_ratio(..., data_range=1)``; ``inf`` for identical frames.
* **SSIM**: ``skimage.metrics.structural_similarity`` with the reference settings, on the
  clamped images times 255 (not rounded): ``gaussian_weights=True, sigma=1.5``,
  ``use_sample_covariance=False``, ``data_range=255``, ``K1=0.01``, ``K2=0.03``, one SSIM
  per channel, channels averaged. scikit-image filters with ``scipy.ndimage.gaussian_filter``
  (``truncate=3.5``, so radius ``int(3.5 * 1.5 + 0.5) = 5``, an 11-tap kernel
  ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, ``mode='reflect'``) and then averages the
  SSIM map without a border of ``(11 - 1) // 2 = 5`` pixels on every side. Every kept pixel
  depends only on inputs inside the image, so the border mode never matters: here the
  separable kernel is applied as a *valid* convolution, which gives exactly the kept part.
* **LPIPS** (only when a network is passed, e.g. :class:`slotbench.metrics.lpips.LPIPS`): on
  the **unclamped** prediction and the target in [-1, 1], as the reference.

Everything runs batched on the input's device, in float64 for MSE/PSNR/SSIM (the reference
works on float32 NumPy arrays; the difference is at round-off level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "recon_metrics",
    "to_unit",
    "mse_sum",
    "psnr",
    "ssim",
    "gaussian_kernel1d",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "SSIM_DATA_RANGE",
]

SSIM_SIGMA = 1.5
#: scikit-image's default ``truncate`` for the Gaussian window.
SSIM_TRUNCATE = 3.5
SSIM_DATA_RANGE = 255.0
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"pred and gt must both be [N, 3, H, W], got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] as the reference's ``to_rgb_from_tensor``: ``clamp(x*0.5+0.5, 0, 1)``."""
    return (x * 0.5 + 0.5).clamp(0.0, 1.0)


def mse_sum(pred01: Tensor, gt01: Tensor) -> Tensor:
    """Per-frame sum over C, H, W of the squared error ``[N]`` (inputs in [0, 1])."""
    return (pred01.double() - gt01.double()).pow(2).flatten(1).sum(dim=1)


def psnr(pred01: Tensor, gt01: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-frame PSNR in dB ``[N]``: ``10 log10(data_range^2 / mean squared error)``."""
    mse = (pred01.double() - gt01.double()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_kernel1d(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE,
                      dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """scipy.ndimage's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(a: Tensor, b: Tensor, data_range: float = SSIM_DATA_RANGE, sigma: float = SSIM_SIGMA,
         truncate: float = SSIM_TRUNCATE, k1: float = SSIM_K1, k2: float = SSIM_K2) -> Tensor:
    """Per-image mean SSIM ``[N]`` of ``[N, C, H, W]`` images on a ``data_range`` scale, as
    ``skimage.metrics.structural_similarity(channel_axis=0, gaussian_weights=True,
    use_sample_covariance=False)`` per image (channels averaged)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must both be [N, C, H, W], got {tuple(a.shape)} and {tuple(b.shape)}")
    kernel = gaussian_kernel1d(sigma, truncate, torch.float64, a.device)
    win = kernel.numel()
    n, c, h, w = a.shape
    if h < win or w < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} pixels, got {h}x{w}")
    x = a.double().reshape(n * c, 1, h, w)
    y = b.double().reshape(n * c, 1, h, w)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=0)
    filtered = F.conv2d(F.conv2d(stack, kernel.view(1, 1, win, 1)), kernel.view(1, 1, 1, win))
    ux, uy, uxx, uyy, uxy = filtered.chunk(5, dim=0)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy  # population covariance
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(n, c, -1).mean(dim=2).mean(dim=1)


@torch.no_grad()
def recon_metrics(pred: Tensor, gt: Tensor, lpips: nn.Module | None = None) -> dict[str, Tensor]:
    """Per-frame ``mse``, ``psnr``, ``ssim`` (float64) and, with ``lpips``, ``lpips`` ``[N]``.

    Args:
        pred: reconstructions ``[N, 3, H, W]`` in [-1, 1] (values outside are allowed: they
            are clamped for MSE/PSNR/SSIM and left as they are for LPIPS, as the reference).
        gt: targets ``[N, 3, H, W]`` in [-1, 1].
        lpips: a network ``(pred, gt) -> [N]`` (or ``[N, 1, 1, 1]``) on [-1, 1] inputs.
    """
    _check(pred, gt)
    p01, g01 = to_unit(pred), to_unit(gt)
    out = {
        "mse": mse_sum(p01, g01),
        "psnr": psnr(p01, g01, 1.0),
        "ssim": ssim(p01.double() * SSIM_DATA_RANGE, g01.double() * SSIM_DATA_RANGE),
    }
    if lpips is not None:
        param = next(iter(lpips.parameters()), None)
        dtype = param.dtype if param is not None else torch.float32
        out["lpips"] = lpips(pred.to(dtype), gt.to(dtype)).reshape(pred.shape[0])
    return out

