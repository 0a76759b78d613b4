"""Transformer predictor: the transition between frames of the slot trunk.

``nn.TransformerEncoder`` over the N slots of one frame (no temporal attention), made of
``num_layers`` pre-norm (``norm_first=True``) ``nn.TransformerEncoderLayer`` s with ReLU,
LayerNorm eps 1e-5, ``batch_first=True`` and no final norm. The output **replaces** the slots
(no outer residual). As in the reference, the stack deep-copies one freshly initialised layer,
so all layers start from identical weights.

Reference (D 192, 4 heads, FFN 768, dropout 0.1, 2 layers): 889,728 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["TransformerPredictor"]


class TransformerPredictor(nn.Module):
    """Slot-to-slot transformer.

    Args:
        slot_size: ``D`` (the model width; must be divisible by ``num_heads``).
        num_layers, num_heads, ffn_dim, dropout: as in ``nn.TransformerEncoderLayer``.

    Shapes: ``forward``: ``[B, N, D] -> [B, N, D]``.
    """

    def __init__(
        self,
        slot_size: int,
        num_layers: int = 2,
        num_heads: int = 4,
        ffn_dim: int = 768,
        dropout: float = 0.1,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"predictor num_layers must be >= 1, got {num_layers}")
        if slot_size % num_heads != 0:
            raise ValueError(
                f"slot_size {slot_size} is not divisible by predictor num_heads {num_heads}"
            )
        layer = nn.TransformerEncoderLayer(
            d_model=slot_size,
            nhead=num_heads,
            dim_feedforward=ffn_dim,
            dropout=dropout,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        # TransformerEncoder deep-copies `layer` num_layers times: identical initial weights.
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=num_layers, norm=None, enable_nested_tensor=False
        )

    def forward(self, slots: Tensor) -> Tensor:
        return self.transformer(slots)
