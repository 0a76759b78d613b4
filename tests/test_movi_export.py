"""MOVi exports on fake data: TFDS (MOVi-D/E) through a fake ``tensorflow_datasets``, and the
MOVi-Solid/Tex release folders written here as PNGs. Round trips, validation errors, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from slotbench.data import movi_release, movi_tfds
from slotbench.data.export import export
from slotbench.data.publish import staging_dir
from slotbench.data.storage import (
    ARRAYS,
    PROGRESS_FILE,
    DataError,
    SplitWriter,
    open_split,
    read_meta,
    write_split_resumable,
)

REPO = Path(__file__).resolve().parents[1]
T, R = 4, 16  # small videos for speed; test_real_params_shape uses the real 24 x 128 x 128


# ----------------------------------------------------------------------------- fake TFDS

def fake_record(split: str, index: int, video_len: int = T, res: int = R) -> dict:
    """A record shaped like the real MOVi builders' (Kubric movi_e.py feature spec), deterministic."""
    rng = np.random.default_rng([zlib.crc32(split.encode()), index])  # same in every process
    num_instances = int(rng.integers(3, 8))
    seg = rng.integers(0, num_instances + 1, (video_len, res, res, 1), dtype=np.uint8)
    zeros16 = np.zeros((video_len, res, res, 1), np.uint16)
    return {
        "video": rng.integers(0, 256, (video_len, res, res, 3), dtype=np.uint8),
        "segmentations": seg,
        "depth": zeros16,
        "forward_flow": np.zeros((video_len, res, res, 2), np.uint16),
        "backward_flow": np.zeros((video_len, res, res, 2), np.uint16),
        "normal": np.zeros((video_len, res, res, 3), np.uint16),
        "object_coordinates": np.zeros((video_len, res, res, 3), np.uint16),
        "metadata": {"video_name": f"{split}_{index}".encode(), "width": res, "height": res,
                     "num_frames": video_len, "num_instances": np.uint16(num_instances),
                     "depth_range": np.zeros(2, np.float32), "forward_flow_range": np.zeros(2, np.float32),
                     "backward_flow_range": np.zeros(2, np.float32)},
        "background": b"hdri",
        "instances": {"mass": np.ones(num_instances, np.float32),
                      "visibility": np.ones((num_instances, video_len), np.uint16)},
        "camera": {"focal_length": np.float32(35.0), "positions": np.zeros((video_len, 3), np.float32)},
        "events": {"collisions": {"frame": np.zeros(0, np.int32)}},
    }


class FakeDataset:
    """The few ``tf.data.Dataset`` operations the exporter uses: ``skip`` and iteration."""

    def __init__(self, tfds: FakeTfds, split: str, features: dict, offset: int = 0):
        self.tfds, self.split, self.features, self.offset = tfds, split, features, offset

    def skip(self, count: int) -> FakeDataset:
        self.tfds.log.append(("skip", self.split, count))
        return FakeDataset(self.tfds, self.split, self.features, self.offset + count)

    def __iter__(self):
        for index in range(self.offset, self.tfds.splits[self.split]):
            if self.tfds.fail_at == (self.split, index):
                raise RuntimeError("UnavailableError: Error executing an HTTP request: connection reset")
            if self.tfds.kill_at == (self.split, index):
                os.kill(os.getpid(), signal.SIGKILL)
            self.tfds.log.append(("decode", self.split, index))
            record = fake_record(self.split, index, self.tfds.video_len, self.tfds.res)
            if self.tfds.corrupt:
                record = self.tfds.corrupt(self.split, index, record)
            yield {k: v for k, v in record.items() if self.features.get(k)}  # PartialDecoding


class FakeBuilder:
    def __init__(self, tfds: FakeTfds):
        self.tfds = tfds
        self.info = SimpleNamespace(splits={s: SimpleNamespace(num_examples=n) for s, n in tfds.splits.items()})

    def as_dataset(self, split, shuffle_files, decoders):
        assert shuffle_files is False
        self.tfds.log.append(("as_dataset", split, 0))
        return FakeDataset(self.tfds, split, decoders.features)


