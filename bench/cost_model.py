"""What a MOVi run costs: FLOPs counted with PyTorch's FLOP counter, turned into time.

For each network at its reference configuration as slotbench resolves it from ``params/``
(SAVi; STEVE and its dVAE; SlotDiffusion and its VQ-VAE), on the two MOVi configurations that
differ (``movi_e`` stands for MOVi-D/E, ``movi_solid`` for MOVi-Solid/Tex; see the
``per_dataset`` sections of ``params/models/*.yaml``), this counts

- the FLOPs of one training step (forward + loss + backward) at the reference global batch and
  clip length, and
- the FLOPs of evaluating one 24-frame test video for each task: segmentation
  (``model.segment``), reconstruction (encode, decode with the default sampler of ``params/``,
  the per-frame metrics with LPIPS-VGG) and compositional generation (encode, swap slots within
  the batch, decode).

The FLOPs depend on shapes only, so the weights are random. A training step is counted on fake
tensors (shapes, no arithmetic) directly at the reference batch, and also at batches n = 1, 2, 3
extrapolated affinely as a check. Evaluation runs the real computation (the decoders' sampling
loops need values) on n = 1, 2, 3 frames and extrapolates ``F(n) = a + b n`` to 24 frames. The
second difference ``|F(3) - 2 F(2) + F(1)| / F(3)`` (0 when the count is affine in n) is
written next to each figure.

It then times a few training steps per network on this CPU (``bench/suite.py``'s
``run_train_case``: median of repeats after a warm-up, at the suite's ``reference`` size
64x64, batch 4, 3 frames), divides the FLOPs counted at that same size by the time (achieved
FLOP/s) and compares it with this CPU's peak (cores x clock x fp32 FLOP per cycle, from lscpu).

Finally it multiplies the step FLOPs by the reference schedules (epochs x steps per epoch from
``params/``) and turns the totals into GPU-hours on one A40 and one H100 SXM at a stated
utilisation: an estimate, not a measurement.

Counting conventions (``torch.utils.flop_counter``): 2 FLOP per multiply-add of matrix
products, convolutions and attention; element-wise ops, normalisation, softmax and the Adam
update are not counted. PyTorch's counter has no formula for the CPU flash-attention kernel that
``F.scaled_dot_product_attention`` uses on CPU; :func:`register_cpu_attention` adds the same
formula the counter uses for the CUDA kernels (a causal mask counts as full attention).

Writes ``bench/results/cost_model.json`` and ``bench/results/cost_model.md``.

Usage: ``python bench/cost_model.py [--repeats 3] [--threads 2] [--train-videos 9750] [--utilisation 0.4]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from torch.utils import flop_counter
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: the configurations that differ: movi_e's is also MOVi-D's, movi_solid's also MOVi-Tex's
DATASETS = {"movi_e": "MOVi-D/E", "movi_solid": "MOVi-Solid/Tex"}
MODELS = ("savi", "steve", "slotdiffusion")
TOKENIZERS = ("dvae", "vqvae")
TASKS = ("segmentation", "reconstruction", "compositional_generation")
#: dense peak FLOP/s of one GPU (vendor data sheets, without sparsity)
GPUS = {"A40": {"fp32": 37.4e12, "bf16": 149.7e12}, "H100 SXM": {"fp32": 67e12, "bf16": 989e12}}
#: train videos of MOVi-D/E (Kubric README, ../shared/reference/official-video-spec-data-train-eval.md
#: §1.2); the reference specs give no count for the STEVE release of MOVi-Solid/Tex: assumed the same
TRAIN_VIDEOS = 9750
SIZES = (1, 2, 3)


# ----------------------------------------------------------------------------- counting
def register_cpu_attention() -> None:
    """Count ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward) as the
    counter counts the CUDA flash kernel: ``4 B H Lq Lk D`` forward, ``2.5x`` that backward."""
    aten = torch.ops.aten
    if aten._scaled_dot_product_flash_attention_for_cpu in flop_counter.flop_registry:
        return
    flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)(
        flop_counter.sdpa_flop)
    flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)(
        flop_counter.sdpa_backward_flop)


class _GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every FLOP goes to ``"Global"``. The
    per-module breakdown is not used here, and its module hooks slow STEVE's 1024-step token
    decoding down about a hundredfold."""

    parents = {"Global"}

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of calling ``fn`` once (forward and, when ``fn`` calls it, backward)."""
    register_cpu_attention()
    counter = flop_counter.FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


def affine_extrapolate(counts: list[int], sizes: tuple[int, ...], target: int) -> dict:
    """``F(target)`` from counts ``F(n)`` at ``sizes`` (equally spaced), assuming ``F(n) = a + b n``.

    Returns:
        ``{"flops", "per_unit" (b), "intercept" (a), "counted_at", "counts",
        "second_difference_rel"}``: the last is ``|F(3) - 2F(2) + F(1)| / F(3)`` (0 when affine).
    """
    step = sizes[1] - sizes[0]
    per_unit = (counts[1] - counts[0]) / step
    intercept = counts[0] - per_unit * sizes[0]
    curvature = abs(counts[2] - 2 * counts[1] + counts[0]) / max(counts[2], 1)
    return {"flops": int(round(intercept + per_unit * target)), "per_unit": int(round(per_unit)),
            "intercept": int(round(intercept)), "counted_at": list(sizes), "counts": counts,
            "second_difference_rel": curvature}


# ----------------------------------------------------------------------------- networks
def network_config(name: str, dataset: str, params_dir: Path) -> dict:
    """The resolved config of a model or tokenizer ``name`` on ``dataset`` (profile of ``params_dir``)."""
    from slotbench.config import resolve, resolve_tokenizer

    return (resolve_tokenizer if name in TOKENIZERS else resolve)(dataset, name, params_dir)


def build_network(name: str, cfg: dict, params_dir: Path) -> nn.Module:
    """The module a training run of ``name`` optimises, with random weights.

    Slot models get a randomly initialised frozen tokenizer of the kind their dataset's
    ``tokenizer`` stage would train; the VQ-VAE gets an LPIPS-VGG with random weights (same
    cost as the pretrained one, no weight files needed).
    """
    from slotbench.config import frame_size
    from slotbench.models import MODEL_TOKENIZER, build_model, build_tokenizer
    from slotbench.models.frame_tokenizer import FrameTokenizer

    torch.manual_seed(0)
    if name in TOKENIZERS:
        tok = cfg["tokenizer"]
        perceptual = None
        if tok["name"] == "vqvae" and tok["percept_loss_w"] > 0:
            from slotbench.metrics.lpips import LPIPS

            perceptual = LPIPS().eval().requires_grad_(False)
        return FrameTokenizer(build_tokenizer(tok, perceptual), tok)
    tokenizer = None
    if name in MODEL_TOKENIZER:
        tok_cfg = network_config(MODEL_TOKENIZER[name], cfg["dataset"]["name"], params_dir)
        tokenizer = build_tokenizer(tok_cfg["tokenizer"])
    return build_model(cfg["model"], frame_size(cfg["dataset"]), tokenizer=tokenizer)


def _video(batch: int, frames: int, resolution: int) -> torch.Tensor:
    """A random video ``[batch, frames, 3, resolution, resolution]`` in [-1, 1]."""
    return torch.rand(batch, frames, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1


def train_step_flops(model: nn.Module, batch: int, frames: int, resolution: int) -> int:
    """FLOPs of one training step (forward, loss, backward) on a batch of ``batch`` clips
    ``[batch, frames, 3, resolution, resolution]`` (gradient clipping and Adam: element-wise, not counted).

    The step runs on fake tensors (``FakeTensorMode``: shapes and dtypes, no arithmetic), so a
    reference batch costs seconds; the counts equal those of the real step (``tests/test_cost_model.py``).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    from slotbench.training.distributed import LossStep

    model.train()
    if hasattr(model, "set_step"):
        model.set_step(0, 1000)
    step = LossStep(model)

    def run() -> None:
        with FakeTensorMode(allow_non_fake_inputs=True):
            step(torch.rand(batch, frames, 3, resolution, resolution) * 2 - 1)["loss"].backward()

    flops = count_flops(run)
    model.zero_grad(set_to_none=True)
    return flops


