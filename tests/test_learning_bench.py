"""The pure parts of bench/learning_shapes.py: the flatness of a curve, the targets, the table."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
learning = pytest.importorskip("learning_shapes")


def test_val_slope_is_the_least_squares_slope_of_the_last_third():
    steps = list(range(0, 3001, 250))
    rising = pd.DataFrame({"step": steps, "fg_ari": [0.01 * s for s in steps]})  # 10 points / 1k steps
    assert learning.val_slope(rising) == pytest.approx(10.0)
    flat_tail = pd.DataFrame({"step": steps, "fg_ari": [min(s, 1500) * 0.02 for s in steps]})
    assert learning.val_slope(flat_tail) == pytest.approx(0.0)
    assert learning.val_slope(rising.iloc[:2]) is None  # too few points to tell
    assert learning.val_slope(pd.DataFrame({"step": [], "fg_ari": []})) is None


def _result(savi, steve, slotdiffusion, grid=(30.0, 10.0)):
    out = {m: {"fg_ari": f, "miou": 0.0, "mbo": b} for m, (f, b) in
           zip(("savi", "steve", "slotdiffusion"), (savi, steve, slotdiffusion))}
    out["baseline_grid"] = {"fg_ari": grid[0], "miou": 0.0, "mbo": grid[1]}
    return out


def test_targets_check_level_order_and_baselines():
    ok = learning.targets(_result((81, 40), (85, 45), (90, 50)), ["savi", "steve", "slotdiffusion"])
    assert all(ok.values()) and "paper_order_fg_ari" in ok
    bad = learning.targets(_result((20, 5), (85, 45), (84, 50)), ["savi", "steve", "slotdiffusion"])
    assert not bad["savi_fg_ari_at_least_80"]
    assert not bad["paper_order_fg_ari"] and bad["paper_order_mbo"]
    assert not bad["savi_above_baselines_fg_ari"] and not bad["savi_above_baselines_mbo"]
    assert bad["steve_above_baselines_mbo"]
    partial = learning.targets(_result((81, 40), (85, 45), (90, 50)), ["steve"])
    assert "paper_order_fg_ari" not in partial and set(partial) == {
        "steve_fg_ari_at_least_80", "steve_above_baselines_fg_ari", "steve_above_baselines_mbo"}


def test_run_lengths_name_the_tokenizer_only_where_there_is_one():
    class Args:
        steps, val_every, threads, tokenizer_steps, seed, set, model_set = 100, 10, 1, 20, 0, [], []
    assert "vqvae.train.max_steps" in learning.run_lengths(Args, "slotdiffusion")
    assert not any(k.endswith("tokenizer") or "dvae" in k or "vqvae" in k for k in learning.run_lengths(Args, "savi"))
    assert set(learning.run_lengths(Args, "savi")) == {"train.max_steps", "train.val_every", "runtime.threads"}


def test_sets_reach_the_stages_whose_configuration_has_them(tmp_path):
    """``--set`` goes to the tokenizer only for the sections it has, ``--model-set`` to the slot
    model's stages only; a seed other than 0 is part of the run lengths."""
    class Args:
        steps, val_every, threads, tokenizer_steps, seed = 100, 10, 1, 20, 1
        set, model_set = ["train.cpu_amp=bf16", "model.num_slots=4"], ["train.lr=8e-4"]
    lengths = learning.run_lengths(Args, "slotdiffusion")
    assert lengths["seed"] == 1
    sets = learning.overrides(tmp_path, "slotdiffusion", lengths)
    assert "train.cpu_amp=bf16" in sets["tokenizer"] and "model.num_slots=4" not in sets["tokenizer"]
    assert "train.lr=8e-4" not in sets["tokenizer"]
    assert {"train.cpu_amp=bf16", "model.num_slots=4", "train.lr=8e-4"} <= set(sets["train"]) & set(sets["eval"])
