"""One switch, every dataset: ``snakemake --config profile=tiny`` runs the whole DAG for a few steps
on MOVi-D/E exports (TFDS form) and MOVi-Solid/Tex releases (folders of PNGs) at their real size,
128x128 and 24 frames, cut to 4 videos a split and resized to 16x16; outputs under runs/tiny/ only."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, copy_params, edit_yaml
from PIL import Image
from test_workflow import _project, _run, _snakemake

from slotbench.config import resolve_dataset
from slotbench.data.subset import resize_video

HERE = Path(__file__).resolve().parent
R, T, VIDEOS = 128, 24, 5  # the real MOVi frame size and length; one video more than the profile keeps
NUM_MASKS = 10


def _release(base: Path, seed: int) -> None:
    """A MOVi-Solid/Tex release folder: ``{split}/{video}/{t:08d}_image.png`` and ``_mask_{k:02d}.png``."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for v in range(VIDEOS):
            folder = base / split / f"{v:08d}"
            folder.mkdir(parents=True)
            boxes = [(*rng.integers(0, R - 40, 2).tolist(), *rng.integers(16, 40, 2).tolist())
                     for _ in range(int(rng.integers(1, 4)))]
            for t in range(T):
                Image.fromarray(rng.integers(0, 256, (R, R, 3), dtype=np.uint8)).save(folder / f"{t:08d}_image.png")
                for k in range(NUM_MASKS):
                    mask = np.zeros((R, R), np.uint8)
                    if k < len(boxes):
                        y, x, h, w = boxes[k]
                        mask[y:y + h, x + t:x + t + w] = 255
                    Image.fromarray(mask).save(folder / f"{t:08d}_mask_{k:02d}.png")


@pytest.fixture(scope="module")
def movi_project(tmp_path_factory) -> Path:
    """A project whose four MOVi params point at local stand-ins of the real sources."""
    # the MOVi-D/E stand-ins are written by tensorflow-datasets, as the real ones (`SLOTBENCH_EXTRAS=movi`), in a
    # subprocess: ask for the installed package, not the module (other tests put a stand-in in sys.modules)
    try:
        importlib.metadata.version("tensorflow-datasets")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the movi extra: pip install 'slotbench[movi]'")
    root = tmp_path_factory.mktemp("smoke")
    (root / "project").mkdir()
    project = _project(root / "project")
    sources = root / "sources"
    for name in ("movi_d", "movi_e"):
        subprocess.run([sys.executable, str(HERE / "movi_tfds_fixture.py"), str(sources / "tfds"), "--name", name,
                        "--resolution", str(R), "--frames", str(T), "--splits",
                        *(f"{s}={VIDEOS}" for s in ("train", "validation", "test"))],
                       check=True, capture_output=True, timeout=300)
        edit_yaml(project / f"params/datasets/{name}.yaml", "dataset.tfds.data_dir", str(sources / "tfds"))
    for seed, name in enumerate(("movi_solid", "movi_tex")):
        _release(sources / name, seed)
        edit_yaml(project / f"params/datasets/{name}.yaml", "dataset.release.path", str(sources / name))
    return project


def test_tiny_profile_runs_the_dag_on_every_movi_dataset(movi_project):
    """SAVi's whole chain on all four MOVi datasets, all three models (tokenizers included) on
    MOVi-Tex; the datasets' own profile (reference) stays in params/ and nothing else is written."""
    targets = [f"runs/tiny/results/{d}/savi/table.csv" for d in ("movi_d", "movi_e", "movi_solid")]
    _snakemake(movi_project, *targets, "runs/tiny/results/movi_tex/table.csv", "--config", "profile=tiny")
    for name in ("movi_d", "movi_e", "movi_solid", "movi_tex"):
        meta = json.loads((movi_project / f"runs/tiny/data/{name}/meta.json").read_text())
        assert meta["resolution"] == 16 and meta["video_len"] == T
        assert {s: v["num_videos"] for s, v in meta["splits"].items()} == {
            s: 4 for s in resolve_dataset(name, movi_project / "params")["splits"]}
        models = ("savi", "steve", "slotdiffusion") if name == "movi_tex" else ("savi",)
        for model in models:
            table = pd.read_csv(movi_project / f"runs/tiny/results/{name}/{model}/table.csv", dtype={"seed": str})
            assert list(table["seed"]) == ["0", "mean", "std"] and np.isfinite(table.loc[0, "FG-ARI"])
            seg = json.loads((movi_project / f"runs/tiny/results/{name}/{model}/seed0/seg.json").read_text())
            assert seg["num_videos"] == 4
    assert not any((movi_project / d).exists() for d in ("data", "results", "logs"))
    assert (movi_project / "runs/tiny/logs/train/movi_e_savi_seed0.log").is_file()
    # without the switch the same targets are the reference profile's, at their usual place
    dry = _snakemake(movi_project, "-n", "results/movi_e/savi/table.csv")
    assert "runs/tiny" not in dry and "data/movi_e.export.json" in dry


