"""MOVi data path: export throughput, size on disk and training-loader throughput, against the
original's JPEG + PNG folders (a benchmark, not a test; needs the `movi` extra).

1. Makes ``--videos`` MOVi-sized videos (24 x 128 x 128, textured `shapes` look, 3-10 objects)
   and writes them as a local TFDS dataset ``movi_e/128x128:1.0.0`` with the MOVi feature spec
   (tests/movi_tfds_fixture.py).
2. Export: runs ``slotbench``'s MOVi-E export on it in a fresh process (no builder class
   registered, the same code path as Kubric's bucket) and times the export call (videos/s).
3. Writes the same videos as the original's folders do (``{t:06d}.jpg`` frames, PIL JPEG
   quality 75; ``{t:06d}_mask.png`` id maps) and compares the bytes on disk per 1000 videos.
4. Loader: training clips (3 frames, batch 32, normalised to [-1, 1]) per second through
   ``torch.utils.data.DataLoader`` with 0 and 2 workers, from slotbench's memory-mapped arrays
   (:class:`slotbench.data.dataset.ClipDataset`) and from the JPEG folders read frame by frame
   with PIL as the original's loader does (written here for the comparison). Median of
   ``--repeats`` timed passes of ``--batches`` batches after a warm-up pass.

Writes ``bench/results/movi_io.json`` and ``bench/results/movi_io.md``.

Usage: ``python bench/bench_movi_io.py [--videos 64] [--batches 20] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from machine import cpu_model  # noqa: E402
from movi_tfds_fixture import prepare  # noqa: E402

from slotbench.data.dataset import ClipDataset, to_model_input  # noqa: E402
from slotbench.data.synthetic import DEFAULT_CONFIG, generate_split  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RES, FRAMES, CLIP, BATCH = 128, 24, 3, 32
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def make_videos(num_videos: int) -> tuple[np.ndarray, np.ndarray]:
    """``video uint8 [N, 24, 128, 128, 3]``, ``seg uint8 [N, 24, 128, 128]`` (textured look)."""
    cfg = {**DEFAULT_CONFIG, "look": "textured", "resolution": RES, "video_len": FRAMES,
           "min_objects": 3, "max_objects": 10, "min_size": 0.1, "max_size": 0.25}
    video, seg, _ = generate_split(cfg, num_videos, seed=0)
    return video, seg


def build_tfds(data_dir: Path, video: np.ndarray, seg: np.ndarray) -> None:
    def make_record(split, index, frames, resolution):
        return {"video": video[index], "segmentations": seg[index][..., None],
                "depth": np.zeros((frames, resolution, resolution, 1), np.uint16),
                "metadata": {"video_name": f"{split}_{index}", "num_frames": frames,
                             "num_instances": int(seg[index].max())},
                "instances": {"mass": np.ones(int(seg[index].max()), np.float32)}}

    prepare(str(data_dir), "movi_e", RES, FRAMES, {"train": len(video)}, make_record)


def time_export(data_dir: Path, out: Path) -> float:
    """Seconds of :func:`slotbench.data.export.export` on the train split, in a fresh process."""
    code = (
        "import sys, time\n"
        "from slotbench.data.export import export\n"
        f"cfg = {{'name': 'movi_e', 'source': 'tfds', 'resolution': {RES:d}, 'video_len': {FRAMES:d}, "
        "'splits': ['train'],\n"
        "       'tfds': {'builder': 'movi_e', 'version': '1.0.0', 'data_dir': sys.argv[1]}}\n"
        "start = time.perf_counter()\n"
        "export(cfg, sys.argv[2], progress=False)\n"
        "print(time.perf_counter() - start)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(data_dir), str(out)], env=ENV, check=True,
                            capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def write_original_folders(root: Path, video: np.ndarray, seg: np.ndarray) -> None:
    """The original's layout: ``{i:08d}/{t:06d}.jpg`` (PIL JPEG, default quality 75) and
    ``{i:08d}/{t:06d}_mask.png`` (single-channel uint8 ids)."""
    for i in range(len(video)):
        folder = root / f"{i:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(video.shape[1]):
            Image.fromarray(video[i, t]).save(folder / f"{t:06d}.jpg")
            Image.fromarray(seg[i, t]).save(folder / f"{t:06d}_mask.png")


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class JpegClips(Dataset):
    """Training clips read as the original does: one PIL-decoded JPEG per frame, normalised to
    [-1, 1] in the worker. Item: ``float32 [3, 3, H, W]``."""

    def __init__(self, root: Path, video_len: int):
        self.videos = sorted(p for p in root.iterdir() if p.is_dir())
        self.starts = video_len - CLIP + 1

    def __len__(self) -> int:
        return len(self.videos) * self.starts

    def __getitem__(self, item: int) -> torch.Tensor:
        index, start = divmod(item, self.starts)
        frames = [np.asarray(Image.open(self.videos[index] / f"{t:06d}.jpg").convert("RGB"))
                  for t in range(start, start + CLIP)]
        clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
        return clip / 127.5 - 1.0


class OurClips(Dataset):
    """slotbench's training clips (uint8 from the memory-mapped arrays; normalised in the loop)."""

    def __init__(self, root: Path):
        self.clips = ClipDataset(root, "train", n_sample_frames=CLIP, frame_offset=1)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int) -> torch.Tensor:
        return self.clips[item]["video"]


