"""SAVi on the embedded `shapes` data for longer than the embedded default (a benchmark, not a test).

Runs the real stages (``slotbench export / train / eval-seg``) in a scratch project
``bench/scratch/savi_shapes/`` whose params are a copy of ``params/`` with only the run length
of the `shapes` profile changed (``--steps``, default 10000; the default profile trains 2000),
then writes ``bench/results/savi_shapes.json`` / ``.md`` (FG-ARI, mIoU, mBO, wall time, machine)
and ``docs/images/savi_shapes_masks.png``: for a few test videos, the frames, the ground-truth
segmentation, SAVi's (decoder alphas, the protocol) and the argmax of Slot Attention's attention
(upsampled from the feature grid), both with colours matched to the ground truth by Hungarian
assignment.

Usage: ``python bench/bench_savi_shapes.py [--steps 10000] [--dataset shapes]``

Sweeps: ``--name NAME`` works in ``bench/scratch/NAME/`` instead and writes its json / md / picture
there (not into ``bench/results`` / ``docs/images``); ``--set KEY=VALUE`` (repeatable) overrides a
dotted key of the scratch copy of the dataset's profile, or of the dataset's own file when the key
starts with ``dataset.``, the value read as YAML, e.g. ``--set train.lr=1e-3 --set
per_model.savi.model.num_iterations=3 --set dataset.synthetic.orientation=upright``.

Seeds: ``--seed N`` trains and evaluates seed N (model initialisation and clip order; the data stay
those of the dataset's own seed), for the spread between runs of one setting.

Long runs: ``--resume`` keeps the scratch dir and continues its training from the newest checkpoint
(the train stage resumes by itself when its params and code are unchanged), so a run longer than
one sitting is the same command again with ``--resume`` added.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

from slotbench import paths
from slotbench.data.dataset import VideoDataset, to_model_input
from slotbench.training import checkpoint
from slotbench.training.tasks import restore_model
from slotbench.visualize import colour_ids, make_grid, match_to_gt, save_png
from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _stage(scratch: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "slotbench", *args], cwd=scratch, check=True)
    return time.perf_counter() - start


READOUTS = ("alpha", "attention")


def load_savi(scratch: Path, dataset: str, seed: int) -> torch.nn.Module:
    """The trained SAVi of a scratch run, in ``eval()`` mode."""
    state = checkpoint.load(scratch / paths.CHECKPOINT.format(dataset=dataset, model="savi", seed=seed))
    return restore_model(state).eval()


@torch.no_grad()
def segment(model: torch.nn.Module, video: torch.Tensor, readout: str) -> torch.Tensor:
    """Slot ids ``[B, T, H, W]`` of whole videos ``[B, T, 3, H, W]`` (model input, one pass):
    ``alpha`` = argmax of the decoder's alpha masks (SAVi's protocol, as eval-seg), ``attention`` =
    argmax of Slot Attention's last attention, upsampled (the protocol of STEVE and SlotDiffusion)."""
    if readout == "alpha":
        return model.segment(video, chunk_len=video.shape[1])
    if readout == "attention":
        return model.trunk.segment_from_attention(video, chunk_len=video.shape[1])
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")


