"""The report stage: ``results/{dataset}/report.html`` for every model and seed of the grid.

Reads the dataset's table, the exported evaluation videos, each run's ``model.pt`` (to segment a
few videos), the frames saved by ``eval_recon`` / ``eval_comp_gen``, ``train.json`` and the
MLflow history; writes the page (one self-contained HTML file, images embedded) and each run's
``curves/{train,val}.csv``. The MP4s of ``<run>/vis/`` are linked (relative links), not embedded.
"""

from __future__ import annotations

import datetime
import os
from html import escape
from pathlib import Path

import pandas as pd
import yaml
from tqdm import tqdm

from .. import checkpoint, paths
from ..config import load_grid, resolve, resolve_dataset
from ..evaluation.reconstruction import COMP_DIR, RECON_DIR
from ..io import read_json, write_text
from ..models import MODELS
from ..tracking import flatten
from ..visualize import colour_ids, matched_segmentation, slot_layers, strip
from . import html
from .curves import plot_curves, read_history, write_curves
from .frames import load_videos, predict_segments, read_frames
from .media import gif_uri, png_uri
from .provenance import source_revision, versions

#: Playback speed of the animations (frames per second).
FPS = 4.0


def _name(model: str) -> str:
    """The model's name as its paper writes it: its class's (``SlotDiffusion`` for ``slotdiffusion``)."""
    return MODELS[model].__name__ if model in MODELS else model


def _table_section(dataset: str) -> str:
    frame = pd.read_csv(paths.DATASET_TABLE.format(dataset=dataset), dtype={"seed": str})
    table = frame.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}", border=0)
    return table + html.note("FG-ARI, mIoU and mBO in percent; an empty cell was not computed, "
                             "the notes column says why. mlflow_run: the MLflow run of the row's training, which "
                             "holds its curves and, as eval/*, these metrics (`mlflow ui --backend-store-uri "
                             "sqlite:///results/mlflow.db`, or tracking.uri). Source: "
                             + paths.DATASET_TABLE.format(dataset=dataset))


def _video_sections(videos: list[dict], models: dict[str, dict], split: str) -> str:
    """One block per video: input, GT and every model's matched segmentation; then, per model,
    the input, its reconstruction and its per-slot decomposition."""
    parts = []
    for i, item in enumerate(videos):
        video, gt, idx = item["video"], item["seg"], item["index"]
        tiles, labels, decompositions = [video, colour_ids(gt)], ["input", "ground truth"], []
        for model, run in models.items():
            matched, slot_ids = matched_segmentation(gt, run["preds"][i], run["num_slots"])
            tiles.append(colour_ids(matched))
            labels.append(_name(model))
            recon = read_frames(Path(run["videos"]) / RECON_DIR / str(idx), len(video))
            layers = slot_layers(video, run["preds"][i], slot_ids)
            row = [video] + ([recon] if recon is not None else []) + [layer for _, layer, _ in layers]
            row_labels = ["input"] + (["reconstruction"] if recon is not None else []) + [
                f"slot {s}" for s, _, _ in layers]
            colours = [None] * (len(row) - len(layers)) + [colour for _, _, colour in layers]
            caption = f"{_name(model)}: input, " + ("reconstruction (eval_recon), " if recon is not None else
                                                   "no reconstruction saved (eval.save_videos), ")
            decompositions.append(html.figure(gif_uri(strip(row, row_labels, colours), FPS),
                                              caption + "then the pixels each slot took, under the colour of the "
                                              "object it was matched to", f"{model} decomposition of video {idx}"))
        parts.append(f"<h3>{escape(split)} video {idx}</h3>")
        parts.append(html.figure(gif_uri(strip(tiles, labels), FPS),
                                 "predicted segmentations relabelled to the ground-truth ids (Hungarian matching), "
                                 "so an object keeps its colour in every panel", f"segmentations of video {idx}"))
        parts.extend(decompositions)
    return "\n".join(parts)


def _comp_section(videos: list[dict], models: dict[str, dict]) -> str:
    """Per model, the composed videos of the shown indices (slots swapped across a batch); a video
    that eval_comp_gen could not compose (alone in the last batch) is labelled so."""
    parts = []
    num_frames = len(videos[0]["video"])
    for model, run in models.items():
        frames = [(item["index"], read_frames(Path(run["videos"]) / COMP_DIR / str(item["index"]), num_frames))
                  for item in videos]
        found = [(idx, f) for idx, f in frames if f is not None]
        if not found:
            parts.append(html.note(f"{_name(model)}: no composed frames in {Path(run['videos']) / COMP_DIR}"))
            continue
        record = Path(run["comp_record"])
        alone = set(read_json(record)["videos_not_composed"]) if record.is_file() else set()
        labels = [f"#{idx}: not composed" if idx in alone else f"composed #{idx}" for idx, _ in found]
        parts.append(html.figure(gif_uri(strip([f for _, f in found], labels), FPS),
                                 f"{_name(model)}: slot i of video b taken from video (b + i) mod B (eval_comp_gen)",
                                 f"{model} compositional generation"))
    return "\n".join(parts)


