"""The training stage: one readable loop for every slot model, resumable at any checkpoint.

Writes ``model.pt`` (final weights + the configuration) and ``train.json`` (summary) into the
run folder; resumable checkpoints and the MLflow run id live in ``<run>/_work/``.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import __version__, checkpoint
from ..config import fingerprint, stage_params
from ..data.dataset import ClipDataset, StepBatchSampler, check_current, to_model_input, validation_split
from ..evaluation.segmentation import evaluate_segmentation
from ..io import remove_stale_temporaries, sha256_file, write_record
from ..models.frame_tokenizer import exported_weights
from ..pipeline import code_digest
from ..runtime import autocast, effective_amp, select_device
from ..tracking import Tracker, redact_config
from . import distributed, fast_path
from .schedule import apply_lr
from .tasks import build_training_model, param_groups


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


def _run_fingerprint(cfg: dict, stage: str, seed: int, tokenizer_checkpoint: str | Path | None, meta: dict,
                     val_split: str) -> str:
    """What a scratch checkpoint must match to be resumed: the stage's params, seed, code, tokenizer
    and the bytes trained and validated on (a re-exported dataset never resumes the old run)."""
    return fingerprint({
        "params": stage_params(cfg, stage), "seed": seed, "code": code_digest(stage),
        "tokenizer": sha256_file(tokenizer_checkpoint) if tokenizer_checkpoint else None,
        "data": {split: {name: f["sha256"] for name, f in meta["splits"][split]["files"].items()}
                 for split in ("train", val_split)},
    })


@dataclass
class _Progress:
    """Where a run is, saved in every scratch checkpoint next to the weights and optimizer state."""

    step: int = 0
    elapsed_s: float = 0.0  # wall time of the loop over every process lifetime (validation included)
    last_loss: float | None = None  # mean training loss of the last logging window
    last_val: dict = field(default_factory=dict)
    skipped: int = 0  # updates skipped for a non-finite loss or gradient (train.nonfinite: skip)
    window_loss: float = 0.0  # the partial logging window, so that a resumed run logs the same means
    window_n: int = 0


class _Run:
    """One training run in one process: data, model, optimizer, resumed state, loader and tracker,
    and the named parts of a step that :func:`_train`'s loop calls in order."""

    def __init__(self, cfg: dict, data_root: Path, run_dir: Path, seed: int, progress: bool,
                 tokenizer_checkpoint: str | Path | None, ctx: distributed.Context, device: torch.device):
        self.cfg, self.run_dir, self.seed, self.progress, self.ctx, self.device = (
            cfg, run_dir, seed, progress, ctx, device)
        self.work_dir = run_dir / "_work"
        if ctx.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(run_dir)
            remove_stale_temporaries(self.work_dir)
        self.tcfg = tcfg = cfg["train"]
        self.accum = tcfg["grad_accum_steps"]
        meta = check_current(data_root, cfg["dataset"])
        self.train_set = ClipDataset(data_root, "train", tcfg["n_sample_frames"], tcfg["frame_offset"],
                                     verify_checksums=True)
        val_split = validation_split(meta)
        self.val_set = ClipDataset(data_root, val_split, tcfg["n_sample_frames"], tcfg["frame_offset"],
                                   with_seg=True, verify_checksums=True)
        self.steps = total_steps(tcfg, len(self.train_set))
        self.stage = "tokenizer" if "tokenizer" in cfg else "train"
        self.fingerprint = _run_fingerprint(cfg, self.stage, seed, tokenizer_checkpoint, meta, val_split)
        self._build(tokenizer_checkpoint)
        self._resume()
        self._start_loader_and_tracker(data_root)

    def _build(self, tokenizer_checkpoint: str | Path | None) -> None:
        """The model (seeded), its fast-path layout, Adam and the fp16 gradient scaler."""
        torch.manual_seed(self.seed)
        model, self.extra_state = build_training_model(self.cfg, tokenizer_checkpoint)
        self.model = model.to(self.device)
        self.channels_last = fast_path.channels_last_enabled(self.cfg["runtime"]["channels_last"], self.device)
        if self.channels_last:  # in place, before the optimizer and any loaded state (they follow the parameters)
            fast_path.to_channels_last(self.model)
        # fused kernel on CPU and CUDA: the same step as the for-loop within float32 round-off
        # (tests/test_fast_path.py), 1.07x per SAVi / SlotDiffusion step on the CPU here (bench/suite.py)
        self.optimizer = torch.optim.Adam(param_groups(self.model, self.tcfg), lr=self.tcfg["lr"],
                                          weight_decay=self.tcfg["weight_decay"], fused=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and self.tcfg["amp"] == "fp16")

    def _resume(self) -> None:
        """Load the newest resumable checkpoint, if any; then wrap the model for DDP and compile it."""
        self.state = _Progress()
        saved = _resumable(self.ctx, self.work_dir, self.fingerprint)
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scaler.load_state_dict(saved["scaler"])
            window_loss, window_n = saved["window"] if "window" in saved else (0.0, 0)
            self.state = _Progress(saved["step"], saved["elapsed_s"], saved["last_loss"], saved["last_val"],
                                   saved.get("nonfinite_skipped", 0), window_loss, window_n)
            if self.ctx.is_main:
                print(f"resuming from step {self.state.step} of {self.steps} ({self.work_dir})")
        self.loss_step = distributed.wrap(self.model, self.ctx, self.device)  # DDP broadcasts rank 0's weights
        self.compile_mode = "off"
        if self.cfg["runtime"]["compile"]:
            micro = distributed.micro_batch_size(self.tcfg["batch_size"], self.ctx.world_size, self.accum)
            sample = self.train_set[0]["video"]
            example = to_model_input(torch.zeros((micro, *sample.shape), dtype=sample.dtype).to(self.device))
            with autocast(self.device, self.tcfg["amp"], self.tcfg["cpu_amp"]):  # traced as the steps will run
                self.loss_step, self.compile_mode = fast_path.compiled_step(self.loss_step, example)

    def _start_loader_and_tracker(self, data_root: Path) -> None:
        """The step-addressed batch stream from the current step on, and the MLflow run."""
        ctx, tcfg, workers = self.ctx, self.tcfg, self.tcfg["num_workers"]
        sampler = StepBatchSampler(len(self.train_set), tcfg["batch_size"], self.seed, self.state.step, self.steps,
                                   parts=ctx.world_size * self.accum, first_part=ctx.rank * self.accum,
                                   micro_batches=self.accum)
        # A private generator: creating the loader's iterator must not draw from the global RNG.
        loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(self.seed),
                            worker_init_fn=_leave_stop_signals_to_the_main_process)
        self.micro_batches = iter(loader)
        dcfg = self.cfg["dataset"]
        name = self.cfg["tokenizer" if self.stage == "tokenizer" else "model"]["name"]
        self.run_name = f"{dcfg['name']}/{name}" + ("" if self.stage == "tokenizer" else f"/seed{self.seed}")
        self.tracker = Tracker({**self.cfg["tracking"], "enabled": self.cfg["tracking"]["enabled"] and ctx.is_main},
                               self.run_name, {**redact_config(self.cfg), "seed": self.seed,
                                               "processes": ctx.world_size},
                               self.work_dir, self.fingerprint,
                               tags={"stage": self.stage, "dataset": dcfg["name"], "model": name})
        self.timed_n, self.window_start = 0, time.perf_counter()  # steps timed in this process (clips_per_s)

    def due(self, every: int) -> bool:
        """Whether the step just taken ends a period of ``every`` steps, or the run."""
        return self.state.step % every == 0 or self.state.step == self.steps

    def optimizer_step(self, stop: _StopRequest) -> bool:
        """One update from this process's micro-batches of the global batch (its loss, averaged over
        every process, joins the logging window); returns whether any process was asked to stop (SIGTERM)."""
        tcfg, state = self.tcfg, self.state
        process_loss = torch.zeros((), device=self.device)  # mean loss of this process's micro-batches
        for a in range(self.accum):
            torch.manual_seed(distributed.micro_batch_seed(self.seed, state.step, self.ctx.rank * self.accum + a))
            video = to_model_input(next(self.micro_batches)["video"].to(self.device, non_blocking=True))
            with distributed.no_sync(self.loss_step, last_micro_batch=a == self.accum - 1):
                with autocast(self.device, tcfg["amp"], tcfg["cpu_amp"]):
                    loss = self.loss_step(video)["loss"] / self.accum  # DDP averages the gradients over processes
                self.scaler.scale(loss).backward()
            process_loss += loss.detach().float()
        stop_flag = torch.tensor(float(stop.requested), device=self.device)
        totals = distributed.all_sum(torch.stack([process_loss / self.ctx.world_size, stop_flag]), self.ctx)
        step_loss, stop_requested = totals[0].item(), totals[1].item() > 0
        fault = self._clip_gradients(step_loss)
        if fault is not None and tcfg["nonfinite"] == "stop":
            raise NonFiniteLossError(f"{fault} at step {state.step}; stopping (train.nonfinite: stop); the last good "
                                     f"checkpoint in {self.work_dir} is kept and no model.pt is written")
        if fault is None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:  # train.nonfinite: skip: no update from this batch, counted
            state.skipped += 1
            if self.ctx.is_main:
                tqdm.write(f"warning: {fault} at step {state.step}: update skipped "
                           f"({state.skipped} so far, train.nonfinite: skip)")
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.timed_n += 1
        if fault is None:  # a skipped step's loss is not averaged in
            state.window_loss, state.window_n = state.window_loss + step_loss, state.window_n + 1
        return stop_requested

    def _clip_gradients(self, step_loss: float) -> str | None:
        """Clip to ``train.clip_grad``; what is not finite (the loss, the gradient norm), or None."""
        if not math.isfinite(step_loss):
            return f"loss is {step_loss}"
        clip = self.tcfg["clip_grad"]
        if self.scaler.is_enabled():  # fp16's scaler skips inf/nan gradients itself
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            return None
        if clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        return None if torch.isfinite(grad_norm) else f"gradient norm is {grad_norm.item()}"

    def log(self, rates: list[float], step_metrics: dict, bar: tqdm) -> None:
        """Learning rates, throughput and the window's mean loss to MLflow and the progress bar."""
        state, now = self.state, time.perf_counter()
        clips_per_s = self.timed_n * self.tcfg["batch_size"] / max(now - self.window_start, 1e-9)
        metrics = {"train/lr": rates[0], "train/clips_per_s": clips_per_s,
                   **({"train/decoder_lr": rates[1]} if len(rates) > 1 else {}), **step_metrics}
        if state.window_n:  # else every step of the window was skipped (train.nonfinite: skip)
            metrics["train/loss"] = state.last_loss = state.window_loss / state.window_n
            bar.set_postfix(loss=f"{state.last_loss:.4f}", lr=f"{rates[0]:.2e}")
        self.tracker.log_metrics(metrics, state.step)
        state.window_loss, state.window_n, self.timed_n, self.window_start = 0.0, 0, 0, now

    def validate(self, bar: tqdm) -> None:
        """Validation loss and segmentation metrics, reseeded from the step (the training RNG is left alone)."""
        torch.manual_seed(distributed.micro_batch_seed(self.seed, self.state.step, -1))
        self.state.last_val = validate(self.model, self.val_set, self.cfg, self.device)
        self.tracker.log_metrics(self.state.last_val, self.state.step)
        if self.progress:
            bar.write(f"step {self.state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in self.state.last_val.items()))
        self.model.train()

    def checkpoint(self, write: bool) -> None:
        """Refuse non-finite weights (on every rank); rank 0 writes a scratch checkpoint when ``write``."""
        if not _all_finite(self.model):  # never a checkpoint (nor model.pt) with NaN/Inf weights (every rank
            raise NonFiniteLossError(  # holds the same weights, so all of them stop here)
                f"the weights are not finite after step {self.state.step}; the last good checkpoint in "
                f"{self.work_dir} is kept and no model.pt is written")
        if self.ctx.is_main and write:
            checkpoint.save_scratch(self.work_dir, self.state.step, self._snapshot())

    def _snapshot(self) -> dict:
        state = self.state  # no RNG state: every micro-batch reseeds (distributed.micro_batch_seed)
        return {"fingerprint": self.fingerprint, "step": state.step, "elapsed_s": state.elapsed_s,
                "last_loss": state.last_loss, "last_val": state.last_val, "nonfinite_skipped": state.skipped,
                "window": [state.window_loss, state.window_n], "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def finish(self) -> dict:
        """``model.pt``, ``train.json`` and the last scratch checkpoint (rank 0); returns the summary."""
        state, tcfg, device = self.state, self.tcfg, self.device
        summary = {
            "steps": state.step,
            "train_loss": state.last_loss,
            "wall_time_s": round(state.elapsed_s, 2),
            "clips_per_s": round(self.steps * tcfg["batch_size"] / max(state.elapsed_s, 1e-9), 3),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "processes": self.ctx.world_size,
            "validation": state.last_val,
            "nonfinite_skipped": state.skipped,
            "fast_path": {"channels_last": self.channels_last, "compile": self.compile_mode,
                          "amp": effective_amp(device, tcfg), "adam": "fused"},
            "seed": self.seed,
            **{k: v for k, v in self.extra_state.items() if k == "perceptual_loss"},
            "slotbench_version": __version__,
            "torch_version": torch.__version__,
        }
        if self.ctx.is_main:
            checkpoint.save(self.run_dir / "model.pt",
                            {"model": exported_weights(self.model), "config": redact_config(self.cfg),
                             "seed": self.seed, "step": state.step, "fingerprint": self.fingerprint,
                             **self.extra_state})
            write_record(self.run_dir / "train.json", summary)
            checkpoint.save_scratch(self.work_dir, state.step, self._snapshot())
        distributed.barrier(self.ctx)
        return summary


def _train(cfg: dict, data_root: Path, run_dir: Path, seed: int, progress: bool,
           tokenizer_checkpoint: str | Path | None, ctx: distributed.Context, device: torch.device) -> dict:
    """:func:`train` in one process of ``ctx`` on ``device``: the loop, top to bottom."""
    run = _Run(cfg, data_root, run_dir, seed, progress, tokenizer_checkpoint, ctx, device)
    tcfg, state = run.tcfg, run.state
    stop = _StopRequest()
    if ctx.is_main:
        print(f"training {run.run_name}: steps {state.step}..{run.steps} on {device} x {ctx.world_size} process(es)",
              flush=True)
    bar = tqdm(total=run.steps, initial=state.step, desc=f"train {run.run_name}", unit="step",
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    status = "FAILED"
    tick = time.perf_counter()  # wall time of the loop (data loading, validation, checkpoints included)
    try:
        run.model.train()
        while state.step < run.steps:
            rates = apply_lr(run.optimizer, state.step, run.steps, tcfg["warmup_pct"])
            step_metrics = run.model.set_step(state.step, run.steps) if hasattr(run.model, "set_step") else {}
            stop_requested = run.optimizer_step(stop)
            bar.update(1)
            if ctx.is_main and run.due(tcfg["log_every"]):
                run.log(rates, step_metrics, bar)
            if ctx.is_main and run.due(tcfg["val_every"]):
                run.validate(bar)
            now = time.perf_counter()
            state.elapsed_s, tick = state.elapsed_s + now - tick, now
            if run.due(tcfg["checkpoint_every"]) or stop_requested:
                run.checkpoint(write=state.step % tcfg["checkpoint_every"] == 0 or stop_requested)
            if stop_requested:
                status = "KILLED"
                distributed.barrier(ctx)  # the checkpoint is complete before any process exits
                raise SystemExit(f"SIGTERM received: checkpoint of step {state.step} saved in {run.work_dir}; "
                                 f"re-run to resume")
        summary = run.finish()
        status = "FINISHED"
        return summary
    finally:
        bar.close()
        stop.restore()
        run.tracker.close(status)


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