@torch.no_grad()
def segmentation_flops(model: nn.Module, eval_cfg: dict, frames: int, resolution: int) -> int:
    """FLOPs of ``model.segment`` on one video ``[1, frames, 3, resolution, resolution]``."""
    model.eval()
    video = _video(1, frames, resolution)
    return count_flops(lambda: model.segment(video, eval_cfg["chunk_len"]))


@torch.no_grad()
def decoding_flops(model: nn.Module, eval_cfg: dict, resolution: int, lpips: nn.Module | None) -> dict:
    """FLOPs per frame of the reconstruction stage on a one-frame video: ``trunk.encode_chunked``
    then ``decode_slots`` with ``eval.sampler`` / ``eval.sampler_steps`` (``decode``), and
    ``recon_metrics`` with ``lpips`` (``metrics``). Compositional generation runs the same encode
    and decode on swapped slots (the swap is a copy), without the metrics."""
    from slotbench.evaluation.reconstruction import decode_slots
    from slotbench.metrics.reconstruction import recon_metrics

    model.eval()
    video, generator = _video(1, 1, resolution), torch.Generator().manual_seed(0)
    pred = []
    decode = count_flops(lambda: pred.append(decode_slots(model, model.trunk.encode_chunked(video, 1)[0],
                                                          eval_cfg["sampler"], eval_cfg["sampler_steps"], generator)))
    metrics = count_flops(lambda: recon_metrics(pred[0].flatten(0, 1), video.flatten(0, 1), lpips))
    return {"decode": decode, "metrics": metrics}


