"""MOVi-Solid / MOVi-Tex release PNGs: PIL against OpenCV (slotbench's reader), at equal pixels
(a benchmark, not a test). It decided the move of :mod:`slotbench.data.movi_release` from PIL to
OpenCV.

1. Writes ``--videos`` folders in the STEVE release layout (``%08d_image.png`` RGB frames and ten
   ``%08d_mask_%02d.png`` masks per frame, 24 frames of 128 x 128, textured `shapes` look, 3-10
   objects), the masks as the release writes them (``torchvision.utils.save_image``: 8-bit RGB,
   0 / 255, equal channels), with PIL's default PNG compression. Twice: the frames as generated
   (flat regions, ~3 KB per PNG) and with Gaussian pixel noise (sigma ``--noise``, default 6 grey
   levels), whose PNGs are about the size of rendered frames (~30 KB), since the decode cost
   grows with the compressed size.
2. Reads every video with :func:`read_video_pil` (the PIL reader slotbench had: ``Image.open``,
   ``convert``, the mode, size and channel checks) and with
   :func:`slotbench.data.movi_release.read_video` (``cv2.imdecode`` with the same checks), and
   compares the arrays (video and merged ids).
3. Times both, passes interleaved (PIL, OpenCV, PIL, ...) so that a change of load hits both
   alike; reports the median of ``--repeats`` passes after a warm-up, and the decode alone
   (``np.asarray(Image.open(p))`` against ``cv2.imread(p, IMREAD_UNCHANGED)``) per file kind.
   OpenCV runs with ``cv2.setNumThreads(1)`` (a PNG decode is single-threaded in both).

Writes ``bench/results/movi_png_read.json`` and ``bench/results/movi_png_read.md``.

Usage: ``python bench/bench_movi_png_read.py [--videos 8] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

from slotbench.data import movi_release  # noqa: E402
from slotbench.data.storage import DataError  # noqa: E402
from slotbench.data.synthetic import DEFAULT_CONFIG, generate_split  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RES, FRAMES, NUM_MASKS = 128, 24, 10
PIL_MASK_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


def write_release(root: Path, num_videos: int, noise: float) -> list[Path]:
    """``num_videos`` release folders under ``root`` (frames with Gaussian noise of sigma ``noise``
    grey levels; 0 = none); returns them in order."""
    cfg = {**DEFAULT_CONFIG, "look": "textured", "resolution": RES, "video_len": FRAMES,
           "min_objects": 3, "max_objects": NUM_MASKS, "min_size": 0.1, "max_size": 0.25}
    video, seg, _ = generate_split(cfg, num_videos, seed=0)
    if noise:
        rng = np.random.default_rng(0)
        video = np.clip(video + rng.normal(0.0, noise, video.shape), 0, 255).round().astype(np.uint8)
    folders = []
    for i in range(num_videos):
        folder = root / f"{i:08d}"
        folder.mkdir(parents=True)
        for t in range(FRAMES):
            Image.fromarray(video[i, t]).save(folder / movi_release.FRAME.format(t=t))
            for k in range(NUM_MASKS):
                mask = np.where(seg[i, t] == k + 1, 255, 0).astype(np.uint8)
                Image.fromarray(np.repeat(mask[..., None], 3, axis=2)).save(folder / movi_release.MASK.format(t=t, k=k))
        folders.append(folder)
    return folders


def _pil_image(path: Path, resolution: int) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError as err:
        raise DataError(f"{path}: missing") from err
    except Exception as err:
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if image.size != (resolution, resolution):
        raise DataError(f"{path}: {image.size[0]}x{image.size[1]} pixels, expected {resolution}x{resolution}")
    return image


def read_video_pil(folder: Path, video_len: int, resolution: int, num_masks: int
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """The PIL reader :func:`slotbench.data.movi_release.read_video` used before it moved to OpenCV
    (``Image.open`` + ``load``, ``convert("RGB")`` for frames; masks by mode: ``convert("L")`` for
    1-bit / grey, else ``convert("RGB")`` with the equal-channel check), with the same checks."""
    video = np.empty((video_len, resolution, resolution, 3), dtype=np.uint8)
    seg = np.empty((video_len, resolution, resolution), dtype=np.uint8)
    masks = np.empty((num_masks, resolution, resolution), dtype=np.uint8)
    for t in range(video_len):
        with _pil_image(folder / movi_release.FRAME.format(t=t), resolution) as image:
            video[t] = np.asarray(image.convert("RGB"), dtype=np.uint8)
        for k in range(num_masks):
            path = folder / movi_release.MASK.format(t=t, k=k)
            with _pil_image(path, resolution) as image:
                if image.mode not in PIL_MASK_MODES:
                    raise DataError(f"{path}: image mode {image.mode!r}, expected an 8-bit mask")
                if image.mode in ("1", "L", "LA"):
                    mask = np.asarray(image.convert("L"), dtype=np.uint8)
                else:
                    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
                    mask = rgb[..., 0]
                    if not (np.array_equal(mask, rgb[..., 1]) and np.array_equal(mask, rgb[..., 2])):
                        raise DataError(f"{path}: a colour mask (its RGB channels differ)")
            if mask.max() == 1:
                raise DataError(f"{path}: the mask stores its foreground as 1, not 255")
            masks[k] = mask
        seg[t] = movi_release.merge_masks(masks)
    num_objects = int(np.count_nonzero(np.bincount(seg.ravel(), minlength=256)[1:]))
    return video, seg, num_objects


def _pass(reader, folders: list[Path]) -> float:
    start = time.perf_counter()
    for folder in folders:
        reader(folder, FRAMES, RES, NUM_MASKS)
    return time.perf_counter() - start


def _decode_pass(decode, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        decode(path)
    return time.perf_counter() - start


def _interleaved(runs: dict, repeats: int) -> dict[str, list[float]]:
    """``{name: [seconds per pass]}`` of ``runs`` (``name -> callable``), after one warm-up pass each."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 1):
        for name, run in runs.items():
            seconds = run()
            if repeat:
                times[name].append(seconds)
    return times


