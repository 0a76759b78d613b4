"""MP4s to watch: the first ``eval.vis_videos`` test videos of a run, as the original's ``--save_video``.

Written under ``<run>/vis/``, the folder of ``model.pt`` (the original writes
``<dirname(weight)>/vis/``), named by the video's index in the split:

* ``{idx}_recon.mp4`` (``eval_recon``): side by side the input, the reconstruction, the
  segmentation overlaid on the input (slots relabelled to the ground-truth ids by Hungarian
  matching, so the colours are the report's), then one panel per slot with the input pixels that
  slot took (the rest white), ordered by the object it was matched to, under its colour;
* ``{idx}_comp.mp4`` (``eval_comp_gen``): the input and the video decoded from its composed slots.

A stage first removes its own earlier MP4s, so the folder holds the last run's. Codec MPEG-4
Part 2 (``mp4v``, which the ``opencv-python-headless`` wheel writes through its bundled FFmpeg),
8 frames per second as the original; VLC, mpv and QuickTime play it, most browsers do not. Small
videos are enlarged (:func:`slotbench.visualize.strip`) and frames padded with white to even
sides, which the encoder needs. Each file is written under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import paths
from ..io import TMP_PREFIX, atomic_path
from ..visualize import colour_ids, matched_segmentation, slot_layers, strip

FPS = 8.0
FOURCC = "mp4v"
#: Weight of the segmentation colours over the input in the overlay panel.
OVERLAY_ALPHA = 0.5


def prepare(checkpoint_path: str | os.PathLike, kind: str) -> Path:
    """``<run>/vis`` beside ``checkpoint_path``, with this stage's MP4s (``*_{kind}.mp4``, ``kind``
    ``recon`` or ``comp``) and their temporaries removed."""
    folder = Path(checkpoint_path).parent / Path(paths.VIS_DIR).name
    for stale in [*folder.glob(f"*_{kind}.mp4"), *folder.glob(f"{TMP_PREFIX}*_{kind}.mp4.*")]:
        stale.unlink()
    return folder


def write_mp4(path: str | os.PathLike, frames: np.ndarray) -> Path:
    """Write uint8 RGB ``[T, H, W, 3]`` as an ``mp4v`` MP4 at :data:`FPS` (padded to even sides), atomically.

    Raises:
        RuntimeError: OpenCV cannot open an ``mp4v`` writer (an OpenCV build without FFmpeg).
    """
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    path = Path(path)
    with atomic_path(path) as tmp:
        video_tmp = tmp.with_name(tmp.name + ".mp4")  # FFmpeg picks the container by the extension
        try:
            writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*FOURCC), FPS,
                                     (frames.shape[2], frames.shape[1]))
            if not writer.isOpened():
                raise RuntimeError(f"{path}: OpenCV {cv2.__version__} cannot write {FOURCC} MP4s (a build without "
                                   "FFmpeg? opencv-python-headless from PyPI has it)")
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV takes BGR
            writer.release()
            os.replace(video_tmp, tmp)
        finally:
            video_tmp.unlink(missing_ok=True)
    return path


def recon_panels(video: np.ndarray, recon: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                 num_slots: int) -> np.ndarray:
    """The ``{idx}_recon.mp4`` frames of one video: input, reconstruction, overlay, one panel per slot.

    Args:
        video, recon: uint8 RGB ``[T, H, W, 3]``.
        gt: ground-truth ids ``[T, H, W]`` (0 = background).
        pred: slot ids ``[T, H, W]`` in ``[0, num_slots)`` (``model.segment``).
    Returns:
        uint8 RGB ``[T, H', W', 3]`` (:func:`slotbench.visualize.strip`).
    """
    matched, slot_ids = matched_segmentation(gt, pred, num_slots)
    overlay = np.round((1 - OVERLAY_ALPHA) * video + OVERLAY_ALPHA * colour_ids(matched)).astype(np.uint8)
    layers = slot_layers(video, pred, slot_ids)
    tiles = [video, recon, overlay, *(layer for _, layer, _ in layers)]
    labels = ["input", "reconstruction", "segmentation", *(f"slot {slot}" for slot, _, _ in layers)]
    return strip(tiles, labels, [None, None, None, *(colour for _, _, colour in layers)])


def comp_panels(video: np.ndarray, composed: np.ndarray) -> np.ndarray:
    """The ``{idx}_comp.mp4`` frames of one video: its input and the video decoded from its
    composed slots (uint8 RGB ``[T, H, W, 3]`` each) -> ``[T, H', W', 3]``."""
    return strip([video, composed], ["input", "composed slots"])
