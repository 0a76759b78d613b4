"""Slot Attention (Locatello et al. 2020) as used by SAVi / STEVE / SlotDiffusion on MOVi.

Per call (one frame):

1. ``inputs = LN(inputs)``; ``k = W_k inputs``, ``v = W_v inputs`` (bias-free linears).
2. ``num_iterations`` times:

   * ``q = W_q LN(slots)`` (bias-free);
   * ``logits = D^-0.5 * k q^T`` of shape ``[B, M, N]`` (M inputs, N slots);
   * ``attn = softmax(logits)`` **over the slot axis**; the attention map reported to the
     caller is this tensor (last iteration, detached);
   * ``w = (attn + eps) / sum_M (attn + eps)`` (weighted mean over inputs);
     ``updates = w^T v``;
   * ``slots = GRUCell(updates, slots)``; ``slots = slots + MLP(slots)`` with
     ``MLP = LN -> Linear(D, H) -> ReLU -> Linear(H, D)``.

No final LayerNorm, no detach between iterations, single head. The softmax is written out
explicitly (it runs over slots, not keys), so no fused attention kernel is used. Under autocast
the whole module runs in float32 (a small share of a training step).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .common import at_least_float32

__all__ = ["SlotAttention"]


class SlotAttention(nn.Module):
    """Iterative slot-competition cross-attention.

    Args:
        in_features: ``C``, feature size of the inputs.
        slot_size: ``D``.
        mlp_hidden_size: hidden width of the residual slot MLP.
        num_iterations: attention iterations per call.
        eps: added to the attention before the renormalisation over inputs.

    Parameters (reference ``C = D = 192``, ``H = 384``): 482,112.
    """

    def __init__(
        self,
        in_features: int,
        slot_size: int,
        mlp_hidden_size: int,
        num_iterations: int = 2,
        eps: float = 1e-6,
    ):
        super().__init__()
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        self.in_features = int(in_features)
        self.slot_size = int(slot_size)
        self.mlp_hidden_size = int(mlp_hidden_size)
        self.num_iterations = int(num_iterations)
        self.eps = float(eps)
        self.scale = self.slot_size**-0.5

        self.norm_inputs = nn.LayerNorm(self.in_features)
        self.norm_slots = nn.LayerNorm(self.slot_size)
        self.project_q = nn.Linear(self.slot_size, self.slot_size, bias=False)
        self.project_k = nn.Linear(self.in_features, self.slot_size, bias=False)
        self.project_v = nn.Linear(self.in_features, self.slot_size, bias=False)
        self.gru = nn.GRUCell(self.slot_size, self.slot_size)
        self.mlp = nn.Sequential(
            nn.LayerNorm(self.slot_size),
            nn.Linear(self.slot_size, self.mlp_hidden_size),
            nn.ReLU(),
            nn.Linear(self.mlp_hidden_size, self.slot_size),
        )

    def forward(self, inputs: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        """Refine ``slots`` against ``inputs``.

        Args:
            inputs: ``[B, M, C]`` flattened per-location features.
            slots: ``[B, N, D]`` initial slots.

        Returns:
            ``(slots [B, N, D], attn [B, N, M])``; ``attn`` is the last iteration's attention
            after the softmax over slots (sums to 1 over N), before eps / renormalisation,
            detached.
        """
        if inputs.dim() != 3 or inputs.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs must be [B, M, {self.in_features}], got {list(inputs.shape)}"
            )
        if (
            slots.dim() != 3
            or slots.shape[-1] != self.slot_size
            or slots.shape[0] != inputs.shape[0]
        ):
            raise ValueError(
                f"slots must be [B={inputs.shape[0]}, N, {self.slot_size}], got {list(slots.shape)}"
            )
        # float32 under autocast: the iterations are a small share of a step, and with them in bfloat16
        # SAVi bound objects later on `shapes` (docs/measurements.md)
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            return self._iterate(at_least_float32(inputs), at_least_float32(slots))

    def _iterate(self, inputs: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` after its checks, in the precision of ``inputs``."""
        b, n, _ = slots.shape
        inputs = self.norm_inputs(inputs)
        k = self.project_k(inputs)  # [B, M, D]
        v = self.project_v(inputs)  # [B, M, D]

        attn = None
        for _ in range(self.num_iterations):
            slots_prev = slots
            q = self.project_q(self.norm_slots(slots))  # [B, N, D]
            logits = self.scale * torch.einsum("bmd,bnd->bmn", k, q)  # [B, M, N]
            attn = logits.softmax(dim=-1)  # over slots
            weights = attn + self.eps
            weights = weights / weights.sum(dim=1, keepdim=True)  # over inputs
            updates = torch.einsum("bmn,bmd->bnd", weights, v)  # [B, N, D]
            slots = self.gru(
                rearrange(updates, "b n d -> (b n) d"),
                rearrange(slots_prev, "b n d -> (b n) d"),
            )
            slots = rearrange(slots, "(b n) d -> b n d", b=b, n=n)
            slots = slots + self.mlp(slots)

        assert attn is not None
        return slots, rearrange(attn.detach(), "b m n -> b n m")
