"""Checkpoints: written atomically, loaded without executing code, and turned back into models.

Every stage that reads a checkpoint goes through this module: training (resume, the frozen
tokenizer), evaluation and the report (:func:`load_trained`, :func:`restore_model`), the import
of the original's checkpoints.

Scratch checkpoints live in the run's ``_work/`` folder (not a pipeline output, so Snakemake
and DVC leave them in place when a stage re-runs). Each carries the fingerprint of the
parameters it was trained with; a checkpoint of other parameters is never resumed from.

Every checkpoint (scratch ones and the final ``model.pt``) embeds :data:`DIGEST_KEY`, a SHA-256
over its content (:func:`content_digest`: every tensor's dtype, shape and bytes, every other
value, in key order); :func:`load` recomputes it and refuses a file whose content differs (a
bit flip inside a tensor that still unpickles) or that carries none, naming the file. A
truncated file fails to unpickle and is refused the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

import torch
from torch import nn

from .config import frame_size
from .data.dataset import check_compatible
from .io import atomic_path
from .models import build_model, build_tokenizer, with_later_model_keys
from .runtime import select_device

_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")
KEEP = 2
#: The key of the embedded content digest.
DIGEST_KEY = "content_sha256"


class CorruptCheckpointError(ValueError):
    """A checkpoint whose content does not match its embedded digest (or that has none)."""


def _feed(digest, obj) -> None:
    """Feed a canonical encoding of ``obj`` (tensors, containers, scalars) into ``digest``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(b"D%d" % len(obj))
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update((b"L" if isinstance(obj, list) else b"U") + b"%d" % len(obj))
        for item in obj:
            _feed(digest, item)
    elif isinstance(obj, float):
        digest.update(b"F" + struct.pack("<d", obj))
    else:  # None, bool, int, str, torch.dtype, ...
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(state: dict) -> str:
    """SHA-256 of a checkpoint's content, :data:`DIGEST_KEY` left out."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def save(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` with the embedded content digest, to a temporary file, then rename into place."""
    state = {**{k: v for k, v in state.items() if k != DIGEST_KEY}, DIGEST_KEY: content_digest(state)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only) and check
    its embedded content digest.

    Raises:
        ValueError: the file cannot be unpickled (truncated, not a checkpoint, or it would need
            code to run); :class:`CorruptCheckpointError`: its content differs from its digest.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise ValueError(f"{path}: cannot be loaded as a slotbench checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        raise CorruptCheckpointError(
            f"{path}: no embedded {DIGEST_KEY}: not written by this version of slotbench; re-run the stage that "
            f"writes it (or import an original checkpoint with `slotbench import-original`)")
    if content_digest(state) != state[DIGEST_KEY]:
        raise CorruptCheckpointError(
            f"{path}: content does not match its embedded SHA-256 (the file is corrupt); refusing to use it; "
            f"re-run the stage that writes it")
    return state


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
    are skipped with a warning. Checkpoints of another fingerprint (other parameters, code or
    data) are deleted: they can never be resumed and would otherwise be mistaken for the newest
    ones later.
    """
    for path in reversed(scratch_checkpoints(work_dir)):
        try:
            state = load(path)
        except ValueError as err:
            print(f"warning: skipping {err}")
            continue
        if state.get("fingerprint") == fingerprint:
            return state
        print(f"note: {path} was written with other parameters, code or data; removing old checkpoints, "
              f"starting from scratch")
        for stale in scratch_checkpoints(work_dir):
            stale.unlink(missing_ok=True)
        return None
    return None


def load_frozen_tokenizer(path: str | Path) -> tuple[nn.Module, dict]:
    """The trained tokenizer of a ``tokenizer`` stage checkpoint, and its config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer checkpoint not found; it is made by the `tokenizer` stage")
    state = load(path)
    if state.get("kind") != "tokenizer":
        raise ValueError(f"{path}: not a tokenizer checkpoint")
    tokenizer = build_tokenizer(state["config"]["tokenizer"])
    tokenizer.load_state_dict(state["model"])
    return tokenizer, state["config"]["tokenizer"]


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
    state = load(checkpoint_path)
    if run is not None:
        check_run(state, checkpoint_path, run)
    cfg = state["config"]
    check_compatible(data_root, frame_size(cfg["dataset"]), cfg["dataset"]["video_len"])
    device = select_device(runtime_cfg)
    return state, restore_model(state).to(device).eval(), device


def build_model_of(state: dict) -> nn.Module:
    """The slot model a ``model.pt``'s configs describe, freshly initialised (its weights not loaded);
    files written before the newer model keys existed build too (:func:`with_later_model_keys`)."""
    cfg = state["config"]
    tokenizer = build_tokenizer(state["tokenizer_config"]) if state.get("tokenizer_config") else None
    return build_model(with_later_model_keys(cfg["model"]), frame_size(cfg["dataset"]), tokenizer=tokenizer)


def restore_model(state: dict) -> nn.Module:
    """Rebuild a trained slot model from its ``model.pt`` (tokenizer weights included)."""
    model = build_model_of(state)
    model.load_state_dict(state["model"])
    return model
