"""Models of slotbench, built from the plain config dicts of ``params/`` (schema:
:mod:`slotbench.config.definitions`).

* slot models (``build_model``): ``savi`` (spatial-broadcast decoder), ``steve`` (autoregressive
  transformer over dVAE tokens) and ``slotdiffusion`` (latent diffusion over VQ-VAE latents);
  all three share :class:`~slotbench.models.trunk.SlotTrunk`;
* tokenizers (``build_tokenizer``): ``dvae`` (STEVE's) and ``vqvae`` (SlotDiffusion's).

Every slot model offers ``forward(video)``, ``loss(video, out)`` and ``segment(video, chunk_len)``
for ``video: [B, T, 3, H, W]`` in [-1, 1].
"""

from __future__ import annotations

from torch import nn

from .dvae import DVAE
from .savi import SAVi
from .slotdiffusion import SlotDiffusion
from .steve import STEVE
from .trunk import SlotTrunk
from .vqvae import VQVAE

__all__ = ["build_model", "build_tokenizer", "SAVi", "STEVE", "SlotDiffusion", "DVAE", "VQVAE", "SlotTrunk",
           "MODEL_NAMES", "TOKENIZER_NAMES", "MODEL_TOKENIZER"]

MODEL_NAMES = ("savi", "steve", "slotdiffusion")
TOKENIZER_NAMES = ("dvae", "vqvae")
#: The tokenizer each two-step model is trained on.
MODEL_TOKENIZER = {"steve": "dvae", "slotdiffusion": "vqvae"}


def build_tokenizer(cfg: dict, perceptual: nn.Module | None = None) -> nn.Module:
    """Build the tokenizer named by ``cfg["name"]``.

    Args:
        perceptual: the LPIPS network for VQ-VAE training (not needed to encode or decode).
    """
    name = cfg.get("name")
    if name == "dvae":
        return DVAE(cfg)
    if name == "vqvae":
        return VQVAE(cfg, perceptual)
    raise ValueError(f"unknown tokenizer name {name!r}; available: {', '.join(TOKENIZER_NAMES)}")


def build_model(model_cfg: dict, resolution: int, tokenizer: nn.Module | None = None) -> nn.Module:
    """Build the model named by ``model_cfg["name"]`` for ``resolution x resolution`` frames.

    Args:
        tokenizer: the trained, frozen tokenizer (required by ``steve`` and ``slotdiffusion``).
    """
    name = model_cfg.get("name")
    if name == "savi":
        return SAVi(model_cfg, resolution)
    if name in MODEL_TOKENIZER:
        if tokenizer is None:
            raise ValueError(f"{name} needs a trained {MODEL_TOKENIZER[name]} tokenizer (the `tokenizer` stage)")
        return (STEVE if name == "steve" else SlotDiffusion)(model_cfg, resolution, tokenizer)
    raise ValueError(f"unknown model name {name!r}; available: {', '.join(MODEL_NAMES)}")
