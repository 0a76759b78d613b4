"""Reconstruction and compositional-generation evaluation (SlotDiffusion's ``test_recon.py`` and
``test_comp_gen.py``), with the frames saved for FVD.

Both stages encode every full-length test video to slots (``chunk_len`` frames at a time, the
slots carried over between chunks, as segmentation does) and decode slots back to frames:

* SAVi: the spatial-broadcast decoder's alpha-composited ``recon`` (not clamped);
* STEVE: greedy (argmax) autoregressive decoding of every frame's tokens with the KV cache,
  then the dVAE decoder (24 frames per decoder batch, as the reference);
* SlotDiffusion: DPM-Solver++ (``eval.sampler``/``eval.sampler_steps``, reference: ``dpm++``,
  20 model evaluations), one initial noise shared by all frames of a batch (``same_noise``),
  drawn from a CPU ``torch.Generator`` seeded with ``eval.seed`` once per stage (the original
  is unseeded). The noise, and so the result, depends on the batch size: it is recorded.

``run_eval_recon`` writes ``recon.json``: MSE (per-frame sum over 3xHxW in [0, 1]), PSNR,
SSIM and LPIPS (:mod:`slotbench.metrics.reconstruction`), each the mean over all frames of all
videos (every video has the same length, so this is also the mean over videos of per-video
means; the original weights each *batch* equally, which differs only through a smaller last
batch). LPIPS is ``null`` with ``lpips_missing_reason`` when its weights are unavailable, never
another number.

``run_eval_comp_gen`` composes slots within each batch as the reference: slot ``i`` of video
``b`` is taken from video ``(b + i) mod B`` for ``i < B`` (slot 0 and slots ``i >= B`` keep
their own video), see :func:`compose_slots`; a batch size of 1 would compose nothing and is
refused. A smaller last batch composes within itself; a last batch of one video is not
composed and is listed in ``videos_not_composed``.

Frames are saved (``eval.save_videos``) as StyleGAN-V frame folders for FVD:
``video_root/{gt_vids,recon_vids,comp_vids}/{idx}/{t}.png`` (8-bit RGB PNG, unpadded names as
SlotDiffusion, ``idx`` = index of the video in the split), pixel values
``round(clamp(x * 0.5 + 0.5, 0, 1) * 255)``, each file written atomically. A stage first clears
its own folder (``recon_vids`` / ``comp_vids``); in ``gt_vids``, folders of videos outside the
evaluated set are removed, so FVD never mixes in stale videos.

MP4s to watch of the first ``eval.vis_videos`` videos go to ``<run>/vis/`` (:mod:`.videos`). With
the ``tracking`` section given, the metrics (MSE, PSNR, SSIM, LPIPS; for compositional generation
the number of composed videos) also go to the MLflow run of the training (:mod:`.tracking`), and
the record names it (``mlflow_run_id``, ``null`` when not logged).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import __version__
from ..checkpoint import load_trained
from ..data.dataset import VideoDataset, to_model_input
from ..io import remove_stale_temporaries, sha256_file, write_record
from ..metrics.fvd import to_uint8_frames, write_video_folder
from ..metrics.reconstruction import recon_metrics
from ..models import SlotModel
from ..pipeline import STAGES
from ..weights import MissingWeightsError
from . import videos
from .tracking import log_evaluation, training_run

__all__ = ["run_eval_recon", "run_eval_comp_gen", "compose_slots", "decode_slots", "decoder_settings",
           "GT_DIR", "RECON_DIR", "COMP_DIR"]

GT_DIR, RECON_DIR, COMP_DIR = "gt_vids", "recon_vids", "comp_vids"
#: The eval-config keys these stages read, as their declarations say (pipeline.STAGES).
_EVAL_KEYS = sorted({key.removeprefix("eval.") for stage in ("eval_recon", "eval_comp_gen")
                     for key in STAGES[stage].sections + STAGES[stage].sampling})
METRICS = ("mse", "psnr", "ssim", "lpips")
NAMES = {"mse": "MSE", "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}


# ---------------------------------------------------------------------------- building blocks
def _key(eval_cfg: dict, key: str):
    try:
        return eval_cfg[key]
    except KeyError:
        raise KeyError(f"eval.{key} is missing from the configuration (expected keys: "
                       f"{', '.join(_EVAL_KEYS)})") from None


def compose_slots(slots: Tensor) -> Tensor:
    """The reference's compositional swap within a batch of slots ``[B, T, N, D]``.

    ``out[b, :, i] = slots[(b + i) % B, :, i]`` for slot indices ``i < B``; columns
    ``i >= B`` (and slot 0) are unchanged. The same source video is used for all frames.
    """
    if slots.ndim != 4:
        raise ValueError(f"slots must be [B, T, N, D], got {tuple(slots.shape)}")
    b, n = slots.shape[0], slots.shape[2]
    out = slots.clone()
    for i in range(1, min(n, b)):
        out[:, :, i] = torch.roll(slots[:, :, i], shifts=-i, dims=0)
    return out


def decode_slots(model: nn.Module, slots: Tensor, sampler: str = "dpm++", steps: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Frames ``[B, T, 3, H, W]`` (not clamped) decoded from slots ``[B, T, N, D]`` by the model's own
    decoder (:class:`slotbench.models.SlotModel`; see the module docstring for each model)."""
    if not isinstance(model, SlotModel):
        raise TypeError(f"cannot decode slots with a {type(model).__name__}")
    return model.decode_slots(slots, sampler=sampler, steps=steps, generator=generator)


