"""MLflow tracking of a training run: a local SQLite store inside the project by default.

The run id is kept in the run's ``_work/`` folder with the training's fingerprint (parameters,
code, data), so the same training run again after an interruption continues the same MLflow
run, and a changed one starts a new run (the old one, if a kill left it open, is closed as
``KILLED``). Jobs that open one SQLite store at the same time (parallel Snakemake or DVC jobs on
a fresh project) create its tables and the experiment one at a time, under a lock file beside
the store. With ``tracking.enabled: false`` every call is a no-op.

Credentials are never written anywhere: a ``tracking.uri`` of the form
``http(s)://user:password@host`` is split, the user and password going to MLflow through
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` in this process's environment (MLflow's
own mechanism) and only ``http(s)://host`` to MLflow itself, so no MLflow message can repeat them;
every configuration slotbench writes (``model.pt``, the MLflow params) holds
:func:`redact_uri`'s form, ``user:***@host``. Prefer setting those two variables yourself.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .io import write_text
from .paths import MLFLOW_STORE

RUN_ID_FILE = "mlflow_run_id"  # in the run's _work/ folder: the run id, then the training's fingerprint


def recorded_run(work_dir: str | os.PathLike) -> tuple[str | None, str | None]:
    """``(MLflow run id, fingerprint of the training it records)`` kept in ``work_dir``; ``None``
    for what is missing (no file; a file written before fingerprints were kept holds the id only)."""
    id_file = Path(work_dir) / RUN_ID_FILE
    fields = id_file.read_text().split() if id_file.is_file() else []
    return (fields[0] if fields else None), (fields[1] if len(fields) > 1 else None)


def _split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without user:password@, user, password)``."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, None, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password


def redact_uri(uri: str | None) -> str | None:
    """``scheme://user:***@host/...``: the URI with its password masked (for anything written or shown)."""
    if not uri:
        return uri
    try:
        bare, user, password = _split_credentials(uri)
    except ValueError:  # unparsable: show nothing of it
        return "<unparsable tracking URI, hidden>"
    if user is None and password is None:
        return uri
    scheme, rest = bare.split("://", 1) if "://" in bare else ("", bare)
    return f"{scheme}://{user or ''}{':***' if password is not None else ''}@{rest}"


def redact_config(cfg: dict) -> dict:
    """A copy of a resolved configuration with ``tracking.uri``'s credentials masked."""
    out = copy.deepcopy(cfg)
    if isinstance(out.get("tracking"), dict) and out["tracking"].get("uri"):
        out["tracking"]["uri"] = redact_uri(out["tracking"]["uri"])
    return out


def tracking_uri(cfg_tracking: dict) -> str:
    """The URI to give MLflow: the configured one (credentials of an ``http(s)`` URI moved to
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``), or ``sqlite:///<cwd>/results/mlflow.db``."""
    if cfg_tracking["uri"]:
        uri = cfg_tracking["uri"]
        if urlsplit(uri).scheme in ("http", "https"):
            bare, user, password = _split_credentials(uri)
            if user is not None:
                os.environ["MLFLOW_TRACKING_USERNAME"] = user
            if password is not None:
                os.environ["MLFLOW_TRACKING_PASSWORD"] = password
            return bare
        return uri  # e.g. a database URI: SQLAlchemy needs the credentials in it; shown redacted only
    store = Path(MLFLOW_STORE).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive lock on ``<store>.lock`` for a ``sqlite:///`` store (nothing otherwise):
    MLflow creates and migrates a new SQLite store on first use, and two processes doing it at
    once fail (``table ... already exists``, ``duplicate column name``)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri[len("sqlite:///"):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    """Start or resume an MLflow run; log parameters once and metrics by step.

    ``fingerprint`` identifies the training (parameters, code, data): the run recorded in
    ``work_dir`` is continued only when it was started for the same fingerprint.
    """

    def __init__(self, cfg_tracking: dict, run_name: str, params: dict, work_dir: str | os.PathLike,
                 fingerprint: str, tags: dict[str, str] | None = None):
        self.enabled = cfg_tracking["enabled"]
        if not self.enabled:
            return
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        import mlflow  # imported lazily: it costs about a second

        self._mlflow = mlflow
        uri = tracking_uri(cfg_tracking)
        mlflow.set_tracking_uri(uri)
        with store_lock(uri):
            mlflow.set_experiment(cfg_tracking["experiment"])
        run_id, recorded_fingerprint = recorded_run(work_dir)
        if run_id and recorded_fingerprint != fingerprint:
            self._close_if_open(run_id)  # another training's run
            run_id = None
        try:
            self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
        except mlflow.exceptions.MlflowException:
            self.run = mlflow.start_run(run_name=run_name, tags=tags)
            run_id = None
        if run_id is None:  # atomically: a kill never leaves a half-written record
            write_text(Path(work_dir) / RUN_ID_FILE, f"{self.run.info.run_id}\n{fingerprint}\n")
            flat = {k: str(v) for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):  # MLflow's batch limit
                mlflow.log_params(dict(items[i:i + 100]))

    def _close_if_open(self, run_id: str) -> None:
        """Mark a run that a kill left ``RUNNING`` as ``KILLED`` (a missing run is no error)."""
        client = self._mlflow.tracking.MlflowClient()
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, status="KILLED")
        except self._mlflow.exceptions.MlflowException:
            pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | os.PathLike) -> None:
        if self.enabled:
            self._mlflow.log_artifact(str(path))

    def close(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self._mlflow.end_run(status=status)
