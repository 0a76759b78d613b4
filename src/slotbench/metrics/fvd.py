"""FVD with StyleGAN-V's ``fvd2048_16f`` protocol, in process, and a runner for the original.

The protocol (``universome/stylegan-v`` at 3fecd69, ``src/scripts/calc_metrics_for_dataset.py``
-> ``metric_main.fvd2048_16f`` -> ``frechet_video_distance.compute_fvd``; facts in
``reference/fvd-lpips-spec.md``), as implemented by :func:`compute_fvd`:

* **Data**: two folders in StyleGAN-V's frame layout, ``<root>/<video>/<frame image>`` (exactly
  two levels; see :class:`VideoFolder`). StyleGAN-V orders video folders and frame files by
  plain **string** sort of their names (``order="stylegan-v"``, the default here), so the
  unpadded ``{t}.png`` names that SlotDiffusion (and :func:`write_video_folder` by default)
  write are read in the order 0, 1, 10, ..., 19, 2, 20, ... ``order="numeric"`` reads them in
  temporal order instead (not the protocol; recorded in the result).
* **Videos**: one clip per video, the **first** ``min(#videos, 2048)`` videos in that order
  (not a random subset). Real videos shorter than 16 frames are dropped *before* that cut; a
  fake video shorter than 16 frames is an error (StyleGAN-V asserts).
* **Clips**: 16 consecutive frames (``subsample_factor`` 1). Real clips start at an offset
  drawn uniformly from ``[0, L - 16]`` (Python's ``random.randint``); fake clips start at 0.
  StyleGAN-V draws the real offsets from unseeded DataLoader workers, so its FVD changes from
  run to run; here they come from ``random.Random(seed)`` and are returned in the result.
* **Resolution / mirror**: frames are passed at their stored size (``--resolution`` only sets
  the batch size, 128 // 16 = 8 clips at 128); the detector resizes them itself.
  ``--mirror 1`` has no effect: ``fvd2048_16f`` forces ``xflip=False`` on the real data.
* **Detector**: the TorchScript I3D ``i3d_torchscript.pt`` (:data:`I3D_URL`), called on uint8
  ``[B, 3, 16, H, W]`` clips with ``rescale=True, resize=True, return_features=True``
  (:data:`DETECTOR_KWARGS`), giving ``[B, 400]`` pre-softmax Kinetics-400 logits. Grayscale
  frames are repeated to 3 channels. TF32 is switched off while it runs, as in StyleGAN-V.
* **Statistics**: features as float32 on the CPU, accumulated in float64; mean and the
  **biased** covariance (divided by n, not n - 1).
* **Distance**: ``||mu_f - mu_r||^2 + tr(S_f + S_r - 2 sqrt(S_f S_r))``, computed with
  :func:`slotbench.metrics.frechet_distance` on features whose deviations from their mean are
  scaled by ``sqrt((n - 1) / n)`` (so its n - 1 covariance equals the biased one, the mean is
  unchanged). StyleGAN-V uses ``scipy.linalg.sqrtm`` and keeps the real part; the two agree up
  to round-off for PSD covariances (tested), except that tiny negative values are clamped to 0.

Detector file: ``i3d_torchscript.pt`` from :data:`I3D_URL` (the URL hard-coded in StyleGAN-V).
**No SHA-256 of it is published**, and the file cannot be downloaded on this project's
machines, so :data:`I3D_SHA256` is ``None``. A TorchScript file carries code (its ``forward``),
so the file is pinned before it is loaded (:func:`verify_detector`): either it is the known
copy, committed as ``fvd/styleganv/i3d_torchscript.pt`` in
``JunyaoHu/common_metrics_on_video_quality`` (git blob id :data:`I3D_THIRD_PARTY_GIT_BLOB_SHA1`,
a SHA-1 of the bytes), or its SHA-256 equals the one the user pins in params
(``fvd.detector_sha256``, after checking the file themselves); any other file is refused,
unloaded, with its digests and the line to add. Every result records the file's path, size,
SHA-256 and blob id (``detector``) so that runs can be compared.
Lookup (:func:`find_detector`): an explicit path, else ``$SLOTBENCH_WEIGHTS/i3d_torchscript.pt``,
else StyleGAN-V's own download cache (``$DNNLIB_CACHE_DIR/downloads/<md5(url)>_*`` or
``~/.cache/dnnlib/downloads/5780f6fd48bed6b4f055c5cac089dbee_*``, used when exactly one file
matches, as dnnlib does), else a download to ``$SLOTBENCH_WEIGHTS`` (unless
``$SLOTBENCH_OFFLINE``).

:func:`run_stylegan_v` runs the original script instead (needs a CUDA GPU and a checkout of
``universome/stylegan-v``) and parses the JSON line it prints.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ..io import atomic_path
from ..weights import MissingWeightsError, describe_file, find_weights
from .frechet import frechet_distance

__all__ = [
    "METRIC",
    "I3D_FILENAME",
    "I3D_URL",
    "I3D_SHA256",
    "I3D_THIRD_PARTY_GIT_BLOB_SHA1",
    "DETECTOR_KWARGS",
    "MAX_VIDEOS",
    "NUM_FRAMES",
    "NUM_FRAMES_IN_BATCH",
    "REFERENCE_ARGS",
    "MissingWeightsError",
    "VideoFolder",
    "read_video_folder",
    "write_video_folder",
    "to_uint8_frames",
    "sample_clips",
    "find_detector",
    "verify_detector",
    "UnverifiedDetectorError",
    "load_detector",
    "detector_features",
    "feature_stats",
    "fvd_from_features",
    "compute_fvd",
    "run_stylegan_v",
    "parse_stylegan_v_output",
    "git_blob_sha1",
]

METRIC = "fvd2048_16f"
I3D_FILENAME = "i3d_torchscript.pt"
#: Hard-coded in StyleGAN-V's ``frechet_video_distance.py``.
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
#: Not published anywhere found; see the module docstring.
I3D_SHA256: str | None = None
#: Git blob id of the third-party copy in JunyaoHu/common_metrics_on_video_quality
#: (``fvd/styleganv/i3d_torchscript.pt``); identity with the Dropbox file is unverified.
I3D_THIRD_PARTY_GIT_BLOB_SHA1 = "93daef59c7ae0e9e8f76225521407e60cbafa6aa"
DETECTOR_KWARGS = {"rescale": True, "resize": True, "return_features": True}
MAX_VIDEOS = 2048
NUM_FRAMES = 16
SUBSAMPLE_FACTOR = 1
#: Frames per batch by ``--resolution``; clips per batch = value // 16.
NUM_FRAMES_IN_BATCH = {128: 128, 256: 128, 512: 64, 1024: 32}
#: The seed's (SlotDiffusion docs) command-line arguments besides the two paths.
REFERENCE_ARGS = {"mirror": True, "gpus": 1, "resolution": 128, "metrics": METRIC,
                  "verbose": True, "use_cache": False}
SCRIPT = Path("src") / "scripts" / "calc_metrics_for_dataset.py"
ORDERS = ("stylegan-v", "numeric")


# ---------------------------------------------------------------------------- frame folders
def _image_extensions() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def _sort(names: Iterable[str], order: str, what: str, key_of=lambda n: n) -> list[str]:
    names = list(names)
    if order == "stylegan-v":
        return sorted(names)
    if order == "numeric":
        bad = [n for n in names if not key_of(n).isdigit()]
        if bad:
            raise ValueError(f"order='numeric' needs integer {what} names, got {bad[0]!r}")
        return sorted(names, key=lambda n: (int(key_of(n)), n))
    raise ValueError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")


@dataclass
class VideoFolder:
    """A StyleGAN-V frame folder: ``<root>/<video dir>/<frame image>``, scanned, not loaded.

    The rules of StyleGAN-V's ``VideoFramesFolderDataset`` for a directory: an image file
    directly in the root, a sub-directory inside a video directory or a non-image file inside
    a video directory is an error; non-image files in the root and empty video directories are
    ignored. Zip archives are not supported here.

    Attributes:
        root: the folder.
        names: video directory names, in ``order``.
        frames: per video, its frame files in ``order``.
        order: ``"stylegan-v"`` (string sort, the protocol) or ``"numeric"`` (integer names).
    """

    root: Path
    names: list[str]
    frames: list[list[Path]]
    order: str = "stylegan-v"
    _shape: tuple | None = field(default=None, repr=False)

    @classmethod
    def scan(cls, root: str | os.PathLike, order: str = "stylegan-v") -> VideoFolder:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory of video frame folders")
        exts = _image_extensions()
        videos: dict[str, list[str]] = {}
        for entry in os.scandir(root):
            suffix = os.path.splitext(entry.name)[1].lower()
            if entry.is_dir():
                files = []
                for sub in os.scandir(entry.path):
                    if sub.is_dir():
                        raise ValueError(f"{sub.path}: video folders must hold frame images only "
                                         f"(the layout is exactly <root>/<video>/<frame>)")
                    if os.path.splitext(sub.name)[1].lower() not in exts:
                        raise ValueError(f"{sub.path}: not an image file inside a video folder "
                                         f"(StyleGAN-V refuses it)")
                    files.append(sub.name)
                if files:
                    videos[entry.name] = files
            elif suffix in exts:
                raise ValueError(f"{entry.path}: frame images must be inside video folders")
        if not videos:
            raise ValueError(f"{root}: no video folders with frames found")
        names = _sort(videos, order, "video folder")
        frames = [[root / n / f for f in _sort(videos[n], order, "frame file",
                                               key_of=lambda s: os.path.splitext(s)[0])]
                  for n in names]
        return cls(root, names, frames, order)

    def __len__(self) -> int:
        return len(self.names)

    def lengths(self) -> list[int]:
        return [len(f) for f in self.frames]

    def load(self, index: int, frame_indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames of video ``index`` as decoded by Pillow (``np.array(Image.open(f))``):
        uint8 ``[T, H, W, C]`` (C = 1 for grayscale)."""
        files = self.frames[index]
        chosen = files if frame_indices is None else [files[i] for i in frame_indices]
        arrays = []
        for f in chosen:
            with Image.open(f) as im:
                a = np.array(im)
            if a.ndim == 2:
                a = a[:, :, None]
            arrays.append(a)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"{self.root / self.names[index]}: frames of different shapes {sorted(shapes)}")
        return np.stack(arrays)


