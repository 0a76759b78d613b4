"""The report stage: its pieces, the page Snakemake builds on the tiny profile, and that page in a
real headless browser (Chromium; skipped only when none can be found, see scripts/install-browser.sh)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import INSTALL_HINT, DevTools, find_chromium
from conftest import REPO, copy_params, edit_yaml
from PIL import Image
from test_workflow import _env

from slotbench.report.curves import CORE, plot_curves, read_history, write_curves
from slotbench.report.media import gif_uri
from slotbench.visualize import GAP, LABEL_HEIGHT, MIN_TILE, matched_segmentation, slot_layers, strip

REPORT = "results/shapes/report.html"


def test_strip_gif_and_slot_layers():
    video = np.zeros((3, 8, 8, 3), np.uint8)
    video[:, 2:4, 2:4] = np.array([40, 120, 200], np.uint8)[:, None, None, None]  # differs per frame
    pred = np.zeros((3, 8, 8), np.int64)
    pred[:, :, 4:] = 2  # slot 2 takes the right half, slot 1 nothing
    gt = (pred > 0).astype(np.int64)
    matched, slot_ids = matched_segmentation(gt, pred, num_slots=3)
    np.testing.assert_array_equal(matched, gt)
    assert slot_ids[0] == 0 and slot_ids[2] == 1 and slot_ids[1] >= 2  # the empty slot gets a fresh id
    layers = slot_layers(video, pred, slot_ids)
    assert [slot for slot, _, _ in layers] == [0, 2, 1]
    assert (layers[2][1] == 255).all() and (layers[1][1][:, :, 4:] == video[:, :, 4:]).all()
    picture = strip([video] * 3, ["a", "b", "c"], [None, (255, 0, 0), None])
    assert picture.shape == (3, LABEL_HEIGHT + MIN_TILE, 3 * MIN_TILE + 2 * GAP, 3)  # 8 px enlarged 12 times
    gif = Image.open(io.BytesIO(base64.b64decode(gif_uri(picture).split(",", 1)[1])))
    assert gif.format == "GIF" and gif.n_frames == 3


def test_comp_gen_section_labels_a_video_that_was_not_composed(tmp_path, monkeypatch):
    """eval_comp_gen leaves a video alone in the last batch uncomposed (``videos_not_composed``);
    the report must not call it composed."""
    from slotbench.io import write_json
    from slotbench.report import build

    for idx in (0, 2):
        folder = tmp_path / "vids" / "comp_vids" / str(idx)
        folder.mkdir(parents=True)
        for t in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * idx, np.uint8)).save(folder / f"{t}.png")
    write_json(tmp_path / "comp_gen.json", {"videos_not_composed": [2]})
    labels = []
    monkeypatch.setattr(build, "strip", lambda tiles, names: labels.extend(names) or strip(tiles, names))
    videos = [{"index": i, "video": np.zeros((2, 8, 8, 3), np.uint8)} for i in (0, 2)]
    build._comp_section(videos, {"savi": {"videos": tmp_path / "vids", "comp_record": tmp_path / "comp_gen.json"}})
    assert labels == ["composed #0", "#2: not composed"]


def test_curves_without_tracking_are_empty_with_a_reason(tmp_path):
    frames, reason = read_history({"enabled": False, "uri": None, "experiment": "x"}, tmp_path)
    assert "tracking.enabled is false" in reason
    write_curves(frames, tmp_path / "train.csv", tmp_path / "val.csv")
    assert list(pd.read_csv(tmp_path / "val.csv").columns) == ["step", *CORE["val"]]
    assert plot_curves({"savi/seed0": frames}) is None


@pytest.fixture(scope="module")
def report_project(tmp_path_factory) -> Path:
    """The tiny DAG for SAVi (tracking on) run by Snakemake up to the report."""
    project = tmp_path_factory.mktemp("report")
    for name in ("Snakefile", "workflow"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
    copy_params(project, tracking=True)
    edit_yaml(project / "params/defaults.yaml", "grid.models", ["savi"])
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", REPORT], cwd=project, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return project


def test_snakemake_builds_a_self_contained_report(report_project):
    page = (report_project / REPORT).read_text()
    for heading in ("Results", "Videos and slots", "Compositional generation", "Videos to watch (MP4)",
                    "Training curves", "Parameters and versions"):
        assert f"<h2>{heading}</h2>" in page
    # 3 test videos x (segmentations + SAVi's decomposition) + SAVi's composed videos
    assert page.count('src="data:image/gif;base64,') == 3 * 2 + 1
    assert page.count('src="data:image/png;base64,') == 1  # the training curves
    assert not re.search(r'src="(?!data:)', page), "every image is embedded"
    # the only links out of the page: the MP4s of eval_recon and eval_comp_gen (3 test videos each)
    links = [link for link in re.findall(r'href="([^"]*)"', page) if not link.startswith(("#", "data:"))]
    assert links == [f"savi/seed0/vis/{i}_{kind}.mp4" for i in range(3) for kind in ("comp", "recon")]
    assert all((report_project / "results/shapes" / link).is_file() for link in links)
    assert "FG-ARI" in page and "torch" in page and "num_slots" in page
    # the table names the MLflow run, where the evaluation's metrics sit next to the training's
    from mlflow.tracking import MlflowClient

    run_id = (report_project / "results/shapes/savi/seed0/_work/mlflow_run_id").read_text().split()[0]
    assert pd.read_csv(report_project / "results/shapes/table.csv", dtype=str).loc[0, "mlflow_run"] == run_id
    assert run_id in page
    metrics = MlflowClient(f"sqlite:///{report_project / 'results/mlflow.db'}").get_run(run_id).data.metrics
    assert {"train/loss", "val/fg_ari", "eval/fg_ari", "eval/miou", "eval/mbo", "eval/mse", "eval/psnr",
            "eval/ssim", "eval/comp_gen_videos"} <= set(metrics)
    train = pd.read_csv(report_project / "results/shapes/savi/seed0/curves/train.csv")
    val = pd.read_csv(report_project / "results/shapes/savi/seed0/curves/val.csv")
    assert list(train["step"]) == [2, 4, 6] and train["loss"].notna().all() and train["lr"].notna().all()
    assert list(val["step"]) == [3, 6] and val["fg_ari"].notna().all()
    dry = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "-n", REPORT], cwd=report_project,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_report_renders_in_headless_chromium(report_project, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(f"no Chromium or Chrome found: {INSTALL_HINT}")
    with DevTools(chromium) as browser:
        browser.open((report_project / REPORT).resolve().as_uri())
        images = browser.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        title = browser.evaluate("document.title")
        shot = browser.screenshot()
        errors = browser.console_errors()
    assert errors == []
    assert title == "slotbench report: shapes"
    assert len(images) == 8 and all(images), "every embedded image decodes"
    (tmp_path / "report.png").write_bytes(shot)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is not blank"
