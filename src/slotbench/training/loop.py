"""The training stage: one readable loop for every slot model, resumable at any checkpoint.

Writes ``model.pt`` (final weights + the configuration) and ``train.json`` (summary) into the
run folder; resumable checkpoints and the MLflow run id live in ``<run>/_work/``.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import __version__
from ..config import fingerprint, stage_params
from ..data.dataset import ClipDataset, StepBatchSampler, check_current, to_model_input, validation_split
from ..evaluation.segmentation import evaluate_segmentation
from ..io import remove_stale_temporaries, sha256_file, write_record
from ..paths import code_digest
from ..runtime import autocast, select_device
from . import checkpoint, distributed, fast_path
from .schedule import apply_lr
from .tasks import build_training_model, exported_weights, param_groups
from .tracking import Tracker, redact_config


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient, or the weights) became NaN or Inf; the last good checkpoint is kept."""


def _all_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``model`` is finite (checked before any checkpoint)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all()) if tensors else True


def total_steps(train_cfg: dict, num_clips: int) -> int:
    """``max_steps``, or ``max_epochs`` x batches per epoch (last partial batch dropped)."""
    if train_cfg["max_steps"] is not None:
        return train_cfg["max_steps"]
    return train_cfg["max_epochs"] * (num_clips // train_cfg["batch_size"])


class _StopRequest:
    """Turn SIGTERM (what SLURM sends before pre-emption) into a checkpoint and a clean exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:  # noqa: ARG001
    """DataLoader workers ignore SIGTERM and SIGINT: SLURM (and ``kill -- -PGID``) signal every
    process of the job, and a worker that died first would make the main process fail before
    its checkpoint. The main process shuts the workers down when it stops; they also exit
    when it dies."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train(cfg: dict, data_root: str | Path, run_dir: str | Path, seed: int, progress: bool = True,
          tokenizer_checkpoint: str | Path | None = None) -> dict:
    """Train a slot model or a tokenizer on ``data_root``; write ``run_dir/model.pt`` and ``train.json``.

    Under ``torchrun`` every process calls this (see :mod:`.distributed`): each computes its share
    of the global batch, and rank 0 alone validates, logs and writes files.

    Args:
        cfg: the resolved configuration: :func:`slotbench.config.resolve` (a slot model) or
            :func:`slotbench.config.resolve_tokenizer` (a tokenizer, trained on single frames).
        data_root: the exported dataset folder ``data/{dataset}``.
        run_dir: ``results/{dataset}/{model}/seed{seed}`` or ``results/{dataset}/{tokenizer}``.
        seed: model initialisation and data order.
        tokenizer_checkpoint: the trained tokenizer of STEVE / SlotDiffusion.
    Returns:
        the summary written to ``train.json``.
    """
    ctx = distributed.from_environment()
    distributed.micro_batch_size(cfg["train"]["batch_size"], ctx.world_size, cfg["train"]["grad_accum_steps"])
    device = distributed.start(ctx, select_device(cfg["runtime"]))
    try:
        return _train(cfg, Path(data_root), Path(run_dir), seed, progress, tokenizer_checkpoint, ctx, device)
    finally:
        distributed.stop(ctx)


def _resumable(ctx: distributed.Context, work_dir: Path, run_fingerprint: str) -> dict | None:
    """The newest resumable checkpoint; rank 0 looks first (and removes stale ones), then the others."""
    state = checkpoint.latest_resumable(work_dir, run_fingerprint) if ctx.is_main else None
    distributed.barrier(ctx)
    return state if ctx.is_main else checkpoint.latest_resumable(work_dir, run_fingerprint)


