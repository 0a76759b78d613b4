"""Device selection, CPU threads and mixed precision, from the ``runtime`` and ``train`` params."""

from __future__ import annotations

import contextlib

import torch


class DeviceError(RuntimeError):
    """The configuration asks for a device this machine does not have."""


def select_device(runtime: dict) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if runtime["threads"]:
        torch.set_num_threads(runtime["threads"])
    wanted = runtime["device"]
    if wanted == "cuda" and not torch.cuda.is_available():
        raise DeviceError("runtime.device is 'cuda' but no CUDA GPU is visible; set runtime.device: auto or cpu")
    if wanted == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast(device: torch.device, amp: str, cpu_amp: str = "off") -> contextlib.AbstractContextManager:
    """Autocast by ``train.amp`` (``off`` / ``bf16`` / ``fp16``) on CUDA and ``train.cpu_amp`` (``off`` /
    ``bf16``) on a CPU; a no-op where the setting is ``off``."""
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_amp == "bf16" else contextlib.nullcontext()
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def effective_amp(device: torch.device, train_cfg: dict) -> str:
    """The autocast dtype a training on ``device`` runs with (``train.amp`` on CUDA, ``train.cpu_amp`` on a CPU)."""
    return train_cfg["amp"] if device.type == "cuda" else train_cfg["cpu_amp"]
