"""Per-video segmentation metrics: FG-ARI, Hungarian mIoU and mean best overlap (mBO).

Conventions (matching the original SlotDiffusion evaluation, spec §4.1 / item 15):

* Inputs are integer id maps ``[B, T, H, W]`` (or ``[B, H, W]``, read as ``T = 1``).
  Time is folded into the pixels: each video is scored once over its ``T*H*W`` pixels, so
  object ids must be consistent over time.
* Ground-truth id ``0`` is the background.  Ids need not be contiguous (``{0, 5, 17}`` is
  fine); ids that are absent from a video are ignored where the definition says "present".
* Every metric returns one value per video, a ``torch.Tensor[B]`` of dtype ``float64`` on the
  input device: mIoU and mBO in ``[0, 1]``, FG-ARI in ``[-1, 1]`` (below 0 only for worse than
  chance; NOT multiplied by 100, the report stage does that).  mIoU and mBO may be NaN (see
  below); average over videos with ``nanmean``.

All three metrics derive from a single per-video contingency table
``C[b, g, p] = #pixels of video b with GT id g and predicted id p``, built with one
``torch.bincount`` for the whole batch on the inputs' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["fg_ari", "miou", "mbo", "segmentation_scores"]

_IOU_EPS = 1e-8
# Above this many contingency cells the ids are compacted first (memory guard for huge ids).
_MAX_TABLE_CELLS = 1 << 25


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _check_inputs(gt: Any, pred: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the id maps and return them flattened to ``[B, T*H*W]`` int64."""
    gt = _as_tensor(gt, "gt")
    pred = _as_tensor(pred, "pred")
    for name, t in (("gt", gt), ("pred", pred)):
        if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
            raise ValueError(
                f"{name} must be an integer tensor of segment ids, got dtype {t.dtype}"
            )
        if t.ndim not in (3, 4):
            raise ValueError(
                f"{name} must have shape [B, T, H, W] or [B, H, W], got ndim={t.ndim} "
                f"(shape {tuple(t.shape)})"
            )
    if gt.shape != pred.shape:
        raise ValueError(
            f"gt and pred must have the same shape, got {tuple(gt.shape)} vs {tuple(pred.shape)}"
        )
    if gt.device != pred.device:
        raise ValueError(f"gt and pred must be on the same device, got {gt.device} vs {pred.device}")
    b = gt.shape[0]
    gt = gt.reshape(b, -1).long()
    pred = pred.reshape(b, -1).long()
    if gt.numel() > 0:
        if int(gt.min()) < 0:
            raise ValueError("gt contains negative ids; ids must be >= 0")
        if int(pred.min()) < 0:
            raise ValueError("pred contains negative ids; ids must be >= 0")
    return gt, pred


def _compact(ids: torch.Tensor, keep_zero: bool) -> tuple[torch.Tensor, int]:
    """Map the ids used anywhere in the batch to 0..K-1 (order kept); id 0 stays 0 if keep_zero."""
    uniq, inv = torch.unique(ids, sorted=True, return_inverse=True)
    if keep_zero and (uniq.numel() == 0 or int(uniq[0]) != 0):
        inv = inv + 1  # reserve index 0 for the (absent) background
        return inv, uniq.numel() + 1
    return inv, max(uniq.numel(), 1)


