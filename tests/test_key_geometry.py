"""bench/key_geometry.py: pair classes and key distances on hand-made frames and keys."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
key_bench = pytest.importorskip("key_geometry")

# a 12x12 frame: floor 0, object 1 a 4x4 square at the top left, object 2 a 4x4 square at the bottom right
SEG = np.zeros((12, 12), dtype=np.int64)
SEG[1:5, 1:5] = 1
SEG[7:11, 7:11] = 2


def flat(y: int, x: int) -> int:
    return y * SEG.shape[1] + x


def test_pair_classes_by_hand():
    pairs = [((1, 1), (4, 4)),    # object 1, 4.2 px apart: same object far
             ((1, 1), (1, 2)),    # object 1, 1 px apart: no class
             ((1, 1), (8, 8)),    # objects 1 and 2
             ((2, 4), (2, 6)),    # object 1 and floor 2 px apart
             ((0, 0), (0, 11)),   # floor 11 px apart
             ((0, 0), (1, 0)),    # floor 1 px apart
             ((0, 0), (0, 5))]    # floor 5 px apart: no class
    i = np.array([flat(*a) for a, _ in pairs])
    j = np.array([flat(*b) for _, b in pairs])
    got = key_bench.pair_classes(SEG, i, j)
    expected = {"same_object_far": [0], "different_objects": [2], "object_floor_adjacent": [3],
                "floor_far": [4], "floor_near": [5]}
    for name, rows in expected.items():
        assert np.flatnonzero(got[name]).tolist() == rows, name


def test_keys_of_position_put_far_floor_further_than_an_object_from_its_floor():
    ys, xs = np.divmod(np.arange(SEG.size), SEG.shape[1])
    keys = np.stack([ys, xs], axis=1).astype(float)            # the key is the pixel's place
    d = {k: np.mean(v) for k, v in key_bench.frame_key_distances(keys, SEG, np.random.default_rng(0)).items()}
    assert d["floor_far"] > d["object_floor_adjacent"]
    assert d["different_objects"] > d["same_object_far"]


def test_keys_of_look_put_objects_apart_from_the_floor_and_from_each_other():
    look = np.eye(3)[SEG.reshape(-1)]                          # the key is the pixel's id, one-hot
    d = {k: np.mean(v) for k, v in key_bench.frame_key_distances(look, SEG, np.random.default_rng(0)).items()}
    assert d["same_object_far"] == 0 and d["floor_far"] == 0 and d["floor_near"] == 0
    assert d["object_floor_adjacent"] > 1 and d["different_objects"] > 1   # above the mean pair
    assert d["object_floor_adjacent"] == pytest.approx(d["different_objects"])


def test_distances_are_relative_to_the_frames_mean_pair():
    ys, xs = np.divmod(np.arange(SEG.size), SEG.shape[1])
    keys = np.stack([ys, xs], axis=1).astype(float)
    a = key_bench.frame_key_distances(keys, SEG, np.random.default_rng(3))
    b = key_bench.frame_key_distances(100 * keys, SEG, np.random.default_rng(3))
    for name in key_bench.PAIRS:
        assert np.allclose(a[name], b[name])


def test_a_key_count_that_is_not_the_frames_pixel_count_is_refused():
    with pytest.raises(ValueError, match="keys for a frame"):
        key_bench.frame_key_distances(np.zeros((10, 4)), SEG, np.random.default_rng(0))
