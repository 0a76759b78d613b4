"""Shared fixtures: a quiet, offline, CPU-only environment and a tiny exported dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

os.environ.update({
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "SLOTBENCH_OFFLINE": "1",  # never download pretrained weights from the tests
})


def copy_params(dest: Path, profile: str = "tiny", tracking: bool = False) -> Path:
    """Copy params/ into ``dest`` with the `shapes` dataset on ``profile`` (tracking off by default)."""
    params = dest / "params"
    shutil.copytree(REPO / "params", params)
    ds_file = params / "datasets" / "shapes.yaml"
    ds = yaml.safe_load(ds_file.read_text())
    ds["profile"] = profile
    ds_file.write_text(yaml.safe_dump(ds, sort_keys=False))
    defaults_file = params / "defaults.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    defaults["tracking"]["enabled"] = tracking
    defaults_file.write_text(yaml.safe_dump(defaults, sort_keys=False))
    return params


def edit_yaml(path: Path, dotted: str, value) -> None:
    """Set ``a.b.c`` in a YAML file."""
    data = yaml.safe_load(path.read_text()) or {}
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A working directory with params/ (tiny profile) as the stages expect."""
    copy_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_data(project) -> Path:
    """``data/shapes`` exported with the tiny profile, inside ``project``."""
    from slotbench.config import resolve_dataset
    from slotbench.data.export import export

    root = project / "data" / "shapes"
    export(resolve_dataset("shapes", project / "params"), root, progress=False)
    return root


def reference_config(dataset: str, name: str, tokenizer: bool = False) -> dict:
    """The resolved reference configuration of ``params/`` for a MOVi dataset and a model or tokenizer."""
    from slotbench.config import resolve, resolve_tokenizer

    return (resolve_tokenizer if tokenizer else resolve)(dataset, name, REPO / "params")


def install_standin_fvd_detector(project: Path) -> None:
    """``weights/i3d.pt``: a scripted stand-in with the I3D detector's call signature (uint8 clips
    ``[B, 3, T, H, W]`` -> 2 features), pinned in ``params/defaults.yaml`` so that the fvd stage
    computes a number (never reported as FVD outside the tests)."""
    import torch

    from slotbench.io import sha256_file

    class StandInI3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Parameter(torch.randn(48, 2, generator=torch.Generator().manual_seed(0)))

        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            return torch.tanh(x.float().mean(dim=(3, 4)).flatten(1) / 127.5 @ self.proj)

    (project / "weights").mkdir(exist_ok=True)
    torch.jit.script(StandInI3D()).save(str(project / "weights" / "i3d.pt"))
    edit_yaml(project / "params" / "defaults.yaml", "fvd.detector_path", "weights/i3d.pt")
    edit_yaml(project / "params" / "defaults.yaml", "fvd.detector_sha256", sha256_file(project / "weights" / "i3d.pt"))