def read_video_folder(path: str | os.PathLike, order: str = "numeric") -> dict[str, np.ndarray]:
    """All videos of a StyleGAN-V frame folder, ``{video name: uint8 [T, H, W, C]}``.

    ``order="numeric"`` (default) sorts the integer-named videos and frames (``{t}.png``)
    numerically, i.e. in temporal order; ``order="stylegan-v"`` sorts names as strings, as
    StyleGAN-V does (see the module docstring).
    """
    folder = VideoFolder.scan(path, order)
    return {name: folder.load(i) for i, name in enumerate(folder.names)}


def to_uint8_frames(x: Tensor) -> Tensor:
    """Model output ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]``, as SlotDiffusion
    saves frames: ``round(clamp(x * 0.5 + 0.5, 0, 1) * 255)`` in float32 (round half to even,
    like ``np.round``)."""
    y = torch.round((x.float() * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return y.movedim(-3, -1)


def _write_png(path: Path, frame: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(frame)).save(tmp, format="PNG")


def write_video_folder(
    root: str | os.PathLike,
    videos: Mapping[str | int, np.ndarray | Tensor] | Sequence[np.ndarray | Tensor],
    zero_pad: int = 0,
    progress: bool = False,
) -> list[Path]:
    """Write videos as ``root/{name}/{t}.png`` (8-bit RGB PNG, each file atomically).

    Args:
        videos: ``{name: video}`` or a sequence (names 0, 1, ...); a video is uint8
            ``[T, H, W, 3]`` (NumPy or torch) or a float tensor ``[T, 3, H, W]`` in [-1, 1]
            (converted by :func:`to_uint8_frames`).
        zero_pad: frame-name width (0: ``{t}.png`` unpadded, as SlotDiffusion writes them).

    Returns:
        The video directories written.
    """
    root = Path(root)
    items = videos.items() if isinstance(videos, Mapping) else enumerate(videos)
    written = []
    for name, video in tqdm(list(items), desc=f"write {root.name}", unit="video", disable=not progress):
        if isinstance(video, Tensor):
            video = (to_uint8_frames(video) if video.is_floating_point() else video).cpu().numpy()
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"video {name!r}: expected uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
        vdir = root / str(name)
        vdir.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(video):
            name_t = f"{t:0{zero_pad}d}" if zero_pad else str(t)
            _write_png(vdir / f"{name_t}.png", frame)
        written.append(vdir)
    return written


# ---------------------------------------------------------------------------- clips
def sample_clips(
    lengths: Sequence[int],
    real: bool,
    rng: random.Random | None = None,
    num_frames: int = NUM_FRAMES,
    subsample_factor: int = SUBSAMPLE_FACTOR,
    max_videos: int = MAX_VIDEOS,
) -> list[tuple[int, list[int]]]:
    """Which frames of which videos form the clips: ``[(video index, frame indices), ...]``.

    Real side: videos shorter than ``num_frames * subsample_factor`` are dropped, the first
    ``max_videos`` of the rest are used, each with a start offset uniform in
    ``[0, L - num_frames * s + s - 1]`` from ``rng.randint``. Fake side: the first
    ``max_videos`` videos, offset 0; a too-short fake video raises ``ValueError``.
    """
    span = num_frames * subsample_factor
    plan = []
    if real:
        if rng is None:
            raise ValueError("real clips need an rng for their random offsets")
        kept = [i for i, n in enumerate(lengths) if n >= span][:max_videos]
        for i in kept:
            offset = rng.randint(0, lengths[i] - span + subsample_factor - 1)
            plan.append((i, [offset + k * subsample_factor for k in range(num_frames)]))
    else:
        for i in range(min(len(lengths), max_videos)):
            if lengths[i] < span:
                raise ValueError(f"fake video {i} has {lengths[i]} frames; {METRIC} needs at least {span}")
            plan.append((i, [k * subsample_factor for k in range(num_frames)]))
    return plan


# ---------------------------------------------------------------------------- detector
def git_blob_sha1(path: str | os.PathLike) -> str:
    """Git's blob id of a file (SHA-1 of ``b"blob <size>\\0" + bytes``)."""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _dnnlib_cache_files() -> list[Path]:
    """StyleGAN-V's cached copy of the detector, when exactly one file matches (as dnnlib)."""
    if os.environ.get("DNNLIB_CACHE_DIR"):
        cache = Path(os.environ["DNNLIB_CACHE_DIR"])
    else:
        cache = Path(os.environ.get("HOME") or Path.home()) / ".cache" / "dnnlib"
    md5 = hashlib.md5(I3D_URL.encode("utf-8")).hexdigest()
    matches = glob.glob(str(cache / "downloads" / f"{md5}_*"))
    return [Path(matches[0])] if len(matches) == 1 else [cache / "downloads" / f"{md5}_{I3D_FILENAME}"]


def find_detector(path: str | os.PathLike | None = None, download: bool = True,
                  progress: bool = True) -> Path:
    """Locate (or download) ``i3d_torchscript.pt``; see the module docstring for the order.

    Raises:
        MissingWeightsError: not found and not downloadable; the message lists the paths
            searched, the URL and where to put the file.
    """
    return find_weights(
        I3D_FILENAME, I3D_URL, I3D_SHA256, (), explicit_path=path, download=download,
        extra_files=_dnnlib_cache_files(), progress=progress,
        what=f"FVD detector {I3D_FILENAME} (StyleGAN-V's TorchScript I3D)",
        hint="StyleGAN-V's own download cache (~/.cache/dnnlib/downloads, or "
             "$DNNLIB_CACHE_DIR/downloads) is searched too. No SHA-256 of this file is "
             "published; the digest of the file used is recorded with each FVD.",
    )


class UnverifiedDetectorError(ValueError):
    """A detector file that is neither the known copy nor the one pinned by ``fvd.detector_sha256``."""


def verify_detector(file: str | os.PathLike, expected_sha256: str | None = None) -> dict:
    """Check a detector file before anything loads it; return its description.

    Accepted: with ``expected_sha256`` (``fvd.detector_sha256``), a file of exactly that SHA-256;
    without it, the known copy (git blob id :data:`I3D_THIRD_PARTY_GIT_BLOB_SHA1`).

    Returns:
        ``{"path", "bytes", "sha256", "git_blob_sha1", "matches_third_party_copy", "verified_by",
        "url", "known_sha256"}``.
    Raises:
        UnverifiedDetectorError: any other file; the message names it, gives its SHA-256 and
            says how to pin it.
    """
    info = describe_file(file)
    info["git_blob_sha1"] = git_blob_sha1(file)
    info["matches_third_party_copy"] = info["git_blob_sha1"] == I3D_THIRD_PARTY_GIT_BLOB_SHA1
    info["url"] = I3D_URL
    info["known_sha256"] = I3D_SHA256
    if expected_sha256 is not None:
        expected = expected_sha256.strip().lower()
        if info["sha256"] != expected:
            raise UnverifiedDetectorError(
                f"{file}: SHA-256 {info['sha256']} differs from fvd.detector_sha256 {expected}: the file is "
                f"not the one you pinned (corrupt or replaced); not loaded")
        info["verified_by"] = "fvd.detector_sha256"
    elif info["matches_third_party_copy"]:
        info["verified_by"] = f"git blob id {I3D_THIRD_PARTY_GIT_BLOB_SHA1} (the known copy)"
    else:
        raise UnverifiedDetectorError(
            f"{file}: not the known copy of {I3D_FILENAME} (git blob id {info['git_blob_sha1']}, expected "
            f"{I3D_THIRD_PARTY_GIT_BLOB_SHA1}); a TorchScript file runs its own code, so it is not loaded. If it "
            f"is the file from {I3D_URL} and you trust it, pin it in params/defaults.yaml: "
            f"fvd.detector_sha256: {info['sha256']}")
    return info


def load_detector(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                  download: bool = True, progress: bool = True,
                  expected_sha256: str | None = None) -> tuple[torch.jit.ScriptModule, dict]:
    """The TorchScript detector in eval mode on ``device``, loaded only after
    :func:`verify_detector` accepted the file, and the file's description."""
    file = find_detector(path, download, progress)
    info = verify_detector(file, expected_sha256)
    module = torch.jit.load(str(file), map_location=torch.device(device)).eval()
    return module, info


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@torch.no_grad()
def detector_features(
    folder: VideoFolder,
    plan: Sequence[tuple[int, Sequence[int]]],
    detector,
    device: str | torch.device = "cpu",
    batch_size: int = NUM_FRAMES_IN_BATCH[128] // NUM_FRAMES,
    progress: bool = True,
    desc: str = "fvd features",
) -> Tensor:
    """Detector features ``[len(plan), D]`` (float64, CPU) of the planned clips.

    Clips go to the detector as uint8 ``[B, 3, T, H, W]`` with :data:`DETECTOR_KWARGS`; every
    clip must have the shape of the first (as StyleGAN-V asserts).
    """
    feats = []
    shape = None
    with _no_tf32():
        for start in tqdm(range(0, len(plan), batch_size), desc=desc, unit="batch",
                          disable=not progress, dynamic_ncols=True):
            clips = []
            for index, frames in plan[start:start + batch_size]:
                clip = folder.load(index, frames)
                if shape is None:
                    shape = clip.shape
                elif clip.shape != shape:
                    raise ValueError(f"{folder.root / folder.names[index]}: clip shape {clip.shape} "
                                     f"differs from the first clip's {shape}")
                clips.append(clip)
            x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).contiguous()  # B C T H W
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1, 1)
            if x.shape[1] != 3:
                raise ValueError(f"{folder.root}: frames have {x.shape[1]} channels; the detector needs "
                                 f"RGB (write 3-channel PNGs)")
            out = detector(x.to(device), **DETECTOR_KWARGS)
            feats.append(out.detach().float().cpu().double())
    return torch.cat(feats) if feats else torch.zeros(0, 0, dtype=torch.float64)