def decoder_settings(model: nn.Module, eval_cfg: dict) -> dict:
    """What decoded the frames, for the JSON record."""
    return model.decoder_record(_key(eval_cfg, "sampler"), _key(eval_cfg, "sampler_steps"))


def _lpips_network(eval_cfg: dict, device: torch.device, lpips) -> tuple[nn.Module | None, str | None]:
    """The LPIPS network, or ``None`` and why."""
    if isinstance(lpips, nn.Module):
        return lpips.to(device).eval(), None
    if lpips is None:
        return None, "no LPIPS network was given"
    if lpips != "auto":
        raise ValueError(f"lpips must be 'auto', a module or None, got {lpips!r}")
    if not _key(eval_cfg, "lpips"):
        return None, "disabled by eval.lpips: false"
    from ..metrics.lpips import LPIPS

    try:
        return LPIPS.from_pretrained().to(device), None
    except MissingWeightsError as err:
        print(f"warning: LPIPS will be null: {err}")
        return None, str(err)


def _load(checkpoint_path, data_root, eval_cfg, runtime_cfg, run):
    state, model, device = load_trained(checkpoint_path, data_root, runtime_cfg, run)
    cfg = state["config"]
    dataset = VideoDataset(data_root, _key(eval_cfg, "split"), _key(eval_cfg, "num_videos"),
                           verify_checksums=True)
    return state, cfg, model, dataset, device


def _prepare_dirs(video_root: Path, own: str, indices: list[int]) -> None:
    """Clear the stage's own folder; in ``gt_vids`` drop videos outside ``indices`` and stale
    temporaries."""
    own_dir = video_root / own
    if own_dir.exists():
        shutil.rmtree(own_dir)
    own_dir.mkdir(parents=True)
    gt = video_root / GT_DIR
    gt.mkdir(parents=True, exist_ok=True)
    keep = {str(i) for i in indices}
    for entry in gt.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry)
        elif entry.is_dir():
            remove_stale_temporaries(entry)


def _write_gt(gt_root: Path, indices: list[int], video_uint8: Tensor, only_missing: bool) -> None:
    frames = video_uint8.shape[1]
    todo = {}
    for i, idx in enumerate(indices):
        vdir = gt_root / str(idx)
        if only_missing and all((vdir / f"{t}.png").is_file() for t in range(frames)):
            continue
        todo[idx] = video_uint8[i].cpu().numpy()
    write_video_folder(gt_root, todo)


def _common_record(state: dict, cfg: dict, eval_cfg: dict, model: nn.Module, checkpoint_path,
                   num_videos: int, batch_size: int, video_root: Path) -> dict:
    seed = _key(eval_cfg, "seed")
    return {
        "num_videos": num_videos,
        "frames": cfg["dataset"]["video_len"],
        "split": eval_cfg["split"],
        "batch_size": batch_size,
        "chunk_len": eval_cfg["chunk_len"],
        "decoding": decoder_settings(model, eval_cfg),
        "seed": seed,
        "videos_saved": bool(_key(eval_cfg, "save_videos")),
        "video_root": str(video_root),
        "frame_files": "{idx}/{t}.png (unpadded, 8-bit RGB; round(clamp(x*0.5+0.5,0,1)*255))",
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "train_seed": state["seed"],
        "train_steps": state["step"],
        "checkpoint_sha256": sha256_file(checkpoint_path),
        "slotbench_version": __version__,
    }


