"""Models of slotbench, built from the plain config dicts of ``params/`` (schema:
:mod:`slotbench.config.definitions`).

* slot models (``build_model``): ``savi`` (spatial-broadcast decoder), ``steve`` (autoregressive
  transformer over dVAE tokens) and ``slotdiffusion`` (latent diffusion over VQ-VAE latents);
  all three share :class:`~slotbench.models.trunk.SlotTrunk`;
* tokenizers (``build_tokenizer``): ``dvae`` (STEVE's) and ``vqvae`` (SlotDiffusion's).

Every slot model is a :class:`SlotModel`: what training and evaluation call, so that no code
outside this package needs to know which model it holds.
"""

from __future__ import annotations

import copy
import importlib
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config.definitions import MODEL as MODEL_SCHEMA
from ..config.definitions import TOKENIZER as TOKENIZER_SCHEMA
from .dvae import DVAE
from .frame_tokenizer import FrameTokenizer
from .savi import SAVi
from .slotdiffusion import SlotDiffusion
from .steve import STEVE
from .trunk import SlotTrunk
from .vqvae import VQVAE

__all__ = ["build_model", "build_tokenizer", "SAVi", "STEVE", "SlotDiffusion", "DVAE", "VQVAE", "SlotTrunk",
           "SlotModel", "FrameTokenizer", "with_later_model_keys", "MODELS", "MODEL_NAMES", "TOKENIZER_NAMES",
           "MODEL_TOKENIZER"]



@runtime_checkable
class SlotModel(Protocol):
    """The interface of SAVi, STEVE and SlotDiffusion (``video``: ``[B, T, 3, H, W]`` in [-1, 1]).

    * ``forward(video)`` -> a dict with ``slots [B, T, N, D]`` and the model's own outputs;
      ``loss(video, out)`` -> a dict with the scalar ``loss`` (training);
    * ``segment(video, chunk_len)`` -> ids ``[B, T, H, W]``: the model's own segmentation protocol
      (SAVi the decoder's alpha masks, STEVE and SlotDiffusion Slot Attention's attention);
    * ``decode_slots(slots, sampler, steps, generator)`` -> frames ``[B, T, 3, H, W]``: reconstruction
      and compositional generation (the sampling arguments matter to SlotDiffusion only);
    * ``decoder_record(sampler, steps)`` -> what decodes, for the evaluation records.
    """

    def loss(self, video: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def segment(self, video: Tensor, chunk_len: int) -> Tensor: ...

    def decode_slots(self, slots: Tensor, sampler: str = "dpm++", steps: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor: ...

    def decoder_record(self, sampler: str, steps: int | None) -> dict: ...


def _slot_model_class(name: str) -> type[nn.Module]:
    module = importlib.import_module(f"{__name__}.{name}")
    if not hasattr(module, "SLOT_MODEL"):
        raise ImportError(f"{module.__name__} does not name its class: add `SLOT_MODEL = <class>` (docs/extending.md)")
    return module.SLOT_MODEL


#: Every slot model: its params name -> its class. A model is registered once, by its entry in the params
#: schema (``config.definitions.MODEL``); its class is ``SLOT_MODEL`` of ``models/<name>.py``, and takes
#: ``(model_cfg, resolution)``, plus the frozen tokenizer when its schema names one (docs/extending.md).
MODELS: dict[str, type[nn.Module]] = {name: _slot_model_class(name) for name in MODEL_SCHEMA.variants}
MODEL_NAMES = tuple(MODELS)
TOKENIZER_NAMES = tuple(TOKENIZER_SCHEMA.variants)
#: The tokenizer each two-step model is trained on (its schema's ``tokenizer`` choice).
MODEL_TOKENIZER = {name: variant["tokenizer"].choices[0] for name, variant in MODEL_SCHEMA.variants.items()
                   if "tokenizer" in variant}


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
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; available: {', '.join(MODEL_NAMES)}")
    cls, needs = MODELS[name], MODEL_TOKENIZER.get(name)
    if not needs:
        return cls(model_cfg, resolution)
    if tokenizer is None:
        raise ValueError(f"{name} needs a trained {needs} tokenizer (the `tokenizer` stage)")
    return cls(model_cfg, resolution, tokenizer)


#: Model keys that earlier versions had and this one no longer builds, with the one value this version
#: still matches (the reference's): a ``model.pt`` that set another value is refused, not rebuilt wrongly.
REMOVED_MODEL_KEYS = {"slot_init": "learned", "slot_bilevel": False, "encoder_fourier_octaves": 0,
                      "decoder.fourier_octaves": 0}


def with_later_model_keys(model_cfg: dict) -> dict:
    """A copy of a ``model.pt``'s model config in this version's terms: keys added since such files
    were first written set where absent to the value that rebuilds the model an older file holds
    (SlotDiffusion's ``decoder.diffusion.z_scale_factor``: 1.0), keys since removed dropped.

    Raises:
        ValueError: if the file set a removed key (:data:`REMOVED_MODEL_KEYS`) to another value than
            the one this version builds.
    """
    cfg = copy.deepcopy(model_cfg)
    for key, kept in REMOVED_MODEL_KEYS.items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node.get(part, {})
        if node.get(last, kept) != kept:
            raise ValueError(f"the model.pt was trained with model.{key}: {node[last]!r}, an option this version "
                             f"of slotbench no longer has (only {kept!r}); retrain it")
        node.pop(last, None)
    if cfg["name"] == "slotdiffusion":
        cfg["decoder"]["diffusion"].setdefault("z_scale_factor", 1.0)
    return cfg
