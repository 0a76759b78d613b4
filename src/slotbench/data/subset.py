"""A smaller export of the same source: the first ``dataset.max_videos`` videos of each split, their
frames resized to ``dataset.frame_size`` (what the ``tiny`` profile does to a MOVi dataset for a
smoke run; also a way to train at 64x64 from the 128x128 release).

Frames are resized with antialiased bilinear interpolation (a box average for integer
down-sampling factors, like the original's ``Resize`` on already-small frames), segmentations by
nearest neighbour, so ids stay ids; the object count is then what is left in the smaller frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from ..config import frame_size

#: ``read(start)`` yields ``(video uint8 [T,H,W,3], seg uint8 [T,H,W], num_objects)`` from video ``start`` on.
Reader = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray, int]]]


def num_kept(cfg: dict, num_videos: int) -> int:
    """How many of a split's ``num_videos`` videos the export keeps (``dataset.max_videos``)."""
    return min(num_videos, cfg.get("max_videos") or num_videos)


def resize_video(video: np.ndarray, seg: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``video`` uint8 ``[T,H,W,3]`` and ``seg`` uint8 ``[T,H,W]`` at ``size x size``; returns them and
    the number of object ids (non-zero) still present."""
    if video.shape[1:3] != (size, size):
        frames = torch.from_numpy(np.array(video)).permute(0, 3, 1, 2).float()
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        video = frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        ids = torch.from_numpy(np.array(seg))[:, None].float()
        seg = F.interpolate(ids, size=(size, size), mode="nearest")[:, 0].to(torch.uint8).numpy()
    num_objects = int(np.count_nonzero(np.bincount(seg.ravel(), minlength=256)[1:]))
    return video, seg, num_objects


def cut_and_resize(cfg: dict, num_videos: int, read: Reader) -> tuple[int, Reader]:
    """The number of videos kept of a split of ``num_videos`` and a reader that yields only those,
    resized to the frame size; ``read`` itself when neither ``max_videos`` nor ``frame_size`` is set."""
    kept, size = num_kept(cfg, num_videos), frame_size(cfg)
    if kept == num_videos and size == cfg["resolution"]:
        return num_videos, read

    def smaller(start: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for video, seg, num_objects in islice(read(start), kept - start):
            yield resize_video(video, seg, size) if size != cfg["resolution"] else (video, seg, num_objects)

    return kept, smaller
