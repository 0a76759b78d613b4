"""Build networks of the original implementation from a local checkout, at run time.

Nothing of the original is stored in this project: the checkouts of Wuziyi616/SlotDiffusion and
of its trainer Wuziyi616/nerv are named by two environment variables and imported from there:

* ``SLOTDIFFUSION_REPO``: the SlotDiffusion checkout (holds ``slotdiffusion/video_based``);
* ``NERV_REPO``: the nerv checkout (holds the ``nerv`` package).

The original modules import packages that only its training loop, data loading and
visualisation use (wandb, OpenCV, moviepy, torchmetrics, torchvision, transformers). Those that
are not installed are replaced by empty placeholder modules before the import, so the network
classes load without them; calling anything of a placeholder fails loudly. ``torchvision``'s
VGG-16 is the one piece a network needs (the VQ-VAE's LPIPS loss, built by the ``lpips``
package): the placeholder returns slotbench's VGG-16 layer stack, which has torchvision's
layout, so the VQ-VAE's ``loss.perceptual_loss.*`` tensors have the original names and shapes.

:meth:`OriginalCode.trainer` builds the original's training method (``method.py``'s
``build_method``: nerv's ``BaseMethod`` subclass of the network) on the CPU (or a given
``device``, with the original's fp16 option), and
:func:`original_steps` runs optimizer steps with it, one batch each, through the method's own
step hooks: its loss weighting, optimizer groups, gradient clipping and learning-rate schedule.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

OPTIONAL = ("wandb", "cv2", "moviepy", "moviepy.editor", "torchmetrics", "torchmetrics.aggregation",
            "torchvision", "torchvision.ops", "torchvision.utils", "torchvision.transforms", "transformers")

#: slotbench dataset -> the infix of the original config files.
DATASET_INFIX = {"movi_d": "movid", "movi_e": "movie", "movi_solid": "movisolid", "movi_tex": "movitex"}

#: network -> original config file (``{d}``: dataset infix), under slotdiffusion/video_based/configs/.
CONFIG_FILE = {
    "savi": "savi/savi_{d}_params-res128.py",
    "dvae": "steve/dvae_{d}_params-res128.py",
    "steve": "steve/steve_{d}_params-res128.py",
    "vqvae": "savi_ldm/vqvae_{d}_params-res128.py",
    "slotdiffusion": "savi_ldm/savi_ldm_{d}_params-res128.py",
}


class _Placeholder(types.ModuleType):
    """A stand-in module: every attribute is an inert class (enough for imports and subclassing)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


def _vgg16(*args, **kwargs) -> types.SimpleNamespace:
    """torchvision's ``vgg16(...)`` as far as ``lpips`` uses it: an object with ``.features``."""
    from slotbench.metrics.lpips import _vgg16_features

    return types.SimpleNamespace(features=_vgg16_features())


def _install_placeholders() -> list[str]:
    """Placeholder modules for the optional packages that are missing; their names."""
    missing = []
    for name in OPTIONAL:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            module = _Placeholder(name)
            module.__path__ = []
            sys.modules[name] = module
            missing.append(name)
    if "torchvision" in missing:
        models = _Placeholder("torchvision.models")
        models.vgg16 = _vgg16
        sys.modules["torchvision.models"] = sys.modules["torchvision"].models = models
    return missing


#: the environment variables naming the two checkouts, and their folders under bench/scratch/original/
CHECKOUT_DIRS = {"SLOTDIFFUSION_REPO": "SlotDiffusion", "NERV_REPO": "nerv"}


def use_local_checkouts() -> str | None:
    """Point ``SLOTDIFFUSION_REPO`` / ``NERV_REPO`` at ``bench/scratch/original/*`` where unset and
    present there; why the original is not available when neither gives a folder, else ``None``."""
    scratch = Path(__file__).resolve().parent / "scratch" / "original"
    for variable, folder in CHECKOUT_DIRS.items():
        if not os.environ.get(variable) and (scratch / folder).is_dir():
            os.environ[variable] = str(scratch / folder)
    missing = [v for v in CHECKOUT_DIRS if not os.environ.get(v)]
    if missing:
        return (f"original: not available ({', '.join(missing)} unset and no checkout in bench/scratch/original/: "
                f"set them to checkouts of Wuziyi616/SlotDiffusion and Wuziyi616/nerv)")
    return None


