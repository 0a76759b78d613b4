"""The one on-disk format of every dataset (synthetic, MOVi-D/E, MOVi-Solid/Tex).

Layout of ``data/{dataset}/``::

    meta.json                  written last: shapes, dtypes, byte sizes and SHA-256 of every file,
                               and its own SHA-256 (record_sha256)
    {split}/video.npy          uint8 [N, T, H, W, 3]   RGB frames
    {split}/seg.npy            uint8 [N, T, H, W]      instance ids, 0 = background, consistent through time
    {split}/num_objects.npy    int16 [N]               objects per video

The ``.npy`` files are read with memory mapping. Each is written under a temporary name and
renamed when complete; ``meta.json`` appears only after every split is in place, so a folder
without it is never mistaken for a finished export.

Resumable exports (MOVi: hours of reading) go through :func:`write_split_resumable`, which adds
one more file while a split is being written::

    {split}/.tmp-video.npy ...     the temporary memory-mapped arrays (fixed names)
    {split}/.progress.json         {"state": "writing", "written": n, "written_sha256": ...}:
                                   videos 0..n-1 are flushed to the temporary files and hash to
                                   written_sha256; or {"state": "complete", "split_meta": {...}}
                                   once the arrays are renamed into place

The progress record is rewritten (atomically) only after the temporary arrays are flushed, so
it never claims more than what is on disk. A later run resumes only when everything agrees:
the same source and params (the record's identity), temporary arrays of the right shape, and
the ``n`` videos in them still hashing to ``written_sha256`` (a complete split: its final files
still matching their SHA-256). Then it reopens the temporary arrays in ``r+`` mode
(:meth:`SplitWriter.resume`) and continues at video ``n``; otherwise the split starts afresh
and a warning says why. The export stage removes the progress records before it publishes
the export (:mod:`slotbench.data.publish`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..io import RECORD_DIGEST_KEY, TMP_PREFIX, differences, read_json, sha256_file, write_json, write_record

FORMAT = "slotbench-video-v1"
ARRAYS = ("video.npy", "seg.npy", "num_objects.npy")
PROGRESS_FILE = ".progress.json"
PROGRESS_FORMAT = "slotbench-export-progress-v1"

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A dataset file is missing, truncated or does not match ``meta.json``."""


class SplitWriter:
    """Stream videos of one split into memory-mapped ``.npy`` files, then publish them atomically.

    Args:
        root: the dataset folder ``data/{dataset}``.
        split: split name.
        num_videos, video_len, resolution: the array shapes ``[N, T, H, W(, 3)]``.

    The temporary files have fixed names (``{split}/.tmp-{array}.npy``, see :attr:`temp_files`),
    so an interrupted writer can be reopened with :meth:`resume`.
    """

    def __init__(self, root: str | os.PathLike, split: str, num_videos: int, video_len: int, resolution: int,
                 *, _reopen: bool = False):
        self.folder = Path(root) / split
        self.folder.mkdir(parents=True, exist_ok=True)
        n, t, r = num_videos, video_len, resolution
        self._shapes = {"video.npy": (n, t, r, r, 3), "seg.npy": (n, t, r, r), "num_objects.npy": (n,)}
        self._dtypes = {"video.npy": np.uint8, "seg.npy": np.uint8, "num_objects.npy": np.int16}
        self._tmp = {name: self.folder / f"{TMP_PREFIX}{name}" for name in ARRAYS}
        self._arrays = {}
        for name, shape in self._shapes.items():
            if _reopen:
                self._arrays[name] = self._open_existing(name, shape)
            else:
                self._arrays[name] = np.lib.format.open_memmap(self._tmp[name], mode="w+", dtype=self._dtypes[name],
                                                               shape=shape)
        self.num_videos = n

    @classmethod
    def resume(cls, root: str | os.PathLike, split: str, num_videos: int, video_len: int,
               resolution: int) -> SplitWriter:
        """Reopen the temporary files of an interrupted writer (same arguments) in ``r+`` mode.

        Their content is kept: the caller continues writing where its own progress record says
        the flushed data ends. Raises :class:`DataError` naming the file when a temporary file
        is missing, unreadable or of another shape or dtype.
        """
        return cls(root, split, num_videos, video_len, resolution, _reopen=True)

    def _open_existing(self, name: str, shape: tuple) -> np.memmap:
        path = self._tmp[name]
        if not path.is_file():
            raise DataError(f"{path}: temporary file missing, cannot resume")
        try:
            arr = np.lib.format.open_memmap(path, mode="r+")
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: unreadable temporary file, cannot resume ({err})") from err
        if arr.shape != shape or arr.dtype != np.dtype(self._dtypes[name]):
            raise DataError(f"{path}: {arr.dtype.name} {list(arr.shape)}, expected "
                            f"{np.dtype(self._dtypes[name]).name} {list(shape)}; cannot resume")
        return arr

    @property
    def temp_files(self) -> dict[str, str]:
        """The temporary file name (inside the split folder) of every array."""
        return {name: path.name for name, path in self._tmp.items()}

    def hash_written(self, count: int) -> hashlib._Hash:
        """SHA-256 of videos ``0 .. count-1`` as written (see :func:`_hash_video`), read back from the arrays."""
        digest = hashlib.sha256()
        for i in range(count):
            _hash_video(digest, self._arrays["video.npy"][i], self._arrays["seg.npy"][i],
                       self._arrays["num_objects.npy"][i])
        return digest

    def flush(self) -> None:
        """Write every array's dirty pages to disk (``msync``): what was written so far survives a crash."""
        for arr in self._arrays.values():
            arr.flush()

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