def _contingency(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Contingency tables ``[B, G, P]`` (int64 pixel counts) for flattened ``[B, N]`` id maps.

    ``G = max GT id + 1`` and ``P = max predicted id + 1`` over the batch (ids absent from a
    video give all-zero rows/columns).  If that table would be huge, the ids are first
    compacted to the ones used in the batch, which changes no metric (GT id 0 is preserved).
    """
    b, n = gt.shape
    if n == 0:
        return torch.zeros(b, 1, 1, dtype=torch.long, device=gt.device)
    n_gt = int(gt.max()) + 1
    n_pred = int(pred.max()) + 1
    if b * n_gt * n_pred > _MAX_TABLE_CELLS:
        gt, n_gt = _compact(gt, keep_zero=True)
        pred, n_pred = _compact(pred, keep_zero=False)
    cells = n_gt * n_pred
    offset = torch.arange(b, device=gt.device).unsqueeze(1) * cells
    idx = (offset + gt * n_pred + pred).reshape(-1)
    return torch.bincount(idx, minlength=b * cells).reshape(b, n_gt, n_pred)


def _scores_from_table(table: torch.Tensor) -> dict[str, torch.Tensor]:
    """All metrics from contingency tables ``[B, G, P]``; each value is ``float64 [B]``."""
    device = table.device
    bsz = table.shape[0]
    counts = table.double()

    # ---- FG-ARI: drop the GT background row; exact integer pair counts, float64 ratio. ----
    fg = table[:, 1:, :]
    a = fg.sum(dim=2)  # [B, G-1] GT object sizes
    b = fg.sum(dim=1)  # [B, P]  predicted sizes on foreground pixels
    n = a.sum(dim=1)  # [B]     number of foreground pixels
    sum_ij = (fg * (fg - 1)).sum(dim=(1, 2))
    sum_a = (a * (a - 1)).sum(dim=1)
    sum_b = (b * (b - 1)).sum(dim=1)
    n_pairs = n * (n - 1)
    expected = sum_a.double() * sum_b.double() / n_pairs.clamp(min=1).double()
    denom = 0.5 * (sum_a.double() + sum_b.double()) - expected
    # The denominator is exactly 0 iff both partitions are all-singletons or both are one
    # cluster (incl. n <= 1); decide that in exact integers instead of float round-off.
    degenerate = ((sum_a == 0) & (sum_b == 0)) | ((sum_a == n_pairs) & (sum_b == n_pairs))
    ari = (sum_ij.double() - expected) / torch.where(degenerate, torch.ones_like(denom), denom)
    ari = torch.where(degenerate, torch.ones_like(ari), ari)

    # ---- IoU between every GT id and every predicted id. ----
    gt_size = counts.sum(dim=2)  # [B, G]
    pred_size = counts.sum(dim=1)  # [B, P]
    union = gt_size.unsqueeze(2) + pred_size.unsqueeze(1) - counts
    iou = counts / (union + _IOU_EPS)  # [B, G, P]
    present = gt_size > 0  # [B, G]

    # ---- mBO: best IoU per present foreground GT id, predictions may be reused. ----
    fg_present = present[:, 1:]
    best = iou[:, 1:, :].amax(dim=2) if iou.shape[1] > 1 else iou.new_zeros(bsz, 0)
    n_fg = fg_present.sum(dim=1)
    mbo_val = (best * fg_present).sum(dim=1) / n_fg.clamp(min=1)
    mbo_val = torch.where(n_fg > 0, mbo_val, torch.full_like(mbo_val, float("nan")))

    # ---- mIoU: one-to-one Hungarian matching over present GT ids (background included). ----
    iou_np = iou.cpu().numpy()
    present_np = present.cpu().numpy()
    miou_np = np.full(bsz, np.nan, dtype=np.float64)
    for i in range(bsz):
        rows = iou_np[i][present_np[i]]  # [N_gt_present, P]
        if rows.shape[0] == 0:
            continue
        r, c = linear_sum_assignment(rows, maximize=True)
        miou_np[i] = rows[r, c].sum() / rows.shape[0]  # unmatched GT ids count as 0
    miou_val = torch.from_numpy(miou_np).to(device)

    return {"fg_ari": ari, "miou": miou_val, "mbo": mbo_val}


def segmentation_scores(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """FG-ARI, mIoU and mBO for a batch of videos from one shared contingency table.

    Args:
        gt: integer GT ids ``[B, T, H, W]`` or ``[B, H, W]``, values >= 0, 0 = background.
        pred: integer predicted ids (e.g. argmax over slots), same shape as ``gt``.

    Returns:
        ``{"fg_ari": [B], "miou": [B], "mbo": [B]}``, float64 tensors on the input device,
        unitless fractions, not percentages (mIoU and mBO in ``[0, 1]``, FG-ARI in ``[-1, 1]``).  See :func:`fg_ari`,
        :func:`miou` and :func:`mbo` for the definitions and NaN cases.

    Raises:
        ValueError: shape mismatch, wrong ndim, non-integer dtype, negative ids, or inputs on
            different devices.
    """
    g, p = _check_inputs(gt, pred)
    return _scores_from_table(_contingency(g, p))


def fg_ari(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Foreground adjusted Rand index per video, ``float64 [B]`` in ``[-1, 1]`` (typically [0, 1]).

    Adjusted Rand index between GT and predicted ids over the pixels whose GT id is not 0
    (all ``T*H*W`` pixels of a video together), from the contingency table ``n_ij``:
    ``ARI = (sum n_ij(n_ij-1) - E) / (0.5 (sum a(a-1) + sum b(b-1)) - E)`` with
    ``E = sum a(a-1) * sum b(b-1) / max(n(n-1), 1)``.  Returns 1.0 when the denominator is 0
    (no foreground pixel, or one GT object predicted as one segment).  Computed in float64.

    Args:
        gt, pred: integer ids ``[B, T, H, W]`` or ``[B, H, W]`` of the same shape.
    """
    return segmentation_scores(gt, pred)["fg_ari"]


def miou(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Hungarian-matched mean IoU per video (background included), ``float64 [B]`` in ``[0, 1]``.

    Uses the GT ids present in the video (id 0 included when present) against predicted ids
    ``0..max_pred_id`` (absent ones have IoU 0).  ``IoU = inter / (union + 1e-8)``; a
    one-to-one assignment maximising the total IoU is found with
    ``scipy.optimize.linear_sum_assignment(maximize=True)``; the score is the sum of matched
    IoUs divided by the number of present GT ids (unmatched GT ids count 0).  NaN only for a
    video with zero pixels.

    Args:
        gt, pred: integer ids ``[B, T, H, W]`` or ``[B, H, W]`` of the same shape.
    """
    return segmentation_scores(gt, pred)["miou"]


def mbo(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean best overlap per video, ``float64 [B]`` in ``[0, 1]``; NaN without foreground.

    For each foreground GT id present (id != 0) the best IoU over all predicted ids is taken
    (predicted ids may be reused, predicted background allowed); the video score is the mean
    over those GT ids, NaN when the video has no foreground GT id.

    Args:
        gt, pred: integer ids ``[B, T, H, W]`` or ``[B, H, W]`` of the same shape.
    """
    return segmentation_scores(gt, pred)["mbo"]
