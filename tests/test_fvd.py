"""FVD (slotbench.metrics.fvd): StyleGAN-V's fvd2048_16f protocol with a stand-in TorchScript
detector, the frame-folder layout, the detector lookup/download, and the runner of the
original script (with a fake script that prints what the real one prints)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from slotbench.metrics import fvd
from slotbench.metrics.frechet import frechet_distance
from slotbench.weights import MissingWeightsError, WeightsDigestError

scipy_linalg = pytest.importorskip("scipy.linalg")


class StandInDetector(torch.nn.Module):
    """Same call signature as StyleGAN-V's I3D: uint8 [B, 3, T, H, W] and three flags."""

    def __init__(self, dim: int = 6, frames: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3 * frames * 4, dim, generator=g))

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise ValueError("expects uint8 clips")
        v = x.float()
        if rescale:
            v = v / 127.5 - 1.0
        if resize:
            v = F.interpolate(v, size=(v.shape[2], 4, 4), mode="trilinear", align_corners=False)
        pooled = F.adaptive_avg_pool3d(v, (v.shape[2], 2, 2)).flatten(1)
        feats = torch.tanh(pooled @ self.proj)
        return feats if return_features else feats.softmax(dim=1)


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "standin_i3d.pt"
    torch.jit.script(StandInDetector()).save(str(path))
    return path


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("SLOTBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("SLOTBENCH_OFFLINE", "1")
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    return monkeypatch


def _videos(n, lengths, res=12, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        base = rng.integers(0, 256, (1, res, res, 3))
        drift = rng.integers(-3, 4, (lengths[i], 1, 1, 3)).cumsum(0)
        out[i] = np.clip(base + drift + rng.integers(0, 40, (lengths[i], res, res, 3)), 0, 255).astype(np.uint8)
    return out


def _read_stylegan_v_way(root):
    """Independent reader: os.listdir + plain string sort (StyleGAN-V's order), Pillow decode."""
    videos = []
    for name in sorted(os.listdir(root)):
        frames = sorted(os.listdir(root / name))
        videos.append((name, [np.array(Image.open(root / name / f)) for f in frames]))
    return videos


def _stylegan_v_formula(real, fake):
    """StyleGAN-V's compute_fvd on features: biased covariance, scipy sqrtm, real part."""
    def stats(x):
        x = np.asarray(x, dtype=np.float64)
        mu = x.sum(0) / len(x)
        return mu, x.T @ x / len(x) - np.outer(mu, mu)

    mu_r, s_r = stats(real)
    mu_g, s_g = stats(fake)
    m = np.square(mu_g - mu_r).sum()
    s = scipy_linalg.sqrtm(s_g @ s_r)
    return float(np.real(m + np.trace(s_g + s_r - s * 2)))


# ---------------------------------------------------------------------------- clip sampling
def test_clip_sampling_follows_the_protocol():
    lengths = [24] * 5 + [15] * 3 + [16, 17] + [24] * 2100  # 3 too-short real videos
    plan = fvd.sample_clips(lengths, True, random.Random(0))
    assert len(plan) == fvd.MAX_VIDEOS == 2048
    kept = [i for i, _ in plan]
    assert kept[:7] == [0, 1, 2, 3, 4, 8, 9]  # the first videos in order, short ones dropped
    assert kept == sorted(kept) and kept[-1] == 2048 + 3 - 1
    for i, frames in plan:
        assert len(frames) == 16 and frames == list(range(frames[0], frames[0] + 16))
        assert 0 <= frames[0] <= lengths[i] - 16
    assert {f[0] for i, f in plan if lengths[i] == 24} == set(range(9))  # uniform over [0, L-16]
    assert plan[5][0] == 8 and plan[5][1][0] == 0  # L = 16 -> offset 0
    assert plan[6][0] == 9 and plan[6][1][0] in (0, 1)  # L = 17 -> 0 or 1
    assert fvd.sample_clips(lengths, True, random.Random(0)) == plan  # seeded
    assert fvd.sample_clips(lengths, True, random.Random(1)) != plan

    fake = fvd.sample_clips([24] * 2100, False)
    assert len(fake) == 2048 and all(f == list(range(16)) for _, f in fake)
    assert [i for i, _ in fake] == list(range(2048))
    with pytest.raises(ValueError, match="at least 16"):
        fvd.sample_clips([24, 15], False)
    # the 128f_subsample8f variant's arithmetic: stride 8, offsets in [0, L - 121]
    sub = fvd.sample_clips([130] * 50, True, random.Random(0), num_frames=16, subsample_factor=8)
    assert all(f[1] - f[0] == 8 and 0 <= f[0] <= 130 - 121 for _, f in sub)


# ---------------------------------------------------------------------------- folders
def test_frame_folders_round_trip_and_order(tmp_path):
    videos = _videos(3, [12, 12, 12])
    written = fvd.write_video_folder(tmp_path / "v", videos)
    assert [p.name for p in written] == ["0", "1", "2"]
    assert sorted(os.listdir(tmp_path / "v" / "0"), key=lambda s: int(s[:-4])) == [f"{t}.png" for t in range(12)]
    with Image.open(tmp_path / "v" / "1" / "3.png") as im:
        assert im.mode == "RGB"
    assert not list((tmp_path / "v").rglob(".tmp-*"))
    numeric = fvd.read_video_folder(tmp_path / "v")
    assert list(numeric) == ["0", "1", "2"]
    for i in range(3):
        np.testing.assert_array_equal(numeric[str(i)], videos[i])
    as_stylegan = fvd.read_video_folder(tmp_path / "v", order="stylegan-v")
    order = [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]  # string sort of unpadded names
    np.testing.assert_array_equal(as_stylegan["0"], videos[0][order])
    # zero-padded names keep temporal order under string sort
    fvd.write_video_folder(tmp_path / "p", videos, zero_pad=6)
    assert (tmp_path / "p" / "2" / "000011.png").is_file()
    np.testing.assert_array_equal(fvd.read_video_folder(tmp_path / "p", order="stylegan-v")["2"], videos[2])
    # float [-1, 1] tensors are converted as SlotDiffusion saves frames
    x = torch.tensor([-1.5, -1.0, -0.0039215, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 7).expand(2, 3, 1, 7)
    expected = np.round(np.clip(x.numpy() * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    fvd.write_video_folder(tmp_path / "f", {"7": x})
    np.testing.assert_array_equal(fvd.read_video_folder(tmp_path / "f")["7"], expected)


def test_folder_layout_rules(tmp_path):
    root = tmp_path / "r"
    fvd.write_video_folder(root, _videos(2, [3, 3]))
    (root / "empty").mkdir()               # ignored
    (root / "notes.txt").write_text("x")    # ignored in the root
    assert fvd.VideoFolder.scan(root).names == ["0", "1"]
    (root / "1" / ".DS_Store").write_text("x")
    with pytest.raises(ValueError, match="not an image"):
        fvd.VideoFolder.scan(root)
    (root / "1" / ".DS_Store").unlink()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "stray.png")
    with pytest.raises(ValueError, match="inside video folders"):
        fvd.VideoFolder.scan(root)
    (root / "stray.png").unlink()
    (root / "0" / "sub").mkdir()
    with pytest.raises(ValueError, match="exactly"):
        fvd.VideoFolder.scan(root)
    (root / "0" / "sub").rmdir()
    with pytest.raises(FileNotFoundError):
        fvd.VideoFolder.scan(tmp_path / "nothing")
    assert list(fvd.read_video_folder(root)) == ["0", "1"]
    fvd.write_video_folder(root, {"clip_a": _videos(1, [2])[0]})
    assert fvd.VideoFolder.scan(root).names == ["0", "1", "clip_a"]  # string order: any names
    with pytest.raises(ValueError, match="integer"):
        fvd.read_video_folder(root)  # numeric order needs integer names


# ---------------------------------------------------------------------------- FVD
def test_fvd_equals_frechet_of_directly_computed_features(tmp_path, detector_file):
    real_lengths = [24, 20, 12, 16, 24, 18, 24, 15, 22, 24, 24, 19]  # two too short (12, 15)
    fvd.write_video_folder(tmp_path / "gt", _videos(12, real_lengths, seed=1))
    fvd.write_video_folder(tmp_path / "fake", _videos(11, [24] * 11, seed=2))
    det = torch.jit.load(str(detector_file))
    res = fvd.compute_fvd(tmp_path / "gt", tmp_path / "fake", detector=det, device="cpu", seed=3,
                          progress=False, return_features=True)

    # the clips, rebuilt independently from the spec
    real = _read_stylegan_v_way(tmp_path / "gt")
    fake = _read_stylegan_v_way(tmp_path / "fake")
    real = [(n, f) for n, f in real if len(f) >= 16]
    assert res["num_real_videos"] == len(real) == 10 and res["real_videos_dropped_short"] == 2
    assert res["num_fake_videos"] == 11
    assert list(res["real_clip_starts"]) == [n for n, _ in real]  # string order: 0, 1, 10, 11, 3, ...
    clips_r = []
    for name, frames in real:
        start = res["real_clip_starts"][name]
        assert 0 <= start <= len(frames) - 16
        clips_r.append(np.stack(frames[start:start + 16]))
    clips_f = [np.stack(f[:16]) for _, f in fake]  # fake: first 16 frames in string order

    @torch.no_grad()
    def feats(clips):
        x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3)  # uint8 [B, 3, 16, H, W]
        return det(x, rescale=True, resize=True, return_features=True).double()

    fr, ff = feats(clips_r), feats(clips_f)
    torch.testing.assert_close(res["real_features"], fr, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(res["fake_features"], ff, rtol=1e-6, atol=1e-7)

    def biased(x):  # deviations scaled so that the n-1 covariance is the biased one
        mu = x.mean(0, keepdim=True)
        return mu + (x - mu) * ((len(x) - 1) / len(x)) ** 0.5

    assert res["fvd"] == pytest.approx(frechet_distance(biased(ff), biased(fr)), rel=1e-6, abs=1e-9)
    assert res["fvd"] == pytest.approx(_stylegan_v_formula(fr.numpy(), ff.numpy()), rel=1e-5, abs=1e-8)
    assert res["fvd"] > 0
    mu, sigma = fvd.feature_stats(fr)
    np.testing.assert_allclose(sigma, np.cov(fr.numpy(), rowvar=False, bias=True), atol=1e-12)
    assert res["feature_dim"] == 6 and res["clips_per_batch"] == 8 and res["mirror_effective"] is False
    json.dumps({k: v for k, v in res.items() if not k.endswith("_features")})  # JSON-ready

    # the seed fixes the real offsets; another seed moves them
    again = fvd.compute_fvd(tmp_path / "gt", tmp_path / "fake", detector=det, device="cpu", seed=3, progress=False)
    other = fvd.compute_fvd(tmp_path / "gt", tmp_path / "fake", detector=det, device="cpu", seed=4, progress=False)
    assert again["fvd"] == res["fvd"] and again["real_clip_starts"] == res["real_clip_starts"]
    assert other["real_clip_starts"] != res["real_clip_starts"]


def test_identical_folders_give_zero(tmp_path, detector_file):
    fvd.write_video_folder(tmp_path / "a", _videos(9, [16] * 9, seed=5))  # L = 16: offset 0 on both sides
    det = torch.jit.load(str(detector_file))
    res = fvd.compute_fvd(tmp_path / "a", tmp_path / "a", detector=det, device="cpu", progress=False)
    assert abs(res["fvd"]) < 1e-6


# ---------------------------------------------------------------------------- detector file
def test_missing_detector_names_where_to_put_it(env, tmp_path):
    fvd.write_video_folder(tmp_path / "a", _videos(2, [16, 16]))
    with pytest.raises(MissingWeightsError) as err:
        fvd.compute_fvd(tmp_path / "a", tmp_path / "a", device="cpu", progress=False)
    msg = str(err.value)
    assert str(tmp_path / "weights" / "i3d_torchscript.pt") in msg
    md5 = hashlib.md5(fvd.I3D_URL.encode()).hexdigest()
    assert md5 == "5780f6fd48bed6b4f055c5cac089dbee"  # StyleGAN-V's cache name prefix (spec)
    assert str(tmp_path / "dnnlib" / "downloads" / f"{md5}_i3d_torchscript.pt") in msg
    assert fvd.I3D_URL in msg and "no SHA-256 is known" in msg and "put it at" in msg


def test_detector_found_in_stylegan_v_cache(env, tmp_path, detector_file):
    cached = tmp_path / "dnnlib" / "downloads" / "5780f6fd48bed6b4f055c5cac089dbee_i3d_torchscript.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(detector_file.read_bytes())
    assert fvd.find_detector() == cached
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    module, info = fvd.load_detector(expected_sha256=digest)
    assert info["path"] == str(cached) and info["sha256"] == digest and info["verified_by"] == "fvd.detector_sha256"
    assert info["matches_third_party_copy"] is False and info["known_sha256"] is None
    assert module(torch.zeros(1, 3, 16, 8, 8, dtype=torch.uint8), rescale=True, resize=True,
                  return_features=True).shape == (1, 6)


def test_detector_is_verified_before_torchscript_loads_it(env, tmp_path, detector_file, monkeypatch):
    """A TorchScript file runs its own code: only the known copy (by git blob id) or the file whose
    SHA-256 the user pinned is loaded; anything else is refused before torch.jit.load sees it."""
    placed = tmp_path / "weights" / "i3d_torchscript.pt"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(detector_file.read_bytes())
    digest = hashlib.sha256(placed.read_bytes()).hexdigest()
    loads = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    with pytest.raises(fvd.UnverifiedDetectorError) as err:  # not the known copy, nothing pinned
        fvd.load_detector()
    assert str(placed) in str(err.value) and f"fvd.detector_sha256: {digest}" in str(err.value)
    with pytest.raises(fvd.UnverifiedDetectorError, match="differs from fvd.detector_sha256"):
        fvd.load_detector(expected_sha256="0" * 64)
    assert loads == [], "an unverified file reached torch.jit.load"

    _, info = fvd.load_detector(expected_sha256=digest.upper())  # pinned by the user
    assert info["verified_by"] == "fvd.detector_sha256" and len(loads) == 1
    monkeypatch.setattr(fvd, "I3D_THIRD_PARTY_GIT_BLOB_SHA1", fvd.git_blob_sha1(placed))  # as if the known copy
    _, info = fvd.load_detector()
    assert info["matches_third_party_copy"] is True and info["verified_by"].startswith("git blob id")


def test_detector_download_with_file_url(env, tmp_path, detector_file):
    digest = hashlib.sha256(detector_file.read_bytes()).hexdigest()
    env.delenv("SLOTBENCH_OFFLINE")
    env.setattr(fvd, "I3D_URL", detector_file.as_uri())
    env.setattr(fvd, "I3D_SHA256", "0" * 64)
    with pytest.raises(WeightsDigestError):
        fvd.find_detector(progress=False)
    assert not (tmp_path / "weights" / "i3d_torchscript.pt").exists()
    assert not list((tmp_path / "weights").glob(".tmp-*"))
    env.setattr(fvd, "I3D_SHA256", digest)
    path = fvd.find_detector(progress=False)
    assert path == tmp_path / "weights" / "i3d_torchscript.pt"
    assert path.read_bytes() == detector_file.read_bytes()
    fvd.write_video_folder(tmp_path / "a", _videos(3, [16] * 3))
    res = fvd.compute_fvd(tmp_path / "a", tmp_path / "a", device="cpu", progress=False, detector_sha256=digest)
    assert res["detector"]["sha256"] == digest and abs(res["fvd"]) < 1e-6


def test_git_blob_sha1(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert fvd.git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# ---------------------------------------------------------------------------- the original script
FAKE_SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    # what the real script prints with --verbose 1 (dnnlib.Logger also sends stderr to stdout)
    print("Real data options:")
    print({"class_name": "training.dataset.VideoFramesFolderDataset", "path": sys.argv[2]})
    print("Fake data options:")
    print("Launching processes...")
    print("Calculating fvd2048_16f...")
    print("dataset features items 8      time 0s        ms/item 1.00")
    print("warning: something on stderr", file=sys.stderr)
    record = {"argv": sys.argv[1:], "cwd": os.getcwd(),
              "dnnlib": os.environ.get("DNNLIB_CACHE_DIR"),
              "cached": sorted(os.listdir(os.path.join(os.environ["DNNLIB_CACHE_DIR"], "downloads")))
                        if os.environ.get("DNNLIB_CACHE_DIR") else None}
    with open(os.environ["FAKE_RECORD"], "w") as fh:
        json.dump(record, fh)
    if os.environ.get("FAKE_FAIL"):
        raise RuntimeError("CUDA error: no kernel image is available")
    if not os.environ.get("FAKE_SILENT"):
        result = dict(results={"fvd2048_16f": 123.456}, metric="fvd2048_16f", total_time=113.3,
                      total_time_str="1m 53s", num_gpus=1)
        print(json.dumps(dict(result, snapshot_pkl=None, timestamp=time.time())))
    print()
    print("Exiting...")
''')


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    root = tmp_path / "stylegan-v"
    script = root / "src" / "scripts" / "calc_metrics_for_dataset.py"
    script.parent.mkdir(parents=True)
    script.write_text(FAKE_SCRIPT)
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    for d in ("gt_vids", "comp_vids"):
        (tmp_path / "eval" / d / "0").mkdir(parents=True)
    return root


def test_run_stylegan_v_arguments_and_parsing(checkout, tmp_path, monkeypatch, detector_file):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(fvd.UnverifiedDetectorError):  # checked before the script runs
        fvd.run_stylegan_v(checkout, "eval/gt_vids/", "eval/comp_vids", detector_path=detector_file)
    assert not (tmp_path / "record.json").exists()
    digest = hashlib.sha256(detector_file.read_bytes()).hexdigest()
    res = fvd.run_stylegan_v(checkout, "eval/gt_vids/", "eval/comp_vids", detector_path=detector_file,
                             detector_sha256=digest)
    assert res["detector"]["sha256"] == digest
    assert res["fvd"] == 123.456 and res["metric"] == "fvd2048_16f"
    assert res["results"] == {"fvd2048_16f": 123.456} and res["num_gpus"] == 1
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["cwd"] == str(checkout.resolve())
    assert record["argv"] == [
        "--real_data_path", str(tmp_path / "eval" / "gt_vids"),  # absolute, no trailing slash
        "--fake_data_path", str(tmp_path / "eval" / "comp_vids"),
        "--mirror", "1", "--gpus", "1", "--resolution", "128", "--metrics", "fvd2048_16f",
        "--verbose", "1", "--use_cache", "0",
    ]
    assert record["cached"] == ["5780f6fd48bed6b4f055c5cac089dbee_i3d_torchscript.pt"]
    assert res["command"][1] == os.path.join("src", "scripts", "calc_metrics_for_dataset.py")
    assert res["stylegan_v_commit"] is None  # not a git checkout


def test_run_stylegan_v_failures(checkout, tmp_path, monkeypatch):
    real, fake = tmp_path / "eval" / "gt_vids", tmp_path / "eval" / "comp_vids"
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(RuntimeError, match="(?s)exited with status 1.*no kernel image"):
        fvd.run_stylegan_v(checkout, real, fake)
    monkeypatch.delenv("FAKE_FAIL")
    monkeypatch.setenv("FAKE_SILENT", "1")
    with pytest.raises(RuntimeError, match="no JSON result line"):
        fvd.run_stylegan_v(checkout, real, fake)
    with pytest.raises(FileNotFoundError, match="calc_metrics_for_dataset.py"):
        fvd.run_stylegan_v(tmp_path, real, fake)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        fvd.run_stylegan_v(checkout, real, tmp_path / "missing")


def test_parse_output_variants():
    runs = {"results": {"fvd2048_16f_run01": 10.0, "fvd2048_16f_run02": 12.0, "fvd2048_16f_mean": 11.0,
                        "fvd2048_16f_std": 1.0}, "metric": "fvd2048_16f", "total_time": 1.0,
            "total_time_str": "1s", "num_gpus": 1, "snapshot_pkl": None, "timestamp": 1.0}
    other = dict(runs, metric="fid50k_full", results={"fid50k_full": 3.0})
    text = "noise\n{not json}\n" + json.dumps(runs) + "\n" + json.dumps(other) + "\n"
    parsed = fvd.parse_stylegan_v_output(text)
    assert parsed["fvd"] == 11.0 and parsed["fvd_std"] == 1.0
    assert fvd.parse_stylegan_v_output(text, "fid50k_full")["results"] == {"fid50k_full": 3.0}
    with pytest.raises(ValueError, match="no JSON result line"):
        fvd.parse_stylegan_v_output("Exiting...\n")


def test_reference_constants():
    assert fvd.I3D_URL == "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
    assert fvd.DETECTOR_KWARGS == {"rescale": True, "resize": True, "return_features": True}
    assert fvd.NUM_FRAMES_IN_BATCH[128] // fvd.NUM_FRAMES == 8
    assert fvd.I3D_SHA256 is None  # not published; the digest used is recorded per result
    assert sys.executable  # the runner's default interpreter