def _json_float(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _write_recon_mp4s(folder: Path, model: nn.Module, indices: list[int], raw: Tensor, seg: Tensor, pred: Tensor,
                      chunk_len: int) -> None:
    """``folder/{idx}_recon.mp4`` of each video (:func:`.videos.recon_panels`).

    Args:
        raw: the videos, uint8 ``[k, T, H, W, 3]``; ``seg``: their ground-truth ids ``[k, T, H, W]``.
        pred: their reconstructions ``[k, T, 3, H, W]`` in [-1, 1].
    """
    slot_ids = model.segment(to_model_input(raw), chunk_len).cpu().numpy()  # [k, T, H, W]
    recons = to_uint8_frames(pred).cpu().numpy()
    for i, idx in enumerate(indices):
        frames = videos.recon_panels(raw[i].cpu().numpy(), recons[i], seg[i].numpy(), slot_ids[i], int(model.num_slots))
        videos.write_mp4(folder / f"{idx}_recon.mp4", frames)


# ---------------------------------------------------------------------------- stages
@torch.no_grad()
def run_eval_recon(eval_cfg: dict, runtime_cfg: dict, checkpoint_path: str | Path, data_root: str | Path,
                   out_json: str | Path, video_root: str | Path, progress: bool = True, *,
                   lpips: nn.Module | str | None = "auto", run: dict | None = None,
                   tracking: dict | None = None) -> dict:
    """The ``eval_recon`` stage: reconstruct every test video, write ``recon.json``, (with
    ``eval.save_videos``) ``video_root/{gt_vids,recon_vids}`` and the ``<run>/vis/{idx}_recon.mp4``
    of the first ``eval.vis_videos`` videos.

    Args:
        eval_cfg: the ``eval`` section (the keys the ``eval_recon`` stage declares, ``pipeline.STAGES``).
        lpips: ``"auto"`` loads :class:`~slotbench.metrics.lpips.LPIPS` (downloading missing
            weights unless ``$SLOTBENCH_OFFLINE``; null with the reason when they stay missing);
            a module is used as is; ``None`` skips LPIPS (null with a reason).
        run: ``{"dataset", "model", "seed"}`` the checkpoint must belong to
            (:func:`~slotbench.checkpoint.check_run`); ``None`` checks nothing.
        tracking: the ``tracking`` section: log the metrics to the training's MLflow run
            (:func:`~slotbench.evaluation.tracking.log_evaluation`); ``None`` does not.

    Returns:
        The record written to ``out_json``.
    """
    state, cfg, model, dataset, device = _load(checkpoint_path, data_root, eval_cfg, runtime_cfg, run)
    lpips_net, lpips_reason = _lpips_network(eval_cfg, device, lpips)
    batch_size = _key(eval_cfg, "recon_batch_size")
    save = bool(_key(eval_cfg, "save_videos"))
    video_root = Path(video_root)
    if save:
        _prepare_dirs(video_root, RECON_DIR, list(range(len(dataset))))
    vis_dir, vis_left = videos.prepare(checkpoint_path, "recon"), int(_key(eval_cfg, "vis_videos"))
    generator = torch.Generator().manual_seed(int(_key(eval_cfg, "seed")))
    sampler, steps = _key(eval_cfg, "sampler"), _key(eval_cfg, "sampler_steps")
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="reconstruct", unit="batch", disable=not progress, dynamic_ncols=True):
        raw = batch["video"].to(device)
        video = to_model_input(raw)
        slots, _ = model.trunk.encode_chunked(video, eval_cfg["chunk_len"])
        pred = decode_slots(model, slots, sampler, steps, generator)
        scores = recon_metrics(pred.flatten(0, 1), video.flatten(0, 1), lpips_net)
        for name, v in scores.items():
            values[name].extend(v.double().cpu().tolist())
        indices = batch["index"].tolist()
        if save:
            _write_gt(video_root / GT_DIR, indices, raw, only_missing=False)
            write_video_folder(video_root / RECON_DIR, dict(zip(indices, to_uint8_frames(pred).cpu().numpy())))
        k = min(vis_left, len(indices))
        if k:
            _write_recon_mp4s(vis_dir, model, indices[:k], raw[:k], batch["seg"][:k], pred[:k], eval_cfg["chunk_len"])
        vis_left -= k
    result: dict = {}
    for name in METRICS:
        vals = values[name]
        result[NAMES[name]] = _json_float(float(np.mean(vals))) if vals else None
    result["lpips_missing_reason"] = lpips_reason if result["LPIPS"] is None else None
    result["units"] = {
        "MSE": "per-frame sum of squared error over 3xHxW values in [0,1], mean over frames",
        "PSNR": "dB, data_range 1 on [0,1], mean over frames",
        "SSIM": "scikit-image settings (Gaussian sigma 1.5, population covariance, data_range 255), mean over frames",
        "LPIPS": "VGG, v0.1 heads, unclamped prediction in [-1,1], mean over frames",
    }
    result["num_frames_total"] = len(values["mse"])
    result.update(_common_record(state, cfg, eval_cfg, model, checkpoint_path, len(dataset), batch_size, video_root))
    result["mlflow_run_id"] = log_evaluation(tracking, training_run(checkpoint_path, state),
                                             {name: result[NAMES[name]] for name in METRICS}, state["step"])
    write_record(out_json, result)
    return result


