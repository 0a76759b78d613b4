"""The learning-rate schedule of the original trainer."""

from __future__ import annotations

import math

import pytest
import torch

from slotbench.training.schedule import apply_lr, lr_at


def test_warmup_then_cosine():
    total, pct, hi, lo = 1000, 0.025, 1e-4, 1e-6
    warmup = pct * total  # 25 steps
    assert lr_at(0, total, pct, hi, lo) == lo  # step 0 runs at min_lr, as nerv
    assert lr_at(10, total, pct, hi, lo) == pytest.approx(lo + (hi - lo) * 10 / warmup)
    assert lr_at(25, total, pct, hi, lo) == pytest.approx(hi)
    mid = 25 + (total - 25) / 2
    one_plus_cos = 1 + math.cos(math.pi * (int(mid) - 25) / 975)
    assert lr_at(int(mid), total, pct, hi, lo) == pytest.approx(lo + (hi - lo) * one_plus_cos / 2)
    assert lr_at(total, total, pct, hi, lo) == pytest.approx(lo)
    rates = [lr_at(k, total, pct, hi, lo) for k in range(total)]
    assert max(rates) == pytest.approx(hi) and min(rates) == lo
    assert all(a <= b for a, b in zip(rates[:25], rates[1:26]))
    assert all(a >= b for a, b in zip(rates[25:], rates[26:]))


def test_fractional_warmup_and_groups():
    # W = 0.05 * 30 = 1.5 steps: step 1 is still warming up
    assert lr_at(1, 30, 0.05, 1.0, 0.0) == pytest.approx(1 / 1.5)
    opt = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)], "max_lr": 1e-4, "min_lr": 0.0},
                            {"params": [torch.zeros(1, requires_grad=True)], "max_lr": 3e-4, "min_lr": 0.0}])
    rates = apply_lr(opt, 50, 100, 0.05)
    assert rates[1] == pytest.approx(3 * rates[0]) and opt.param_groups[1]["lr"] == rates[1]
