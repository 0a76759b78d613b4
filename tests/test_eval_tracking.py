"""Evaluation metrics in the MLflow run of the training (slotbench.evaluation.tracking): every
evaluation stage logs to the run recorded in ``<run>/_work/mlflow_run_id`` at the checkpoint's step,
a stage run twice leaves one point per key, and no tracking, no run or a broken store never fails
an evaluation."""

from __future__ import annotations

import json

import pytest
from test_eval_recon import (
    EVAL,
    RUNTIME,
    SAVI,
    _checkpoint,
    _data,
    _one_thread,  # noqa: F401  (an autouse fixture: one torch thread)
)

from slotbench import checkpoint
from slotbench.evaluation import fvd as ef
from slotbench.evaluation import reconstruction as er
from slotbench.evaluation.segmentation import run_eval_seg
from slotbench.io import write_record
from slotbench.tracking import RUN_ID_FILE, Tracker

FINGERPRINT = "f" * 64
STEP = 7  # the step _checkpoint stores
CFG = dict(EVAL, batch_size=2)


def _client(tracking: dict):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking["uri"])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one takes seconds); each test has its own run."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def trained(tmp_path, store):
    """A SAVi ``model.pt`` with its training's MLflow run (a ``train/loss`` point, the run id and
    fingerprint in ``_work/``), as the train stage leaves them."""
    _data(tmp_path / "data")
    run_dir = tmp_path / "run"
    state = _checkpoint(run_dir / "model.pt", SAVI)
    checkpoint.save(run_dir / "model.pt", {**state, "fingerprint": FINGERPRINT})
    tracking = {"enabled": True, "uri": store, "experiment": "slotbench"}
    tracker = Tracker(tracking, "savi/seed0", {"model": {"name": "savi"}}, run_dir / "_work", FINGERPRINT)
    tracker.log_metrics({"train/loss": 0.5}, step=STEP)
    tracker.close()
    return tmp_path, tracking, tracker.run.info.run_id


def _stages(root, tracking, cfg=CFG):
    """The three evaluation stages and FVD (on a stand-in FVD value), in the order the DAG runs them."""
    ckpt, data, run = root / "run" / "model.pt", root / "data", root / "run"
    records = {
        "seg": run_eval_seg(cfg, RUNTIME, ckpt, data, run / "seg.json", progress=False, tracking=tracking),
        "recon": er.run_eval_recon(cfg, RUNTIME, ckpt, data, run / "recon.json", run / "eval", progress=False,
                                   lpips=None, tracking=tracking),
        "comp": er.run_eval_comp_gen(cfg, RUNTIME, ckpt, data, run / "comp_gen.json", run / "eval", progress=False,
                                     tracking=tracking),
    }
    records["fvd"] = ef.run_fvd({"stylegan_v_checkout": None, "detector_path": None, "detector_sha256": None,
                                 "seed": 0}, "recon", run / "recon.json", run / "fvd_recon.json", progress=False,
                                tracking=tracking)
    return records


@pytest.fixture
def sixteen_frame_fvd(monkeypatch):
    """FVD without its detector: records say 16 frames and compute_fvd returns a fixed number."""
    real = ef.read_json

    def read_json(path):
        return {**real(path), "frames": 16}

    monkeypatch.setattr(ef, "read_json", read_json)
    monkeypatch.setattr(ef.fvd_metric, "compute_fvd", lambda real_dir, fake_dir, **kw: {"fvd": 123.25})


def test_each_stage_logs_to_the_training_run_once(trained, sixteen_frame_fvd):
    root, tracking, run_id = trained
    first = _stages(root, tracking)
    again = _stages(root, tracking)  # a stage that runs again adds no point
    assert all(r["mlflow_run_id"] == run_id for r in (*first.values(), *again.values()))
    assert first == again
    client = _client(tracking)
    metrics = client.get_run(run_id).data.metrics
    expected = {"eval/fg_ari": first["seg"]["FG-ARI"], "eval/miou": first["seg"]["mIoU"],
                "eval/mbo": first["seg"]["mBO"], "eval/mse": first["recon"]["MSE"],
                "eval/psnr": first["recon"]["PSNR"], "eval/ssim": first["recon"]["SSIM"],
                "eval/comp_gen_videos": 4.0, "eval/fvd_recon": 123.25}
    assert {k: v for k, v in metrics.items() if k.startswith("eval/")} == pytest.approx(expected)
    assert "eval/lpips" not in metrics and metrics["train/loss"] == 0.5  # LPIPS null: not logged
    for key, value in expected.items():
        history = client.get_metric_history(run_id, key)
        assert [(p.step, p.value) for p in history] == [(STEP, pytest.approx(value))], key
    assert json.loads((root / "run" / "seg.json").read_text())["mlflow_run_id"] == run_id


