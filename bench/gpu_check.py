"""The GPU check: every CUDA path of slotbench measured on one GPU in one command, within 8 minutes.

Run with ``bash bench/gpu_check.sh`` (this script). Cases, in the order they run:

- ``dag/tiny``: the tiny DAG end to end (``snakemake --config profile=tiny``) in a copy of the
  workflow with ``runtime.device: cuda`` (tracking off): wall time and pass/fail.
- ``original/<network>/<amp>``: one optimisation step of the original implementation with its
  own trainer (``bench/original_code.py``: nerv's method class; fp16 = its ``--fp16`` autocast
  and gradient scaler, bf16 = its float32 step inside bf16 autocast; cuDNN benchmark on, its
  ``--cudnn``) on the batch of the slotbench case below, when its checkouts are found
  (``SLOTDIFFUSION_REPO`` / ``NERV_REPO``, else ``bench/scratch/original/{SlotDiffusion,nerv}``);
  otherwise recorded as not available, with the reason.
- ``train/<network>/<variant>``: one optimisation step of slotbench (forward, loss, backward,
  gradient clipping, fused Adam, as ``slotbench.training.loop`` runs it) for SAVi, STEVE, its dVAE,
  SlotDiffusion and its VQ-VAE at the reference MOVi-E configuration as ``params/`` resolves it
  (128x128, ``train.batch_size`` clips of ``train.n_sample_frames`` frames, the global batch on
  one GPU), random weights and inputs (the cost does not depend on them); variants: bf16 autocast
  with channels_last (slotbench's default on CUDA), fp16 autocast with gradient scaling (as the
  original runs), bf16 with channels_last off. Seconds per step (median of the timed steps after
  warm-up steps), clips per second and peak memory in MiB (``torch.cuda.max_memory_allocated``).
- ``decode/<model>``: seconds per frame decoded from slots as the ``eval_recon`` stage decodes them
  (float32): SlotDiffusion with ``eval.sampler`` / ``eval.sampler_steps`` on one reconstruction
  batch (``eval.recon_batch_size`` videos of ``dataset.video_len`` frames), STEVE's greedy
  autoregressive decoding with the key/value cache on one decode batch (24 frames).
- ``compile/<network>``: the bf16 channels_last step under ``torch.compile``
  (``slotbench.training.fast_path.compiled_step``; compile seconds apart), cheapest network first,
  with the time left.

Each case has a time budget (:data:`CASE_CAP_S`, cut to what its section and the whole run have
left): one that runs over is stopped and recorded as skipped with the reason, as is one for which
no time is left. slotbench's cases run in one child process, the original's in another (its
import puts placeholder modules in place of missing packages; none of that reaches slotbench's).

``--dry-run``: on a machine without CUDA, every case on the CPU at the tiny profile (1 warm-up
and 1 timed step; ``torch.compile`` in its ``force_eager`` stance, nothing compiled; the DAG up to
SAVi's trained model), records marked ``"dry_run": true`` in a temporary folder unless
``--out-dir`` names one. Its numbers only show that the code runs.

Writes ``<out-dir>/gpu_check.json`` and ``gpu_check.md`` (dry run: ``gpu_check_dry.*``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: cheapest first: the compile section runs them in this order with the time left
NETWORKS = ("dvae", "vqvae", "savi", "steve", "slotdiffusion")
TOKENIZERS = ("dvae", "vqvae")
#: the slotbench training variants: slotbench's CUDA default, fp16 as the original runs, channels_last off
TRAIN_VARIANTS = {"bf16": {"amp": "bf16", "channels_last": True},
                  "fp16-scaler": {"amp": "fp16", "channels_last": True},
                  "bf16-no-channels-last": {"amp": "bf16", "channels_last": False}}
ORIGINAL_AMPS = ("fp16", "bf16")
DECODERS = ("slotdiffusion", "steve")
#: seconds one case may take at most
CASE_CAP_S = {"dag": 150, "original": 25, "train": 30, "decode": 45, "compile": 150}
#: seconds each section may take at most (compile: whatever is left of the whole budget); their sum
#: stays under the default budget, so that every section before compile gets some time
SECTION_CAP_S = {"dag": 150, "original": 100, "train": 120, "decode": 60}
#: a case is not started with less time than this left (seconds)
MIN_CASE_S = 3
#: seconds a child process may run past the run's deadline (its cases stop at the deadline themselves)
GRACE_S = 20
#: the sections in run order, grouped by process: ``dag`` from the parent (it starts Snakemake), the
#: others in child processes (the original's in its own)
STAGES = (("dag",), ("original",), ("train", "decode", "compile"))
DAG_TARGET = {False: "runs/tiny/results/shapes/table.csv", True: "runs/tiny/results/shapes/savi/seed0/model.pt"}


@dataclass(frozen=True)
class Mode:
    """How a run measures: on ``device``, ``warmup`` untimed then ``repeats`` timed steps per
    training case, ``decode_repeats`` timed decodes after one untimed."""

    dry: bool
    device: torch.device
    warmup: int
    repeats: int
    decode_repeats: int

    @classmethod
    def of(cls, dry: bool) -> Mode:
        if dry:
            return cls(True, torch.device("cpu"), 1, 1, 1)
        return cls(False, torch.device("cuda"), 2, 5, 3)


class CaseTimeout(BaseException):
    """A case ran past its budget (raised by SIGALRM; a BaseException, so that no ``except Exception``
    inside the measured code, such as ``compiled_step``'s fallback, swallows it)."""


def _raise_timeout(signum, frame) -> None:  # noqa: ARG001
    raise CaseTimeout


# ----------------------------------------------------------------------------- the plan
def plan() -> list[dict]:
    """Every case of the check in run order: ``{"id", "section", ...its settings}``."""
    cases = [{"id": "dag/tiny", "section": "dag"}]
    cases += [{"id": f"original/{n}/{amp}", "section": "original", "network": n, "amp": amp}
              for n in NETWORKS for amp in ORIGINAL_AMPS]
    cases += [{"id": f"train/{n}/{label}", "section": "train", "network": n, **variant}
              for n in NETWORKS for label, variant in TRAIN_VARIANTS.items()]
    cases += [{"id": f"decode/{n}", "section": "decode", "network": n} for n in DECODERS]
    cases += [{"id": f"compile/{n}", "section": "compile", "network": n, **TRAIN_VARIANTS["bf16"], "compile": True}
              for n in NETWORKS]
    return cases


def run_cases(cases: list[dict], measure: Callable[[dict], dict], deadline: float,
              record: Callable[[dict], None]) -> None:
    """Measure each case within its budget and ``record`` its row.

    A case's budget (seconds) is the least of its :data:`CASE_CAP_S`, what its section has left
    (:data:`SECTION_CAP_S`, counted from the section's first case) and what the run has left
    (``deadline``, seconds since the epoch). A row: the case, ``status`` (``ok``, ``skipped`` or
    ``failed``), ``reason`` (when not ok), ``budget_s``, ``case_wall_s`` and what ``measure`` returned.
    """
    section_end: dict[str, float] = {}
    for case in tqdm(cases, desc="gpu check cases", unit="case", dynamic_ncols=True):
        now = time.time()
        section = case["section"]
        section_end.setdefault(section, now + SECTION_CAP_S.get(section, deadline - now))
        budget = min(CASE_CAP_S[section], section_end[section] - now, deadline - now)
        if budget < MIN_CASE_S:
            spent = "the run's" if deadline - now < MIN_CASE_S else \
                f"the {section} section's {SECTION_CAP_S[section]} s"
            record({**case, "status": "skipped", "reason": f"no time left: {spent} budget is spent",
                    "budget_s": round(max(budget, 0), 1)})
            continue
        record({**case, **_measure_within(case, measure, budget), "budget_s": round(budget, 1)})


def _measure_within(case: dict, measure: Callable[[dict], dict], budget: float) -> dict:
    """``measure(case)`` stopped by SIGALRM after ``budget`` seconds; its status and numbers."""
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        result = {"status": "ok", **measure(case)}
    except CaseTimeout:
        result = {"status": "skipped", "reason": f"stopped after its budget of {budget:.0f} s"}
    except Exception as err:  # noqa: BLE001 -- a failing case is a result of the check
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}"[:600]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _free_memory()
    return {**result, "case_wall_s": round(time.perf_counter() - start, 1)}