def eval_per_video(model: nn.Module, cfg: dict, resolution: int, decode: bool, progress: bool) -> dict:
    """FLOPs of evaluating one ``dataset.video_len``-frame video per task.

    Segmentation is counted on 1, 2, 3 frames and extrapolated (:func:`affine_extrapolate`);
    reconstruction and compositional generation (only when ``decode``: the decoders' sampling
    loops are slow to count) are counted on one frame and multiplied by the frames: every frame is
    decoded alone, so the cost is linear in them (``tests/test_cost_model.py`` checks it).
    """
    from slotbench.metrics.lpips import LPIPS

    frames, ecfg = cfg["dataset"]["video_len"], cfg["eval"]
    counts = [segmentation_flops(model, ecfg, n, resolution)
              for n in tqdm(SIZES, desc="segmentation", disable=not progress, leave=False)]
    out = {"frames": frames, "chunk_len": ecfg["chunk_len"], "sampler": ecfg["sampler"],
           "sampler_steps": ecfg["sampler_steps"], "segmentation": affine_extrapolate(counts, SIZES, frames)}
    if decode:
        per_frame = decoding_flops(model, ecfg, resolution, LPIPS().eval() if ecfg["lpips"] else None)
        out["reconstruction"] = {"flops": frames * (per_frame["decode"] + per_frame["metrics"]), "per_frame": per_frame,
                                 "counted_at": [1], "scaled": f"x {frames} frames"}
        out["compositional_generation"] = {"flops": frames * per_frame["decode"], "counted_at": [1],
                                           "scaled": f"x {frames} frames (reconstruction's encode + decode)"}
    return out


def reference_steps(train_cfg: dict, dataset_cfg: dict, train_videos: int) -> dict:
    """Optimizer steps of the reference schedule: ``max_steps`` when set, else ``max_epochs`` x
    ``floor(clips per video x train_videos / batch)`` (the original's ``drop_last`` loader)."""
    clips = dataset_cfg["video_len"] - (train_cfg["n_sample_frames"] - 1) * train_cfg["frame_offset"]
    per_epoch = clips * train_videos // train_cfg["batch_size"]
    if train_cfg["max_steps"]:
        return {"steps": int(train_cfg["max_steps"]), "rule": "train.max_steps"}
    return {"steps": int(train_cfg["max_epochs"] * per_epoch), "epochs": train_cfg["max_epochs"],
            "steps_per_epoch": per_epoch, "clips_per_video": clips, "train_videos": train_videos,
            "rule": "max_epochs x floor(clips_per_video x train_videos / batch_size)"}


