# Shared Python of the rules: parameters, wildcard constraints and input functions.
# Parameters are read with slotbench's own loader, so a bad params file stops here with the
# same clear error the command line gives, before any job runs.

import json
import sys
from pathlib import Path

from slotbench import paths
from slotbench.config import load_grid, load_resources, resolve, resolve_dataset, resolve_tokenizer, stage_params
from slotbench.jobs import SHELL_PREFIX, command_prefix, snakemake_resources

shell.prefix(SHELL_PREFIX)  # defines log_to: tee that outlives SLURM's SIGTERM to the job
PARAMS_DIR = paths.PARAMS_DIR
GRID = load_grid(PARAMS_DIR)
RESOURCES = load_resources(PARAMS_DIR)
PYTHON = sys.executable  # the interpreter running Snakemake (the project's virtual environment)
# `slotbench`, or torchrun (DDP) when resources.{tokenizer,train}.processes > 1
TOKENIZER_CMD = command_prefix(RESOURCES, "tokenizer", PYTHON)
TRAIN_CMD = command_prefix(RESOURCES, "train", PYTHON)


def _names(kind):
    return sorted(p.stem for p in Path(PARAMS_DIR, kind).glob("*.yaml"))


wildcard_constraints:
    kind="recon|comp",
    dataset="|".join(_names("datasets")),
    model="|".join(_names("models")),
    tokenizer="|".join(_names("tokenizers")),
    seed=r"\d+",


def all_targets():
    return [p.format(dataset=d) for d in GRID["datasets"] for p in (paths.DATASET_TABLE, paths.REPORT)]


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def export_params(wildcards):
    """The dataset section: a change re-runs the export and everything after it."""
    return _canonical(resolve_dataset(wildcards.dataset, PARAMS_DIR))


def tokenizer_params(wildcards):
    cfg = resolve_tokenizer(wildcards.dataset, wildcards.tokenizer, PARAMS_DIR)
    return _canonical(stage_params(cfg, "tokenizer"))


def tokenizer_inputs(wildcards):
    """The data, or the original checkpoint that `init: {from: original}` imports instead of training."""
    init = resolve_tokenizer(wildcards.dataset, wildcards.tokenizer, PARAMS_DIR)["tokenizer"]["init"]
    return {"init": init["path"]} if init else {"export": paths.EXPORT_RECEIPT.format(dataset=wildcards.dataset)}


def train_inputs(wildcards):
    """The data, plus the trained tokenizer for STEVE and SlotDiffusion; or only the original
    checkpoint (tokenizer included) that `init: {from: original}` imports instead of training."""
    model = resolve(wildcards.dataset, wildcards.model, PARAMS_DIR)["model"]
    if model["init"]:
        return {"init": model["init"]["path"]}
    inputs = {"export": paths.EXPORT_RECEIPT.format(dataset=wildcards.dataset)}
    tokenizer = model.get("tokenizer")
    if tokenizer:
        inputs["tokenizer"] = paths.TOKENIZER_CHECKPOINT.format(dataset=wildcards.dataset, tokenizer=tokenizer)
    return inputs


def pair_params(stage):
    """The params function of a (dataset, model) rule: what ``stage`` reads of the pair's config."""

    def params(wildcards):
        return _canonical(stage_params(resolve(wildcards.dataset, wildcards.model, PARAMS_DIR), stage))

    return params


def fvd_record(wildcards):
    """The evaluation record whose videos the FVD compares with the ground truth."""
    pattern = paths.RECON_METRICS if wildcards.kind == "recon" else paths.COMP_GEN_RECORD
    return pattern.format(dataset=wildcards.dataset, model=wildcards.model, seed=wildcards.seed)


def job_resources(stage):
    """GPUs, CPUs, memory and runtime of one job of ``stage`` (params ``resources``; sent to SLURM)."""
    return snakemake_resources(RESOURCES, stage)


def code(stage):
    """The stage's source files: Snakemake does not track imported code by itself."""
    return paths.stage_code(stage)
