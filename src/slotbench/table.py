"""The table stage: one row per model and seed plus a mean row, columns named as in the paper."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path, read_json

COLUMNS = ("FG-ARI", "mIoU", "mBO")


def model_table(dataset: str, model: str, seg_files: dict[int, str | Path]) -> pd.DataFrame:
    """Rows ``seed`` = each seed, then ``mean`` and ``std`` over seeds (std empty for one seed).

    Args:
        seg_files: seed -> path of that run's ``seg.json``.
    """
    rows = []
    for seed, path in sorted(seg_files.items()):
        seg = read_json(path)
        missing = [c for c in COLUMNS if c not in seg]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)}")
        rows.append({"dataset": dataset, "model": model, "seed": str(seed), **{c: seg[c] for c in COLUMNS}})
    frame = pd.DataFrame(rows)
    values = frame[list(COLUMNS)].astype(float)
    mean = {"dataset": dataset, "model": model, "seed": "mean", **values.mean().to_dict()}
    std = {"dataset": dataset, "model": model, "seed": "std",
           **(values.std(ddof=1).to_dict() if len(frame) > 1 else {c: float("nan") for c in COLUMNS})}
    return pd.concat([frame, pd.DataFrame([mean, std])], ignore_index=True)


def dataset_table(model_tables: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-model tables into the dataset's table."""
    return pd.concat([pd.read_csv(p, dtype={"seed": str}) for p in model_tables], ignore_index=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV (2 decimals), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.2f")