def count_network(name: str, dataset: str, params_dir: Path, train_videos: int, decode: bool = True,
                  progress: bool = True) -> dict:
    """Every count for one network on one dataset configuration (see the module docstring)."""
    from slotbench.config import frame_size

    cfg = network_config(name, dataset, params_dir)
    model = build_network(name, cfg, params_dir)
    res, tcfg = frame_size(cfg["dataset"]), cfg["train"]
    counts = [train_step_flops(model, n, tcfg["n_sample_frames"], res)
              for n in tqdm(SIZES, desc=f"{dataset} {name} train", disable=not progress, leave=False)]
    out = {"resolution": res, "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "train_step": {"flops": train_step_flops(model, tcfg["batch_size"], tcfg["n_sample_frames"], res),
                          "batch_size": tcfg["batch_size"], "frames": tcfg["n_sample_frames"],
                          "affine_check": affine_extrapolate(counts, SIZES, tcfg["batch_size"])},
           "schedule": reference_steps(tcfg, cfg["dataset"], train_videos)}
    out["train_total_flops"] = out["train_step"]["flops"] * out["schedule"]["steps"]
    if name in MODELS:
        out["eval_per_video"] = eval_per_video(model, cfg, res, decode, progress)
    return out


# ----------------------------------------------------------------------------- this CPU
def lscpu() -> dict[str, str]:
    """``lscpu``'s ``key: value`` lines (empty when lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def fp32_flops_per_cycle(info: dict[str, str]) -> tuple[int, str]:
    """fp32 FLOP per cycle per core from the SIMD flags and vendor, and the assumption made."""
    flags, vendor = set(info.get("Flags", "").split()), info.get("Vendor ID", "")
    family = int(info.get("CPU family", "0") or 0)
    if "avx512f" in flags and vendor == "AuthenticAMD" and family < 26:
        return 32, ("AVX-512 on AMD Zen 4 runs on 256-bit datapaths: 2 FMA pipes x 8 fp32 lanes x 2 = "
                    "32 fp32 FLOP/cycle/core (not the 64 of two 512-bit FMA units)")
    if "avx512f" in flags:
        return 64, "AVX-512 with two 512-bit FMA units: 2 x 16 fp32 lanes x 2 = 64 fp32 FLOP/cycle/core"
    if "fma" in flags and "avx2" in flags:
        return 32, "AVX2 with two 256-bit FMA units: 2 x 8 fp32 lanes x 2 = 32 fp32 FLOP/cycle/core"
    return 8, "SSE, no FMA: one 4-lane add and one 4-lane multiply = 8 fp32 FLOP/cycle/core"


def cpu_peak(info: dict[str, str]) -> dict:
    """This CPU's fp32 peak: cores x clock x FLOP per cycle (clock: lscpu's max MHz when it gives
    one, else /proc/cpuinfo's ``cpu MHz``, the nominal clock a VM reports)."""
    cores = int(info.get("Core(s) per socket", "1")) * int(info.get("Socket(s)", "1"))
    mhz, source = info.get("CPU max MHz"), "lscpu CPU max MHz"
    if not mhz:
        found = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        mhz, source = (found.group(1), "/proc/cpuinfo cpu MHz (lscpu gives no max)") if found else ("0", "unknown")
    per_cycle, assumption = fp32_flops_per_cycle(info)
    ghz = float(mhz) / 1000
    return {"model": info.get("Model name", "unknown"), "cores": cores, "ghz": round(ghz, 3), "clock_source": source,
            "fp32_flops_per_cycle_per_core": per_cycle, "assumption": assumption,
            "peak_fp32_flops": cores * ghz * 1e9 * per_cycle}


