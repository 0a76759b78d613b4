"""Learning benchmark: SAVi, STEVE (with its dVAE) and SlotDiffusion (with its VQ-VAE) trained on
the embedded ``shapes`` data for many steps, next to segmentation baselines that learn nothing.

Each model runs the real stages (``slotbench export / tokenizer / train / eval-seg / eval-recon``)
in its own scratch project ``bench/scratch/learning_shapes/<model>/``, reading the repository's
``params/`` with the run lengths of this benchmark set on the command line (``slotbench <stage> --set``:
``--steps``, ``--tokenizer-steps``, ``--val-every``; ``--threads`` sets ``runtime.threads``; ``--set``
passes any other parameter on, e.g. ``train.cpu_amp=bf16``) and
MLflow tracking into the scratch project, so that the validation curves can be read back.
Everything is resumable: a stage whose output exists is skipped, and an interrupted training continues
from its last checkpoint (``train.checkpoint_every``), so re-running the same command after a kill, a
reboot or the end of a sitting goes on where it stopped. Changing a run length of a started model is refused
(``--fresh`` starts that model again).

Per model it records test FG-ARI / mIoU / mBO (x100) by the model's own protocol (SAVi: the
decoder's alpha masks; STEVE and SlotDiffusion: Slot Attention's attention masks, as the original
evaluates them), MSE / PSNR / SSIM of the reconstructions, steps, wall and CPU hours (user + system
time of the stage processes, summed over resumptions), and the validation curves. The baselines
(:mod:`slotbench.evaluation.baselines`: one segment, a grid of as many cells as slots, per-frame
colour k-means with ids carried by the nearest centre) are scored on the same test videos.

Outputs:

* ``bench/results/learning_shapes.json``: one object per model and baseline with ``fg_ari``,
  ``miou``, ``mbo`` (and ``steps`` etc. for the models), the machine, the targets checked;
* ``bench/results/learning_shapes.md``: the same as a table, with the curves and the masks;
* ``bench/results/learning_shapes/{model}_{train,val}.csv``: the curves;
* ``bench/results/learning_shapes/curves.png``: validation FG-ARI and mBO against steps;
* ``bench/results/learning_shapes/masks.png``: the same test videos segmented by every model
  and by the colour baseline, side by side.

The chains of the models are independent: two can run side by side on two cores as two processes
(``--models savi`` and ``--models steve slotdiffusion``); ``--report-only`` collects what exists.

Usage: ``python bench/learning_shapes.py [--models savi steve slotdiffusion] [--steps N]
[--tokenizer-steps N] [--val-every N] [--threads 1] [--set KEY=VALUE] [--fresh] [--report-only]
[--scratch DIR] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from slotbench import checkpoint
from slotbench.config import parse_overrides, resolve, resolve_tokenizer
from slotbench.config.definitions import RESOLVED_TOKENIZER
from slotbench.data.dataset import VideoDataset
from slotbench.evaluation.baselines import colour_kmeans, score_baselines
from slotbench.io import atomic_path
from slotbench.report.curves import read_history, write_curves
from slotbench.report.frames import load_videos, predict_segments
from slotbench.visualize import colour_ids, make_grid, match_to_gt, save_png

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "bench" / "scratch" / "learning_shapes"
PARAMS = ROOT / "params"
DATASET = "shapes"
MODELS = ("savi", "steve", "slotdiffusion")
SEG_KEYS = {"fg_ari": "FG-ARI", "miou": "mIoU", "mbo": "mBO"}  # seg.json's names
TOKENIZER = {"savi": None, "steve": "dvae", "slotdiffusion": "vqvae"}
LABEL = {"savi": "SAVi", "steve": "STEVE", "slotdiffusion": "SlotDiffusion",
         "baseline_one_segment": "one segment", "baseline_grid": "grid of K cells",
         "baseline_colour_kmeans": "colour k-means (K clusters)"}
PROTOCOL = {"savi": "decoder alpha masks", "steve": "Slot Attention attention masks",
            "slotdiffusion": "Slot Attention attention masks"}
BASELINES = ("baseline_one_segment", "baseline_grid", "baseline_colour_kmeans")
MASK_VIDEOS = 4  # test videos in masks.png
CPU_RUNTIME = {"device": "cpu", "threads": None, "channels_last": "off", "compile": False}  # segmenting test videos
TARGET_FG_ARI = 80.0


# --------------------------------------------------------------------------- scratch projects


def run_lengths(args, model: str) -> dict:
    """The settings this benchmark changes (what a resume must keep)."""
    lengths = {"train.max_steps": args.steps, "train.val_every": args.val_every,
               "runtime.threads": args.threads}
    if TOKENIZER[model]:
        lengths[f"{TOKENIZER[model]}.train.max_steps"] = args.tokenizer_steps
    if args.seed:
        lengths["seed"] = args.seed
    if args.set:
        lengths["set"] = list(args.set)
    if args.model_set:
        lengths["model_set"] = list(args.model_set)
    return lengths


def overrides(project: Path, model: str, lengths: dict) -> dict[str, list[str]]:
    """The ``--set`` options of each stage of ``model``: the run lengths, MLflow tracking into the
    project and the benchmark's own ``--set`` options (those of the sections a tokenizer has go to its
    stage too; ``--model-set`` ones to the slot model's stages only). The repository's ``params/`` are
    read as they are, never copied."""
    base = [f"runtime.threads={lengths['runtime.threads']}", "tracking.enabled=true",
            f"tracking.uri=sqlite:///{project / 'results' / 'mlflow.db'}"]
    given = lengths.get("set", [])
    common = base + given + lengths.get("model_set", [])
    profile = resolve(DATASET, model, PARAMS)["train"]
    steps, val_every = lengths["train.max_steps"], lengths["train.val_every"]
    sets = {"export": [], "eval": common,
            "train": common + [f"train.max_steps={steps}", f"train.val_every={val_every}",
                               f"train.checkpoint_every={min(profile['checkpoint_every'], val_every)}"]}
    if TOKENIZER[model]:
        tok_steps = lengths[f"{TOKENIZER[model]}.train.max_steps"]
        tok = resolve_tokenizer(DATASET, TOKENIZER[model], PARAMS)["train"]
        sets["tokenizer"] = base + [item for item in given if item.split(".")[0] in RESOLVED_TOKENIZER] + [
            f"train.max_steps={tok_steps}", f"train.val_every={min(tok['val_every'], tok_steps)}",
            f"train.checkpoint_every={min(tok['checkpoint_every'], tok_steps)}"]
    return sets


def _cli(stage_sets: list[str]) -> list[str]:
    return ["--params-dir", str(PARAMS), *(arg for item in stage_sets for arg in ("--set", item))]


def prepare(project: Path, model: str, args) -> dict:
    """Create (or check) the scratch project of ``model`` and return its run lengths; refuses other run
    lengths than those a started project has."""
    lengths = run_lengths(args, model)
    record = project / "run_lengths.json"
    if record.is_file():
        started = json.loads(record.read_text())
        if started != lengths:
            raise SystemExit(f"{project} was started with {started}, not {lengths}: run with the same options "
                             f"to resume, or add --fresh to start {model} again")
        return lengths
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    with atomic_path(record) as tmp:
        Path(tmp).write_text(json.dumps(lengths, indent=2) + "\n")
    return lengths


def run_seed(project: Path) -> int:
    """The training seed of a scratch project (``--seed``; 0 when its run lengths do not name one)."""
    return json.loads((project / "run_lengths.json").read_text()).get("seed", 0)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(project: Path, name: str, output: Path, *cli: str) -> None:
    """Run ``slotbench <cli>`` in ``project`` unless ``output`` exists; adds its wall and CPU
    seconds to ``<project>/stage_times.json`` (summed over resumptions)."""
    if output.is_file():
        return
    times_file = project / "stage_times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    cpu0, wall0 = _children_cpu_s(), time.perf_counter()
    print(f"[{datetime.now(UTC):%H:%M:%S}] {project.name}: slotbench {' '.join(cli)}", flush=True)
    with open(project / "stages.log", "a") as log:
        proc = subprocess.run([sys.executable, "-m", "slotbench", *cli, "--no-progress"], cwd=project,
                              stdout=log, stderr=subprocess.STDOUT)
    entry = times.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "runs": 0})
    entry["wall_s"] += round(time.perf_counter() - wall0, 1)
    entry["cpu_s"] += round(_children_cpu_s() - cpu0, 1)
    entry["runs"] += 1
    with atomic_path(times_file) as tmp:
        Path(tmp).write_text(json.dumps(times, indent=2) + "\n")
    if proc.returncode != 0:
        raise SystemExit(f"slotbench {' '.join(cli)} failed in {project} (exit {proc.returncode}); "
                         f"see {project / 'stages.log'}; re-run to resume")


def run_model(model: str, args) -> None:
    """Every stage of ``model`` in its scratch project, each skipped when already done."""
    project = args.scratch / model
    if args.fresh:
        shutil.rmtree(project, ignore_errors=True)
    sets = overrides(project, model, prepare(project, model, args))
    seed = run_seed(project)
    run = project / "results" / DATASET / model / f"seed{seed}"
    pair = ("--dataset", DATASET, "--model", model, "--seed", str(seed))
    run_stage(project, "export", project / "data" / DATASET / "meta.json", "export", "--dataset", DATASET,
              *_cli(sets["export"]))
    if TOKENIZER[model]:
        tok = TOKENIZER[model]
        run_stage(project, "tokenizer", project / "results" / DATASET / tok / "model.pt",
                  "tokenizer", "--dataset", DATASET, "--tokenizer", tok, *_cli(sets["tokenizer"]))
    run_stage(project, "train", run / "model.pt", "train", *pair, *_cli(sets["train"]))
    run_stage(project, "eval_seg", run / "seg.json", "eval-seg", *pair, *_cli(sets["eval"]))
    run_stage(project, "eval_recon", run / "recon.json", "eval-recon", *pair, *_cli(sets["eval"]))


# --------------------------------------------------------------------------- collecting


def _resolved(project: Path, model: str) -> dict:
    """The parameters ``model``'s stages ran with in ``project``."""
    lengths = json.loads((project / "run_lengths.json").read_text())
    return resolve(DATASET, model, PARAMS, parse_overrides(overrides(project, model, lengths)["train"]))