def _free_memory() -> None:
    """Release what the finished case held: its tensors, cached GPU blocks and compiled graphs."""
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- measuring
def network_config(name: str) -> dict:
    """slotbench's resolved MOVi-E config of ``name`` (the tiny profile under ``SLOTBENCH_PROFILE=tiny``)."""
    from slotbench.config import resolve, resolve_tokenizer

    return (resolve_tokenizer if name in TOKENIZERS else resolve)("movi_e", name, ROOT / "params")


def random_batch(cfg: dict, device: torch.device) -> torch.Tensor:
    """A training batch ``[train.batch_size, train.n_sample_frames, 3, H, W]`` in [-1, 1] (a tokenizer's
    ``n_sample_frames`` is 1) at the configuration's frame size, on ``device``."""
    from slotbench.config import frame_size

    res, train = frame_size(cfg["dataset"]), cfg["train"]
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(train["batch_size"], train["n_sample_frames"], 3, res, res, generator=generator)
    return (video * 2 - 1).to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes, the GPU synchronised before and after."""
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def _peak_memory(device: torch.device) -> dict:
    """Peak memory in MiB since the case started (CUDA) or of the whole process (CPU: peak RSS)."""
    if device.type == "cuda":
        return {"peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_memory_kind": "process peak RSS (CPU)"}


def _step_times(step: Callable[[], float], mode: Mode) -> dict:
    """``mode.warmup`` untimed then ``mode.repeats`` timed calls of ``step`` (returns the loss): the
    median seconds per step, each timed step, and the last loss."""
    losses = []
    for _ in range(mode.warmup):
        losses.append(step())
    times = []
    for _ in range(mode.repeats):
        times.append(_timed(lambda: losses.append(step()), mode.device))
    return {"s_per_step": round(statistics.median(times), 4), "repeats_s": [round(t, 4) for t in times],
            "loss": losses[-1]}


def _shape(video: torch.Tensor) -> dict:
    batch, frames, _, res, _ = video.shape
    return {"batch": batch, "frames": frames, "resolution": res}


def _build(name: str, cfg: dict, device: torch.device) -> torch.nn.Module:
    """slotbench's training module of ``name`` (random weights; STEVE / SlotDiffusion on a random
    tokenizer; the VQ-VAE's LPIPS with random weights) as ``bench/suite.py`` builds it."""
    from suite import _build as build

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        return build(name, cfg, Path(tmp)).to(device)


