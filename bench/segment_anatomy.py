"""How a segmentation fails on the `shapes` test videos: objects kept apart, or merged; segments
that hold objects, or floor.

FG-ARI and mBO say how far a segmentation is from the ground truth, not in what way. This script
tells the failure modes of docs/object_discovery.md apart, frame by frame (every frame of the test
videos with at least two visible objects): each object belongs to the predicted segment that holds
most of its pixels, and then

- ``objects_apart``: the share of pairs of objects of a frame that belong to different segments
  (1 = every object on its own, 0 = all in one segment);
- ``objects_per_segment``: objects per segment that holds any (1 = one each);
- ``object_whole``: the share of an object's pixels in the segment it belongs to (1 = no object is
  split between segments);
- ``floor_share``: the share of floor pixels in the segments that hold objects (0 = the segments
  are the objects, near the floor's share of the frame = the segments are regions of the frame).

A model that merges all objects into one segment has ``objects_apart`` near 0 and a low
``floor_share``; one that cuts the frame into regions (the grid baseline) keeps objects apart only
when they lie in different regions and has a ``floor_share`` near the frame's.

Usage (after ``bench/learning_shapes.py``; any ``model.pt`` trained on ``shapes`` can be added):

    .venv/bin/python bench/segment_anatomy.py [--scratch bench/scratch/learning_shapes]
        [--run NAME=PATH/model.pt ...] [--out bench/results]

writes ``segment_anatomy.json`` and ``segment_anatomy.md``: the four measures for every model of
the scratch folder, every ``--run`` and the three baselines, on the same test videos.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from learning_shapes import CPU_RUNTIME, DATASET, LABEL, MODELS, RESULTS, SCRATCH, run_seed
from machine import cpu_model

from slotbench import checkpoint
from slotbench.evaluation.baselines import BASELINES
from slotbench.io import atomic_path
from slotbench.report.frames import load_videos, predict_segments

MEASURES = ("objects_apart", "objects_per_segment", "object_whole", "floor_share")


def objects_of(gt: np.ndarray) -> list[int]:
    """The object ids visible in a ground-truth frame ``[H, W]`` (0, the floor, left out)."""
    return [int(o) for o in np.unique(gt) if o != 0]


def frame_anatomy(gt: np.ndarray, pred: np.ndarray) -> dict[str, float] | None:
    """The four measures of one frame, or ``None`` when it shows fewer than two objects.

    Args:
        gt: int ``[H, W]`` ground-truth ids, 0 the floor.
        pred: int ``[H, W]`` predicted segment ids.

    An object belongs to the segment holding most of its pixels (the lowest id on a tie).
    """
    objects = objects_of(gt)
    if len(objects) < 2:
        return None
    owner, whole = {}, []
    for o in objects:
        ids, counts = np.unique(pred[gt == o], return_counts=True)
        owner[o] = int(ids[np.argmax(counts)])
        whole.append(counts.max() / counts.sum())
    pairs = list(combinations(objects, 2))
    segments = sorted(set(owner.values()))
    in_segments = np.isin(pred, segments)
    return {
        "objects_apart": float(np.mean([owner[a] != owner[b] for a, b in pairs])),
        "objects_per_segment": len(objects) / len(segments),
        "object_whole": float(np.mean(whole)),
        "floor_share": float((gt[in_segments] == 0).mean()),
    }


def anatomy(gts: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Means of :func:`frame_anatomy` over every frame with two or more objects.

    Args:
        gts: int ``[N, T, H, W]`` ground truth of N videos.
        preds: int ``[N, T, H, W]`` predicted segments.

    Returns:
        the four measures and ``frames`` (how many frames they average).
    """
    if gts.shape != preds.shape:
        raise ValueError(f"ground truth {gts.shape} and prediction {preds.shape} differ in shape")
    rows = [r for g, p in zip(gts.reshape(-1, *gts.shape[-2:]), preds.reshape(-1, *preds.shape[-2:]))
            if (r := frame_anatomy(g, p)) is not None]
    if not rows:
        raise ValueError("no frame shows two objects")
    out = {m: float(np.mean([r[m] for r in rows])) for m in MEASURES}
    out["frames"] = len(rows)
    return out


def model_segments(path: Path, videos: list[dict]) -> tuple[np.ndarray, int]:
    """Segments ``[N, T, H, W]`` of the trained model at ``path`` and its number of slots."""
    segs, num_slots = predict_segments(checkpoint.load(path), videos, chunk_len=videos[0]["seg"].shape[0],
                                       runtime=CPU_RUNTIME)
    return np.stack(segs), num_slots