class FakeTfds:
    """Stands in for the ``tensorflow_datasets`` module: ``builder``, ``decode.PartialDecoding``, ``as_numpy``."""

    def __init__(self, splits=None, video_len=T, res=R, fail_at=None, kill_at=None, corrupt=None,
                 unreachable=False):
        self.splits = {"train": 11, "validation": 5, "test": 3} if splits is None else splits
        self.video_len, self.res = video_len, res
        self.fail_at, self.kill_at, self.corrupt, self.unreachable = fail_at, kill_at, corrupt, unreachable
        self.log: list[tuple] = []
        self.builder_calls: list[tuple] = []
        self.decode = SimpleNamespace(PartialDecoding=lambda features: SimpleNamespace(features=features))
        self.core = SimpleNamespace(Path=Path)  # lists a local data_dir as tfds.core.Path does

    def builder(self, name, data_dir=None):
        self.builder_calls.append((name, data_dir))
        if self.unreachable:
            raise ConnectionError(f"Error executing an HTTP request: libcurl code 6 meaning "
                                  f"'Couldn't resolve host name' (reading {data_dir}/dataset_info.json)")
        return FakeBuilder(self)

    @staticmethod
    def as_numpy(ds):
        return ds

    def decoded(self, split):
        return [i for op, s, i in self.log if op == "decode" and s == split]


def tfds_cfg(data_dir="gs://kubric-public/tfds", video_len=T, res=R) -> dict:
    return {"name": "movi_e", "source": "tfds", "resolution": res, "video_len": video_len,
            "splits": ["train", "validation", "test"],
            "tfds": {"builder": "movi_e", "version": "1.0.0", "data_dir": data_dir}}


def use_fake(monkeypatch, fake: FakeTfds) -> FakeTfds:
    monkeypatch.setattr(movi_tfds, "import_tfds", lambda: fake)
    return fake


def progress(root: Path, split: str) -> dict:
    """The progress record of ``split`` of an export of ``root`` that stopped (in its staging folder)."""
    return json.loads((staging_dir(root) / split / PROGRESS_FILE).read_text())


def read_all(root: Path) -> dict[str, bytes]:
    return {f"{s}/{n}": (root / s / n).read_bytes() for s in ("train", "validation", "test") if (root / s).is_dir()
            for n in ARRAYS}


# ----------------------------------------------------------------------------- TFDS tests

def test_tfds_round_trip(tmp_path, monkeypatch):
    fake = use_fake(monkeypatch, FakeTfds())
    meta = export(tfds_cfg(), tmp_path, progress=False)
    assert fake.builder_calls == [("movi_e/16x16:1.0.0", "gs://kubric-public/tfds")]
    assert meta["origin"]["tfds"] == "movi_e/16x16:1.0.0"
    assert read_meta(tmp_path)["splits"].keys() == {"train", "validation", "test"}
    for split, n in fake.splits.items():
        data = open_split(tmp_path, split, verify_checksums=True)
        assert len(data) == n
        for i in range(n):
            rec = fake_record(split, i)
            np.testing.assert_array_equal(data.video[i], rec["video"])  # exact pixels
            np.testing.assert_array_equal(data.seg[i], rec["segmentations"][..., 0])
            assert data.num_objects[i] == len(np.setdiff1d(np.unique(rec["segmentations"]), [0]))
        assert fake.decoded(split) == list(range(n))
    assert not list(tmp_path.rglob(PROGRESS_FILE)) and not list(tmp_path.rglob(".tmp-*"))


def test_tfds_only_video_and_segmentations_decoded(tmp_path, monkeypatch):
    """The exporter asks TFDS to decode two of the record's twelve features, and sees only those."""
    received = []
    check = movi_tfds.check_record
    monkeypatch.setattr(movi_tfds, "check_record",
                        lambda record, *args: received.append(sorted(record)) or check(record, *args))
    use_fake(monkeypatch, FakeTfds(splits={"train": 2, "validation": 1, "test": 1}))
    export(tfds_cfg(), tmp_path, progress=False)
    assert len(fake_record("train", 0)) == 12  # depth, flows, metadata, instances, ... exist in the source
    assert received == [["segmentations", "video"]] * 4


def test_real_params_shape(tmp_path, monkeypatch):
    """The movi_e params as shipped: 24 frames of 128x128, movi_e/128x128:1.0.0 from Kubric's bucket."""
    cfg = yaml.safe_load((REPO / "params/datasets/movi_e.yaml").read_text())["dataset"]
    fake = use_fake(monkeypatch, FakeTfds(splits={"train": 2, "validation": 1, "test": 1}, video_len=24, res=128))
    export(cfg, tmp_path, progress=False)
    assert fake.builder_calls == [("movi_e/128x128:1.0.0", "gs://kubric-public/tfds")]
    data = open_split(tmp_path, "train")
    assert data.video.shape == (2, 24, 128, 128, 3) and data.seg.shape == (2, 24, 128, 128)
    np.testing.assert_array_equal(data.video[1], fake_record("train", 1, 24, 128)["video"])


