"""The storage format: round trip, atomic writes, and errors naming the bad file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slotbench.data.storage import DataError, SplitWriter, open_split, read_meta, write_meta
from slotbench.io import RECORD_DIGEST_KEY, write_record


def _write(root, n=3, t=4, r=8, seed=0):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (n, t, r, r, 3), dtype=np.uint8)
    seg = rng.integers(0, 4, (n, t, r, r), dtype=np.uint8)
    counts = np.array([3] * n, dtype=np.int16)
    writer = SplitWriter(root, "train", n, t, r)
    writer.write(0, video[:2], seg[:2], counts[:2])
    writer.write(2, video[2:], seg[2:], counts[2:])
    meta = {"dataset": "x", "source": "test", "resolution": r, "video_len": t, "splits": {"train": writer.finish()}}
    write_meta(root, meta)
    return video, seg


def test_round_trip_memory_mapped(tmp_path):
    video, seg = _write(tmp_path)
    split = open_split(tmp_path, "train", verify_checksums=True)
    assert isinstance(split.video, np.memmap)
    np.testing.assert_array_equal(split.video, video)
    np.testing.assert_array_equal(split.seg, seg)
    meta = read_meta(tmp_path)
    assert meta["splits"]["train"]["files"]["video.npy"]["shape"] == [3, 4, 8, 8, 3]
    assert meta["splits"]["train"]["num_objects"] == {"min": 3, "max": 3, "mean": 3.0}
    assert not list(tmp_path.rglob(".tmp-*")), "temporary files left behind"


def test_truncated_file_is_named(tmp_path):
    _write(tmp_path)
    path = tmp_path / "train" / "video.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train/video.npy: .* bytes, meta.json says"):
        open_split(tmp_path, "train")


def test_bit_flip_detected_by_checksum(tmp_path):
    _write(tmp_path)
    path = tmp_path / "train" / "seg.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    open_split(tmp_path, "train")  # sizes still match
    with pytest.raises(DataError, match=r"train/seg.npy: SHA-256 differs"):
        open_split(tmp_path, "train", verify_checksums=True)


@pytest.mark.parametrize("how", ["flip-a-digit", "edit-and-keep-digest", "drop-digest", "truncate"])
def test_meta_json_itself_is_checked(how, tmp_path):
    """meta.json carries its own SHA-256: a flipped bit in a recorded size or digest, an edit, a
    missing digest (older or hand-made file) or a cut file is refused, naming meta.json."""
    _write(tmp_path)
    path = tmp_path / "meta.json"
    text = path.read_text()
    if how == "flip-a-digit":  # one bit of the recorded byte size of video.npy: 2 -> 3, or the like
        size = str(read_meta(tmp_path)["splits"]["train"]["files"]["video.npy"]["bytes"])
        at = text.index(f'"bytes": {size}') + len('"bytes": ')
        text = text[:at] + chr(ord(text[at]) ^ 0x01) + text[at + 1:]
    elif how == "edit-and-keep-digest":
        text = text.replace('"source": "test"', '"source": "tset"')
    elif how == "drop-digest":
        meta = json.loads(text)
        del meta[RECORD_DIGEST_KEY]
        text = json.dumps(meta)
    else:
        text = text[: len(text) // 2]
    path.write_text(text)
    expected = {"drop-digest": "no record_sha256", "truncate": "not valid JSON"}.get(
        how, "does not match its record_sha256")
    with pytest.raises(DataError, match=f"meta.json: .*{expected}"):
        open_split(tmp_path, "train")


def test_mismatched_shape_and_missing_files(tmp_path):
    _write(tmp_path)
    np.save(tmp_path / "train" / "num_objects.npy", np.zeros(3, dtype=np.int32))  # 4 bytes per entry
    meta = json.loads((tmp_path / "meta.json").read_text())
    size = (tmp_path / "train" / "num_objects.npy").stat().st_size
    meta["splits"]["train"]["files"]["num_objects.npy"]["bytes"] = size
    write_record(tmp_path / "meta.json", meta)  # an edit with a fresh digest: the file checks catch it
    with pytest.raises(DataError, match=r"num_objects.npy: int32 \[3\], meta.json says int16 \[3\]"):
        open_split(tmp_path, "train")
    (tmp_path / "train" / "video.npy").unlink()
    with pytest.raises(DataError, match=r"train/video.npy: missing"):
        open_split(tmp_path, "train")
    with pytest.raises(DataError, match=r"no split 'test'"):
        open_split(tmp_path, "test")
    with pytest.raises(DataError, match=r"meta.json: not found; run the export stage"):
        open_split(tmp_path / "nothing", "train")


def test_aborted_writer_leaves_nothing(tmp_path):
    writer = SplitWriter(tmp_path, "train", 2, 2, 4)
    with pytest.raises(DataError, match="expected"):
        writer.write(0, np.zeros((2, 3, 4, 4, 3), np.uint8), np.zeros((2, 2, 4, 4), np.uint8), np.zeros(2, np.int16))
    writer.abort()
    assert not list((tmp_path / "train").iterdir())


def test_atomic_files_get_umask_permissions(tmp_path):
    from slotbench.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_differences_name_each_changed_key():
    """What the stale-export error and the resume warnings say changed (slotbench.io.differences)."""
    from slotbench.io import differences

    before = {"seed": 0, "tfds": {"data_dir": "gs://b", "version": "1.0.0"}, "splits": ["train"]}
    assert differences(before, before) == ""
    now = {"seed": 1, "tfds": {"data_dir": "/m", "version": "1.0.0"}, "splits": ["train", "test"], "new": 2}
    assert differences(before, now, "dataset.", limit=3) == (
        "dataset.new: <absent> -> 2, dataset.seed: 0 -> 1, dataset.splits: ['train'] -> ['train', 'test'] and 1 more")
    assert differences(before, now, limit=9).endswith("tfds.data_dir: 'gs://b' -> '/m'")
