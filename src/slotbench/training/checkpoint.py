"""Resumable training checkpoints, written atomically and loaded without executing code.

Scratch checkpoints live in the run's ``_work/`` folder (not a pipeline output, so Snakemake
and DVC leave them in place when a stage re-runs). Each carries the fingerprint of the
parameters it was trained with; a checkpoint of other parameters is never resumed from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..io import atomic_path

_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")
KEEP = 2


def save(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` to a temporary file, then rename into place."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise ValueError(f"{path}: cannot be loaded as a slotbench checkpoint ({type(err).__name__}: {err})") from err


def save_scratch(work_dir: str | os.PathLike, step: int, state: dict) -> Path:
    """Write ``_work/ckpt_{step}.pt`` and prune all but the newest :data:`KEEP`."""
    work_dir = Path(work_dir)
    path = work_dir / f"ckpt_{step:08d}.pt"
    save(path, state)
    for old in scratch_checkpoints(work_dir)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def scratch_checkpoints(work_dir: str | os.PathLike) -> list[Path]:
    """Scratch checkpoints of a run, oldest first."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    return sorted(p for p in work_dir.iterdir() if _NAME.match(p.name))


def latest_resumable(work_dir: str | os.PathLike, fingerprint: str) -> dict | None:
    """The newest loadable scratch checkpoint written with ``fingerprint``, or ``None``.

    Unreadable files (e.g. from a crash during a save on a filesystem without atomic rename)
    are skipped with a warning. Checkpoints of other parameters are deleted: they can never be
    resumed and would otherwise be mistaken for the newest ones later.
    """
    for path in reversed(scratch_checkpoints(work_dir)):
        try:
            state = load(path)
        except ValueError as err:
            print(f"warning: skipping {err}")
            continue
        if state.get("fingerprint") == fingerprint:
            return state
        print(f"note: {path} was written with other parameters; removing old checkpoints, starting from scratch")
        for stale in scratch_checkpoints(work_dir):
            stale.unlink(missing_ok=True)
        return None
    return None
