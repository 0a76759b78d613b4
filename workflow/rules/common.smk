# Shared Python of the rules: parameters, wildcard constraints and input functions.
# Parameters are read with slotbench's own loader, so a bad params file stops here with the
# same clear error the command line gives, before any job runs.

import json
import sys
from pathlib import Path

from slotbench import paths
from slotbench.config import load_grid, resolve, resolve_dataset, resolve_tokenizer, stage_params

PARAMS_DIR = paths.PARAMS_DIR
GRID = load_grid(PARAMS_DIR)
PYTHON = sys.executable  # the interpreter running Snakemake (the project's virtual environment)


def _names(kind):
    return sorted(p.stem for p in Path(PARAMS_DIR, kind).glob("*.yaml"))


wildcard_constraints:
    kind="recon|comp",
    dataset="|".join(_names("datasets")),
    model="|".join(_names("models")),
    tokenizer="|".join(_names("tokenizers")),
    seed=r"\d+",


def all_targets():
    return [paths.DATASET_TABLE.format(dataset=d) for d in GRID["datasets"]]


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def export_params(wildcards):
    """The dataset section: a change re-runs the export and everything after it."""
    return _canonical(resolve_dataset(wildcards.dataset, PARAMS_DIR))


def tokenizer_params(wildcards):
    cfg = resolve_tokenizer(wildcards.dataset, wildcards.tokenizer, PARAMS_DIR)
    return _canonical(stage_params(cfg, "tokenizer"))


def train_inputs(wildcards):
    """The data, plus the trained tokenizer for STEVE and SlotDiffusion."""
    inputs = {"meta": paths.DATA_META.format(dataset=wildcards.dataset)}
    tokenizer = resolve(wildcards.dataset, wildcards.model, PARAMS_DIR)["model"].get("tokenizer")
    if tokenizer:
        inputs["tokenizer"] = paths.TOKENIZER_CHECKPOINT.format(dataset=wildcards.dataset, tokenizer=tokenizer)
    return inputs


def train_params(wildcards):
    return _canonical(stage_params(resolve(wildcards.dataset, wildcards.model, PARAMS_DIR), "train"))


def eval_params(wildcards):
    """The ``eval`` section (shared by eval_seg, eval_recon and eval_comp_gen)."""
    return _canonical(stage_params(resolve(wildcards.dataset, wildcards.model, PARAMS_DIR), "eval_seg"))


def fvd_params(wildcards):
    return _canonical(stage_params(resolve(wildcards.dataset, wildcards.model, PARAMS_DIR), "fvd"))


def fvd_record(wildcards):
    """The evaluation record whose videos the FVD compares with the ground truth."""
    pattern = paths.RECON_METRICS if wildcards.kind == "recon" else paths.COMP_GEN_RECORD
    return pattern.format(dataset=wildcards.dataset, model=wildcards.model, seed=wildcards.seed)


def code(stage):
    """The stage's source files: Snakemake does not track imported code by itself."""
    return paths.stage_code(stage)