def _checkout(variable: str, marker: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise SystemExit(f"set {variable} to a checkout of the original code (it must contain {marker})")
    path = Path(value).expanduser().resolve()
    if not (path / marker).exists():
        raise SystemExit(f"{variable}={path}: no {marker} there")
    return path


class OriginalCode:
    """The original package ``models`` (as its test scripts import it) and its config classes."""

    def __init__(self) -> None:
        self.repo = _checkout("SLOTDIFFUSION_REPO", "slotdiffusion/video_based/models/__init__.py")
        self.nerv = _checkout("NERV_REPO", "nerv/training/model.py")
        self.placeholders = _install_placeholders()
        sys.path[:0] = [str(self.repo / "slotdiffusion" / "video_based"), str(self.nerv)]
        self.models = importlib.import_module("models")
        self.lr = importlib.import_module("nerv.training.lr")

    def params(self, network: str, dataset: str, overrides: dict | None = None):
        """A fresh instance of the original config class (module loaded anew: the original
        pops keys from its class-level dicts while building), with ``overrides`` applied:
        ``{attribute: value}``, a dict value updates the attribute's dict key by key."""
        path = self.repo / "slotdiffusion" / "video_based" / "configs" / CONFIG_FILE[network].format(
            d=DATASET_INFIX[dataset])
        spec = importlib.util.spec_from_file_location(f"orig_cfg_{network}_{dataset}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        params = module.SlotAttentionParams()
        for key, value in (overrides or {}).items():
            if isinstance(value, dict):
                merged = copy.deepcopy(getattr(params, key))
                _deep_update(merged, value)
                value = merged
            setattr(params, key, value)
        return params

    def build(self, params) -> nn.Module:
        """The original ``build_model(params)``."""
        return self.models.build_model(params)

    def trainer(self, params, model: nn.Module, batches_per_epoch: int, ckp_dir: Path,
                device: str = "cpu", fp16: bool = False) -> nn.Module:
        """The original's training method of ``params.model`` around ``model`` (``method.build_method``).

        nerv's ``BaseMethod.__init__`` runs as in the original's ``scripts/train.py`` (one process,
        no DDP; ``fp16``: its ``--fp16``, autocast and a gradient scaler) except ``_init_env``, which
        asserts the GPU count of ``params``: :func:`_env_on` puts the model on ``device`` instead. So
        the clip value, the accumulation steps, the optimizer (param groups, rates) and the
        scheduler come from the original's ``_init_training`` / ``_configure_optimizers``; the
        schedule is ``params.max_epochs x batches_per_epoch`` steps long. ``ckp_dir``: where
        ``_init_training`` makes its (unused) checkpoint folders.
        """
        if str(self.repo) not in sys.path:
            sys.path.append(str(self.repo))  # method.py imports slotdiffusion.video_based.*
        method = importlib.import_module("method")
        base = importlib.import_module("nerv.training.method").BaseMethod
        data = types.SimpleNamespace(train_loader=_TrainLoader(batches_per_epoch), val_loader=None)
        with mock.patch.object(base, "_init_env", _env_on(torch.device(device))):
            return method.build_method(model=model, datamodule=data, params=params, ckp_path=str(ckp_dir),
                                       local_rank=0, use_ddp=False, use_fp16=fp16)


class _TrainLoader:
    """What nerv's method reads of its train loader: ``len()``, the batches per epoch."""

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return self.batches


class _Wrapped(nn.Module):
    """The role of nerv's ``DataParallel`` wrapper on one device: ``.module``, and calls pass through
    (parameter names get the same ``module.`` prefix)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _env_on(device: torch.device):
    """Stand-in for nerv's ``BaseMethod._init_env``: one process on ``device``, the model moved there and wrapped."""

    def init_env(method: nn.Module) -> None:
        method.gpus, method.device = int(device.type == "cuda"), device
        method.model = _Wrapped(method.model.to(device))

    return init_env


def original_steps(trainer: nn.Module, batches: list[dict[str, Tensor]], seeds: list[int]) -> Iterator[dict]:
    """One optimizer step per batch with the original's method, as nerv's ``training_epoch`` does.

    ``_training_epoch_start`` first (train mode; STEVE / SlotDiffusion keep their tokenizer in
    eval mode), then per batch: ``_training_step_start`` (the dVAE's Gumbel temperature),
    ``torch.manual_seed(seed)`` (dropout and diffusion noise), ``_training_step`` (forward, the
    model's ``calc_train_loss``, the params' ``*_loss_w`` weighting, backward, clipping, Adam) and
    ``_training_step_end`` (scheduler step). Logging, validation and checkpoints are left out.

    Args:
        batches: ``{"img": video [B, T, 3, H, W]}`` (slot models) or ``{"img": frames [B, 3, H, W]}``
            (tokenizers), in [-1, 1].
        seeds: the RNG seed of each step.
    Yields:
        per step: ``loss`` (the weighted total, float), ``lr`` (every group's rate used by the
        step) and ``tau`` (the dVAE's Gumbel temperature, else None).
    """
    trainer._training_epoch_start()
    trainer.iter_train_loader = trainer.train_loader  # read for len() by the accumulation test
    for index, (batch, seed) in enumerate(zip(batches, seeds, strict=True)):
        trainer.epoch_it = index
        trainer._training_step_start()
        torch.manual_seed(seed)
        out = trainer._training_step(batch)
        record = {"loss": out["loss"].item(), "lr": [g["lr"] for g in trainer.optimizer.param_groups],
                  "tau": trainer.model.module.tau if trainer.params.model == "dVAE" else None}
        trainer._training_step_end()
        yield record


def _deep_update(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
