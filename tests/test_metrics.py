"""Tests for slotbench.metrics: FG-ARI, mIoU, mBO and the Frechet distance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import linalg
from sklearn.metrics import adjusted_rand_score

from slotbench.metrics import fg_ari, frechet_distance, mbo, miou, segmentation_scores

# --------------------------------------------------------------------------- helpers


def _random_case(rng: np.random.Generator, gt_ids, pred_ids, shape):
    """One video: GT and pred drawn from the given (possibly non-contiguous) id sets."""
    gt = rng.choice(np.asarray(gt_ids), size=shape)
    pred = rng.choice(np.asarray(pred_ids), size=shape)
    # correlate pred with gt on ~half the pixels so scores are not all near 0
    keep = rng.random(shape) < 0.5
    mapping = {g: rng.choice(np.asarray(pred_ids)) for g in gt_ids}
    mapped = np.vectorize(mapping.get)(gt)
    return gt, np.where(keep, mapped, pred)


def _iou_np(g: np.ndarray, p: np.ndarray) -> float:
    inter = np.logical_and(g, p).sum()
    union = np.logical_or(g, p).sum()
    return float(inter / (union + 1e-8))


def _miou_brute(gt: np.ndarray, pred: np.ndarray) -> float:
    """All injective assignments of present GT ids to predicted ids 0..max(pred)."""
    g_ids = sorted(np.unique(gt).tolist())
    p_ids = list(range(int(pred.max()) + 1))
    iou = np.array([[_iou_np(gt == g, pred == p) for p in p_ids] for g in g_ids])
    best = 0.0
    if len(p_ids) >= len(g_ids):
        for perm in itertools.permutations(range(len(p_ids)), len(g_ids)):
            best = max(best, sum(iou[i, j] for i, j in enumerate(perm)))
    else:  # fewer predicted ids: choose which GT ids get matched
        for perm in itertools.permutations(range(len(g_ids)), len(p_ids)):
            best = max(best, sum(iou[i, j] for j, i in enumerate(perm)))
    return best / len(g_ids)


def _mbo_brute(gt: np.ndarray, pred: np.ndarray) -> float:
    fg_ids = [g for g in np.unique(gt).tolist() if g != 0]
    if not fg_ids:
        return float("nan")
    p_ids = np.unique(pred).tolist()
    return float(np.mean([max(_iou_np(gt == g, pred == p) for p in p_ids) for g in fg_ids]))


def _fg_ari_sklearn(gt: np.ndarray, pred: np.ndarray) -> float:
    m = gt.reshape(-1) != 0
    if m.sum() == 0:
        return 1.0
    return float(adjusted_rand_score(gt.reshape(-1)[m], pred.reshape(-1)[m]))


ID_SETS = [
    ([0, 1, 2, 3], [0, 1, 2, 3, 4]),
    ([0, 5, 17], [2, 3, 9]),  # non-contiguous, pred 0 absent
    ([3, 4], [0, 1, 2, 3]),  # no background at all
    ([0, 1, 2, 3], [0, 1]),  # fewer predicted ids than GT ids
    ([0, 7], [0, 1, 2, 3, 4]),
]


def _batch(seed: int, gt_ids, pred_ids, b=3, t=2, h=5, w=4):
    rng = np.random.default_rng(seed)
    pairs = [_random_case(rng, gt_ids, pred_ids, (t, h, w)) for _ in range(b)]
    gt = np.stack([p[0] for p in pairs]).astype(np.int64)
    pred = np.stack([p[1] for p in pairs]).astype(np.int64)
    return gt, pred


# --------------------------------------------------------------------------- FG-ARI


@pytest.mark.parametrize("ids", ID_SETS)
@pytest.mark.parametrize("seed", range(4))
def test_fg_ari_matches_sklearn(ids, seed):
    gt, pred = _batch(seed, *ids)
    got = fg_ari(torch.from_numpy(gt), torch.from_numpy(pred))
    assert got.shape == (gt.shape[0],)
    assert got.dtype.is_floating_point
    want = [_fg_ari_sklearn(gt[i], pred[i]) for i in range(gt.shape[0])]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10)


def test_fg_ari_perfect_and_permuted():
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.integers(0, 5, size=(2, 3, 6, 6)))
    assert torch.allclose(fg_ari(gt, gt), torch.ones(2, dtype=torch.float64))
    perm = torch.tensor([9, 3, 0, 11, 4])  # relabel with a non-contiguous permutation
    assert torch.allclose(fg_ari(gt, perm[gt]), torch.ones(2, dtype=torch.float64))
    # background pixels are ignored: any prediction there does not matter
    noisy = torch.where(gt == 0, torch.from_numpy(rng.integers(0, 5, size=gt.shape)), gt)
    assert torch.allclose(fg_ari(gt, noisy), torch.ones(2, dtype=torch.float64))


def test_fg_ari_degenerate_cases():
    gt = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    pred = torch.randint(0, 3, (1, 2, 4, 4))
    assert fg_ari(gt, pred).item() == 1.0  # no foreground
    gt1 = torch.full((1, 2, 4, 4), 3)
    gt1[..., 0] = 0
    assert fg_ari(gt1, torch.full_like(gt1, 2)).item() == 1.0  # one object, one segment
    one = torch.zeros(1, 4, 4, dtype=torch.long)
    one[0, 0, 0] = 1
    assert fg_ari(one, pred[:, 0]).item() == 1.0  # a single foreground pixel


def test_fg_ari_one_object_is_all_or_nothing():
    """With one GT object, any split of it (one stray pixel in one frame) gives FG-ARI 0 exactly."""
    gt = torch.zeros(1, 24, 8, 8, dtype=torch.long)
    gt[:, :, 2:6, 2:6] = 1
    pred = torch.where(gt > 0, 1, 0)
    assert fg_ari(gt, pred).item() == 1.0
    pred[0, 17, 3, 3] = 2  # one pixel of 384 foreground pixels goes to another slot
    fg = gt[0].flatten() > 0
    expected = adjusted_rand_score(gt[0].flatten()[fg].numpy(), pred[0].flatten()[fg].numpy())
    assert expected == 0.0
    assert fg_ari(gt, pred).item() == 0.0


def test_fg_ari_uint8_and_int32():
    gt, pred = _batch(1, *ID_SETS[0])
    ref = fg_ari(torch.from_numpy(gt), torch.from_numpy(pred))
    got8 = fg_ari(torch.from_numpy(gt.astype(np.uint8)), torch.from_numpy(pred.astype(np.uint8)))
    got32 = fg_ari(torch.from_numpy(gt.astype(np.int32)), torch.from_numpy(pred.astype(np.int32)))
    torch.testing.assert_close(got8, ref)
    torch.testing.assert_close(got32, ref)


# --------------------------------------------------------------------------- mIoU / mBO


@pytest.mark.parametrize("ids", ID_SETS)
@pytest.mark.parametrize("seed", range(3))
def test_miou_and_mbo_match_brute_force(ids, seed):
    gt, pred = _batch(100 + seed, *ids)
    got_miou = miou(torch.from_numpy(gt), torch.from_numpy(pred)).numpy()
    got_mbo = mbo(torch.from_numpy(gt), torch.from_numpy(pred)).numpy()
    want_miou = [_miou_brute(gt[i], pred[i]) for i in range(gt.shape[0])]
    want_mbo = [_mbo_brute(gt[i], pred[i]) for i in range(gt.shape[0])]
    np.testing.assert_allclose(got_miou, want_miou, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_mbo, want_mbo, rtol=0, atol=1e-9)


def test_miou_mbo_known_values():
    gt = torch.tensor([[[0, 0, 5, 5], [0, 0, 5, 5]]])  # [1, 2, 4]
    pred = torch.tensor([[[1, 1, 1, 1], [1, 1, 1, 1]]])  # one segment covering all
    # ids 0..1 predicted; one GT id can be matched with IoU 0.5, the other gets 0
    assert miou(gt, pred).item() == pytest.approx(0.25)
    assert mbo(gt, pred).item() == pytest.approx(0.5)  # only id 5 is foreground
    perfect = torch.tensor([[[2, 2, 0, 0], [2, 2, 0, 0]]])
    assert miou(gt, perfect).item() == pytest.approx(1.0)
    assert mbo(gt, perfect).item() == pytest.approx(1.0)


def test_mbo_nan_without_foreground_and_miou_bg_only():
    gt = torch.zeros(2, 3, 3, dtype=torch.uint8)
    pred = torch.zeros(2, 3, 3, dtype=torch.uint8)
    pred[1, 0] = 1
    assert torch.isnan(mbo(gt, pred)).all()
    np.testing.assert_allclose(miou(gt, pred).numpy(), [1.0, 6 / 9], atol=1e-9)
    assert torch.equal(fg_ari(gt, pred), torch.ones(2, dtype=torch.float64))


def test_segmentation_scores_consistent_with_wrappers():
    gt, pred = _batch(7, [0, 2, 9], [0, 1, 4, 6], b=4)
    g, p = torch.from_numpy(gt), torch.from_numpy(pred)
    s = segmentation_scores(g, p)
    assert set(s) == {"fg_ari", "miou", "mbo"}
    torch.testing.assert_close(s["fg_ari"], fg_ari(g, p))
    torch.testing.assert_close(s["miou"], miou(g, p))
    torch.testing.assert_close(s["mbo"], mbo(g, p))
    for k, v in s.items():
        assert v.shape == (4,) and v.dtype == torch.float64
        lo = -1.0 if k == "fg_ari" else 0.0  # ARI can dip below 0 for worse-than-chance
        assert ((v >= lo) & (v <= 1 + 1e-12)).all()


def test_large_ids_are_compacted_without_changing_scores():
    gt, pred = _batch(3, [0, 1, 2], [0, 1, 2, 3])
    g, p = torch.from_numpy(gt), torch.from_numpy(pred)
    ref = segmentation_scores(g, p)
    big_g = torch.tensor([0, 40_000, 123_456])[g]  # keeps 0 as background
    big_p = torch.tensor([7, 99_999, 500_000, 3])[p]
    got = segmentation_scores(big_g, big_p)
    torch.testing.assert_close(got["fg_ari"], ref["fg_ari"])
    torch.testing.assert_close(got["mbo"], ref["mbo"])
    # mIoU over matched present ids is unchanged by relabelling predictions
    torch.testing.assert_close(got["miou"], ref["miou"])


# --------------------------------------------------------------------------- shapes / time


def test_bhw_equals_b1hw():
    gt, pred = _batch(5, [0, 1, 3], [0, 1, 2], t=1)
    g3, p3 = torch.from_numpy(gt[:, 0]), torch.from_numpy(pred[:, 0])
    s3 = segmentation_scores(g3, p3)
    s4 = segmentation_scores(g3.unsqueeze(1), p3.unsqueeze(1))
    for k in s3:
        torch.testing.assert_close(s3[k], s4[k], equal_nan=True)


def test_time_folding_penalises_inconsistent_ids():
    frame = torch.zeros(6, 6, dtype=torch.long)
    frame[:3, :3] = 1
    frame[3:, 3:] = 2
    gt = frame.expand(4, 6, 6).unsqueeze(0).clone()  # [1, T=4, 6, 6], ids stable over time
    consistent = gt.clone()
    swapped = gt.clone()
    swapped[0, 2:] = torch.tensor([0, 2, 1])[gt[0, 2:]]  # objects swap ids halfway
    good = segmentation_scores(gt, consistent)
    bad = segmentation_scores(gt, swapped)
    for k in ("fg_ari", "miou", "mbo"):
        assert good[k].item() == pytest.approx(1.0)
        assert bad[k].item() < good[k].item() - 0.1
    # each frame on its own would be perfect
    per_frame = segmentation_scores(gt[0], swapped[0])  # frames as a batch of [H, W]
    assert torch.allclose(per_frame["fg_ari"], torch.ones(4, dtype=torch.float64))


# --------------------------------------------------------------------------- errors


def test_errors():
    g = torch.zeros(2, 3, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        fg_ari(g, torch.zeros(2, 3, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        miou(g, g.float())
    with pytest.raises(ValueError, match="integer"):
        mbo(g.double(), g)
    with pytest.raises(ValueError, match="ndim"):
        fg_ari(g[0, 0], g[0, 0])
    with pytest.raises(ValueError, match="negative"):
        fg_ari(g - 1, g)


# --------------------------------------------------------------------------- Frechet


def _frechet_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def test_frechet_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    want = _frechet_scipy(a, b)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    got_t = frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b))
    assert got_t == pytest.approx(want, rel=1e-4)  # float32 input is upcast to float64


def test_frechet_identical_and_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 8))
    assert abs(frechet_distance(a, a)) < 1e-8
    shift = rng.normal(size=8)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8, abs=1e-8)


def test_frechet_rank_deficient_is_finite_real():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 32))
    b = rng.normal(size=(7, 32)) + 1.0
    d = frechet_distance(a, b)
    assert isinstance(d, float) and math.isfinite(d) and d >= 0.0


def test_frechet_errors():
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(10), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="same feature dim"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gt, pred = _batch(11, [0, 5, 17], [0, 1, 2, 3])
    g, p = torch.from_numpy(gt), torch.from_numpy(pred)
    cpu = segmentation_scores(g, p)
    gpu = segmentation_scores(g.cuda(), p.cuda())
    for k in cpu:
        assert gpu[k].device.type == "cuda"
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], equal_nan=True)
    a = torch.randn(50, 4)
    assert frechet_distance(a.cuda(), a.cuda() + 1) == pytest.approx(frechet_distance(a, a + 1))