def _hash_video(digest: hashlib._Hash, video: np.ndarray, seg: np.ndarray, num_objects: np.integer) -> None:
    """Add one video (uint8 [T,H,W,3], uint8 [T,H,W], its int16 object count) to a running SHA-256."""
    for part in (video, seg, np.asarray(num_objects, dtype=np.int16)):
        digest.update(np.ascontiguousarray(part).tobytes())


def _progress_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / split / PROGRESS_FILE


def read_progress(root: str | os.PathLike, split: str) -> dict | None:
    """The progress record of a split being exported, or ``None`` when there is none (or it is unreadable)."""
    path = _progress_path(root, split)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError as err:
        log.warning("%s: ignored (%s); the split starts over", path, err)
        return None
    return record if isinstance(record, dict) and record.get("format") == PROGRESS_FORMAT else None


def clear_progress(root: str | os.PathLike, split: str) -> None:
    """Remove a split's progress record (call once ``meta.json`` is written, before publishing)."""
    _progress_path(root, split).unlink(missing_ok=True)


def write_split_resumable(
    root: str | os.PathLike,
    split: str,
    num_videos: int,
    video_len: int,
    resolution: int,
    source: dict,
    read: Callable[[int], Iterable[tuple[np.ndarray, np.ndarray, int]]],
    shard_size: int = 64,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Write one split from a stream of videos so that an interrupted run resumes; return its meta entry.

    Args:
        root, split, num_videos, video_len, resolution: as for :class:`SplitWriter`.
        source: a JSON-serialisable identity of what is read and how: where from (TFDS name,
            config and version, data_dir; a release path), the split, the dataset params. A
            progress record is used only when its ``source`` equals this one.
        read: ``read(start)`` yields ``(video uint8 [T,H,W,3], seg uint8 [T,H,W], num_objects)``
            for videos ``start, start+1, ...`` of the split, in order (already validated).
        shard_size: the temporary arrays are flushed and the progress record rewritten every
            ``shard_size`` videos. On an exception (including Ctrl-C) the videos completed so
            far are flushed and recorded as well, so only a hard kill loses up to
            ``shard_size - 1`` videos of work.
        progress: show a progress bar (videos, rate, ETA).

    Before resuming, what was already written is checked: the ``n`` videos in the temporary
    arrays must still hash to the record's ``written_sha256`` (read back once: a resume reads
    the written part of the split from disk, which is far cheaper than reading it from the
    source again). A split whose progress record says ``complete`` (an earlier run finished it
    but stopped before publishing) is not written again when its final files still match their
    SHA-256. Whatever does not match starts the split afresh, with a warning that says why. A
    source that yields fewer or more than ``num_videos`` videos raises :class:`DataError`.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    folder = Path(root) / split
    desc = desc or split
    identity = {"source": source, "num_videos": num_videos, "video_len": video_len, "resolution": resolution}
    record = read_progress(root, split)
    writer, start, digest = None, 0, hashlib.sha256()
    if record is not None:
        changed = differences({k: record.get(k) for k in identity}, identity)
        if changed:
            why = f"the interrupted export read another source or had other params ({changed})"
        elif record.get("state") == "complete":
            why = _changed_final_files(folder, record.get("split_meta"))
            if not why:
                log.warning("%s: already complete (%s), not written again", desc, _progress_path(root, split))
                return record["split_meta"]
        else:
            writer, start, digest, why = _reopen(root, split, identity, record)
        if writer is None:
            log.warning("%s: starting the split afresh: %s", desc, why)
        else:
            log.warning("%s: resuming at video %d of %d", desc, start, num_videos)
    if writer is None:
        shutil.rmtree(folder, ignore_errors=True)
        writer = SplitWriter(root, split, num_videos, video_len, resolution)

    def save(state: str, written: int, split_meta: dict | None = None) -> None:
        entry = {"format": PROGRESS_FORMAT, "state": state, **identity, "written": written,
                 "written_sha256": digest.hexdigest(), "shard_size": shard_size, "temp_files": writer.temp_files}
        if split_meta is not None:
            entry["split_meta"] = split_meta
        write_json(_progress_path(root, split), entry)

    save("writing", start)
    done = start
    bar = tqdm(total=num_videos, initial=start, desc=desc, unit="video", disable=not progress,
               dynamic_ncols=True, smoothing=0.05)
    try:
        for video, seg, count in read(start):
            if done >= num_videos:
                raise DataError(f"{desc}: the source holds more than the {num_videos} videos it announced")
            writer.write(done, video[None], seg[None], np.array([count], dtype=np.int16))
            _hash_video(digest, video, seg, count)
            done += 1
            bar.update(1)
            if done % shard_size == 0:
                writer.flush()
                save("writing", done)
        if done != num_videos:
            raise DataError(f"{desc}: the source ended after {done} videos, {num_videos} were announced")
    except BaseException:
        try:  # keep every completed video: the next run resumes here
            writer.flush()
            save("writing", done)
        except Exception as err:  # noqa: BLE001  (never hide the original error)
            log.warning("%s: could not record progress (%s)", desc, err)
        raise
    finally:
        bar.close()
    split_meta = writer.finish()
    save("complete", num_videos, split_meta)
    return split_meta


