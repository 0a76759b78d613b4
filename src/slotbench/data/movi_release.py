"""Import MOVi-Solid / MOVi-Tex from the extracted STEVE release folders (``source: release``).

Layout read (SlotDiffusion ``docs/data.md`` and ``datasets/steve_movi.py``)::

    {release.path}/{split}/{video}/%08d_image.png        frame t (RGB)
    {release.path}/{split}/{video}/%08d_mask_%02d.png    num_masks (10) binary masks of frame t

- Videos are the non-hidden sub-folders of the split folder, in the original's order: it lists
  them with ``glob('{split}/*/')`` and sorts the resulting paths, i.e. sorts the names with a
  trailing ``/`` (so ``a-b`` comes before ``a``). Video ``i`` here is the original's ``data_idx``.
- Files are decoded with OpenCV (``cv2.imdecode`` of the file's bytes; the original reads the
  masks with OpenCV too): the same pixels as PIL's decode and conversions, about 1.2x faster for a
  whole video folder (``bench/results/movi_png_read.md``).
- Frames ``0 .. video_len-1`` are read (as the original, extra frames are ignored) and converted
  to RGB (grey and palette expanded, alpha dropped, as PIL's ``convert("RGB")``). They must
  already be ``resolution x resolution``: the original's bilinear resize is the identity at 128,
  and slotbench does not resize.
- Masks are read as 8-bit grey. Accepted: grey, 1-bit, grey+alpha, and RGB(A)/palette PNGs
  whose three colour channels are equal (``torchvision.utils.save_image`` writes RGB); for all of
  these the values are those of the original's ``cv2.imread(..., IMREAD_GRAYSCALE)``. A colour
  mask (channels differ), whose grey value would depend on the conversion's rounding, is refused.

The mask merge (bit-compatible with the original's ``_merge_masks``): an all-ones plane is put
in front of the ``num_masks`` planes and the stack is argmaxed, so pixel id = ``k + 1`` for the
first mask ``k`` holding the largest value at that pixel, and 0 (background) where no mask
exceeds 1. Overlapping masks go to the lowest index. The quirk: this only works because the
masks store the foreground as 255 (the release writes them with ``torchvision.utils.save_image``);
masks stored as 0/1 would tie with the background plane and everything would silently become
background. slotbench keeps the rule but refuses such masks: a mask file whose largest value is
exactly 1 raises an error naming it (with 0/255 masks, the only valid kind, results are
identical). Ids are stored as merged (0..num_masks, stable through time); like the original,
the data loader compacts the ids present in a clip.

Also refused, each with an error naming the file: a missing or unreadable (corrupt, truncated)
frame or mask, a frame or mask of another size, a 16-bit, float or colour mask. (The original sets
PIL's ``LOAD_TRUNCATED_IMAGES`` and would silently accept a truncated frame.)

Resume (see :func:`slotbench.data.storage.write_split_resumable`): the files are read by index,
so a resumed split starts directly at the first unsaved video and reads nothing twice. It
resumes only from the same release folder (resolved path), the same video folder names and
the same dataset params.
``num_objects`` is the number of distinct non-zero ids in the merged video.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import frame_size
from .storage import DataError, write_split_resumable
from .subset import cut_and_resize

DEFAULT_SHARD_SIZE = 64
FRAME = "{t:08d}_image.png"
MASK = "{t:08d}_mask_{k:02d}.png"


def list_videos(split_dir: str | os.PathLike) -> list[str]:
    """Names of the video folders of a split, in the original's order (sorted ``glob('*/')`` paths)."""
    split_dir = Path(split_dir)
    names = [e.name for e in os.scandir(split_dir) if not e.name.startswith(".") and e.is_dir()]
    return sorted(names, key=lambda name: name + "/")


def merge_masks(masks: np.ndarray) -> np.ndarray:
    """Merge binary masks uint8 [K, H, W] into ids uint8 [H, W] exactly as the original does.

    Equal to ``np.concatenate([np.ones((1, H, W)), masks]).argmax(0)``: id ``k+1`` for the first
    mask ``k`` with the largest value at a pixel, 0 where every mask is <= 1.
    """
    if masks.ndim != 3 or masks.dtype != np.uint8:
        raise ValueError(f"masks must be uint8 [K, H, W], got {masks.dtype} {list(masks.shape)}")
    if masks.shape[0] > 255:
        raise ValueError(f"at most 255 masks fit uint8 ids, got {masks.shape[0]}")
    ids = (masks.argmax(axis=0) + 1).astype(np.uint8)
    ids[masks.max(axis=0) <= 1] = 0
    return ids


def _decode(path: Path, flags: int) -> np.ndarray:
    """``cv2.imdecode`` of the file at ``path`` (``[H, W]`` or ``[H, W, C]``, channels BGR(A));
    a missing, corrupt or truncated file is a :class:`DataError` naming it."""
    import cv2

    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except FileNotFoundError as err:
        raise DataError(f"{path}: missing") from err
    except OSError as err:  # a folder of that name, no permission, an I/O error
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from err
    try:
        image = cv2.imdecode(data, flags) if data.size else None
    except cv2.error as err:
        raise DataError(f"{path}: unreadable image ({err})") from err
    if image is None:
        raise DataError(f"{path}: unreadable image (OpenCV cannot decode it: corrupt, truncated or not an image)")
    return image