def measure(folders: list[Path], root: Path, repeats: int) -> dict:
    """Equality, whole-reader and decode-only timings of the release folders ``folders`` under ``root``."""
    equal = True
    for folder in folders:
        pil = read_video_pil(folder, FRAMES, RES, NUM_MASKS)
        opencv = movi_release.read_video(folder, FRAMES, RES, NUM_MASKS)
        equal &= all(np.array_equal(a, b) for a, b in zip(pil, opencv))
    times = _interleaved({"pil": lambda: _pass(read_video_pil, folders),
                          "opencv": lambda: _pass(movi_release.read_video, folders)}, repeats)
    reader = {name: {"median_s": round(statistics.median(t), 4), "passes_s": [round(x, 4) for x in t],
                     "videos_per_s": round(len(folders) / statistics.median(t), 2)} for name, t in times.items()}
    out = {"pixels_equal": bool(equal), "reader": reader,
           "speedup_opencv": round(reader["pil"]["median_s"] / reader["opencv"]["median_s"], 3),
           "mean_file_bytes": {}, "decode_us_per_file": {}}
    for kind, pattern in (("frame", "*_image.png"), ("mask", "*_mask_*.png")):
        files = sorted(root.rglob(pattern))
        decode = _interleaved({
            "pil": lambda files=files: _decode_pass(lambda p: np.asarray(Image.open(p)), files),
            "opencv": lambda files=files: _decode_pass(lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED), files),
        }, repeats)
        out["mean_file_bytes"][kind] = round(sum(p.stat().st_size for p in files) / len(files))
        out["decode_us_per_file"][kind] = {name: round(1e6 * statistics.median(t) / len(files), 1)
                                           for name, t in decode.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noise", type=float, default=6.0, help="sigma of the frames' pixel noise, grey levels")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    sets = {}
    for name, noise in (("generated", 0.0), ("noisy", args.noise)):
        with tempfile.TemporaryDirectory() as tmp:
            sets[name] = {"frame_noise_sigma": noise,
                          **measure(write_release(Path(tmp), args.videos, noise), Path(tmp), args.repeats)}
    result = {
        "videos": args.videos, "frames": FRAMES, "resolution": RES, "masks_per_frame": NUM_MASKS,
        "files_per_video": FRAMES * (1 + NUM_MASKS), "repeats": args.repeats,
        "frame_sets": sets,
        "versions": {"opencv": cv2.__version__, "pillow": Image.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_1min_at_end": round(os.getloadavg()[0], 2)},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "movi_png_read.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "movi_png_read.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    parts = [
        f"# MOVi-Solid/Tex release PNGs: PIL vs OpenCV ({r['videos']} videos of {r['frames']} x "
        f"{r['resolution']} x {r['resolution']}, {r['masks_per_frame']} masks per frame)\n\n"
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores (1-min load at the end: "
        f"{r['machine']['load_1min_at_end']}); OpenCV {r['versions']['opencv']} (1 thread), Pillow "
        f"{r['versions']['pillow']}. Date: {r['date']}. Whole reader: the PIL reader slotbench had against "
        f"`movi_release.read_video` on `cv2.imdecode` (the same checks), {r['files_per_video']} files per video, "
        f"median of {r['repeats']} interleaved passes.\n"
    ]
    for name, m in r["frame_sets"].items():
        rows = "\n".join(f"| {reader} | {v['median_s']} | {v['videos_per_s']} |" for reader, v in m["reader"].items())
        decode = "\n".join(f"| {kind} ({m['mean_file_bytes'][kind]} B) | {d['pil']} | {d['opencv']} |"
                           for kind, d in m["decode_us_per_file"].items())
        parts.append(
            f"\n## Frames {name} (pixel noise sigma {m['frame_noise_sigma']})\n\n"
            f"Pixels equal (frames and merged ids of every video): **{m['pixels_equal']}**. "
            f"OpenCV / PIL speed of the whole reader: **{m['speedup_opencv']}x**.\n\n"
            f"| reader | seconds per pass | videos/s |\n|---|---|---|\n{rows}\n\n"
            f"Decode alone, microseconds per file (mean PNG size):\n\n"
            f"| file | PIL | OpenCV |\n|---|---|---|\n{decode}\n"
        )
    return "".join(parts)


if __name__ == "__main__":
    main()