def measure_throughput(names: tuple[str, ...], repeats: int, peak: float) -> list[dict]:
    """Seconds per training step (``suite.run_train_case``, setting ``reference``: 64x64, batch 4
    clips of 3 frames, tokenizers 12 frames) and the FLOPs counted at that same size, per network."""
    from suite import _build, _config, run_train_case

    rows = []
    for name in tqdm(names, desc="throughput"):
        load = round(os.getloadavg()[0], 2)
        timed = run_train_case(name, "reference", "cpu", repeats)
        cfg = _config(name, "reference")
        with tempfile.TemporaryDirectory() as tmp:
            model = _build(name, cfg, Path(tmp))
        flops = train_step_flops(model, timed["batch"], timed["frames"], timed["resolution"])
        achieved = flops / timed["s_per_step"]
        rows.append({"network": name, "input": f"{timed['batch']}x{timed['frames']}x{timed['resolution']}^2",
                     "s_per_step": timed["s_per_step"], "repeats_s": timed["repeats_s"], "flops_per_step": flops,
                     "achieved_flops_per_s": achieved, "fraction_of_peak": achieved / peak,
                     "threads": torch.get_num_threads(), "load_average_before": load,
                     "date": datetime.now(UTC).isoformat(timespec="seconds")})
    return rows


# ----------------------------------------------------------------------------- totals
def gpu_hours(flops: float, utilisation: float) -> dict:
    """Hours on one GPU of :data:`GPUS` for ``flops`` at ``utilisation`` of its dense peak."""
    return {gpu: {prec: flops / (peak * utilisation) / 3600 for prec, peak in peaks.items()}
            for gpu, peaks in GPUS.items()}


def run_totals(networks: dict, utilisation: float, cpu_flops_per_s: dict[str, float]) -> dict:
    """Per dataset and slot model: training FLOPs of the model and its tokenizer, GPU-hours, and
    the days the same FLOPs would take at this CPU's measured rate."""
    from slotbench.models import MODEL_TOKENIZER

    totals = {}
    for dataset, nets in networks.items():
        totals[dataset] = {}
        for model in MODELS:
            parts = [model] + ([MODEL_TOKENIZER[model]] if model in MODEL_TOKENIZER else [])
            flops = sum(nets[p]["train_total_flops"] for p in parts)
            cpu_s = sum(nets[p]["train_total_flops"] / cpu_flops_per_s[p] for p in parts)
            totals[dataset][model] = {"networks": parts, "train_flops": flops,
                                      "gpu_hours_estimate": gpu_hours(flops, utilisation),
                                      "cpu_days_at_measured_rate": cpu_s / 86400}
    return totals


