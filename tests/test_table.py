"""The table stage: rows per seed, mean and std, columns named as in the paper."""

from __future__ import annotations

import pandas as pd
import pytest

from slotbench.io import write_json
from slotbench.table import dataset_table, model_table, write_table


def test_model_and_dataset_tables(tmp_path):
    files = {}
    for seed, ari in [(0, 80.0), (1, 90.0)]:
        files[seed] = tmp_path / f"seed{seed}.json"
        write_json(files[seed], {"FG-ARI": ari, "mIoU": 50.0, "mBO": 40.0 + seed})
    frame = model_table("shapes", "savi", files)
    assert list(frame.columns) == ["dataset", "model", "seed", "FG-ARI", "mIoU", "mBO"]
    assert list(frame["seed"]) == ["0", "1", "mean", "std"]
    assert frame.loc[2, "FG-ARI"] == pytest.approx(85.0)
    assert frame.loc[3, "FG-ARI"] == pytest.approx(pd.Series([80.0, 90.0]).std())
    write_table(frame, tmp_path / "savi.csv")
    both = dataset_table([tmp_path / "savi.csv", tmp_path / "savi.csv"])
    assert len(both) == 8 and both.loc[2, "seed"] == "mean"


def test_missing_metric_is_an_error(tmp_path):
    write_json(tmp_path / "s.json", {"FG-ARI": 1.0})
    with pytest.raises(ValueError, match="s.json: missing mIoU, mBO"):
        model_table("shapes", "savi", {0: tmp_path / "s.json"})
