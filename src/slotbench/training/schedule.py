"""The original's learning-rate schedule: linear warm-up from ``min`` to ``max``, then half-cosine to ``min``.

Stateless: the rate of every step is a function of the step alone, so resuming needs no
scheduler state. Matches nerv's ``CosineAnnealingWarmupRestarts`` stepped once per batch
(step 0 runs at ``min``; ``W = warmup_pct * total`` may be fractional).
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, warmup_pct: float, max_lr: float, min_lr: float) -> float:
    """Learning rate for the optimizer update of global step ``step`` (0-based)."""
    warmup = warmup_pct * total_steps
    if step < warmup:
        return min_lr + (max_lr - min_lr) * step / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1e-12)
    return min_lr + (max_lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0))) / 2.0


def apply_lr(optimizer: torch.optim.Optimizer, step: int, total_steps: int, warmup_pct: float) -> list[float]:
    """Set every parameter group's rate for ``step`` from its ``max_lr`` / ``min_lr`` entries; return them."""
    rates = []
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, total_steps, warmup_pct, group["max_lr"], group["min_lr"])
        rates.append(group["lr"])
    return rates
