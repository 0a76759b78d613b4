"""PyTorch datasets over the storage format: training clips and full-length evaluation videos.

Items hold uint8 tensors (cheap to move); :func:`to_model_input` scales them on the device to
the [-1, 1] range the original uses (ToTensor then Normalize(mean=0.5, std=0.5)).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..config import fingerprint
from ..io import differences
from .storage import DataError, open_split, read_meta


def to_model_input(video: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, T, H, W, 3]`` in 0..255 -> float ``[B, T, 3, H, W]`` in [-1, 1] (x / 127.5 - 1)."""
    return video.permute(0, 1, 4, 2, 3).float().div_(127.5).sub_(1.0)


def compact_ids(seg: np.ndarray) -> np.ndarray:
    """Relabel the ids present in ``seg`` to 0..K-1 in increasing order, as the original does per clip.

    The smallest present id becomes 0 (background when the clip has background pixels).
    """
    _, inverse = np.unique(seg, return_inverse=True)
    return inverse.reshape(seg.shape).astype(np.int64)


def check_compatible(root: str | os.PathLike, resolution: int, video_len: int) -> dict:
    """Refuse a dataset whose resolution or frame count differs from the configuration."""
    meta = read_meta(root)
    if meta["resolution"] != resolution or meta["video_len"] != video_len:
        raise DataError(
            f"{root}/meta.json: data is {meta['video_len']} frames of {meta['resolution']}x{meta['resolution']}, "
            f"the configuration expects {video_len} frames of {resolution}x{resolution}"
        )
    return meta


def check_current(root: str | os.PathLike, dataset_cfg: dict) -> dict:
    """The export's ``meta.json`` when it was made from ``dataset_cfg``, the dataset section the
    params give now; otherwise :class:`DataError`, one line naming what changed and the command that
    re-exports. Every stage that reads the data calls this first (the command line before the stage
    starts, :func:`slotbench.preflight.check_inputs`; training and the tokenizer again in the loop),
    so that data exported with other params (a failed re-export keeps the previous one, see
    :mod:`slotbench.data.publish`) is never used."""
    meta = read_meta(root)
    if meta.get("params_fingerprint") != fingerprint(dataset_cfg):
        changed = (f"exported -> now: {differences(meta['params'], dataset_cfg, 'dataset.')}" if "params" in meta
                   else "its params fingerprint differs")
        raise DataError(f"{root}/meta.json: stale export, made with other dataset params than the current ones "
                        f"({changed}); re-export with `slotbench export --dataset {dataset_cfg['name']}`")
    return meta


def validation_split(meta: dict) -> str:
    """The split that training validates on: ``validation`` where the export has one, else
    ``test`` (MOVi-Solid/Tex: the release's val folder has no masks, so the original validates on
    the test split too)."""
    return "validation" if "validation" in meta["splits"] else "test"


class ClipDataset(Dataset):
    """Every window of ``n_sample_frames`` frames spaced ``frame_offset`` apart, of every video.

    Item: ``{"video": uint8 [T', H, W, 3], "index": video index, "start": first frame}``.
    With 24-frame videos, 3 frames and offset 1 this gives 22 clips per video (the original's train set).
    """

    def __init__(self, root: str | os.PathLike, split: str, n_sample_frames: int, frame_offset: int,
                 with_seg: bool = False, verify_checksums: bool = False):
        self.split = open_split(root, split, verify_checksums=verify_checksums)
        self.n_sample_frames, self.frame_offset, self.with_seg = n_sample_frames, frame_offset, with_seg
        video_len = self.split.video.shape[1]
        span = (n_sample_frames - 1) * frame_offset + 1
        if span > video_len:
            raise DataError(f"{root}/{split}: clips span {span} frames but videos have {video_len}")
        self.starts_per_video = video_len - span + 1

    def __len__(self) -> int:
        return len(self.split) * self.starts_per_video

    def __getitem__(self, item: int) -> dict:
        index, start = divmod(item, self.starts_per_video)
        frames = slice(start, start + (self.n_sample_frames - 1) * self.frame_offset + 1, self.frame_offset)
        out = {"video": torch.from_numpy(np.array(self.split.video[index, frames])),
               "index": index, "start": start}
        if self.with_seg:
            out["seg"] = torch.from_numpy(compact_ids(self.split.seg[index, frames]))
        return out


class VideoDataset(Dataset):
    """Full-length videos for evaluation, each once, in storage order.

    Item: ``{"video": uint8 [T, H, W, 3], "seg": int64 [T, H, W] (ids compacted per video), "index": int}``.
    """

    def __init__(self, root: str | os.PathLike, split: str, num_videos: int | None = None,
                 verify_checksums: bool = False):
        self.split = open_split(root, split, verify_checksums=verify_checksums)
        total = len(self.split)
        self.num_videos = total if num_videos is None else min(num_videos, total)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict:
        return {"video": torch.from_numpy(np.array(self.split.video[index])),
                "seg": torch.from_numpy(compact_ids(self.split.seg[index])),
                "index": index}


class StepBatchSampler(Sampler[list[int]]):
    """Batches of a seeded shuffle, addressed by global step, so training resumes mid-epoch exactly.

    Step ``k`` uses epoch ``k // L`` (``L = num_items // batch_size``, last partial batch dropped) and
    the ``k % L``-th slice of that epoch's permutation, drawn from ``seed`` and the epoch number.
    Iteration yields the batches of steps ``start_step .. total_steps - 1``.

    Under data parallelism the global batch of a step is cut into ``parts`` equal micro-batches
    and this sampler yields only its own ``micro_batches`` consecutive ones per step, starting at
    part ``first_part`` (rank ``r`` with ``a`` accumulation steps: ``first_part = r * a``). The
    union over processes is the single-process batch whatever the number of processes.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int, total_steps: int,
                 parts: int = 1, first_part: int = 0, micro_batches: int = 1):
        self.steps_per_epoch = num_items // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"{num_items} training items are fewer than one batch of {batch_size}")
        if batch_size % parts or not 0 <= first_part <= parts - micro_batches:
            raise ValueError(f"cannot take micro-batches {first_part}..{first_part + micro_batches - 1} "
                             f"of a batch of {batch_size} cut into {parts} equal parts")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.micro_size, self.first_part, self.micro_batches = batch_size // parts, first_part, micro_batches

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=gen)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for step in range(self.start_step, self.total_steps):
            e, k = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, self._permutation(e)
            batch = perm[k * self.batch_size:(k + 1) * self.batch_size]
            for part in range(self.first_part, self.first_part + self.micro_batches):
                yield batch[part * self.micro_size:(part + 1) * self.micro_size].tolist()

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.micro_batches
