"""The table stage: one row per model and seed plus mean and std rows, columns named as in the paper.

A metric that could not be computed (e.g. LPIPS or FVD without their weights) is an empty
cell, and the row's ``notes`` says which file holds the reason; it is never filled in, and the
mean and std over seeds of such a column are empty too (not the mean of the other seeds).

``mlflow_run`` is the MLflow run the row's metrics were logged to (the training's run, where
``mlflow ui`` shows them as ``eval/*`` next to the losses), as the metric files record it
(``mlflow_run_id``); empty when they were not logged (tracking off, or trained without it).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .io import atomic_path, read_json

#: column -> (which run file, key in it)
SOURCES = {
    "FG-ARI": ("seg", "FG-ARI"),
    "mIoU": ("seg", "mIoU"),
    "mBO": ("seg", "mBO"),
    "MSE": ("recon", "MSE"),
    "PSNR": ("recon", "PSNR"),
    "SSIM": ("recon", "SSIM"),
    "LPIPS": ("recon", "LPIPS"),
    "FVD (recon)": ("fvd_recon", "FVD"),
    "FVD (comp-gen)": ("fvd_comp", "FVD"),
}
COLUMNS = tuple(SOURCES)
#: The column naming the MLflow run of a seed's row.
RUN_COLUMN = "mlflow_run"
REASON_KEYS = {"LPIPS": "lpips_missing_reason", "FVD (recon)": "reason", "FVD (comp-gen)": "reason"}


def run_files(fmt: dict) -> dict[str, str]:
    """The metric files of one run (``fmt``: dataset, model, seed)."""
    return {"seg": paths.SEG_METRICS.format(**fmt), "recon": paths.RECON_METRICS.format(**fmt),
            "fvd_recon": paths.FVD_METRICS.format(kind="recon", **fmt),
            "fvd_comp": paths.FVD_METRICS.format(kind="comp", **fmt)}


def model_table(dataset: str, model: str, runs: dict[int, dict[str, str | Path]]) -> pd.DataFrame:
    """Rows ``seed`` = each seed, then ``mean`` and ``std`` over seeds (std empty for one seed).

    Args:
        runs: seed -> {"seg", "recon", "fvd_recon", "fvd_comp"} metric files of that run.
    """
    rows = []
    for seed, files in sorted(runs.items()):
        records = {kind: read_json(path) for kind, path in files.items()}
        row, notes = {"dataset": dataset, "model": model, "seed": str(seed)}, []
        for column, (kind, key) in SOURCES.items():
            if key not in records[kind]:
                raise ValueError(f"{files[kind]}: missing {key}")
            value = records[kind][key]
            row[column] = float("nan") if value is None else float(value)
            if value is None:
                notes.append(f"{column}: not computed, see {Path(files[kind]).name} ({REASON_KEYS.get(column, '')})")
        row[RUN_COLUMN] = " ".join(sorted({r["mlflow_run_id"] for r in records.values() if r.get("mlflow_run_id")}))
        row["notes"] = "; ".join(notes)
        rows.append(row)
    frame = pd.DataFrame(rows)
    values = frame[list(COLUMNS)].astype(float)
    partial = "; ".join(f"{column}: missing for seed {', '.join(frame['seed'][values[column].isna()])}"
                        for column in COLUMNS if values[column].isna().any() and values[column].notna().any())
    mean = {"dataset": dataset, "model": model, "seed": "mean", **values.mean(skipna=False).to_dict(),
            RUN_COLUMN: "", "notes": partial}
    std = {"dataset": dataset, "model": model, "seed": "std", RUN_COLUMN: "", "notes": partial,
           **(values.std(ddof=1, skipna=False).to_dict() if len(frame) > 1 else {c: float("nan") for c in COLUMNS})}
    return pd.concat([frame, pd.DataFrame([mean, std])], ignore_index=True)


def dataset_table(model_tables: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-model tables into the dataset's table."""
    return pd.concat([pd.read_csv(p, dtype={"seed": str, RUN_COLUMN: str}, keep_default_na=True) for p in model_tables],
                     ignore_index=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV (4 significant decimals), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4g")
