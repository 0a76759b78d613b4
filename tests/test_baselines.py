"""Segmentation baselines without learning (slotbench.evaluation.baselines)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from slotbench.data.synthetic import DEFAULT_CONFIG, generate_split
from slotbench.evaluation.baselines import (
    colour_kmeans,
    grid,
    grid_shape,
    one_segment,
    score_baselines,
)
from slotbench.metrics import segmentation_scores

BG, RED, GREEN = (0, 0, 0), (255, 0, 0), (0, 255, 0)


def _two_squares(noise: int = 0, hide_green_at: int | None = None, frames: int = 5):
    """uint8 [1, T, 16, 16, 3] with a red square moving right and a green one moving down,
    and its seg [1, T, 16, 16] (0 background, 1 red, 2 green)."""
    video = np.zeros((1, frames, 16, 16, 3), dtype=np.int64)
    seg = np.zeros((1, frames, 16, 16), dtype=np.int64)
    for t in range(frames):
        seg[0, t, 2:6, 1 + 2 * t:5 + 2 * t] = 1
        if t != hide_green_at:
            seg[0, t, 8 + t:12 + t, 10:14] = 2
    video[seg == 0] = np.array(BG) + 20
    video[seg == 1] = np.array(RED) - 20 * (np.array(RED) > 0)
    video[seg == 2] = np.array(GREEN) - 20 * (np.array(GREEN) > 0)
    if noise:
        video += np.random.default_rng(0).integers(-noise, noise + 1, video.shape)
    return video.clip(0, 255).astype(np.uint8), seg


@pytest.mark.parametrize("k, shape", [(1, (1, 1)), (2, (1, 2)), (4, (2, 2)), (6, (2, 3)), (7, (1, 7)),
                                      (9, (3, 3)), (11, (1, 11)), (12, (3, 4)), (24, (4, 6))])
def test_grid_factorisation_and_cells(k, shape):
    assert grid_shape(k) == shape
    video = np.zeros((2, 3, 30, 32, 3), dtype=np.uint8)
    ids = grid(video, k)
    assert ids.shape == (2, 3, 30, 32) and ids.dtype == torch.int64
    assert sorted(torch.unique(ids).tolist()) == list(range(k))
    assert (ids == ids[0, 0]).all()  # the same grid in every frame of every video
    rows, cols = shape
    for cell in range(k):
        ys, xs = torch.nonzero(ids[0, 0] == cell, as_tuple=True)
        height, width = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert height * width == len(ys)  # a rectangle
        assert height in (30 // rows, -(-30 // rows)) and width in (32 // cols, -(-32 // cols))
        assert (int(ys.min()) * rows // 30, int(xs.min()) * cols // 32) == divmod(cell, cols)


def test_one_segment_scores_zero_fg_ari():
    video, seg = _two_squares()
    pred = one_segment(torch.from_numpy(video), 7)
    assert pred.shape == seg.shape and pred.dtype == torch.int64 and int(pred.abs().max()) == 0
    assert float(segmentation_scores(seg, pred)["fg_ari"][0]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colour_kmeans_matches_sklearn(seed):
    cluster = pytest.importorskip("sklearn.cluster")
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    centres = np.array([[30, 30, 30], [220, 40, 40], [40, 200, 60], [60, 60, 230], [230, 230, 60]])
    truth = rng.integers(0, len(centres), (20, 24))
    frame = (centres[truth] + rng.integers(-12, 13, (20, 24, 3))).astype(np.uint8)
    pred = colour_kmeans(frame[None, None], len(centres))[0, 0].numpy()
    pixels = frame.reshape(-1, 3) / 255.0
    ref = cluster.KMeans(n_clusters=len(centres), n_init=10, random_state=0).fit_predict(pixels)
    assert adjusted_rand_score(ref, pred.ravel()) == 1.0
    assert adjusted_rand_score(truth.ravel(), pred.ravel()) == 1.0


@pytest.mark.parametrize("noise, hide", [(0, 2), (6, None)])
def test_colour_kmeans_carries_ids_over_time(noise, hide):
    # Both squares move; with `hide`, green vanishes in that frame and comes back: red must keep
    # its id through it (where the cluster order of the remaining colours changes) and green
    # must get its old id back. With noise, each frame goes through k-means++ and Lloyd.
    video, seg = _two_squares(noise=noise, hide_green_at=hide)
    pred = colour_kmeans(video, 3)
    assert pred.shape == seg.shape and pred.dtype == torch.int64
    pred = pred.numpy()
    per_object = []
    for obj in (0, 1, 2):
        ids = np.unique(pred[seg == obj])
        assert len(ids) == 1, (obj, ids)  # one id for the object in all its frames
        per_object.append(int(ids[0]))
    assert sorted(per_object) == [0, 1, 2]
    assert float(segmentation_scores(seg, torch.from_numpy(pred))["fg_ari"][0]) == pytest.approx(1.0)


def test_colour_kmeans_fewer_colours_than_k():
    video, seg = _two_squares(frames=3)
    flat = np.full((1, 2, 16, 16, 3), 90, dtype=np.uint8)  # one colour only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN / empty-slice warnings
        pred = colour_kmeans(video, 8).numpy()
        pred_flat = colour_kmeans(flat, 4).numpy()
    assert pred.min() >= 0 and pred.max() < 8 and len(np.unique(pred)) == 3
    assert float(segmentation_scores(seg, torch.from_numpy(pred))["fg_ari"][0]) == pytest.approx(1.0)
    assert len(np.unique(pred_flat)) == 1


def test_colour_kmeans_deterministic_numpy_or_torch():
    video, _ = _two_squares(noise=10)
    a = colour_kmeans(video, 4)
    b = colour_kmeans(torch.from_numpy(video), 4)
    assert torch.equal(a, b)


@pytest.mark.parametrize("baseline", [one_segment, grid, colour_kmeans])
def test_bad_input_is_refused(baseline):
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        baseline(np.zeros((2, 8, 8, 3), dtype=np.uint8), 3)
    with pytest.raises(ValueError, match="num_slots"):
        baseline(np.zeros((1, 2, 8, 8, 3), dtype=np.uint8), 0)


def test_score_baselines_on_tiny_shapes():
    cfg = dict(DEFAULT_CONFIG, resolution=16, video_len=4, look="solid")
    videos, segs, _ = generate_split(cfg, num_videos=3, seed=1)
    dataset = [{"video": torch.from_numpy(v), "seg": torch.from_numpy(s.astype(np.int64)), "index": i}
               for i, (v, s) in enumerate(zip(videos, segs))]
    result = score_baselines(dataset, num_slots=cfg["max_objects"] + 1, batch_size=2, progress=False)
    assert set(result) == {"baseline_one_segment", "baseline_grid", "baseline_colour_kmeans"}
    for summary in result.values():
        assert summary["num_videos"] == 3
        assert all(math.isfinite(summary[m]) and 0 <= summary[m] <= 100 for m in ("miou", "mbo"))
        assert sum(part["num_videos"] for part in summary["by_num_objects"].values()) == 3
    assert result["baseline_one_segment"]["fg_ari"] == 0.0
    # One solid colour per object and at most K colours: colour alone segments the video.
    assert result["baseline_colour_kmeans"]["fg_ari"] == pytest.approx(100.0)
