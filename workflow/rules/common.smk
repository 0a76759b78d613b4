# Shared Python of the rules: everything a rule says about its stage comes from the stage's one
# declaration (src/slotbench/pipeline.py): inputs, outputs, params, resources, log and command.
# Parameters are read with slotbench's own loader, so a bad params file stops here with the
# same clear error the command line gives, before any job runs.

import json
import sys
from pathlib import Path

from slotbench import paths
from slotbench.config import RunConfigs, load_resources, parse_overrides, workflow_set
from slotbench.jobs import SHELL_PREFIX, command_prefix, snakemake_resources
from slotbench.pipeline import STAGES, stage_code

shell.prefix(SHELL_PREFIX)  # defines log_to: tee that outlives SLURM's SIGTERM to the job
PARAMS_DIR = paths.PARAMS_DIR
# `--config set=[train.max_steps=5,tracking.enabled=false]`: parameters for this run only (checked here,
# before any job runs), from $SLOTBENCH_SET, which the Snakefile sets and the jobs read, each those of the
# sections its configuration has; a job's params below include them, so a change re-runs what reads it
CONFIGS = RunConfigs(PARAMS_DIR, parse_overrides(workflow_set()))
GRID = CONFIGS.grid
RESOURCES = load_resources(PARAMS_DIR)
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
    return [p.format(dataset=d) for d in GRID["datasets"] for p in (paths.DATASET_TABLE, paths.REPORT)]


def _run(stage, wildcards):
    return {w: getattr(wildcards, w) for w in STAGES[stage].wildcards}


def stage_inputs(stage):
    """The input function of ``stage``'s rule (use with ``unpack``): its declared inputs, by name, plus
    its source files (Snakemake does not track imported code by itself)."""

    def inputs(wildcards):
        named = {}
        for item in STAGES[stage].inputs(_run(stage, wildcards), CONFIGS):
            named.setdefault(item.name, []).append(item.path)
        return {**named, "code": stage_code(stage)}

    return inputs


def stage_outputs(stage):
    """``stage``'s outputs that Snakemake tracks, by name (grid-wide ones expanded)."""
    declared = STAGES[stage].outputs
    return {o.name: expand(o.pattern, **{k[:-1]: GRID[k] for k in o.over}, allow_missing=True)
            if o.over else o.pattern for o in declared if o.snakemake}


def stage_params(stage):
    """The params function of ``stage``'s rule: what a job reads of the parameters (a change re-runs it)."""

    def params(wildcards):
        return json.dumps(CONFIGS.stage_params(stage, _run(stage, wildcards)), sort_keys=True, separators=(",", ":"))

    return params


def stage_resources(stage):
    """GPUs, CPUs, memory and runtime of one job of ``stage`` (params ``resources``; sent to SLURM)."""
    return snakemake_resources(RESOURCES, stage) if STAGES[stage].resources else {}


def stage_log(stage):
    return STAGES[stage].log()


def stage_shell(stage):
    """The job's command: ``slotbench <command> --<wildcard> {wildcards.<wildcard>} ...`` (torchrun for a
    training stage whose resources ask for several processes), its output copied to the log."""
    declared = STAGES[stage]
    flags = " ".join(f"--{w} {{wildcards.{w}}}" for w in declared.wildcards)
    return f"{command_prefix(RESOURCES, stage, PYTHON)} {declared.command} {flags} 2>&1 | log_to {{log}}"
