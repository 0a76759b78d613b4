"""Models of slotbench, built from plain config dicts.

``build_model(model_cfg, resolution)`` dispatches on ``model_cfg["name"]``. SAVi config keys::

    name: savi
    num_slots: 15            # N
    slot_size: 192           # D
    slot_mlp_size: 384
    num_iterations: 2
    slot_eps: 1.0e-6
    encoder:                 # type resnet18: channels [64, 128, 256], 4x down-sampling
      type: resnet18         # type cnn: channels, kernel_size, strides (one per conv)
      channels: [64, 128, 256]
      out_features: 192
    predictor: {num_layers: 2, num_heads: 4, ffn_dim: 768, dropout: 0.1}
    decoder: {channels: [192, 64, 64, 64, 64], broadcast_resolution: 8, kernel_size: 5}
"""

from __future__ import annotations

from torch import nn

from .savi import SAVi, SpatialBroadcastDecoder
from .trunk import SlotTrunk

__all__ = ["build_model", "SAVi", "SlotTrunk", "SpatialBroadcastDecoder", "MODEL_NAMES"]

MODEL_NAMES = ("savi",)


def build_model(model_cfg: dict, resolution: int) -> nn.Module:
    """Build the model named by ``model_cfg["name"]`` for ``resolution x resolution`` frames.

    Raises:
        ValueError: unknown model name or an impossible config (see the model classes).
    """
    name = model_cfg.get("name")
    if name == "savi":
        return SAVi(model_cfg, resolution)
    raise ValueError(f"unknown model name {name!r}; available: {', '.join(MODEL_NAMES)}")