def _train(cfg: dict, data_root: Path, run_dir: Path, seed: int, progress: bool,
           tokenizer_checkpoint: str | Path | None, ctx: distributed.Context, device: torch.device) -> dict:
    """:func:`train` in one process of ``ctx`` on ``device``."""
    work_dir = run_dir / "_work"
    if ctx.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        remove_stale_temporaries(work_dir)
    tcfg, dcfg = cfg["train"], cfg["dataset"]
    accum = tcfg["grad_accum_steps"]
    meta = check_current(data_root, dcfg)
    train_set = ClipDataset(data_root, "train", tcfg["n_sample_frames"], tcfg["frame_offset"], verify_checksums=True)
    val_split = validation_split(meta)
    val_set = ClipDataset(data_root, val_split, tcfg["n_sample_frames"], tcfg["frame_offset"],
                          with_seg=True, verify_checksums=True)
    steps = total_steps(tcfg, len(train_set))
    stage = "tokenizer" if "tokenizer" in cfg else "train"
    run_fingerprint = fingerprint({
        "params": stage_params(cfg, stage), "seed": seed, "code": code_digest(stage),
        "tokenizer": sha256_file(tokenizer_checkpoint) if tokenizer_checkpoint else None,
        # the bytes trained and validated on: a re-exported dataset never resumes the old run
        "data": {split: {name: f["sha256"] for name, f in meta["splits"][split]["files"].items()}
                 for split in ("train", val_split)},
    })

    torch.manual_seed(seed)
    model, extra_state = build_training_model(cfg, tokenizer_checkpoint)
    model = model.to(device)
    channels_last = fast_path.channels_last_enabled(cfg["runtime"]["channels_last"], device)
    if channels_last:  # in place, before the optimizer and any loaded state (they follow the parameters)
        fast_path.to_channels_last(model)
    # fused kernel on CPU and CUDA: the same step as the for-loop within float32 round-off
    # (tests/test_fast_path.py), 1.07x per SAVi / SlotDiffusion step on the CPU here (bench/suite.py)
    optimizer = torch.optim.Adam(param_groups(model, tcfg), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                                 fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tcfg["amp"] == "fp16")
    step, elapsed, last_loss, last_val, skipped = 0, 0.0, None, {}, 0
    state = _resumable(ctx, work_dir, run_fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, elapsed = state["step"], state["elapsed_s"]
        last_loss, last_val = state["last_loss"], state["last_val"]
        skipped = state.get("nonfinite_skipped", 0)
        if ctx.is_main:
            print(f"resuming from step {step} of {steps} ({work_dir})")
    loss_step = distributed.wrap(model, ctx, device)  # after loading: DDP broadcasts rank 0's weights
    compile_mode = "off"
    if cfg["runtime"]["compile"]:
        micro = distributed.micro_batch_size(tcfg["batch_size"], ctx.world_size, accum)
        sample = train_set[0]["video"]
        example = to_model_input(torch.zeros((micro, *sample.shape), dtype=sample.dtype).to(device))
        with autocast(device, tcfg["amp"]):  # traced as the steps will run
            loss_step, compile_mode = fast_path.compiled_step(loss_step, example)

    def snapshot() -> dict:
        # no RNG state: every micro-batch reseeds (distributed.micro_batch_seed)
        return {"fingerprint": run_fingerprint, "step": step, "elapsed_s": elapsed, "last_loss": last_loss,
                "last_val": last_val, "nonfinite_skipped": skipped,
                # the partial logging window, so that a resumed run logs the same mean losses
                "window": [window_loss, window_n], "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}

    sampler = StepBatchSampler(len(train_set), tcfg["batch_size"], seed, step, steps,
                               parts=ctx.world_size * accum, first_part=ctx.rank * accum, micro_batches=accum)
    workers = tcfg["num_workers"]
    # A private generator: creating the loader's iterator must not draw from the global RNG.
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
                        worker_init_fn=_leave_stop_signals_to_the_main_process)
    name = cfg["tokenizer" if stage == "tokenizer" else "model"]["name"]
    run_name = f"{dcfg['name']}/{name}" + ("" if stage == "tokenizer" else f"/seed{seed}")
    tracker = Tracker({**cfg["tracking"], "enabled": cfg["tracking"]["enabled"] and ctx.is_main}, run_name,
                      {**redact_config(cfg), "seed": seed, "processes": ctx.world_size}, work_dir,
                      run_fingerprint, tags={"stage": stage, "dataset": dcfg["name"], "model": name})
    stop = _StopRequest()
    if ctx.is_main:
        print(f"training {run_name}: steps {step}..{steps} on {device} x {ctx.world_size} process(es)", flush=True)
    window_loss, window_n = state["window"] if state is not None and "window" in state else (0.0, 0)
    timed_n, window_start = 0, time.perf_counter()  # steps timed in this process (for clips_per_s)
    bar = tqdm(total=steps, initial=step, desc=f"train {run_name}", unit="step",
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    status = "FAILED"
    tick = time.perf_counter()  # wall time of the loop (data loading, validation, checkpoints included)
    try:
        model.train()
        micro_batches = iter(loader)
        while step < steps:
            rates = apply_lr(optimizer, step, steps, tcfg["warmup_pct"])
            step_metrics = model.set_step(step, steps) if hasattr(model, "set_step") else {}
            process_loss = torch.zeros((), device=device)  # mean loss of this process's micro-batches
            for a in range(accum):
                torch.manual_seed(distributed.micro_batch_seed(seed, step, ctx.rank * accum + a))
                video = to_model_input(next(micro_batches)["video"].to(device, non_blocking=True))
                with distributed.no_sync(loss_step, last_micro_batch=a == accum - 1):
                    with autocast(device, tcfg["amp"]):
                        loss = loss_step(video)["loss"] / accum  # DDP averages the gradients over processes
                    scaler.scale(loss).backward()
                process_loss += loss.detach().float()
            stop_flag = torch.tensor(float(stop.requested), device=device)
            totals = distributed.all_sum(torch.stack([process_loss / ctx.world_size, stop_flag]), ctx)
            step_loss, stop_requested = totals[0].item(), totals[1].item() > 0
            fault = None if math.isfinite(step_loss) else f"loss is {step_loss}"
            if fault is None and not scaler.is_enabled():  # fp16's scaler skips inf/nan gradients itself
                if tcfg["clip_grad"] > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["clip_grad"])
                else:
                    grads = [p.grad for p in model.parameters() if p.grad is not None]
                    grad_norm = torch.nn.utils.get_total_norm(grads)
                if not torch.isfinite(grad_norm):
                    fault = f"gradient norm is {grad_norm.item()}"
            elif fault is None and tcfg["clip_grad"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["clip_grad"])
            if fault is not None and tcfg["nonfinite"] == "stop":
                raise NonFiniteLossError(f"{fault} at step {step}; stopping (train.nonfinite: stop); the last good "
                                         f"checkpoint in {work_dir} is kept and no model.pt is written")
            if fault is None:
                scaler.step(optimizer)
                scaler.update()
            else:  # train.nonfinite: skip: no update from this batch, counted
                skipped += 1
                if ctx.is_main:
                    bar.write(f"warning: {fault} at step {step}: update skipped "
                              f"({skipped} so far, train.nonfinite: skip)")
            optimizer.zero_grad(set_to_none=True)
            step += 1
            timed_n += 1
            if fault is None:  # a skipped step's loss is not averaged in
                window_loss, window_n = window_loss + step_loss, window_n + 1
            bar.update(1)
            if ctx.is_main and (step % tcfg["log_every"] == 0 or step == steps):
                now = time.perf_counter()
                clips_per_s = timed_n * tcfg["batch_size"] / max(now - window_start, 1e-9)
                metrics = {"train/lr": rates[0], "train/clips_per_s": clips_per_s,
                           **({"train/decoder_lr": rates[1]} if len(rates) > 1 else {}), **step_metrics}
                if window_n:  # else every step of the window was skipped (train.nonfinite: skip)
                    metrics["train/loss"] = last_loss = window_loss / window_n
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{rates[0]:.2e}")
                tracker.log_metrics(metrics, step)
                window_loss, window_n, timed_n, window_start = 0.0, 0, 0, now
            if ctx.is_main and (step % tcfg["val_every"] == 0 or step == steps):
                torch.manual_seed(distributed.micro_batch_seed(seed, step, -1))
                last_val = validate(model, val_set, cfg, device)
                tracker.log_metrics(last_val, step)
                if progress:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last_val.items()))
                model.train()
            now = time.perf_counter()
            elapsed, tick = elapsed + now - tick, now
            if step % tcfg["checkpoint_every"] == 0 or stop_requested or step == steps:
                if not _all_finite(model):  # never a checkpoint (nor model.pt) with NaN/Inf weights (every rank
                    raise NonFiniteLossError(  # holds the same weights, so all of them stop here)
                        f"the weights are not finite after step {step}; the last good checkpoint in {work_dir} is "
                        f"kept and no model.pt is written")
                if ctx.is_main and (step % tcfg["checkpoint_every"] == 0 or stop_requested):
                    checkpoint.save_scratch(work_dir, step, snapshot())
            if stop_requested:
                status = "KILLED"
                distributed.barrier(ctx)  # the checkpoint is complete before any process exits
                raise SystemExit(f"SIGTERM received: checkpoint of step {step} saved in {work_dir}; re-run to resume")
        summary = {
            "steps": step,
            "train_loss": last_loss,
            "wall_time_s": round(elapsed, 2),
            "clips_per_s": round(steps * tcfg["batch_size"] / max(elapsed, 1e-9), 3),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "processes": ctx.world_size,
            "validation": last_val,
            "nonfinite_skipped": skipped,
            "fast_path": {"channels_last": channels_last, "compile": compile_mode,
                          "amp": tcfg["amp"] if device.type == "cuda" else "off",
                          "adam": "fused"},
            "seed": seed,
            **{k: v for k, v in extra_state.items() if k == "perceptual_loss"},
            "slotbench_version": __version__,
            "torch_version": torch.__version__,
        }
        if ctx.is_main:
            checkpoint.save(run_dir / "model.pt", {"model": exported_weights(model), "config": redact_config(cfg),
                                                   "seed": seed, "step": step, "fingerprint": run_fingerprint,
                                                   **extra_state})
            write_record(run_dir / "train.json", summary)
            checkpoint.save_scratch(work_dir, step, snapshot())
        distributed.barrier(ctx)
        status = "FINISHED"
        return summary
    finally:
        bar.close()
        stop.restore()
        tracker.close(status)


@torch.no_grad()
def validate(model: torch.nn.Module, val_set: ClipDataset, cfg: dict, device: torch.device) -> dict[str, float]:
    """Loss and segmentation metrics (x100) on ``train.val_clips`` evenly spaced validation clips."""
    model.eval()
    count = min(cfg["train"]["val_clips"], len(val_set))
    indices = torch.linspace(0, len(val_set) - 1, count).round().long().tolist()
    batch_size = cfg["train"]["batch_size"]
    loss_sum = 0.0
    for i in range(0, count, batch_size):
        items = [val_set[j] for j in indices[i:i + batch_size]]
        video = to_model_input(torch.stack([it["video"] for it in items]).to(device))
        loss_sum += model.loss(video, model(video))["loss"].item() * len(items)
    if not hasattr(model, "segment"):  # a tokenizer
        return {"val/loss": loss_sum / count}
    scores = evaluate_segmentation(model, Subset(val_set, indices), batch_size,
                                   cfg["train"]["n_sample_frames"], device, progress=False)
    return {"val/loss": loss_sum / count, **{f"val/{k}": v for k, v in scores.items()}}
