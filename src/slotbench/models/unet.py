"""The slot-conditioned U-Net of SlotDiffusion's latent diffusion decoder (an LDM ``UNetModel``).

Layout (reference MOVi config, latent ``[B, 3, 32, 32]``, slots ``[B, 15, 192]``):

* **time embedding**: sinusoidal features of dimension ``model_channels`` (``[cos, sin]``, cos
  first, frequencies ``exp(-ln(1e4) * i / (model_channels / 2))``), then
  ``Linear(mc, 4 mc) -> SiLU -> Linear(4 mc, 4 mc)``;
* **ResBlock(in, out)**: ``GN32 -> SiLU -> conv3x3``; ``+ Linear(SiLU(emb))`` broadcast over
  space (plain addition, no scale-shift); ``GN32 -> SiLU -> Dropout -> conv3x3`` (zero-init);
  skip is the identity, or a 1x1 conv when ``in != out``. ``GN32`` is GroupNorm(32, eps 1e-5)
  computed in float32;
* **SpatialTransformer(C)** with ``C / num_head_channels`` heads: ``GroupNorm(32, eps 1e-6) ->
  conv1x1 proj_in -> [B, HW, C] -> transformer_depth x BasicTransformerBlock -> conv1x1
  proj_out`` (zero-init) + residual. The block is pre-LN: ``x += SelfAttn(LN1 x)``,
  ``x += CrossAttn(LN2 x, context)``, ``x += GEGLU-FF(LN3 x)``; q/k/v are bias-free, ``to_out``
  has a bias, the FF is ``Linear(C, 8C) -> x * GELU(gate) -> Linear(4C, C)``. The transformer
  dropout is 0 (the U-Net ``dropout`` only reaches the ResBlocks). Attention goes through
  :func:`torch.nn.functional.scaled_dot_product_attention` (scale ``d_head ** -0.5``);
* input blocks: ``conv3x3(in, mc)``, then per level ``num_res_blocks`` x (ResBlock [+ ST]) and a
  stride-2 conv3x3 ``Downsample`` between levels; middle ``ResBlock, ST, ResBlock``; output
  blocks: per level (deepest first) ``num_res_blocks + 1`` x (concat skip -> ResBlock [+ ST]),
  the last one of each level but the top followed by ``Upsample`` (nearest x2, conv3x3);
  out ``GN32 -> SiLU -> conv3x3(mc, out)`` (zero-init). A SpatialTransformer follows a ResBlock
  iff the level's down-sampling factor ``2**level`` is in ``attention_resolutions``.

Module and parameter names follow the original (``time_embed``, ``input_blocks``,
``middle_block``, ``output_blocks``, ``out``, ``in_layers`` / ``emb_layers`` / ``out_layers`` /
``skip_connection``, ``transformer_blocks.0.attn1.to_q`` ...), so the original U-Net state dict
(prefix ``dm_decoder.model.diffusion_model.``) maps key for key.

Reference count (in/out channels 3, context 192, config :data:`REFERENCE_UNET`): 134,243,331 =
time_embed 328,704 + input blocks 40,031,616 + middle 15,418,880 + output blocks 78,460,416 +
out 3,715.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "REFERENCE_UNET",
    "BasicTransformerBlock",
    "CrossAttention",
    "GroupNorm32",
    "ResBlock",
    "SpatialTransformer",
    "UNet",
    "timestep_embedding",
]

REFERENCE_UNET = dict(
    model_channels=128,
    channel_mult=[1, 2, 3, 4],
    num_res_blocks=2,
    attention_resolutions=[8, 4, 2],
    num_head_channels=32,
    transformer_depth=1,
    dropout=0.1,
)
"""The MOVi U-Net config of SlotDiffusion (``configs/savi_ldm/savi_ldm_movie_params-res128.py``)."""

_GROUPS = 32


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal time features ``[B, dim]``: ``[cos(t f_i), sin(t f_i)]`` (cos first).

    Args:
        t: ``[B]`` time steps, integer or real-valued (DPM-Solver feeds e.g. 949.05).
        dim: feature size; an odd ``dim`` gets one trailing zero.
        max_period: ``f_i = max_period ** (-i / (dim // 2))``.

    Returns:
        float32 ``[B, dim]``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in float32 and cast back (the U-Net's ResBlock / output norm)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


class TimestepEmbedSequential(nn.Sequential):
    """A sequence of U-Net layers; passes ``emb`` to ResBlocks and ``context`` to transformers."""

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class ResBlock(nn.Module):
    """ResBlock with an additive time embedding (see the module docstring).

    Parameters: ``9 in out + 9 out^2 + 2 in + (emb + 5) out`` plus ``in out + out`` when
    ``in != out``.
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int):
        super().__init__()
        self.channels = int(channels)
        self.out_channels = int(out_channels)
        self.in_layers = nn.Sequential(
            GroupNorm32(_GROUPS, channels),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(_GROUPS, out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    """Multi-head (cross-)attention: bias-free q/k/v, ``to_out`` Linear with bias (+ Dropout).

    ``forward(x [B, L, C], context [B, M, D] | None)``; ``context=None`` is self-attention.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = int(heads)
        self.dim_head = int(dim_head)
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        split = "b n (h d) -> b h n d"
        q = rearrange(self.to_q(x), split, h=self.heads)
        k = rearrange(self.to_k(context), split, h=self.heads)
        v = rearrange(self.to_v(context), split, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class GEGLU(nn.Module):
    """``Linear(dim_in, 2 dim_out)`` split into ``x, gate``; returns ``x * GELU(gate)``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> 4 dim -> dim`` (``net = [GEGLU, Dropout, Linear]``)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: self-attention, cross-attention on ``context``, GEGLU feed-forward."""

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: int | None):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=n_heads, dim_head=d_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim=context_dim, heads=n_heads, dim_head=d_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """``GN(32, eps 1e-6) -> proj_in -> blocks on [B, HW, C] -> proj_out`` (zero-init) + input.

    Parameters (depth 1, ``heads * d_head = C``): ``20 C^2 + (21 + 2 context_dim) C``.
    """

    def __init__(
        self, channels: int, n_heads: int, d_head: int, depth: int, context_dim: int | None
    ):
        super().__init__()
        inner = n_heads * d_head
        self.norm = nn.GroupNorm(_GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, n_heads, d_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = _zero(nn.Conv2d(inner, channels, 1))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        _, _, h, w = x.shape
        y = self.proj_in(self.norm(x))
        y = rearrange(y, "b c h w -> b (h w) c")
        for block in self.transformer_blocks:
            y = block(y, context)
        y = rearrange(y, "b (h w) c -> b c h w", h=h, w=w)
        return self.proj_out(y) + x


class Downsample(nn.Module):
    """Stride-2 conv3x3, padding 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _int_list(values: Sequence[int], name: str) -> list[int]:
    out = [int(v) for v in values]
    if not out or any(v < 1 for v in out):
        raise ValueError(f"unet.{name} must be a non-empty list of positive ints, got {values}")
    return out


class UNet(nn.Module):
    """The LDM U-Net with slot cross-attention.

    Args:
        cfg: dict with keys ``model_channels``, ``channel_mult``, ``num_res_blocks``,
            ``attention_resolutions`` (down-sampling factors ``2**level`` that get a
            SpatialTransformer), ``num_head_channels``, ``transformer_depth``, ``dropout``.
        in_channels, out_channels: latent channels (3 for the reference VQ-VAE).
        context_dim: size of the conditioning tokens (the slot size).

    Shapes:
        ``forward(x [B, C_in, h, w], t [B] (int or float), context [B, N, context_dim])``
        -> ``[B, C_out, h, w]``; ``h`` and ``w`` must be divisible by ``2 ** (levels - 1)``.

    Raises:
        ValueError: a config whose channel counts are not multiples of 32 (GroupNorm groups) or
            of ``num_head_channels``.
    """

    def __init__(self, cfg: dict, in_channels: int, out_channels: int, context_dim: int):
        super().__init__()
        mc = int(cfg["model_channels"])
        mults = _int_list(cfg["channel_mult"], "channel_mult")
        nrb = int(cfg["num_res_blocks"])
        attn_res = {int(a) for a in cfg["attention_resolutions"]}
        head_ch = int(cfg["num_head_channels"])
        depth = int(cfg["transformer_depth"])
        dropout = float(cfg["dropout"])
        if mc < 1 or nrb < 1 or head_ch < 1 or depth < 1:
            raise ValueError(
                "unet.model_channels, num_res_blocks, num_head_channels and transformer_depth "
                "must be >= 1"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"unet.dropout must be in [0, 1), got {dropout}")
        for level, m in enumerate(mults):
            if (mc * m) % _GROUPS:
                raise ValueError(
                    f"unet channels {mc * m} (model_channels {mc} x mult {m}) are not a "
                    f"multiple of the {_GROUPS} GroupNorm groups"
                )
            if 2**level in attn_res and (mc * m) % head_ch:
                raise ValueError(
                    f"unet channels {mc * m} are not divisible by num_head_channels {head_ch}"
                )
        self.model_channels = mc
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.context_dim = int(context_dim)
        self.num_levels = len(mults)
        emb_dim = 4 * mc

        def transformer(ch: int) -> SpatialTransformer:
            return SpatialTransformer(ch, ch // head_ch, head_ch, depth, self.context_dim)

        self.time_embed = nn.Sequential(
            nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, mc, 3, padding=1))]
        )
        skip_chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(mults):
            for _ in range(nrb):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, dropout, mult * mc)]
                ch = mult * mc
                if ds in attn_res:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mults) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, dropout, ch), transformer(ch), ResBlock(ch, emb_dim, dropout, ch)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(nrb + 1):
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, dropout, mc * mult)]
                ch = mc * mult
                if ds in attn_res:
                    layers.append(transformer(ch))
                if level and i == nrb:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(_GROUPS, ch),
            nn.SiLU(),
            _zero(nn.Conv2d(mc, out_channels, 3, padding=1)),
        )

    def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
        """Predict the noise ``eps [B, C_out, h, w]`` of ``x`` at time ``t`` given ``context``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, h, w], got {list(x.shape)}")
        factor = 2 ** (self.num_levels - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"latent size {tuple(x.shape[-2:])} is not divisible by the U-Net's "
                f"down-sampling factor {factor}"
            )
        if context.dim() != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must be [B, N, {self.context_dim}], got {list(context.shape)}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(x.dtype))
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)
