"""Segmentation baselines without learning: what the data gives away for free.

Each baseline maps videos uint8 ``[B, T, H, W, 3]`` (numpy or torch, RGB in 0..255) and a slot
count ``K`` to predicted ids int64 ``[B, T, H, W]`` in ``0..K-1``, with ids consistent over
time (the metrics fold time into the pixels):

* :func:`one_segment`: every pixel is segment 0;
* :func:`grid`: a fixed ``rows x cols = K`` grid of image cells, the same in every frame;
* :func:`colour_kmeans`: k-means on pixel colour per frame, cluster ids carried from frame to
  frame by matching cluster centres (Hungarian assignment).

:func:`score_baselines` scores all three on an evaluation dataset like
:func:`~slotbench.evaluation.segmentation.score_videos` scores a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .segmentation import FRAME_METRICS, METRICS, summarise, summarise_by_objects, video_scores

__all__ = ["BASELINES", "colour_kmeans", "grid", "grid_shape", "one_segment", "score_baselines"]

# Matching cost of an id whose colour was never seen: the diameter of the RGB unit cube, so a
# cluster takes a fresh id only when no id with a known colour is left.
_UNSEEN_COST = math.sqrt(3.0)


def _check(video: Any, num_slots: int) -> tuple[np.ndarray, torch.device]:
    """Validate a video batch; returns it as a numpy uint8 ``[B, T, H, W, 3]`` and its device."""
    device = video.device if isinstance(video, torch.Tensor) else torch.device("cpu")
    array = video.cpu().numpy() if isinstance(video, torch.Tensor) else video
    if not isinstance(array, np.ndarray):
        raise ValueError(f"video must be a numpy.ndarray or torch.Tensor, got {type(video).__name__}")
    if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"video must be uint8 [B, T, H, W, 3], got {array.dtype} {tuple(array.shape)}")
    if isinstance(num_slots, bool) or not isinstance(num_slots, (int, np.integer)) or num_slots < 1:
        raise ValueError(f"num_slots must be an integer >= 1, got {num_slots!r}")
    return array, device


def one_segment(video: Any, num_slots: int) -> torch.Tensor:
    """All pixels in segment 0: ids int64 ``[B, T, H, W]`` of zeros (``num_slots`` is unused)."""
    array, device = _check(video, num_slots)
    return torch.zeros(array.shape[:4], dtype=torch.long, device=device)


def grid_shape(num_slots: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == num_slots``, the most square one with rows <= cols
    (4 -> 2x2, 6 -> 2x3, 7 -> 1x7)."""
    rows = max(r for r in range(1, math.isqrt(num_slots) + 1) if num_slots % r == 0)
    return rows, num_slots // rows


def grid(video: Any, num_slots: int) -> torch.Tensor:
    """A fixed grid of :func:`grid_shape` cells, the same in every frame.

    Cell ``(r, c)`` has id ``r * cols + c``; pixel row ``y`` lies in cell row ``y * rows // H``
    (likewise for columns), so cell sizes differ by at most one pixel.
    Returns ids int64 ``[B, T, H, W]`` in ``0..num_slots-1``.
    """
    array, device = _check(video, num_slots)
    b, t, h, w = array.shape[:4]
    rows, cols = grid_shape(int(num_slots))
    row = torch.arange(h, device=device) * rows // h  # [H]
    col = torch.arange(w, device=device) * cols // w  # [W]
    cells = row[:, None] * cols + col[None, :]  # [H, W]
    return cells.expand(b, t, h, w).clone()


