"""bench/segment_anatomy.py: the failure-mode measures on hand-made frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
anatomy_bench = pytest.importorskip("segment_anatomy")

# a 4x6 frame: floor 0, object 1 (2 px), object 2 (2 px), object 3 (2 px)
GT = np.array([[0, 0, 0, 0, 0, 0],
               [0, 1, 1, 0, 2, 2],
               [0, 0, 0, 0, 0, 0],
               [3, 3, 0, 0, 0, 0]])


def test_perfect_segmentation_keeps_every_object_apart_without_floor():
    r = anatomy_bench.frame_anatomy(GT, GT + 10)
    assert r == {"objects_apart": 1.0, "objects_per_segment": 1.0, "object_whole": 1.0, "floor_share": 0.0}


def test_one_segment_merges_every_object_into_the_whole_frame():
    r = anatomy_bench.frame_anatomy(GT, np.zeros_like(GT))
    assert r["objects_apart"] == 0.0 and r["objects_per_segment"] == 3.0
    assert r["floor_share"] == pytest.approx(18 / 24)


def test_halves_keep_apart_only_objects_in_different_halves():
    halves = np.zeros_like(GT)
    halves[:, 3:] = 1  # objects 1 and 3 left, object 2 right
    r = anatomy_bench.frame_anatomy(GT, halves)
    assert r["objects_apart"] == pytest.approx(2 / 3)  # pairs (1,2) and (2,3) apart, (1,3) together
    assert r["objects_per_segment"] == pytest.approx(3 / 2)
    assert r["floor_share"] == pytest.approx(18 / 24)


def test_an_object_belongs_to_the_segment_with_most_of_it_and_ties_go_to_the_lower_id():
    pred = np.full_like(GT, 7)
    pred[1, 1:3] = [5, 4]        # object 1 split evenly between 5 and 4: it belongs to 4
    pred[1, 4:6] = 4             # object 2 in 4
    r = anatomy_bench.frame_anatomy(GT, pred)
    # owners: 1 -> 4, 2 -> 4, 3 -> 7; pairs apart: (1,3) (2,3); object 1 half in its segment
    assert r["object_whole"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert r["objects_apart"] == pytest.approx(2 / 3)
    assert r["objects_per_segment"] == pytest.approx(3 / 2)
    # segments 4 and 7: every pixel but the one of segment 5; floor pixels among them 18 of 23
    assert r["floor_share"] == pytest.approx(18 / 23)


def test_frames_with_fewer_than_two_objects_are_left_out():
    single = np.where(GT == 1, 1, 0)
    assert anatomy_bench.frame_anatomy(single, single) is None
    gts = np.stack([GT, single])[None]                         # [1, 2, 4, 6]
    preds = np.stack([GT, np.zeros_like(GT)])[None]
    r = anatomy_bench.anatomy(gts, preds)
    assert r["frames"] == 1 and r["objects_apart"] == 1.0
    with pytest.raises(ValueError, match="two objects"):
        anatomy_bench.anatomy(single[None, None], single[None, None])
    with pytest.raises(ValueError, match="shape"):
        anatomy_bench.anatomy(gts, preds[:, :1])


def test_run_options_are_checked_before_any_compute(tmp_path):
    with pytest.raises(SystemExit, match="NAME=PATH"):
        anatomy_bench.parse_runs(["no-equals-sign"])
    with pytest.raises(SystemExit, match="no file"):
        anatomy_bench.parse_runs([f"x={tmp_path / 'missing.pt'}"])
    (tmp_path / "model.pt").write_bytes(b"")
    assert anatomy_bench.parse_runs([f"x={tmp_path / 'model.pt'}"]) == {"x": tmp_path / "model.pt"}
