"""Speed switches of the training step that leave the computed function unchanged (``runtime`` params).

* ``runtime.channels_last`` (``auto`` | ``true`` | ``false``): convolution weights, and so the
  activations they produce, in NHWC memory order. ``auto`` turns it on on CUDA, where cuDNN's
  NHWC kernels are faster (tensor cores), and off on CPU, where it measured slower in
  ``bench/suite.py``.
* ``runtime.compile`` (``false`` | ``true``): :func:`torch.compile` of the loss step (forward and
  loss, and through AOTAutograd the backward). Compiling costs minutes on a CPU and did not pay off
  there (``bench/suite.py``); it is meant for long GPU runs. The compiled step is tried once on a
  zero batch of the training shape, forward and backward, before training starts; if compiling
  fails (no C++ compiler, an unsupported operator, an old GPU), training goes on with the eager
  step and a warning saying why, so the run never dies of an optimisation.

Neither switch is part of any stage's params fingerprint: they change the speed, not the result
(``tests/test_fast_path.py`` checks the same loss and gradients within float32 round-off).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn


def channels_last_enabled(setting: str | bool, device: torch.device) -> bool:
    """Resolve ``runtime.channels_last`` (``"auto"``: on CUDA only)."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer (convolution weights) in channels-last order, in place."""
    return model.to(memory_format=torch.channels_last)


def compiled_step(step: nn.Module, example: Tensor) -> tuple[Callable[[Tensor], dict], str]:
    """``torch.compile(step)`` if one forward + backward on ``example`` compiles and runs, else ``step``.

    Args:
        step: the loss step (``video [B, T, 3, H, W] -> {"loss", ...}``), DDP-wrapped or not.
        example: a batch of the training shape; only its shape, dtype and device matter.
    Returns:
        the callable to train with, and ``"compiled"`` or ``"eager (compile failed: <why>)"``.
        Gradients left by the trial are cleared, so the first real step starts from none.
    """
    compiled = torch.compile(step)
    try:
        compiled(example)["loss"].backward()
    except Exception as err:  # noqa: BLE001 -- any compile failure falls back to the eager step
        why = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
        warnings.warn(f"runtime.compile: torch.compile failed ({why}); training runs eagerly", stacklevel=2)
        return step, f"eager (compile failed: {why})"
    finally:
        step.zero_grad(set_to_none=True)
    return compiled, "compiled"
