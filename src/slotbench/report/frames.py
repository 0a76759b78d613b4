"""The frames the report shows for each evaluation video.

Input and ground truth come from the exported split; each model's segmentation is recomputed
from its checkpoint (``model.segment``, the same call as the ``eval_seg`` stage) and relabelled
to the ground-truth ids (:func:`slotbench.visualize.matched_segmentation`, Hungarian matching),
so an object keeps its colour across rows; the per-slot decomposition
(:func:`slotbench.visualize.slot_layers`) shows, for every slot, the input pixels that slot took.
Reconstructed and composed frames are read from the folders the ``eval_recon`` /
``eval_comp_gen`` stages wrote (``<run>/eval/{recon,comp}_vids/{idx}/{t}.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import restore_model
from ..data.dataset import VideoDataset, to_model_input
from ..runtime import select_device


def load_videos(data_root: str | Path, split: str, count: int | None) -> list[dict[str, np.ndarray]]:
    """The first ``count`` videos of ``split`` (``None``: every one): ``video`` uint8 ``[T, H, W, 3]``,
    ``seg`` int64 ``[T, H, W]`` (ids compacted, background 0) and ``index``."""
    dataset = VideoDataset(data_root, split, count)
    return [{k: v.numpy() if torch.is_tensor(v) else v for k, v in dataset[i].items()} for i in range(len(dataset))]


@torch.no_grad()
def predict_segments(state: dict, videos: list[dict], chunk_len: int, runtime: dict) -> tuple[list[np.ndarray], int]:
    """Slot ids ``[T, H, W]`` of every video by the model of a loaded ``model.pt``, and its number of slots."""
    device = select_device(runtime)
    model = restore_model(state).to(device).eval()
    preds = []
    for item in videos:
        video = to_model_input(torch.from_numpy(item["video"])[None].to(device))  # [1, T, 3, H, W]
        preds.append(model.segment(video, chunk_len)[0].cpu().numpy())
    return preds, int(model.num_slots)


def read_frames(folder: str | Path, num_frames: int) -> np.ndarray | None:
    """A saved frame folder ``{t}.png`` as uint8 ``[T, H, W, 3]``, or ``None`` when incomplete."""
    files = [Path(folder) / f"{t}.png" for t in range(num_frames)]
    if not all(f.is_file() for f in files):
        return None
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