def _reopen(root: str | os.PathLike, split: str, identity: dict, record: dict
            ) -> tuple[SplitWriter | None, int, hashlib._Hash, str]:
    """Reopen the temporary arrays of an interrupted split whose record has this ``identity``:
    ``(writer, videos written, their running SHA-256, "")``, or ``(None, 0, fresh hash, why not)``."""
    if record.get("state") != "writing":
        return None, 0, hashlib.sha256(), f"unknown state {record.get('state')!r} in {_progress_path(root, split)}"
    try:
        written = int(record["written"])
        if not 0 <= written <= identity["num_videos"]:
            raise ValueError(f"{written} videos written of {identity['num_videos']}")
        writer = SplitWriter.resume(root, split, identity["num_videos"], identity["video_len"], identity["resolution"])
    except (DataError, KeyError, TypeError, ValueError) as err:
        return None, 0, hashlib.sha256(), f"cannot resume ({err})"
    digest = writer.hash_written(written)
    if digest.hexdigest() != record.get("written_sha256"):
        writer.abort()
        return None, 0, hashlib.sha256(), (f"the {written} videos already written no longer hash to the SHA-256 "
                                           f"recorded in {_progress_path(root, split)} (changed or damaged since)")
    return writer, written, digest, ""


def _changed_final_files(folder: Path, split_meta: dict | None) -> str:
    """Why the final arrays of a split recorded as complete cannot be reused (``""``: they can)."""
    if not isinstance(split_meta, dict) or not isinstance(split_meta.get("files"), dict):
        return "its progress record holds no file list"
    for name in ARRAYS:
        info, path = split_meta["files"].get(name), folder / name
        if not isinstance(info, dict) or not path.is_file() or path.stat().st_size != info.get("bytes"):
            return f"{path} is missing or of another size than recorded"
        if sha256_file(path) != info.get("sha256"):
            return f"{path} no longer matches its recorded SHA-256"
    return ""


def write_meta(root: str | os.PathLike, meta: dict) -> None:
    """Write ``meta.json`` (call last, when every split is complete) with its own SHA-256
    (``record_sha256``, see :func:`slotbench.io.write_record`), so that a flipped bit in the
    metadata itself is caught like one in an array."""
    write_record(Path(root) / "meta.json", {"format": FORMAT, **meta})


def read_meta(root: str | os.PathLike) -> dict:
    """Read and check ``meta.json`` of a dataset folder."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the export stage first (slotbench export --dataset {Path(root).name})")
    try:
        meta = read_json(path)  # checks record_sha256 when present
    except ValueError as err:
        raise DataError(f"{err} (slotbench export --dataset {Path(root).name})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{path}: format {found!r}, expected {FORMAT!r}")
    if RECORD_DIGEST_KEY not in meta:
        raise DataError(f"{path}: no {RECORD_DIGEST_KEY} (written by an older slotbench, or by hand), so its "
                        f"content cannot be trusted: re-run the export stage (slotbench export --dataset "
                        f"{Path(root).name})")
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
            raise DataError(f"{path}: {arr.dtype.name} {list(arr.shape)}, "
                            f"meta.json says {info['dtype']} {info['shape']}")
        if verify_checksums and sha256_file(path) != info["sha256"]:
            raise DataError(f"{path}: SHA-256 differs from meta.json (the file is corrupt)")
        arrays[name] = arr
    return Split(video=arrays["video.npy"], seg=arrays["seg.npy"], num_objects=arrays["num_objects.npy"])
