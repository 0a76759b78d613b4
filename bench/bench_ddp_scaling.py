"""Training throughput of 1 process vs 2 data-parallel processes (DDP, gloo) on CPU.

Runs the real ``train`` stage (SAVi on the embedded ``shapes`` data, ``shapes`` scale profile,
global batch ``--batch-size``) in a scratch project under ``bench/scratch/ddp_scaling/``, reading the
repository's ``params/`` with the benchmark's settings given as ``--set`` options:

* ``1 process x 1 thread``: the baseline;
* ``1 process x 2 threads``: the same CPU budget as 2 processes, spent on intra-op threads;
* ``2 processes x 1 thread``: ``torchrun --standalone --nproc-per-node 2`` (gloo), each process
  computing half of the same global batch.

Throughput is ``train.json``'s ``clips_per_s`` (global clips per second of the training loop,
the one final validation pass over ``val_clips: 1`` included). Writes
``bench/results/ddp_scaling.json`` and ``bench/results/ddp_scaling.md``.

Usage: ``python bench/bench_ddp_scaling.py [--steps 40] [--batch-size 16]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "bench" / "scratch" / "ddp_scaling"
CASES = ((1, 1), (1, 2), (2, 1))  # (processes, threads per process)


def _settings(steps: int, batch_size: int, threads: int) -> list[str]:
    """The ``--params-dir`` and ``--set`` options of every stage: the repository's ``params/`` (the
    ``shapes`` profile) as they are, with this benchmark's run length, batch and threads."""
    sets = [f"train.max_steps={steps}", f"train.batch_size={batch_size}", f"train.checkpoint_every={10 * steps}",
            f"train.log_every={10 * steps}", f"train.val_every={10 * steps}", "train.val_clips=1",
            "tracking.enabled=false", f"runtime.threads={threads}"]
    return ["--params-dir", str(ROOT / "params"), *(arg for item in sets for arg in ("--set", item))]


def _prepare() -> None:
    """``bench/scratch/ddp_scaling/data/shapes``: the exported data (once)."""
    if not (SCRATCH / "data" / "shapes" / "meta.json").is_file():
        _run([sys.executable, "-m", "slotbench", "export", "--dataset", "shapes", "--params-dir", str(ROOT / "params"),
              "--no-progress"], threads=2)


def _run(cmd: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=SCRATCH, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def measure(processes: int, threads: int, steps: int, batch_size: int) -> dict:
    """Train once with ``processes`` x ``threads``; the run's ``train.json`` numbers."""
    run_dir = SCRATCH / "results" / "shapes" / "savi" / "seed0"
    shutil.rmtree(run_dir, ignore_errors=True)
    launch = ([sys.executable, "-m", "slotbench"] if processes == 1 else
              [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "slotbench"])
    _run(launch + ["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress",
                   *_settings(steps, batch_size, threads)], threads)
    summary = json.loads((run_dir / "train.json").read_text())
    return {"processes": processes, "threads_per_process": threads, "clips_per_s": summary["clips_per_s"],
            "wall_time_s": summary["wall_time_s"], "steps": summary["steps"], "train_loss": summary["train_loss"]}


def write_markdown(record: dict, path: Path) -> None:
    base = record["cases"][0]["clips_per_s"]
    lines = [
        "# DDP scaling: training throughput, 1 vs 2 processes on CPU",
        "",
        f"Generated {record['date']} by `bench/bench_ddp_scaling.py`. {record['machine']['cpu']}, "
        f"{record['machine']['cores']} cores, torch {record['machine']['torch']}, "
        f"python {record['machine']['python']}; "
        f"load average before / after: {record['load_before']} / {record['load_after']} (the machine was shared "
        "with other jobs: read the numbers as indicative).",
        "",
        f"SAVi, `shapes` profile (32x32 frames, 3-frame clips), global batch {record['batch_size']}, "
        f"{record['steps']} steps, float32, gloo backend for 2 processes. Throughput: global clips per second of "
        "the training loop (`train.json` clips_per_s).",
        "",
        "| processes x threads | clips/s | wall time (s) | speed-up vs 1x1 | final train loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for case in record["cases"]:
        lines.append(f"| {case['processes']} x {case['threads_per_process']} | {case['clips_per_s']:.1f} | "
                     f"{case['wall_time_s']:.1f} | {case['clips_per_s'] / base:.2f} | {case['train_loss']:.4f} |")
    lines += ["", "Every case trains on the same global batches (each of 2 processes takes half of each batch), "
              "so the losses agree up to floating-point summation order and the random numbers of dropout, "
              "which are drawn per micro-batch (`tests/test_ddp.py` checks the equality with 1 process and 2 "
              "accumulation steps).", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    _prepare()
    load_before = round(os.getloadavg()[0], 2)
    cases = [measure(p, t, args.steps, args.batch_size) for p, t in CASES]
    record = {
        "benchmark": "ddp_scaling",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "model": "savi", "profile": "shapes", "steps": args.steps, "batch_size": args.batch_size,
        "cases": cases,
        "speedup_2proc_vs_1x1": round(cases[2]["clips_per_s"] / cases[0]["clips_per_s"], 3),
        "speedup_2proc_vs_1x2": round(cases[2]["clips_per_s"] / cases[1]["clips_per_s"], 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ddp_scaling.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record, RESULTS / "ddp_scaling.md")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
