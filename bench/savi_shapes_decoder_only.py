"""Can SAVi's decoder render its slots better with more training? Decoder-only training on frozen slots.

For the model of a ``bench/bench_savi_shapes.py`` scratch run (``bench/scratch/NAME``), freezes
everything but the spatial-broadcast decoder, computes the slots of every frame of the training
and test videos once (the whole video in one pass, as ``slotbench eval-seg`` does; the frozen trunk
in ``eval()`` mode is deterministic), then trains the decoder alone on the training frames (MSE
reconstruction, Adam, linear warm-up then cosine decay, gradient clipping as the profile) and
scores the test split by SAVi's protocol (argmax over slots of the decoder's alpha masks) every
``--eval-every`` steps. Slot Attention's attention does not change, so its FG-ARI is the level
the alphas could reach if the decoder rendered each slot where the slot attends.

``--reinit`` starts the decoder from a fresh initialisation (seeded) instead of the trained one;
``--decoder-channels C1,C2,.. [--decoder-kernel K]`` replaces it by a fresh spatial-broadcast decoder
of other widths / kernel (broadcast at full resolution), to see whether a larger decoder renders the
same slots better; with ``--fourier-octaves K`` that fresh decoder is instead a per-pixel MLP of
widths ``C1,C2,..`` over the slot and sine / cosine features of the pixel's position at K octaves
(:class:`FourierMLPDecoder`), which can draw sharp, high-frequency outlines that a decoder fed a
linear position code learns slowly.

``--target attention`` trains the decoder on a different objective: its alpha masks, as a
distribution over slots per pixel, are fitted (cross-entropy) to the argmax of Slot Attention's
attention on the training frames instead of reconstructing the frames. This asks whether the slots
carry enough of each object's shape for a decoder to draw the masks the attention draws; with
``--target recon`` (the default, SAVi's own loss) the masks are only a means to a reconstruction.

Writes ``SCRATCH/decoder_only[_reinit|_C1-C2-.._kK|_fourierK_C1-C2-..][_attention].json`` (the
curve, the settings, the machine) and prints it.

Usage: ``python bench/savi_shapes_decoder_only.py bench/scratch/NAME [--seed N] [--steps 4000]
[--lr 8e-4] [--batch-frames 48] [--threads 1]
[--reinit | --decoder-channels 64,64 [--decoder-kernel 1 | --fourier-octaves 5]] [--target recon|attention]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from slotbench.data.dataset import VideoDataset, to_model_input
from slotbench.metrics import fg_ari, mbo, miou
from slotbench.models.savi import SpatialBroadcastDecoder
from slotbench.io import write_json
from slotbench.training.schedule import apply_lr
from bench_savi_shapes import load_savi, segment
from machine import cpu_model


class FourierMLPDecoder(nn.Module):
    """Per-pixel MLP of ``[slot, sin / cos (2^k pi x), (2^k pi y), k < octaves]`` -> RGB and an alpha
    logit per slot, composed with a softmax over slots as the spatial-broadcast decoder does.

    Shapes: ``forward``: slots ``[B, N, D]`` -> ``recon [B, 3, H, W]``, ``recons [B, N, 3, H, W]``,
    ``masks [B, N, 1, H, W]``; positions are pixel centres in [-1, 1].
    """

    def __init__(self, slot_size: int, widths: list[int], octaves: int, resolution: int):
        super().__init__()
        centres = (torch.arange(resolution) + 0.5) / resolution * 2 - 1
        yx = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1)  # [H, W, 2]
        angles = torch.cat([yx * (2 ** k) * math.pi for k in range(octaves)], dim=-1)  # [H, W, 2K]
        self.register_buffer("position", torch.cat([angles.sin(), angles.cos()], dim=-1), persistent=False)
        self.slot_in = nn.Linear(slot_size, widths[0])
        self.position_in = nn.Linear(4 * octaves, widths[0], bias=False)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 4))

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.slot_in(slots)[:, :, None, None] + self.position_in(self.position)  # [B, N, H, W, C]
        out = self.mlp(F.relu(hidden)).permute(0, 1, 4, 2, 3)  # [B, N, 4, H, W]
        masks = out[:, :, 3:].softmax(dim=1)
        recons = out[:, :, :3]
        return (recons * masks).sum(dim=1), recons, masks


@torch.no_grad()
def encode_split(model: torch.nn.Module, root: Path, split: str, batch: int = 16) -> tuple[torch.Tensor, ...]:
    """Frames ``[V, T, 3, H, W]`` (model input), ground truth ``[V, T, H, W]``, slots ``[V, T, N, D]``
    and attention ids ``[V, T, H, W]`` of every video of ``split``."""
    data = VideoDataset(root, split)
    frames, gts, slots, attn_ids = [], [], [], []
    for start in tqdm(range(0, len(data), batch), desc=f"slots of {split}", unit="batch"):
        items = [data[i] for i in range(start, min(start + batch, len(data)))]
        video = to_model_input(torch.stack([item["video"] for item in items]))
        frames.append(video)
        gts.append(torch.stack([item["seg"] for item in items]).long())
        slots.append(model.trunk.encode(video)[0])  # the whole video in one pass, as eval-seg
        attn_ids.append(segment(model, video, "attention"))  # encodes again (~1 min for the train split)
    return torch.cat(frames), torch.cat(gts), torch.cat(slots), torch.cat(attn_ids)


@torch.no_grad()
def alpha_ids(decoder: torch.nn.Module, slots: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Argmax over slots of the alpha masks, ``[V, T, H, W]``, for slots ``[V, T, N, D]``."""
    flat = slots.flatten(0, 1)
    ids = [decoder(flat[i:i + batch])[2].squeeze(2).argmax(dim=1) for i in range(0, len(flat), batch)]
    return torch.cat(ids).view(*slots.shape[:2], *ids[0].shape[-2:])


