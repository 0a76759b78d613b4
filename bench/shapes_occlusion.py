"""How much the objects of the synthetic ``shapes`` data touch and hide each other, how well
exact colour alone separates them, and what a segmentation blind to the objects' shapes scores.

Generates one split of dataset NAME (its validated params, as the export stage reads them) with
the export stage's seed,
for the shipped generator settings and for variants given as ``key=value,...`` overrides of its
``synthetic`` section, and reports from the segmentation alone (``[N, T, H, W]``, 0 = background):

* ``frames_touching``: fraction of the frames of videos with two or more objects in which two
  objects touch (a pair of 4-neighbouring pixels with different object ids; an object partly in
  front of another always touches it);
* ``objects_touching``: fraction of the visible object-frames in which that object touches
  another one (with many objects some pair touches in most frames; this says how often a given
  object is alone);
* ``hidden_fraction``: per object and frame, 1 - visible pixels / the object's largest visible
  area in the video, averaged over objects and frames (a lower bound of the hidden share of its
  area: an object hidden in part in every frame counts less than it should);
* ``fully_hidden``: fraction of object-frames with no visible pixel;
* ``object_px``: mean of the objects' largest visible area, in pixels;
* ``colour_identity_fg_ari``: FG-ARI (x100, mean over videos, the whole video as one
  ``[T, H, W]`` segmentation as in eval-seg) of a segmentation that gives every exact RGB value of
  a video its own id. No learning: it shows how far plain colour lookup gets on this data (100 on
  the solid look, whose objects are each one flat colour; much lower on textured looks).
* ``disk_fg_ari`` / ``ellipse_fg_ari``: FG-ARI (x100, as above) of shape-blind segmentations made
  from the ground truth itself (:func:`shape_blind_segmentation`): in every frame each visible
  object is replaced by the disk of its visible area at its centroid, or by the ellipse of its
  visible pixels' second moments (position, size, elongation and orientation, but no outline).
  Identities stay perfect through the video, so this is what a readout that knows exactly where
  each object is, how large and how elongated, and nothing of its shape, would score.
* ``grid_fg_ari`` / ``grid_mbo`` and ``kmeans_fg_ari`` / ``kmeans_mbo``: the no-learning baselines
  of :mod:`slotbench.evaluation.baselines` (a grid of K cells; per-frame colour k-means into K
  clusters, ids carried by the nearest centre) with K = ``max_objects`` + 1 slots, x100.

Writes ``bench/results/shapes_occlusion.json`` and ``.md``.

Usage: ``python bench/shapes_occlusion.py [--dataset shapes] [--split train]
[--variant min_size=0.12,max_size=0.2 ...]``
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import yaml

from slotbench.config import resolve_dataset
from slotbench.data.export import SYNTHETIC_SPLITS
from slotbench.data.synthetic import generate_split
from slotbench.evaluation.baselines import colour_kmeans, grid
from slotbench.metrics import fg_ari, segmentation_scores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# The candidates around the shipped settings that decided them (and the settings shipped before).
DEFAULT_VARIANTS = [
    "min_objects=1,max_objects=3,min_size=0.2,max_size=0.3,shading=0.0,distinct_colours=true",
    "shading=0.0",
    "distinct_colours=true",
    "shading=0.3",
    "min_size=0.1,max_size=0.15",
    "min_size=0.15,max_size=0.22",
    "max_objects=4",
    "min_objects=4,max_objects=6",
]


def touching_frames(seg: np.ndarray) -> np.ndarray:
    """Bool ``[N, T]``: frames of ``seg`` ``[N, T, H, W]`` (0 = background) where two objects touch."""
    seg = np.asarray(seg)
    right = (seg[..., 1:] != seg[..., :-1]) & (seg[..., 1:] > 0) & (seg[..., :-1] > 0)  # [N, T, H, W-1]
    down = (seg[..., 1:, :] != seg[..., :-1, :]) & (seg[..., 1:, :] > 0) & (seg[..., :-1, :] > 0)
    return right.any(axis=(2, 3)) | down.any(axis=(2, 3))


def objects_touching(seg: np.ndarray) -> np.ndarray:
    """Bool ``[N, T, K]``: object ``k + 1`` touches another object in that frame (K = max id)."""
    seg = np.asarray(seg)
    out = np.zeros((*seg.shape[:2], max(int(seg.max()), 1)), dtype=bool)
    for a, b in ((seg[..., 1:], seg[..., :-1]), (seg[..., 1:, :], seg[..., :-1, :])):
        edge = (a != b) & (a > 0) & (b > 0)
        for side in (a, b):
            for k in range(out.shape[-1]):
                out[..., k] |= (edge & (side == k + 1)).any(axis=(2, 3))
    return out


def baseline_scores(video: np.ndarray, seg: np.ndarray, num_slots: int, batch: int = 64) -> dict:
    """FG-ARI and mBO (x100, means over videos) of the grid and colour k-means baselines."""
    scores = {"grid": [], "kmeans": []}
    for start in range(0, len(video), batch):
        v = np.asarray(video[start:start + batch])
        gt = torch.from_numpy(np.asarray(seg[start:start + batch], dtype=np.int64))
        scores["grid"].append(segmentation_scores(gt, grid(v, num_slots)))
        scores["kmeans"].append(segmentation_scores(gt, colour_kmeans(v, num_slots)))
    out = {}
    for name, parts in scores.items():
        for metric in ("fg_ari", "mbo"):
            values = torch.cat([p[metric] for p in parts])
            out[f"{name}_{metric}"] = float(values[~values.isnan()].mean()) * 100
    return out


def occlusion_stats(seg: np.ndarray, num_objects: np.ndarray) -> dict:
    """Statistics above for ``seg`` uint8 ``[N, T, H, W]`` and ``num_objects`` ``[N]``."""
    touching = touching_frames(seg)  # [N, T]
    multi = num_objects >= 2
    touches = objects_touching(seg)  # [N, T, K]
    ids = np.arange(1, int(num_objects.max()) + 1)
    area = (seg[..., None] == ids).sum(axis=(2, 3))  # [N, T, K]
    touches = touches[..., : len(ids)]
    present = ids[None, :] <= num_objects[:, None]  # [N, K]
    largest = area.max(axis=1)  # [N, K]
    hidden = 1 - area / np.maximum(largest, 1)[:, None, :]  # [N, T, K]
    return {
        "videos": int(len(seg)),
        "videos_with_2plus_objects": int(multi.sum()),
        "frames_touching": float(touching[multi].mean()) if multi.any() else 0.0,
        "objects_touching": float(touches[area > 0].mean()),
        "hidden_fraction": float(hidden.transpose(0, 2, 1)[present].mean()),
        "fully_hidden": float((area.transpose(0, 2, 1)[present] == 0).mean()),
        "object_px": float(largest[present].mean()),
    }


def colour_identity_fg_ari(video: np.ndarray, seg: np.ndarray, batch: int = 100) -> float:
    """Mean FG-ARI (x100) of segmenting each video of ``video`` uint8 ``[N, T, H, W, 3]`` by exact
    RGB value, against ``seg`` ``[N, T, H, W]``."""
    scores = []
    for start in range(0, len(video), batch):
        rgb = np.asarray(video[start:start + batch]).astype(np.int32)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # [n, T, H, W]
        ids = np.stack([np.unique(v, return_inverse=True)[1].reshape(v.shape) for v in packed])
        gt = torch.from_numpy(np.asarray(seg[start:start + batch], dtype=np.int64))
        scores.append(fg_ari(gt, torch.from_numpy(ids.astype(np.int64))))
    return float(torch.cat(scores).mean()) * 100


def shape_blind_segmentation(seg: np.ndarray, kind: str) -> np.ndarray:
    """Replace every visible object of ``seg`` ``[N, T, H, W]`` (0 = background) by a disk or an
    ellipse with its visible pixels' moments, frame by frame.

    ``kind="disk"``: the disk of the object's visible area (pixels) centred at its centroid;
    ``kind="ellipse"``: the region within Mahalanobis distance 2 of the centroid under the
    pixels' covariance (plus 1/12 px^2 per axis, the variance of a pixel's own extent), which for
    a solid ellipse is the ellipse itself. A pixel inside several shapes goes to the one it lies
    deepest in (smallest distance relative to the shape's boundary), a pixel inside none to the
    background. Returns int64 ids ``[N, T, H, W]`` (an object keeps its ground-truth id).
    """
    if kind not in ("disk", "ellipse"):
        raise ValueError(f"kind must be 'disk' or 'ellipse', got {kind!r}")
    seg = np.asarray(seg)
    h, w = seg.shape[-2:]
    ids = np.arange(1, max(int(seg.max()), 1) + 1)
    masks = (seg[..., None] == ids).astype(np.float64)  # [N, T, H, W, K]
    area = masks.sum(axis=(2, 3))  # [N, T, K]
    safe = np.maximum(area, 1.0)[:, :, None, None, :]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    rows, cols = rows[None, None, :, :, None], cols[None, None, :, :, None]
    dr = rows - (masks * rows).sum(axis=(2, 3), keepdims=True) / safe  # [N, T, H, W, K]
    dc = cols - (masks * cols).sum(axis=(2, 3), keepdims=True) / safe
    if kind == "disk":
        depth = (dr**2 + dc**2) / (safe / np.pi)  # (distance / radius)^2
    else:
        var_r = (masks * dr**2).sum(axis=(2, 3), keepdims=True) / safe + 1 / 12
        var_c = (masks * dc**2).sum(axis=(2, 3), keepdims=True) / safe + 1 / 12
        cov = (masks * dr * dc).sum(axis=(2, 3), keepdims=True) / safe
        det = var_r * var_c - cov**2
        depth = (var_c * dr**2 - 2 * cov * dr * dc + var_r * dc**2) / (4 * det)
    depth = np.where(area[:, :, None, None, :] > 0, depth, np.inf)
    inside = depth.min(axis=-1) <= 1.0
    return np.where(inside, ids[depth.argmin(axis=-1)], 0).astype(np.int64)


def shape_blind_fg_ari(seg: np.ndarray, kind: str, batch: int = 50) -> float:
    """Mean FG-ARI (x100) of :func:`shape_blind_segmentation` against ``seg`` ``[N, T, H, W]``."""
    scores = []
    for start in range(0, len(seg), batch):
        gt = np.asarray(seg[start:start + batch], dtype=np.int64)
        pred = shape_blind_segmentation(gt, kind)
        scores.append(fg_ari(torch.from_numpy(gt), torch.from_numpy(pred)))
    return float(torch.cat(scores).mean()) * 100


def parse_variant(text: str) -> dict:
    """``"min_size=0.12,max_size=0.2"`` -> ``{"min_size": 0.12, "max_size": 0.2}`` (YAML values)."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--variant: expected key=value[,key=value...], got {text!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes", help="a synthetic dataset of params/")
    parser.add_argument("--split", default="train", choices=SYNTHETIC_SPLITS)
    parser.add_argument("--variant", action="append", default=None,
                        help="overrides of the synthetic section, key=value,... (repeatable)")
    args = parser.parse_args()

    dataset = resolve_dataset(args.dataset, ROOT / "params")
    if dataset["source"] != "synthetic":
        raise SystemExit(f"{args.dataset}: source is {dataset['source']!r}, not synthetic")
    seed = dataset["seed"] * 1000 + SYNTHETIC_SPLITS.index(args.split)  # as the export stage
    num_videos = dataset["splits"][args.split]
    cases = []
    for variant in [""] + (args.variant if args.variant is not None else DEFAULT_VARIANTS):
        overrides = parse_variant(variant) if variant else {}
        config = {**dataset["synthetic"], **overrides,
                  "resolution": dataset["resolution"], "video_len": dataset["video_len"]}
        video, seg, num_objects = generate_split(config, num_videos, seed=seed)
        stats = occlusion_stats(seg, num_objects)
        stats["colour_identity_fg_ari"] = colour_identity_fg_ari(video, seg)
        stats.update(baseline_scores(video, seg, config["max_objects"] + 1))
        for kind in ("disk", "ellipse"):
            stats[f"{kind}_fg_ari"] = shape_blind_fg_ari(seg, kind)
        cases.append({"overrides": overrides, **stats})
        print(f"{variant or 'shipped':45s} touching {stats['frames_touching']:.3f}  "
              f"hidden {stats['hidden_fraction']:.3f}  object {stats['object_px']:.1f} px  "
              f"FG-ARI: colour identity {stats['colour_identity_fg_ari']:.1f}, "
              f"disks {stats['disk_fg_ari']:.1f}, ellipses {stats['ellipse_fg_ari']:.1f}, "
              f"grid {stats['grid_fg_ari']:.1f}, colour k-means {stats['kmeans_fg_ari']:.1f}", flush=True)

    report = {
        "benchmark": "occlusion in the synthetic shapes data",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": args.dataset,
        "split": args.split,
        "shipped": dataset["synthetic"],
        "resolution": dataset["resolution"],
        "cases": cases,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shapes_occlusion.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Occlusion in `{args.dataset}` ({args.split} split, {num_videos} videos, "
        f"{dataset['resolution']}x{dataset['resolution']})",
        "",
        f"Date: {report['date']}. Written by `bench/shapes_occlusion.py` (definitions in its docstring).",
        "",
        "| generator settings | frames with touching objects (2+ objects) | object-frames touching another "
        "| hidden share of an object (lower bound) | object-frames fully hidden | object area (px) | FG-ARI of "
        "exact-colour segmentation | FG-ARI of equal-area disks at the centroids | FG-ARI of second-moment "
        "ellipses | grid FG-ARI / mBO | colour k-means FG-ARI / mBO |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        name = ", ".join(f"`{k}: {v}`" for k, v in case["overrides"].items()) or "shipped"
        lines.append(f"| {name} | {case['frames_touching']:.1%} | {case['objects_touching']:.1%} | "
                     f"{case['hidden_fraction']:.1%} | "
                     f"{case['fully_hidden']:.2%} | {case['object_px']:.0f} | "
                     f"{case['colour_identity_fg_ari']:.1f} | {case['disk_fg_ari']:.1f} | "
                     f"{case['ellipse_fg_ari']:.1f} | {case['grid_fg_ari']:.1f} / {case['grid_mbo']:.1f} | "
                     f"{case['kmeans_fg_ari']:.1f} / {case['kmeans_mbo']:.1f} |")
    (RESULTS / "shapes_occlusion.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
