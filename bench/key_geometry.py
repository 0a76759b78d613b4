"""Where Slot Attention's keys put the pixels of a `shapes` frame: near by place or near by look.

Slot Attention assigns a pixel to the slot whose query is nearest its key, so pixels with near keys
end in one slot. If the keys mostly encode position, the slots become regions of the frame (as the
grid baseline's cells); if they encode what the pixel shows, the slots can become objects. For each
trained model, and for the first one's config freshly initialised (torch seed 0) as slotbench does and
with He-normal encoder weights (``bench/explore_train.py --he-encoder-init``), this script measures on
the test videos (every ``--frame-step``-th frame) the distance between the keys
``project_k(norm_inputs(features))`` of pairs of pixels, divided by the frame's mean distance over
random pairs (1 = an average pair):

- ``same_object_far``: two pixels of one object at least 3 px apart;
- ``different_objects``: pixels of two different objects;
- ``object_floor_adjacent``: an object pixel and a floor pixel at most 2 px apart;
- ``floor_far``: two floor pixels at least 8 px apart;
- ``floor_near``: two floor pixels at most 2 px apart.

Keys that make objects: ``same_object_far`` below ``different_objects`` and ``object_floor_adjacent``,
``floor_far`` below ``object_floor_adjacent``. Keys that make regions: ``object_floor_adjacent``
below ``floor_far``. It also gives the spread over pixels (std, mean over channels) of the encoder's
output and of the position embedding added to it, on the test frames.

Usage (after ``bench/learning_shapes.py``; any ``model.pt`` trained on ``shapes`` can be added):

    .venv/bin/python bench/key_geometry.py [--scratch bench/scratch/learning_shapes]
        [--run NAME=PATH/model.pt ...] [--out bench/results]

writes ``key_geometry.json`` and ``key_geometry.md``.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from explore_train import he_initialise
from machine import cpu_model
from segment_anatomy import run_parser, runs_and_test_videos, write_results

from slotbench import checkpoint
from slotbench.data.dataset import to_model_input
from slotbench.io import atomic_path

PAIRS = ("same_object_far", "different_objects", "object_floor_adjacent", "floor_far", "floor_near")


def pair_classes(seg: np.ndarray, i: np.ndarray, j: np.ndarray) -> dict[str, np.ndarray]:
    """Which of :data:`PAIRS` each pixel pair ``(i[p], j[p])`` of a frame is.

    Args:
        seg: int ``[H, W]`` ground-truth ids, 0 the floor.
        i, j: int ``[P]`` flat pixel indices into ``seg``.

    Returns:
        ``{name: bool [P]}``; a pair may be in no class.
    """
    w = seg.shape[1]
    (yi, xi), (yj, xj) = np.divmod(i, w), np.divmod(j, w)
    dist = np.hypot(yi - yj, xi - xj)
    si, sj = seg.reshape(-1)[i], seg.reshape(-1)[j]
    floor_i, floor_j = si == 0, sj == 0
    return {
        "same_object_far": (si == sj) & ~floor_i & (dist >= 3),
        "different_objects": ~floor_i & ~floor_j & (si != sj),
        "object_floor_adjacent": ~floor_i & floor_j & (dist <= 2),
        "floor_far": floor_i & floor_j & (dist >= 8),
        "floor_near": floor_i & floor_j & (dist > 0) & (dist <= 2),
    }


def frame_key_distances(keys: np.ndarray, seg: np.ndarray, rng: np.random.Generator,
                        pairs: int = 20000) -> dict[str, list[float]]:
    """Normalised key distances of ``pairs`` random pixel pairs of one frame, by class.

    Args:
        keys: float ``[H*W, D]`` the keys of the frame's pixels (row-major).
        seg: int ``[H, W]`` ground-truth ids, 0 the floor.

    Returns:
        ``{name: [distance / the mean distance over all the sampled pairs]}`` for :data:`PAIRS`.
    """
    n = seg.size
    if keys.shape[0] != n:
        raise ValueError(f"{keys.shape[0]} keys for a frame of {n} pixels")
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    dist = np.linalg.norm(keys[i] - keys[j], axis=-1)
    dist = dist / max(float(dist.mean()), 1e-12)
    return {name: dist[mask].tolist() for name, mask in pair_classes(seg, i, j).items()}


def fresh_model(state: dict, he_encoder: bool = False, seed: int = 0) -> torch.nn.Module:
    """The model of a ``model.pt``'s config as initialised before training (torch seed ``seed``), its
    encoder re-initialised He-normal when ``he_encoder``."""
    torch.manual_seed(seed)
    model = checkpoint.build_model_of(state)
    if he_encoder:
        he_initialise(model.trunk.encoder)
    return model.eval()


@torch.no_grad()
def key_geometry(model: torch.nn.Module, videos: list[dict], frame_step: int, seed: int = 0) -> dict:
    """Mean normalised key distance per pair class over the frames ``0, frame_step, ...`` of ``videos``,
    and the pixel spread of the encoder output and of the position embedding (see the docstring)."""
    trunk = model.trunk
    sa = trunk.slot_attention
    rng = np.random.default_rng(seed)
    found = {name: [] for name in PAIRS}
    enc_std, pos_std = [], float(trunk.encoder_pos_embedding.embedding().std(dim=(2, 3)).mean())
    for video in videos:
        frames = to_model_input(torch.from_numpy(video["video"][::frame_step])[None])  # [1, T', 3, H, W]
        enc_std.append(float(trunk.encoder(frames[0]).std(dim=(2, 3)).mean()))
        keys = sa.project_k(sa.norm_inputs(trunk.encode_features(frames)[0])).numpy()  # [T', h*w, D]
        for k, seg in zip(keys, video["seg"][::frame_step]):
            if k.shape[0] != seg.size:
                raise ValueError(f"keys on a {k.shape[0]}-cell grid, frames of {seg.size} pixels: "
                                 "the script needs an encoder at full resolution")
            for name, values in frame_key_distances(k, seg, rng).items():
                found[name] += values
    out = {name: float(np.mean(v)) if v else None for name, v in found.items()}
    out.update(encoder_std=float(np.mean(enc_std)), position_std=pos_std)
    return out


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Slot Attention's keys: pixels near by place or by look",
        "",
        f"Machine: {result['machine']['cpu']}, torch {result['machine']['torch']}. Written {result['written']} "
        f"by `bench/key_geometry.py`, on {result['videos']} `shapes` test videos, every "
        f"{result['frame_step']}th frame. Distances between the keys of two pixels, divided by the frame's "
        "mean over random pairs (1 = an average pair); the last rows: the first model's config freshly "
        "initialised (seed 0), as slotbench does and with He-normal encoder weights. "
        "Encoder / position: the spread over pixels (std, mean over channels) of the encoder output and of "
        "the position embedding added to it.",
        "",
        "| model | weights | same object, >= 3 px apart | different objects | object and floor, <= 2 px apart "
        "| floor, >= 8 px apart | floor, <= 2 px apart | encoder / position spread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(name, "trained", r) for name, r in result["trained"].items()]
    rows += [(result["init_config"], which, r) for which, r in result["init"].items()]
    for name, which, r in rows:
        cells = " | ".join("-" if r[p] is None else f"{r[p]:.2f}" for p in PAIRS)
        lines.append(f"| {name} | {which} | {cells} | {r['encoder_std']:.3f} / {r['position_std']:.3f} |")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = run_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--frame-step", type=int, default=6, help="every n-th frame of each test video")
    args = parser.parse_args()
    runs, videos = runs_and_test_videos(args)
    trained = {}
    for name, path in runs.items():
        trained[name] = key_geometry(checkpoint.restore_model(checkpoint.load(path)).eval(), videos, args.frame_step)
        print(name, trained[name], flush=True)
    first = checkpoint.load(next(iter(runs.values())))
    init = {"initialised (reference)": key_geometry(fresh_model(first), videos, args.frame_step),
            "initialised (He-normal encoder)": key_geometry(fresh_model(first, he_encoder=True), videos,
                                                            args.frame_step)}
    print("init", init, flush=True)
    result = {
        "machine": {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()},
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "videos": len(videos), "frame_step": args.frame_step,
        "runs": {name: str(path) for name, path in runs.items()},
        "trained": trained,
        "init_config": next(iter(runs)),
        "init": init,
    }
    write_results(result, args.out, "key_geometry", write_markdown)


if __name__ == "__main__":
    main()