# ----------------------------------------------------------------------------- report
def _e(x: float) -> str:
    """A FLOP count in engineering notation, e.g. ``3.1 T``."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def markdown(result: dict) -> str:
    """The report: measured throughput, FLOPs per network, and the "what a MOVi run costs" table."""
    cpu = result["machine"]["cpu_peak"]
    stamp = f"{cpu['model']}, {result['date'][:10]}"
    lines = ["# What a MOVi run costs (cost model)\n",
             f"FLOPs counted with `torch.utils.flop_counter` ({result['flop_counter']['convention']}), torch "
             f"{result['machine']['torch']}. Training steps counted at the reference batch on fake tensors and "
             f"checked against an affine fit of the counts at batch {SIZES}: `2nd diff` is "
             "|F(3) - 2F(2) + F(1)| / F(3) (0: exactly affine).\n",
             "## Measured on this CPU\n",
             f"CPU: **{cpu['model']}** (lscpu), {cpu['cores']} cores at {cpu['ghz']} GHz ({cpu['clock_source']}); "
             f"peak fp32 = cores x clock x {cpu['fp32_flops_per_cycle_per_core']} FLOP/cycle = "
             f"**{_e(cpu['peak_fp32_flops'])}FLOP/s**. Assumption: {cpu['assumption']}.\n",
             f"Training step timed with `bench/suite.py`'s `run_train_case` (forward, backward, clipping, Adam; "
             f"median of {result['repeats']} after a warm-up, {result['throughput'][0]['threads']} threads, float32, "
             "random weights) at the suite's `reference` size; the FLOPs are counted at the same size. Other jobs "
             "shared these cores (1-minute load average before each row).\n",
             "| network | input (B x T x H²) | s/step | FLOP/step | achieved FLOP/s | of peak | load | CPU, date |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["throughput"]:
        lines.append(f"| {r['network']} | {r['input']} | {r['s_per_step']} | {_e(r['flops_per_step'])} | "
                     f"{_e(r['achieved_flops_per_s'])} | {100 * r['fraction_of_peak']:.1f}% | "
                     f"{r['load_average_before']} | {cpu['model']}, {r['date'][:10]} |")
    lines += ["", "## FLOPs per network at the reference configuration\n",
              "| config | network | params | train step (batch x frames, 128²) | 2nd diff | segmentation / video | "
              "reconstruction / video | comp. generation / video |", "|---|---|---|---|---|---|---|---|"]
    for dataset, nets in result["networks"].items():
        for name, n in nets.items():
            ts, ev = n["train_step"], n.get("eval_per_video", {})
            cells = [_e(ev[t]["flops"]) if t in ev else "" for t in TASKS]
            lines.append(f"| {DATASETS.get(dataset, dataset)} | {name} | {n['parameters']:,} | {_e(ts['flops'])} "
                         f"({ts['batch_size']} x {ts['frames']}) | {ts['affine_check']['second_difference_rel']:.1e} | "
                         + " | ".join(cells) + " |")
    lines += ["", "Evaluation: one 24-frame 128x128 video, chunk_len 24. Segmentation counted on 1, 2, 3 frames "
              "and extrapolated; reconstruction and compositional generation counted on one frame and x24 (every "
              "frame decodes alone; the tests check linearity), for the MOVi-D/E configuration only (counting "
              "STEVE's 1024-step decoding took minutes per frame here; Solid/Tex differ in the encoder and 12 "
              f"slots). SlotDiffusion decodes with {result['eval_sampler']}; reconstruction includes the per-frame "
              "metrics with LPIPS-VGG (SSIM/MSE/PSNR mostly element-wise); compositional generation is the same "
              "encode + decode without metrics; FVD is a separate stage, not included.\n"]
    lines += table_lines(result, stamp)
    lines += ["", "## README table\n"] + readme_lines(result, stamp)
    return "\n".join(lines) + "\n"


def table_lines(result: dict, stamp: str) -> list[str]:
    """The full "what a MOVi run costs" table (training of the model and its tokenizer)."""
    util = result["assumptions"]["utilisation"]
    lines = [f"## What a MOVi run costs (training, estimate at {util:.0%} of dense peak)\n",
             f"Reference schedules from `params/` ({result['assumptions']['train_videos']:,} train videos per "
             "dataset assumed), model + its tokenizer. GPU-hours = FLOPs / (peak x utilisation): "
             "an **estimate**, not a measurement. CPU-days: the same FLOPs at the rate measured here "
             f"({stamp}).\n",
             "| config | model (+ tokenizer) | steps | train FLOPs | A40 fp32 h | A40 bf16 h | H100 fp32 h | "
             "H100 bf16 h | CPU-days here |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset, models in result["runs"].items():
        nets = result["networks"][dataset]
        for model, run in models.items():
            steps = " + ".join(f"{nets[p]['schedule']['steps']:,}" for p in run["networks"])
            g = run["gpu_hours_estimate"]
            lines.append(f"| {DATASETS.get(dataset, dataset)} | {' + '.join(run['networks'])} | {steps} | "
                         f"{_e(run['train_flops'])} | {g['A40']['fp32']:.0f} | {g['A40']['bf16']:.1f} | "
                         f"{g['H100 SXM']['fp32']:.0f} | {g['H100 SXM']['bf16']:.1f} | "
                         f"{run['cpu_days_at_measured_rate']:.0f} |")
    return lines


def readme_lines(result: dict, stamp: str) -> list[str]:
    """A short table to paste into the README (MOVi-D/E configuration)."""
    util = result["assumptions"]["utilisation"]
    dataset = next(iter(result["runs"]))
    runs, nets = result["runs"][dataset], result["networks"][dataset]
    lines = [f"What a {DATASETS.get(dataset, dataset)} run costs (FLOPs counted; GPU-hours an **estimate** at "
             f"{util:.0%} of dense peak; `bench/cost_model.py`):\n",
             "| model (+ tokenizer) | FLOP/step | train FLOPs | A40 bf16 h | H100 bf16 h | recon FLOP/video |",
             "|---|---|---|---|---|---|"]
    for model, run in runs.items():
        g = run["gpu_hours_estimate"]
        recon = nets[model]["eval_per_video"].get("reconstruction")
        lines.append(f"| {' + '.join(run['networks'])} | {_e(nets[model]['train_step']['flops'])} | "
                     f"{_e(run['train_flops'])} | {g['A40']['bf16']:.1f} | {g['H100 SXM']['bf16']:.1f} | "
                     f"{_e(recon['flops']) if recon else ''} |")
    best = max(result["throughput"], key=lambda r: r["fraction_of_peak"])
    lines.append(f"\nThis CPU ({stamp}) reaches {100 * min(r['fraction_of_peak'] for r in result['throughput']):.0f}-"
                 f"{100 * best['fraction_of_peak']:.0f}% of its fp32 peak on a training step.")
    return lines


def build_result(networks: dict, throughput: list[dict], peak: dict, info: dict[str, str], eval_cfg: dict,
                 repeats: int, train_videos: int, utilisation: float) -> dict:
    """The json record: counts (:func:`count_network` per dataset and network), measured
    throughput (:func:`measure_throughput`), this CPU, the assumptions and the run totals."""
    rate = {r["network"]: r["achieved_flops_per_s"] for r in throughput}
    return {"benchmark": "slotbench cost model", "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "repeats": repeats,
            "machine": {"cpu": peak["model"], "cpu_peak": peak, "torch": torch.__version__,
                        "lscpu": {k: info[k] for k in ("Model name", "Vendor ID", "CPU family", "Model", "CPU(s)",
                                                       "Core(s) per socket", "Socket(s)") if k in info}},
            "flop_counter": {"tool": "torch.utils.flop_counter.FlopCounterMode",
                             "convention": "2 FLOP per multiply-add of matmul/conv/attention; element-wise ops, "
                                           "norms, softmax and Adam not counted; CPU flash attention counted "
                                           "with the CUDA kernels' formula"},
            "assumptions": {"train_videos": train_videos, "utilisation": utilisation, "gpu_dense_peak_flops": GPUS,
                            "gpu_hours": "estimate: FLOPs / (dense peak x utilisation); not measured",
                            "datasets": DATASETS},
            "eval_sampler": f"{eval_cfg['sampler']} ({eval_cfg['sampler_steps'] or 'reference'} steps)",
            "networks": networks, "throughput": throughput, "runs": run_totals(networks, utilisation, rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per network (after a warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-videos", type=int, default=TRAIN_VIDEOS)
    parser.add_argument("--utilisation", type=float, default=0.4, help="fraction of a GPU's dense peak assumed")
    args = parser.parse_args()
    from slotbench.io import write_json, write_text
    from slotbench.paths import PROFILE_ENV

    if os.environ.get(PROFILE_ENV):
        sys.exit(f"${PROFILE_ENV} is set ({os.environ[PROFILE_ENV]!r}): the cost model is of the reference "
                 "profile; unset it")
    torch.set_num_threads(args.threads)
    info = lscpu()
    peak = cpu_peak(info)
    params = ROOT / "params"
    networks = {dataset: {name: count_network(name, dataset, params, args.train_videos, decode=dataset == "movi_e")
                          for name in tqdm((*MODELS, *TOKENIZERS), desc=f"count {dataset}")}
                for dataset in DATASETS}
    throughput = measure_throughput((*MODELS, *TOKENIZERS), args.repeats, peak["peak_fp32_flops"])
    eval_cfg = network_config("slotdiffusion", "movi_e", params)["eval"]
    result = build_result(networks, throughput, peak, info, eval_cfg, args.repeats, args.train_videos,
                          args.utilisation)
    write_json(RESULTS / "cost_model.json", result)
    write_text(RESULTS / "cost_model.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