def loader_rate(dataset: Dataset, workers: int, batches: int, repeats: int, normalise: bool) -> list[float]:
    """Clips per second over ``repeats`` passes of ``batches`` shuffled batches (after a warm-up)."""
    rates = []
    for repeat in range(repeats + 1):
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(repeat),
                            persistent_workers=False, drop_last=True)
        start, seen = time.perf_counter(), 0
        for step, batch in enumerate(loader):
            if normalise:
                batch = to_model_input(batch)
            seen += batch.shape[0]
            if step + 1 == batches:
                break
        if repeat:  # the first pass warms the page cache and the workers' imports
            rates.append(seen / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = ROOT / "bench" / "scratch" / "movi_io"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)

    video, seg = make_videos(args.videos)
    build_tfds(scratch / "tfds", video, seg)
    export_s = time_export(scratch / "tfds", scratch / "ours")
    write_original_folders(scratch / "original", video, seg)
    ours_bytes = dir_bytes(scratch / "ours")
    jpeg_png_bytes = dir_bytes(scratch / "original")
    tfds_bytes = dir_bytes(scratch / "tfds")

    ours, jpeg = OurClips(scratch / "ours"), JpegClips(scratch / "original", FRAMES)
    loading = {}
    for workers in (0, 2):
        for name, dataset, normalise in (("slotbench", ours, True), ("jpeg_png", jpeg, False)):
            rates = loader_rate(dataset, workers, args.batches, args.repeats, normalise)
            loading[f"{name}_workers{workers}"] = {"clips_per_s": round(statistics.median(rates), 1),
                                                  "repeats": [round(r, 1) for r in rates]}

    per_1000 = 1000 / args.videos / 2**30
    result = {
        "benchmark": "MOVi data path: export, size on disk, training loader",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "videos": args.videos, "resolution": RES, "frames": FRAMES,
        "export": {"seconds": round(export_s, 2), "videos_per_s": round(args.videos / export_s, 2)},
        "size_gib_per_1000_videos": {"slotbench": round(ours_bytes * per_1000, 3),
                                     "original_jpeg_png": round(jpeg_png_bytes * per_1000, 3),
                                     "tfds_source": round(tfds_bytes * per_1000, 3)},
        "loader": {"batch": BATCH, "clip_frames": CLIP, "batches_per_pass": args.batches, **loading},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "movi_io.json").write_text(json.dumps(result, indent=2) + "\n")
    size = result["size_gib_per_1000_videos"]
    rows = "\n".join(f"| {k.replace('_workers', ' | ')} | {v['clips_per_s']} |" for k, v in loading.items())
    (RESULTS / "movi_io.md").write_text(
        f"# MOVi data path ({args.videos} videos of {FRAMES} x {RES} x {RES})\n\n"
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {torch.__version__}. "
        f"Date: {result['date']}.\n\n"
        f"Export from a local TFDS directory (`movi_e/128x128:1.0.0`, MOVi feature spec): "
        f"**{result['export']['videos_per_s']} videos/s** ({export_s:.1f} s).\n\n"
        f"| on disk, GiB per 1000 videos | slotbench (exact pixels) | original JPEG q75 + PNG | TFDS source |\n"
        f"|---|---|---|---|\n| | {size['slotbench']} | {size['original_jpeg_png']} | {size['tfds_source']} |\n\n"
        f"Training loader, clips/s (batch {BATCH}, {CLIP} frames, normalised to [-1, 1], median of "
        f"{args.repeats}):\n\n| reader | workers | clips/s |\n|---|---|---|\n{rows}\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
