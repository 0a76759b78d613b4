"""SlotDiffusion's reconstruction MSE against the number of sampler steps (a benchmark, not a test).

Loads the SlotDiffusion model trained by ``bench/bench_models_shapes.py`` (its scratch run
``bench/scratch/models_shapes/slotdiffusion/``, shapes profile), encodes the first ``--frames``
frames of the first ``--videos`` test videos to slots once, and decodes those same slots with
DDPM (ancestral, all ``T`` steps), DDIM (eta 0) and DPM-Solver++ (single-step, order 3, the
reference evaluation's sampler) for several step counts, through the model's own
``SlotDiffusion.reconstruct`` (every clean-latent prediction snapped to the VQ codebook, one
initial noise shared by all frames as the reference). Every decoding starts from a fresh CPU
generator seeded with each of ``--seeds``, so for a given seed all samplers start from the same
initial noise (DDPM then draws its per-step noise from the same generator); the MSE of a point is
the mean over the seeds (one noise draw is shared by every frame, so one seed is one sample).

For each (sampler, steps): reconstruction MSE as the reference defines it (per frame, the sum of
squared errors over 3xHxW values in [0, 1], then the mean over frames and videos), PSNR and
SSIM (:func:`slotbench.metrics.reconstruction.recon_metrics`), the number of U-Net evaluations
per frame (counted with a forward hook: frames passed through the U-Net / frames decoded) and the
wall time. The VQ-VAE's own reconstruction of the frames (encode, snap, decode: what a perfect
latent sampler would reach) is the floor line of the plot.

Writes ``bench/results/sampler_steps.json`` / ``.md`` and ``docs/images/sampler_steps.png``.

(Run it with ``PYTHONPATH=bench/scratch/models_shapes/slotdiffusion/code/src`` when that run was made
with ``--rev``, so that the model is read by the same code as its evaluation stages.)

Usage: ``python bench/bench_sampler_steps.py [--videos 2] [--frames 8] [--threads 1]
[--dpm 3 5 10 20 50 100] [--ddim 5 10 20 50 100 200 500] [--no-ddpm]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from machine import cpu_model

import slotbench
from slotbench import checkpoint
from slotbench.checkpoint import restore_model
from slotbench.data.dataset import VideoDataset, to_model_input
from slotbench.metrics.reconstruction import recon_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUN = ROOT / "bench" / "scratch" / "models_shapes" / "slotdiffusion"
LABEL = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM (eta 0)", "dpm++": "DPM-Solver++ (order 3, single-step)"}


class UNetCounter:
    """Counts the frames that go through the U-Net (a forward pre-hook)."""

    def __init__(self, unet: torch.nn.Module):
        self.frames = 0
        self.calls = 0
        unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs):
        self.frames += int(inputs[0].shape[0])
        self.calls += 1


def _scores(pred: torch.Tensor, video: torch.Tensor) -> dict:
    s = recon_metrics(pred.flatten(0, 1), video.flatten(0, 1))
    return {"MSE": round(float(s["mse"].mean()), 4), "PSNR": round(float(s["psnr"].mean()), 4),
            "SSIM": round(float(s["ssim"].mean()), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=RUN,
                        help="scratch project of the trained model (default: %(default)s)")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8,
                        help="first frames of each video (slots from a pass over them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="noise seeds: every (sampler, steps) decodes once per seed; mean and spread reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--dpm", type=int, nargs="*", default=[3, 5, 10, 20, 50, 100], help="DPM-Solver++ step counts")
    parser.add_argument("--ddim", type=int, nargs="*", default=[5, 10, 20, 50, 100, 200, 500], help="DDIM step counts")
    parser.add_argument("--no-ddpm", action="store_true", help="leave out DDPM (all T steps)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "images" / "sampler_steps.png")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = args.run.resolve()
    model_file = run / "results" / args.dataset / "slotdiffusion" / "seed0" / "model.pt"
    state = checkpoint.load(model_file)
    model = restore_model(state).eval()
    counter = UNetCounter(model.unet)
    data = VideoDataset(run / "data" / args.dataset, "test", num_videos=args.videos)
    raw = torch.stack([data[i]["video"] for i in range(args.videos)])[:, : args.frames]
    video = to_model_input(raw)
    m = video.shape[0] * video.shape[1]
    with torch.no_grad():
        slots, _ = model.trunk.encode_chunked(video, video.shape[1])
        frames = video.flatten(0, 1)
        tok = model.tokenizer.decode(model.snap(model.tokenizer.encode(frames)))
    floor = _scores(tok.unflatten(0, video.shape[:2]), video)
    print(f"VQ-VAE alone: {floor}", flush=True)

    plan = [("dpm++", s) for s in args.dpm] + [("ddim", s) for s in args.ddim]
    if not args.no_ddpm:
        plan.append(("ddpm", None))
    points = []
    for sampler, steps in plan:
        per_seed, wall, evals = [], 0.0, set()
        for seed in args.seeds:
            counter.frames = counter.calls = 0
            generator = torch.Generator().manual_seed(seed)  # the same initial noise for every sampler
            start = time.perf_counter()
            pred = model.reconstruct(slots, sampler=sampler, steps=steps, same_noise=True, generator=generator)
            wall += time.perf_counter() - start
            evals.add((counter.frames / m, counter.calls))
            per_seed.append({"seed": seed, **_scores(pred, video)})
        (evals_per_frame, calls), = evals  # the same count for every seed
        mse = torch.tensor([r["MSE"] for r in per_seed], dtype=torch.float64)
        point = {"sampler": sampler, "steps": steps if steps is not None else model.schedule.num_timesteps,
                 "unet_evals_per_frame": evals_per_frame, "unet_calls": calls,
                 "MSE": round(float(mse.mean()), 4),
                 "MSE_std": round(float(mse.std()), 4) if len(per_seed) > 1 else 0.0,
                 "PSNR": round(sum(r["PSNR"] for r in per_seed) / len(per_seed), 4),
                 "SSIM": round(sum(r["SSIM"] for r in per_seed) / len(per_seed), 5),
                 "per_seed": per_seed, "wall_s": round(wall, 2),
                 "ms_per_frame_eval": round(1000 * wall / (evals_per_frame * m * len(per_seed)), 3)}
        points.append(point)
        print(json.dumps({k: v for k, v in point.items() if k != "per_seed"}), flush=True)

    result = {
        "benchmark": "SlotDiffusion reconstruction MSE against sampler steps",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_avg_1min_end": round(os.getloadavg()[0], 2)},
        "code": os.path.relpath(Path(slotbench.__file__).parent, ROOT),
        "model": {"checkpoint": os.path.relpath(model_file, ROOT), "train_steps": state["step"],
                  "tokenizer": "vqvae", "diffusion_timesteps": model.schedule.num_timesteps},
        "data": {"dataset": args.dataset, "split": "test", "videos": args.videos, "frames_per_video": args.frames,
                 "frames_total": m, "slots": "one pass of the trunk over those frames"},
        "noise": {"seeds": args.seeds, "same_noise": True,
                  "note": "per seed, a fresh CPU generator for every decoding: all samplers start from the same "
                          "initial noise (one draw shared by all frames, as the reference); MSE_std is the standard "
                          "deviation over the seeds"},
        "mse_definition": "per frame, sum of squared error over 3xHxW values in [0,1] (clamped); mean over frames",
        "vqvae_floor": floor,
        "points": points,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sampler_steps.json").write_text(json.dumps(result, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=120)
    for sampler, marker in (("dpm++", "o"), ("ddim", "s"), ("ddpm", "^")):
        pts = [p for p in points if p["sampler"] == sampler]
        if pts:
            ax.errorbar([p["unet_evals_per_frame"] for p in pts], [p["MSE"] for p in pts],
                        yerr=[p["MSE_std"] for p in pts], marker=marker, capsize=2, label=LABEL[sampler],
                        linestyle="-" if len(pts) > 1 else "none")
    ax.axhline(floor["MSE"], color="grey", linestyle="--", linewidth=1, label="VQ-VAE alone (floor)")
    ax.set_xscale("log")
    ax.set_xlabel("U-Net evaluations per frame")
    ax.set_ylabel("reconstruction MSE (sum over 3x32x32)")
    ax.set_title(f"SlotDiffusion on {args.dataset}: {args.videos} test videos x {args.frames} frames, "
                 f"mean and std over {len(args.seeds)} noise seeds", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    args.image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.image)

    image_rel = os.path.relpath(args.image.resolve(), args.out.resolve())
    lines = ["# SlotDiffusion: reconstruction MSE against sampler steps", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"torch {torch.__version__} (CPU), "
             f"{result['machine']['threads']} thread(s). Date: {result['date']}. `bench/bench_sampler_steps.py`.", "",
             f"Model: `{result['model']['checkpoint']}` ({state['step']} training steps, shapes profile, "
             f"T = {model.schedule.num_timesteps}). Frames: the first {args.frames} of {args.videos} test videos "
             f"({m} frames), the same slots for every decoding; each (sampler, steps) decodes once per noise seed "
             f"({', '.join(map(str, args.seeds))}), and for a given seed every sampler starts from the same initial "
             "noise (one draw shared by all frames, as the reference). MSE: per-frame sum of squared errors over "
             "3x32x32 values in [0, 1], mean over frames; then mean and standard deviation over the seeds.", "",
             "| sampler | steps | U-Net evaluations / frame | MSE (mean ± std over seeds) | MSE per seed | PSNR | SSIM "
             "| wall time, all seeds (s) | ms per frame-evaluation |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['sampler']} | {p['steps']} | {p['unet_evals_per_frame']:g} | {p['MSE']:.1f} ± "
                     f"{p['MSE_std']:.1f} | {' / '.join(format(r['MSE'], '.0f') for r in p['per_seed'])} | "
                     f"{p['PSNR']:.2f} | {p['SSIM']:.3f} | {p['wall_s']:.1f} | {p['ms_per_frame_eval']:.2f} |")
    lines += [f"| VQ-VAE alone (encode, snap, decode) | | 0 | {floor['MSE']:.1f} | | {floor['PSNR']:.2f} | "
              f"{floor['SSIM']:.3f} | | |", "", f"![MSE against steps]({image_rel})"]
    (args.out / "sampler_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