@torch.no_grad()
def run_eval_comp_gen(eval_cfg: dict, runtime_cfg: dict, checkpoint_path: str | Path, data_root: str | Path,
                      out_json: str | Path, video_root: str | Path, progress: bool = True, *,
                      run: dict | None = None, tracking: dict | None = None) -> dict:
    """The ``eval_comp_gen`` stage: compose slots within batches of ``eval.comp_batch_size``
    videos (:func:`compose_slots`), decode them, save ``video_root/comp_vids`` (and the
    ``gt_vids`` frames not there yet), the ``<run>/vis/{idx}_comp.mp4`` of the first
    ``eval.vis_videos`` videos, and write a record to ``out_json``. ``run`` and ``tracking`` as for
    :func:`run_eval_recon` (the metric logged: ``comp_gen_videos``, the number of videos composed).

    Raises:
        ValueError: ``eval.comp_batch_size`` < 2 (nothing would be composed).
    """
    batch_size = int(_key(eval_cfg, "comp_batch_size"))
    if batch_size < 2:
        raise ValueError(
            f"eval.comp_batch_size is {batch_size}: compositional generation swaps slots between the "
            f"videos of a batch, so a batch of 1 composes nothing (the original script's default "
            f"--bs 1 silently produced plain reconstructions); use 2 or more (the docs use 4)"
        )
    state, cfg, model, dataset, device = _load(checkpoint_path, data_root, eval_cfg, runtime_cfg, run)
    video_root = Path(video_root)
    save = bool(_key(eval_cfg, "save_videos"))
    if save:
        _prepare_dirs(video_root, COMP_DIR, list(range(len(dataset))))
    vis_dir, vis_left = videos.prepare(checkpoint_path, "comp"), int(_key(eval_cfg, "vis_videos"))
    generator = torch.Generator().manual_seed(int(_key(eval_cfg, "seed")))
    sampler, steps = _key(eval_cfg, "sampler"), _key(eval_cfg, "sampler_steps")
    not_composed: list[int] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="compose", unit="batch", disable=not progress, dynamic_ncols=True):
        raw = batch["video"].to(device)
        indices = batch["index"].tolist()
        slots, _ = model.trunk.encode_chunked(to_model_input(raw), eval_cfg["chunk_len"])
        if len(indices) < 2 or slots.shape[2] < 2:
            not_composed.extend(indices)
        pred = decode_slots(model, compose_slots(slots), sampler, steps, generator)
        if save:
            _write_gt(video_root / GT_DIR, indices, raw, only_missing=True)
            write_video_folder(video_root / COMP_DIR, dict(zip(indices, to_uint8_frames(pred).cpu().numpy())))
        k = min(vis_left, len(indices))
        for idx, source, composed in zip(indices[:k], raw[:k].cpu().numpy(), to_uint8_frames(pred[:k]).cpu().numpy()):
            videos.write_mp4(vis_dir / f"{idx}_comp.mp4", videos.comp_panels(source, composed))
        vis_left -= k
    if not_composed:
        print(f"warning: {len(not_composed)} video(s) were not composed (a last batch of one video): {not_composed}")
    num_slots = int(model.num_slots)
    result = {
        "composition": "slot i of video b <- slot i of video (b + i) mod B within each batch, for i < B",
        "slot_indices_swapped": list(range(1, min(num_slots, batch_size))),
        "num_slots": num_slots,
        "videos_not_composed": not_composed,
    }
    result.update(_common_record(state, cfg, eval_cfg, model, checkpoint_path, len(dataset), batch_size, video_root))
    result["mlflow_run_id"] = log_evaluation(tracking, training_run(checkpoint_path, state),
                                             {"comp_gen_videos": len(dataset) - len(not_composed)}, state["step"])
    write_record(out_json, result)
    return result
