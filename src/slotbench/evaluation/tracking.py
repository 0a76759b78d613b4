"""Evaluation metrics into the MLflow run of the training that made the checkpoint.

The train stage keeps its MLflow run id in ``<run>/_work/mlflow_run_id``, next to the fingerprint
of the training that ``model.pt`` carries too. Each evaluation stage logs its numbers to that run
as ``eval/<name>`` at the checkpoint's training step, so ``mlflow ui`` shows a run's losses next
to its FG-ARI, MSE and FVD; the ``fvd`` stage finds the run in the record of the stage whose
videos it scores.

MLflow never overwrites a metric: a key logged again at the same step gets a second point in its
history (MLflow 3.17: only a point equal in key, step, value and timestamp is dropped). So a key
is logged only when its history has no point of the same step and value: a stage that runs again
with the same result adds nothing, and a different result (e.g. after an ``eval`` parameter
changed) adds one point at that step, which the run page then shows as the key's value.

Nothing here fails an evaluation: without tracking (``tracking.enabled: false``), without a
recorded run (trained without tracking, or imported), with the run of another training, or when
MLflow cannot be reached, one line says why and the numbers stay in the stage's JSON record.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ..tracking import recorded_run, redact_uri, store_lock, tracking_uri

#: Prefix of every key logged here (the training logs ``train/*`` and ``val/*``).
PREFIX = "eval/"


def training_run(checkpoint_path: str | os.PathLike, state: dict) -> tuple[str | None, str | None]:
    """``(run id, None)`` of the MLflow run that trained the ``model.pt`` at ``checkpoint_path``
    (its loaded ``state``), or ``(None, why not)``.

    The id comes from ``<run>/_work/mlflow_run_id`` beside the checkpoint; it is refused when the
    file records another training's fingerprint than the checkpoint's (a file written before
    fingerprints were kept holds the id only and is taken as it is).
    """
    work = Path(checkpoint_path).parent / "_work"
    run_id, fingerprint = recorded_run(work)
    if run_id is None:
        return None, f"no MLflow run recorded in {work} (trained without tracking, or imported)"
    if fingerprint is not None and fingerprint != state.get("fingerprint"):
        return None, f"the MLflow run {run_id} recorded in {work} belongs to another training than {checkpoint_path}"
    return run_id, None


def log_evaluation(tracking_cfg: dict | None, run: tuple[str | None, str | None],
                   metrics: dict[str, float | None], step: int) -> str | None:
    """Log ``metrics`` (``name -> value``; ``None`` and non-finite values are left out) as
    ``eval/<name>`` at ``step`` to the MLflow run ``run``: ``(run id, _)``, or ``(None, why there is none)``.

    Args:
        tracking_cfg: the ``tracking`` params section; ``None`` logs nothing and says nothing
            (a caller outside the pipeline).
        step: the checkpoint's training step.
    Returns:
        The run id when the metrics are in the run, else ``None`` (after printing why).
    """
    if tracking_cfg is None:
        return None
    run_id, why_none = run
    reason = None if run_id else why_none
    if not tracking_cfg["enabled"]:
        reason = "tracking.enabled is false"
    if reason is None:
        values = {PREFIX + k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        try:
            _log_new_points(tracking_cfg, run_id, values, step)
            return run_id
        except Exception as err:  # an unreachable server, a deleted run...: the evaluation stands without it
            where = redact_uri(tracking_cfg["uri"]) or "the default store"
            lines = str(err).strip().splitlines()
            reason = f"MLflow run {run_id} in {where}: {type(err).__name__}: {lines[0] if lines else ''}"
    print(f"MLflow: evaluation metrics not logged ({reason})")
    return None


def _log_new_points(tracking_cfg: dict, run_id: str, values: dict[str, float], step: int) -> None:
    """Log each of ``values`` whose history has no point ``(step, value)`` yet, in one batch."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(tracking_cfg)
    with store_lock(uri):  # parallel evaluation jobs of one SQLite store take turns
        client = MlflowClient(uri)
        client.get_run(run_id)  # a missing run is an error even when there is nothing new to log
        now_ms = int(time.time() * 1000)
        new = [Metric(key, value, now_ms, step) for key, value in values.items()
               if not any(p.step == step and p.value == value for p in client.get_metric_history(run_id, key))]
        if new:
            client.log_batch(run_id, metrics=new)
