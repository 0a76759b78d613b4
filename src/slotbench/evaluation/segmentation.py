"""Segmentation evaluation as the original protocol: full-length videos, time folded into pixels.

Per video FG-ARI, mIoU and mBO (:mod:`slotbench.metrics`), averaged over videos (mBO and mIoU
skip NaN videos, as nerv's meters do) and reported x100 like the paper. The ``eval_seg`` stage
also logs them to the MLflow run of the training (:mod:`.tracking`).

Beside the protocol's scores, ``seg.json`` keeps the same metrics with every frame scored alone
(``per_frame``): a slot that swaps objects between frames costs the whole-video scores, not these,
so the gap between the two is what the model loses to temporal inconsistency.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import __version__
from ..checkpoint import load_trained
from ..data.dataset import VideoDataset, to_model_input
from ..io import sha256_file, write_record
from ..metrics import segmentation_scores

METRICS = ("fg_ari", "miou", "mbo")
#: The per-video means over frames scored alone (:func:`frame_means`).
FRAME_METRICS = tuple(f"frame_{name}" for name in METRICS)


@torch.no_grad()
def score_videos(model: torch.nn.Module, dataset: Dataset, batch_size: int, chunk_len: int,
                 device: torch.device, progress: bool = True) -> dict[str, list[float]]:
    """Per-video FG-ARI / mIoU / mBO (fractions, not percent) of ``model.segment`` over ``dataset``.

    Args:
        dataset: items with ``video`` uint8 [T, H, W, 3] and ``seg`` int64 [T, H, W].
        chunk_len: frames per forward pass (slots carry over between chunks).
    Returns:
        ``{"fg_ari", "miou", "mbo", "frame_fg_ari", "frame_miou", "frame_mbo", "num_objects"}``: one
        entry per video in dataset order; ``frame_*`` are :func:`frame_means`; ``num_objects``
        counts the foreground GT ids present anywhere in the video.
    """
    model.eval()
    per_video: dict[str, list[float]] = {m: [] for m in (*METRICS, *FRAME_METRICS, "num_objects")}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    for batch in tqdm(loader, desc="segment", unit="batch", disable=not progress, dynamic_ncols=True):
        video = to_model_input(batch["video"].to(device))
        gt = batch["seg"].to(device)
        pred = model.segment(video, chunk_len)
        for name, values in video_scores(gt, pred).items():
            per_video[name].extend(values)
        per_video["num_objects"].extend(len(torch.unique(g[g > 0])) for g in gt)
    return per_video


def video_scores(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, list[float]]:
    """Per video (fractions): FG-ARI / mIoU / mBO over the whole video (:data:`METRICS`) and over
    its frames scored alone (:data:`FRAME_METRICS`, :func:`frame_means`); ids ``[B, T, H, W]``."""
    scores = segmentation_scores(gt, pred)
    return {**{name: scores[name].cpu().tolist() for name in METRICS}, **frame_means(gt, pred)}


def frame_means(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, list[float]]:
    """Per video, the mean FG-ARI / mIoU / mBO of its frames scored one by one (fractions).

    Args:
        gt, pred: integer ids ``[B, T, H, W]`` (0 = background in ``gt``).
    Returns:
        ``{"frame_fg_ari", "frame_miou", "frame_mbo"}``, each ``B`` values: the mean over the frames
        that hold a foreground pixel (a frame without one has no score; NaN when no frame has one).
    """
    b, t = gt.shape[:2]
    scores = segmentation_scores(gt.flatten(0, 1), pred.flatten(0, 1))
    has_object = (gt.flatten(2) > 0).any(dim=2)  # [B, T]
    out = {}
    for name in METRICS:
        values = scores[name].view(b, t).where(has_object, torch.nan)
        out[f"frame_{name}"] = values.nanmean(dim=1).cpu().tolist()
    return out


def summarise(per_video: dict[str, list[float]]) -> dict[str, float]:
    """Means (x100) over videos of the per-video scores; mIoU and mBO skip NaN videos, as
    nerv's meters do. Returns ``{"fg_ari", "miou", "mbo"}`` in percent plus ``num_videos``."""
    summary = {}
    for name in METRICS:
        finite = [v for v in per_video[name] if not math.isnan(v)]
        summary[name] = 100.0 * sum(finite) / len(finite) if finite else float("nan")
    summary["num_videos"] = len(per_video["fg_ari"])
    return summary