def val_slope(val, column: str = "fg_ari", tail: float = 1 / 3) -> float | None:
    """Least-squares slope (points per 1000 steps) of ``column`` over the last ``tail`` of the
    validation steps; ``None`` with fewer than 3 points there. Near 0: the curve has flattened."""
    frame = val.dropna(subset=[column])
    if len(frame) == 0:
        return None
    last = frame[frame["step"] >= frame["step"].max() * (1 - tail)]
    if len(last) < 3:
        return None
    slope = np.polyfit(last["step"].to_numpy(float), last[column].to_numpy(float), 1)[0]
    return round(1000 * float(slope), 2)


def collect_model(model: str, scratch: Path, out: Path) -> tuple[dict, dict] | None:
    """The record of a finished model and its curves (``{"train", "val"}`` frames); ``None``
    when its evaluation is not written yet."""
    project = scratch / model
    if not (project / "run_lengths.json").is_file():
        return None
    lengths = json.loads((project / "run_lengths.json").read_text())
    run = project / "results" / DATASET / model / f"seed{lengths.get('seed', 0)}"
    if not (run / "seg.json").is_file() or not (run / "recon.json").is_file():
        return None
    cfg = _resolved(project, model)
    seg, recon = (json.loads((run / f).read_text()) for f in ("seg.json", "recon.json"))
    train = json.loads((run / "train.json").read_text())
    times = json.loads((project / "stage_times.json").read_text())
    curves, why = read_history(cfg["tracking"], run)
    write_curves(curves, out / f"{model}_train.csv", out / f"{model}_val.csv")
    record = {
        "fg_ari": seg["FG-ARI"], "miou": seg["mIoU"], "mbo": seg["mBO"], "steps": train["steps"],
        "seed": lengths.get("seed", 0), "protocol": PROTOCOL[model], "test_videos": seg["num_videos"],
        "by_num_objects": seg.get("by_num_objects"),
        **_per_frame({k: seg["per_frame"][v] for k, v in SEG_KEYS.items()} if "per_frame" in seg else None),
        "mse": recon["MSE"], "psnr": recon["PSNR"], "ssim": recon["SSIM"],
        "train_wall_hours": round(train["wall_time_s"] / 3600, 3),
        "cpu_hours": round(sum(t["cpu_s"] for t in times.values()) / 3600, 3),
        "wall_hours": round(sum(t["wall_s"] for t in times.values()) / 3600, 3),
        "threads": cfg["runtime"]["threads"], "stage_times": times,
        "val_fg_ari_slope_per_1k_steps": val_slope(curves["val"]),
        "val_mbo_slope_per_1k_steps": val_slope(curves["val"], "mbo"),
        "last_validation": train["validation"], "curves_missing": why,
        "set": [*lengths.get("set", []), *lengths.get("model_set", [])],
    }
    if TOKENIZER[model]:
        tok = json.loads((project / "results" / DATASET / TOKENIZER[model] / "train.json").read_text())
        record["tokenizer"] = {"name": TOKENIZER[model], "steps": tok["steps"], "validation": tok["validation"]}
    return record, curves