def _kmeans_pp(colours: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on distinct colours [U, 3] with pixel counts [U] (U > k): centres [k, 3]."""
    centres = np.empty((k, 3))
    centres[0] = colours[rng.choice(len(colours), p=weights / weights.sum())]
    dist2 = ((colours - centres[0]) ** 2).sum(1)  # [U] squared distance to the nearest centre
    for j in range(1, k):
        p = weights * dist2  # > 0 for some colour, as the colours are distinct and U > k
        centres[j] = colours[rng.choice(len(colours), p=p / p.sum())]
        dist2 = np.minimum(dist2, ((colours - centres[j]) ** 2).sum(1))
    return centres


def _nearest(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre [k, 3] for each colour [U, 3]: int64 [U]."""
    return ((colours[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)


def _kmeans_frame(frame: np.ndarray, k: int, seed: int,
                  max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means of one frame's pixel colours (RGB floats in [0, 1]).

    Works on the distinct colours weighted by their pixel counts, which is the same objective
    as on all pixels. A frame with at most ``k`` distinct colours gets one cluster per colour
    and empty clusters for the rest.

    Args:
        frame: uint8 ``[H, W, 3]``.
    Returns:
        labels int64 ``[H, W]`` in ``0..k-1``, centres float64 ``[k, 3]`` (0 for an empty
        cluster) and a bool mask ``[k]`` of the non-empty clusters.
    """
    code = frame.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])  # [H*W]
    uniq, inverse, counts = np.unique(code, return_inverse=True, return_counts=True)
    colours = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], axis=1) / 255.0  # [U, 3]
    weights = counts.astype(np.float64)
    centres = np.zeros((k, 3))
    if len(uniq) <= k:
        assign = np.arange(len(uniq))
        centres[: len(uniq)] = colours
    else:
        centres = _kmeans_pp(colours, weights, k, np.random.default_rng(seed))
        assign = _nearest(colours, centres)
        for _ in range(max_iter):
            mass = np.bincount(assign, weights, minlength=k)  # [k]
            sums = np.stack([np.bincount(assign, weights * colours[:, c], minlength=k) for c in range(3)], 1)
            filled = mass > 0
            centres[filled] = sums[filled] / mass[filled, None]  # an empty cluster keeps its centre
            new = _nearest(colours, centres)
            if np.array_equal(new, assign):
                break
            assign = new
    nonempty = np.bincount(assign, minlength=k) > 0
    centres[~nonempty] = 0.0
    return assign[inverse].reshape(frame.shape[:2]), centres, nonempty


def colour_kmeans(video: Any, num_slots: int, seed: int = 0, max_iter: int = 100) -> torch.Tensor:
    """Per-frame k-means on pixel colour, ids carried over time by matching cluster centres.

    Each frame is clustered into ``num_slots`` colour clusters (RGB as floats in [0, 1];
    k-means++ seeding from ``np.random.default_rng(seed)``, then Lloyd iterations until the
    assignment stops changing or ``max_iter``). Every id keeps the centre it last had; the
    non-empty clusters of the next frame are matched one-to-one to ids by
    ``linear_sum_assignment`` on the Euclidean distance between centres (an id not seen yet
    costs the RGB cube's diameter), so a colour keeps its id while it moves, even across
    frames where it is hidden. Deterministic for a given ``seed``.

    Args:
        video: uint8 ``[B, T, H, W, 3]``, numpy or torch.
        num_slots: the number of clusters K.
    Returns:
        ids int64 ``[B, T, H, W]`` in ``0..K-1`` on the video's device.
    """
    array, device = _check(video, num_slots)
    k = int(num_slots)
    out = np.empty(array.shape[:4], dtype=np.int64)
    for b, clip in enumerate(array):
        ref = np.zeros((k, 3))  # last centre of each id
        seen = np.zeros(k, dtype=bool)
        for t, frame in enumerate(clip):
            labels, centres, nonempty = _kmeans_frame(frame, k, seed, max_iter)
            clusters = np.flatnonzero(nonempty)
            cost = np.linalg.norm(centres[clusters, None] - ref[None], axis=2)  # [n_clusters, K]
            cost[:, ~seen] = _UNSEEN_COST
            rows, ids = linear_sum_assignment(cost)
            to_id = np.empty(k, dtype=np.int64)
            to_id[clusters[rows]] = ids
            to_id[np.flatnonzero(~nonempty)] = np.setdiff1d(np.arange(k), ids)  # no pixels anyway
            ref[ids] = centres[clusters[rows]]
            seen[ids] = True
            out[b, t] = to_id[labels]
    return torch.from_numpy(out).to(device)


BASELINES: dict[str, Callable[[Any, int], torch.Tensor]] = {
    "one_segment": one_segment,
    "grid": grid,
    "colour_kmeans": colour_kmeans,
}


def score_baselines(dataset: Dataset, num_slots: int, batch_size: int,
                    progress: bool = True) -> dict[str, dict]:
    """Scores of every baseline in :data:`BASELINES` over ``dataset``, on the CPU.

    Args:
        dataset: items with ``video`` uint8 [T, H, W, 3] and ``seg`` integer [T, H, W]
            (0 = background), as :func:`~slotbench.evaluation.segmentation.score_videos` reads.
        num_slots: K given to each baseline.
    Returns:
        ``{"baseline_<name>": {"fg_ari", "miou", "mbo" (percent), "num_videos",
        "by_num_objects": {...}, "per_frame": {...}}}``, as :func:`summarise`,
        :func:`summarise_by_objects` and (every frame scored alone) :func:`video_scores` give.
    """
    per_video = {name: {m: [] for m in (*METRICS, *FRAME_METRICS, "num_objects")} for name in BASELINES}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="baselines", unit="batch", disable=not progress, dynamic_ncols=True):
        video = torch.as_tensor(batch["video"])  # [B, T, H, W, 3]
        gt = torch.as_tensor(batch["seg"]).long()  # [B, T, H, W]
        num_objects = [len(torch.unique(g[g > 0])) for g in gt]
        for name, baseline in BASELINES.items():
            for m, values in video_scores(gt, baseline(video, num_slots)).items():
                per_video[name][m].extend(values)
            per_video[name]["num_objects"].extend(num_objects)
    return {f"baseline_{name}": {**summarise(scores), "by_num_objects": summarise_by_objects(scores),
                                 "per_frame": summarise({m: scores[f"frame_{m}"] for m in METRICS})}
            for name, scores in per_video.items()}
