"""What each stage depends on (``stage_params``, the stages' ``code``) and how Snakemake and dvc.yaml
declare it: every parameter that changes a stage's outputs, and no other."""

from __future__ import annotations

import ast
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import REPO, edit_yaml
from test_eval_recon import (
    DVAE,
    EVAL,
    RUNTIME,
    SAVI,
    SD_CFG,
    STEVE_CFG,
    VQVAE,
    _checkpoint,
    _data,
    no_lpips_weights,  # noqa: F401  (a fixture)
)

from slotbench import checkpoint, paths
from slotbench.cli import build_parser
from slotbench.config import definitions as defs
from slotbench.config import resolve, resolve_tokenizer, stage_params
from slotbench.config.loader import stage_keys
from slotbench.evaluation import reconstruction as er
from slotbench.evaluation.segmentation import run_eval_seg
from slotbench.pipeline import stage_code
from slotbench.training.loop import train
from slotbench.workflow_dvc import render_dvc_yaml

MODELS = ("savi", "steve", "slotdiffusion")


def _dvc_stages(params_dir: str | Path = "params") -> dict:
    return yaml.safe_load(render_dvc_yaml(params_dir))["stages"]


def _dvc_params(stage: dict) -> dict[str, list[str]]:
    return {file: keys for entry in stage.get("params", []) for file, keys in entry.items()}


# ---------------------------------------------------------------------------- dvc.yaml
def test_dvc_export_tracks_the_dataset_profile(project):
    """Switching a dataset's profile changes the resolved dataset (resolution, splits, ...) even when
    the new profile has no ``dataset`` section of its own: the export must depend on ``profile``."""
    export = _dvc_params(_dvc_stages()["export_shapes"])
    assert export["params/datasets/shapes.yaml"] == ["profile", "dataset"]
    assert export["params/profiles/tiny.yaml"] == ["per_source.synthetic.dataset"]


def test_dvc_yaml_commands_read_the_params_dir_it_tracks(project):
    shutil.copytree(project / "params", project / "params alt")
    stages = _dvc_stages("params alt")
    for name, stage in stages.items():
        assert all(file.startswith("params alt/") for file in _dvc_params(stage)), name
        words = shlex.split(stage["cmd"])
        args = build_parser().parse_args(words[words.index("slotbench") + 1:])
        assert args.params_dir == "params alt", name
    assert not any("--params-dir" in stage["cmd"] for stage in _dvc_stages().values())


