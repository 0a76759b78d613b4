"""Tests of the embedded synthetic dataset ``shapes`` (slotbench.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from slotbench.data.synthetic import (
    DEFAULT_CONFIG,
    generate_split,
    generate_video,
)

SMALL = dict(DEFAULT_CONFIG, resolution=32, video_len=8)


def _config(**changes):
    return dict(SMALL, **changes)


@pytest.fixture(scope="module", params=["solid", "textured"])
def split(request):
    cfg = _config(look=request.param)
    return cfg, generate_split(cfg, num_videos=12, seed=3)


def test_shapes_and_dtypes(split):
    cfg, (video, seg, num) = split
    n, t, r = 12, cfg["video_len"], cfg["resolution"]
    assert video.shape == (n, t, r, r, 3) and video.dtype == np.uint8
    assert seg.shape == (n, t, r, r) and seg.dtype == np.uint8
    assert num.shape == (n,) and num.dtype == np.int16
    assert num.min() >= cfg["min_objects"] and num.max() <= cfg["max_objects"]


def test_ids_match_num_objects(split):
    _, (_, seg, num) = split
    exact = 0
    for s, k in zip(seg, num):
        ids = set(np.unique(s).tolist())
        assert ids <= set(range(k + 1))
        exact += ids == set(range(k + 1))
    # An object may be hidden behind others in every frame, but that is rare.
    assert exact >= 0.9 * len(num)


def test_deterministic_and_seed_dependent():
    a = generate_split(SMALL, 4, seed=11)
    b = generate_split(SMALL, 4, seed=11)
    c = generate_split(SMALL, 4, seed=12)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    assert a[0].tobytes() != c[0].tobytes()


@pytest.mark.parametrize("look", ["solid", "textured"])
def test_prefix_property(look):
    cfg = _config(look=look)
    short = generate_split(cfg, 3, seed=5)
    long = generate_split(cfg, 5, seed=5)
    for x, y in zip(short, long):
        np.testing.assert_array_equal(x, y[:3])


def test_solid_colours_constant_per_id():
    video, seg, num = generate_split(_config(look="solid"), 8, seed=0)
    for v, s, k in zip(video, seg, num):
        colours = {}
        for obj in range(k + 1):
            pixels = np.unique(v[s == obj], axis=0)
            if len(pixels):
                # One colour per id over the whole video (background included).
                assert len(pixels) == 1, (obj, pixels)
                colours[obj] = pixels[0].astype(int)
        # Objects differ from the background and from one another.
        values = list(colours.values())
        for i in range(len(values)):
            for j in range(i):
                assert np.abs(values[i] - values[j]).sum() > 30


def _centroids(mask):
    """Centroid (y, x) per frame of boolean masks [T, H, W]; NaN where empty."""
    area = mask.sum((1, 2)).astype(float)
    ys, xs = np.arange(mask.shape[1]), np.arange(mask.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (mask.sum(2) * ys).sum(1) / area
        cx = (mask.sum(1) * xs).sum(1) / area
    return np.stack([cy, cx], 1), area


def test_objects_move():
    cfg = _config(max_speed=0.05, video_len=12)
    _, seg, num = generate_split(cfg, 10, seed=1)
    moved = total = 0
    for s, k in zip(seg, num):
        for obj in range(1, k + 1):
            centre, area = _centroids(s == obj)
            if area[0] > 0 and area[-1] > 0:
                total += 1
                moved += np.linalg.norm(centre[-1] - centre[0]) > 1.0
    assert total > 10 and moved >= 0.7 * total


def test_bounces_keep_objects_inside():
    size, res = 0.2, 32
    cfg = _config(
        shapes=["circle"], min_objects=1, max_objects=1, min_size=size, max_size=size,
        max_speed=0.15, video_len=30,
    )
    _, seg, _ = generate_split(cfg, 6, seed=2)
    reversals = 0
    for s in seg:
        centre, area = _centroids(s == 1)
        # Never cut by a border: the area stays that of the whole disk.
        expected = np.pi * (size * res) ** 2
        assert np.all(np.abs(area - expected) < 0.15 * expected), area
        assert np.all(centre >= size * res - 1.5) and np.all(centre <= (1 - size) * res + 0.5)
        step = np.diff(centre, axis=0)
        reversals += np.sum(step[1:] * step[:-1] < -1e-6)
    assert reversals > 0  # at least one bounce happened


@pytest.mark.parametrize(
    ("shape", "area"),
    [("square", 2.0), ("circle", np.pi), ("triangle", 3 * np.sqrt(3) / 4),
     ("diamond", 1.2), ("star", 5 * 0.45 * np.sin(np.pi / 5)), ("ellipse", 0.55 * np.pi)],
)
def test_each_shape_has_its_area(shape, area):
    size, res = 0.2, 64
    cfg = _config(
        shapes=[shape], min_objects=1, max_objects=1, min_size=size, max_size=size,
        resolution=res, video_len=1,
    )
    _, seg, _ = generate_split(cfg, 2, seed=0)
    measured = (seg == 1).sum((1, 2, 3)) / (size * res) ** 2
    np.testing.assert_allclose(measured, area, rtol=0.08)


def test_upright_squares_without_spin_are_axis_aligned_and_keep_their_mask():
    """``orientation: upright`` and ``max_spin: 0``: a still square fills its bounding box and
    its mask is the same in every frame; with the default rotation it does neither."""
    still = dict(shapes=["square"], min_objects=1, max_objects=1, min_size=0.25, max_size=0.25,
                 max_speed=0.0, video_len=6)
    _, seg, _ = generate_split(_config(orientation="upright", max_spin=0.0, **still), 4, seed=0)
    for s in seg:
        rows, cols = np.nonzero(s[0] == 1)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == rows.size  # fills its box: sides along the axes
        assert np.all(s == s[0])
    _, spun, _ = generate_split(_config(**still), 4, seed=0)
    assert any(np.any(s != s[0]) for s in spun)


def test_rotation_keys_leave_the_other_draws_alone():
    """Object counts, colours and positions do not depend on the rotation keys."""
    base = _config(shapes=["circle"], max_speed=0.0)  # circles: rotation changes no pixel
    upright = generate_split(dict(base, orientation="upright", max_spin=0.0), 3, seed=8)
    rotated = generate_split(base, 3, seed=8)
    for a, b in zip(upright, rotated):
        np.testing.assert_array_equal(a, b)


def test_shading_zero_is_the_flat_look_and_shading_only_scales_brightness():
    """``shading: 0`` leaves every pixel of the flat look; with shading the segmentation is the
    same and each pixel is its flat colour times a factor in [1 - shading, 1]."""
    flat = generate_split(_config(), 4, seed=5)
    np.testing.assert_array_equal(generate_split(_config(shading=0.0), 4, seed=5)[0], flat[0])
    shaded = generate_split(_config(shading=0.6), 4, seed=5)
    np.testing.assert_array_equal(shaded[1], flat[1])
    np.testing.assert_array_equal(shaded[2], flat[2])
    lo, hi = flat[0].astype(float) * 0.4 - 0.5, flat[0].astype(float) + 0.5
    assert ((shaded[0] >= lo) & (shaded[0] <= hi)).all()
    assert (shaded[0] < flat[0]).any()


def test_shaded_objects_are_brightest_towards_the_light():
    """Within a shaded object, brightness varies (lit side vs dark side) and the background is a
    ramp, so colour alone no longer gives one value per object."""
    video, seg, num = generate_split(_config(shading=0.6, max_size=0.3, min_size=0.25), 6, seed=2)
    for v, s, k in zip(video, seg, num):
        for obj in range(1, k + 1):
            pixels = v[0][s[0] == obj]
            if len(pixels) > 20:
                assert len(np.unique(pixels, axis=0)) > 3
        assert len(np.unique(v[0][s[0] == 0], axis=0)) > 3


def test_independent_colours_can_repeat_and_distinct_ones_do_not():
    """``distinct_colours: false`` draws each object's colour on its own (close pairs happen);
    ``true`` keeps every pair of objects at least the minimal colour distance apart."""
    def closest_pair(distinct):
        video, seg, num = generate_split(_config(min_objects=5, max_objects=5, distinct_colours=distinct), 40, seed=1)
        gaps = []
        for v, s in zip(video, seg):
            colours = np.array([v[0][s[0] == obj][0] for obj in range(1, 6) if (s[0] == obj).any()], float) / 255
            d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
            gaps.append(d[np.triu_indices(len(colours), 1)].min())
        return min(gaps)
    assert closest_pair(True) >= 0.4 * 0.8 ** 3  # the minimal distance, relaxed at most a few times
    assert closest_pair(False) < 0.2


def test_textured_background_is_patterned_and_pans():
    video, seg, _ = generate_split(_config(look="textured", resolution=48, video_len=12), 6, seed=4)
    for v, s in zip(video, seg):
        background = v[0][s[0] == 0]
        assert len(np.unique(background, axis=0)) >= 2
        both = (s[0] == 0) & (s[-1] == 0)
        changed = np.any(v[0] != v[-1], axis=-1)[both]
        assert changed.mean() > 0.2


def test_textured_objects_have_several_colours():
    video, seg, num = generate_split(_config(look="textured", resolution=64), 6, seed=6)
    multi = total = 0
    for v, s, k in zip(video, seg, num):
        for obj in range(1, k + 1):
            if (s == obj).sum() > 100:
                total += 1
                multi += len(np.unique(v[s == obj], axis=0)) >= 2
    assert total > 5 and multi >= 0.8 * total


def test_generate_video_and_progress(capsys):
    video, seg, k = generate_video(SMALL, np.random.default_rng(0))
    assert video.shape == (8, 32, 32, 3) and seg.shape == (8, 32, 32)
    assert 2 <= k <= 5
    generate_split(SMALL, 2, seed=0, progress=True)
    assert "video" in capsys.readouterr().err


def test_many_objects_and_shape_subset():
    cfg = _config(min_objects=254, max_objects=254, shapes=["square", "star"], video_len=2)
    _, seg, num = generate_split(cfg, 1, seed=0)
    assert num[0] == 254 and seg.max() <= 254


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_objects": 6, "max_objects": 5}, "min_objects"),
        ({"max_objects": 255}, "max_objects"),
        ({"min_size": 0.0}, "positive"),
        ({"max_size": -0.1}, "positive"),
        ({"min_size": 0.3, "max_size": 0.2}, "min_size"),
        ({"look": "glossy"}, "glossy"),
        ({"shapes": ["circle", "hexagon"]}, "hexagon"),
        ({"shapes": []}, "shapes"),
        ({"resolution": 4}, "resolution"),
        ({"orientation": "sideways"}, "sideways"),
        ({"max_spin": -0.1}, "max_spin"),
        ({"shading": 1.5}, "shading"),
        ({"distinct_colours": "yes"}, "distinct_colours"),
    ],
)
def test_bad_config(changes, message):
    with pytest.raises(ValueError, match=message):
        generate_split(_config(**changes), 1, seed=0)


def test_missing_key():
    cfg = dict(SMALL)
    del cfg["max_speed"]
    with pytest.raises(ValueError, match="max_speed"):
        generate_split(cfg, 1, seed=0)


def test_png_grid(tmp_path):
    from PIL import Image

    from slotbench.visualize import colour_ids, make_grid, save_png

    video, seg, _ = generate_split(SMALL, 2, seed=0)
    path = save_png(make_grid([video, colour_ids(seg)], num_frames=3, scale=2, gap=2), tmp_path / "grid.png")
    with Image.open(path) as image:
        image.load()
        # 2 videos x (RGB row + segmentation row), 3 frames, tiles of 64 px, 2 px gaps.
        assert image.size == (3 * 66 + 2, 4 * 66 + 2)
        assert image.mode == "RGB"