def train_case(case: dict, mode: Mode) -> dict:
    """One slotbench training case: s/step, clips/s (clips of ``frames`` frames per second) and peak memory."""
    from slotbench.runtime import autocast
    from slotbench.training import fast_path
    from slotbench.training.distributed import LossStep
    from slotbench.training.tasks import param_groups

    device, amp = mode.device, case["amp"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = network_config(case["network"])
    model = _build(case["network"], cfg, device)
    if case["channels_last"]:
        fast_path.to_channels_last(model)
    tcfg = cfg["train"]
    optimizer = torch.optim.Adam(param_groups(model, tcfg), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                                 fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")
    video = random_batch(cfg, device)
    model.train()
    loss_step, compiled = LossStep(model), {}
    if case.get("compile"):
        start = time.perf_counter()
        with autocast(device, amp):
            loss_step, how = fast_path.compiled_step(loss_step, video)
        compiled = {"compile": how, "compile_s": round(time.perf_counter() - start, 1)}

    def step() -> float:
        if hasattr(model, "set_step"):
            model.set_step(0, 1000)
        with autocast(device, amp):
            loss = loss_step(video)["loss"]
        scaler.scale(loss).backward()
        _clip_like_the_loop(model, optimizer, scaler, tcfg["clip_grad"])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    times = _step_times(step, mode)
    return {**_shape(video), **times, **compiled, "clips_per_s": round(video.shape[0] / times["s_per_step"], 2),
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "cudnn_benchmark": torch.backends.cudnn.benchmark, **_peak_memory(device)}


def _clip_like_the_loop(model: torch.nn.Module, optimizer, scaler, clip: float) -> None:
    """Gradient clipping and the non-finite check as ``slotbench.training.loop`` does them (the
    norm is computed and read even when ``clip`` is off, unless the fp16 scaler checks instead)."""
    if not scaler.is_enabled():
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip) if clip > 0 else \
            torch.nn.utils.get_total_norm(grads)
        bool(torch.isfinite(norm))
    elif clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)