def test_tfds_resume_after_error_is_byte_identical(tmp_path, monkeypatch):
    """The fake iterator fails at train record 7: the 7 videos before it are kept, and the second
    run asks TFDS to skip exactly 7 records; none of them reaches Python again."""
    use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path / "ref", progress=False)

    out = tmp_path / "out"
    use_fake(monkeypatch, FakeTfds(fail_at=("train", 7)))
    with pytest.raises(DataError, match=r"split 'train', record 7 .*failed.*run the export again to resume"):
        export(tfds_cfg(), out, progress=False)
    record = progress(out, "train")
    assert record["state"] == "writing" and record["written"] == 7
    assert record["temp_files"] == {name: f".tmp-{name}" for name in ARRAYS}
    assert not (out / "meta.json").exists()

    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), out, progress=False)
    assert ("skip", "train", 7) in fake.log
    assert fake.decoded("train") == list(range(7, 11))
    assert read_all(out) == read_all(tmp_path / "ref")
    assert read_meta(out)["splits"] == read_meta(tmp_path / "ref")["splits"]
    assert not list(out.rglob(PROGRESS_FILE)) and not staging_dir(out).exists()


def test_tfds_completed_split_not_read_again(tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeTfds(fail_at=("validation", 3)))
    with pytest.raises(DataError, match="split 'validation', record 3"):
        export(tfds_cfg(), tmp_path, progress=False)
    assert progress(tmp_path, "train")["state"] == "complete"
    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path, progress=False)
    assert fake.decoded("train") == [] and ("as_dataset", "train", 0) not in fake.log
    assert fake.decoded("validation") == [3, 4] and ("skip", "validation", 3) in fake.log
    for split in ("train", "validation", "test"):
        open_split(tmp_path, split, verify_checksums=True)


def test_tfds_resume_after_hard_kill(tmp_path, monkeypatch):
    """SIGKILL at train record 10 with shards of 4: nothing runs on the way out, so the progress
    record still says 8 (the last flushed shard) and the second run re-reads records 8 and 9."""
    use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path / "ref", progress=False)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_movi_export as t
        from slotbench.data import movi_tfds
        fake = t.FakeTfds(kill_at=("train", 10))
        movi_tfds.import_tfds = lambda: fake
        movi_tfds.export_tfds(t.tfds_cfg(), {str(staging_dir(out))!r}, progress=False, shard_size=4)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert progress(out, "train")["written"] == 8

    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), out, progress=False)
    assert ("skip", "train", 8) in fake.log and fake.decoded("train") == [8, 9, 10]
    assert read_all(out) == read_all(tmp_path / "ref")


def _bad(key, value):
    def corrupt(split, index, record):
        if (split, index) == ("validation", 2):
            record = dict(record)
            if value is None:
                del record[key]
            else:
                record[key] = value(record[key])
        return record
    return corrupt


@pytest.mark.parametrize("corrupt, message", [
    (_bad("video", lambda v: v[:-1]), f"video has {T - 1} frames, expected video_len = {T}"),
    (_bad("segmentations", lambda s: s[:, :-1]), f"segmentations frames are {R - 1}x{R}, expected {R}x{R}"),
    (_bad("video", lambda v: v.astype(np.float32)), "video has dtype float32, expected uint8"),
    (_bad("video", lambda v: v[..., :2]), "video has 2 channels, expected 3"),
    (_bad("segmentations", lambda s: s[..., 0]), r"segmentations has shape \[4, 16, 16\]"),
    (_bad("segmentations", lambda s: s.astype(np.float32)), "segmentations have dtype float32"),
    (_bad("segmentations", lambda s: s.astype(np.int32) + 300), r"segmentation ids span 300\.\.\d+, expected 0\.\.255"),
    (_bad("segmentations", None), "expected the features 'video' and 'segmentations'"),
])
def test_tfds_bad_record_names_split_and_index(tmp_path, monkeypatch, corrupt, message):
    use_fake(monkeypatch, FakeTfds(corrupt=corrupt))
    with pytest.raises(DataError, match=rf"split 'validation', record 2: {message}"):
        export(tfds_cfg(), tmp_path, progress=False)
    assert not (tmp_path / "meta.json").exists()
    assert progress(tmp_path, "validation")["written"] == 2


