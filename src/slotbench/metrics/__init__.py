"""Evaluation metrics: per-video segmentation scores and the Frechet distance."""

from slotbench.metrics.frechet import frechet_distance
from slotbench.metrics.segmentation import fg_ari, mbo, miou, segmentation_scores

__all__ = ["fg_ari", "miou", "mbo", "segmentation_scores", "frechet_distance"]