def _vis_section(vis: dict[str, list[Path]], dataset: str) -> str:
    """Links to each run's MP4s (``label -> files``), relative to the page."""
    page_dir = Path(paths.REPORT.format(dataset=dataset)).parent
    body = "".join(html.links(label, [(os.path.relpath(f, page_dir), f.name) for f in files])
                   for label, files in vis.items() if files)
    if not body:
        body = html.note("No MP4s: eval.vis_videos is 0, or eval_recon / eval_comp_gen has not run.")
    folder = paths.VIS_DIR.format(dataset=dataset, model="*", seed="*")
    return body + html.note(
        f"Written to {folder}/ for the first eval.vis_videos test videos by eval_recon ({{idx}}_recon.mp4: input, "
        "reconstruction, segmentation overlay, one panel per slot) and eval_comp_gen ({idx}_comp.mp4: input, then "
        "the video decoded from its composed slots). MPEG-4 Part 2 (mp4v, as the original): VLC, mpv and "
        "QuickTime play it, most browsers do not.")


def _vis_files(folder: str | Path) -> list[Path]:
    """``folder/{idx}_{recon,comp}.mp4`` ordered by video index, then kind."""
    files = [f for f in Path(folder).glob("*.mp4") if f.stem.partition("_")[0].isdigit()]
    return sorted(files, key=lambda f: (int(f.stem.partition("_")[0]), f.stem))


def _curves_section(curves: dict[str, dict], reasons: list[str], dataset: str) -> str:
    image = plot_curves(curves)
    body = html.figure(png_uri(image), "per training run; read from MLflow", "training curves") if image else ""
    body += "".join(html.note(r) for r in reasons)
    return body + html.note("The same numbers as CSV: " + paths.CURVES_TRAIN.format(dataset=dataset, model="*",
                                                                                     seed="*")
                            + " and curves/val.csv (dvc plots show renders them).")


def _provenance_section(dataset: str, runs: dict[str, dict]) -> str:
    body = html.key_values({"source revision": source_revision(paths.PACKAGE_DIR), **versions()})
    meta = read_json(paths.DATA_META.format(dataset=dataset))
    body += html.details(f"data/{dataset}/meta.json", yaml.safe_dump(meta, sort_keys=False))
    for label, run in runs.items():
        body += f"<h3>{escape(label)}</h3>" + html.key_values(flatten(run["summary"]))
        body += html.details("parameters it was trained with (model.pt)",
                             yaml.safe_dump(run["config"], sort_keys=False))
    return body


def build_report(dataset: str, params_dir: str | Path, num_videos: int, progress: bool = True) -> dict:
    """Write ``results/{dataset}/report.html`` (showing ``num_videos`` evaluation videos) and the
    runs' curve CSVs; return what was written."""
    resolve_dataset(dataset, params_dir)  # a clear error for an unknown dataset
    grid = load_grid(params_dir)
    configs = {m: resolve(dataset, m, params_dir) for m in grid["models"]}
    first = configs[grid["models"][0]]["eval"]
    count = min(num_videos, first["num_videos"] or num_videos)
    videos = load_videos(paths.DATA_DIR.format(dataset=dataset), first["split"], count)
    shown, runs, curves, reasons, vis = {}, {}, {}, [], {}
    jobs = [(m, s) for m in grid["models"] for s in grid["seeds"]]
    for model, seed in tqdm(jobs, desc=f"report {dataset}", unit="run", disable=not progress, dynamic_ncols=True):
        fmt, cfg, label = {"dataset": dataset, "model": model, "seed": seed}, configs[model], f"{model}/seed{seed}"
        state = checkpoint.load(paths.CHECKPOINT.format(**fmt))
        runs[label] = {"summary": read_json(paths.TRAIN_SUMMARY.format(**fmt)), "config": state["config"]}
        frames, reason = read_history(cfg["tracking"], paths.RUN_DIR.format(**fmt))
        write_curves(frames, paths.CURVES_TRAIN.format(**fmt), paths.CURVES_VAL.format(**fmt))
        curves[label] = frames
        vis[label] = _vis_files(paths.VIS_DIR.format(**fmt))
        if reason:
            reasons.append(f"{label}: {reason}")
        if seed == grid["seeds"][0]:
            preds, num_slots = predict_segments(state, videos, cfg["eval"]["chunk_len"], cfg["runtime"])
            shown[model] = {"preds": preds, "num_slots": num_slots, "videos": paths.VIDEO_ROOT.format(**fmt),
                            "comp_record": paths.COMP_GEN_RECORD.format(**fmt)}
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = escape(f"Models {', '.join(map(_name, grid['models']))}; seeds {grid['seeds']}; "
                   f"videos from the {first['split']} split (seed {grid['seeds'][0]}). "
                   f"Built by `slotbench report` on {generated}.")
    sections = [
        ("results", "Results", _table_section(dataset)),
        ("videos", "Videos and slots", _video_sections(videos, shown, first["split"])),
        ("comp-gen", "Compositional generation", _comp_section(videos, shown)),
        ("mp4", "Videos to watch (MP4)", _vis_section(vis, dataset)),
        ("curves", "Training curves", _curves_section(curves, reasons, dataset)),
        ("provenance", "Parameters and versions", _provenance_section(dataset, runs)),
    ]
    out = Path(paths.REPORT.format(dataset=dataset))
    write_text(out, html.page(f"slotbench report: {dataset}", intro, sections))
    return {"report": str(out), "bytes": out.stat().st_size, "runs": len(jobs), "videos": len(videos)}