def test_tfds_wider_integer_segmentations_accepted(tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeTfds(corrupt=lambda s, i, rec: {**rec, "segmentations": rec["segmentations"]
                                                              .astype(np.int64)}))
    export(tfds_cfg(), tmp_path, progress=False)
    np.testing.assert_array_equal(open_split(tmp_path, "test").seg[0], fake_record("test", 0)["segmentations"][..., 0])


def test_tfds_record_count_must_match_split_info(tmp_path, monkeypatch):
    fake = use_fake(monkeypatch, FakeTfds())
    fake.builder = lambda name, data_dir=None: SimpleNamespace(
        info=SimpleNamespace(splits={"train": SimpleNamespace(num_examples=12),
                                     "validation": SimpleNamespace(num_examples=5),
                                     "test": SimpleNamespace(num_examples=3)}),
        as_dataset=FakeBuilder(fake).as_dataset)
    with pytest.raises(DataError, match="the source ended after 11 videos, 12 were announced"):
        export(tfds_cfg(), tmp_path, progress=False)


def test_tfds_missing_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"not installed .*pip install 'slotbench\[movi\]'"):
        export(tfds_cfg(), tmp_path, progress=False)


def test_cli_reports_missing_extra(project, monkeypatch, capsys):
    from slotbench.cli import main

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert main(["export", "--dataset", "movi_d", "--no-progress"]) == 2
    assert "pip install 'slotbench[movi]'" in capsys.readouterr().err


def test_tfds_unreachable_data_dir(tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeTfds(unreachable=True))
    with pytest.raises(DataError) as info:
        export(tfds_cfg(), tmp_path, progress=False)
    msg = str(info.value)
    assert "could not open the TFDS dataset movi_e/16x16:1.0.0 in data_dir 'gs://kubric-public/tfds'" in msg
    assert "Couldn't resolve host name" in msg
    assert "gs://kubric-public/tfds/movi_e/16x16/1.0.0/" in msg and "dataset.tfds.data_dir: MIRROR" in msg
    assert not list(tmp_path.iterdir())


def test_tfds_missing_local_mirror(tmp_path, monkeypatch):
    """A local data_dir that holds no dataset: TFDS's very long DatasetNotFoundError is shortened."""
    fake = use_fake(monkeypatch, FakeTfds())

    def not_found(name, data_dir=None):
        raise ValueError("Dataset movi_e not found.\nAvailable datasets:\n"
                         + "\n".join(f"\t- ds{i}" for i in range(500))
                         + f"\nNo builder could be found in the directory: {data_dir} for the builder: movi_e.")

    fake.builder = not_found
    with pytest.raises(DataError) as info:
        export(tfds_cfg(data_dir="/mirror/tfds"), tmp_path, progress=False)
    msg = str(info.value)
    assert "(ValueError: Dataset movi_e not found. ... " in msg and "ds250" not in msg and len(msg) < 1200
    assert "local mirror /mirror/tfds/movi_e/16x16/1.0.0/ exists" in msg
    assert "gsutil -m cp -r gs://kubric-public/tfds/movi_e/16x16 /mirror/tfds/movi_e/" in msg


def test_tfds_builder_without_splits(tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeTfds(splits={}))
    with pytest.raises(DataError, match=r"no prepared dataset movi_e/16x16:1.0.0 \(no splits\) in data_dir"):
        export(tfds_cfg(), tmp_path, progress=False)


def test_tfds_other_data_dir_starts_afresh_saying_why(tmp_path, monkeypatch, caplog):
    """The data_dir is part of the resume identity (a mirror may hold another copy): a run
    interrupted on the bucket does not resume from a mirror; the split starts afresh, saying why."""
    use_fake(monkeypatch, FakeTfds(fail_at=("train", 5)))
    with pytest.raises(DataError):
        export(tfds_cfg(), tmp_path, progress=False)
    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(data_dir="/mirror/tfds"), tmp_path, progress=False)
    assert fake.builder_calls == [("movi_e/16x16:1.0.0", "/mirror/tfds")]
    assert fake.decoded("train") == list(range(11)) and not any(op == "skip" for op, _, _ in fake.log)
    assert "movi_e train: starting the split afresh: the interrupted export read another source or had other " \
           "params (source.params.tfds.data_dir: 'gs://kubric-public/tfds' -> '/mirror/tfds')" in caplog.text


def test_tfds_missing_split(tmp_path, monkeypatch):
    use_fake(monkeypatch, FakeTfds(splits={"train": 2, "test": 1}))
    with pytest.raises(DataError, match=r"has no split 'validation' \(available: train, test\)"):
        export(tfds_cfg(), tmp_path, progress=False)


