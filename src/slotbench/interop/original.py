"""Import a checkpoint of the original implementation (Wuziyi616/SlotDiffusion, trainer nerv).

The original trainer writes two kinds of file (its ``checkpoint/<config>/models/``):

* a full training checkpoint ``model_{it}.pth``: a dict with ``state_dict`` (the model),
  ``opt_state_dict``, ``it``, ``epoch``, ``best_metric_dict`` and, depending on the run,
  ``scheduler_state_dict``, ``scheduler_method``, ``grad_scaler`` and sampler positions;
* a bare state dict (``epoch/model_{epoch}.pth``, ``best.pth`` and the released
  ``pretrained/*.pth`` files).

Both are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
file that needs code execution to load is refused (:class:`OriginalCheckpointError`). Every
tensor is then placed by :mod:`slotbench.interop.original_keys` and checked in both directions:
no original tensor is left unused and no slotbench parameter is left unset. The result is a
``model.pt`` in the format the ``tokenizer`` and ``train`` stages write, with an ``origin``
record of the source file.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import __version__, checkpoint
from ..config import fingerprint, frame_size, resolve, resolve_tokenizer, stage_params
from ..io import sha256_file
from ..models import build_model, build_tokenizer
from ..models.diffusion import DiffusionSchedule
from .original_keys import EMBEDDED_TOKENIZER, NETWORKS, target

TOKENIZERS = ("dvae", "vqvae")
SOURCE = "Wuziyi616/SlotDiffusion (trainer: Wuziyi616/nerv)"


class OriginalCheckpointError(ValueError):
    """An original checkpoint that cannot be imported; the message names the file and the tensor."""


def load_original(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """The model tensors of an original checkpoint and what the file says about itself.

    Returns:
        ``(state, info)``: the state dict (name -> tensor) and ``{"format": "nerv training
        checkpoint" | "state dict", "iteration": int | None, "epoch": int | None}``.
    Raises:
        OriginalCheckpointError: unreadable file, a pickle that would execute code, or content
            that is neither a state dict nor a training checkpoint holding one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: original checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise OriginalCheckpointError(
            f"{path}: refused: loading it would execute code or import objects other than tensors and plain "
            f"containers (torch.load weights_only=True says: {str(err).splitlines()[0]}). Re-save the weights "
            f"with torch.save(model.state_dict(), ...) in a trusted environment.") from err
    except Exception as err:  # noqa: BLE001 - any other failure means an unusable file
        raise OriginalCheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from err
    info = {"format": "state dict", "iteration": None, "epoch": None}
    if isinstance(obj, dict) and "state_dict" in obj:
        info = {"format": "nerv training checkpoint", "iteration": obj.get("it"), "epoch": obj.get("epoch")}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise OriginalCheckpointError(f"{path}: expected a state dict or a nerv checkpoint with 'state_dict'")
    for name, value in obj.items():
        if not isinstance(value, Tensor):
            raise OriginalCheckpointError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return obj, info


def schedule_constants(schedule: DiffusionSchedule) -> dict[str, Tensor]:
    """The original ``dm_decoder`` schedule buffers (float64 ``[T]``), from slotbench's schedule."""
    abar = schedule.alphas_cumprod
    return {
        "betas": schedule.betas,
        "alphas_bar": abar,
        "alphas_bar_prev": schedule.alphas_cumprod_prev,
        "sqrt_alphas_bar": schedule.sqrt_alphas_cumprod,
        "sqrt_one_minus_alphas_bar": schedule.sqrt_one_minus_alphas_cumprod,
        "log_one_minus_alphas_bar": (1.0 - abar).log(),
        "sqrt_recip_alphas_bar": (1.0 / abar).sqrt(),
        "sqrt_recipm1_alphas_bar": (1.0 / abar - 1.0).sqrt(),
        "posterior_variance": schedule.posterior_variance,
        "posterior_log_variance_clipped": schedule.posterior_log_variance_clipped,
        "posterior_mean_coef1": schedule.posterior_mean_coef1,
        "posterior_mean_coef2": schedule.posterior_mean_coef2,
    }


def _shape(t: Tensor) -> list[int]:
    return list(t.shape)


def _check_constant(name: str, stored: Tensor, expected: Tensor, what: str) -> None:
    """An original constant must equal the one slotbench computes (float32 storage: rtol 1e-5)."""
    if stored.shape != expected.shape:
        raise OriginalCheckpointError(
            f"original tensor {name!r} has shape {_shape(stored)} but slotbench's {what} has shape "
            f"{_shape(expected)}: the checkpoint was made for another configuration (resolution, length)")
    same = (torch.equal(stored.bool(), expected.bool()) if expected.dtype == torch.bool
            else torch.allclose(stored.double(), expected.double(), rtol=1e-5, atol=1e-7))
    if not same:
        raise OriginalCheckpointError(
            f"original tensor {name!r} differs from slotbench's {what} (same shape {_shape(stored)}): "
            f"the checkpoint was made with other constants than these params describe")


def convert_state(network: str, original: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], dict]:
    """Map an original state dict onto ``model`` (a slotbench ``network`` built from the params).

    Returns:
        the slotbench state dict (every entry of ``model.state_dict()``, dtypes of ``model``)
        and counts ``{"copied", "checked_constants", "dropped"}``.
    Raises:
        OriginalCheckpointError: naming the first original tensor without a slotbench place,
            the first shape mismatch (both shapes) or the first slotbench entry left unset.
    """
    expected = model.state_dict()
    buffers = dict(model.named_buffers())
    schedule = schedule_constants(model.schedule) if hasattr(model, "schedule") else {}
    out: dict[str, Tensor] = {}
    counts = {"copied": 0, "checked_constants": 0, "dropped": 0}
    for name, tensor in original.items():
        tgt = target(network, name)
        if tgt is None:
            raise OriginalCheckpointError(
                f"original tensor {name!r} {_shape(tensor)} has no place in slotbench's {network} "
                f"(is this a {network} checkpoint?)")
        if tgt.kind == "dropped":
            counts["dropped"] += 1
        elif tgt.kind == "schedule":
            _check_constant(name, tensor, schedule[tgt.name], f"diffusion schedule ({tgt.name})")
            counts["checked_constants"] += 1
        elif tgt.kind == "buffer":
            if tgt.name not in buffers:
                raise OriginalCheckpointError(f"original tensor {name!r}: slotbench's {network} has no {tgt.name!r}")
            _check_constant(name, tensor, buffers[tgt.name], f"{tgt.name!r}")
            counts["checked_constants"] += 1
        else:
            if tgt.name not in expected:
                raise OriginalCheckpointError(
                    f"original tensor {name!r} {_shape(tensor)} maps to {tgt.name!r}, which slotbench's {network} "
                    f"built from these params does not have (another configuration?)")
            if tensor.shape != expected[tgt.name].shape:
                raise OriginalCheckpointError(
                    f"original tensor {name!r} has shape {_shape(tensor)} but slotbench's {tgt.name!r} has shape "
                    f"{_shape(expected[tgt.name])}: the params do not describe the checkpoint's configuration")
            if tgt.name in out:
                raise OriginalCheckpointError(f"original tensor {name!r} sets {tgt.name!r} a second time")
            out[tgt.name] = tensor.detach().to(expected[tgt.name].dtype).clone()
            counts["copied"] += 1
    missing = [k for k in expected if k not in out]
    if missing:
        raise OriginalCheckpointError(
            f"slotbench's {network} entry {missing[0]!r} {_shape(expected[missing[0]])} is not set by the "
            f"checkpoint ({len(missing)} unset in all)")
    return out, counts


