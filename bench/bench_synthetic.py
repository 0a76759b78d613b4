"""Speed of the synthetic ``shapes`` generator on one CPU core, and its preview images.

Measures videos per minute of :func:`slotbench.data.synthetic.generate_split` for both looks
at the default config (64x64, 24 frames) and at 128x128, as the median of a few repeats,
pinned to a single core with single-threaded numerical libraries. Writes
``bench/results/synthetic.json`` and ``bench/results/synthetic.md``, and the preview grids
``docs/images/shapes_solid.png`` and ``docs/images/shapes_textured.png``.

Usage: ``python bench/bench_synthetic.py [--repeats 5] [--seconds 2]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402

from slotbench.data.synthetic import DEFAULT_CONFIG, generate_split  # noqa: E402
from slotbench.visualize import colour_ids, make_grid, save_png  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"
CASES = [(look, res) for res in (64, 128) for look in ("solid", "textured")]


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def measure(config: dict, repeats: int, seconds: float) -> dict:
    """Videos per minute over ``repeats`` timed batches, each sized to last about ``seconds``."""
    start = time.perf_counter()
    generate_split(config, 10, seed=0)  # warm-up, and a first rate estimate
    first = 10 / (time.perf_counter() - start)
    num_videos = max(10, int(first * seconds))
    rates = []
    for repeat in range(repeats):
        start = time.perf_counter()
        generate_split(config, num_videos, seed=1000 + repeat)
        rates.append(num_videos / (time.perf_counter() - start) * 60)
    return {
        "videos_per_repeat": num_videos,
        "videos_per_min": [round(r, 1) for r in rates],
        "median_videos_per_min": round(statistics.median(rates), 1),
    }


def write_images() -> list[str]:
    """Preview grids of 4 videos x 6 frames (plus segmentation rows) for both looks."""
    paths = []
    for look in ("solid", "textured"):
        video, seg, _ = generate_split(dict(DEFAULT_CONFIG, look=look), 4, seed=0)
        path = save_png(make_grid([video, colour_ids(seg)], num_frames=6, scale=2), IMAGES / f"shapes_{look}.png")
        paths.append(str(path.relative_to(ROOT)))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per case")
    parser.add_argument("--seconds", type=float, default=2.0, help="target length of a batch")
    args = parser.parse_args()

    pinning = _pin_one_core()
    machine = {
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": pinning,
    }
    cases = []
    for look, res in CASES:
        config = dict(DEFAULT_CONFIG, look=look, resolution=res)
        result = measure(config, args.repeats, args.seconds)
        cases.append({"config": config, "repeats": args.repeats, **result})
        print(f"{look:9s} {res:4d}x{res:<4d} {result['median_videos_per_min']:10.0f} videos/min")

    report = {
        "benchmark": "synthetic shapes generator, one CPU core",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "cases": cases,
        "images": write_images(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "synthetic.json").write_text(json.dumps(report, indent=2) + "\n")

    base = {k: v for k, v in DEFAULT_CONFIG.items() if k not in ("look", "resolution")}
    lines = [
        "# Synthetic `shapes` generator speed",
        "",
        f"Machine: {machine['cpu_model']} (platform.processor: {machine['processor']!r}), "
        f"{machine['cpu_count']} CPUs visible, "
        f"{machine['platform']}; Python {machine['python']}, NumPy {machine['numpy']}; "
        f"one core ({pinning}), single-threaded libraries.",
        f"Date: {report['date']}. Median of {args.repeats} batches of `generate_split` "
        "(allocation of the output included).",
        "",
        f"Config (besides look and resolution): `{json.dumps(base)}`",
        "",
        "| look | resolution | frames | videos per batch | videos/min (median) | all batches |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        cfg = case["config"]
        lines.append(
            f"| {cfg['look']} | {cfg['resolution']}x{cfg['resolution']} | {cfg['video_len']} "
            f"| {case['videos_per_repeat']} | {case['median_videos_per_min']:.0f} "
            f"| {', '.join(f'{r:.0f}' for r in case['videos_per_min'])} |"
        )
    lines += ["", "Preview images: " + ", ".join(f"`{p}`" for p in report["images"]), ""]
    (RESULTS / "synthetic.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
