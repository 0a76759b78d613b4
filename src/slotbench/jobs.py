"""What one job of a stage asks for, and how its command starts, from ``resources`` in params.

The Snakefile turns :func:`snakemake_resources` into each rule's ``resources:`` (which the SLURM
profile sends to ``sbatch``), and both the Snakefile and ``dvc.yaml`` start the training stages
with :func:`command_prefix`: the plain ``slotbench`` command, or ``torchrun`` when
``resources.{tokenizer,train}.processes`` asks for several processes (DDP on one node).
"""

from __future__ import annotations

from .pipeline import STAGES

#: Prepended to every Snakemake rule's shell command (Snakemake's own ``set -euo pipefail`` kept):
#: ``log_to FILE`` copies the job's output to its log, as ``tee`` does, but ignores SIGTERM. SLURM
#: signals every process of a job before pre-emption; a ``tee`` that died first would break the
#: pipe, and the training would fail on its next progress-bar write, before its checkpoint. (No
#: braces: Snakemake formats the prefix.)
SHELL_PREFIX = "set -euo pipefail; log_to() ( trap '' TERM; exec tee \"$1\" ); "


def snakemake_resources(resources: dict, stage: str) -> dict[str, int]:
    """Snakemake's standard resource names for one job of ``stage``.

    Args:
        resources: the validated ``resources`` section of ``params/defaults.yaml``.
        stage: a stage with a ``resources`` entry (``pipeline.STAGES``).
    Returns:
        ``gpu`` (GPUs of the job), ``cpus_per_task``, ``mem_mb`` and ``runtime`` (minutes).
    """
    job = resources[STAGES[stage].resources]
    if "processes" in job:
        n = job["processes"]
        gpus, cpus = n * job["gpus_per_process"], n * job["cpus_per_process"]
    else:
        gpus, cpus = job["gpus"], job["cpus"]
    return {"gpu": gpus, "cpus_per_task": cpus, "mem_mb": job["mem_mb"], "runtime": job["runtime_min"]}


def command_prefix(resources: dict, stage: str, python: str | None = None) -> str:
    """What precedes ``<stage> --dataset ...``: ``slotbench``, or ``torchrun ... -m slotbench`` for DDP.

    Args:
        resources: the validated ``resources`` section.
        python: the interpreter to run (Snakemake's ``{PYTHON} -m ...``); ``None`` for the console
            scripts of the active environment (``dvc.yaml``).
    """
    processes = resources.get(STAGES[stage].resources, {}).get("processes", 1)
    if processes == 1:
        return f"{python} -m slotbench" if python else "slotbench"
    torchrun = f"{python} -m torch.distributed.run" if python else "torchrun"
    return f"{torchrun} --standalone --nproc-per-node {processes} -m slotbench"