@torch.no_grad()
def decode_case(case: dict, mode: Mode) -> dict:
    """Seconds per frame decoded from random slots as ``eval_recon`` decodes them (float32, eval mode)."""
    from slotbench.evaluation.reconstruction import decode_slots, decoder_settings
    from slotbench.models.steve import DECODE_BATCH_FRAMES

    name, device = case["network"], mode.device
    cfg = network_config(name)
    model = _build(name, cfg, device).eval()
    ecfg, mcfg = cfg["eval"], cfg["model"]
    # one decode batch: STEVE decodes DECODE_BATCH_FRAMES frames at a time, SlotDiffusion samples a
    # reconstruction batch of whole videos at once
    videos, frames = (1, DECODE_BATCH_FRAMES) if name == "steve" else \
        (ecfg["recon_batch_size"], cfg["dataset"]["video_len"])
    slots = torch.randn(videos, frames, mcfg["num_slots"], mcfg["slot_size"], device=device)

    def decode() -> None:
        generator = torch.Generator().manual_seed(ecfg["seed"])
        decode_slots(model, slots, ecfg["sampler"], ecfg["sampler_steps"], generator)

    decode()  # warm-up
    times = [_timed(decode, device) for _ in range(mode.decode_repeats)]
    per_frame = statistics.median(times) / (videos * frames)
    return {"videos": videos, "frames": frames, "resolution": cfg["dataset"]["resolution"],
            "s_per_frame": round(per_frame, 5), "repeats_s": [round(t, 4) for t in times],
            **decoder_settings(model, ecfg)}


def original_case(case: dict, mode: Mode, code) -> dict:
    """The original's training step on slotbench's batch of the same case: s/step, clips/s, peak memory."""
    from original_code import original_steps
    from parity_original import SMALL

    name, amp, device = case["network"], case["amp"], mode.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # one epoch of exactly the steps run, whose mid-epoch checkpoint (save_interval 1) never comes;
    # a dry run: the 16x16 configuration of the parity check
    params = code.params(name, "movi_e", {**(SMALL[name][2] if mode.dry else {}), "max_epochs": 1,
                                          "save_interval": 1.0})
    torch.manual_seed(0)
    model = code.build(params)
    video = random_batch(network_config(name), device)
    batch = {"img": video.flatten(0, 1) if name in TOKENIZERS else video}
    n = mode.warmup + mode.repeats
    with tempfile.TemporaryDirectory() as tmp:
        trainer = code.trainer(params, model, n, Path(tmp), device=str(device), fp16=amp == "fp16")
        steps = original_steps(trainer, [batch] * n, list(range(n)))
        bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if amp == "bf16" and device.type == "cuda" else None

        def step() -> float:
            with bf16 or contextlib.nullcontext():
                return next(steps)["loss"]

        times = _step_times(step, mode)
    return {**_shape(video), **times, "clips_per_s": round(video.shape[0] / times["s_per_step"], 2),
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "cudnn_benchmark": torch.backends.cudnn.benchmark, **_peak_memory(device)}