# ----------------------------------------------------------------------------- storage resume

def test_changed_source_starts_over(tmp_path):
    def read(start, n=6, value=0):
        for i in range(start, n):
            yield np.full((2, 4, 4, 3), value + i, np.uint8), np.zeros((2, 4, 4), np.uint8), 0

    def failing(start):
        for i, item in enumerate(read(start)):
            if start + i == 3:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        write_split_resumable(tmp_path, "s", 6, 2, 4, {"v": 1}, failing, shard_size=2, progress=False)
    assert json.loads((tmp_path / "s" / PROGRESS_FILE).read_text())["written"] == 3
    calls = []
    write_split_resumable(tmp_path, "s", 6, 2, 4, {"v": 2}, lambda start: calls.append(start) or read(start, value=9),
                          shard_size=2, progress=False)
    assert calls == [0]
    assert np.load(tmp_path / "s" / "video.npy")[0, 0, 0, 0, 0] == 9


def test_resume_rejects_mismatched_temp_file(tmp_path):
    SplitWriter(tmp_path, "s", 3, 2, 4).flush()
    with pytest.raises(DataError, match=r"\.tmp-video\.npy: uint8 \[3, 2, 4, 4, 3\], expected uint8 \[4, 2, 4, 4, 3\]"):
        SplitWriter.resume(tmp_path, "s", 4, 2, 4)
    (tmp_path / "s" / ".tmp-seg.npy").unlink()
    with pytest.raises(DataError, match=r"\.tmp-seg\.npy: temporary file missing"):
        SplitWriter.resume(tmp_path, "s", 3, 2, 4)


# ----------------------------------------------------------------------------- release

NUM_MASKS = 10
VIDEO_NAMES = ["b", "a", "a-b"]  # the original's order: sorted "a-b/" < "a/" < "b/"


def original_merge(masks: np.ndarray) -> np.ndarray:
    """The original's rule, literally: insert an all-ones plane at index 0, argmax over the stack."""
    planes = [np.ones_like(masks[0])] + list(masks)
    return np.stack(planes, axis=0).argmax(0).astype(np.uint8)


def write_release(base: Path, splits=("train", "test"), names=VIDEO_NAMES, num_masks=NUM_MASKS, seed=0) -> dict:
    """A tiny release folder; returns {split: [(video, masks) in the original's order]}."""
    rng = np.random.default_rng(seed)
    content = {}
    for split in splits:
        entries = {}
        for v, name in enumerate(names):
            folder = base / split / name
            folder.mkdir(parents=True)
            video = rng.integers(0, 256, (T, R, R, 3), dtype=np.uint8)
            masks = np.zeros((T, num_masks, R, R), np.uint8)
            for k in range(int(rng.integers(1, num_masks + 1))):  # objects 0..n-1, the other masks stay empty
                y, x, h, w = rng.integers(0, R, 2).tolist() + rng.integers(2, 8, 2).tolist()
                masks[:, k, y:y + h, x:x + w] = 255  # overlapping boxes: the lowest index wins
            for t in range(T):
                Image.fromarray(video[t]).save(folder / f"{t:08d}_image.png")
                for k in range(num_masks):
                    m = masks[t, k]
                    kind = (v + k + t) % 5
                    if kind == 0:  # as torchvision.utils.save_image writes it: RGB, 0/255
                        img = Image.fromarray(np.repeat(m[..., None], 3, axis=2))
                    elif kind == 1:
                        img = Image.fromarray(m).convert("1")  # 1-bit PNG
                    elif kind == 2:
                        img = Image.fromarray(m).convert("P")  # grey palette
                    elif kind == 3:
                        img = Image.fromarray(np.dstack([m, m, m, np.full_like(m, 200)]))  # RGBA, alpha ignored
                    else:
                        img = Image.fromarray(m)  # 8-bit grey
                    img.save(folder / f"{t:08d}_mask_{k:02d}.png")
            entries[name] = (video, masks)
        (base / split / ".hidden").mkdir()  # ignored, as by the original's glob
        (base / split / "notes.txt").write_text("not a video")
        content[split] = [entries[n] for n in sorted(names, key=lambda n: n + "/")]
    return content


def release_cfg(path: Path) -> dict:
    return {"name": "movi_solid", "source": "release", "resolution": R, "video_len": T,
            "splits": ["train", "test"], "release": {"path": str(path), "num_masks": NUM_MASKS}}


