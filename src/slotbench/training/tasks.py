"""What a training run optimises: a slot model (SAVi / STEVE / SlotDiffusion) or a tokenizer.

:func:`build_training_model` returns a module with the trainer's interface,
``forward(video [B, T, 3, H, W]) -> out`` and ``loss(video, out) -> {"loss", ...}``, plus the
extra checkpoint entries the evaluation needs to rebuild it (:func:`slotbench.checkpoint.restore_model`).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .. import checkpoint
from ..config import frame_size
from ..models import build_model, build_tokenizer
from ..models.dvae import gumbel_tau


class FrameTokenizer(nn.Module):
    """Train a tokenizer (images ``[B, 3, H, W]``) on single-frame clips ``[B, 1, 3, H, W]``.

    For the dVAE, :meth:`set_step` anneals the Gumbel temperature with the reference schedule.
    """

    def __init__(self, tokenizer: nn.Module, cfg: dict):
        super().__init__()
        self.tokenizer, self.cfg = tokenizer, cfg
        self.tau = cfg["gumbel"]["init_tau"] if cfg["name"] == "dvae" else None

    def set_step(self, step: int, total_steps: int) -> dict[str, float]:
        if self.tau is None:
            return {}
        g = self.cfg["gumbel"]
        self.tau = gumbel_tau(step, total_steps, g["init_tau"], g["final_tau"], g["decay_pct"])
        return {"train/gumbel_tau": self.tau}

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        frames = video.flatten(0, 1)
        return self.tokenizer(frames) if self.tau is None else self.tokenizer(frames, self.tau)

    def loss(self, video: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.tokenizer.loss(video.flatten(0, 1), out)


def _perceptual(cfg: dict) -> tuple[nn.Module | None, str]:
    """The LPIPS network for a VQ-VAE whose ``percept_loss_w`` is positive (weights from local files)."""
    if cfg["name"] != "vqvae" or cfg["percept_loss_w"] == 0:
        return None, "off (tokenizer.percept_loss_w: 0)" if cfg["name"] == "vqvae" else "n/a"
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
    if cfg["model"]["name"] != "savi":
        if tokenizer_checkpoint is None:
            raise ValueError(f"{cfg['model']['name']} needs the checkpoint of its `tokenizer` stage")
        tokenizer, tok_cfg = checkpoint.load_frozen_tokenizer(tokenizer_checkpoint)
    model = build_model(cfg["model"], frame_size(cfg["dataset"]), tokenizer=tokenizer)
    return model, {"kind": "slot_model", "tokenizer_config": tok_cfg}


def exported_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weights ``model.pt`` holds: the tokenizer itself for a tokenizer run."""
    return (model.tokenizer if isinstance(model, FrameTokenizer) else model).state_dict()


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