def _picture(scratch: Path, dataset: str, seed: int, out: Path, videos: int = 4) -> None:
    model = load_savi(scratch, dataset, seed)
    data = VideoDataset(scratch / "data" / dataset, "test", num_videos=videos)
    batch = [data[i] for i in range(videos)]
    video = torch.stack([b["video"] for b in batch])
    model_input = to_model_input(video)
    gt = np.stack([b["seg"].numpy() for b in batch])
    matched = [np.stack([match_to_gt(g, p) for g, p in zip(gt, segment(model, model_input, r).numpy())])
               for r in READOUTS]
    n_ids = int(max(gt.max(), *(m.max() for m in matched))) + 1
    rows = [video.numpy(), colour_ids(gt, n_ids)] + [colour_ids(m, n_ids) for m in matched]
    save_png(make_grid(rows, num_frames=6, scale=3), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.threads)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data keep their own seed)")
    parser.add_argument("--name", default=None,
                        help="scratch dir bench/scratch/NAME; results and picture are written there")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key of the scratch profile, or of the dataset file for keys "
                             "starting with 'dataset.' (value parsed as YAML); repeatable")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--evaluate-only", action="store_true",
                      help="reuse the trained scratch run: refresh its params, evaluate and report")
    keep.add_argument("--resume", action="store_true",
                      help="keep the scratch run and continue training from its newest checkpoint (pass the "
                           "same --steps / --set values as before; changed values start training over)")
    args = parser.parse_args()
    scratch = ROOT / "bench" / "scratch" / (args.name or "savi_shapes")
    if not (args.evaluate_only or args.resume):
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(scratch / "params", ignore_errors=True)
    shutil.copytree(ROOT / "params", scratch / "params")
    profile_file = scratch / "params" / "profiles" / "shapes.yaml"
    profile = yaml.safe_load(profile_file.read_text())
    profile["train"].update(max_steps=args.steps, val_every=max(500, args.steps // 10))
    dataset_file = scratch / "params" / "datasets" / f"{args.dataset}.yaml"
    dataset_params = yaml.safe_load(dataset_file.read_text())
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        *parents, leaf = key.split(".")
        node = dataset_params if parents and parents[0] == "dataset" else profile
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    profile_file.write_text(yaml.safe_dump(profile, sort_keys=False))
    dataset_file.write_text(yaml.safe_dump(dataset_params, sort_keys=False))
    if args.threads:
        defaults_file = scratch / "params" / "defaults.yaml"
        defaults = yaml.safe_load(defaults_file.read_text())
        defaults["runtime"]["threads"] = args.threads
        defaults_file.write_text(yaml.safe_dump(defaults, sort_keys=False))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    times = {}
    if not args.evaluate_only:
        times["export_s"] = _stage(scratch, "export", "--dataset", args.dataset)
        times["train_s"] = _stage(scratch, "train", "--dataset", args.dataset, "--model", "savi",
                                  "--seed", str(args.seed))
    times["eval_seg_s"] = _stage(scratch, "eval-seg", "--dataset", args.dataset, "--model", "savi",
                                 "--seed", str(args.seed))
    run = {"dataset": args.dataset, "model": "savi", "seed": args.seed}
    seg = json.loads((scratch / paths.SEG_METRICS.format(**run)).read_text())
    train = json.loads((scratch / paths.TRAIN_SUMMARY.format(**run)).read_text())
    out_dir = scratch if args.name else RESULTS
    image = (scratch if args.name else ROOT / "docs" / "images") / f"savi_{args.dataset}_masks.png"
    _picture(scratch, args.dataset, args.seed, image)

    result = {
        "benchmark": "SAVi on the embedded shapes data, longer run",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "dataset": args.dataset, "seed": args.seed, "steps": args.steps, "overrides": args.overrides, "batch_size": profile["train"]["batch_size"],
        "FG-ARI": seg["FG-ARI"], "mIoU": seg["mIoU"], "mBO": seg["mBO"], "num_videos": seg["num_videos"],
        "by_num_objects": seg["by_num_objects"],
        "train_wall_s": train["wall_time_s"], "clips_per_s": train["clips_per_s"], **{k: round(v, 1) for k, v in times.items()},
        "validation": train.get("validation"),
        "validation_curve_note": f"see the MLflow run in {(scratch / 'results/mlflow.db').relative_to(ROOT)}",
        "picture": str(image.relative_to(ROOT)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"savi_{args.dataset}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"savi_{args.dataset}.md").write_text(
        f"# SAVi on `{args.dataset}`, {args.steps} steps\n\n"
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {torch.__version__} (CPU). "
        f"Date: {result['date']}.\n\n"
        f"| steps | batch | train wall time | clips/s | FG-ARI | mIoU | mBO | test videos |\n|---|---|---|---|---|---|---|---|\n"
        f"| {args.steps} | {result['batch_size']} | {train['wall_time_s'] / 60:.1f} min | {train['clips_per_s']} | "
        f"{seg['FG-ARI']:.2f} | {seg['mIoU']:.2f} | {seg['mBO']:.2f} | {seg['num_videos']} |\n\n"
        + "By number of objects in the video (FG-ARI is all-or-nothing with one object):\n\n"
        + "| objects | videos | FG-ARI | mIoU | mBO |\n|---|---|---|---|---|\n"
        + "".join(f"| {k} | {v['num_videos']} | {v['FG-ARI']:.2f} | {v['mIoU']:.2f} | {v['mBO']:.2f} |\n"
                  for k, v in seg["by_num_objects"].items()) + "\n"
        + (f"Overrides of the profile: `{' '.join(args.overrides)}`.\n\n" if args.overrides else "")
        + f"![masks]({os.path.relpath(image, out_dir)}) rows per video: frames, ground truth, SAVi's decoder alphas (the protocol), Slot Attention's attention (colours matched)\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