def _per_frame(scores: dict | None) -> dict:
    """``frame_fg_ari``, ``frame_miou``, ``frame_mbo``: the scores with every frame segmented alone
    (``seg.json``'s ``per_frame``; None for an evaluation written before it existed)."""
    return {f"frame_{m}": None if scores is None else scores[m] for m in ("fg_ari", "miou", "mbo")}


def baselines(scratch: Path, num_slots: int) -> dict:
    """The three baselines on the test split of the first scratch project that has the data."""
    for model in MODELS:
        data = scratch / model / "data" / DATASET
        if (data / "meta.json").is_file():
            scores = score_baselines(VideoDataset(data, "test"), num_slots, batch_size=16, progress=False)
            return {name: {"fg_ari": s["fg_ari"], "miou": s["miou"], "mbo": s["mbo"], **_per_frame(s["per_frame"]),
                           "test_videos": s["num_videos"], "by_num_objects": s["by_num_objects"]}
                    for name, s in scores.items()}
    return {}


def plot_curves(curves: dict, records: dict, base: dict, path: Path) -> None:
    """Validation FG-ARI and mBO against steps for every model, with the baselines' and the
    models' test scores as reference marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, column, title in ((axes[0], "fg_ari", "FG-ARI (%)"), (axes[1], "mbo", "mBO (%)")):
        for i, (model, frames) in enumerate(curves.items()):
            val = frames["val"].dropna(subset=[column])
            line, = ax.plot(val["step"], val[column], marker="o", markersize=3,
                            label=f"{LABEL[model]} (validation clips)", color=f"C{i}")
            ax.plot([records[model]["steps"]], [records[model][column]], marker="*", markersize=12,
                    color=line.get_color(), linestyle="none")
        for j, name in enumerate(BASELINES):
            if name in base:
                ax.axhline(base[name][column], linestyle="--", color=f"C{j + 4}", alpha=0.8,
                           label=f"{LABEL[name]} (test)")
        ax.set_title(f"{title}: curves on validation clips, stars on the test videos")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_masks(scratch: Path, models: list[str], num_slots: int, path: Path) -> None:
    """The first :data:`MASK_VIDEOS` test videos: frames, ground truth, each model's segmentation
    (relabelled to the ground-truth ids it overlaps most) and colour k-means, one row each."""
    data = scratch / models[0] / "data" / DATASET
    videos = load_videos(data, "test", MASK_VIDEOS)
    frames = np.stack([v["video"] for v in videos])
    gt = np.stack([v["seg"] for v in videos])
    preds = []
    for model in models:
        run = scratch / model / "results" / DATASET / model / f"seed{run_seed(scratch / model)}"
        state = checkpoint.load(run / "model.pt")
        segs, _ = predict_segments(state, videos, chunk_len=gt.shape[1], runtime=CPU_RUNTIME)
        preds.append(np.stack(segs))
    preds.append(colour_kmeans(frames, num_slots).numpy())
    num_ids = int(gt.max()) + 2 * num_slots + 1
    rows = [frames, colour_ids(gt, num_ids)]
    rows += [colour_ids(np.stack([match_to_gt(g, p) for g, p in zip(gt, pred)]), num_ids) for pred in preds]
    save_png(make_grid(rows, num_frames=6, scale=3), path)


def targets(result: dict, models: list[str]) -> dict:
    """The issue's targets, checked on the test numbers: each model >= 80 FG-ARI, SlotDiffusion >=
    STEVE >= SAVi on FG-ARI and mBO, every model above every baseline on FG-ARI and mBO."""
    checks = {f"{m}_fg_ari_at_least_{TARGET_FG_ARI:.0f}": result[m]["fg_ari"] >= TARGET_FG_ARI for m in models}
    if all(m in models for m in MODELS):
        for metric in ("fg_ari", "mbo"):
            checks[f"paper_order_{metric}"] = (result["slotdiffusion"][metric] >= result["steve"][metric]
                                               >= result["savi"][metric])
    for m in models:
        for metric in ("fg_ari", "mbo"):
            checks[f"{m}_above_baselines_{metric}"] = all(result[m][metric] > result[b][metric]
                                                          for b in BASELINES if b in result)
    return checks


def report(scratch: Path, out_root: Path) -> dict:
    out = out_root / "learning_shapes"
    out.mkdir(parents=True, exist_ok=True)
    records, curves = {}, {}
    for model in MODELS:
        collected = collect_model(model, scratch, out)
        if collected is not None:
            records[model], curves[model] = collected
    first = next((m for m in MODELS if (scratch / m / "run_lengths.json").is_file()), None)
    if first is None:
        raise SystemExit(f"nothing under {scratch}: run the benchmark first")
    cfg = _resolved(scratch / first, first)
    num_slots = cfg["model"]["num_slots"]
    base = baselines(scratch, num_slots)
    result = {
        "benchmark": "object discovery on the embedded shapes data: SAVi, STEVE, SlotDiffusion and baselines",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "dataset": {"name": DATASET, **{k: cfg["dataset"][k] for k in ("resolution", "video_len", "splits")},
                    "synthetic": cfg["dataset"]["synthetic"]},
        "num_slots": num_slots,
        "metrics": "on every test video at full length (time folded into pixels), each model by its own protocol",
        **records, **base,
    }
    result["targets"] = targets(result, list(records))
    if curves:
        plot_curves(curves, records, base, out / "curves.png")
        plot_masks(scratch, list(records), num_slots, out / "masks.png")
    with atomic_path(out_root / "learning_shapes.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(out_root / "learning_shapes.md") as tmp:
        Path(tmp).write_text(markdown(result, list(records)))
    return result


def _fmt(value, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(result: dict, models: list[str]) -> str:
    m = result["machine"]
    lines = ["# Object discovery on `shapes`: SAVi, STEVE, SlotDiffusion and baselines", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU). Written {result['date']} by "
             "`bench/learning_shapes.py`.", "",
             f"Data: {result['dataset']['resolution']}x{result['dataset']['resolution']}, "
             f"{result['dataset']['video_len']} frames, splits {result['dataset']['splits']}, generator "
             f"`{json.dumps(result['dataset']['synthetic'])}`; {result['num_slots']} slots.", "",
             f"Test split, x100, {result['metrics']}. CPU hours: user + system time of every stage "
             "(tokenizer included).", "",
             *(f"{LABEL[model]} ran with `--set {' --set '.join(result[model]['set'])}`.\n" for model in models
               if result[model].get("set")),
             "| method | protocol | steps | FG-ARI | mIoU | mBO | MSE | PSNR | SSIM | CPU h "
             "| val FG-ARI slope / 1k steps |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in models:
        r = result[model]
        lines.append(f"| {LABEL[model]} | {r['protocol']} | {r['steps']} | {_fmt(r['fg_ari'])} | {_fmt(r['miou'])} | "
                     f"{_fmt(r['mbo'])} | {_fmt(r['mse'])} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'], 3)} | "
                     f"{_fmt(r['cpu_hours'], 2)} | {_fmt(r['val_fg_ari_slope_per_1k_steps'], 2)} |")
    for name in BASELINES:
        if name in result:
            r = result[name]
            lines.append(f"| {LABEL[name]} | no learning | | {_fmt(r['fg_ari'])} | {_fmt(r['miou'])} | "
                         f"{_fmt(r['mbo'])} | | | | | |")
    lines += ["", "The same test videos with every frame segmented alone (mean over frames, x100): what each "
              "method scores without holding an object's id over the video; the gap to the table above is "
              "what it loses to ids that change between frames.", "",
              "| method | FG-ARI | mIoU | mBO | FG-ARI lost to changing ids |", "|---|---|---|---|---|"]
    for name in (*models, *(b for b in BASELINES if b in result)):
        r = result[name]
        if r.get("frame_fg_ari") is not None:
            lines.append(f"| {LABEL[name]} | {_fmt(r['frame_fg_ari'])} | {_fmt(r['frame_miou'])} | "
                         f"{_fmt(r['frame_mbo'])} | {_fmt(r['frame_fg_ari'] - r['fg_ari'])} |")
    lines += ["", "Targets: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["targets"].items()) + ".",
              "", "![validation curves](learning_shapes/curves.png)", "",
              "Rows per video: frames, ground truth, " + ", ".join(LABEL[m] for m in models)
              + ", colour k-means (segments coloured by the ground-truth object they overlap most):", "",
              "![masks](learning_shapes/masks.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=20000, help="train.max_steps of each model")
    parser.add_argument("--tokenizer-steps", type=int, default=2000, help="the dVAE's / VQ-VAE's train.max_steps")
    parser.add_argument("--val-every", type=int, default=500, help="steps between validation passes (the curves)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per stage (runtime.threads)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (model initialisation, clip order)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter for the tokenizer, train and eval stages (repeatable), as "
                             "`slotbench <stage> --set`: e.g. train.cpu_amp=bf16")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter for the slot model's train and eval stages only (repeatable), e.g. "
                             "train.lr=8e-4 (not the tokenizer's)")
    parser.add_argument("--fresh", action="store_true", help="start the given models again from nothing")
    parser.add_argument("--report-only", action="store_true", help="only collect what exists into the results")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="scratch root (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    args = parser.parse_args()
    args.scratch, args.out = args.scratch.resolve(), args.out.resolve()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("SLOTBENCH_OFFLINE", "1")  # LPIPS stays empty (no weights here) instead of downloading
    torch.set_num_threads(args.threads)
    if not args.report_only:
        for model in args.models:
            run_model(model, args)
    report(args.scratch, args.out)
    print((args.out / "learning_shapes.md").read_text())


if __name__ == "__main__":
    main()
