"""What a training run optimises: a slot model (SAVi / STEVE / SlotDiffusion) or a tokenizer.

:func:`build_training_model` returns a module with the trainer's interface,
``forward(video [B, T, 3, H, W]) -> out`` and ``loss(video, out) -> {"loss", ...}``, plus the
extra checkpoint entries the evaluation needs to rebuild it (:func:`slotbench.checkpoint.restore_model`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .. import checkpoint
from ..config import frame_size
from ..models import MODEL_TOKENIZER, build_model, build_tokenizer
from ..models.frame_tokenizer import FrameTokenizer


def _perceptual(cfg: dict) -> tuple[nn.Module | None, str]:
    """The LPIPS network for a VQ-VAE whose ``percept_loss_w`` is positive (weights from local files)."""
    if "percept_loss_w" not in cfg:  # a tokenizer without a perceptual loss (the dVAE)
        return None, "n/a"
    if cfg["percept_loss_w"] == 0:
        return None, "off (tokenizer.percept_loss_w: 0)"
    from ..metrics.lpips import LPIPS

    return LPIPS.from_pretrained(), "lpips-vgg"


def build_training_model(cfg: dict, tokenizer_checkpoint: str | Path | None) -> tuple[nn.Module, dict]:
    """The module to train for ``cfg`` and the extra entries its ``model.pt`` must carry.

    Args:
        cfg: a resolved slot-model config (``model`` section) or tokenizer config (``tokenizer``).
        tokenizer_checkpoint: the trained tokenizer, for STEVE and SlotDiffusion.
    """
    if "tokenizer" in cfg:
        perceptual, percept_note = _perceptual(cfg["tokenizer"])
        model = FrameTokenizer(build_tokenizer(cfg["tokenizer"], perceptual), cfg["tokenizer"])
        return model, {"kind": "tokenizer", "perceptual_loss": percept_note}
    tokenizer, tok_cfg = (None, None)
    if cfg["model"]["name"] in MODEL_TOKENIZER:  # STEVE, SlotDiffusion
        if tokenizer_checkpoint is None:
            raise ValueError(f"{cfg['model']['name']} needs the checkpoint of its `tokenizer` stage")
        tokenizer, tok_cfg = checkpoint.load_frozen_tokenizer(tokenizer_checkpoint)
    model = build_model(cfg["model"], frame_size(cfg["dataset"]), tokenizer=tokenizer)
    return model, {"kind": "slot_model", "tokenizer_config": tok_cfg}


def param_groups(model: nn.Module, train_cfg: dict) -> list[dict]:
    """Adam groups with their schedule bounds: one group, or (rest, decoder) when ``decoder_lr`` is set.

    The decoder group (SAVi's spatial-broadcast decoder, STEVE's ``trans_decoder``,
    SlotDiffusion's U-Net) scales ``min_lr`` by ``decoder_lr / lr`` so both groups end the cosine
    at the same fraction of their peak. A ``decoder_lr`` for a model without a decoder group (a
    tokenizer) is an error, not silently ignored.
    """
    lr, min_lr, dec_lr = train_cfg["lr"], train_cfg["min_lr"], train_cfg["decoder_lr"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if dec_lr is None:
        return [{"params": trainable, "max_lr": lr, "min_lr": min_lr}]
    if not hasattr(model, "decoder_parameters"):
        raise ValueError(f"train.decoder_lr is {dec_lr}, but {type(model).__name__} has no separate decoder "
                         "parameter group; set train.decoder_lr: null")
    decoder = [p for p in model.decoder_parameters() if p.requires_grad]
    decoder_ids = {id(p) for p in decoder}
    rest = [p for p in trainable if id(p) not in decoder_ids]
    dec_min = min_lr * dec_lr / lr if lr > 0 else 0.0
    return [{"params": rest, "max_lr": lr, "min_lr": min_lr}, {"params": decoder, "max_lr": dec_lr, "min_lr": dec_min}]