def scores(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """FG-ARI / mIoU / mBO (x100, mean over whole videos ``[V, T, H, W]``)."""
    return {name: round(100 * fn(gt, pred).mean().item(), 1)
            for name, fn in (("fg_ari", fg_ari), ("miou", miou), ("mbo", mbo))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scratch", type=Path, help="scratch dir of a bench_savi_shapes.py run")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--seed", type=int, default=0, help="the run's training seed")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=8e-4, help="peak rate; the cosine ends at lr / 100")
    parser.add_argument("--warmup-pct", type=float, default=0.05)
    parser.add_argument("--clip-grad", type=float, default=1.0)
    parser.add_argument("--batch-frames", type=int, default=48, help="frames per step (16 clips x 3)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    fresh = parser.add_mutually_exclusive_group()
    fresh.add_argument("--reinit", action="store_true", help="train a freshly initialised decoder")
    fresh.add_argument("--decoder-channels", default=None,
                       help="comma-separated widths of a fresh decoder's layers (after the slot size)")
    parser.add_argument("--decoder-kernel", type=int, default=None,
                        help="kernel of --decoder-channels' layers (default 3; not with --fourier-octaves)")
    parser.add_argument("--fourier-octaves", type=int, default=None,
                        help="make --decoder-channels a FourierMLPDecoder with this many octaves")
    parser.add_argument("--target", choices=("recon", "attention"), default="recon",
                        help="reconstruct the frames (SAVi's loss) or fit the alphas to the "
                             "attention's argmax")
    args = parser.parse_args()
    if args.fourier_octaves is not None and (args.decoder_channels is None or args.fourier_octaves < 1
                                             or args.decoder_kernel is not None):
        parser.error("--fourier-octaves needs --decoder-channels, must be >= 1 and takes no --decoder-kernel")
    kernel = 3 if args.decoder_kernel is None else args.decoder_kernel
    if args.decoder_channels is None:
        variant = "_reinit" if args.reinit else ""
    else:
        widths = [int(c) for c in args.decoder_channels.split(",")]
        variant = f"_{'-'.join(map(str, widths))}_k{kernel}"
        if args.fourier_octaves is not None:
            variant = f"_fourier{args.fourier_octaves}_{'-'.join(map(str, widths))}"
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = load_savi(args.scratch, args.dataset, args.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    root = args.scratch / "data" / args.dataset
    train_frames, _, train_slots, train_attn = encode_split(model, root, "train")
    test_frames, test_gt, test_slots, test_attn = encode_split(model, root, "test")
    decoder = model.decoder
    # Batched differently, the slots differ in the last float bits, which flips argmax ties.
    agreement = (alpha_ids(decoder, test_slots) == segment(model, test_frames, "alpha")).float().mean().item()
    if agreement < 0.99:
        raise RuntimeError(f"segmenting precomputed slots agrees with the model's own segmentation on "
                           f"only {100 * agreement:.2f} % of the test pixels")
    if args.reinit:
        for module in decoder.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    if args.fourier_octaves is not None:
        decoder_cfg = {"type": "fourier_mlp", "widths": widths, "octaves": args.fourier_octaves}
        decoder = FourierMLPDecoder(model.trunk.slot_size, widths, args.fourier_octaves, model.resolution)
    elif args.decoder_channels is not None:
        decoder_cfg = {"channels": [model.trunk.slot_size, *widths], "broadcast_resolution": model.resolution,
                       "kernel_size": kernel}
        decoder = SpatialBroadcastDecoder(model.trunk.slot_size, resolution=model.resolution, **decoder_cfg)
    else:
        decoder_cfg = dict(model.cfg["decoder"])
    for p in decoder.parameters():
        p.requires_grad_(True)

    frames = train_frames.flatten(0, 1)  # [V*T, 3, H, W]
    slots = train_slots.flatten(0, 1)  # [V*T, N, D]
    attn_ids = train_attn.flatten(0, 1)  # [V*T, H, W]
    optimizer = torch.optim.Adam([{"params": list(decoder.parameters()), "max_lr": args.lr,
                                   "min_lr": args.lr / 100}])
    generator = torch.Generator().manual_seed(args.seed)
    curve = [{"step": 0, **scores(test_gt, alpha_ids(decoder, test_slots))}]
    attention = scores(test_gt, test_attn)
    start = time.perf_counter()
    bar = tqdm(range(args.steps), desc="decoder only", unit="step")
    for step in bar:
        (lr,) = apply_lr(optimizer, step, args.steps, args.warmup_pct)
        pick = torch.randint(len(frames), (args.batch_frames,), generator=generator)
        recon, _, masks = decoder(slots[pick])
        if args.target == "recon":
            loss = F.mse_loss(recon, frames[pick])
        else:  # masks [B, N, 1, H, W] are a softmax over slots: their log is the log-softmax
            loss = F.nll_loss(masks.squeeze(2).clamp_min(1e-8).log(), attn_ids[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), args.clip_grad)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.1e}")
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            decoder.eval()
            test_loss = F.mse_loss(decoder(test_slots[:16].flatten(0, 1))[0], test_frames[:16].flatten(0, 1))
            curve.append({"step": step + 1, "test_recon_mse_16_videos": round(test_loss.item(), 5),
                          **scores(test_gt, alpha_ids(decoder, test_slots))})
            decoder.train()
            tqdm.write(json.dumps(curve[-1]))
    result = {
        "run": args.scratch.name, "seed": args.seed, "reinit": args.reinit,
        "decoder": decoder_cfg, "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
        "steps": args.steps,
        "lr": args.lr, "warmup_pct": args.warmup_pct, "clip_grad": args.clip_grad,
        "batch_frames": args.batch_frames, "target": args.target, "train_frames": len(frames),
        "test_videos": len(test_gt), "pixels_as_eval_seg": round(agreement, 5),
        "attention_readout": attention, "alpha_readout_curve": curve,
        "train_seconds": round(time.perf_counter() - start, 1), "threads": args.threads,
        "machine": {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = args.scratch / f"decoder_only{variant}{'_attention' if args.target == 'attention' else ''}.json"
    write_json(out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