def test_merge_masks_matches_original_rule():
    rng = np.random.default_rng(1)
    for values in ([0, 255], [0, 1, 2, 128, 255], [0, 1]):
        masks = rng.choice(np.array(values, np.uint8), size=(NUM_MASKS, 32, 32))
        np.testing.assert_array_equal(movi_release.merge_masks(masks), original_merge(masks))


def test_list_videos_original_order(tmp_path):
    for name in ["b", "a", "a-b", "00000010", "00000002", ".cache"]:
        (tmp_path / name).mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    assert movi_release.list_videos(tmp_path) == ["00000002", "00000010", "a-b", "a", "b"]


def test_release_round_trip(tmp_path):
    content = write_release(tmp_path / "MOVi-Solid")
    meta = export(release_cfg(tmp_path / "MOVi-Solid"), tmp_path / "data", progress=False)
    assert meta["splits"].keys() == {"train", "test"} and meta["origin"]["num_masks"] == NUM_MASKS
    for split, videos in content.items():
        data = open_split(tmp_path / "data", split, verify_checksums=True)
        assert len(data) == len(videos)
        for i, (video, masks) in enumerate(videos):
            np.testing.assert_array_equal(data.video[i], video)
            expected = np.stack([original_merge(masks[t]) for t in range(T)])
            np.testing.assert_array_equal(data.seg[i], expected)
            assert data.num_objects[i] == len(np.setdiff1d(np.unique(expected), [0]))
    assert not list((tmp_path / "data").rglob(PROGRESS_FILE))


def test_release_resume_is_byte_identical(tmp_path, monkeypatch):
    write_release(tmp_path / "rel")
    cfg = release_cfg(tmp_path / "rel")
    export(cfg, tmp_path / "ref", progress=False)

    real, calls = movi_release.read_video, []

    def flaky(folder, *args):
        calls.append(folder.name)
        if len(calls) == 5:  # train has 3 videos: fails on the second test video
            raise OSError("disk went away")
        return real(folder, *args)

    monkeypatch.setattr(movi_release, "read_video", flaky)
    with pytest.raises(OSError, match="disk went away"):
        export(cfg, tmp_path / "out", progress=False)
    assert progress(tmp_path / "out", "test")["written"] == 1

    calls.clear()
    export(cfg, tmp_path / "out", progress=False)
    assert calls == ["a", "b"]  # train is complete; test resumes at its second video, nothing read twice
    assert read_all(tmp_path / "out") == read_all(tmp_path / "ref")


