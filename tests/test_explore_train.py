"""bench/explore_train.py: the v-prediction loss and the He-normal encoder initialisation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
explore = pytest.importorskip("explore_train")

from slotbench.models.diffusion import DiffusionSchedule, diffusion_loss  # noqa: E402
from slotbench.models.encoders import CNNEncoder  # noqa: E402


def schedule() -> DiffusionSchedule:
    return DiffusionSchedule.from_config({"timesteps": 1000, "beta_schedule": "linear",
                                          "linear_start": 0.0015, "linear_end": 0.0195})


def test_v_loss_is_zero_for_the_exact_v_and_draws_t_and_noise_as_the_noise_loss():
    sched, x0 = schedule(), torch.randn(4, 3, 8, 8)
    seen = {}

    def exact_v(x_t, t):
        seen["t"] = t
        abar = sched.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        # x_t = sqrt(abar) x0 + sqrt(1 - abar) eps  =>  eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0

    torch.manual_seed(0)
    assert explore.v_prediction_loss(exact_v, x0, sched).item() == pytest.approx(0, abs=1e-8)
    t_v = seen["t"]
    torch.manual_seed(0)
    diffusion_loss(lambda x, t: seen.update(t=t) or x, x0, sched)
    assert torch.equal(t_v, seen["t"])


def test_he_init_keeps_the_signal_where_the_default_shrinks_it():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    default = CNNEncoder([32, 32, 32, 32], 1, [1, 1, 1, 1])
    he = CNNEncoder([32, 32, 32, 32], 1, [1, 1, 1, 1])
    explore.he_initialise(he)
    with torch.no_grad():
        s_default, s_he = default(x).std().item(), he(x).std().item()
    assert s_he > 10 * s_default
    assert all(torch.count_nonzero(m.bias) == 0 for m in he.modules() if isinstance(m, torch.nn.Conv2d))


def test_apply_patches_only_what_is_asked(monkeypatch):
    import slotbench.models.encoders as encoders
    import slotbench.models.slotdiffusion as sd

    monkeypatch.setattr(sd, "diffusion_loss", sd.diffusion_loss)
    monkeypatch.setattr(encoders.CNNEncoder, "__init__", encoders.CNNEncoder.__init__)
    explore.apply(v_prediction=True, he_encoder_init=False)
    assert sd.diffusion_loss is explore.v_prediction_loss
    assert encoders.CNNEncoder.__init__ is not explore._he_cnn_init
    explore.apply(v_prediction=False, he_encoder_init=True)
    assert encoders.CNNEncoder.__init__ is explore._he_cnn_init
