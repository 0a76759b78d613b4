"""Where a SAVi run on `shapes` loses FG-ARI in time: whole videos against single frames.

For the model of a ``bench/bench_savi_shapes.py`` scratch run (``bench/scratch/NAME``), segments
the full-length videos of one split the way ``slotbench eval-seg`` does (decoder alphas, the whole
video in one pass) and prints FG-ARI (x100, mean over videos) three ways:

* the whole video (``[T, H, W]`` per video: the protocol; a slot that changes objects costs);
* the first 3 frames only (the length of the training clips and of the training loop's
  validation clips);
* each frame on its own (``[H, W]``), averaged over videos, overall and at a few time steps:
  changes of slot identity between frames cost nothing here, so the gap to the whole-video value
  is what temporal inconsistency costs; also split into frames where two objects touch and
  frames where they do not (``bench/shapes_occlusion.py``'s test; videos of one object excluded).

``--num-iterations N`` runs Slot Attention for N iterations per frame at evaluation instead of the
number the model was trained with (a test-time change only). ``--readout attention`` segments by
Slot Attention's last attention map instead of the decoder's alphas (argmax over slots, upsampled
bilinearly from the feature grid: the protocol of STEVE and SlotDiffusion, not SAVi's), which
tells how well the slots bind apart from how well the decoder renders them.

Usage: ``python bench/savi_shapes_by_frame.py bench/scratch/NAME [--split test] [--dataset shapes]
[--num-iterations N] [--seed N] [--readout alpha|attention]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slotbench.data.dataset import VideoDataset, to_model_input
from slotbench.metrics import fg_ari
from bench_savi_shapes import READOUTS, load_savi, segment
from shapes_occlusion import touching_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scratch", type=Path, help="scratch dir of a bench_savi_shapes.py run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--num-iterations", type=int, default=None,
                        help="Slot Attention iterations at evaluation (default: as trained)")
    parser.add_argument("--seed", type=int, default=0, help="the run's training seed")
    parser.add_argument("--readout", choices=READOUTS, default="alpha",
                        help="segment by the decoder's alpha masks (SAVi's protocol) or by Slot "
                             "Attention's attention")
    args = parser.parse_args()

    model = load_savi(args.scratch, args.dataset, args.seed)
    if args.num_iterations is not None:
        if args.num_iterations < 1:
            parser.error("--num-iterations must be >= 1")
        model.trunk.slot_attention.num_iterations = args.num_iterations
    iterations = model.trunk.slot_attention.num_iterations
    data = VideoDataset(args.scratch / "data" / args.dataset, args.split)
    items = [data[i] for i in range(len(data))]
    video = to_model_input(torch.stack([item["video"] for item in items]))  # [B, T, 3, H, W]
    gt = torch.stack([item["seg"] for item in items]).long()  # [B, T, H, W]
    pred = segment(model, video, args.readout)  # [B, T, H, W]

    b, t = gt.shape[:2]
    whole = 100 * fg_ari(gt, pred).mean().item()
    first3 = 100 * fg_ari(gt[:, :3], pred[:, :3]).mean().item()
    per_frame = 100 * fg_ari(gt.flatten(0, 1), pred.flatten(0, 1)).view(b, t)  # [B, T]
    steps = sorted({0, 2, t // 2, t - 1})
    at = ", ".join(f"t={s}: {per_frame[:, s].mean().item():.1f}" for s in steps)
    print(f"{args.scratch.name} ({args.split}, {b} videos of {t} frames, Slot Attention iterations: "
          f"{iterations}, readout: {args.readout}): FG-ARI whole video "
          f"{whole:.1f}; first 3 frames {first3:.1f}; frame by frame {per_frame.mean().item():.1f} ({at})")
    touching = torch.from_numpy(touching_frames(gt.numpy()))  # [B, T]
    multi = (gt.flatten(1).amax(dim=1) >= 2)[:, None].expand(b, t)  # videos with 2+ objects
    for name, frames in (("touching", touching & multi), ("not touching", ~touching & multi)):
        if frames.any():
            print(f"  frame by frame, 2+ objects, objects {name}: {per_frame[frames].mean().item():.1f} "
                  f"({int(frames.sum())} of {int(multi.sum())} frames)")


if __name__ == "__main__":
    main()
