"""Small building blocks shared by every slotbench model.

* :func:`build_grid` / :class:`SoftPositionEmbed`: the additive "soft" position embedding of
  Slot Attention / SAVi: a 4-channel coordinate grid ``[h, w, 1-h, 1-w]`` (each axis a
  ``linspace(0, 1)``) mapped by ``Linear(4, C)`` and *added* to a ``[B, C, H, W]`` map;
  optionally with sine / cosine features of the coordinates at ``K`` octaves appended to the
  grid (not in the reference; ``K = 0`` is the reference embedding, parameter for parameter).
* :func:`conv_out_size` / :func:`deconv_out_size`: output sizes of (transposed) convolutions.
* :func:`count_parameters`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "at_least_float32",
    "build_grid",
    "SoftPositionEmbed",
    "conv_out_size",
    "deconv_out_size",
    "count_parameters",
    "as_pair",
]


def as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(h, w)`` from an int or a 2-sequence."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"expected an int or a pair, got {size!r}")
    return size  # type: ignore[return-value]


def build_grid(resolution: int | Sequence[int]) -> Tensor:
    """Coordinate grid for the soft position embedding.

    Args:
        resolution: ``(H, W)`` (or one int for a square grid).

    Returns:
        ``[1, H, W, 4]`` float tensor holding ``[row, col, 1 - row, 1 - col]`` with ``row`` and
        ``col`` each spaced uniformly over ``[0, 1]`` (``linspace``, both ends included; a size-1
        axis gives 0).
    """
    h, w = as_pair(resolution)
    rows = torch.linspace(0.0, 1.0, steps=h)
    cols = torch.linspace(0.0, 1.0, steps=w)
    coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # [H, W, 2]
    return torch.cat([coords, 1.0 - coords], dim=-1).unsqueeze(0)  # [1, H, W, 4]


class SoftPositionEmbed(nn.Module):
    """Additive learned position embedding: ``x + Linear(4, C)(grid)`` (:func:`build_grid`).

    Args:
        channels: ``C``, the channel count of the feature map it is added to.
        resolution: ``(H, W)`` of that feature map.

    Shapes:
        ``forward``: ``[B, C, H, W] -> [B, C, H, W]``.

    Parameters: ``4 * C + C`` (weight and bias of the linear map).
    """

    def __init__(self, channels: int, resolution: int | Sequence[int]):
        super().__init__()
        self.channels = int(channels)
        self.resolution = as_pair(resolution)
        grid = build_grid(self.resolution)
        self.dense = nn.Linear(grid.shape[-1], self.channels)
        self.register_buffer("grid", grid, persistent=False)

    def embedding(self) -> Tensor:
        """The embedding itself, ``[1, C, H, W]``."""
        return rearrange(self.dense(self.grid), "1 h w c -> 1 c h w")

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.resolution or x.shape[-3] != self.channels:
            raise ValueError(
                f"SoftPositionEmbed expects [B, {self.channels}, {self.resolution[0]}, "
                f"{self.resolution[1]}], got {list(x.shape)}"
            )
        return x + self.embedding()


def conv_out_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output length of ``nn.Conv2d`` along one axis (dilation 1)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def deconv_out_size(
    size: int, kernel_size: int, stride: int, padding: int, output_padding: int
) -> int:
    """Output length of ``nn.ConvTranspose2d`` along one axis (dilation 1)."""
    return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Total ``numel`` of a module's parameters (optionally only those requiring grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is in a lower precision (bfloat16 / float16 under autocast), else as it
    is (float32 and float64 unchanged): for the softmaxes CUDA's autocast keeps in float32 and CPU
    autocast would not."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
