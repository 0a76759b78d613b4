"""bench/gpu_check.py: its dry mode runs every case on the CPU and records all of them; case budgets."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
gpu_check = pytest.importorskip("gpu_check")


def _numbers(value):
    """Every int / float inside a JSON value."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_dry_run_records_every_case_with_finite_numbers(tmp_path):
    real = REPO / "bench" / "results" / "gpu_check.json"
    before = real.stat().st_mtime_ns if real.exists() else None
    # a checkout path that does not exist: the original is tried and recorded as not available
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLOTDIFFUSION_REPO": str(tmp_path / "missing"),
           "NERV_REPO": str(tmp_path / "missing")}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = next(line for line in proc.stdout.splitlines() if line.startswith("wrote "))
    out_dir = Path(written.removeprefix("wrote ").split()[0]).parent
    try:
        record = json.loads((out_dir / "gpu_check_dry.json").read_text())
        assert "dry run" in (out_dir / "gpu_check_dry.md").read_text()
    finally:
        shutil.rmtree(out_dir)
    assert out_dir != real.parent  # a dry run never writes into bench/results by default
    assert (real.stat().st_mtime_ns if real.exists() else None) == before

    assert record["dry_run"] is True and record["machine"]["gpu"] is None
    rows = record["cases"]
    assert [r["id"] for r in rows] == [c["id"] for c in gpu_check.plan()]
    assert all(math.isfinite(x) for x in _numbers(record))
    for row in rows:
        if row["section"] == "original":
            assert row["status"] == "skipped" and row["reason"].startswith("original: not available"), row
            continue
        assert row["status"] == "ok", row
        if row["section"] in ("train", "compile"):
            assert row["s_per_step"] > 0 and row["clips_per_s"] > 0 and row["peak_memory_mib"] > 0
            assert row["batch"] > 0 and math.isfinite(row["loss"])
        if row["section"] == "compile":
            assert row["compile"] == "compiled" and row["compile_s"] >= 0
        if row["section"] == "decode":
            assert row["s_per_frame"] > 0
    dag = rows[0]
    assert dag["id"] == "dag/tiny" and dag["passed"] and set(dag["train_devices"].values()) == {"cpu"}


def test_a_case_past_its_budget_is_stopped_and_recorded_as_skipped(monkeypatch):
    monkeypatch.setitem(gpu_check.CASE_CAP_S, "train", 0.2)
    monkeypatch.setattr(gpu_check, "MIN_CASE_S", 0.1)
    rows = []

    def measure(case):
        if case["id"] == "slow":
            time.sleep(30)
        if case["id"] == "broken":
            raise RuntimeError("CUDA out of memory")
        return {"s_per_step": 1.0}

    cases = [{"id": name, "section": "train"} for name in ("fine", "slow", "broken")]
    gpu_check.run_cases(cases, measure, time.time() + 60, rows.append)
    assert [r["status"] for r in rows] == ["ok", "skipped", "failed"]
    assert rows[0]["s_per_step"] == 1.0
    assert "budget" in rows[1]["reason"] and "out of memory" in rows[2]["reason"]
    rows.clear()
    gpu_check.run_cases(cases[:1], measure, time.time(), rows.append)  # the run's time is spent
    assert rows[0]["status"] == "skipped" and "no time left: the run's budget" in rows[0]["reason"]