def parse_runs(items: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` options as ``{NAME: PATH}``; a missing file is an error before any compute."""
    runs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--run expects NAME=PATH/model.pt, got {item!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--run {name}: no file {path}")
        runs[name] = Path(path)
    return runs


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# How the segmentations fail: objects apart or merged, segments of objects or of floor",
        "",
        f"Machine: {result['machine']['cpu']}, torch {result['machine']['torch']}. "
        f"Written {result['written']} by `bench/segment_anatomy.py`. The {result['videos']} `shapes` test "
        f"videos, every frame with two or more objects ({result['frames']} frames). Each object belongs to "
        "the segment holding most of its pixels; objects apart: the share of object pairs of a frame in "
        "different segments; objects per segment: objects per segment holding any; object whole: the share of "
        "an object's pixels in its segment; floor share: floor "
        "pixels in the segments holding objects (the floor is "
        f"{100 * result['floor_share_of_frames']:.0f} % of these frames).",
        "",
        "| segmentation | objects apart | objects per segment | object whole | floor share |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["methods"].items():
        lines.append(f"| {name} | {100 * r['objects_apart']:.1f} % | {r['objects_per_segment']:.2f} | "
                     f"{100 * r['object_whole']:.1f} % | {100 * r['floor_share']:.1f} % |")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def benchmark_runs(scratch: Path) -> dict[str, Path]:
    """The trained ``model.pt`` of every model of the learning benchmark's scratch folder."""
    runs = {}
    for m in MODELS:
        if (scratch / m / "run_lengths.json").is_file():
            path = scratch / m / "results" / DATASET / m / f"seed{run_seed(scratch / m)}" / "model.pt"
            if path.is_file():
                runs[f"{LABEL[m]} (learning benchmark)"] = path
    return runs


def run_parser(description: str) -> argparse.ArgumentParser:
    """The options of a script that studies trained ``shapes`` models: ``--scratch``, ``--run``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scratch", type=Path, default=SCRATCH,
                        help="the learning benchmark's scratch folder (its models are used when trained)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=PATH",
                        help="another trained model.pt on shapes (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def runs_and_test_videos(args: argparse.Namespace) -> tuple[dict[str, Path], list[dict]]:
    """The models of :func:`run_parser`'s options (benchmark runs, then ``--run``) and every test video
    of the benchmark's exported data; a clear error before any compute when either is missing."""
    runs = {**benchmark_runs(args.scratch), **parse_runs(args.run)}
    if not runs:
        raise SystemExit(f"no trained model in {args.scratch} and no --run")
    data = next((p for p in [args.scratch / m / "data" / DATASET for m in MODELS] if p.is_dir()), None)
    if data is None:
        raise SystemExit(f"no exported {DATASET} data under {args.scratch}/<model>/data: run bench/learning_shapes.py")
    return runs, load_videos(data, "test", None)


def write_results(result: dict, out: Path, stem: str, write_md) -> None:
    """``out/stem.json`` and, by ``write_md(result, path)``, ``out/stem.md``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{stem}.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    write_md(result, out / f"{stem}.md")
    print(f"wrote {out / f'{stem}.md'}")


def main() -> None:
    args = run_parser(__doc__.split("\n\n")[0]).parse_args()
    runs, videos = runs_and_test_videos(args)
    gts = np.stack([v["seg"] for v in videos])
    methods, num_slots = {}, None
    for name, path in runs.items():
        preds, num_slots = model_segments(path, videos)
        methods[name] = anatomy(gts, preds)
        print(name, methods[name], flush=True)
    frames = torch.from_numpy(np.stack([v["video"] for v in videos]))
    for name, rule in BASELINES.items():
        label = f"baseline: {LABEL[f'baseline_{name}'].replace('K', str(num_slots))}"
        methods[label] = anatomy(gts, rule(frames, num_slots).numpy())
        print(label, methods[label], flush=True)
    multi = np.array([len(objects_of(f)) >= 2 for f in gts.reshape(-1, *gts.shape[-2:])])
    result = {
        "machine": {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()},
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "videos": len(videos), "frames": int(multi.sum()),
        "floor_share_of_frames": float((gts.reshape(-1, *gts.shape[-2:])[multi] == 0).mean()),
        "runs": {name: str(path) for name, path in runs.items()},
        "methods": methods,
    }
    write_results(result, args.out, "segment_anatomy", write_markdown)


if __name__ == "__main__":
    main()
