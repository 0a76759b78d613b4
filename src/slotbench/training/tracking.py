"""MLflow tracking of a training run: a local SQLite store inside the project by default.

The run id is kept in the run's ``_work/`` folder, so a resumed training continues the same
MLflow run. With ``tracking.enabled: false`` every call is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_STORE = "results/mlflow.db"


def tracking_uri(cfg_tracking: dict) -> str:
    """The configured URI, or ``sqlite:///<cwd>/results/mlflow.db``."""
    if cfg_tracking["uri"]:
        return cfg_tracking["uri"]
    store = Path(DEFAULT_STORE).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Tracker:
    """Start or resume an MLflow run; log parameters once and metrics by step."""

    def __init__(self, cfg_tracking: dict, run_name: str, params: dict, work_dir: str | os.PathLike,
                 tags: dict[str, str] | None = None):
        self.enabled = cfg_tracking["enabled"]
        if not self.enabled:
            return
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        import mlflow  # imported lazily: it costs about a second

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri(cfg_tracking))
        mlflow.set_experiment(cfg_tracking["experiment"])
        id_file = Path(work_dir) / "mlflow_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        try:
            self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
        except mlflow.exceptions.MlflowException:
            self.run = mlflow.start_run(run_name=run_name, tags=tags)
            run_id = None
        if run_id is None:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run.info.run_id)
            flat = {k: str(v) for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):  # MLflow's batch limit
                mlflow.log_params(dict(items[i:i + 100]))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | os.PathLike) -> None:
        if self.enabled:
            self._mlflow.log_artifact(str(path))

    def close(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self._mlflow.end_run(status=status)
