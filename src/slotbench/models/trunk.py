"""The slot trunk shared by SAVi, STEVE and SlotDiffusion.

``video [B, T, 3, H, W]`` (values in [-1, 1])
  -> encoder on all ``B*T`` frames ``[BT, C, h, w]``
  -> ``+ SoftPositionEmbed(C, (h, w))``
  -> flatten ``[BT, h*w, C]`` -> ``LN(C) -> Linear(C, F) -> ReLU -> Linear(F, F)``
  -> frame loop: for ``t = 0..T-1`` the initial slots are the learned ``init_latents``
     ``[1, N, D]`` (``N(0, 1)`` init, no sampling) repeated over the batch at ``t = 0``, and
     ``predictor(slots_{t-1})`` afterwards (the predictor output replaces the slots); then
     ``slots_t = SlotAttention(features_t, init)``. Slots are not detached through time.

Reference parameter counts: 4,238,016 (MOVi-D/E: ResNet-18 variant, 15 slots) and 1,736,384
(MOVi-Solid/Tex: plain CNN, 12 slots).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from .common import SoftPositionEmbed
from .encoders import build_encoder
from .predictor import TransformerPredictor
from .slot_attention import SlotAttention

__all__ = ["SlotTrunk"]


class SlotTrunk(nn.Module):
    """Encoder + position embedding + MLP + learned slot init + Slot Attention + predictor.

    Args:
        cfg: the model config dict (keys ``num_slots``, ``slot_size``, ``slot_mlp_size``,
            ``num_iterations``, ``slot_eps``, ``encoder``, ``predictor``; other keys ignored).
        resolution: input frame size ``H = W``.

    Attributes:
        feature_resolution: ``(h, w)`` of the encoder feature map.
        num_slots, slot_size, feature_size: ``N``, ``D`` and the MLP output size ``F``.

    Raises:
        ValueError: if ``resolution`` is not divisible by the encoder's down-sampling factor.
    """

    def __init__(self, cfg: dict, resolution: int):
        super().__init__()
        resolution = int(resolution)
        self.resolution = resolution
        self.num_slots = int(cfg["num_slots"])
        self.slot_size = int(cfg["slot_size"])
        enc_cfg = cfg["encoder"]
        self.feature_size = int(enc_cfg["out_features"])
        if self.num_slots < 1 or self.slot_size < 1 or self.feature_size < 1:
            raise ValueError("num_slots, slot_size and encoder.out_features must be >= 1")

        self.encoder = build_encoder(enc_cfg)
        stride = self.encoder.stride
        if resolution < 1 or resolution % stride != 0:
            raise ValueError(
                f"resolution {resolution} is not divisible by the encoder down-sampling "
                f"factor {stride}"
            )
        h = resolution // stride
        if self.encoder.output_size(resolution) != h:
            raise ValueError(
                f"encoder maps {resolution} to {self.encoder.output_size(resolution)}, "
                f"not {resolution} / {stride}"
            )
        self.feature_resolution: tuple[int, int] = (h, h)
        channels = self.encoder.out_channels

        self.encoder_pos_embedding = SoftPositionEmbed(channels, self.feature_resolution)
        self.encoder_out_layer = nn.Sequential(
            nn.LayerNorm(channels),
            nn.Linear(channels, self.feature_size),
            nn.ReLU(),
            nn.Linear(self.feature_size, self.feature_size),
        )
        self.init_latents = nn.Parameter(torch.randn(1, self.num_slots, self.slot_size))
        self.slot_attention = SlotAttention(
            in_features=self.feature_size,
            slot_size=self.slot_size,
            mlp_hidden_size=int(cfg["slot_mlp_size"]),
            num_iterations=int(cfg["num_iterations"]),
            eps=float(cfg["slot_eps"]),
        )
        pred = cfg["predictor"]
        self.predictor = TransformerPredictor(
            self.slot_size,
            num_layers=int(pred["num_layers"]),
            num_heads=int(pred["num_heads"]),
            ffn_dim=int(pred["ffn_dim"]),
            dropout=float(pred["dropout"]),
        )

    # ------------------------------------------------------------------ pieces
    def encode_features(self, video: Tensor) -> Tensor:
        """Per-frame features for Slot Attention.

        Args:
            video: ``[B, T, 3, H, W]``.

        Returns:
            ``[B, T, h*w, F]``.
        """
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be [B, T, 3, H, W], got {list(video.shape)}")
        if tuple(video.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"video frames must be {self.resolution}x{self.resolution}, "
                f"got {tuple(video.shape[-2:])}"
            )
        b, t = video.shape[:2]
        x = self.encoder(rearrange(video, "b t c h w -> (b t) c h w"))
        x = self.encoder_pos_embedding(x)
        x = rearrange(x, "bt c h w -> bt (h w) c")
        x = self.encoder_out_layer(x)
        return rearrange(x, "(b t) m f -> b t m f", b=b, t=t)

    def initial_slots(self, batch_size: int) -> Tensor:
        """The initial slots of frame 0, ``[B, N, D]``: the learned ``init_latents [1, N, D]``
        repeated over the batch (the reference; no sampling)."""
        return repeat(self.init_latents, "1 n d -> b n d", b=batch_size)

    def predict(self, slots: Tensor) -> Tensor:
        """Transition ``[B, N, D] -> [B, N, D]``: the initial slots of the next frame."""
        return self.predictor(slots)

    # ------------------------------------------------------------------ encode
    def encode(self, video: Tensor, init_slots: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the corrector-predictor frame loop.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            init_slots: ``[B, N, D]`` slots Slot Attention starts from at frame 0; ``None``
                uses the learned ``init_latents``. To continue a video from the last slots
                ``s`` of a previous clip, pass ``self.predict(s)``.

        Returns:
            ``slots [B, T, N, D]`` and ``attn [B, T, N, h*w]`` (last-iteration attention after
            the softmax over slots, detached).
        """
        feats = self.encode_features(video)
        b, t = feats.shape[:2]
        if init_slots is None:
            slots = self.initial_slots(b)
        else:
            if tuple(init_slots.shape) != (b, self.num_slots, self.slot_size):
                raise ValueError(
                    f"init_slots must be [{b}, {self.num_slots}, {self.slot_size}], "
                    f"got {list(init_slots.shape)}"
                )
            slots = init_slots
        all_slots, all_attn = [], []
        for i in range(t):
            if i > 0:
                slots = self.predict(slots)
            slots, attn = self.slot_attention(feats[:, i], slots)
            all_slots.append(slots)
            all_attn.append(attn)
        return torch.stack(all_slots, dim=1), torch.stack(all_attn, dim=1)

    @torch.no_grad()
    def encode_chunked(self, video: Tensor, chunk_len: int) -> tuple[Tensor, Tensor]:
        """:meth:`encode` over a long video, ``chunk_len`` frames at a time, in order.

        The last slots of each chunk go through the predictor to start the next chunk, so the
        result equals one pass over the whole video (the reference evaluation protocol for
        videos that do not fit at once). Call ``eval()`` first for deterministic results.

        Returns:
            ``slots [B, T, N, D]``, ``attn [B, T, N, h*w]``.
        """
        if chunk_len < 1:
            raise ValueError(f"chunk_len must be >= 1, got {chunk_len}")
        init = None
        slots_out, attn_out = [], []
        for start in range(0, video.shape[1], chunk_len):
            slots, attn = self.encode(video[:, start : start + chunk_len], init)
            slots_out.append(slots)
            attn_out.append(attn)
            init = self.predict(slots[:, -1])
        return torch.cat(slots_out, dim=1), torch.cat(attn_out, dim=1)

    @torch.no_grad()
    def segment_from_attention(self, video: Tensor, chunk_len: int) -> Tensor:
        """The reference segmentation of STEVE and SlotDiffusion: the last Slot Attention map of
        each frame, bilinearly upsampled (``align_corners=False``) to ``H x W``, argmax over slots.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1]; ``chunk_len`` as :meth:`encode_chunked`.
        Returns:
            ``LongTensor [B, T, H, W]`` of slot ids in ``[0, N)``.
        """
        _, attn = self.encode_chunked(video, chunk_len)
        b, t = attn.shape[:2]
        fh, fw = self.feature_resolution
        segs = []
        for start in range(0, t, chunk_len):  # upsample chunk by chunk: bounded memory at 128x128
            a = rearrange(attn[:, start:start + chunk_len], "b t n (h w) -> (b t) n h w", h=fh, w=fw)
            a = F.interpolate(a, size=tuple(video.shape[-2:]), mode="bilinear", align_corners=False)
            segs.append(rearrange(a.argmax(dim=1), "(b t) h w -> b t h w", b=b))
        return torch.cat(segs, dim=1)

    def forward(self, video: Tensor, init_slots: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Alias of :meth:`encode`."""
        return self.encode(video, init_slots)
