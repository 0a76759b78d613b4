"""SAVi (Kipf et al. 2022) as configured by SlotDiffusion's video experiments on MOVi.

Slot trunk (:class:`~slotbench.models.trunk.SlotTrunk`) + spatial-broadcast decoder:

* every slot ``[D]`` is tiled to ``r x r`` (``broadcast_resolution``) and
  ``SoftPositionEmbed(D, (r, r))`` is added;
* a stack of ``ConvTranspose2d(k, stride s, padding k//2, output_padding s-1)`` with bias, each
  followed by ReLU (the last one included), channels ``decoder.channels``. The stride rule is
  the reference's: a layer has stride 2 while the running size is below the target resolution
  and stride 1 once the size has reached it, so surplus layers are stride-1 layers **at the end**
  (e.g. 8 -> 16 -> 32 -> 64 -> 64 for four layers at resolution 64);
* ``Conv2d(C_last, 4, 1)``: RGB (no output activation) and an alpha logit; alphas are
  softmaxed over slots and the frame is ``sum_slots rgb * alpha``.

Loss: ``F.mse_loss(recon, video)`` on [-1, 1] frames (weight 1). Segmentation: argmax over
slots of the alpha masks, at full resolution.

Reference MOVi-D/E config at 128x128: 4,853,892 parameters (trunk 4,238,016, decoder 615,876).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from .common import SoftPositionEmbed, at_least_float32, deconv_out_size
from .trunk import SlotTrunk

__all__ = ["SpatialBroadcastDecoder", "SAVi", "decoder_strides"]


def decoder_strides(
    num_layers: int, broadcast_resolution: int, resolution: int, kernel_size: int
) -> list[int]:
    """Strides of the transposed convs under the reference rule (see the module docstring).

    Raises:
        ValueError: if the stack does not end exactly at ``resolution``.
    """
    if kernel_size < 1:
        raise ValueError(f"decoder kernel_size must be >= 1, got {kernel_size}")
    if broadcast_resolution < 1:
        raise ValueError(f"decoder broadcast_resolution must be >= 1, got {broadcast_resolution}")
    size = broadcast_resolution
    strides = []
    for _ in range(num_layers):
        stride = 1 if size == resolution else 2
        strides.append(stride)
        size = deconv_out_size(size, kernel_size, stride, kernel_size // 2, stride - 1)
    if size != resolution:
        raise ValueError(
            f"decoder with {num_layers} transposed convs (kernel {kernel_size}) maps the "
            f"broadcast size {broadcast_resolution} to {size}, not the resolution {resolution}; "
            f"change decoder.broadcast_resolution or the number of decoder.channels"
        )
    return strides


class SpatialBroadcastDecoder(nn.Module):
    """Spatial-broadcast decoder producing per-slot RGB and alpha masks.

    Args:
        slot_size: ``D``; must equal ``channels[0]``.
        channels: ``[D, c_1, ..., c_L]``: input channels then each transposed conv's output.
        broadcast_resolution: ``r``.
        kernel_size: ``k``.
        resolution: output size ``H = W``.

    Shapes: ``forward``: slots ``[B, N, D]`` -> ``recon [B, 3, H, W]``,
    ``recons [B, N, 3, H, W]``, ``masks [B, N, 1, H, W]`` (softmax over N).
    """

    def __init__(
        self,
        slot_size: int,
        channels: Sequence[int],
        broadcast_resolution: int,
        kernel_size: int,
        resolution: int,
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 1 or channels[0] != slot_size:
            raise ValueError(
                f"decoder.channels must start with slot_size ({slot_size}), got {channels}"
            )
        if any(c < 1 for c in channels):
            raise ValueError(f"decoder.channels must be positive, got {channels}")
        self.slot_size = int(slot_size)
        self.resolution = int(resolution)
        self.broadcast_resolution = int(broadcast_resolution)
        self.strides = decoder_strides(
            len(channels) - 1, self.broadcast_resolution, self.resolution, int(kernel_size)
        )
        self.pos_embedding = SoftPositionEmbed(self.slot_size, self.broadcast_resolution)
        layers: list[nn.Module] = []
        for cin, cout, stride in zip(channels[:-1], channels[1:], self.strides):
            layers += [
                nn.ConvTranspose2d(
                    cin,
                    cout,
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                    output_padding=stride - 1,
                ),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(channels[-1], 4, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = slots.shape
        r = self.broadcast_resolution
        x = repeat(slots, "b n d -> (b n) d h w", h=r, w=r)
        x = self.net(self.pos_embedding(x))  # [(B N), 4, H, W]
        x = rearrange(x, "(b n) c h w -> b n c h w", b=b, n=n)
        recons, alpha_logits = x[:, :, :3], x[:, :, 3:]
        # float32 under autocast (as CUDA's autocast computes a softmax): the masks and their mixture
        masks = at_least_float32(alpha_logits).softmax(dim=1)
        recon = (at_least_float32(recons) * masks).sum(dim=1)
        return recon, recons, masks


class SAVi(nn.Module):
    """SAVi: slot trunk + spatial-broadcast decoder.

    Args:
        cfg: model config dict (see ``slotbench.models``; ``name`` must be ``"savi"``).
        resolution: frame size ``H = W``.

    Attributes:
        trunk: the shared :class:`SlotTrunk`.
        decoder: the :class:`SpatialBroadcastDecoder`.
    """

    def __init__(self, cfg: dict, resolution: int):
        super().__init__()
        self.cfg = cfg
        self.resolution = int(resolution)
        self.trunk = SlotTrunk(cfg, resolution)
        dec = cfg["decoder"]
        self.decoder = SpatialBroadcastDecoder(
            slot_size=self.trunk.slot_size,
            channels=dec["channels"],
            broadcast_resolution=int(dec["broadcast_resolution"]),
            kernel_size=int(dec["kernel_size"]),
            resolution=self.resolution,
        )

    @property
    def num_slots(self) -> int:
        return self.trunk.num_slots

    @property
    def feature_resolution(self) -> tuple[int, int]:
        return self.trunk.feature_resolution

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The spatial-broadcast decoder's parameters: the second Adam group when ``decoder_lr``
        is set (the reference trains SAVi with one group, ``decoder_lr: null``)."""
        return list(self.decoder.parameters())

    def decode(self, slots: Tensor) -> dict[str, Tensor]:
        """Decode slots ``[B, T, N, D]`` into ``recon [B, T, 3, H, W]``,
        ``recons [B, T, N, 3, H, W]`` and ``masks [B, T, N, 1, H, W]``."""
        b, t = slots.shape[:2]
        recon, recons, masks = self.decoder(rearrange(slots, "b t n d -> (b t) n d"))
        unflat = "(b t) ... -> b t ..."
        return {
            "recon": rearrange(recon, unflat, b=b, t=t),
            "recons": rearrange(recons, unflat, b=b, t=t),
            "masks": rearrange(masks, unflat, b=b, t=t),
        }

    @torch.no_grad()
    def decode_slots(self, slots: Tensor, sampler: str = "dpm++", steps: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """Frames ``[B, T, 3, H, W]`` (not clamped) from slots ``[B, T, N, D]``: the alpha-composited
        mixture of the decoder (deterministic; the sampling arguments of the interface are unused)."""
        return self.decode(slots)["recon"]

    def decoder_record(self, sampler: str, steps: int | None) -> dict:
        """What decodes the frames, for the evaluation records."""
        return {"decoder": "spatial broadcast, alpha-composited recon"}

    def forward(self, video: Tensor, init_slots: Tensor | None = None) -> dict[str, Tensor]:
        """Encode and reconstruct a clip.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            init_slots: optional ``[B, N, D]`` frame-0 slots (see :meth:`SlotTrunk.encode`).

        Returns:
            dict with ``slots [B, T, N, D]``, ``recon [B, T, 3, H, W]``,
            ``recons [B, T, N, 3, H, W]``, ``masks [B, T, N, 1, H, W]`` and
            ``attn [B, T, N, h*w]`` (detached).
        """
        slots, attn = self.trunk.encode(video, init_slots)
        out = self.decode(slots)
        out["slots"] = slots
        out["attn"] = attn
        return out

    def loss(self, video: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """``img_recon_loss = mse(recon, video)`` (mean, [-1, 1] space); ``loss`` = total."""
        img_recon_loss = F.mse_loss(out["recon"], video)
        return {"loss": img_recon_loss, "img_recon_loss": img_recon_loss}

    @torch.no_grad()
    def segment(self, video: Tensor, chunk_len: int) -> Tensor:
        """Reference SAVi segmentation: argmax over slots of the decoder alpha masks.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            chunk_len: frames encoded / decoded at once; slots are carried across chunks
                through the predictor, so the result does not depend on it. Call ``eval()``
                first (dropout in the predictor).

        Returns:
            ``LongTensor [B, T, H, W]`` of slot ids in ``[0, N)``.
        """
        slots, _ = self.trunk.encode_chunked(video, chunk_len)
        segs = []
        for start in range(0, slots.shape[1], chunk_len):
            masks = self.decode(slots[:, start : start + chunk_len])["masks"]
            segs.append(masks[:, :, :, 0].argmax(dim=2))
        return torch.cat(segs, dim=1)


#: The class ``models.MODELS`` builds for ``model.name: savi``.
SLOT_MODEL = SAVi
