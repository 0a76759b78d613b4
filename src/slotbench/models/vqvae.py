"""The VQ-VAE tokenizer of SlotDiffusion (taming-transformers / LDM autoencoder).

Layout (reference MOVi config, 128x128 input, ``channels 64``, ``channel_mult [1, 2, 4]``)::

    img [B, 3, 128, 128] in [-1, 1]
      encoder: conv_in 3->64
               level 0: 2 x ResnetBlock(64)            -> Downsample  [B, 64, 64, 64]
               level 1: ResnetBlock 64->128, RB(128)   -> Downsample  [B, 128, 32, 32]
               level 2: ResnetBlock 128->256, RB(256)  (last level: no downsample)
               mid: ResnetBlock, AttnBlock, ResnetBlock (always, whatever the levels)
               GroupNorm -> swish -> conv3x3 256->z_channels
      quant_conv 1x1 z_channels->embed_dim                -> z [B, 3, 32, 32]
      quantize: nearest codebook entry                     -> z_q, indices [B, 32, 32]
      post_quant_conv 1x1 embed_dim->z_channels
      decoder: conv_in z_channels->256, mid (RB, Attn, RB),
               per level from the deepest: (num_res_blocks + 1) ResnetBlocks, then Upsample
               (nearest x2 + conv3x3) except after level 0,
               GroupNorm -> swish -> conv3x3 64->3 (no tanh, no clamp) -> recon [B, 3, 128, 128]

Building blocks: ``GroupNorm(32, eps=1e-6, affine)``, swish ``x * sigmoid(x)``;
``ResnetBlock`` = GN, swish, conv3x3, GN, swish, Dropout, conv3x3 (+ 1x1 ``nin_shortcut`` when
the channels change), residual; ``AttnBlock`` = single-head self-attention over all positions
with 1x1-conv q/k/v/proj_out (bias), scale ``C^-0.5``, residual; ``Downsample`` = zero-pad right
and bottom by 1, conv3x3 stride 2 padding 0. No attention inside the levels (the reference's
``attn_resolutions`` is empty in every config). Initialisation is PyTorch's default, as the
reference. Submodule names follow the reference, so its checkpoints load after dropping the
``loss.`` keys (the LPIPS network it stored there).

Quantiser (reference ``VectorQuantizer2``, ``legacy=True``): codebook
``Embedding(n_embed, embed_dim)`` initialised uniform(-1/n_embed, 1/n_embed), squared-L2
distance ``|z|^2 + |e|^2 - 2 z.e``, argmin, straight-through ``z + sg(z_q - z)``; no EMA.
(Difference: the distances and the loss are computed in float32 even under autocast, so a bf16
run picks the same codes; the original ran them under fp16 autocast.) Its loss is the
**legacy** one::

    quant_loss = mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2)

i.e. ``beta`` weights the *codebook* term and the commitment term has weight 1: the known
taming-transformers bug, kept on purpose because the original trains with it.

Training loss (reference ``VQLPIPSLoss``):
``loss = recon_loss_w * recon + quant_loss_w * quant + percept_loss_w * percept`` where
``recon`` is the L1 mean when ``percept_loss_w > 0`` and the MSE otherwise, and ``percept`` is
the batch mean of LPIPS-VGG (v0.1) on the [-1, 1] images; no GAN.

The perceptual network is frozen and **not part of the VQ-VAE**: it is kept in a plain list
attribute, so it is not registered as a submodule: it is neither in ``parameters()`` (the
optimizer, gradient clipping and DDP never see it) nor in ``state_dict()`` (checkpoints hold
the 13.9M VQ-VAE parameters only). Two things still reach it, on purpose: ``.to()`` /
``.cuda()`` / ``.float()`` (``_apply``), so it follows the model's device and dtype, and
``train(mode)``, mirroring the original, whose LPIPS was a submodule of the model: the trainer's
``model.train()`` switched the Dropout(0.5) in front of LPIPS's linear heads on during VQ-VAE
training (it is off in eval mode, where the metric is computed).

Reference parameter count (MOVi config): 13,857,886 = encoder 5,594,051 + decoder 8,251,523 +
codebook 12,288 + quant_conv 12 + post_quant_conv 12. It does not depend on the resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "VQVAE",
    "VectorQuantizer",
    "VQEncoder",
    "VQDecoder",
    "ResnetBlock",
    "AttnBlock",
    "Downsample",
    "Upsample",
    "VQVAE_KEYS",
]

#: Keys a ``name: vqvae`` model config must hold (others are ignored).
VQVAE_KEYS = (
    "channels",
    "channel_mult",
    "num_res_blocks",
    "z_channels",
    "embed_dim",
    "n_embed",
    "dropout",
    "beta",
    "recon_loss_w",
    "quant_loss_w",
    "percept_loss_w",
)

GN_GROUPS = 32
GN_EPS = 1e-6


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=GN_GROUPS, num_channels=channels, eps=GN_EPS, affine=True)


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> Dropout -> conv3x3, plus the (1x1-projected
    when ``in_channels != out_channels``) input. ``[B, Cin, H, W] -> [B, Cout, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.norm1 = _norm(self.in_channels)
        self.conv1 = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1)
        self.norm2 = _norm(self.out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)
        if self.in_channels != self.out_channels:
            self.nin_shortcut = nn.Conv2d(self.in_channels, self.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H*W`` positions, 1x1-conv q/k/v/proj_out with
    bias, scale ``C^-0.5``, residual. ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)
        self.norm = _norm(self.channels)
        self.q = nn.Conv2d(self.channels, self.channels, 1)
        self.k = nn.Conv2d(self.channels, self.channels, 1)
        self.v = nn.Conv2d(self.channels, self.channels, 1)
        self.proj_out = nn.Conv2d(self.channels, self.channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h_ = self.norm(x)
        _, c, h, w = x.shape
        q = rearrange(self.q(h_), "b c h w -> b (h w) c")
        k = rearrange(self.k(h_), "b c h w -> b c (h w)")
        v = rearrange(self.v(h_), "b c h w -> b (h w) c")
        attn = torch.softmax(torch.bmm(q, k) * (c**-0.5), dim=-1)  # [B, HW (query), HW (key)]
        out = rearrange(torch.bmm(attn, v), "b (h w) c -> b c h w", h=h, w=w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then conv3x3 stride 2 (no padding): ``H -> H/2``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3: ``H -> 2H``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def _run_mid(mid: nn.Module, h: Tensor) -> Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class VQEncoder(nn.Module):
    """``[B, 3, H, W] -> [B, z_channels, H/f, W/f]`` with ``f = 2**(len(channel_mult) - 1)``
    (``quant_conv`` is not part of it; see :class:`VQVAE`)."""

    def __init__(
        self,
        channels: int,
        channel_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        dropout: float,
        in_channels: int = 3,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = channels
        for level, mult in enumerate(channel_mult):
            block_out = channels * mult
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
            if level != len(channel_mult) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _mid(block_in, dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(_swish(self.norm_out(h)))


class VQDecoder(nn.Module):
    """``[B, z_channels, h, w] -> [B, 3, h*f, w*f]``, ``num_res_blocks + 1`` ResnetBlocks per
    level (``post_quant_conv`` is not part of it; see :class:`VQVAE`). ``up[i]`` is level ``i``
    (run from the deepest level to level 0), as in the reference."""

    def __init__(
        self,
        channels: int,
        channel_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        dropout: float,
        out_channels: int = 3,
    ):
        super().__init__()
        block_in = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, dropout)
        up: list[nn.Module] = []
        for level in reversed(range(len(channel_mult))):
            block_out = channels * channel_mult[level]
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
            if level != 0:
                stage.upsample = Upsample(block_in)
            up.insert(0, stage)
        self.up = nn.ModuleList(up)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = _run_mid(self.mid, self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantiser with the straight-through estimator and the legacy loss.

    Args:
        n_embed: codebook size ``K``.
        embed_dim: code dimension ``C``.
        beta: weight of the **codebook** term (legacy taming behaviour, see the module
            docstring); the commitment term has weight 1.

    Shapes: ``forward``: ``z [B, C, h, w]`` -> ``z_q [B, C, h, w]`` (straight-through: its
    value is the code, its gradient w.r.t. ``z`` the identity), scalar ``loss``,
    ``indices [B, h, w]`` (long).
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float):
        super().__init__()
        self.n_embed = int(n_embed)
        self.embed_dim = int(embed_dim)
        self.beta = float(beta)
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / self.n_embed, 1.0 / self.n_embed)

    def nearest(self, z: Tensor) -> Tensor:
        """Indices ``[B, h, w]`` of the nearest codes (squared L2, argmin) for ``z [B, C, h, w]``.

        Computed in at least the codebook's precision with autocast off: a bf16 matmul would
        pick wrong codes (the original ran this product under fp16 autocast).
        """
        b, _, h, w = z.shape
        codes = self.embedding.weight
        dtype = torch.promote_types(z.dtype, codes.dtype)
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z, "b c h w -> (b h w) c").to(dtype)
            codes = codes.to(dtype)
            dist = (
                flat.pow(2).sum(dim=1, keepdim=True)
                + codes.pow(2).sum(dim=1)
                - 2.0 * flat @ codes.t()
            )  # [BHW, K]
        return dist.argmin(dim=1).view(b, h, w)

    def lookup(self, indices: Tensor) -> Tensor:
        """Codes ``[B, C, h, w]`` of ``indices [B, h, w]``."""
        return rearrange(self.embedding(indices), "b h w c -> b c h w")

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if z.ndim != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(
                f"quantize expects z of shape [B, {self.embed_dim}, h, w], got {tuple(z.shape)}"
            )
        z = z.to(torch.promote_types(z.dtype, self.embedding.weight.dtype))  # no bf16 codes
        indices = self.nearest(z)
        z_q = self.lookup(indices).to(z.dtype)
        # legacy (taming) loss: beta on the codebook term, weight 1 on the commitment term
        loss = torch.mean((z_q.detach() - z) ** 2) + self.beta * torch.mean((z_q - z.detach()) ** 2)
        z_q = z + (z_q - z).detach()  # straight-through
        return z_q, loss, indices


class VQVAE(nn.Module):
    """SlotDiffusion's VQ-VAE tokenizer (see the module docstring).

    Args:
        cfg: model config dict with ``name: vqvae`` and the keys of :data:`VQVAE_KEYS`::

                name: vqvae
                channels: 64            # base channels (a multiple of 32: GroupNorm(32))
                channel_mult: [1, 2, 4] # down-sampling factor 2**(len - 1) = 4
                num_res_blocks: 2       # encoder; the decoder uses num_res_blocks + 1
                z_channels: 3
                embed_dim: 3
                n_embed: 4096
                dropout: 0.0
                beta: 0.25              # codebook-term weight (legacy quantiser loss)
                recon_loss_w: 1.0
                quant_loss_w: 1.0
                percept_loss_w: 1.0     # > 0: L1 + LPIPS; 0: MSE and no LPIPS

        perceptual: the frozen LPIPS network (``slotbench.metrics.lpips.LPIPS``), or ``None``.
            Needed by :meth:`loss` when ``percept_loss_w > 0``. Not registered (see the module
            docstring): not in ``parameters()``/``state_dict()``; follows ``.to()`` and
            ``train()``.

    Raises:
        ValueError: a missing key, a wrong name or an impossible value.
    """

    def __init__(self, cfg: dict, perceptual: nn.Module | None = None):
        super().__init__()
        if cfg.get("name", "vqvae") != "vqvae":
            raise ValueError(f"VQVAE needs a config with name 'vqvae', got {cfg.get('name')!r}")
        missing = [k for k in VQVAE_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"vqvae config lacks the key(s) {', '.join(missing)}")
        self.cfg = cfg
        channels = int(cfg["channels"])
        channel_mult = [int(m) for m in cfg["channel_mult"]]
        num_res_blocks = int(cfg["num_res_blocks"])
        z_channels = int(cfg["z_channels"])
        self.embed_dim = int(cfg["embed_dim"])
        self.n_embed = int(cfg["n_embed"])
        dropout = float(cfg["dropout"])
        if not channel_mult or any(m < 1 for m in channel_mult):
            raise ValueError(f"vqvae channel_mult must be a non-empty list of >= 1, got {channel_mult}")
        if channels < 1 or channels % GN_GROUPS != 0:
            raise ValueError(
                f"vqvae channels must be a positive multiple of {GN_GROUPS} (GroupNorm with "
                f"{GN_GROUPS} groups), got {channels}"
            )
        if num_res_blocks < 1 or z_channels < 1 or self.embed_dim < 1 or self.n_embed < 1:
            raise ValueError("vqvae num_res_blocks, z_channels, embed_dim and n_embed must be >= 1")
        self.recon_loss_w = float(cfg["recon_loss_w"])
        self.quant_loss_w = float(cfg["quant_loss_w"])
        self.percept_loss_w = float(cfg["percept_loss_w"])
        if min(self.recon_loss_w, self.quant_loss_w, self.percept_loss_w) < 0:
            raise ValueError("vqvae loss weights must be >= 0")

        self.encoder = VQEncoder(channels, channel_mult, num_res_blocks, z_channels, dropout)
        self.decoder = VQDecoder(channels, channel_mult, num_res_blocks, z_channels, dropout)
        self.quantize = VectorQuantizer(self.n_embed, self.embed_dim, float(cfg["beta"]))
        self.quant_conv = nn.Conv2d(z_channels, self.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.embed_dim, z_channels, 1)
        self._channel_mult = channel_mult
        # A plain list, so that nn.Module does not register the network (see the docstring).
        self._perceptual: list[nn.Module] = []
        self.set_perceptual(perceptual)

    # ------------------------------------------------------------------ perceptual network
    @property
    def perceptual(self) -> nn.Module | None:
        """The (unregistered, frozen) LPIPS network, or ``None``. Assigning to it calls
        :meth:`set_perceptual`."""
        return self._perceptual[0] if self._perceptual else None

    def set_perceptual(self, module: nn.Module | None) -> None:
        """Attach (or with ``None`` detach) the perceptual network, frozen and unregistered."""
        self._perceptual.clear()
        if module is not None:
            for p in module.parameters():
                p.requires_grad_(False)
            module.train(self.training)
            self._perceptual.append(module)

    def __setattr__(self, name: str, value) -> None:
        if name == "perceptual":  # nn.Module would otherwise register a module value
            self.set_perceptual(value)
        else:
            super().__setattr__(name, value)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.perceptual is not None:
            self.perceptual._apply(fn, *args, **kwargs)
        return self

    @property
    def needs_perceptual(self) -> bool:
        """True when :meth:`loss` needs an LPIPS network (``percept_loss_w > 0``)."""
        return self.percept_loss_w > 0

    def train(self, mode: bool = True) -> VQVAE:
        super().train(mode)
        if self.perceptual is not None:
            self.perceptual.train(mode)  # as the original (see the module docstring)
        return self

    # ------------------------------------------------------------------ model
    @property
    def down_factor(self) -> int:
        """Spatial down-sampling factor of the latent: ``2 ** (len(channel_mult) - 1)``."""
        return 2 ** (len(self._channel_mult) - 1)

    def _check_img(self, img: Tensor) -> None:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"VQVAE expects images [B, 3, H, W], got {tuple(img.shape)}")
        f = self.down_factor
        if img.shape[-1] % f or img.shape[-2] % f:
            raise ValueError(
                f"VQVAE image size {tuple(img.shape[-2:])} is not divisible by the "
                f"down-sampling factor {f}"
            )

    def encode(self, img: Tensor) -> Tensor:
        """Pre-quantisation latent ``z [B, embed_dim, H/f, W/f]`` (after ``quant_conv``) of
        ``img [B, 3, H, W]`` in [-1, 1]: SlotDiffusion's diffusion target."""
        self._check_img(img)
        return self.quant_conv(self.encoder(img))

    def decode(self, z_q: Tensor) -> Tensor:
        """Image ``[B, 3, h*f, w*f]`` (not clamped) from a (quantised) latent ``[B, embed_dim, h, w]``."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Image from code indices ``[B, h, w]``."""
        return self.decode(self.quantize.lookup(indices))

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        """``img [B, 3, H, W]`` in [-1, 1] -> dict with ``recon [B, 3, H, W]``,
        ``z [B, embed_dim, h, w]`` (pre-quantisation), ``quant_loss`` (scalar) and
        ``indices [B, h, w]``."""
        z = self.encode(img)
        z_q, quant_loss, indices = self.quantize(z)
        return {"recon": self.decode(z_q), "z": z, "quant_loss": quant_loss, "indices": indices}

    def loss(self, img: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weighted training loss of :meth:`forward`'s ``out`` for ``img`` (see the docstring).

        Returns:
            dict with ``loss`` (weighted total), ``recon_loss``, ``quant_loss``,
            ``percept_loss`` (0 when ``percept_loss_w == 0``).

        Raises:
            ValueError: ``percept_loss_w > 0`` and no perceptual network was given.
        """
        recon = out["recon"]
        quant_loss = out["quant_loss"]
        if self.percept_loss_w > 0:
            lpips = self.perceptual
            if lpips is None:
                raise ValueError(
                    f"the VQ-VAE loss has percept_loss_w = {self.percept_loss_w} but no LPIPS "
                    "network was given: build it with slotbench.metrics.lpips.LPIPS."
                    "from_pretrained() (needs the VGG16 and LPIPS head weights) and pass it as "
                    "`perceptual`, or set percept_loss_w: 0 explicitly in the model config "
                    "(the loss then becomes MSE without a perceptual term)"
                )
            recon_loss = (img - recon).abs().mean()
            percept_loss = lpips(img, recon).mean()
        else:
            recon_loss = F.mse_loss(recon, img)
            percept_loss = torch.zeros((), dtype=recon_loss.dtype, device=recon_loss.device)
        total = (
            self.recon_loss_w * recon_loss
            + self.quant_loss_w * quant_loss
            + self.percept_loss_w * percept_loss
        )
        return {
            "loss": total,
            "recon_loss": recon_loss,
            "quant_loss": quant_loss,
            "percept_loss": percept_loss,
        }
