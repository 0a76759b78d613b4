"""Export MOVi-D / MOVi-E from TensorFlow Datasets into the storage format (``source: tfds``).

What is read, and why (facts from the original, SlotDiffusion ``scripts/data_utils/download_movi.py``,
and from Kubric's ``challenges/movi`` builders; see ``/work/shared/reference``):

- The dataset ``{builder}/{R}x{R}:{version}`` (``movi_e/128x128:1.0.0``) opened with
  ``tfds.builder(name, data_dir=dataset.tfds.data_dir)``; the default ``data_dir`` is Kubric's
  public bucket ``gs://kubric-public/tfds``, or any local mirror of it.
- Every split listed in the params (``train``, ``validation``, ``test``), each read with
  ``builder.as_dataset(split, shuffle_files=False)`` and TFDS's default read options. That is the
  call behind the original's ``tfds.load(...)``, so videos come in the same order and video
  ``i`` here is the original's folder ``{i:08d}``. (TFDS interleaves 16 shard files by default;
  the order is deterministic, but it is not the order of the files on disk.)
- Only the features ``video`` (uint8 [T,R,R,3]) and ``segmentations`` (uint8 [T,R,R,1], 0 =
  background, instance ``k`` has id ``k+1``) are decoded (``tfds.decode.PartialDecoding``); the
  other features (depth, flows, normals, object coordinates, instances, camera, events) are
  read from disk by TFDS but never decoded.
- The pixels are stored exactly as TFDS returns them. The original re-encodes every frame as a
  JPEG (PIL default quality 75) before its models see it; slotbench does not.

Every record is validated before it is written (frame count, resolution, channels, dtypes, ids
in 0..255); an error names the split and the record index. ``num_objects`` is the number of
distinct non-zero ids in the video's segmentation (objects visible in at least one frame).

Resume (see :func:`slotbench.data.storage.write_split_resumable`): the arrays are flushed and
``{split}/.progress.json`` in the staging folder (:mod:`slotbench.data.publish`) rewritten
every ``shard_size`` videos and on any error. A second run with the same dataset params (TFDS
name, config, version, ``data_dir``: a mirror may hold another copy) continues at video ``n``
of the interrupted split with ``dataset.skip(n)`` on the same TFDS pipeline (so the order is
unchanged). What is read again: TFDS still reads the first ``n`` serialized records of the
split from ``data_dir`` (and, depending on TensorFlow's ``skip`` implementation, decodes their
video and segmentations) before discarding them inside tf.data; none of them reaches Python, is
validated or written again. Reading from the bucket is what costs, so a resumed run of a large
split is best pointed at a local mirror. Splits already completed are not read again at all.
Sub-split slicing (``train[n:]``) would skip whole shard files but changes TFDS's interleaved
order, so it is not used.

A config or version that ``data_dir`` does not hold is named by its params key
(``dataset.resolution``, ``dataset.tfds.version``) with the ones it does hold, rather than TFDS's
"dataset not found" and its list of every dataset TFDS knows.

TensorFlow and TensorFlow Datasets are an optional extra (``pip install 'slotbench[movi]'``),
imported only when a MOVi export runs, and quietly (:data:`QUIET_TF`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import frame_size
from .storage import DataError, write_split_resumable
from .subset import cut_and_resize

EXTRA = "pip install 'slotbench[movi]'"
PUBLIC_DATA_DIR = "gs://kubric-public/tfds"  # Kubric's public bucket (challenges/movi/README.md)
DEFAULT_SHARD_SIZE = 64
DECODED_FEATURES = {"video": True, "segmentations": True}  # tfds.decode.PartialDecoding spec
#: Set (unless already set) before TensorFlow is imported: its C++ start-up messages (oneDNN, CPU
#: instructions, CUDA drivers) are INFO or WARNING lines that an export does not need; errors stay.
#: Without oneDNN's custom operations TensorFlow prints nothing about them; the export only decodes
#: PNG frames, which they do not touch.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
CONFIG_NAME = re.compile(r"(\d+)x(\d+)")  # a MOVi builder config: the frame size, e.g. 128x128
VERSION_NAME = re.compile(r"\d+\.\d+\.\d+")


def import_tfds() -> Any:
    """Import ``tensorflow_datasets`` (lazily: it is an optional extra) without TensorFlow's start-up
    logging (:data:`QUIET_TF`; TFDS's Python warnings, e.g. deprecations inside TFDS, are hidden
    too, its errors are not); tests replace this function."""
    for key, value in QUIET_TF.items():
        os.environ.setdefault(key, value)
    try:
        import tensorflow  # noqa: F401  (tensorflow-datasets imports it only when a dataset is read)
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(
            f"exporting MOVi-D/E needs TensorFlow and TensorFlow Datasets, which are not installed ({err}); "
            f"install the optional extra: {EXTRA}"
        ) from err
    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS logs through absl's Python logger
    return tfds


def tfds_name(cfg: dict) -> str:
    """The TFDS dataset name with config and version, e.g. ``movi_e/128x128:1.0.0`` (as the original loads it)."""
    r, tf_cfg = cfg["resolution"], cfg["tfds"]
    return f"{tf_cfg['builder']}/{r}x{r}:{tf_cfg['version']}"


def _mirror_hint(cfg: dict) -> str:
    tf_cfg, r = cfg["tfds"], cfg["resolution"]
    data_dir = tf_cfg["data_dir"].rstrip("/")
    builder, sub = tf_cfg["builder"], f"{tf_cfg['builder']}/{r}x{r}/{tf_cfg['version']}"
    files = "dataset_info.json, features.json and the tfrecord shards"
    if "://" in data_dir:
        return (
            f"Check that {data_dir!r} can be reached from this machine (Google Cloud Storage needs network "
            f"access). Otherwise copy {data_dir}/{sub}/ ({files}) on a machine that can reach it, e.g. "
            f"`gsutil -m cp -r {data_dir}/{builder}/{r}x{r} MIRROR/{builder}/`, so that MIRROR/{sub}/ holds the "
            f"files, and set `dataset.tfds.data_dir: MIRROR` in params/datasets/{cfg['name']}.yaml"
        )
    return (
        f"Check that the local mirror {data_dir}/{sub}/ exists and holds {files}, copied from "
        f"{PUBLIC_DATA_DIR}/{sub}/ (e.g. `gsutil -m cp -r {PUBLIC_DATA_DIR}/{builder}/{r}x{r} {data_dir}/{builder}/`), "
        f"or set `dataset.tfds.data_dir: {PUBLIC_DATA_DIR}` in params/datasets/{cfg['name']}.yaml on a machine "
        "with network access"
    )


def _brief(err: BaseException, limit: int = 600) -> str:
    """``Type: message``, shortened (TFDS's DatasetNotFoundError lists every dataset it knows)."""
    text = str(err).strip()
    if len(text) > limit:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = " ... ".join(lines[:1] + lines[-3:]) if len(lines) > 4 else text[:limit] + " ..."
    return f"{type(err).__name__}: {text}"


def _listing(tfds: Any, folder: str, pattern: re.Pattern) -> list[str]:
    """The names in a folder of ``data_dir`` (local or ``gs://``) matching ``pattern``; none if it cannot be listed."""
    try:
        names = [p.name.rstrip("/") for p in tfds.core.Path(folder).iterdir()]
    except Exception:  # noqa: BLE001  (missing, unreachable: the caller falls back to TFDS's own error)
        return []
    return sorted((n for n in names if pattern.fullmatch(n)), key=lambda n: [int(x) for x in re.findall(r"\d+", n)])


def _not_held(tfds: Any, cfg: dict) -> str | None:
    """When ``data_dir`` holds the builder but not the config (``dataset.resolution``) or the version
    (``dataset.tfds.version``) the params ask for: an error naming that key and what is there."""
    tf_cfg, r = cfg["tfds"], cfg["resolution"]
    folder = f"{tf_cfg['data_dir'].rstrip('/')}/{tf_cfg['builder']}"
    where = f"the TFDS dataset {tf_cfg['builder']} in data_dir {tf_cfg['data_dir']!r}"
    configs = _listing(tfds, folder, CONFIG_NAME)
    if configs and f"{r}x{r}" not in configs:
        sizes = [m[1] for m in map(CONFIG_NAME.fullmatch, configs) if m[1] == m[2]]
        return (f"{cfg['name']}: dataset.resolution: {r}, but {where} has no config {r}x{r}; it has "
                f"{', '.join(configs)} (dataset.resolution: {' or '.join(sizes) or 'none fits'})")
    versions = _listing(tfds, f"{folder}/{r}x{r}", VERSION_NAME) if configs else []
    if versions and tf_cfg["version"] not in versions:
        return (f"{cfg['name']}: dataset.tfds.version: {tf_cfg['version']}, but {where} has no version "
                f"{tf_cfg['version']} of {r}x{r}; it has {', '.join(versions)}")
    return None


def open_builder(tfds: Any, cfg: dict) -> Any:
    """``tfds.builder(name, data_dir=...)``, with an error saying what could not be reached and what to do."""
    name, data_dir = tfds_name(cfg), cfg["tfds"]["data_dir"]
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        available = list(builder.info.splits.keys())
    except ImportError as err:
        raise DataError(f"{cfg['name']}: opening {name} needs a module that is not installed ({err}); "
                        f"install the optional extra: {EXTRA}") from err
    except Exception as err:  # TFDS / tf.io.gfile raise many types (DatasetNotFoundError, tf.errors.*, OSError)
        raise DataError(_not_held(tfds, cfg) or (
            f"{cfg['name']}: could not open the TFDS dataset {name} in data_dir {data_dir!r} "
            f"({_brief(err)}). {_mirror_hint(cfg)}"
        )) from err
    if not available:  # e.g. a builder class registered earlier in this process, pointed at an empty data_dir
        raise DataError(f"{cfg['name']}: no prepared dataset {name} (no splits) in data_dir {data_dir!r}. "
                        f"{_mirror_hint(cfg)}")
    missing = [s for s in cfg["splits"] if s not in available]
    if missing:
        raise DataError(f"{cfg['name']}: {name} in {data_dir!r} has no split {', '.join(map(repr, missing))} "
                        f"(available: {', '.join(available)})")
    return builder


def check_record(record: Any, split: str, index: int, video_len: int, resolution: int
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate one TFDS record; return (video uint8 [T,R,R,3], seg uint8 [T,R,R], num_objects).

    Raises :class:`DataError` naming the split and the record index.
    """
    where = f"split {split!r}, record {index}"
    if not isinstance(record, dict) or "video" not in record or "segmentations" not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: expected the features 'video' and 'segmentations', got {keys}")
    video, seg = np.asarray(record["video"]), np.asarray(record["segmentations"])
    for key, arr, channels in (("video", video, 3), ("segmentations", seg, 1)):
        if arr.ndim != 4:
            raise DataError(f"{where}: {key} has shape {list(arr.shape)}, expected [{video_len}, {resolution}, "
                            f"{resolution}, {channels}]")
        if arr.shape[0] != video_len:
            raise DataError(f"{where}: {key} has {arr.shape[0]} frames, expected video_len = {video_len}")
        if arr.shape[1:3] != (resolution, resolution):
            raise DataError(f"{where}: {key} frames are {arr.shape[1]}x{arr.shape[2]}, expected "
                            f"{resolution}x{resolution}")
        if arr.shape[3] != channels:
            raise DataError(f"{where}: {key} has {arr.shape[3]} channels, expected {channels}")
    if video.dtype != np.uint8:
        raise DataError(f"{where}: video has dtype {video.dtype}, expected uint8")
    if not np.issubdtype(seg.dtype, np.integer):
        raise DataError(f"{where}: segmentations have dtype {seg.dtype}, expected an integer type")
    if seg.dtype != np.uint8:
        low, high = int(seg.min()), int(seg.max())
        if low < 0 or high > 255:
            raise DataError(f"{where}: segmentation ids span {low}..{high}, expected 0..255")
    seg = seg[..., 0].astype(np.uint8, copy=False)
    num_objects = int(np.count_nonzero(np.bincount(seg.ravel(), minlength=256)[1:]))
    return video, seg, num_objects


def _records(tfds: Any, builder: Any, cfg: dict, split: str, start: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Validated videos ``start, start+1, ...`` of a split, in TFDS's default order."""
    name = tfds_name(cfg)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders=tfds.decode.PartialDecoding(DECODED_FEATURES))
        if start:
            ds = ds.skip(start)
        iterator = iter(tfds.as_numpy(ds))
    except Exception as err:
        raise DataError(f"{cfg['name']}: could not read split {split!r} of {name} "
                        f"({_brief(err)}). {_mirror_hint(cfg)}") from err
    index = start
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # network or file errors inside tf.data
            raise DataError(
                f"{cfg['name']}: reading split {split!r}, record {index} of {name} failed "
                f"({_brief(err)}). The videos before it are saved: run the export again to resume. "
                f"{_mirror_hint(cfg)}"
            ) from err
        yield check_record(record, split, index, cfg["video_len"], cfg["resolution"])
        index += 1


def export_tfds(cfg: dict, root: str | Path, progress: bool = True,
                shard_size: int = DEFAULT_SHARD_SIZE) -> dict[str, dict]:
    """Export every split of a ``source: tfds`` dataset under ``root`` (the staging folder); return
    the ``splits`` part of meta.json, which the caller (:func:`slotbench.data.export.export`) writes.

    The number of videos of each split comes from ``builder.info.splits[split].num_examples``. A
    split resumes only with the same dataset params, which name the TFDS dataset, its config and
    version, and ``data_dir``.
    """
    tfds = import_tfds()
    builder = open_builder(tfds, cfg)
    name = tfds_name(cfg)
    splits = {}
    for split in cfg["splits"]:
        num_videos = int(builder.info.splits[split].num_examples)
        if num_videos < 1:
            raise DataError(f"{cfg['name']}: split {split!r} of {name} has no examples")
        source = {"source": "tfds", "split": split, "params": cfg}  # params: TFDS name, config, version, data_dir
        num_videos, read = cut_and_resize(cfg, num_videos,
                                          lambda start, split=split: _records(tfds, builder, cfg, split, start))
        splits[split] = write_split_resumable(
            root, split, num_videos, cfg["video_len"], frame_size(cfg), source, read,
            shard_size=shard_size, progress=progress, desc=f"{cfg['name']} {split}",
        )
    return splits
