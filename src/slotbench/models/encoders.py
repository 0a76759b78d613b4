"""Image encoders of the slot trunk.

Two forms, selected by ``encoder_cfg["type"]``:

``resnet18``
    The ResNet-18 variant of SAVi / SlotDiffusion on MOVi-D/E: a 3x3 stride-1 stem
    (conv, GroupNorm, ReLU) with **no max-pool**, then ``layer1..layer3`` of two post-activation
    BasicBlocks each (``layer4`` is not built); the first block of every stage after the first
    has stride 2. GroupNorm (``min(32, C)`` groups, eps 1e-5) everywhere, shortcut included; no
    conv has a bias. Convs are initialised ``kaiming_normal_(fan_out, relu)``, GroupNorm with
    weight 1 / bias 0. With the reference widths ``[64, 128, 256]`` a ``[B, 3, 128, 128]`` input
    gives ``[B, 256, 32, 32]`` (2,775,104 parameters).

``cnn``
    The plain CNN of the MOVi-Solid/Tex configs: ``len(channels)`` convs, kernel ``k``, padding
    ``k // 2``, given strides, with bias, no norm, ReLU after every conv except the last.
    Reference ``[64, 64, 64, 64]``, k 5, strides ``[2, 1, 1, 1]``: ``[B, 64, 64, 64]`` from 128x128
    (312,256 parameters).

Every encoder exposes ``out_channels`` and ``stride`` (the total down-sampling factor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from .common import conv_out_size

__all__ = ["BasicBlock", "ResNetEncoder", "CNNEncoder", "build_encoder"]


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = min(32, channels)
    if channels % groups != 0:
        raise ValueError(
            f"GroupNorm with min(32, C) groups needs C divisible by 32 or C <= 32, got C={channels}"
        )
    return nn.GroupNorm(groups, channels)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation ResNet BasicBlock with GroupNorm.

    ``relu(GN(conv3x3(relu(GN(conv3x3(x))))) + shortcut(x))``; the shortcut is
    ``GN(conv1x1(x))`` whenever the stride or the channel count changes, else identity.

    Shapes: ``[B, cin, H, W] -> [B, cout, H / stride, W / stride]``.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.norm1 = _group_norm(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.norm2 = _group_norm(cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                _group_norm(cout),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet-18 variant for small inputs (see the module docstring).

    Args:
        channels: widths of ``(stem + layer1, layer2, layer3)``; reference ``(64, 128, 256)``.
            Any length >= 1 works: stage ``i`` has two blocks and stride 2 for ``i >= 1``.
        blocks_per_stage: BasicBlocks per stage (2 for ResNet-18).

    Shapes: ``[B, 3, H, W] -> [B, channels[-1], H / stride, W / stride]`` with
    ``stride = 2 ** (len(channels) - 1)`` (4 for the reference).
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256), blocks_per_stage: int = 2):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"resnet18 encoder channels must be positive, got {channels}")
        self.stem = nn.Sequential(
            _conv3x3(3, channels[0]), _group_norm(channels[0]), nn.ReLU(inplace=True)
        )
        stages = []
        cin = channels[0]
        for i, cout in enumerate(channels):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, stride)]
            blocks += [BasicBlock(cout, cout, 1) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.out_channels = channels[-1]
        self.stride = 2 ** (len(channels) - 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init: kaiming-normal (fan_out, relu) convs; GroupNorm weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, size: int) -> int:
        """Spatial output length for an input length ``size`` (exact conv arithmetic)."""
        for i in range(1, len(self.layers)):
            size = conv_out_size(size, 3, 2, 1)
        return size

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.stem(x))


class CNNEncoder(nn.Module):
    """Plain conv stack: conv(k, stride s_i, pad k//2, bias) + ReLU, no ReLU after the last.

    Args:
        channels: output channels of each conv (the input has 3 channels).
        kernel_size: odd kernel size ``k``.
        strides: one stride per conv.

    Shapes: ``[B, 3, H, W] -> [B, channels[-1], H / prod(strides), W / prod(strides)]``.
    """

    def __init__(self, channels: Sequence[int], kernel_size: int, strides: Sequence[int]):
        super().__init__()
        channels = [int(c) for c in channels]
        strides = [int(s) for s in strides]
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"cnn encoder channels must be positive, got {channels}")
        if len(strides) != len(channels):
            raise ValueError(
                f"cnn encoder needs one stride per conv: {len(channels)} channels, "
                f"{len(strides)} strides"
            )
        if any(s < 1 for s in strides):
            raise ValueError(f"cnn encoder strides must be >= 1, got {strides}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"cnn encoder kernel_size must be odd, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.strides = strides
        layers: list[nn.Module] = []
        cin = 3
        for i, (cout, s) in enumerate(zip(channels, strides)):
            layers.append(nn.Conv2d(cin, cout, kernel_size, stride=s, padding=kernel_size // 2))
            if i != len(channels) - 1:
                layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out_channels = channels[-1]
        self.stride = math.prod(strides)

    def output_size(self, size: int) -> int:
        """Spatial output length for an input length ``size`` (exact conv arithmetic)."""
        for s in self.strides:
            size = conv_out_size(size, self.kernel_size, s, self.kernel_size // 2)
        return size

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_encoder(encoder_cfg: dict) -> ResNetEncoder | CNNEncoder:
    """Build the image encoder from the ``encoder`` sub-config (``type``: resnet18 | cnn)."""
    kind = encoder_cfg.get("type")
    if kind == "resnet18":
        return ResNetEncoder(encoder_cfg["channels"])
    if kind == "cnn":
        return CNNEncoder(
            encoder_cfg["channels"], encoder_cfg["kernel_size"], encoder_cfg["strides"]
        )
    raise ValueError(f"unknown encoder type {kind!r} (expected 'resnet18' or 'cnn')")
