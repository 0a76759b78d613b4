"""Reconstruction metrics (slotbench.metrics.reconstruction) against scikit-image and NumPy,
with the settings of SlotDiffusion's models/eval_utils.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slotbench.metrics.reconstruction import gaussian_kernel1d, recon_metrics, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")
ndimage = pytest.importorskip("scipy.ndimage")


def _reference(pred: torch.Tensor, gt: torch.Tensor, dtype=np.float64) -> dict[str, np.ndarray]:
    """The reference's eval_imgs: to_rgb_from_tensor (clamp to [0, 1]) then NumPy/scikit-image
    per frame. ``dtype=np.float32`` is exactly what the original feeds them."""
    x = (pred * 0.5 + 0.5).clamp(0, 1).numpy().astype(dtype)
    y = (gt * 0.5 + 0.5).clamp(0, 1).numpy().astype(dtype)
    mse = ((x - y) ** 2).sum(-1).sum(-1).sum(-1)
    psnr = [skimage_metrics.peak_signal_noise_ratio(x[i], y[i], data_range=1.0) for i in range(len(x))]
    ssim_ = [
        skimage_metrics.structural_similarity(
            x[i] * 255.0, y[i] * 255.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=255,
        )
        for i in range(len(x))
    ]
    return {"mse": mse, "psnr": np.array(psnr), "ssim": np.array(ssim_)}


def _random_pair(n=3, h=24, w=31, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    pred = gt + noise * torch.randn(n, 3, h, w, generator=g)  # goes outside [-1, 1]: clamped
    return pred, gt


def _structured_pair(h=32, w=32):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    gradient = torch.stack([xx, yy, xx * yy])
    checker = ((torch.arange(h)[:, None] // 4 + torch.arange(w)[None] // 4) % 2).float() * 2 - 1
    checker = checker.expand(3, h, w)
    constant = torch.full((3, h, w), 0.2)
    disk = ((xx**2 + yy**2) < 0.4).float().expand(3, h, w) * 1.6 - 0.8
    gt = torch.stack([gradient, checker, constant, disk])
    pred = torch.stack([
        gradient.roll(2, dims=2),              # shifted
        checker * 0.5,                         # contrast change
        torch.full((3, h, w), -0.3),           # other constant (zero variance on both sides)
        disk.flip(1) + 0.05,                   # flipped, brightness offset
    ])
    return pred, gt


@pytest.mark.parametrize("pair", ["random", "structured", "non_square"])
def test_matches_scikit_image_and_numpy(pair):
    pred, gt = {"random": _random_pair, "structured": _structured_pair,
                "non_square": lambda: _random_pair(n=2, h=11, w=40, noise=0.5, seed=1)}[pair]()
    ours = recon_metrics(pred, gt)
    ref = _reference(pred, gt)
    for name in ("mse", "psnr", "ssim"):
        assert ours[name].shape == (pred.shape[0],)
        np.testing.assert_allclose(ours[name].numpy(), ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # the original's float32 arrays: same numbers up to float32 round-off
    ref32 = _reference(pred, gt, np.float32)
    for name in ("mse", "psnr", "ssim"):
        np.testing.assert_allclose(ours[name].numpy(), ref32[name], rtol=2e-5, atol=1e-5, err_msg=name)


def test_gaussian_window_is_scipys():
    """11 taps (radius int(3.5 * 1.5 + 0.5) = 5), the weights gaussian_filter1d applies."""
    k = gaussian_kernel1d()
    assert k.numel() == 11
    impulse = np.zeros(21)
    impulse[10] = 1.0
    taps = ndimage.gaussian_filter1d(impulse, sigma=1.5, truncate=3.5, mode="reflect")
    np.testing.assert_allclose(k.numpy(), taps[5:16], rtol=0, atol=1e-15)
    assert taps[:5].sum() == 0 and taps[16:].sum() == 0


def test_mse_is_a_per_frame_sum_and_identity_cases():
    _, gt = _random_pair(n=2, h=16, w=16, noise=0.0)
    same = recon_metrics(gt, gt)
    assert torch.all(same["mse"] == 0) and torch.all(torch.isinf(same["psnr"]))
    torch.testing.assert_close(same["ssim"], torch.ones(2, dtype=torch.float64))
    # a uniform error of 0.1 on the [0, 1] scale: sum = 3*16*16*0.01, PSNR = 20 dB
    a = torch.zeros(1, 3, 16, 16)
    b = torch.full((1, 3, 16, 16), 0.2)  # 0.1 apart after x * 0.5 + 0.5
    m = recon_metrics(a, b)
    assert m["mse"].item() == pytest.approx(3 * 16 * 16 * 0.01)
    assert m["psnr"].item() == pytest.approx(20.0)


def test_lpips_gets_the_unclamped_prediction():
    seen = {}

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, a, b):
            seen["a"], seen["b"] = a, b
            return (a - b).abs().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1) * self.w

    pred, gt = _random_pair(n=2, h=12, w=12, noise=1.0)
    assert pred.abs().max() > 1
    out = recon_metrics(pred, gt, Probe())
    assert torch.equal(seen["a"], pred) and torch.equal(seen["b"], gt)
    assert out["lpips"].shape == (2,)
    torch.testing.assert_close(out["lpips"], (pred - gt).abs().mean(dim=(1, 2, 3)))
    assert "lpips" not in recon_metrics(pred, gt)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        recon_metrics(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 15))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        recon_metrics(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 3, 10, 16), torch.zeros(1, 3, 10, 16))
