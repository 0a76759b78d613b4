"""The speed suite: training steps, segmentation metrics and decoding cost, one command.

Sections (``--only`` picks some):

- ``train``: first each network side by side with the original implementation (``pair``: the
  reference MOVi-E configuration at 128x128 as it is, 2 clips of 3 frames; slotbench's step, then
  the original's own network, config and trainer from the checkouts ``bench/parity_original.py``
  uses, each in its own process right after the other; ``vs_original`` = the original's seconds per
  step over slotbench's, for slotbench as its training loop runs (fused Adam) in float32 and with bf16
  autocast (``train.cpu_amp: bf16``);
  rows say why when the checkouts are missing). Then seconds per
  optimisation step (forward, loss, backward, gradient clipping, Adam)
  and peak memory, for SAVi, STEVE (frozen dVAE), SlotDiffusion (frozen VQ-VAE), the dVAE and
  the VQ-VAE, at the reference MOVi-E configuration sized as the issue's original-code
  measurements (``reference``: 64x64, batch 4, 3 frames; tokenizers: 12 frames = 4 x 3), at the
  ``shapes`` profile (its own batch), and on CUDA also at the full reference configuration
  (``reference-128``: 128x128, the reference batch per GPU; on CPU with ``--full-reference``).
  Each case runs in its own process (clean peak memory), median of ``--repeats`` steps after a
  warm-up step, random inputs and weights (the cost does not depend on them). Fast-path switches,
  each measured on and off against the plain case: Adam ``for-loop`` (PyTorch's CPU default) vs
  ``fused``; ``channels_last``; STEVE's attention ``sdpa`` vs ``explicit``; bf16 autocast (CUDA);
  ``torch.compile`` (on CPU at the ``shapes`` profile only: compiling the reference networks
  takes many minutes here; the compile time is reported apart from the step time).
  The VQ-VAE runs with the LPIPS-VGG perceptual loss (reference ``percept_loss_w: 1``) using an
  LPIPS network with random weights: same cost, no weight files needed.
- ``seg``: videos per second of FG-ARI + mIoU + mBO on 24 x 128 x 128 videos with up to 24
  segments: slotbench's batched metrics against a per-video loop with scikit-learn's ARI and
  SciPy's Hungarian matching (the original's way), and the largest difference between them.
- ``decode``: reconstruction cost per frame at the ``shapes`` profile (random weights): SAVi's
  mixture decoder, STEVE's greedy token decoding with and without the key/value cache, and
  SlotDiffusion with DPM-Solver++ (20 U-Net evaluations, the reference), DDIM (50) and DDPM (1000).
- ``data``: training clips per second from the project's storage format (64 videos of
  24x128x128, batch 32, 3-frame clips, normalised), DataLoader with 0 and 2 workers, the
  workers persistent or restarted every epoch.

On CUDA (when present) the same cases run on the GPU too. Writes ``bench/results/suite.json``
and ``bench/results/suite.md``; the README's speed table is copied from the latter.

Usage: ``python bench/suite.py [--repeats 3] [--only train,seg,decode,data|pair] [--quick] [--full-reference]
[--tag T]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = ("savi", "steve", "slotdiffusion")
TOKENIZERS = ("dvae", "vqvae")
#: clips of the ``pair`` setting: the reference MOVi-E configuration at 128x128 as it is, two clips a step
PAIR_BATCH = 2
#: GPUs of the reference runs (the rest: 1); train.batch_size is their global batch
REFERENCE_GPUS = {"steve": 2, "vqvae": 2}


# ----------------------------------------------------------------------------- training cases
def _config(name: str, setting: str) -> dict:
    """The resolved config of ``name`` (model or tokenizer) for ``setting`` (``reference`` / ``shapes``)."""
    from slotbench.config import resolve, resolve_tokenizer

    dataset = "movi_e" if setting.startswith("reference") or setting == "pair" else "shapes"
    cfg = (resolve_tokenizer if name in TOKENIZERS else resolve)(dataset, name, ROOT / "params")
    if setting == "reference":
        cfg["dataset"]["resolution"] = 64
        cfg["train"]["batch_size"] = 4
        cfg["train"]["n_sample_frames"] = 3
    elif setting == "pair":
        cfg["train"]["batch_size"] = PAIR_BATCH
    elif setting == "reference-128":  # the batch of one GPU of the reference runs
        cfg["train"]["batch_size"] //= REFERENCE_GPUS.get(name, 1)
    return cfg


def _tokenizer_checkpoint(cfg: dict, folder: Path) -> Path:
    """A randomly initialised tokenizer of the kind ``cfg`` needs, saved as the tokenizer stage does."""
    from slotbench import checkpoint
    from slotbench.config import resolve_tokenizer
    from slotbench.models import MODEL_TOKENIZER, build_tokenizer

    dataset = "movi_e" if cfg["dataset"]["name"] == "movi_e" else "shapes"
    tok_cfg = resolve_tokenizer(dataset, MODEL_TOKENIZER[cfg["model"]["name"]], ROOT / "params")
    tokenizer = build_tokenizer(tok_cfg["tokenizer"])
    path = folder / "tokenizer.pt"
    checkpoint.save(path, {"model": tokenizer.state_dict(), "config": tok_cfg, "kind": "tokenizer"})
    return path


def _build(name: str, cfg: dict, folder: Path) -> torch.nn.Module:
    from slotbench.models import build_tokenizer
    from slotbench.models.frame_tokenizer import FrameTokenizer
    from slotbench.training.tasks import build_training_model

    if name in TOKENIZERS:
        perceptual = None
        if name == "vqvae" and cfg["tokenizer"]["percept_loss_w"] > 0:
            from slotbench.metrics.lpips import LPIPS

            perceptual = LPIPS().eval().requires_grad_(False)  # random weights, the pretrained one's cost
        return FrameTokenizer(build_tokenizer(cfg["tokenizer"], perceptual), cfg["tokenizer"])
    needs_tokenizer = cfg["model"]["name"] != "savi"
    return build_training_model(cfg, _tokenizer_checkpoint(cfg, folder) if needs_tokenizer else None)[0]


#: the plain case: every fast-path switch at PyTorch's CPU default
PLAIN = {"adam": "for-loop", "channels_last": False, "attn": "sdpa", "amp": "off", "compile": False}


def run_train_case(name: str, setting: str, device: str, repeats: int, adam: str = "for-loop",
                   channels_last: bool = False, attn: str = "sdpa", amp: str = "off", compile: bool = False) -> dict:
    """Seconds per step (median of ``repeats`` after one warm-up step) and peak memory of one case."""
    from slotbench.runtime import autocast
    from slotbench.training.distributed import LossStep
    from slotbench.training.fast_path import compiled_step, to_channels_last
    from slotbench.training.tasks import param_groups

    torch.manual_seed(0)
    cfg = _config(name, setting)
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        model = _build(name, cfg, Path(tmp)).to(dev)
    if channels_last:
        to_channels_last(model)
    if attn != "sdpa":
        model.trans_decoder.attn_impl = attn
    tcfg = cfg["train"]
    optimizer = torch.optim.Adam(param_groups(model, tcfg), lr=1e-4, fused=adam == "fused",
                                 foreach=False if adam == "for-loop" else None)
    video = _input(name, setting, cfg).to(dev)
    batch, frames, res = video.shape[0], video.shape[1], video.shape[-1]
    model.train()
    step, compile_s, compile_mode = LossStep(model), None, "off"
    if compile:
        start = time.perf_counter()
        step, compile_mode = compiled_step(step, video)
        compile_s = round(time.perf_counter() - start, 1)
    times = []
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if hasattr(model, "set_step"):
            model.set_step(i, 1000)
        with autocast(dev, amp, amp):  # train.amp on CUDA, train.cpu_amp on a CPU
            loss = step(video)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max(tcfg["clip_grad"], 1e-6))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    s_per_step = statistics.median(times)
    return {"model": name, "setting": setting, "device": device, "adam": adam, "channels_last": channels_last,
            "attn": attn, "amp": amp, "compile": compile_mode, "compile_s": compile_s,
            "resolution": res, "batch": batch, "frames": frames,
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "s_per_step": round(s_per_step, 4), "clips_per_s": round(batch / s_per_step, 2),
            "repeats_s": [round(t, 4) for t in times],
            "peak_memory_mib": round(peak / 2**20, 1),
            "peak_memory_kind": "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "process peak RSS"}


def _input(name: str, setting: str, cfg: dict) -> torch.Tensor:
    """The training input of a case, ``[B, T, 3, H, W]`` in [-1, 1] (seeded): slot models take
    ``train.batch_size`` clips of ``n_sample_frames`` frames, tokenizers single frames, three times as
    many at the ``reference`` and ``pair`` settings (as many frames as the slot models see)."""
    res, tcfg = cfg["dataset"]["resolution"], cfg["train"]
    frames = 1 if name in TOKENIZERS else tcfg["n_sample_frames"]
    batch = tcfg["batch_size"] * (3 if name in TOKENIZERS and setting in ("reference", "pair") else 1)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, frames, 3, res, res, generator=generator) * 2 - 1


def run_original_case(name: str, setting: str, repeats: int) -> dict:
    """The original implementation's training step on the same input as :func:`run_train_case`: its
    network built by its own ``build_model`` from its MOVi-E config file, trained by its own trainer
    (nerv's method class: loss weighting, Adam groups, clipping, schedule; ``bench/original_code.py``).
    Seconds per step (median of ``repeats`` after one warm-up step) and peak memory."""
    from original_code import OriginalCode, original_steps, use_local_checkouts

    row = {"model": name, "setting": setting, "device": "cpu", "impl": "original"}
    unavailable = use_local_checkouts()
    if unavailable:
        return {**row, "status": "skipped", "reason": unavailable}
    code = OriginalCode()
    cfg = _config(name, setting)
    video = _input(name, setting, cfg)
    # one epoch of exactly the steps run, whose mid-epoch checkpoint (save_interval 1) never comes
    params = code.params(name, "movi_e", {"max_epochs": 1, "save_interval": 1.0})
    torch.manual_seed(0)
    model = code.build(params)
    n = repeats + 1
    batch = {"img": video.flatten(0, 1) if name in TOKENIZERS else video}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        steps = original_steps(code.trainer(params, model, n, Path(tmp)), [batch] * n, list(range(n)))
        for i in range(n):
            start = time.perf_counter()
            next(steps)
            if i:
                times.append(time.perf_counter() - start)
    s_per_step = statistics.median(times)
    return {**row, "status": "ok", "resolution": video.shape[-1], "batch": video.shape[0], "frames": video.shape[1],
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "s_per_step": round(s_per_step, 4), "clips_per_s": round(video.shape[0] / s_per_step, 2),
            "repeats_s": [round(t, 4) for t in times],
            "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1),
            "peak_memory_kind": "process peak RSS"}


def _child(case: dict) -> dict:
    """Run one training case in a fresh process (its own peak memory)."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_cases(devices: list[str], quick: bool, full_reference: bool, pair_only: bool = False) -> list[dict]:
    """Every network side by side with the original (``pair``, CPU: slotbench's step then the
    original's, network by network), then the plain case of every network and setting, then each
    fast-path switch alone (unless ``quick``)."""
    # slotbench's step as its training loop runs it (fused Adam), in float32 and with bf16 autocast
    cases = [{"name": name, "setting": "pair", "device": "cpu", **impl}
             for name in (*MODELS, *TOKENIZERS)
             for impl in ({"adam": "fused"}, {"impl": "original"}, {"adam": "fused", "amp": "bf16"})]
    if pair_only:
        return cases
    for device in devices:
        settings = ["reference", "shapes"] + (["reference-128"] if device == "cuda" or full_reference else [])
        for name in (*MODELS, *TOKENIZERS):
            for setting in settings:
                cases.append({"name": name, "setting": setting, "device": device})
                if quick or setting == "reference-128":
                    continue
                if setting == "reference":
                    switches = [{"adam": "fused"}, {"channels_last": True}]
                    if name == "steve":
                        switches.append({"attn": "explicit"})
                    if device == "cuda":
                        switches += [{"amp": "bf16"}, {"compile": True}]
                elif device == "cpu":  # shapes: compiling is affordable on a CPU here
                    switches = [{"compile": True}]
                else:
                    switches = []
                cases += [{"name": name, "setting": setting, "device": device, **sw} for sw in switches]
    return cases


def train_section(repeats: int, devices: list[str], quick: bool, full_reference: bool,
                  pair_only: bool = False) -> list[dict]:
    """Every training case, each in its own process; the ``pair`` rows of slotbench gain the original's
    seconds per step and ``vs_original`` (the original's time over slotbench's: above 1 is faster)."""
    from tqdm import tqdm

    rows = [_child({**case, "repeats": repeats})
            for case in tqdm(train_cases(devices, quick, full_reference, pair_only), desc="train cases")]
    original = {r["model"]: r for r in rows if r.get("impl") == "original"}
    for r in rows:
        theirs = original.get(r["model"]) if r["setting"] == "pair" and r.get("impl") != "original" else None
        if theirs and theirs["status"] == "ok":
            r["original_s_per_step"] = theirs["s_per_step"]
            r["vs_original"] = round(theirs["s_per_step"] / r["s_per_step"], 3)
    return rows


# ----------------------------------------------------------------------------- segmentation metrics
def _loop_scores(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """FG-ARI, mIoU, mBO (x1) per video the original's way: one video at a time, scikit-learn's
    ARI on the foreground pixels and SciPy's Hungarian matching on the IoU matrix."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    out = []
    for g, p in zip(gt, pred):
        g, p = g.ravel(), p.ravel()
        fg = g > 0
        ari = adjusted_rand_score(g[fg], p[fg])
        gt_ids, pred_ids = np.unique(g), np.unique(p)
        iou = np.zeros((len(gt_ids), len(pred_ids)))
        for i, a in enumerate(gt_ids):
            ga = g == a
            for j, b in enumerate(pred_ids):
                pb = p == b
                inter = np.logical_and(ga, pb).sum()
                iou[i, j] = inter / np.logical_or(ga, pb).sum()
        rows, cols = linear_sum_assignment(-iou)
        miou = iou[rows, cols].sum() / len(gt_ids)
        mbo = iou[gt_ids > 0].max(axis=1).mean()
        out.append((ari, miou, mbo))
    return np.array(out)


def seg_section(repeats: int, num_videos: int) -> dict:
    from slotbench.metrics.segmentation import segmentation_scores

    rng = np.random.default_rng(0)
    shape = (num_videos, 24, 128, 128)
    gt = np.zeros(shape, np.int64)
    for v in range(num_videos):  # up to 23 rectangles over a background: 24 segments
        for k in range(1, rng.integers(2, 24)):
            y, x = rng.integers(0, 100, 2)
            h, w = rng.integers(8, 40, 2)
            gt[v, :, y:y + h, x:x + w] = k
    noise = rng.random(shape) < 0.2
    pred = np.where(noise, rng.integers(0, 24, shape), (gt * 7) % 24)  # relabelled + 20% noise
    gt_t, pred_t = torch.from_numpy(gt), torch.from_numpy(pred)

    def ours() -> np.ndarray:
        s = segmentation_scores(gt_t, pred_t)
        return torch.stack([s["fg_ari"], s["miou"], s["mbo"]], dim=1).numpy()

    timings = {}
    values = {}
    for name, fn in (("slotbench_batched", ours), ("per_video_sklearn_scipy", lambda: _loop_scores(gt, pred))):
        values[name] = fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        timings[name] = round(num_videos / statistics.median(times), 2)
    diff = float(np.abs(values["slotbench_batched"] - values["per_video_sklearn_scipy"]).max())
    return {"videos": num_videos, "shape": list(shape[1:]), "max_segments": 24, "videos_per_s": timings,
            "speedup": round(timings["slotbench_batched"] / timings["per_video_sklearn_scipy"], 1),
            "max_abs_difference": diff}


# ----------------------------------------------------------------------------- decoding cost
def _timed_per_frame(fn, frames: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) / frames, 4)


@torch.no_grad()
def decode_section(repeats: int) -> list[dict]:
    """Seconds per reconstructed frame from slots, per model and decoder setting (``shapes``, CPU)."""
    frames, rows = 8, []
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            cfg = _config(name, "shapes")
            models[name] = (_build(name, cfg, Path(tmp)).eval(), cfg)
    for name, (model, cfg) in models.items():
        slots = torch.randn(1, frames, cfg["model"]["num_slots"], cfg["model"]["slot_size"])
        if name == "savi":
            rows.append({"model": name, "decoder": "mixture (spatial broadcast)", "network_evaluations": 1,
                         "s_per_frame": _timed_per_frame(lambda: model.decode(slots), frames, repeats)})
        elif name == "steve":
            tokens = model.trans_decoder.num_tokens  # one decoder evaluation per token
            for cache in (True, False):
                rows.append({"model": name, "decoder": f"greedy tokens, key/value cache {'on' if cache else 'off'}",
                             "network_evaluations": tokens,
                             "s_per_frame": _timed_per_frame(lambda: model.reconstruct(slots, use_cache=cache),
                                                             frames, 1 if not cache else repeats)})
        else:
            for sampler, steps in (("dpm++", 20), ("ddim", 50), ("ddpm", 1000)):
                calls = 0
                unet_forward = model.unet.forward

                def counted(*a, **k):
                    nonlocal calls
                    calls += 1
                    return unet_forward(*a, **k)

                model.unet.forward = counted
                per_frame = _timed_per_frame(
                    lambda: model.reconstruct(slots, sampler=sampler, steps=steps,
                                              generator=torch.Generator().manual_seed(0)),
                    frames, 1 if sampler == "ddpm" else repeats)
                model.unet.forward = unet_forward
                rows.append({"model": name, "decoder": f"{sampler} ({steps} steps)",
                             "network_evaluations": calls // (1 if sampler == "ddpm" else repeats),
                             "s_per_frame": per_frame})
    return rows


def data_section(repeats: int) -> list[dict]:
    """Training clips per second from the storage format with 0 and 2 DataLoader workers."""
    from torch.utils.data import DataLoader

    from slotbench.data.dataset import ClipDataset, to_model_input
    from slotbench.data.storage import SplitWriter, write_meta

    n, t, r, batch = 64, 24, 128, 32
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = SplitWriter(tmp, "train", n, t, r)
        writer.write(0, rng.integers(0, 256, (n, t, r, r, 3), dtype=np.uint8),
                     rng.integers(0, 8, (n, t, r, r), dtype=np.uint8), np.full(n, 3, dtype=np.int16))
        write_meta(tmp, {"dataset": "bench", "source": "random", "resolution": r, "video_len": t,
                         "splits": {"train": writer.finish()}})
        dataset = ClipDataset(tmp, "train", 3, 1)
        for workers, persistent in ((0, False), (2, False), (2, True)):
            loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                persistent_workers=persistent, generator=torch.Generator().manual_seed(0))
            epochs, clips = max(repeats, 3), 0
            start = time.perf_counter()
            for _ in range(epochs):
                for item in loader:
                    clips += to_model_input(item["video"]).shape[0]
            rows.append({"workers": workers, "persistent_workers": persistent, "epochs": epochs,
                         "clips_per_s": round(clips / (time.perf_counter() - start), 1),
                         "clip": f"3x{r}x{r}", "batch": batch})
    return rows


# ----------------------------------------------------------------------------- report
def _switch(row: dict) -> str:
    """The fast-path switch a row turns on (``plain`` when none)."""
    changed = [f"{k}={row[k]}" for k, v in PLAIN.items() if k != "compile" and row.get(k, v) != v]
    if row.get("compile", "off") != "off":
        changed.append("compile")
    return ", ".join(changed) or "plain"


def _pair_markdown(rows: list[dict]) -> list[str]:
    """The side-by-side table: slotbench's and the original's step on the same input, same machine, same run."""
    lines = ["## Side by side with the original (training step, reference MOVi-E configuration)\n",
             "Each network's step in slotbench and in the original implementation (its own `build_model`, "
             "config file and trainer), one right after the other in this run, each in its own process, on "
             "the same input: the reference configuration at 128x128 with "
             f"{PAIR_BATCH} clips of 3 frames (tokenizers: {3 * PAIR_BATCH} frames); slotbench's step as its "
             "training loop runs it (fused Adam). vs original: the original's time over slotbench's (above 1: "
             "slotbench is faster).\n",
             "| network | input | original s/step | slotbench float32 s/step | vs original | slotbench bf16 "
             "autocast s/step | vs original |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["setting"] != "pair" or r.get("impl") == "original" or r.get("amp", "off") != "off":
            continue
        theirs = next((o for o in rows if o.get("impl") == "original" and o["model"] == r["model"]), {})
        original = theirs.get("s_per_step", theirs.get("reason", "not measured"))
        low = next((o for o in rows if o["setting"] == "pair" and o.get("amp") == "bf16" and o["model"] == r["model"]),
                   {})
        cells = [f"{x.get('s_per_step', '')} | " + (f"**{x['vs_original']:.2f}x**" if "vs_original" in x else "")
                 for x in (r, low)]
        lines.append(f"| {r['model']} | {r['batch']}x{r['frames']}x{r['resolution']}² | {original} | "
                     f"{cells[0]} | {cells[1]} |")
    return lines + [""]


def _markdown(result: dict) -> str:
    lines = [f"# Speed suite\n\nMachine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"torch {result['machine']['torch']}, {result['machine']['threads']} threads"
             f"{', GPU ' + result['machine']['gpu'] if result['machine']['gpu'] else ', no GPU'}. "
             f"Date: {result['date']}. float32; median of {result['repeats']} after a warm-up. 1-minute load "
             f"average {result['machine']['load_average_at_start']} at the start (other jobs on the same cores "
             f"slow every figure down).\n"]
    if "train" in result:
        lines += _pair_markdown(result["train"])
        lines += ["## Training step (forward + backward + clipping + Adam)\n",
                  "Plain rows (no switch) first; a switch row changes one setting of the plain row above it; "
                  "the speed-up is against that plain row.\n",
                  "| network | setting | device | switch | input | params | s/step | clips/s | speed-up | "
                  "peak MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
        plain = {}
        for r in result["train"]:
            if r.get("impl") == "original":
                continue
            switch = _switch(r)
            key = (r["model"], r["setting"], r["device"])
            if switch == "plain":
                plain[key] = r
            base = plain.get(key)
            speedup = f"{base['s_per_step'] / r['s_per_step']:.2f}x" if base and switch != "plain" else ""
            if r.get("compile_s"):
                switch += f" ({r['compile']}, {r['compile_s']} s to compile)"
            lines.append(f"| {r['model']} | {r['setting']} | {r['device']} | {switch} | "
                         f"{r['batch']}x{r['frames']}x{r['resolution']}² | {r['parameters']:,} | {r['s_per_step']} | "
                         f"{r['clips_per_s']} | {speedup} | {r['peak_memory_mib']} |")
        lines.append("")
    if "seg" in result:
        s = result["seg"]
        lines += ["## Segmentation metrics (FG-ARI + mIoU + mBO)\n",
                  f"{s['videos']} videos of {s['shape']}, up to {s['max_segments']} segments: slotbench batched "
                  f"**{s['videos_per_s']['slotbench_batched']} videos/s**, per-video scikit-learn + SciPy loop "
                  f"{s['videos_per_s']['per_video_sklearn_scipy']} videos/s (**{s['speedup']}x**); largest "
                  f"difference {s['max_abs_difference']:.2e}.\n"]
    if "decode" in result:
        lines += ["## Reconstruction from slots at the `shapes` profile (random weights, CPU)\n",
                  "| model | decoder | network evaluations per frame | s/frame |", "|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['decoder']} | {r['network_evaluations']} | {r['s_per_frame']} |"
                  for r in result["decode"]]
        lines.append("")
    if "data" in result:
        lines += ["## Data loading (storage format, training clips, normalised)\n",
                  "| workers | persistent | clip | batch | clips/s |", "|---|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['persistent_workers']} | {r['clip']} | {r['batch']} | {r['clips_per_s']} |"
                  for r in result["data"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="train,seg,decode,data",
                        help="sections; 'pair' alone: only the side-by-side cases of the train section")
    parser.add_argument("--quick", action="store_true", help="no fast-path on/off variants")
    parser.add_argument("--full-reference", action="store_true",
                        help="also the 128x128 reference-batch cases on CPU (always on CUDA)")
    parser.add_argument("--seg-videos", type=int, default=16)
    parser.add_argument("--tag", default="", help="write suite_TAG.json / .md instead of suite.json / .md")
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case = json.loads(args.child)
        if case.pop("impl", None) == "original":
            print(json.dumps(run_original_case(case["name"], case["setting"], case["repeats"])))
        else:
            print(json.dumps(run_train_case(case.pop("name"), case.pop("setting"), case.pop("device"),
                                            case.pop("repeats"), **case)))
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sections = set(args.only.split(","))
    result = {"benchmark": "slotbench speed suite",
              "date": datetime.now(UTC).isoformat(timespec="seconds"), "repeats": args.repeats,
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                          "load_average_at_start": round(os.getloadavg()[0], 2)}}
    if sections & {"train", "pair"}:
        result["train"] = train_section(args.repeats, devices, args.quick, args.full_reference,
                                        pair_only="train" not in sections)
    result["machine"]["load_average_after_train"] = round(os.getloadavg()[0], 2)
    if "seg" in sections:
        result["seg"] = seg_section(args.repeats, args.seg_videos)
    if "decode" in sections:
        result["decode"] = decode_section(args.repeats)
    if "data" in sections:
        result["data"] = data_section(args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"suite_{args.tag}" if args.tag else "suite"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