# ----------------------------------------------------------------------------- child processes
def child(sections: list[str], mode: Mode, deadline: float, out: Path) -> None:
    """Run the cases of ``sections``, appending each row to ``out`` (JSON lines) as it finishes, so
    that the rows of a child stopped from outside are kept."""

    def record(row: dict) -> None:
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    cases = [c for c in plan() if c["section"] in sections]
    if mode.dry:  # torch.compile's code path runs, nothing is traced or compiled (tests/test_fast_path.py compiles)
        torch.compiler.set_stance("force_eager")
    if sections == ["original"]:
        measure = _original_measure(mode, cases, record)
        if measure is None:
            return
    else:
        def measure(case: dict) -> dict:
            return (decode_case if case["section"] == "decode" else train_case)(case, mode)
    run_cases(cases, measure, deadline, record)


def _original_measure(mode: Mode, cases: list[dict], record: Callable[[dict], None]):
    """The measuring function of the original's cases, or ``None`` after recording every case as
    not available when the original's code does not import."""
    from original_code import OriginalCode

    torch.backends.cudnn.benchmark = True  # the original's --cudnn
    try:
        code = OriginalCode()
    except (SystemExit, Exception) as err:  # noqa: BLE001 -- any import failure: not available, with the reason
        for case in cases:
            record({**case, "status": "skipped", "reason": f"original: not available ({type(err).__name__}: {err})"})
        return None
    return lambda case: original_case(case, mode, code)


def run_child(sections: tuple[str, ...], mode: Mode, deadline: float, folder: Path) -> list[dict]:
    """The rows of ``sections``, run in a child process (stopped :data:`GRACE_S` seconds after the
    run's deadline); a case the child did not reach is recorded as skipped with how the child ended."""
    out = folder / f"{'-'.join(sections)}.jsonl"
    timeout = max(deadline + GRACE_S - time.time(), 1)
    cmd = [sys.executable, __file__, "--child", ",".join(sections), "--deadline", str(deadline), "--rows", str(out)]
    try:
        code = subprocess.run(cmd + (["--dry-run"] if mode.dry else []), cwd=ROOT, timeout=timeout).returncode
        ended = f"exited with code {code}"
    except subprocess.TimeoutExpired:
        ended = f"was stopped after {timeout:.0f} s"
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())} if out.exists() else {}
    return [rows.get(c["id"], {**c, "status": "skipped", "reason": f"not reached: its child process {ended}"})
            for c in plan() if c["section"] in sections]