def test_dvc_and_snakemake_declare_the_params_of_stage_params(project):
    """Snakemake's params are ``stage_params``; dvc.yaml lists the same keys where params/defaults.yaml
    (which sets every ``eval`` and bookkeeping ``train`` key) holds them. The rules' params functions
    are reached through Snakemake's API (``WorkflowApi._workflow``: no public accessor)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    for name in ("Snakefile", "workflow"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, project / name)
    stages = _dvc_stages()
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=project / "Snakefile",
                                workdir=project)._workflow
        for model in MODELS:
            cfg = resolve("shapes", model, project / "params")
            wildcards = SimpleNamespace(dataset="shapes", model=model, seed="0", kind="recon")
            for stage in ("train", "eval_seg", "eval_recon", "eval_comp_gen", "fvd"):
                smk = json.loads(workflow.get_rule(stage).params["config"](wildcards))
                assert smk == json.loads(json.dumps(stage_params(cfg, stage))), (model, stage)
                dvc_name = f"{stage}_shapes_{model}_seed0" + ("_recon" if stage == "fvd" else "")
                declared = _dvc_params(stages[dvc_name]).get("params/defaults.yaml", [])
                section = {"train": "train", "fvd": "fvd"}.get(stage, "eval")
                defaults = yaml.safe_load((project / "params/defaults.yaml").read_text())[section]
                expected = [k for k in stage_keys(cfg, stage)
                            if k == section or (k.startswith(f"{section}.") and k.split(".")[1] in defaults)]
                assert declared == expected, (model, stage)
    assert "eval.sampler" in _dvc_params(stages["eval_recon_shapes_slotdiffusion_seed0"])["params/defaults.yaml"]
    assert "eval.sampler" not in _dvc_params(stages["eval_recon_shapes_savi_seed0"])["params/defaults.yaml"]


def test_dvc_tracks_a_whole_section_where_a_key_could_be_added_unseen(project):
    """tiny.yaml's ``eval`` lacks ``num_videos``: DVC would not see it appear (``dvc exp run -S``), so
    the whole section is tracked; defaults.yaml sets every key, so only the keys read are."""
    seg = _dvc_params(_dvc_stages()["eval_seg_shapes_savi_seed0"])
    assert seg["params/profiles/tiny.yaml"] == ["eval"]
    assert seg["params/defaults.yaml"] == ["eval.split", "eval.num_videos", "eval.batch_size", "eval.chunk_len"]


# ---------------------------------------------------------------------------- evaluation keys
def test_only_the_stages_that_read_an_eval_key_depend_on_it(project):
    """eval.sampler is SlotDiffusion's decoding: SAVi and STEVE, and every eval_seg, ignore it."""
    stages = ("eval_seg", "eval_recon", "eval_comp_gen")
    before = {(m, s): stage_params(resolve("shapes", m, project / "params"), s) for m in MODELS for s in stages}
    edit_yaml(project / "params/defaults.yaml", "eval.sampler", "ddim")
    changed = {(m, s) for m in MODELS for s in stages
               if stage_params(resolve("shapes", m, project / "params"), s) != before[m, s]}
    assert changed == {("slotdiffusion", "eval_recon"), ("slotdiffusion", "eval_comp_gen")}
    edit_yaml(project / "params/defaults.yaml", "eval.lpips", False)
    assert stage_params(resolve("shapes", "savi", project / "params"), "eval_seg") == before["savi", "eval_seg"]


#: A valid other value for every ``eval`` key.
OTHER = {"split": "validation", "num_videos": 2, "batch_size": 3, "chunk_len": 1, "recon_batch_size": 3,
         "comp_batch_size": 3, "sampler": "ddim", "sampler_steps": 3, "seed": 1, "save_videos": False,
         "lpips": False, "vis_videos": 2}
MODEL_FILES = {"savi": (SAVI, None), "steve": (STEVE_CFG, DVAE), "slotdiffusion": (SD_CFG, VQVAE)}


def _outputs(run, eval_cfg: dict, root: Path) -> dict:
    """The record ``run`` writes with ``eval_cfg``, and the bytes of every frame it saves."""
    run(eval_cfg, root / "out.json", root / "vids")
    frames = {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "vids").rglob("*.png"))}
    return {"record": json.loads((root / "out.json").read_text()), "frames": frames}


@pytest.mark.parametrize("model", MODELS)
def test_an_undeclared_eval_key_changes_no_output(model, tmp_path, no_lpips_weights):  # noqa: F811
    """For each evaluation stage and model, every ``eval`` key left out of ``stage_params`` is set to
    another value: the record and the saved frames stay byte for byte the same."""
    base = dict(EVAL, chunk_len=2, batch_size=2)
    assert set(OTHER) == set(base) == set(defs.EVAL), "give a new eval key another value here"
    res, t = 16, 2
    _data(tmp_path / "data", n=3, t=t, res=res)
    _checkpoint(tmp_path / "model.pt", *MODEL_FILES[model], res=res, t=t)
    ckpt, data = tmp_path / "model.pt", tmp_path / "data"
    stages = {
        "eval_seg": lambda cfg, out, _: run_eval_seg(cfg, RUNTIME, ckpt, data, out, progress=False),
        "eval_recon": lambda cfg, out, vids: er.run_eval_recon(cfg, RUNTIME, ckpt, data, out, vids, progress=False),
        "eval_comp_gen": lambda cfg, out, vids: er.run_eval_comp_gen(cfg, RUNTIME, ckpt, data, out, vids,
                                                                     progress=False),
    }
    for stage, run in stages.items():
        model_cfg = resolve("shapes", model, REPO / "params")["model"]
        declared = stage_params({"model": model_cfg, "eval": base}, stage)["eval"]
        reference = _outputs(run, base, tmp_path / stage)
        for key in sorted(set(base) - set(declared)):
            assert _outputs(run, dict(base, **{key: OTHER[key]}), tmp_path / stage) == reference, (stage, key)


