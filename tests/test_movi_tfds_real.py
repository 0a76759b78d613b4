"""MOVi-D/E export through the real tensorflow-datasets, on a tiny dataset built here.

A separate process prepares ``movi_e/16x16:1.0.0`` (or ``movi_d``) in a local ``data_dir`` with
the MOVi feature spec (tests/movi_tfds_fixture.py); then ``slotbench export`` runs in a fresh
process where no builder class is registered, so TFDS opens the files exactly as it opens
Kubric's bucket. Needs the optional extra (``pip install 'slotbench[movi]'``; ``.ci/run``
installs it); skipped without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorflow_datasets", reason="needs the movi extra: pip install 'slotbench[movi]'")

from conftest import copy_params  # noqa: E402
from movi_tfds_fixture import record  # noqa: E402

from slotbench.data.publish import staging_dir  # noqa: E402
from slotbench.data.storage import PROGRESS_FILE, open_split, read_meta  # noqa: E402

pytestmark = pytest.mark.tensorflow

HERE = Path(__file__).resolve().parent
R, T = 16, 4
SPLITS = {"train": 7, "validation": 2, "test": 3}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> Path:
    """A prepared local TFDS data_dir holding movi_d and movi_e at 16x16, 4 frames."""
    data_dir = tmp_path_factory.mktemp("tfds")
    for name in ("movi_d", "movi_e"):
        subprocess.run([sys.executable, str(HERE / "movi_tfds_fixture.py"), str(data_dir), "--name", name,
                        "--resolution", str(R), "--frames", str(T),
                        "--splits", *(f"{k}={v}" for k, v in SPLITS.items())],
                       check=True, env=ENV, capture_output=True)
    assert (data_dir / "movi_e" / f"{R}x{R}" / "1.0.0" / "dataset_info.json").is_file()
    return data_dir


def _project(project: Path, data_dir: Path, name: str = "movi_e") -> Path:
    """A project in ``project`` whose params/datasets/{name}.yaml reads the fixture at 16x16, 4 frames."""
    copy_params(project)
    path = project / "params" / "datasets" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["dataset"].update(resolution=R, video_len=T)
    cfg["dataset"]["tfds"]["data_dir"] = str(data_dir)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def _export(project: Path, name: str = "movi_e", env: dict | None = None, check: bool = True):
    return subprocess.run([sys.executable, "-m", "slotbench", "export", "--dataset", name], cwd=project,
                          env=env or ENV, capture_output=True, text=True, check=check)


def _tfds_order(data_dir: Path, name: str) -> dict[str, list[str]]:
    """Per split, the ``video_name`` of every record in the order ``tfds.load`` yields them
    (the original's: its folder ``i`` is record ``i``)."""
    code = (
        "import json, sys, tensorflow_datasets as tfds\n"
        "order = {}\n"
        f"for split in {list(SPLITS)!r}:\n"
        f"    ds = tfds.load('{name}/{R}x{R}:1.0.0', split=split, data_dir=sys.argv[1], shuffle_files=False)\n"
        "    order[split] = [r['metadata']['video_name'].decode() for r in tfds.as_numpy(ds)]\n"
        "print(json.dumps(order))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], env=ENV, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["movi_d", "movi_e"])
def test_export_round_trip_in_tfds_order(tmp_path, tfds_dir, name):
    project = _project(tmp_path, tfds_dir, name)
    _export(project, name)
    root = project / "data" / name
    meta = read_meta(root)
    assert meta["origin"]["tfds"] == f"{name}/{R}x{R}:1.0.0"
    orders = _tfds_order(tfds_dir, name)
    for split, n in SPLITS.items():
        data = open_split(root, split, verify_checksums=True)
        assert len(data) == n
        order = orders[split]
        assert sorted(order) == sorted(f"{split}_{i}" for i in range(n))
        for i, video_name in enumerate(order):
            rec = record(split, int(video_name.rsplit("_", 1)[1]), T, R)
            np.testing.assert_array_equal(data.video[i], rec["video"])  # exact pixels (PNG in TFDS)
            np.testing.assert_array_equal(data.seg[i], rec["segmentations"][..., 0])
            assert data.num_objects[i] == len(np.setdiff1d(np.unique(rec["segmentations"]), [0]))
    assert not list(root.rglob(PROGRESS_FILE)) and not list(root.rglob(".tmp-*"))


def test_export_resumes_after_kill(tfds_dir, tmp_path):
    """SIGKILL at train record 5 with shards of 2 videos: 4 videos are kept, the second run
    resumes there and ends with the same bytes as an uninterrupted export."""
    reference = _project(tmp_path / "reference", tfds_dir)
    _export(reference)

    project = _project(tmp_path / "project", tfds_dir)
    hook = tmp_path / "kill_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal\n"
        "from slotbench.data import movi_tfds\n"
        "_write, _check = movi_tfds.write_split_resumable, movi_tfds.check_record\n"
        "def write_split_resumable(*args, **kwargs):\n"
        "    return _write(*args, **{**kwargs, 'shard_size': 2})\n"
        "movi_tfds.write_split_resumable = write_split_resumable\n"
        "def check_record(record, split, index, *args):\n"
        "    if split == 'train' and index == 5:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _check(record, split, index, *args)\n"
        "movi_tfds.check_record = check_record\n"
    )
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(hook), ENV.get("PYTHONPATH", "")])}
    killed = _export(project, env=env, check=False)
    assert killed.returncode == -signal.SIGKILL
    root = project / "data" / "movi_e"
    assert not (root / "meta.json").exists()
    assert json.loads((staging_dir(root) / "train" / PROGRESS_FILE).read_text())["written"] == 4

    _export(project)
    for split in SPLITS:
        for array in ("video", "seg"):
            ours = open_split(root, split)
            theirs = open_split(reference / "data" / "movi_e", split)
            np.testing.assert_array_equal(getattr(ours, array), getattr(theirs, array))
    assert read_meta(root)["splits"] == read_meta(reference / "data" / "movi_e")["splits"]