def _check_size(path: Path, image: np.ndarray, resolution: int) -> None:
    if image.shape[:2] != (resolution, resolution):
        raise DataError(f"{path}: {image.shape[1]}x{image.shape[0]} pixels, expected {resolution}x{resolution}")


def read_frame(path: Path, resolution: int) -> np.ndarray:
    """One frame as uint8 [R, R, 3] (RGB)."""
    import cv2

    image = _decode(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # BGR, 8 bits
    _check_size(path, image, resolution)
    return np.ascontiguousarray(image[..., ::-1])


def read_mask(path: Path, resolution: int) -> np.ndarray:
    """One binary mask as uint8 [R, R] grey values (foreground 255)."""
    import cv2

    image = _decode(path, cv2.IMREAD_UNCHANGED)  # grey [R, R], or BGR / BGRA [R, R, C] (palette expanded)
    _check_size(path, image, resolution)
    if image.dtype != np.uint8:
        raise DataError(f"{path}: {image.dtype} pixels, expected an 8-bit mask (grey, 1-bit, palette or RGB)")
    mask = image if image.ndim == 2 else image[..., 0]
    if image.ndim == 3 and image.shape[2] >= 3:  # colour or palette: must be grey (equal channels)
        if not (np.array_equal(mask, image[..., 1]) and np.array_equal(mask, image[..., 2])):
            raise DataError(f"{path}: a colour mask (its RGB channels differ); expected a grey binary mask")
    if mask.max() == 1:
        raise DataError(
            f"{path}: the mask stores its foreground as 1, not 255; the original's merge (argmax against an "
            "all-ones background plane) would turn such masks into background everywhere, so they are refused"
        )
    return np.ascontiguousarray(mask)


def read_video(folder: Path, video_len: int, resolution: int, num_masks: int
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """One video folder: (video uint8 [T,R,R,3], merged ids uint8 [T,R,R], num_objects)."""
    video = np.empty((video_len, resolution, resolution, 3), dtype=np.uint8)
    seg = np.empty((video_len, resolution, resolution), dtype=np.uint8)
    masks = np.empty((num_masks, resolution, resolution), dtype=np.uint8)
    for t in range(video_len):
        video[t] = read_frame(folder / FRAME.format(t=t), resolution)
        for k in range(num_masks):
            masks[k] = read_mask(folder / MASK.format(t=t, k=k), resolution)
        seg[t] = merge_masks(masks)
    num_objects = int(np.count_nonzero(np.bincount(seg.ravel(), minlength=256)[1:]))
    return video, seg, num_objects


def _split_dir(cfg: dict, split: str) -> Path:
    base = Path(cfg["release"]["path"])
    if not base.is_dir():
        raise DataError(
            f"{base}: release folder not found (dataset.release.path of {cfg['name']}); download the STEVE release "
            "archive (linked from SlotDiffusion's docs/data.md), extract it and point dataset.release.path at it"
        )
    split_dir = base / split
    if not split_dir.is_dir():
        found = sorted(e.name for e in os.scandir(base) if e.is_dir())
        raise DataError(f"{split_dir}: split folder not found (found: {', '.join(found) or 'nothing'})")
    return split_dir


def export_release(cfg: dict, root: str | Path, progress: bool = True,
                   shard_size: int = DEFAULT_SHARD_SIZE) -> dict[str, dict]:
    """Import every split of a ``source: release`` dataset under ``root`` (the staging folder); return
    the ``splits`` part of meta.json, which the caller (:func:`slotbench.data.export.export`) writes."""
    num_masks, video_len, resolution = cfg["release"]["num_masks"], cfg["video_len"], cfg["resolution"]
    if num_masks > 255:
        raise DataError(f"{cfg['name']}: release.num_masks = {num_masks}; at most 255 ids fit the uint8 storage")
    split_dirs = {split: _split_dir(cfg, split) for split in cfg["splits"]}  # fail before writing anything
    splits = {}
    for split, split_dir in split_dirs.items():
        names = list_videos(split_dir)
        if not names:
            raise DataError(f"{split_dir}: no video folders")
        source = {
            "source": "release",
            "path": str(split_dir.resolve()),
            "split": split,
            "videos_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
            "params": cfg,
        }

        def read(start: int, split_dir: Path = split_dir, names: list[str] = names
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
            for name in names[start:]:
                yield read_video(split_dir / name, video_len, resolution, num_masks)

        num_videos, read = cut_and_resize(cfg, len(names), read)
        splits[split] = write_split_resumable(
            root, split, num_videos, video_len, frame_size(cfg), source, read,
            shard_size=shard_size, progress=progress, desc=f"{cfg['name']} {split}",
        )
    return splits