# ----------------------------------------------------------------------------- the tiny DAG
def dag_case(mode: Mode, budget: float, folder: Path) -> dict:
    """The tiny DAG in a fresh copy of the workflow (``runtime.device`` cuda, or cpu in a dry run;
    tracking off): pass/fail, wall seconds, finished jobs and the device each training ran on."""
    project = folder / "dag"
    project.mkdir()
    shutil.copy(ROOT / "Snakefile", project)
    for name in ("workflow", "src"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params").symlink_to(ROOT / "params")  # read as they are: the run's settings go on the command line
    target = DAG_TARGET[mode.dry]
    cores = str(min(8, os.cpu_count() or 1))
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", cores, "--config", "profile=tiny",
           f"set=[runtime.device={mode.device.type}, tracking.enabled=false]"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SLOTBENCH_OFFLINE": "1"}  # no weight downloads: LPIPS and FVD cells stay empty with their reasons
    log = project / "snakemake.log"
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the jobs it started
            proc.wait()
            return {"status": "skipped", "reason": f"stopped after its budget of {budget:.0f} s", "target": target}
    wall = time.perf_counter() - start
    text = log.read_text()
    row = {"target": target, "command": "python " + " ".join(cmd[1:]), "passed": code == 0, "wall_s": round(wall, 1),
           "jobs_finished": text.count("Finished jobid"),
           "train_devices": {str(p.parent.relative_to(project)): json.loads(p.read_text())["device"]
                             for p in sorted(project.glob("runs/tiny/results/**/train.json"))}}
    if code != 0:
        row.update(status="failed", reason=f"snakemake exited with {code}", log_tail=text[-3000:])
    return row


def run_dag(case: dict, mode: Mode, deadline: float, folder: Path) -> dict:
    """The DAG case's row, within its budget (Snakemake and its jobs are stopped when it runs over)."""
    budget = min(CASE_CAP_S["dag"], SECTION_CAP_S["dag"], deadline - time.time())
    if budget < MIN_CASE_S:
        return {**case, "status": "skipped", "reason": "no time left: the run's budget is spent",
                "budget_s": 0}
    start = time.perf_counter()
    row = {**case, "status": "ok", **dag_case(mode, budget, folder)}
    return {**row, "budget_s": round(budget, 1), "case_wall_s": round(time.perf_counter() - start, 1)}


# ----------------------------------------------------------------------------- the report
def machine(mode: Mode) -> dict:
    """The GPU, the library versions and the load, for the records."""
    from machine import cpu_model

    cuda = mode.device.type == "cuda"
    return {"gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": round(os.getloadavg()[0], 2)}


def vs_original(rows: list[dict]) -> dict:
    """Per network and precision: the original's s/step over slotbench's (> 1: slotbench is faster);
    slotbench's bf16 row is its CUDA default (channels_last on), its fp16 row the same with the scaler."""
    ok = {r["id"]: r for r in rows if r["status"] == "ok"}
    ratios = {}
    for n in NETWORKS:
        for amp, label in (("bf16", "bf16"), ("fp16", "fp16-scaler")):
            ours, theirs = ok.get(f"train/{n}/{label}"), ok.get(f"original/{n}/{amp}")
            if ours and theirs:
                ratios.setdefault(n, {})[amp] = round(theirs["s_per_step"] / ours["s_per_step"], 3)
    return ratios


def markdown(record: dict) -> str:
    """The record as a readable page."""
    m = record["machine"]
    title = "GPU check (dry run on CPU: the numbers only show that the code runs)" if record["dry_run"] else "GPU check"
    lines = [f"# {title}\n",
             f"Device: {m['gpu'] or 'CPU (' + m['cpu'] + ')'}"
             + (f", {m['gpu_memory_gib']} GiB" if m["gpu"] else "")
             + f"; torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}; {m['cores']} CPU cores, load "
             f"{m['load_average_at_start']} at the start. Date: {record['date']}. Config: {record['config']}. "
             f"Whole run {record['wall_s']} s of a {record['budget_s']} s budget. Training: median of "
             f"{record['repeats']} steps after {record['warmup']} warm-up steps, random weights and inputs; "
             f"cuDNN benchmark on for the original (its --cudnn), off for slotbench (its loop's default).\n"]
    rows = record["cases"]
    lines += ["## Training step (forward, loss, backward, clipping, Adam)\n",
              "| case | input (clips x frames x px²) | s/step | clips/s | peak MiB | compile s | status |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["section"] in ("train", "original", "compile"):
            shape = f"{r['batch']}x{r['frames']}x{r['resolution']}²" if "batch" in r else ""
            lines.append(f"| {r['id']} | {shape} | {r.get('s_per_step', '')} | {r.get('clips_per_s', '')} | "
                         f"{r.get('peak_memory_mib', '')} | {r.get('compile_s', '')} | {_status(r)} |")
    kinds = {r["peak_memory_kind"] for r in rows if "peak_memory_kind" in r}
    lines.append(f"\nPeak memory: {', '.join(sorted(kinds)) or 'none measured'}.")
    if record["dry_run"]:
        lines.append("Dry run: the original runs its 16x16 parity configuration (bench/parity_original.py), not "
                     "slotbench's tiny one, and torch.compile is in its force_eager stance: no ratio below means "
                     "anything.")
    if record["vs_original"]:
        lines += ["\nOriginal s/step over slotbench's (same batch, same precision; > 1: slotbench faster): "
                  + "; ".join(f"{n} " + ", ".join(f"{a} {v}x" for a, v in d.items())
                              for n, d in record["vs_original"].items()) + "."]
    lines += ["\n## Decoding from slots (float32, as eval_recon)\n",
              "| case | frames | decoder | s/frame | status |", "|---|---|---|---|---|"]
    for r in rows:
        if r["section"] == "decode":
            how = f"{r.get('sampler', '')} {r.get('sampler_steps', '')}" if r["network"] == "slotdiffusion" else \
                f"greedy, {r.get('tokens_per_frame', '')} tokens/frame, KV cache"
            lines.append(f"| {r['id']} | {r.get('videos', '')}x{r.get('frames', '')} | {how} | "
                         f"{r.get('s_per_frame', '')} | {_status(r)} |")
    dag = next(r for r in rows if r["section"] == "dag")
    lines += ["\n## Tiny DAG end to end\n",
              f"`{dag.get('command', dag.get('target', ''))}`: "
              + (f"{'passed' if dag.get('passed') else 'FAILED'} in {dag.get('wall_s')} s, {dag.get('jobs_finished')} "
                 f"jobs; training devices: {dag.get('train_devices')}" if "passed" in dag else _status(dag)) + "\n"]
    return "\n".join(lines)


def _status(row: dict) -> str:
    return row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"


def check(mode: Mode, budget_s: float, out_dir: Path) -> dict:
    """Run every case within ``budget_s`` seconds; write and return the record."""
    start, started_at = time.time(), datetime.now(UTC).isoformat(timespec="seconds")
    deadline = start + budget_s
    cases, rows = plan(), []
    from original_code import use_local_checkouts

    unavailable = use_local_checkouts()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for sections in STAGES:
            wanted = [c for c in cases if c["section"] in sections]
            if sections == ("dag",):
                rows.append(run_dag(wanted[0], mode, deadline, Path(tmp)))
            elif sections == ("original",) and unavailable:
                rows += [{**c, "status": "skipped", "reason": unavailable} for c in wanted]
            else:
                rows += run_child(sections, mode, deadline, Path(tmp))
    record = {"benchmark": "slotbench GPU check", "dry_run": mode.dry, "date": started_at, "machine": machine(mode),
              "config": "params/ tiny profile (SLOTBENCH_PROFILE=tiny), MOVi-E" if mode.dry else
              "params/ reference, MOVi-E", "budget_s": budget_s, "wall_s": round(time.time() - start, 1),
              "warmup": mode.warmup, "repeats": mode.repeats, "decode_repeats": mode.decode_repeats,
              "case_caps_s": CASE_CAP_S, "section_caps_s": SECTION_CAP_S, "cases": rows,
              "vs_original": vs_original(rows)}
    write(record, out_dir)
    return record


def write(record: dict, out_dir: Path) -> None:
    """``gpu_check.json`` and ``.md`` (dry run: ``gpu_check_dry.*``) in ``out_dir``, each written atomically."""
    from slotbench.io import write_json, write_text

    stem = "gpu_check_dry" if record["dry_run"] else "gpu_check"
    write_json(out_dir / f"{stem}.json", record)
    write_text(out_dir / f"{stem}.md", markdown(record))
    print(f"wrote {out_dir / stem}.json and .md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every case on the CPU at the tiny profile")
    parser.add_argument("--out-dir", type=Path, help="default: bench/results (dry run: a new temporary folder)")
    parser.add_argument("--budget-s", type=float, default=440,
                        help="seconds for the cases (default 440: with start-up and a stopped child's grace, "
                             "under 8 minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dry_run:
        os.environ["SLOTBENCH_PROFILE"] = "tiny"
    else:
        os.environ.pop("SLOTBENCH_PROFILE", None)  # the reference configuration
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible: `bash bench/gpu_check.sh --dry-run` exercises the check on CPU")
    mode = Mode.of(args.dry_run)
    if args.child:
        child(args.child.split(","), mode, args.deadline, args.rows)
        return
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="gpu_check_dry_")) if args.dry_run else RESULTS)
    record = check(mode, args.budget_s, out_dir)
    print(markdown(record))


if __name__ == "__main__":
    main()
