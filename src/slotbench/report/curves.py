"""Training curves: a run's metric history read back from MLflow, written as CSV and plotted.

The train stage logs ``train/*`` (loss, lr, ...) every ``train.log_every`` steps and ``val/*``
(loss, FG-ARI, mIoU, mBO) every ``train.val_every`` steps to MLflow; the run id is kept in
``<run>/_work/mlflow_run_id``. This module turns that history into ``<run>/curves/train.csv`` and
``<run>/curves/val.csv`` (``step`` first, one column per metric without its prefix; DVC plots them,
see ``dvc.yaml``) and into the report's figure. When a step was logged twice (a run resumed after
an interruption repeats the steps since its last checkpoint), the later value is kept.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..io import atomic_path
from ..tracking import RUN_ID_FILE, recorded_run, redact_uri, tracking_uri

#: Columns always present in the CSVs (empty files still have them, so DVC's plot definitions hold).
CORE = {"train": ("loss", "lr"), "val": ("loss", "fg_ari", "miou", "mbo")}
#: The report's panels: (group, column, title).
PANELS = (("train", "loss", "training loss"), ("train", "lr", "learning rate"),
          ("val", "loss", "validation loss"), ("val", "fg_ari", "validation FG-ARI (%)"),
          ("val", "miou", "validation mIoU (%)"), ("val", "mbo", "validation mBO (%)"))


def read_history(tracking_cfg: dict, run_dir: str | Path) -> tuple[dict[str, pd.DataFrame], str | None]:
    """``{"train": frame, "val": frame}`` of one training run, and why they are empty (or ``None``)."""
    empty = {group: pd.DataFrame(columns=["step", *cols]) for group, cols in CORE.items()}
    if not tracking_cfg["enabled"]:
        return empty, "not recorded: tracking.enabled is false in params/defaults.yaml"
    id_file = Path(run_dir) / "_work" / RUN_ID_FILE
    if not id_file.is_file():
        return empty, f"not recorded: {id_file} is missing (the run was trained without MLflow tracking)"
    import mlflow
    from mlflow.tracking import MlflowClient

    run_id = recorded_run(id_file.parent)[0]
    try:
        client = MlflowClient(tracking_uri(tracking_cfg))
        keys = list(client.get_run(run_id).data.metrics)
        points = [(m.key, m.step, m.timestamp, m.value) for key in keys for m in client.get_metric_history(run_id, key)]
    except mlflow.exceptions.MlflowException as err:
        store = redact_uri(tracking_cfg["uri"]) or "the default store"
        return empty, f"MLflow run {run_id} could not be read from {store}: {err}"
    history = pd.DataFrame(points, columns=["key", "step", "timestamp", "value"]).sort_values("timestamp")
    frames = {}
    for group, core in CORE.items():
        rows = history[history["key"].str.startswith(group + "/")]
        wide = (rows.assign(key=rows["key"].str.removeprefix(group + "/"))
                .pivot_table(index="step", columns="key", values="value", aggfunc="last"))
        extra = sorted(c for c in wide.columns if c not in core)
        frames[group] = wide.reindex(columns=[*core, *extra]).reset_index().rename_axis(columns=None)
    return frames, None


def write_curves(frames: dict[str, pd.DataFrame], train_path: str | Path, val_path: str | Path) -> None:
    """Write the ``train`` and ``val`` frames as CSV, atomically."""
    for group, path in (("train", train_path), ("val", val_path)):
        with atomic_path(path) as tmp:
            frames[group].to_csv(tmp, index=False, float_format="%.6g")


def plot_curves(runs: dict[str, dict[str, pd.DataFrame]]) -> bytes | None:
    """A PNG of :data:`PANELS`, one line per run (``label -> frames``); ``None`` when nothing was logged."""
    if not any(len(frames[group]) for frames in runs.values() for group in CORE):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6), constrained_layout=True)
    for ax, (group, column, title) in zip(axes.ravel(), PANELS):
        for label, frames in runs.items():
            frame = frames[group].dropna(subset=[column])
            if len(frame):
                ax.plot(frame["step"], frame[column], marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