# ---------------------------------------------------------------------------- training keys
def test_bookkeeping_keys_change_neither_the_weights_nor_the_training_params(project, tiny_data):
    """checkpoint_every, num_workers and val_every: same weights, same train.json validation, same
    fingerprint (so an interrupted run resumes); log_every and val_clips change train.json and stay."""
    prof = project / "params/profiles/tiny.yaml"
    edit_yaml(prof, "train.max_steps", 4)
    before = resolve("shapes", "savi", project / "params")
    train(before, tiny_data, project / "a", seed=0, progress=False)
    for key, value in (("checkpoint_every", 1), ("num_workers", 2), ("val_every", 1)):
        edit_yaml(prof, f"train.{key}", value)
    after = resolve("shapes", "savi", project / "params")
    train(after, tiny_data, project / "b", seed=0, progress=False)
    a, b = checkpoint.load(project / "a/model.pt"), checkpoint.load(project / "b/model.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["fingerprint"] == b["fingerprint"] and stage_params(before, "train") == stage_params(after, "train")
    summaries = [json.loads((project / run / "train.json").read_text()) for run in ("a", "b")]
    assert summaries[0]["validation"] == summaries[1]["validation"]
    for key, value in (("log_every", 3), ("val_clips", 2)):
        changed = resolve("shapes", "savi", project / "params")
        changed["train"][key] = value
        assert stage_params(changed, "train") != stage_params(after, "train"), key
    tok = resolve_tokenizer("shapes", "dvae", project / "params")
    assert not {"train.checkpoint_every", "train.num_workers", "train.val_every"} & set(stage_keys(tok, "tokenizer"))


def _imported_files(*modules: str) -> set[str]:
    """Package files (relative to it) loaded by importing ``modules`` in a fresh interpreter."""
    code = (f"import sys; import {', '.join(modules)}; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('slotbench')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {str(Path(f).relative_to(paths.PACKAGE_DIR)) for f in out.split()}


def _without_code(relative: str) -> bool:
    """Files no stage lists: the path patterns and stage declarations, the package's version,
    docstring-only package files."""
    if relative in ("paths.py", "pipeline.py", "__init__.py"):
        return True
    body = ast.parse((paths.PACKAGE_DIR / relative).read_text()).body
    return relative.endswith("__init__.py") and all(isinstance(node, ast.Expr) for node in body)


@pytest.mark.parametrize("stage, modules", [
    # the CLI's train / tokenizer commands, their `init` import, and LPIPS (a VQ-VAE's perceptual loss,
    # imported inside training/tasks.py)
    ("train", ("slotbench.training.loop", "slotbench.interop.stage", "slotbench.metrics.lpips")),
    ("tokenizer", ("slotbench.training.loop", "slotbench.interop.stage", "slotbench.metrics.lpips")),
    # eval_seg, and the MLflow logging it imports when it runs (the training imports segmentation.py alone)
    ("eval_seg", ("slotbench.evaluation.segmentation", "slotbench.evaluation.tracking")),
])
def test_stage_code_is_what_the_stage_imports(stage, modules):
    imported = _imported_files(*modules)
    listed = set(stage_code(stage, paths.PACKAGE_DIR))
    assert listed <= imported, f"{stage} lists code it never imports: {sorted(listed - imported)}"
    missing = {f for f in imported - listed if not _without_code(f)}
    assert not missing, f"{stage} imports code it does not list: {sorted(missing)}"
