"""The table stage: rows per seed, mean and std, columns named as in the paper, empty cells with reasons."""

from __future__ import annotations

import pandas as pd
import pytest

from slotbench.io import read_json, write_json
from slotbench.table import COLUMNS, RUN_COLUMN, dataset_table, model_table, write_table


def _run(tmp_path, seed, ari, lpips=0.2, fvd=None):
    files = {k: tmp_path / f"{k}{seed}.json" for k in ("seg", "recon", "fvd_recon", "fvd_comp")}
    write_json(files["seg"], {"FG-ARI": ari, "mIoU": 50.0, "mBO": 40.0 + seed})
    write_json(files["recon"], {"MSE": 10.0, "PSNR": 30.0, "SSIM": 0.9, "LPIPS": lpips,
                                "lpips_missing_reason": None if lpips is not None else "no VGG weights"})
    write_json(files["fvd_recon"], {"FVD": fvd, "reason": None if fvd is not None else "no detector"})
    write_json(files["fvd_comp"], {"FVD": fvd, "reason": None if fvd is not None else "no detector"})
    return files


def test_model_and_dataset_tables(tmp_path):
    runs = {0: _run(tmp_path, 0, 80.0, fvd=100.0), 1: _run(tmp_path, 1, 90.0, fvd=120.0)}
    frame = model_table("shapes", "savi", runs)
    assert list(frame.columns) == ["dataset", "model", "seed", *COLUMNS, "mlflow_run", "notes"]
    assert list(COLUMNS) == ["FG-ARI", "mIoU", "mBO", "MSE", "PSNR", "SSIM", "LPIPS", "FVD (recon)", "FVD (comp-gen)"]
    assert list(frame["seed"]) == ["0", "1", "mean", "std"]
    assert frame.loc[2, "FG-ARI"] == pytest.approx(85.0)
    assert frame.loc[3, "FG-ARI"] == pytest.approx(pd.Series([80.0, 90.0]).std())
    assert frame.loc[2, "FVD (recon)"] == pytest.approx(110.0)
    write_table(frame, tmp_path / "savi.csv")
    both = dataset_table([tmp_path / "savi.csv", tmp_path / "savi.csv"])
    assert len(both) == 8 and both.loc[2, "seed"] == "mean"


def test_missing_metrics_are_empty_cells_with_a_reason(tmp_path):
    frame = model_table("shapes", "savi", {0: _run(tmp_path, 0, 80.0, lpips=None, fvd=None)})
    assert pd.isna(frame.loc[0, "LPIPS"]) and pd.isna(frame.loc[0, "FVD (comp-gen)"])
    assert "LPIPS: not computed, see recon0.json" in frame.loc[0, "notes"]
    assert "FVD (recon): not computed, see fvd_recon0.json" in frame.loc[0, "notes"]
    write_table(frame, tmp_path / "t.csv")
    assert ",,," in (tmp_path / "t.csv").read_text().splitlines()[1]


def test_missing_key_is_an_error(tmp_path):
    files = _run(tmp_path, 0, 1.0)
    write_json(files["seg"], {"FG-ARI": 1.0})
    with pytest.raises(ValueError, match="seg0.json: missing mIoU"):
        model_table("shapes", "savi", {0: files})


def test_a_seed_without_a_metric_leaves_its_mean_and_std_empty(tmp_path):
    """The mean row is over every seed or empty: never the mean of the seeds that have the metric."""
    runs = {0: _run(tmp_path, 0, 80.0, lpips=0.3), 1: _run(tmp_path, 1, 90.0, lpips=None), 2: _run(tmp_path, 2, 70.0)}
    frame = model_table("shapes", "savi", runs).set_index("seed")
    assert pd.isna(frame.loc["mean", "LPIPS"]) and pd.isna(frame.loc["std", "LPIPS"])
    assert frame.loc["mean", "FG-ARI"] == pytest.approx(80.0)
    assert frame.loc["mean", "notes"] == "LPIPS: missing for seed 1"


def test_rows_name_their_mlflow_run(tmp_path):
    """Each seed's row says which MLflow run its metrics were logged to (``mlflow_run_id`` of its
    records); empty for a run evaluated without tracking and for the mean and std rows."""
    run_id = "0123456789abcdef0123456789abcdef"
    runs = {0: _run(tmp_path, 0, 80.0), 1: _run(tmp_path, 1, 90.0)}
    for path in runs[0].values():
        write_json(path, {**read_json(path), "mlflow_run_id": run_id})
    write_json(runs[1]["seg"], {**read_json(runs[1]["seg"]), "mlflow_run_id": None})
    frame = model_table("shapes", "savi", runs)
    assert list(frame[RUN_COLUMN]) == [run_id, "", "", ""]
    write_table(frame, tmp_path / "savi.csv")
    both = dataset_table([tmp_path / "savi.csv"])
    assert both.loc[0, RUN_COLUMN] == run_id and pd.isna(both.loc[1, RUN_COLUMN])