def _break(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "size":
        Image.fromarray(np.zeros((R, R + 2), np.uint8)).save(path)
    elif how == "corrupt":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "garbage":
        path.write_bytes(b"this is not a png")
    elif how == "zero-one":
        m = np.zeros((R, R), np.uint8)
        m[2:5, 2:5] = 1
        Image.fromarray(m).save(path)
    elif how == "16-bit":
        Image.fromarray(np.zeros((R, R), np.uint16)).save(path)
    elif how == "colour":
        rgb = np.zeros((R, R, 3), np.uint8)
        rgb[2:5, 2:5] = (255, 0, 0)
        Image.fromarray(rgb).save(path)


@pytest.mark.parametrize("target, how, message", [
    ("00000002_mask_07.png", "missing", "missing"),
    ("00000002_mask_07.png", "size", f"{R + 2}x{R} pixels, expected {R}x{R}"),
    ("00000002_mask_07.png", "corrupt", "unreadable image"),
    ("00000002_mask_07.png", "garbage", "unreadable image"),
    ("00000002_mask_07.png", "zero-one", "stores its foreground as 1, not 255"),
    ("00000002_mask_07.png", "16-bit", "expected an 8-bit mask"),
    ("00000002_mask_07.png", "colour", "a colour mask (its RGB channels differ)"),
    ("00000003_image.png", "missing", "missing"),
    ("00000003_image.png", "corrupt", "unreadable image"),
    ("00000001_image.png", "size", f"{R + 2}x{R} pixels, expected {R}x{R}"),
])
def test_release_bad_file_is_named(tmp_path, target, how, message):
    write_release(tmp_path / "rel", splits=("train", "test"), names=["v0", "v1"])
    path = tmp_path / "rel" / "test" / "v1" / target
    _break(path, how)
    with pytest.raises(DataError) as info:
        export(release_cfg(tmp_path / "rel"), tmp_path / "data", progress=False)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert not (tmp_path / "data" / "meta.json").exists()


def test_release_missing_folders(tmp_path):
    with pytest.raises(DataError, match=r"release folder not found .*point dataset.release.path"):
        export(release_cfg(tmp_path / "nowhere"), tmp_path / "data", progress=False)
    write_release(tmp_path / "rel", splits=("train", "val"), names=["v0"])
    with pytest.raises(DataError, match=r"rel/test: split folder not found \(found: train, val\)"):
        export(release_cfg(tmp_path / "rel"), tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists() and not staging_dir(tmp_path / "data").exists()  # checked first


# ----------------------------------------------------------------------------- re-export (issue 29)

def tree(root: Path) -> dict[str, bytes]:
    """Every file of an export folder (meta.json included), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _previous_release_export(tmp_path: Path) -> tuple[dict, Path, dict]:
    write_release(tmp_path / "rel")
    cfg = release_cfg(tmp_path / "rel")
    export(cfg, tmp_path / "data", progress=False)
    return cfg, tmp_path / "data", tree(tmp_path / "data")


def _previous_tfds_export(tmp_path: Path, monkeypatch) -> tuple[dict, Path, dict]:
    use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path / "data", progress=False)
    return tfds_cfg(), tmp_path / "data", tree(tmp_path / "data")


@pytest.mark.parametrize("mistake", ["release resolution", "tfds video_len"])
def test_a_params_mistake_leaves_the_previous_export_untouched(mistake, tmp_path, monkeypatch):
    """The issue's two mistakes: MOVi-Solid at a resolution its frames do not have (refused at the
    first frame), MOVi-D with another frame count (refused at the first record). The export that
    was there stays, byte for byte, complete and trusted for the params it was made with."""
    from slotbench.data.dataset import check_current

    if mistake == "release resolution":
        cfg, root, before = _previous_release_export(tmp_path)
        wrong = {**cfg, "resolution": R // 2}
        message = f"00000000_image.png: {R}x{R} pixels, expected {R // 2}x{R // 2}"
    else:
        cfg, root, before = _previous_tfds_export(tmp_path, monkeypatch)
        wrong = tfds_cfg(video_len=T // 2)
        message = f"record 0: video has {T} frames, expected video_len = {T // 2}"
    with pytest.raises(DataError, match=message):
        export(wrong, root, progress=False)
    assert tree(root) == before
    check_current(root, cfg)
    for split in read_meta(root)["splits"]:
        open_split(root, split, verify_checksums=True)


def test_a_killed_reexport_leaves_the_previous_export_untouched(tmp_path, monkeypatch):
    """SIGKILL in the middle of a re-export (other params: another data_dir) leaves the previous
    export as it was; the next run resumes in the staging folder and then swaps the new one in."""
    cfg, root, before = _previous_tfds_export(tmp_path, monkeypatch)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_movi_export as t
        from slotbench.data import movi_tfds
        from slotbench.data.export import export
        fake = t.FakeTfds(kill_at=("validation", 2))
        movi_tfds.import_tfds = lambda: fake
        export(t.tfds_cfg(data_dir="/mirror/tfds"), {str(root)!r}, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert tree(root) == before
    assert progress(root, "train")["state"] == "complete" and progress(root, "validation")["state"] == "writing"

    fake = use_fake(monkeypatch, FakeTfds())
    meta = export(tfds_cfg(data_dir="/mirror/tfds"), root, progress=False)
    assert fake.decoded("train") == [] and fake.decoded("validation") == [0, 1, 2, 3, 4]
    assert meta["params"]["tfds"]["data_dir"] == "/mirror/tfds" == read_meta(root)["origin"]["data_dir"]
    assert read_all(root) == {k: v for k, v in before.items() if k != "meta.json"}  # the same records
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging or previous folder left


def test_resume_checks_what_was_already_written(tmp_path, monkeypatch, caplog):
    """A byte of the videos an interrupted run wrote is changed: the split starts afresh, saying
    why, and the export still ends equal to an uninterrupted one."""
    use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path / "ref", progress=False)
    out = tmp_path / "out"
    use_fake(monkeypatch, FakeTfds(fail_at=("train", 7)))
    with pytest.raises(DataError):
        export(tfds_cfg(), out, progress=False)
    temp = staging_dir(out) / "train" / ".tmp-video.npy"
    data = bytearray(temp.read_bytes())
    data[-(4 * T * R * R * 3) - 1] ^= 0xFF  # in video 6, the last one written (of 11)
    temp.write_bytes(bytes(data))
    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), out, progress=False)
    assert fake.decoded("train") == list(range(11))
    assert "movi_e train: starting the split afresh: the 7 videos already written no longer hash" in caplog.text
    assert read_all(out) == read_all(tmp_path / "ref")


def test_a_damaged_complete_split_is_written_again(tmp_path, monkeypatch, caplog):
    use_fake(monkeypatch, FakeTfds(fail_at=("validation", 3)))
    with pytest.raises(DataError):
        export(tfds_cfg(), tmp_path / "data", progress=False)
    final = staging_dir(tmp_path / "data") / "train" / "seg.npy"
    data = bytearray(final.read_bytes())
    data[-1] ^= 0x01
    final.write_bytes(bytes(data))
    fake = use_fake(monkeypatch, FakeTfds())
    export(tfds_cfg(), tmp_path / "data", progress=False)
    assert fake.decoded("train") == list(range(11)) and fake.decoded("validation") == [3, 4]
    assert f"{final} no longer matches its recorded SHA-256" in caplog.text
    open_split(tmp_path / "data", "train", verify_checksums=True)


def test_release_resume_checks_the_source_folder(tmp_path, monkeypatch, caplog):
    """The same release extracted elsewhere (another resolved path) is another source: afresh."""
    write_release(tmp_path / "rel")
    real, calls, failed = movi_release.read_video, [], []

    def flaky(folder, *args):
        calls.append(folder.name)
        if len(calls) == 2 and not failed:  # the first run fails at its second video
            failed.append(folder.name)
            raise OSError("disk went away")
        return real(folder, *args)

    monkeypatch.setattr(movi_release, "read_video", flaky)
    with pytest.raises(OSError):
        export(release_cfg(tmp_path / "rel"), tmp_path / "data", progress=False)
    assert progress(tmp_path / "data", "train")["written"] == 1
    (tmp_path / "rel").rename(tmp_path / "moved")
    calls.clear()
    export(release_cfg(tmp_path / "moved"), tmp_path / "data", progress=False)
    assert calls[:3] == ["a-b", "a", "b"]  # train read from its first video
    assert f"source.path: '{tmp_path / 'rel' / 'train'}' -> '{tmp_path / 'moved' / 'train'}'" in caplog.text


@pytest.mark.parametrize("key, value, message", [
    ("resolution", 64, "movi_e: dataset.resolution: 64, but the TFDS dataset movi_e in data_dir '{d}' has no "
                       "config 64x64; it has 128x128, 256x256 (dataset.resolution: 128 or 256)"),
    ("version", "2.0.0", "movi_e: dataset.tfds.version: 2.0.0, but the TFDS dataset movi_e in data_dir '{d}' has no "
                         "version 2.0.0 of 128x128; it has 1.0.0, 1.1.0"),
])
def test_a_config_or_version_the_source_lacks_is_named(key, value, message, tmp_path, monkeypatch):
    """Instead of TFDS's "dataset not found" and its list of every dataset it knows."""
    for sub in ("128x128/1.0.0", "128x128/1.1.0", "256x256/1.0.0"):
        (tmp_path / "tfds" / "movi_e" / sub).mkdir(parents=True)
    fake = use_fake(monkeypatch, FakeTfds())

    def not_found(name, data_dir=None):
        raise ValueError("Dataset movi_e not found.\nAvailable datasets:\n\t- abstract_reasoning")

    fake.builder = not_found
    cfg = tfds_cfg(data_dir=str(tmp_path / "tfds"), res=128)
    if key == "resolution":
        cfg["resolution"] = value
    else:
        cfg["tfds"]["version"] = value
    with pytest.raises(DataError) as info:
        export(cfg, tmp_path / "data", progress=False)
    assert str(info.value) == message.format(d=tmp_path / "tfds")


def test_tensorflow_is_imported_quietly(tmp_path, monkeypatch):
    """TensorFlow reads its logging settings when it is imported: they are set before that."""
    for name in ("tensorflow", "tensorflow_datasets"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            "import os\nSEEN = {k: os.environ.get(k) for k in ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS')}\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in movi_tfds.QUIET_TF:
        monkeypatch.delenv(key, raising=False)
    tfds = movi_tfds.import_tfds()
    assert sys.modules["tensorflow"].SEEN == tfds.SEEN == {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # a user's own setting is kept
    monkeypatch.delitem(sys.modules, "tensorflow")
    movi_tfds.import_tfds()
    assert sys.modules["tensorflow"].SEEN["TF_CPP_MIN_LOG_LEVEL"] == "0"
