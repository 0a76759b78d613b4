"""The export stage: produce ``data/{dataset}/`` in the storage format from the dataset's source.

- ``source: synthetic``: generated in memory (:mod:`slotbench.data.synthetic`).
- ``source: tfds`` (MOVi-D/E): read with TensorFlow Datasets (:mod:`slotbench.data.movi_tfds`).
- ``source: release`` (MOVi-Solid/Tex): the extracted release folders (:mod:`slotbench.data.movi_release`).

Every export is written into a staging folder beside ``data/{dataset}/`` and swapped in only once
complete and verified (:mod:`slotbench.data.publish`), so the previous export stays readable until
then, whatever stops the new one. ``meta.json`` is written last and records the dataset params
(``params``) and their fingerprint (``params_fingerprint``), against which every stage that reads
the data checks the current params (:func:`slotbench.data.dataset.check_current`).

The MOVi exports are resumable: an interrupted run leaves ``{split}/.progress.json`` and the
temporary arrays in the staging folder, and the next run with the same source and params
continues where it stopped (see :func:`slotbench.data.storage.write_split_resumable`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import fingerprint, frame_size
from .publish import is_staged, publish, recover, staging_dir
from .storage import SplitWriter, write_meta
from .subset import num_kept, resize_video
from .synthetic import generate_split

SYNTHETIC_SPLITS = ("train", "validation", "test")


def export(dataset_cfg: dict, root: str | Path, progress: bool = True) -> dict:
    """Write every split of ``dataset_cfg`` and ``meta.json`` (last) into the staging folder of
    ``root``, then publish it as ``root``; return the metadata."""
    root = Path(root)
    source = dataset_cfg["source"]
    if source not in ("synthetic", "tfds", "release"):
        raise NotImplementedError(f"dataset.source '{source}' ({dataset_cfg['name']}): unknown source")
    recover(root)
    params_fingerprint = fingerprint(dataset_cfg)
    if not is_staged(root, params_fingerprint):
        staging = staging_dir(root)
        if source == "synthetic":
            shutil.rmtree(staging, ignore_errors=True)
        (staging / "meta.json").unlink(missing_ok=True)  # of other params: the staging folder is being rewritten
        splits, origin = _write_splits(dataset_cfg, staging, progress)
        meta = {
            "dataset": dataset_cfg["name"],
            "source": source,
            "resolution": frame_size(dataset_cfg),
            "video_len": dataset_cfg["video_len"],
            "splits": splits,
            "params": dataset_cfg,
            "params_fingerprint": params_fingerprint,
            "slotbench_version": __version__,
        }
        if origin:
            meta["origin"] = origin
        write_meta(staging, meta)
    return publish(root)


def _write_splits(cfg: dict, staging: Path, progress: bool) -> tuple[dict, dict]:
    """Write every split into ``staging``; return the ``splits`` and ``origin`` entries of meta.json."""
    if cfg["source"] == "synthetic":
        return {split: _export_synthetic_split(cfg, staging, split, index, progress)
                for index, split in enumerate(SYNTHETIC_SPLITS)}, {}
    if cfg["source"] == "tfds":
        from .movi_tfds import export_tfds, tfds_name

        return export_tfds(cfg, staging, progress=progress), {
            "tfds": tfds_name(cfg), "data_dir": cfg["tfds"]["data_dir"],
            "order": "TFDS default read order (shuffle_files=False), as the original",
            "pixels": "exact TFDS uint8 pixels (the original re-encodes frames as JPEG)"}
    from .movi_release import export_release

    return export_release(cfg, staging, progress=progress), {
        "release_path": str(Path(cfg["release"]["path"]).resolve()),
        "num_masks": cfg["release"]["num_masks"],
        "order": "video folders sorted as the original (sorted glob '*/')",
        "seg": "binary masks merged as the original (argmax after an all-ones background plane)"}


def _export_synthetic_split(cfg: dict, root: Path, split: str, index: int, progress: bool) -> dict:
    num_videos = num_kept(cfg, cfg["splits"][split])
    generator_cfg = {**cfg["synthetic"], "resolution": cfg["resolution"], "video_len": cfg["video_len"]}
    video, seg, num_objects = generate_split(generator_cfg, num_videos, seed=cfg["seed"] * 1000 + index,
                                             progress=progress)
    if frame_size(cfg) != cfg["resolution"]:
        resized = [resize_video(v, s, frame_size(cfg)) for v, s in zip(video, seg)]
        video, seg = np.stack([r[0] for r in resized]), np.stack([r[1] for r in resized])
        num_objects = np.array([r[2] for r in resized], dtype=num_objects.dtype)
    writer = SplitWriter(root, split, num_videos, cfg["video_len"], frame_size(cfg))
    try:
        writer.write(0, video, seg, num_objects)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