def summarise_by_objects(per_video: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """:func:`summarise` per number of foreground objects present in the video.

    FG-ARI is all-or-nothing on a video with one object (one GT segment: 1 when the object
    is one predicted segment in every frame, else exactly 0), so this split shows where the
    mean comes from. Returns ``{"1": {"fg_ari", "miou", "mbo", "num_videos"}, ...}``.
    """
    counts = sorted(set(per_video["num_objects"]))
    out = {}
    for count in counts:
        keep = [i for i, c in enumerate(per_video["num_objects"]) if c == count]
        subset = {name: [per_video[name][i] for i in keep] for name in METRICS}
        out[str(count)] = summarise(subset)
    return out


def evaluate_segmentation(model: torch.nn.Module, dataset: Dataset, batch_size: int, chunk_len: int,
                          device: torch.device, progress: bool = True) -> dict[str, float]:
    """Mean FG-ARI / mIoU / mBO (x100) of ``model.segment`` over ``dataset`` (:func:`score_videos`
    then :func:`summarise`)."""
    return summarise(score_videos(model, dataset, batch_size, chunk_len, device, progress))


def _record_scores(summary: dict[str, float]) -> dict[str, float | None]:
    """A :func:`summarise` result as ``seg.json`` writes it: the paper's names, 4 decimals, and
    ``null`` for a mean over no finite value (e.g. mBO of videos without foreground objects;
    JSON has no NaN)."""
    def value(x: float) -> float | None:
        return round(x, 4) if math.isfinite(x) else None
    return {"FG-ARI": value(summary["fg_ari"]), "mIoU": value(summary["miou"]),
            "mBO": value(summary["mbo"]), "num_videos": summary["num_videos"]}


def run_eval_seg(eval_cfg: dict, runtime_cfg: dict, checkpoint_path: str | Path, data_root: str | Path,
                 out_path: str | Path, progress: bool = True, *, run: dict | None = None,
                 tracking: dict | None = None) -> dict:
    """The ``eval_seg`` stage: evaluate a trained checkpoint and write ``seg.json``; with ``run``
    (``{"dataset", "model", "seed"}``) the checkpoint must be that run's
    (:func:`~slotbench.checkpoint.check_run`); with ``tracking`` (the params section) FG-ARI,
    mIoU and mBO also go to the training's MLflow run as ``eval/{fg_ari,miou,mbo}`` at the
    checkpoint's step, and ``mlflow_run_id`` names it (``null`` when not logged)."""
    state, model, device = load_trained(checkpoint_path, data_root, runtime_cfg, run)
    cfg = state["config"]
    dataset = VideoDataset(data_root, eval_cfg["split"], eval_cfg["num_videos"], verify_checksums=True)
    per_video = score_videos(model, dataset, eval_cfg["batch_size"], eval_cfg["chunk_len"], device, progress)
    result = {
        **_record_scores(summarise(per_video)),
        "units": "percent",
        "split": eval_cfg["split"],
        "frames_per_video": cfg["dataset"]["video_len"],
        "by_num_objects": {count: _record_scores(part) for count, part in summarise_by_objects(per_video).items()},
        "per_frame": _record_scores(summarise({name: per_video[f"frame_{name}"] for name in METRICS})),
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "seed": state["seed"],
        "train_steps": state["step"],
        "checkpoint_sha256": sha256_file(checkpoint_path),
        "slotbench_version": __version__,
    }
    from .tracking import log_evaluation, training_run  # here: training imports this module, not the logging

    scores = {"fg_ari": result["FG-ARI"], "miou": result["mIoU"], "mbo": result["mBO"]}
    result["mlflow_run_id"] = log_evaluation(tracking, training_run(checkpoint_path, state), scores, state["step"])
    write_record(out_path, result)
    return result
