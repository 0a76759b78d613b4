"""Segmentation evaluation: per-video scores and the split by number of objects in seg.json."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from slotbench.evaluation.segmentation import score_videos, summarise, summarise_by_objects
from slotbench.metrics import segmentation_scores


class _Oracle(nn.Module):
    """Predicts from a stored table of id maps, looked up by the video's first pixel value."""

    def __init__(self, preds: dict[int, torch.Tensor]):
        super().__init__()
        self.preds = preds

    def segment(self, video: torch.Tensor, chunk_len: int) -> torch.Tensor:
        keys = ((video[:, 0, 0, 0, 0] + 1.0) * 127.5).round().long().tolist()
        return torch.stack([self.preds[k] for k in keys])


def _videos(rng: np.random.Generator, counts: list[int]) -> tuple[list[dict], dict[int, torch.Tensor]]:
    items, preds = [], {}
    for index, count in enumerate(counts):
        seg = np.zeros((4, 8, 8), dtype=np.int64)
        for obj in range(1, count + 1):
            seg[:, obj, 1:7] = obj  # one row per object
            seg[:, obj + 3, 2:5] = obj
        video = np.zeros((4, 8, 8, 3), dtype=np.uint8)
        video[0, 0, 0, 0] = index  # the oracle's key
        pred = torch.from_numpy(np.where(rng.random(seg.shape) < 0.1, rng.integers(0, 5, seg.shape), seg))
        items.append({"video": torch.from_numpy(video), "seg": torch.from_numpy(seg), "index": index})
        preds[index] = pred
    return items, preds


def test_score_videos_and_split_by_objects_match_direct_computation():
    rng = np.random.default_rng(3)
    counts = [1, 2, 3, 1, 2, 3, 3, 0]
    items, preds = _videos(rng, counts)
    per_video = score_videos(_Oracle(preds), items, batch_size=3, chunk_len=4,
                             device=torch.device("cpu"), progress=False)
    assert per_video["num_objects"] == counts
    direct = segmentation_scores(torch.stack([it["seg"] for it in items]), torch.stack(list(preds.values())))
    for name in ("fg_ari", "miou", "mbo"):
        np.testing.assert_allclose(per_video[name], direct[name].numpy(), equal_nan=True)

    by_count = summarise_by_objects(per_video)
    assert sorted(by_count) == ["0", "1", "2", "3"]
    assert [by_count[k]["num_videos"] for k in ("0", "1", "2", "3")] == [1, 2, 2, 3]
    for count in (1, 2, 3):
        keep = [i for i, c in enumerate(counts) if c == count]
        assert math.isclose(by_count[str(count)]["fg_ari"],
                            100 * float(np.mean(direct["fg_ari"].numpy()[keep])))
    # the overall mean is the video-weighted mean of the parts
    overall = summarise(per_video)
    weighted = sum(part["fg_ari"] * part["num_videos"] for part in by_count.values()) / len(counts)
    assert math.isclose(overall["fg_ari"], weighted)


def test_seg_json_scores_are_strict_json_when_a_mean_has_no_finite_value():
    """Videos without foreground objects have no mBO (NaN); seg.json writes null, not NaN."""
    import json

    from slotbench.evaluation.segmentation import _record_scores

    rng = np.random.default_rng(4)
    items, preds = _videos(rng, [0, 2])
    per_video = score_videos(_Oracle(preds), items, batch_size=2, chunk_len=4,
                             device=torch.device("cpu"), progress=False)
    records = {count: _record_scores(part) for count, part in summarise_by_objects(per_video).items()}
    assert records["0"]["mBO"] is None and records["2"]["mBO"] is not None
    assert json.loads(json.dumps(records, allow_nan=False)) == records


def test_frame_means_score_each_frame_alone_against_scikit_learn():
    """``frame_fg_ari`` is the mean of scikit-learn's ARI over the foreground pixels of each frame
    that has any; a prediction that swaps two objects' ids halfway through scores 1 per frame and
    less on the whole video."""
    from sklearn.metrics import adjusted_rand_score

    from slotbench.evaluation.segmentation import frame_means

    rng = np.random.default_rng(5)
    gt = torch.from_numpy(rng.integers(0, 4, (3, 5, 6, 6)))
    gt[1, 2] = 0  # a frame without foreground: no score
    pred = torch.from_numpy(np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 4, gt.shape), gt.numpy()))
    means = frame_means(gt, pred)
    for b in range(3):
        scores = [adjusted_rand_score(gt[b, t][gt[b, t] > 0], pred[b, t][gt[b, t] > 0])
                  for t in range(5) if (gt[b, t] > 0).any()]
        assert math.isclose(means["frame_fg_ari"][b], float(np.mean(scores)), rel_tol=1e-9)
        per_frame = segmentation_scores(gt[b], pred[b])  # [T, H, W]: each frame a "video"
        keep = [(gt[b, t] > 0).any().item() for t in range(5)]
        assert math.isclose(means["frame_mbo"][b], float(per_frame["mbo"][keep].mean()), rel_tol=1e-9)

    swapped = gt.clone()
    swapped[:, 3:] = torch.where(gt[:, 3:] == 1, 2, torch.where(gt[:, 3:] == 2, 1, gt[:, 3:]))
    assert frame_means(gt, swapped)["frame_fg_ari"] == [1.0, 1.0, 1.0]
    assert all(v < 0.9 for v in segmentation_scores(gt, swapped)["fg_ari"].tolist())


def test_score_videos_reports_frame_means():
    rng = np.random.default_rng(6)
    items, preds = _videos(rng, [2, 3])
    per_video = score_videos(_Oracle(preds), items, batch_size=2, chunk_len=4,
                             device=torch.device("cpu"), progress=False)
    from slotbench.evaluation.segmentation import frame_means

    expected = frame_means(torch.stack([it["seg"] for it in items]), torch.stack(list(preds.values())))
    for name, values in expected.items():
        np.testing.assert_allclose(per_video[name], values)