def _edit(project: Path, name: str, **changes) -> None:
    path = project / "params" / "datasets" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["dataset"].update(changes)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_wrong_frame_count_is_refused_and_the_previous_export_kept(tmp_path, tfds_dir):
    """The issue's MOVi-D mistake (another video_len) stops at record 0 and leaves the export that
    was there as it was."""
    project = _project(tmp_path, tfds_dir, "movi_d")
    _export(project, "movi_d")
    root = project / "data" / "movi_d"
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    _edit(project, "movi_d", video_len=2 * T)
    result = _export(project, "movi_d", check=False)
    assert result.returncode != 0
    assert "record 0" in result.stderr and f"expected video_len = {2 * T}" in result.stderr
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before


def test_a_resolution_the_source_lacks_is_named(tmp_path, tfds_dir):
    project = _project(tmp_path, tfds_dir)
    _edit(project, "movi_e", resolution=2 * R)
    result = _export(project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"movi_e: dataset.resolution: {2 * R}, but the TFDS dataset movi_e in data_dir '{tfds_dir}' has no config "
            f"{2 * R}x{2 * R}; it has {R}x{R} (dataset.resolution: {R})") in result.stderr


def test_the_export_is_quiet(tmp_path, tfds_dir):
    """Without any TensorFlow logging settings of its own, the export prints its progress bars and
    nothing of TensorFlow's start-up (oneDNN, CPU instructions, absl, deprecations)."""
    project = _project(tmp_path, tfds_dir)
    env = {k: v for k, v in ENV.items() if not k.startswith("TF_")}
    result = _export(project, env=env)
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(line.startswith("movi_e ") and "video" in line for line in lines), result.stderr[-3000:]


def test_missing_local_mirror_names_the_path(tmp_path):
    project = _project(tmp_path / "project", tmp_path / "no_such_mirror")
    result = _export(project, check=False)
    assert result.returncode != 0
    assert "no_such_mirror" in result.stderr and "data_dir" in result.stderr
    assert "Traceback" not in result.stderr