def test_dvc_smoke_pipeline_of_another_profile_runs_apart(tmp_path):
    """``slotbench dvc-yaml --profile tiny`` writes ``runs/tiny/dvc.yaml``: ``dvc repro`` of it runs the
    whole DAG on the tiny profile with every output under runs/tiny/, in a git repository with the
    project's .gitignore (git then sees only that pipeline's dvc.yaml and dvc.lock), while the
    datasets' own profile (here `shapes`) and the main dvc.yaml stay as they are."""
    project = _project(tmp_path)
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    edit_yaml(project / "params/datasets/shapes.yaml", "profile", "shapes")
    edit_yaml(project / "params/defaults.yaml", "grid.models", ["savi"])
    dvc = [sys.executable, "-m", "dvc"]
    for args in ([sys.executable, "-m", "slotbench", "dvc-yaml"], [sys.executable, "-m", "slotbench", "dvc-yaml",
                 "--profile", "tiny"], ["git", "init", "-q"], [*dvc, "init", "-q"]):
        _run(args, project)
    pipeline = (project / "runs/tiny/dvc.yaml").read_text()
    assert "SLOTBENCH_PROFILE=tiny slotbench train --dataset shapes --model savi" in pipeline
    assert "params/profiles/tiny.yaml" in pipeline and "params/profiles/shapes.yaml" not in pipeline
    main = (project / "dvc.yaml").read_text()
    assert "params/profiles/shapes.yaml" in main and "runs/" not in main
    _run([*dvc, "repro", "runs/tiny/dvc.yaml"], project)
    table = pd.read_csv(project / "runs/tiny/results/shapes/savi/table.csv", dtype={"seed": str})
    assert list(table["seed"]) == ["0", "mean", "std"] and np.isfinite(table.loc[0, "FG-ARI"])
    assert json.loads((project / "runs/tiny/data/shapes/meta.json").read_text())["resolution"] == 16
    assert not (project / "results").exists() and not (project / "data").exists()
    assert "up to date" in _run([*dvc, "status", "runs/tiny/dvc.yaml"], project)
    untracked = _run(["git", "status", "--porcelain", "-uall", "runs"], project).split()
    assert sorted(untracked) == ["??", "??", "runs/tiny/dvc.lock", "runs/tiny/dvc.yaml"]


def test_the_profile_replaces_every_datasets_own(monkeypatch):
    monkeypatch.setenv("SLOTBENCH_PROFILE", "tiny")
    params = REPO / "params"
    solid = resolve_dataset("movi_solid", params)
    assert (solid["resolution"], solid["max_videos"], solid["frame_size"], solid["video_len"]) == (128, 4, 16, 24)
    assert resolve_dataset("shapes", params)["resolution"] == 16
    monkeypatch.setenv("SLOTBENCH_PROFILE", "nope")
    with pytest.raises(Exception, match=r"no such profile 'nope' \(available: reference, shapes, tiny\)"):
        resolve_dataset("shapes", params)


def test_resize_matches_pillow_and_nearest_ids():
    """Frames: antialiased bilinear as Pillow's BILINEAR reduce (within one grey level); ids: the
    source pixel at floor(i * in / out), so an id is never blended."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    seg = rng.integers(0, 6, (3, 128, 128), dtype=np.uint8)
    for size in (16, 40):
        small, small_seg, num_objects = resize_video(video, seg, size)
        assert small.shape == (3, size, size, 3) and small.dtype == np.uint8
        for t in range(3):
            ref = np.asarray(Image.fromarray(video[t]).resize((size, size), Image.BILINEAR))
            assert np.abs(small[t].astype(int) - ref.astype(int)).max() <= 1
        index = np.floor(np.arange(size) * 128 / size).astype(int)
        np.testing.assert_array_equal(small_seg, seg[:, index][:, :, index])
        assert num_objects == len(set(np.unique(small_seg).tolist()) - {0})
    same, same_seg, _ = resize_video(video, seg, 128)
    assert same is video and same_seg is seg


def test_a_tiny_shapes_export_is_cut_and_resized(tmp_path):
    """``max_videos`` and ``frame_size`` on a generated dataset: the first videos of the full
    export, resized (so the same rule holds for every source)."""
    from slotbench.data.dataset import VideoDataset
    from slotbench.data.export import export

    copy_params(tmp_path)
    full_cfg = resolve_dataset("shapes", tmp_path / "params")
    export(full_cfg, tmp_path / "full", progress=False)
    edit_yaml(tmp_path / "params/profiles/tiny.yaml", "per_source.synthetic.dataset.max_videos", 2)
    edit_yaml(tmp_path / "params/profiles/tiny.yaml", "per_source.synthetic.dataset.frame_size", 8)
    export(resolve_dataset("shapes", tmp_path / "params"), tmp_path / "cut", progress=False)
    for split in ("train", "test"):
        full, cut = VideoDataset(tmp_path / "full", split).split, VideoDataset(tmp_path / "cut", split).split
        assert len(cut.video) == 2 and cut.video.shape[2:4] == (8, 8)
        for i in range(2):
            video, seg, _ = resize_video(np.asarray(full.video[i]), np.asarray(full.seg[i]), 8)
            np.testing.assert_array_equal(cut.video[i], video)
            np.testing.assert_array_equal(cut.seg[i], seg)
