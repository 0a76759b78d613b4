"""The one on-disk format of every dataset (synthetic, MOVi-D/E, MOVi-Solid/Tex).

Layout of ``data/{dataset}/``::

    meta.json                  written last: shapes, dtypes, byte sizes and SHA-256 of every file
    {split}/video.npy          uint8 [N, T, H, W, 3]   RGB frames
    {split}/seg.npy            uint8 [N, T, H, W]      instance ids, 0 = background, consistent through time
    {split}/num_objects.npy    int16 [N]               objects per video

The ``.npy`` files are read with memory mapping. Each is written under a temporary name and
renamed when complete; ``meta.json`` appears only after every split is in place, so a folder
without it is never mistaken for a finished export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import TMP_PREFIX, read_json, sha256_file, write_json

FORMAT = "slotbench-video-v1"
ARRAYS = ("video.npy", "seg.npy", "num_objects.npy")


class DataError(ValueError):
    """A dataset file is missing, truncated or does not match ``meta.json``."""


class SplitWriter:
    """Stream videos of one split into memory-mapped ``.npy`` files, then publish them atomically.

    Args:
        root: the dataset folder ``data/{dataset}``.
        split: split name.
        num_videos, video_len, resolution: the array shapes ``[N, T, H, W(, 3)]``.
    """

    def __init__(self, root: str | os.PathLike, split: str, num_videos: int, video_len: int, resolution: int):
        self.folder = Path(root) / split
        self.folder.mkdir(parents=True, exist_ok=True)
        n, t, r = num_videos, video_len, resolution
        self._shapes = {"video.npy": (n, t, r, r, 3), "seg.npy": (n, t, r, r), "num_objects.npy": (n,)}
        self._dtypes = {"video.npy": np.uint8, "seg.npy": np.uint8, "num_objects.npy": np.int16}
        self._tmp = {name: self.folder / f"{TMP_PREFIX}{name}" for name in ARRAYS}
        self._arrays = {
            name: np.lib.format.open_memmap(self._tmp[name], mode="w+", dtype=self._dtypes[name], shape=shape)
            for name, shape in self._shapes.items()
        }
        self.num_videos = n

    def write(self, start: int, video: np.ndarray, seg: np.ndarray, num_objects: np.ndarray) -> None:
        """Write videos ``start .. start+len(video)-1``: video uint8 [n,T,H,W,3], seg [n,T,H,W], num_objects [n]."""
        stop = start + len(video)
        for name, arr in (("video.npy", video), ("seg.npy", seg), ("num_objects.npy", num_objects)):
            expected = (len(video),) + self._shapes[name][1:]
            if arr.shape != expected:
                raise DataError(f"{self.folder / name}: chunk of shape {arr.shape}, expected {expected}")
            if name != "num_objects.npy" and (arr.dtype != np.uint8):
                raise DataError(f"{self.folder / name}: dtype {arr.dtype}, expected uint8")
            self._arrays[name][start:stop] = arr

    def finish(self) -> dict:
        """Flush, rename into place and return this split's entry of ``meta.json``."""
        files = {}
        for arr in self._arrays.values():
            arr.flush()
        self._arrays.clear()
        for name in ARRAYS:
            final = self.folder / name
            os.replace(self._tmp[name], final)
            files[name] = {
                "shape": list(self._shapes[name]),
                "dtype": np.dtype(self._dtypes[name]).name,
                "bytes": final.stat().st_size,
                "sha256": sha256_file(final),
            }
        counts = np.load(self.folder / "num_objects.npy")
        return {
            "num_videos": self.num_videos,
            "num_objects": {"min": int(counts.min()), "max": int(counts.max()), "mean": float(counts.mean())},
            "files": files,
        }

    def abort(self) -> None:
        """Remove the temporary files (after an error)."""
        self._arrays.clear()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)


def write_meta(root: str | os.PathLike, meta: dict) -> None:
    """Write ``meta.json`` (call last, when every split is complete)."""
    write_json(Path(root) / "meta.json", {"format": FORMAT, **meta})


def read_meta(root: str | os.PathLike) -> dict:
    """Read and check ``meta.json`` of a dataset folder."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the export stage first (slotbench export --dataset {Path(root).name})")
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


@dataclass(frozen=True)
class Split:
    """Memory-mapped arrays of one split: video uint8 [N,T,H,W,3], seg uint8 [N,T,H,W], num_objects int16 [N]."""

    video: np.ndarray
    seg: np.ndarray
    num_objects: np.ndarray

    def __len__(self) -> int:
        return len(self.video)


def open_split(root: str | os.PathLike, split: str, verify_checksums: bool = False) -> Split:
    """Open one split with memory mapping, checking every file against ``meta.json``.

    A missing, truncated or mismatched file raises :class:`DataError` naming it. With
    ``verify_checksums`` the SHA-256 of every file is recomputed as well (a full read).
    """
    root = Path(root)
    meta = read_meta(root)
    if split not in meta["splits"]:
        raise DataError(f"{root / 'meta.json'}: no split {split!r} (available: {', '.join(meta['splits'])})")
    arrays = {}
    for name, info in meta["splits"][split]["files"].items():
        path = root / split / name
        if not path.is_file():
            raise DataError(f"{path}: missing (listed in {root / 'meta.json'})")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise DataError(f"{path}: {size} bytes, meta.json says {info['bytes']} (truncated or replaced?)")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err
        if list(arr.shape) != info["shape"] or arr.dtype.name != info["dtype"]:
            raise DataError(f"{path}: {arr.dtype.name} {list(arr.shape)}, meta.json says {info['dtype']} {info['shape']}")
        if verify_checksums and sha256_file(path) != info["sha256"]:
            raise DataError(f"{path}: SHA-256 differs from meta.json (the file is corrupt)")
        arrays[name] = arr
    return Split(video=arrays["video.npy"], seg=arrays["seg.npy"], num_objects=arrays["num_objects.npy"])
