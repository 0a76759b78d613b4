"""Pictures of videos and segmentations: previews for docs, benchmarks, reports and the
evaluation's MP4s.

Segmentations are coloured with a fixed palette (id 0 black); a predicted segmentation can
first be relabelled to the ground-truth ids it overlaps most (Hungarian matching), so the same
object keeps its colour in both rows. Videos are uint8 RGB ``[T, H, W, 3]``; :func:`strip`
puts several side by side, each captioned.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Smallest displayed tile side in pixels (:func:`strip`): small videos are enlarged (nearest neighbour) to it.
MIN_TILE = 96
LABEL_HEIGHT = 14
GAP = 2
#: Pixels a slot did not take, in :func:`slot_layers`.
EMPTY = 255


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


def matched_segmentation(gt: np.ndarray, pred: np.ndarray, num_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` (slot ids ``[T, H, W]``) relabelled to GT ids ``[T, H, W]``, and each slot's id (``[num_slots]``)."""
    mapping = match_ids(gt, pred, num_slots)
    return mapping[pred], mapping[:num_slots]


def slot_layers(video: np.ndarray, pred: np.ndarray, slot_ids: np.ndarray) -> list[tuple[int, np.ndarray, tuple]]:
    """One ``[T, H, W, 3]`` layer per slot (its pixels of ``video``, the rest white), ordered by
    the GT id the slot was matched to: ``(slot, layer, display colour)``."""
    palette = id_colours(int(slot_ids.max()) + 1)
    layers = []
    for slot in np.argsort(slot_ids, kind="stable"):
        mask = (pred == slot)[..., None]
        layers.append((int(slot), np.where(mask, video, EMPTY).astype(np.uint8),
                       tuple(int(c) for c in palette[slot_ids[slot]])))
    return layers


def enlarge(video: np.ndarray, side: int = MIN_TILE) -> np.ndarray:
    """Nearest-neighbour enlargement of ``[T, H, W, 3]`` by the integer factor that reaches ``side``."""
    factor = max(1, -(-side // video.shape[1]))
    return video.repeat(factor, axis=1).repeat(factor, axis=2)


def _label(text: str, width: int, colour: tuple[int, int, int] | None) -> np.ndarray:
    """A white ``[LABEL_HEIGHT, width, 3]`` caption, with a colour bar underneath when given."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), text, fill="black")
    if colour is not None:
        draw.rectangle((0, LABEL_HEIGHT - 3, width, LABEL_HEIGHT), fill=tuple(int(c) for c in colour))
    return np.asarray(image)


def strip(tiles: list[np.ndarray], labels: list[str],
          colours: list[tuple[int, int, int] | None] | None = None) -> np.ndarray:
    """Videos side by side, each enlarged and captioned: ``[T, LABEL_HEIGHT + H', W', 3]``.

    Args:
        tiles: videos ``[T, H, W, 3]`` with the same ``T``, ``H`` and ``W``.
        labels: one caption per tile.
        colours: optional colour bar under each caption (e.g. the colour a slot was matched to).
    """
    colours = colours or [None] * len(tiles)
    big = [enlarge(t) for t in tiles]
    t, h, w, _ = big[0].shape
    out = np.full((t, LABEL_HEIGHT + h, len(big) * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, (video, label, colour) in enumerate(zip(big, labels, colours)):
        x = i * (w + GAP)
        out[:, :LABEL_HEIGHT, x:x + w] = _label(label, w, colour)
        out[:, LABEL_HEIGHT:, x:x + w] = video
    return out


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