def feature_stats(feats: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and **biased** covariance (divided by n) in float64, as StyleGAN-V's FeatureStats."""
    x = torch.as_tensor(feats, dtype=torch.float64)
    n = x.shape[0]
    mu = x.sum(0) / n
    sigma = x.T @ x / n - torch.outer(mu, mu)
    return mu.numpy(), sigma.numpy()


def _biased(x: Tensor) -> Tensor:
    """Features whose n - 1 covariance equals ``x``'s biased one (same mean)."""
    n = x.shape[0]
    mu = x.mean(0, keepdim=True)
    return mu + (x - mu) * ((n - 1) / n) ** 0.5


def fvd_from_features(real: Tensor | np.ndarray, fake: Tensor | np.ndarray) -> float:
    """FVD between two feature sets ``[n, D]`` with StyleGAN-V's biased covariance."""
    r = torch.as_tensor(real, dtype=torch.float64)
    f = torch.as_tensor(fake, dtype=torch.float64)
    return frechet_distance(_biased(f), _biased(r))


def compute_fvd(
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    detector=None,
    detector_path: str | os.PathLike | None = None,
    detector_sha256: str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    order: str = "stylegan-v",
    resolution: int = 128,
    mirror: bool = True,
    download: bool = True,
    progress: bool = True,
    return_features: bool = False,
) -> dict:
    """``fvd2048_16f`` between two frame folders (see the module docstring).

    Args:
        real_dir, fake_dir: StyleGAN-V frame folders (e.g. ``gt_vids`` and ``recon_vids``).
        detector: a loaded detector module (tests); else :func:`load_detector`.
        detector_path: explicit detector file.
        detector_sha256: the SHA-256 the detector file must have (``fvd.detector_sha256``); by
            default it must be the known copy (:func:`verify_detector`).
        device: default CUDA when available.
        seed: seeds the real clips' offsets (StyleGAN-V leaves them unseeded).
        order: ``"stylegan-v"`` (string sort, the protocol) or ``"numeric"``.
        resolution: StyleGAN-V's ``--resolution``: only chooses the batch size (clips per
            batch = ``NUM_FRAMES_IN_BATCH[resolution] // 16``); frames are not resized here.
        mirror: StyleGAN-V's ``--mirror``; recorded, and like there without effect.
        return_features: also return the features (``real_features``/``fake_features``).

    Returns:
        JSON-ready ``{"fvd", "metric", "num_real_videos", "num_fake_videos", "real_clip_starts",
        "clip_frames", "seed", "order", ...}``.
    """
    if resolution not in NUM_FRAMES_IN_BATCH:
        raise ValueError(f"resolution must be one of {sorted(NUM_FRAMES_IN_BATCH)} (StyleGAN-V's "
                         f"batch-size table), got {resolution}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = {"path": None, "note": "detector module passed in"}
    if detector is None:
        detector, info = load_detector(detector_path, device, download, progress, detector_sha256)
    real = VideoFolder.scan(real_dir, order)
    fake = VideoFolder.scan(fake_dir, order)
    real_plan = sample_clips(real.lengths(), True, random.Random(seed))
    fake_plan = sample_clips(fake.lengths(), False)
    if len(real_plan) < 2 or len(fake_plan) < 2:
        raise ValueError(f"FVD needs at least 2 clips per side, got {len(real_plan)} real and "
                         f"{len(fake_plan)} fake")
    batch = NUM_FRAMES_IN_BATCH[resolution] // NUM_FRAMES
    real_feats = detector_features(real, real_plan, detector, device, batch, progress, "fvd real")
    fake_feats = detector_features(fake, fake_plan, detector, device, batch, progress, "fvd fake")
    result = {
        "fvd": fvd_from_features(real_feats, fake_feats),
        "metric": METRIC,
        "implementation": "slotbench (in-process re-implementation of StyleGAN-V's protocol)",
        "num_real_videos": len(real_plan),
        "num_fake_videos": len(fake_plan),
        "real_videos_dropped_short": sum(n < NUM_FRAMES for n in real.lengths()),
        "real_clip_starts": {real.names[i]: frames[0] for i, frames in real_plan},
        "clip_frames": NUM_FRAMES,
        "subsample_factor": SUBSAMPLE_FACTOR,
        "seed": seed,
        "order": order,
        "resolution_arg": resolution,
        "clips_per_batch": batch,
        "mirror_arg": mirror,
        "mirror_effective": False,
        "feature_dim": int(real_feats.shape[1]),
        "covariance": "biased (divided by n)",
        "detector": info,
        "detector_kwargs": dict(DETECTOR_KWARGS),
        "real_dir": str(Path(real_dir)),
        "fake_dir": str(Path(fake_dir)),
    }
    if return_features:
        result["real_features"], result["fake_features"] = real_feats, fake_feats
    return result


# ---------------------------------------------------------------------------- the original
def parse_stylegan_v_output(text: str, metric: str = METRIC) -> dict:
    """The result JSON line of ``calc_metrics_for_dataset.py`` (the last stdout line that is a
    JSON object whose ``metric`` is ``metric``), with ``fvd`` added: ``results[metric]``, or
    ``results[metric + "_mean"]`` (and ``fvd_std``) with ``--num_runs`` > 1.

    Raises:
        ValueError: no such line.
    """
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("metric") != metric:
            continue
        results = obj.get("results") or {}
        if metric in results:
            obj["fvd"] = float(results[metric])
        elif f"{metric}_mean" in results:
            obj["fvd"] = float(results[f"{metric}_mean"])
            obj["fvd_std"] = float(results[f"{metric}_std"])
        else:
            raise ValueError(f"result line for {metric} has no value: {line}")
        return obj
    raise ValueError(f"no JSON result line for metric {metric!r} in the output")


def _bool(v: bool) -> str:
    return "1" if v else "0"


def run_stylegan_v(
    checkout: str | os.PathLike,
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    *,
    python: str = sys.executable,
    metric: str = METRIC,
    mirror: bool = REFERENCE_ARGS["mirror"],
    gpus: int = REFERENCE_ARGS["gpus"],
    resolution: int = REFERENCE_ARGS["resolution"],
    verbose: bool = REFERENCE_ARGS["verbose"],
    use_cache: bool = REFERENCE_ARGS["use_cache"],
    num_runs: int = 1,
    detector_path: str | os.PathLike | None = None,
    detector_sha256: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> dict:
    """Run StyleGAN-V's ``src/scripts/calc_metrics_for_dataset.py`` with the reference arguments
    (``--mirror 1 --gpus 1 --resolution 128 --metrics fvd2048_16f --verbose 1 --use_cache 0``)
    in ``checkout`` and return its parsed result (see :func:`parse_stylegan_v_output`) plus
    ``command``, ``cwd``, ``stylegan_v_commit`` and ``output_tail``.

    The folders are passed as absolute paths without a trailing slash (StyleGAN-V's depth check
    fails on one). ``detector_path``: a local ``i3d_torchscript.pt``, checked by
    :func:`verify_detector` (with ``detector_sha256``), then placed (symlinked) into a temporary
    dnnlib cache (``DNNLIB_CACHE_DIR``) under the name StyleGAN-V looks for, so the script needs
    no network; its description is returned as ``detector``. Without it, the script finds or
    downloads the file itself, unchecked by slotbench (``detector`` is ``None``).

    Raises:
        FileNotFoundError: no script in ``checkout`` or a folder is missing.
        RuntimeError: the script failed (exit status and the end of its output) or printed no
            result line.
    """
    checkout = Path(checkout).resolve()
    script = checkout / SCRIPT
    if not script.is_file():
        raise FileNotFoundError(f"{script}: not found; pass a checkout of universome/stylegan-v")
    paths = []
    for d in (real_dir, fake_dir):
        p = Path(d).resolve()
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: not a directory")
        paths.append(str(p).rstrip("/") or "/")
    command = [python, str(SCRIPT), "--real_data_path", paths[0], "--fake_data_path", paths[1],
               "--mirror", _bool(mirror), "--gpus", str(gpus), "--resolution", str(resolution),
               "--metrics", metric, "--verbose", _bool(verbose), "--use_cache", _bool(use_cache)]
    if num_runs != 1:
        command += ["--num_runs", str(num_runs)]
    run_env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="slotbench-dnnlib-") as tmp:
        detector = None
        if detector_path is not None:
            src = Path(detector_path).resolve()
            if not src.is_file():
                raise FileNotFoundError(f"{src}: detector file not found")
            detector = verify_detector(src, detector_sha256)
            md5 = hashlib.md5(I3D_URL.encode("utf-8")).hexdigest()
            dst = Path(tmp) / "downloads" / f"{md5}_{I3D_FILENAME}"
            dst.parent.mkdir(parents=True)
            try:
                dst.symlink_to(src)
            except OSError:
                shutil.copyfile(src, dst)
            run_env["DNNLIB_CACHE_DIR"] = tmp
        proc = subprocess.run(command, cwd=checkout, env=run_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    tail = "\n".join(proc.stdout.splitlines()[-40:])
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited with status {proc.returncode}; end of its output:\n{tail}")
    try:
        result = parse_stylegan_v_output(proc.stdout, metric)
    except ValueError as err:
        raise RuntimeError(f"{script}: {err}; end of its output:\n{tail}") from err
    result["command"] = command
    result["cwd"] = str(checkout)
    result["stylegan_v_commit"] = _git_commit(checkout)
    result["output_tail"] = tail
    result["detector"] = detector
    return result


def _git_commit(checkout: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None