def build_target(network: str, dataset: str, params_dir: str | Path) -> tuple[nn.Module, dict, dict]:
    """The slotbench module an original ``network`` checkpoint is imported into.

    Returns:
        ``(module, cfg, extra)``: the module built from the resolved params of
        ``(dataset, network)``, that configuration, and the extra ``model.pt`` entries of its
        stage (``kind``, and ``tokenizer_config`` for a slot model).
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; available: {', '.join(NETWORKS)}")
    if network in TOKENIZERS:
        cfg = resolve_tokenizer(dataset, network, params_dir)
        return build_tokenizer(cfg["tokenizer"]), cfg, {"kind": "tokenizer", "perceptual_loss": "n/a (imported)"}
    cfg = resolve(dataset, network, params_dir)
    tok_name = EMBEDDED_TOKENIZER.get(network)
    tok_cfg = resolve_tokenizer(dataset, tok_name, params_dir)["tokenizer"] if tok_name else None
    tokenizer = build_tokenizer(tok_cfg) if tok_cfg else None
    model = build_model(cfg["model"], frame_size(cfg["dataset"]), tokenizer=tokenizer)
    return model, cfg, {"kind": "slot_model", "tokenizer_config": tok_cfg}


def import_original(network: str, dataset: str, src: str | os.PathLike, out: str | os.PathLike,
                    params_dir: str | Path = "params") -> dict:
    """Convert the original checkpoint ``src`` of ``network`` into slotbench's ``model.pt`` at ``out``.

    The slotbench module is built from the params of ``(dataset, network)``, which must describe
    the checkpoint's configuration (the reference params of the MOVi datasets do). STEVE and
    SlotDiffusion checkpoints carry their tokenizer, which is imported with them.

    Returns:
        the ``origin`` record stored in the checkpoint (source file and digest, format,
        iteration, tensor counts) plus ``import_time_s``.
    """
    start = time.perf_counter()
    src = Path(src)
    original, info = load_original(src)
    model, cfg, extra = build_target(network, dataset, params_dir)
    try:
        state, counts = convert_state(network, original, model)
    except OriginalCheckpointError as err:
        raise OriginalCheckpointError(f"{src}: {err}") from err
    model.load_state_dict(state, strict=True)
    digest = sha256_file(src)
    origin = {"implementation": SOURCE, "network": network, "dataset": dataset, "path": str(src),
              "sha256": digest, **info, "tensors": counts, "slotbench_version": __version__}
    stage = "tokenizer" if network in TOKENIZERS else "train"
    checkpoint.save(out, {"model": state, "config": cfg, "seed": None, "step": info["iteration"],
                          "fingerprint": fingerprint({"params": stage_params(cfg, stage), "origin": digest}),
                          **extra, "origin": origin})
    return {**origin, "import_time_s": round(time.perf_counter() - start, 3)}
