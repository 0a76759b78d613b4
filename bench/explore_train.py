"""`slotbench` with one or two exploratory changes that are not options of slotbench, to rerun the
experiments of docs/object_discovery.md that used them.

- ``--v-prediction``: SlotDiffusion's U-Net is trained to predict ``v = sqrt(abar_t) eps -
  sqrt(1 - abar_t) x0`` instead of the noise ``eps``. In terms of the clean latent, the noise loss
  weighs timestep ``t`` by its signal-to-noise ratio, so the noisy half of the schedule, where only the
  slots say what the latent holds, hardly counts; ``v`` weighs it by ``SNR + 1``. Training only: the
  samplers still read the output as noise, so a model trained this way is for segmentation (its
  attention masks), not for reconstruction or generation.
- ``--he-encoder-init``: the plain CNN encoder's convolutions start from He-normal weights (fan in,
  ReLU gain) and zero biases instead of PyTorch's default, which divides the signal's variance by about
  six per layer: with the `shapes` profile's four layers the encoder's output varies over the pixels 20-30
  times less than the position embedding added to it, so Slot Attention's keys start as positions
  (`bench/key_geometry.py`).

Usage: ``.venv/bin/python bench/explore_train.py [--v-prediction] [--he-encoder-init] -- train
--dataset shapes --model slotdiffusion ...`` (everything after ``--`` goes to ``slotbench``).
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import slotbench.models.slotdiffusion as slotdiffusion_module
from slotbench.models import encoders
from slotbench.models.diffusion import DiffusionSchedule, _extract

_reference_cnn_init = encoders.CNNEncoder.__init__


def v_prediction_loss(v_fn, x0: Tensor, schedule: DiffusionSchedule) -> Tensor:
    """``mse(v_fn(x_t, t), sqrt(abar_t) eps - sqrt(1 - abar_t) x0)``, with ``t`` and ``eps`` drawn as
    in :func:`slotbench.models.diffusion.diffusion_loss` (global torch RNG)."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0, memory_format=torch.contiguous_format)
    x_t = schedule.q_sample(x0, t, noise)
    v = (_extract(schedule.sqrt_alphas_cumprod, t, x0) * noise
         - _extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0)
    return F.mse_loss(v_fn(x_t, t), v)


def he_initialise(module: nn.Module) -> None:
    """He-normal (fan in, ReLU gain) weights and zero biases for every convolution of ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _he_cnn_init(self, *args, **kwargs) -> None:
    _reference_cnn_init(self, *args, **kwargs)
    he_initialise(self)


def apply(v_prediction: bool, he_encoder_init: bool) -> None:
    """Patch slotbench in this process (see the module docstring)."""
    if v_prediction:
        slotdiffusion_module.diffusion_loss = v_prediction_loss
    if he_encoder_init:
        encoders.CNNEncoder.__init__ = _he_cnn_init


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit("usage: explore_train.py [--v-prediction] [--he-encoder-init] -- <slotbench arguments>")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v-prediction", action="store_true")
    parser.add_argument("--he-encoder-init", action="store_true")
    args = parser.parse_args(argv[:cut])
    apply(args.v_prediction, args.he_encoder_init)
    from slotbench.cli import main as slotbench_main
    return slotbench_main(argv[cut + 1:])


if __name__ == "__main__":
    sys.exit(main())
