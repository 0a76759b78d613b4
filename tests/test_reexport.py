"""Re-exporting a dataset (issue 29): a failed or killed re-export never harms the export that was there,
and no stage reads an export that the current params would not make.

The dataset is the tiny profile's ``shapes``; "new params" is ``dataset.seed: 1`` in
``params/datasets/shapes.yaml``, which changes every video. Kills use the fault-injection hooks of
``tests/fault_hooks.py`` (a real SIGKILL of ``python -m slotbench export`` at a counted event).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fault_hooks
import pytest
from conftest import edit_yaml
from test_faults import _env, _events, _killed, _new_project, _stage, _tree
from test_workflow import _project

from slotbench import cli, preflight
from slotbench.config import resolve, resolve_dataset
from slotbench.data.dataset import check_current
from slotbench.data.publish import staging_dir
from slotbench.data.storage import DataError, read_meta, write_meta

EXPORT = ["export", "--dataset", "shapes", "--no-progress"]
STALE = ("data/shapes/meta.json: stale export, made with other dataset params than the current ones "
         "(exported -> now: dataset.seed: 0 -> 1); re-export with `slotbench export --dataset shapes`")


def _new_params(project: Path) -> None:
    edit_yaml(project / "params" / "datasets" / "shapes.yaml", "dataset.seed", 1)


def _leftovers(project: Path) -> list[str]:
    """What ``data/`` holds besides the export and its receipt (the staging or previous folder)."""
    return sorted(p.name for p in (project / "data").iterdir() if p.name not in ("shapes", "shapes.export.json"))


# ---------------------------------------------------------------------------- stale data is never used
@pytest.mark.parametrize("argv", [
    ["tokenizer", "--dataset", "shapes", "--tokenizer", "dvae"],
    ["train", "--dataset", "shapes", "--model", "savi", "--seed", "0"],
    ["eval-seg", "--dataset", "shapes", "--model", "savi", "--seed", "0"],
    ["eval-recon", "--dataset", "shapes", "--model", "savi", "--seed", "0"],
    ["eval-comp-gen", "--dataset", "shapes", "--model", "savi", "--seed", "0"],
    ["report", "--dataset", "shapes"],
], ids=lambda argv: argv[0])
def test_every_stage_that_reads_data_refuses_a_stale_export(argv, project, tiny_data, capsys):
    """Every other input present (empty files: the refusal comes before any is read), the stage
    stops with one line that names what changed and the command that fixes it, writing nothing."""
    argv = [*argv, "--no-progress"]
    for path, _ in preflight.required_inputs(cli.build_parser().parse_args(argv)):
        if not Path(path).exists():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch()
    before = _tree(project / "results") if (project / "results").exists() else {}
    _new_params(project)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"slotbench {argv[0]}: error: {STALE}\n"
    assert (_tree(project / "results") if (project / "results").exists() else {}) == before


def test_training_itself_refuses_a_stale_export(project, tiny_data):
    """The training loop (also the tokenizer's) checks the data it opens, called from Python too."""
    from slotbench.training.loop import train

    _new_params(project)
    with pytest.raises(DataError, match="stale export.*dataset.seed: 0 -> 1"):
        train(resolve("shapes", "savi", project / "params"), tiny_data, project / "run", seed=0, progress=False)
    assert not (project / "run" / "model.pt").exists()


def test_a_current_export_is_accepted_and_one_without_recorded_params_still_checked(project, tiny_data):
    cfg = resolve_dataset("shapes", project / "params")
    assert check_current(tiny_data, cfg)["params"] == cfg
    meta = read_meta(tiny_data)  # as an export written before meta.json recorded the params
    write_meta(tiny_data, {k: v for k, v in meta.items() if k not in ("format", "record_sha256", "params")})
    check_current(tiny_data, cfg)
    with pytest.raises(DataError, match=r"\(its params fingerprint differs\); re-export with"):
        check_current(tiny_data, {**cfg, "seed": 1})


# ---------------------------------------------------------------------------- a killed re-export
def test_a_kill_at_any_step_of_the_swap_leaves_one_whole_export(tmp_path):
    """SIGKILL in the middle of writing, and just before and after each folder rename of the swap:
    afterwards ``data/shapes`` is the old export or the new one, whole (or, between the two renames,
    absent with the old one beside it), and the same command run again publishes the new one."""
    old = _new_project(tmp_path / "old")
    old_tree = _tree(old / "data" / "shapes")
    _new_params(old)
    reference = tmp_path / "reference"
    shutil.copytree(old, reference)
    events = _events(reference, EXPORT)
    new_tree = _tree(reference / "data" / "shapes")
    assert new_tree != old_tree and _leftovers(reference) == []
    swap = [i for i, e in enumerate(events, 1) if e.endswith((" shapes", " .shapes.previous"))]
    assert len(swap) == 4, events  # before and after: shapes -> .shapes.previous, staging -> shapes
    for at in [len(events) // 2, *swap]:
        killed = tmp_path / f"killed{at}"
        shutil.copytree(old, killed)
        _killed(killed, EXPORT, at)
        data, previous = killed / "data" / "shapes", killed / "data" / ".shapes.previous"
        if data.exists():
            assert _tree(data) in (old_tree, new_tree), events[at - 1]
        else:
            assert _tree(previous) == old_tree, events[at - 1]
        assert _stage(killed, EXPORT) == 0
        assert _tree(data) == new_tree and _leftovers(killed) == [], events[at - 1]


# ---------------------------------------------------------------------------- Snakemake and DVC
def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(args, cwd=cwd, env=_env(PATH=path, **env), capture_output=True, text=True, timeout=300,
                          check=False)


def test_snakemake_reexports_on_new_params_and_a_failed_reexport_keeps_the_old_one(tmp_path):
    """Snakemake deletes a job's output before it runs and after it fails: the export rule's output
    is a receipt beside the export, so a killed re-export keeps the old export, and the missing
    receipt makes the next run export again."""
    root = _project(tmp_path)
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "data/shapes.export.json"]
    assert _run(snakemake, root).returncode == 0
    assert "Nothing to be done" in _run([*snakemake, "-n"], root).stdout
    before = _tree(root / "data" / "shapes")
    _new_params(root)
    assert "rule export:" in _run([*snakemake, "-n"], root).stdout
    failed = _run(snakemake, root, **{fault_hooks.KILL_ENV: "3"})  # the export job is killed mid-way
    assert failed.returncode != 0 and "SIGKILL at event 3" in (root / "logs/export/shapes.log").read_text()
    assert _tree(root / "data" / "shapes") == before  # Snakemake deleted no file of the export
    assert "rule export:" in _run([*snakemake, "-n"], root).stdout  # and still knows to re-export
    done = _run(snakemake, root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_meta(root / "data" / "shapes")["params"]["seed"] == 1
    assert not staging_dir(root / "data" / "shapes").exists()


def test_dvc_reexports_on_new_params_and_a_failed_reexport_keeps_the_old_one(tmp_path):
    """DVC deletes a stage's outputs before running its command unless they persist: data/shapes does."""
    root = _project(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    for args in ([sys.executable, "-m", "slotbench", "dvc-yaml"], [*dvc, "init", "--no-scm", "-q"],
                 [*dvc, "repro", "export_shapes"]):
        assert _run(args, root).returncode == 0, args
    before = _tree(root / "data" / "shapes")
    _new_params(root)
    assert "export_shapes" in _run([*dvc, "status", "export_shapes"], root).stdout
    failed = _run([*dvc, "repro", "export_shapes"], root, **{fault_hooks.KILL_ENV: "3"})
    assert failed.returncode != 0 and "SIGKILL at event 3" in failed.stdout + failed.stderr
    assert _tree(root / "data" / "shapes") == before  # DVC did not delete the output before the command
    done = _run([*dvc, "repro", "export_shapes"], root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_meta(root / "data" / "shapes")["params"]["seed"] == 1
    assert "up to date" in _run([*dvc, "status", "export_shapes"], root).stdout
