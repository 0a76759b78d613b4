"""Data-parallel training on CPU (gloo): 2 processes match 1 process on the same global batch, and resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from slotbench import checkpoint
from slotbench.config import resolve
from slotbench.data.dataset import StepBatchSampler
from slotbench.jobs import command_prefix, snakemake_resources
from slotbench.training import distributed, loop

#: the run of every test here: the tiny profile, 6 steps
STEPS = {"train.max_steps": 6}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _StopAtStep4OnRank1(loop._StopRequest):
    """SIGTERM seen by rank 1 alone, during step 4 (what a pre-emption looks like to one process)."""

    calls = 0

    @property
    def requested(self) -> bool:
        _StopAtStep4OnRank1.calls += 1
        return distributed.from_environment().rank == 1 and _StopAtStep4OnRank1.calls >= 4

    @requested.setter
    def requested(self, value: bool) -> None:
        pass


def _worker(rank: int, port: int, params_dir: str, data_root: str, run_dir: str, seed: int, stop: bool,
            overrides: dict) -> None:
    """One of 2 gloo processes, as torchrun would start it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if stop:
        loop._StopRequest = _StopAtStep4OnRank1
    try:
        loop.train(resolve("shapes", "savi", params_dir, overrides), data_root, run_dir, seed=seed, progress=False)
    except SystemExit as exc:
        assert "SIGTERM received: checkpoint of step 4" in str(exc)


def _two_processes(project, tiny_data, run_dir, seed: int, overrides: dict, stop: bool = False) -> None:
    mp.spawn(_worker, args=(_free_port(), str(project / "params"), str(tiny_data), str(run_dir), seed, stop, overrides),
             nprocs=2, join=True)


def _assert_same_weights(a, b) -> None:
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key


def _one_process_with_accumulation(project, tiny_data, seed: int, overrides: dict):
    """The reference: 1 process, the global batch of 4 as 2 accumulated micro-batches of 2."""
    run = project / "results" / "single"
    cfg = resolve("shapes", "savi", project / "params", {**overrides, "train.grad_accum_steps": 2})
    summary = loop.train(cfg, tiny_data, run, seed=seed, progress=False)
    return summary, checkpoint.load(run / "model.pt")["model"]


def test_two_processes_match_one_process_on_the_same_global_batch(project, tiny_data):
    single, single_weights = _one_process_with_accumulation(project, tiny_data, seed=1, overrides=STEPS)

    run = project / "results" / "ddp"
    _two_processes(project, tiny_data, run, seed=1, overrides=STEPS)
    ddp = checkpoint.load(run / "model.pt")
    _assert_same_weights(single_weights, ddp["model"])
    summary = json.loads((run / "train.json").read_text())
    assert summary["processes"] == 2 and single["processes"] == 1
    assert summary["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
    assert summary["validation"] == pytest.approx(single["validation"], rel=1e-4, abs=1e-6)
    assert not (run / "_work" / "mlflow_run_id").exists()  # tracking off; rank 1 never writes


def test_ddp_stops_together_and_resumes_under_torchrun(project, tiny_data):
    """Rank 1 alone sees SIGTERM: both stop after rank 0's checkpoint; torchrun then resumes the run."""
    overrides = {**STEPS, "train.checkpoint_every": 100}
    _, single_weights = _one_process_with_accumulation(project, tiny_data, seed=2, overrides=overrides)

    run = project / "results" / "shapes" / "savi" / "seed2"
    _two_processes(project, tiny_data, run, seed=2, overrides=overrides, stop=True)
    assert [p.name for p in checkpoint.scratch_checkpoints(run / "_work")] == ["ckpt_00000004.pt"]
    assert not (run / "model.pt").exists()

    resources = {"train": {"processes": 2, "gpus_per_process": 0, "cpus_per_process": 1, "mem_mb": 1,
                           "runtime_min": 1}}
    cmd = (command_prefix(resources, "train", sys.executable).split()
           + ["train", "--dataset", "shapes", "--model", "savi", "--seed", "2", "--no-progress"]
           + [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")])
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from step 4 of 6" in done.stdout and "x 2 process(es)" in done.stdout
    _assert_same_weights(single_weights, checkpoint.load(run / "model.pt")["model"])


def test_global_batch_is_split_evenly_across_processes_and_micro_batches():
    single = list(StepBatchSampler(24, 8, seed=5, start_step=2, total_steps=5))
    per_rank = [list(StepBatchSampler(24, 8, seed=5, start_step=2, total_steps=5, parts=4, first_part=2 * r,
                                      micro_batches=2)) for r in range(2)]
    for k, batch in enumerate(single):
        parts = per_rank[0][2 * k:2 * k + 2] + per_rank[1][2 * k:2 * k + 2]
        assert all(len(p) == 2 for p in parts) and [i for p in parts for i in p] == batch
    assert distributed.micro_batch_size(32, 2, 2) == 8
    with pytest.raises(ValueError, match="train.batch_size 32 does not split into 3 processes x 1"):
        distributed.micro_batch_size(32, 3, 1)


def test_training_jobs_launch_torchrun_only_for_several_processes():
    job = {"processes": 1, "gpus_per_process": 1, "cpus_per_process": 8, "mem_mb": 32000, "runtime_min": 60}
    resources = {"train": job, "eval": {"gpus": 1, "cpus": 4, "mem_mb": 8000, "runtime_min": 30}}
    assert command_prefix(resources, "train") == "slotbench"
    assert command_prefix(resources, "eval_seg", "/py") == "/py -m slotbench"
    resources["train"] = {**job, "processes": 4}
    assert command_prefix(resources, "train") == "torchrun --standalone --nproc-per-node 4 -m slotbench"
    assert snakemake_resources(resources, "train") == {"gpu": 4, "cpus_per_task": 32, "mem_mb": 32000, "runtime": 60}
    assert snakemake_resources(resources, "eval_recon") == {"gpu": 1, "cpus_per_task": 4, "mem_mb": 8000,
                                                            "runtime": 30}
