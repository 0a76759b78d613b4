"""The export stage: produce ``data/{dataset}/`` in the storage format from the dataset's source.

- ``source: synthetic``: generated in memory (:mod:`slotbench.data.synthetic`), always rewritten.
- ``source: tfds`` (MOVi-D/E): read with TensorFlow Datasets (:mod:`slotbench.data.movi_tfds`).
- ``source: release`` (MOVi-Solid/Tex): the extracted release folders (:mod:`slotbench.data.movi_release`).

The MOVi exports are resumable: an interrupted run leaves ``{split}/.progress.json`` and the
temporary arrays, and the next run continues where it stopped (see
:func:`slotbench.data.storage.write_split_resumable`). ``meta.json`` is always written last,
then the progress records are removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import __version__
from ..config import fingerprint
from .storage import SplitWriter, clear_progress, write_meta
from .synthetic import generate_split

SYNTHETIC_SPLITS = ("train", "validation", "test")


def export(dataset_cfg: dict, root: str | Path, progress: bool = True) -> dict:
    """Write every split of ``dataset_cfg`` under ``root`` and ``meta.json`` last; return the metadata."""
    root = Path(root)
    source = dataset_cfg["source"]
    if source not in ("synthetic", "tfds", "release"):
        raise NotImplementedError(f"dataset.source '{source}' ({dataset_cfg['name']}): unknown source")
    origin = {}
    if source == "synthetic":
        (root / "meta.json").unlink(missing_ok=True)  # the folder is incomplete until meta.json is rewritten
        splits = {}
        for index, split in enumerate(SYNTHETIC_SPLITS):
            shutil.rmtree(root / split, ignore_errors=True)
            splits[split] = _export_synthetic_split(dataset_cfg, root, split, index, progress)
    elif source == "tfds":
        from .movi_tfds import export_tfds, tfds_name

        splits = export_tfds(dataset_cfg, root, progress=progress)
        origin = {"tfds": tfds_name(dataset_cfg), "data_dir": dataset_cfg["tfds"]["data_dir"],
                  "order": "TFDS default read order (shuffle_files=False), as the original",
                  "pixels": "exact TFDS uint8 pixels (the original re-encodes frames as JPEG)"}
    else:
        from .movi_release import export_release

        splits = export_release(dataset_cfg, root, progress=progress)
        origin = {"release_path": str(Path(dataset_cfg["release"]["path"]).resolve()),
                  "num_masks": dataset_cfg["release"]["num_masks"],
                  "order": "video folders sorted as the original (sorted glob '*/')",
                  "seg": "binary masks merged as the original (argmax after an all-ones background plane)"}
    meta = {
        "dataset": dataset_cfg["name"],
        "source": source,
        "resolution": dataset_cfg["resolution"],
        "video_len": dataset_cfg["video_len"],
        "splits": splits,
        "params_fingerprint": fingerprint(dataset_cfg),
        "slotbench_version": __version__,
    }
    if origin:
        meta["origin"] = origin
    write_meta(root, meta)
    for split in splits:
        clear_progress(root, split)
    return meta


def _export_synthetic_split(cfg: dict, root: Path, split: str, index: int, progress: bool) -> dict:
    num_videos = cfg["splits"][split]
    generator_cfg = {**cfg["synthetic"], "resolution": cfg["resolution"], "video_len": cfg["video_len"]}
    video, seg, num_objects = generate_split(generator_cfg, num_videos, seed=cfg["seed"] * 1000 + index,
                                             progress=progress)
    writer = SplitWriter(root, split, num_videos, cfg["video_len"], cfg["resolution"])
    try:
        writer.write(0, video, seg, num_objects)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
