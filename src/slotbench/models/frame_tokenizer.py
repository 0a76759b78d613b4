"""A tokenizer (dVAE, VQ-VAE) as the training loop sees a model: clips in, single frames trained."""

from __future__ import annotations

from torch import Tensor, nn

from .dvae import gumbel_tau


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


def exported_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weights ``model.pt`` holds: the tokenizer itself for a tokenizer run."""
    return (model.tokenizer if isinstance(model, FrameTokenizer) else model).state_dict()
