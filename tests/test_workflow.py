"""End to end on the tiny profile: Snakemake and DVC run the DAG, and re-run only stale stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, copy_params, edit_yaml

from slotbench.table import COLUMNS

TARGET = "results/shapes/savi/table.csv"
EVALUATION = {"eval_seg", "eval_recon", "eval_comp_gen", "fvd", "table_model"}


def _project(tmp_path: Path) -> Path:
    """A copy of the workflow files with the tiny profile and tracking off."""
    for name in ("Snakefile", "workflow", "src"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    copy_params(tmp_path)
    return tmp_path


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _snakemake(cwd: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd)


def _planned_rules(dry_run_output: str) -> set[str]:
    return {line.split()[1].rstrip(":") for line in dry_run_output.splitlines() if line.startswith("rule ")}


def _check_table(project: Path, models=("savi",), videos: int = 3) -> None:
    for model in models:
        table = pd.read_csv(project / f"results/shapes/{model}/table.csv", dtype={"seed": str})
        assert list(table.columns) == ["dataset", "model", "seed", *COLUMNS, "mlflow_run", "notes"]
        assert list(table["seed"]) == ["0", "mean", "std"]
        seg = json.loads((project / f"results/shapes/{model}/seed0/seg.json").read_text())
        assert seg["num_videos"] == videos and seg["split"] == "test" and seg["model"] == model
        assert table.loc[0, "FG-ARI"] == pytest.approx(seg["FG-ARI"], rel=1e-3)
        recon = json.loads((project / f"results/shapes/{model}/seed0/recon.json").read_text())
        assert table.loc[0, "MSE"] == pytest.approx(recon["MSE"], rel=1e-3)
        assert len(list((project / f"results/shapes/{model}/seed0/eval/recon_vids").iterdir())) == videos
        assert len(list((project / f"results/shapes/{model}/seed0/eval/comp_vids").iterdir())) == videos
        # offline and with 6-frame videos, LPIPS and FVD are empty cells with their reasons
        assert pd.isna(table.loc[0, "LPIPS"]) and pd.isna(table.loc[0, "FVD (recon)"])
        assert "FVD (recon): not computed" in table.loc[0, "notes"]
        fvd = json.loads((project / f"results/shapes/{model}/seed0/fvd_comp.json").read_text())
        assert fvd["FVD"] is None and "16-frame clips" in fvd["reason"]


def test_snakemake_runs_the_dag_and_reruns_only_stale_stages(tmp_path):
    project = _project(tmp_path)
    _snakemake(project, TARGET)
    _check_table(project)
    assert (project / "data/shapes/meta.json").is_file()
    assert "Nothing to be done" in _snakemake(project, "-n", TARGET)
    # no output of SAVi's stages depends on these: where checkpoints go, SlotDiffusion's sampler
    edit_yaml(project / "params/profiles/tiny.yaml", "train.checkpoint_every", 2)
    edit_yaml(project / "params/defaults.yaml", "eval.sampler", "ddim")
    assert "Nothing to be done" in _snakemake(project, "-n", TARGET)
    # a parameter set for one run on the command line re-runs what reads it, as an edited file does,
    # and its jobs read it: the same run as with the file edited
    workflow_set = ("--config", "set=[eval.num_videos=2, runtime.threads=1]")
    assert _planned_rules(_snakemake(project, "-n", TARGET, *workflow_set)) == EVALUATION
    _snakemake(project, TARGET, *workflow_set)
    assert json.loads((project / "results/shapes/savi/seed0/seg.json").read_text())["num_videos"] == 2
    assert "Nothing to be done" in _snakemake(project, "-n", TARGET, *workflow_set)

    edit_yaml(project / "params/profiles/tiny.yaml", "eval.num_videos", 2)
    assert "Nothing to be done" in _snakemake(project, "-n", TARGET)

    edit_yaml(project / "params/profiles/tiny.yaml", "per_model.savi.model.num_slots", 2)
    assert _planned_rules(_snakemake(project, "-n", TARGET)) == {"train"} | EVALUATION

    # STEVE's training depends on the dVAE tokenizer stage; a tokenizer parameter re-runs both
    steve = "results/shapes/steve/table.csv"
    assert _planned_rules(_snakemake(project, "-n", steve)) == {"tokenizer", "train"} | EVALUATION
    _snakemake(project, steve)
    _check_table(project, ("steve",), videos=2)  # eval.num_videos was set to 2 above
    assert "Nothing to be done" in _snakemake(project, "-n", steve)
    edit_yaml(project / "params/profiles/tiny.yaml", "per_tokenizer.dvae.tokenizer.vocab_size", 8)
    assert _planned_rules(_snakemake(project, "-n", steve)) == {"tokenizer", "train"} | EVALUATION


def test_config_set_goes_to_the_jobs_whose_configuration_has_it(tmp_path, monkeypatch):
    """``--config set=[...]``: each job takes the values of the sections its configuration has (the
    export only ``dataset``, a tokenizer no ``model``), from ``$SLOTBENCH_SET``; a job's own ``--set``
    wins; a section no stage reads stops the run before any job."""
    from slotbench.config import workflow_overrides

    project = _project(tmp_path)
    items = ["dataset.video_len=8", "train.max_steps=3", "model.encoder.channels=[8, 8]"]
    monkeypatch.setenv("SLOTBENCH_SET", json.dumps(items))
    params = project / "params"
    assert workflow_overrides("export", params) == {"dataset.video_len": 8}
    assert workflow_overrides("tokenizer", params) == {"dataset.video_len": 8, "train.max_steps": 3}
    for stage in ("train", "eval_seg", "eval_recon", "fvd"):
        assert workflow_overrides(stage, params) == {"dataset.video_len": 8, "train.max_steps": 3,
                                                     "model.encoder.channels": [8, 8]}
    assert workflow_overrides("table_model", params) == {}
    monkeypatch.chdir(project)
    from slotbench import cli

    assert cli.main(["params", "--dataset", "shapes", "--model", "savi"]) == 0  # not a stage: no $SLOTBENCH_SET
    out = _snakemake(project, "-n", "results/shapes/steve/table.csv", "--config", f"set=[{', '.join(items[:2])}]")
    assert {"export", "tokenizer", "train"} <= _planned_rules(out)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", TARGET, "--config",
                           "set=[grid.models=savi]"], cwd=project, env=_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "--set grid.models: no stage reads these" in proc.stdout + proc.stderr


def test_dvc_repro_runs_the_same_stages_and_reruns_only_stale_ones(tmp_path):
    project = _project(tmp_path)
    _run([sys.executable, "-m", "slotbench", "dvc-yaml"], project)  # the tiny profile changes the params keys
    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], project)
    _run([sys.executable, "-m", "dvc", "repro"], project)
    _check_table(project, ("savi", "steve", "slotdiffusion"))
    assert len(pd.read_csv(project / "results/shapes/table.csv")) == 9
    status = json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], project).strip().splitlines()[-1])
    assert status == {}
    edit_yaml(project / "params/defaults.yaml", "eval.sampler", "ddim")  # SlotDiffusion's decoding only
    status = json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], project).strip().splitlines()[-1])
    assert set(status) == {"eval_recon_shapes_slotdiffusion_seed0", "eval_comp_gen_shapes_slotdiffusion_seed0"}
    edit_yaml(project / "params/defaults.yaml", "eval.sampler", "dpm++")

    edit_yaml(project / "params/profiles/tiny.yaml", "eval.num_videos", 2)
    out = _run([sys.executable, "-m", "dvc", "repro"], project)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    models = ("savi", "steve", "slotdiffusion")
    per_model = ("eval_seg", "eval_recon", "eval_comp_gen")
    assert ran == ({f"{stage}_shapes_{m}_seed0" for stage in per_model for m in models}
                   | {f"fvd_shapes_{m}_seed0_{kind}" for m in models for kind in ("recon", "comp")}
                   | {f"table_model_shapes_{m}" for m in models} | {"table_dataset_shapes", "report_shapes"})
    assert "Data and pipelines are up to date" in _run([sys.executable, "-m", "dvc", "repro"], project)


def _planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for line in dry_run_output.splitlines():
        if line.startswith("rule "):
            jobs.append((line.split()[1].rstrip(":"), {}))
        elif line.strip().startswith("wildcards:") and jobs:
            jobs[-1][1].update(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    return jobs


def test_seeds_fan_out_and_a_new_seed_runs_only_its_own_stages(tmp_path):
    project = _project(tmp_path)
    _snakemake(project, TARGET)
    first_model = (project / "results/shapes/savi/seed0/model.pt").stat().st_mtime_ns

    edit_yaml(project / "params/defaults.yaml", "grid.seeds", [0, 1])
    planned = _planned_jobs(_snakemake(project, "-n", TARGET))
    assert {rule for rule, wc in planned if wc.get("seed") != "1"} == {"table_model"}
    assert {rule for rule, wc in planned if wc.get("seed") == "1"} == {"train"} | EVALUATION - {"table_model"}
    _snakemake(project, TARGET)
    assert (project / "results/shapes/savi/seed0/model.pt").stat().st_mtime_ns == first_model
    table = pd.read_csv(project / TARGET, dtype={"seed": str})
    assert list(table["seed"]) == ["0", "1", "mean", "std"]
    assert table.loc[2, "FG-ARI"] == pytest.approx(table.loc[:1, "FG-ARI"].mean(), rel=1e-3)
    assert table.loc[3, "FG-ARI"] == pytest.approx(table.loc[:1, "FG-ARI"].std(ddof=1), rel=1e-3, abs=1e-4)


def test_slurm_profile_resolves_resources_for_the_movi_e_slotdiffusion_dag(tmp_path):
    """A dry run through snakemake-executor-plugin-slurm: each job's GPUs, CPUs, memory and time from params."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    project = _project(tmp_path)
    target = "results/movi_e/slotdiffusion/table.csv"
    edit_yaml(project / "params/defaults.yaml", "resources.train.processes", 2)
    out = _snakemake(project, "-n", "-p", "--workflow-profile", "workflow/profiles/slurm", target)
    resources = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
        resources[rule] = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    assert set(resources) == {"export", "tokenizer", "train", "eval_seg", "eval_recon", "eval_comp_gen", "fvd",
                              "table_model"}
    expected = {"export": ("0", "4", "16000", "240"), "tokenizer": ("1", "8", "32000", "2880"),
                "train": ("2", "16", "32000", "2880"), "eval_seg": ("1", "8", "32000", "240"),
                "fvd": ("1", "4", "16000", "60")}
    for rule, (gpu, cpus, mem, runtime) in expected.items():
        got = resources[rule]
        assert (got["gpu"], got["cpus_per_task"], got["mem_mb"], got["runtime"]) == (gpu, cpus, mem, runtime), rule
    assert "torch.distributed.run --standalone --nproc-per-node 2 -m slotbench train --dataset movi_e" in out
    assert "-m slotbench tokenizer --dataset movi_e --tokenizer vqvae" in out
