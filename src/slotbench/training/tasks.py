"""What a training run optimises: a slot model (SAVi / STEVE / SlotDiffusion) or a tokenizer.

:func:`build_training_model` returns a module with the trainer's interface,
``forward(video [B, T, 3, H, W]) -> out`` and ``loss(video, out) -> {"loss", ...}``, plus the
extra checkpoint entries the evaluation needs to rebuild it (:func:`restore_model`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import frame_size
from ..data.dataset import check_compatible
from ..models import build_model, build_tokenizer
from ..models.dvae import gumbel_tau
from ..runtime import select_device
from . import checkpoint


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


def load_frozen_tokenizer(path: str | Path) -> tuple[nn.Module, dict]:
    """The trained tokenizer of a ``tokenizer`` stage checkpoint, and its config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer checkpoint not found; it is made by the `tokenizer` stage")
    state = checkpoint.load(path)
    if state.get("kind") != "tokenizer":
        raise ValueError(f"{path}: not a tokenizer checkpoint")
    tokenizer = build_tokenizer(state["config"]["tokenizer"])
    tokenizer.load_state_dict(state["model"])
    return tokenizer, state["config"]["tokenizer"]


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
        tokenizer, tok_cfg = load_frozen_tokenizer(tokenizer_checkpoint)
    model = build_model(cfg["model"], frame_size(cfg["dataset"]), tokenizer=tokenizer)
    return model, {"kind": "slot_model", "tokenizer_config": tok_cfg}


def exported_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weights ``model.pt`` holds: the tokenizer itself for a tokenizer run."""
    return (model.tokenizer if isinstance(model, FrameTokenizer) else model).state_dict()


def with_later_model_keys(model_cfg: dict) -> dict:
    """A copy of a ``model.pt``'s model config with the keys added since such files were first
    written (``encoder_fourier_octaves``; SAVi's ``decoder.fourier_octaves``) set to 0 where absent:
    the value that rebuilds the model an older file holds. Newer configs come back unchanged."""
    cfg = copy.deepcopy(model_cfg)
    cfg.setdefault("encoder_fourier_octaves", 0)
    if cfg["name"] == "savi":
        cfg["decoder"].setdefault("fourier_octaves", 0)
    return cfg


def check_run(state: dict, path: str | Path, run: dict) -> None:
    """Refuse a ``model.pt`` of another dataset, model or seed than the run it is evaluated as
    (``run``: ``{"dataset", "model", "seed"}``), e.g. a file copied or imported into the wrong
    results folder. An imported original checkpoint has no seed and fits any."""
    cfg = state["config"]
    found = {"dataset": cfg["dataset"]["name"], "model": cfg["model"]["name"], "seed": state.get("seed")}
    wrong = [f"{key} {found[key]!r}, not {value!r}" for key, value in run.items()
             if found[key] != value and not (key == "seed" and found[key] is None)]
    if wrong:
        raise ValueError(f"{path}: this checkpoint is of {', '.join(wrong)}; it is in the wrong run folder")


def load_trained(checkpoint_path: str | Path, data_root: str | Path, runtime_cfg: dict,
                 run: dict | None = None) -> tuple[dict, nn.Module, torch.device]:
    """What every evaluation stage starts with: the ``model.pt`` at ``checkpoint_path`` (refused by
    :func:`check_run` when ``run`` is given), checked against the data at ``data_root`` (resolution,
    frames), and its model rebuilt on the ``runtime`` device in ``eval()`` mode.

    Returns:
        ``(state, model, device)``.
    """
    state = checkpoint.load(checkpoint_path)
    if run is not None:
        check_run(state, checkpoint_path, run)
    cfg = state["config"]
    check_compatible(data_root, frame_size(cfg["dataset"]), cfg["dataset"]["video_len"])
    device = select_device(runtime_cfg)
    return state, restore_model(state).to(device).eval(), device


def restore_model(state: dict) -> nn.Module:
    """Rebuild a trained slot model from its ``model.pt`` (tokenizer weights included); files
    written before the newer model keys existed load too (:func:`with_later_model_keys`)."""
    cfg = state["config"]
    tokenizer = build_tokenizer(state["tokenizer_config"]) if state.get("tokenizer_config") else None
    model = build_model(with_later_model_keys(cfg["model"]), frame_size(cfg["dataset"]), tokenizer=tokenizer)
    model.load_state_dict(state["model"])
    return model


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

