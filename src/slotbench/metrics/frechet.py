"""Frechet distance between Gaussians fitted to two feature sets (FID/FVD-style)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["frechet_distance"]


def _as_features(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.from_numpy(np.asarray(x))
        except TypeError as err:  # e.g. object arrays
            raise ValueError(f"{name} must be a numeric [N, D] array or tensor") from err
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise ValueError(f"{name} must be a real numeric [N, D] array or tensor, got {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples (N >= 2) for a covariance, got N={t.shape[0]}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _psd_sqrt(mat: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix via eigh, negative eigenvalues clamped to 0."""
    mat = 0.5 * (mat + mat.T)
    w, v = torch.linalg.eigh(mat)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Frechet distance between Gaussian fits of two feature sets.

    ``d = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` where ``mu`` is the mean and
    ``S`` the covariance with the ``N - 1`` denominator (``numpy.cov(x, rowvar=False)``).
    The trace of the matrix square root is computed stably in float64 as
    ``tr sqrt(sqrt(S_a) S_b sqrt(S_a))`` (same eigenvalues as ``S_a S_b``) with symmetric
    eigendecompositions, clamping negative eigenvalues to 0, so the result is always real.

    Args:
        feats_a: features ``[N_a, D]`` (numpy array or torch tensor, any device), N_a >= 2.
        feats_b: features ``[N_b, D]``, same ``D``, N_b >= 2.

    Returns:
        The distance as a Python float, in squared feature units (>= 0; tiny negative
        round-off is clamped to 0).

    Raises:
        ValueError: not 2-D, N < 2, mismatched D, non-numeric or non-finite values.
    """
    a = _as_features(feats_a, "feats_a")
    b = _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feats_a and feats_b must have the same feature dim D, got {a.shape[1]} vs {b.shape[1]}"
        )
    b = b.to(a.device)

    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    xa, xb = a - mu_a, b - mu_b
    cov_a = xa.T @ xa / (a.shape[0] - 1)
    cov_b = xb.T @ xb / (b.shape[0] - 1)

    sqrt_a = _psd_sqrt(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    eig = torch.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = eig.clamp(min=0).sqrt().sum()

    diff = mu_a - mu_b
    dist = diff @ diff + torch.trace(cov_a) + torch.trace(cov_b) - 2.0 * tr_covmean
    return max(float(dist), 0.0)
