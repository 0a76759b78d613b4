"""The export stage: produce ``data/{dataset}/`` in the storage format from the dataset's source."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import __version__
from ..config import fingerprint
from .storage import SplitWriter, write_meta
from .synthetic import generate_split

SYNTHETIC_SPLITS = ("train", "validation", "test")


def export(dataset_cfg: dict, root: str | Path, progress: bool = True) -> dict:
    """Write every split of ``dataset_cfg`` under ``root`` and ``meta.json`` last; return the metadata."""
    root = Path(root)
    source = dataset_cfg["source"]
    if source != "synthetic":
        raise NotImplementedError(
            f"dataset.source '{source}' ({dataset_cfg['name']}): the MOVi export/import is not implemented yet; "
            "only the synthetic datasets can be exported in this version"
        )
    (root / "meta.json").unlink(missing_ok=True)  # the folder is incomplete until meta.json is rewritten
    splits = {}
    for index, split in enumerate(SYNTHETIC_SPLITS):
        shutil.rmtree(root / split, ignore_errors=True)
        splits[split] = _export_synthetic_split(dataset_cfg, root, split, index, progress)
    meta = {
        "dataset": dataset_cfg["name"],
        "source": source,
        "resolution": dataset_cfg["resolution"],
        "video_len": dataset_cfg["video_len"],
        "splits": splits,
        "params_fingerprint": fingerprint(dataset_cfg),
        "slotbench_version": __version__,
    }
    write_meta(root, meta)
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
