"""DVC beyond `dvc repro`: metrics, plots of the training curves, and `dvc exp run -S` (SAVi only, tiny profile)."""

from __future__ import annotations

import json
import sys

from conftest import edit_yaml
from test_workflow import _project, _run

DVC = [sys.executable, "-m", "dvc"]
RUN = "results/shapes/savi/seed0"


def test_exp_run_with_a_changed_parameter_then_metrics_and_plots(tmp_path):
    project = _project(tmp_path)
    edit_yaml(project / "params/defaults.yaml", "grid.models", ["savi"])
    edit_yaml(project / "params/defaults.yaml", "tracking.enabled", True)
    _run([sys.executable, "-m", "slotbench", "dvc-yaml"], project)
    (project / ".gitignore").write_text("results/\ndata/\nlogs/\n")
    for args in (["init", "-q"], ["config", "user.email", "ci@example.org"], ["config", "user.name", "ci"]):
        _run(["git", *args], project)
    _run([*DVC, "init", "-q"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "baseline"], project)

    _run([*DVC, "exp", "run", "--name", "two-videos", "-S", "params/defaults.yaml:eval.num_videos=2"], project)
    seg = json.loads((project / RUN / "seg.json").read_text())
    assert seg["num_videos"] == 2, "the experiment's results are in the workspace"
    shown = json.loads(_run([*DVC, "exp", "show", "--json"], project).strip().splitlines()[-1])
    experiments = [e for commit in shown for e in (commit.get("experiments") or [])]
    assert [e["name"] for e in experiments] == ["two-videos"]
    exp = experiments[0]["revs"][0]["data"]
    assert exp["params"]["params/defaults.yaml"]["data"]["eval"]["num_videos"] == 2
    # results/ is git-ignored by design, so an experiment's metrics are read from the workspace

    metrics = json.loads(_run([*DVC, "metrics", "show", "--json"], project).strip().splitlines()[-1])
    files = set(next(iter(metrics.values()))["data"])
    assert {f"{RUN}/{name}.json" for name in ("train", "seg", "recon", "fvd_recon", "fvd_comp")} <= files
    assert "results/shapes/dvae/train.json" not in files  # no STEVE in this grid, so no dVAE

    plots = json.loads(_run([*DVC, "plots", "show", "--json"], project).strip().splitlines()[-1])["data"]
    assert set(plots) == {f"shapes_{p}" for p in ("train_loss", "lr", "val_loss", "val_fg_ari", "val_miou",
                                                     "val_mbo")}
    rows = plots["shapes_train_loss"][0]["content"]["data"]["values"]
    assert [row["step"] for row in rows] == ["2", "4", "6"] and all(float(row["loss"]) > 0 for row in rows)
