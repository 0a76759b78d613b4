"""Pictures of videos and segmentations: previews for docs, benchmarks and reports.

Segmentations are coloured with a fixed palette (id 0 black); a predicted segmentation can
first be relabelled to the ground-truth ids it overlaps most (Hungarian matching), so the same
object keeps its colour in both rows.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment


def id_colours(n: int) -> np.ndarray:
    """uint8 ``[n, 3]`` distinct display colours for ids 0..n-1 (0 is black)."""
    colours = [(0, 0, 0)]
    for i in range(1, n):
        hue = (i * 0.618033988749895) % 1.0
        sat, val = (0.85 if i % 2 else 0.55), (0.8 if (i // 2) % 2 else 1.0)
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)))
    return np.array(colours, dtype=np.uint8)


def colour_ids(seg: np.ndarray, num_ids: int | None = None) -> np.ndarray:
    """Integer ids ``[..., H, W]`` -> uint8 RGB ``[..., H, W, 3]``."""
    return np.take(id_colours(num_ids or int(seg.max()) + 1), seg, axis=0)


def match_ids(gt: np.ndarray, pred: np.ndarray, num_pred: int | None = None) -> np.ndarray:
    """The GT id each predicted id 0..num_pred-1 is matched to by maximum overlap (Hungarian),
    as an array indexed by predicted id; unmatched ids get ids above the GT range.

    Args:
        gt, pred: integer ids of one video, the same shape.
        num_pred: how many predicted ids to map (default ``pred.max() + 1``; e.g. the number of slots).
    """
    g, p = int(gt.max()) + 1, max(int(pred.max()) + 1, num_pred or 0)
    overlap = np.bincount(gt.ravel().astype(np.int64) * p + pred.ravel(), minlength=g * p).reshape(g, p)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.arange(p) + g  # unmatched predicted ids: fresh colours
    mapping[cols] = rows
    return mapping


def match_to_gt(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Relabel ``pred`` (one video, any shape) with :func:`match_ids`, so each predicted segment
    takes the colour of the GT object it overlaps most."""
    return match_ids(gt, pred)[pred]


def make_grid(rows: list[np.ndarray], num_frames: int = 4, scale: int = 2, gap: int = 2) -> np.ndarray:
    """A picture (uint8 ``[H', W', 3]``) of several aligned video rows.

    Args:
        rows: arrays of uint8 RGB videos ``[N, T, H, W, 3]``, all the same shape; the picture shows,
            for each of the N videos, one row per array (e.g. frames, GT, prediction).
        num_frames: evenly spaced frames shown per row.
        scale: nearest-neighbour enlargement; ``gap``: white pixels between tiles.
    """
    n, t, h, w, _ = rows[0].shape
    frames = np.linspace(0, t - 1, min(num_frames, t)).round().astype(int)
    stacked = np.stack([r[:, frames] for r in rows], axis=1).reshape(n * len(rows), len(frames), h, w, 3)
    stacked = stacked.repeat(scale, axis=2).repeat(scale, axis=3)
    th, tw = h * scale, w * scale
    grid = np.full((len(stacked) * (th + gap) + gap, len(frames) * (tw + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(stacked):
        for c, tile in enumerate(row):
            y, x = gap + r * (th + gap), gap + c * (tw + gap)
            grid[y:y + th, x:x + tw] = tile
    return grid


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 RGB image as PNG (atomically)."""
    from PIL import Image

    from .io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
