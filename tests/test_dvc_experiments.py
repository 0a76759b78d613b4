"""DVC as its users expect, in a temporary git repository with the project's own .gitignore: two
`dvc exp run -S` experiments compared by `dvc exp show`, `dvc metrics diff` and `dvc plots diff`;
data, checkpoints and metrics shared through a DVC remote, after which neither `dvc status` nor
`snakemake -n` wants to re-run anything (SAVi only, tiny profile with 16-frame videos and a stand-in
FVD detector, so that every metric is a number)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, edit_yaml, install_standin_fvd_detector
from test_workflow import _project, _run

DVC = [sys.executable, "-m", "dvc"]
RUN = "results/shapes/savi/seed0"
METRICS = {"seg.json": ("FG-ARI", "mIoU", "mBO"), "recon.json": ("MSE",), "fvd_recon.json": ("FVD",),
           "fvd_comp.json": ("FVD",)}


def _json(args: list[str], cwd: Path):
    return json.loads(_run(args, cwd).strip().splitlines()[-1])


def _git_project(root: Path) -> Path:
    """The tiny SAVi pipeline, committed in a fresh git + DVC repository."""
    root.mkdir()
    project = _project(root)
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    edit_yaml(project / "params/defaults.yaml", "grid.models", ["savi"])
    edit_yaml(project / "params/defaults.yaml", "tracking.enabled", True)  # the curves come from MLflow
    edit_yaml(project / "params/profiles/tiny.yaml", "per_source.synthetic.dataset.video_len", 16)  # FVD's clips
    install_standin_fvd_detector(project)
    _run([sys.executable, "-m", "slotbench", "dvc-yaml"], project)
    for args in (["init", "-q"], ["config", "user.email", "ci@example.org"], ["config", "user.name", "ci"]):
        _run(["git", *args], project)
    _run([*DVC, "init", "-q"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "baseline"], project)
    return project


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    """Two experiments from the baseline commit: a higher learning rate, and more steps."""
    project = _git_project(tmp_path_factory.mktemp("dvc") / "project")
    for name, setting in (("lr3e-3", "params/profiles/tiny.yaml:train.lr=0.003"),
                          ("steps8", "params/profiles/tiny.yaml:train.max_steps=8")):
        _run([*DVC, "exp", "run", "--name", name, "-S", setting], project)
        _run(["git", "checkout", "--", "params"], project)  # the next one starts from the baseline's params
    return project


def test_exp_show_lists_every_experiments_metrics(experiments):
    shown = _json([*DVC, "exp", "show", "--json"], experiments)
    runs = {e["name"]: e["revs"][0]["data"] for commit in shown for e in (commit.get("experiments") or [])}
    assert set(runs) == {"lr3e-3", "steps8"}
    assert runs["lr3e-3"]["params"]["params/profiles/tiny.yaml"]["data"]["train"]["lr"] == 0.003
    assert runs["steps8"]["params"]["params/profiles/tiny.yaml"]["data"]["train"]["max_steps"] == 8
    for data in runs.values():
        for name, keys in METRICS.items():
            values = data["metrics"][f"{RUN}/{name}"]["data"]
            assert all(isinstance(values[k], float) for k in keys), (name, values)
    assert runs["steps8"]["metrics"][f"{RUN}/train.json"]["data"]["steps"] == 8
    # the versions in git are the experiments' own: the workspace holds the last one applied
    workspace = json.loads((experiments / RUN / "seg.json").read_text())
    assert workspace["FG-ARI"] == runs["steps8"]["metrics"][f"{RUN}/seg.json"]["data"]["FG-ARI"]


def test_metrics_diff_and_plots_diff_compare_two_experiments(experiments):
    diff = _json([*DVC, "metrics", "diff", "lr3e-3", "steps8", "--json"], experiments)
    steps = diff[f"{RUN}/train.json"]["steps"]
    assert (steps["old"], steps["new"], steps["diff"]) == (6, 8, 2)
    assert {"FG-ARI", "mIoU", "mBO"} <= set(diff[f"{RUN}/seg.json"]) and "MSE" in diff[f"{RUN}/recon.json"]

    plots = _json([*DVC, "plots", "diff", "lr3e-3", "steps8", "--json"], experiments)["data"]
    rows = plots["shapes_train_loss"][0]["content"]["data"]["values"]
    by_rev = {rev: [int(r["step"]) for r in rows if r["rev"] == rev] for rev in ("lr3e-3", "steps8")}
    assert by_rev == {"lr3e-3": [2, 4, 6], "steps8": [2, 4, 6, 8]}
    assert {"shapes_val_fg_ari", "shapes_val_mbo"} <= set(plots)


def test_push_then_a_fresh_clone_pulls_everything_and_nothing_reruns(experiments, tmp_path):
    project = experiments
    _run([*DVC, "exp", "apply", "steps8"], project)  # its params and results into the workspace, then a commit
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "the steps8 experiment's results"], project)
    store = tmp_path / "dvc-store"
    _run([*DVC, "remote", "add", "-d", "store", str(store)], project)
    _run(["git", "commit", "-qam", "a DVC remote"], project)
    _run([*DVC, "push"], project)

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    # git alone brings the metrics, curves, tables and export receipt
    assert (clone / RUN / "seg.json").is_file() and (clone / RUN / "curves/train.csv").is_file()
    assert not (clone / RUN / "model.pt").exists() and not (clone / "data/shapes").exists()
    _run([*DVC, "pull"], clone)
    for path in ("data/shapes/meta.json", f"{RUN}/model.pt", f"{RUN}/eval/recon_vids", "results/shapes/report.html"):
        assert (clone / path).exists(), path
    assert _json([*DVC, "status", "--json"], clone) == {}
    # Snakemake judges by modification times, which a pull does not keep: one --touch (README)
    _run([sys.executable, "-m", "snakemake", "--cores", "1", "--touch", "results/shapes/table.csv"], clone)
    dry = _run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", "results/shapes/table.csv"], clone)
    assert "Nothing to be done" in dry, dry
    assert _json([*DVC, "status", "--json"], clone) == {}
    # and a parameter changed afterwards still re-runs what it feeds
    edit_yaml(clone / "params/profiles/tiny.yaml", "eval.num_videos", 2)
    assert "rule eval_seg" in _run([sys.executable, "-m", "snakemake", "--cores", "1", "-n",
                                    "results/shapes/table.csv"], clone)
