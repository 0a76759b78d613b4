"""MOVi-Solid/Tex release files decoded with OpenCV give the pixels PIL gives, for every kind of
frame and mask PNG the reader accepts (bench/bench_movi_png_read.py times the two)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slotbench.data import movi_release
from slotbench.data.storage import DataError

R = 16


def _pil_frame(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _pil_mask(path):
    with Image.open(path) as image:
        if image.mode in ("1", "L", "LA"):
            return np.asarray(image.convert("L"))
        return np.asarray(image.convert("RGB"))[..., 0]


def _frames(rng) -> dict[str, Image.Image]:
    rgb = rng.integers(0, 256, (R, R, 3), dtype=np.uint8)
    return {"RGB": Image.fromarray(rgb), "RGBA": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
            "L": Image.fromarray(rgb[..., 0]), "P": Image.fromarray(rgb).convert("P")}


def _masks(rng) -> dict[str, Image.Image]:
    m = np.where(rng.random((R, R)) > 0.6, 255, 0).astype(np.uint8)
    alpha = np.full_like(m, 200)
    palette_alpha = Image.fromarray(m).convert("P")
    palette_alpha.info["transparency"] = 0
    return {"L": Image.fromarray(m), "1": Image.fromarray(m).convert("1"), "P": Image.fromarray(m).convert("P"),
            "P+transparency": palette_alpha, "LA": Image.fromarray(np.dstack([m, alpha]), "LA"),
            "RGB (save_image)": Image.fromarray(np.repeat(m[..., None], 3, axis=2)),
            "RGBA": Image.fromarray(np.dstack([m, m, m, alpha]))}


def test_frames_and_masks_equal_pils_pixels(tmp_path):
    rng = np.random.default_rng(0)
    for kind, image in _frames(rng).items():
        path = tmp_path / f"frame_{kind}.png"
        image.save(path)
        frame = movi_release.read_frame(path, R)
        assert frame.dtype == np.uint8 and frame.shape == (R, R, 3)
        np.testing.assert_array_equal(frame, _pil_frame(path), err_msg=kind)
    for kind, image in _masks(rng).items():
        path = tmp_path / f"mask_{kind}.png"
        image.save(path)
        mask = movi_release.read_mask(path, R)
        assert mask.dtype == np.uint8 and mask.shape == (R, R) and set(np.unique(mask)) == {0, 255}, kind
        np.testing.assert_array_equal(mask, _pil_mask(path), err_msg=kind)


@pytest.mark.parametrize("how", ["empty", "folder"])
def test_an_unreadable_file_is_named(tmp_path, how):
    path = tmp_path / "00000000_image.png"
    if how == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()
    with pytest.raises(DataError) as info:
        movi_release.read_frame(path, R)
    assert str(info.value).startswith(f"{path}: unreadable")