def test_another_result_at_the_same_step_adds_a_point(trained):
    """MLflow never overwrites a point: a different result of the same checkpoint (other eval
    params) is a second point at that step, and the run shows the latest."""
    root, tracking, run_id = trained
    ckpt, data = root / "run" / "model.pt", root / "data"
    all_videos = run_eval_seg(CFG, RUNTIME, ckpt, data, root / "a.json", progress=False, tracking=tracking)
    two = run_eval_seg(dict(CFG, num_videos=2), RUNTIME, ckpt, data, root / "b.json", progress=False,
                       tracking=tracking)
    assert all_videos["FG-ARI"] != two["FG-ARI"]
    client = _client(tracking)
    history = client.get_metric_history(run_id, "eval/fg_ari")
    assert sorted(p.value for p in history) == sorted([all_videos["FG-ARI"], two["FG-ARI"]])
    assert {p.step for p in history} == {STEP}
    assert client.get_run(run_id).data.metrics["eval/fg_ari"] == two["FG-ARI"]


@pytest.mark.parametrize("case, note", [
    ("tracking off", "tracking.enabled is false"),
    ("no run recorded", "no MLflow run recorded in"),
    ("another training's run", "belongs to another training"),
    ("a run the store lacks", "MLflow run 0123456789abcdef"),
    ("an unreachable server", "http://127.0.0.1:9"),
])
def test_no_run_skips_with_one_line_and_the_evaluation_stands(trained, case, note, capsys, monkeypatch):
    root, tracking, run_id = trained
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    id_file, cfg = root / "run" / "_work" / RUN_ID_FILE, dict(tracking)
    if case == "tracking off":
        cfg["enabled"] = False
    elif case == "no run recorded":
        id_file.unlink()
    elif case == "another training's run":
        id_file.write_text(f"{run_id}\n{'0' * 64}\n")
    elif case == "a run the store lacks":
        id_file.write_text("0123456789abcdef0123456789abcdef\n")
    else:
        cfg["uri"] = "http://127.0.0.1:9"
    capsys.readouterr()
    result = run_eval_seg(CFG, RUNTIME, root / "run" / "model.pt", root / "data", root / "seg.json",
                          progress=False, tracking=cfg)
    assert result["mlflow_run_id"] is None and result["FG-ARI"] is not None
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MLflow:")]
    assert len(lines) == 1 and note in lines[0], lines
    assert "eval/fg_ari" not in _client(tracking).get_run(run_id).data.metrics


def test_fvd_logs_to_the_run_its_record_names(trained, sixteen_frame_fvd, capsys):
    """FVD has no checkpoint: it logs to the run of the evaluation record, or says why not."""
    root, tracking, run_id = trained
    run = root / "run"
    er.run_eval_recon(CFG, RUNTIME, run / "model.pt", root / "data", run / "recon.json", run / "eval",
                      progress=False, lpips=None)  # no tracking section: the record names no run
    cfg = {"stylegan_v_checkout": None, "detector_path": None, "detector_sha256": None, "seed": 0}
    out = ef.run_fvd(cfg, "recon", run / "recon.json", run / "fvd.json", progress=False, tracking=tracking)
    assert out["FVD"] == 123.25 and out["mlflow_run_id"] is None
    assert "recon.json names no MLflow run" in capsys.readouterr().out
    record = json.loads((run / "recon.json").read_text())
    write_record(run / "recon.json", {**record, "mlflow_run_id": run_id})
    out = ef.run_fvd(cfg, "recon", run / "recon.json", run / "fvd.json", progress=False, tracking=tracking)
    assert out["mlflow_run_id"] == run_id
    assert [(p.step, p.value) for p in _client(tracking).get_metric_history(run_id, "eval/fvd_recon")] == \
        [(STEP, 123.25)]
