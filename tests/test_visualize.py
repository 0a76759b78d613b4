"""Picture helpers: id colours and Hungarian relabelling of predictions."""

from __future__ import annotations

import numpy as np

from slotbench.visualize import colour_ids, id_colours, make_grid, match_ids, match_to_gt


def test_colours_distinct_and_background_black():
    colours = id_colours(12)
    assert (colours[0] == 0).all()
    assert len({tuple(c) for c in colours}) == 12
    assert colour_ids(np.array([[0, 3]])).shape == (1, 2, 3)


def test_match_to_gt_relabels_by_overlap():
    gt = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    pred = np.array([[5, 5, 0, 0], [5, 5, 3, 3]])  # 5 is background, 0 is object 1, 3 is object 2
    np.testing.assert_array_equal(match_to_gt(gt, pred), gt)
    extra = np.array([[1, 1, 2, 2], [1, 1, 0, 0]])  # 3 predicted segments for 3 GT ids: a permutation
    assert len(np.unique(match_to_gt(gt, extra))) == 3


def test_match_ids_maps_every_slot_even_an_empty_one():
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[2, 2, 0, 0]])  # slot 1 takes no pixel
    mapping = match_ids(gt, pred, num_pred=3)
    assert list(mapping) == [1, 3, 0]  # the empty slot gets an id above the GT range


def test_grid_shape():
    video = np.zeros((2, 5, 4, 4, 3), np.uint8)
    grid = make_grid([video, video, video], num_frames=3, scale=2, gap=1)
    assert grid.shape == (6 * 9 + 1, 3 * 9 + 1, 3)
