"""The training stage: learning, exact resume after an interruption, and failure handling."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import edit_yaml

from slotbench import checkpoint
from slotbench.config import resolve
from slotbench.data.dataset import ClipDataset, to_model_input
from slotbench.models import build_model, build_tokenizer
from slotbench.training import loop
from slotbench.training.loop import NonFiniteLossError, train


def _cfg(project, **train_overrides):
    for key, value in train_overrides.items():
        edit_yaml(project / "params" / "profiles" / "tiny.yaml", f"train.{key}", value)
    return resolve("shapes", "savi", project / "params")


def _fixed_batch(data_root, cfg):
    clips = ClipDataset(data_root, "train", cfg["train"]["n_sample_frames"], 1)
    return to_model_input(torch.stack([clips[i]["video"] for i in range(8)]))


def test_training_lowers_the_loss_and_writes_outputs(project, tiny_data):
    cfg = _cfg(project, max_steps=40, lr=3e-3, min_lr=3e-4)
    run = project / "results" / "run"
    summary = train(cfg, tiny_data, run, seed=0, progress=False)
    assert summary["steps"] == 40 and json.loads((run / "train.json").read_text())["steps"] == 40
    assert set(summary["validation"]) >= {"val/loss", "val/fg_ari", "val/miou", "val/mbo"}
    video = _fixed_batch(tiny_data, cfg)
    torch.manual_seed(0)
    fresh = build_model(cfg["model"], 16).eval()
    trained = build_model(cfg["model"], 16).eval()
    state = checkpoint.load(run / "model.pt")
    trained.load_state_dict(state["model"])
    assert state["config"] == cfg and state["step"] == 40
    with torch.no_grad():
        before = fresh.loss(video, fresh(video))["loss"].item()
        after = trained.loss(video, trained(video))["loss"].item()
    assert after < 0.7 * before
    assert not list(run.rglob(".tmp-*"))


def test_resume_after_interruption_is_state_identical(project, tiny_data, monkeypatch):
    cfg = _cfg(project, max_steps=6, checkpoint_every=2)
    straight = project / "results" / "straight"
    train(cfg, tiny_data, straight, seed=3, progress=False)

    interrupted = project / "results" / "interrupted"
    real_save = checkpoint.save_scratch

    def crash_after_step_4(work_dir, step, state):
        real_save(work_dir, step, state)
        if step == 4:
            raise KeyboardInterrupt("simulated kill after the step-4 checkpoint")

    monkeypatch.setattr(checkpoint, "save_scratch", crash_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, interrupted, seed=3, progress=False)
    assert not (interrupted / "model.pt").exists()
    monkeypatch.setattr(checkpoint, "save_scratch", real_save)
    train(cfg, tiny_data, interrupted, seed=3, progress=False)

    a = torch.load(straight / "_work" / "ckpt_00000006.pt", weights_only=True)
    b = torch.load(interrupted / "_work" / "ckpt_00000006.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoints_of_other_parameters_are_not_resumed(project, tiny_data, capsys):
    run = project / "results" / "run"
    train(_cfg(project, max_steps=3, checkpoint_every=3), tiny_data, run, seed=0, progress=False)
    summary = train(_cfg(project, max_steps=4, checkpoint_every=3), tiny_data, run, seed=0, progress=False)
    assert "written with other parameters" in capsys.readouterr().out
    assert summary["steps"] == 4
    assert [p.name for p in checkpoint.scratch_checkpoints(run / "_work")] == ["ckpt_00000003.pt", "ckpt_00000004.pt"]


def test_checkpoints_of_other_data_are_not_resumed(project, tiny_data, capsys):
    """A re-exported dataset (other bytes, same params and code) trains afresh, not from the old run."""
    from slotbench.config import resolve_dataset
    from slotbench.data.export import export
    from slotbench.data.storage import read_meta, write_meta

    run, cfg = project / "results" / "run", _cfg(project, max_steps=3, checkpoint_every=3)
    train(cfg, tiny_data, run, seed=0, progress=False)
    reseeded = project / "data" / "reseeded"
    export({**resolve_dataset("shapes", project / "params"), "seed": 1}, reseeded, progress=False)
    same_params = {k: v for k, v in read_meta(tiny_data).items() if k in ("params", "params_fingerprint")}
    write_meta(reseeded, {k: v for k, v in read_meta(reseeded).items() if k not in ("format", "record_sha256")}
               | same_params)  # other bytes recorded as made with the same params
    capsys.readouterr()
    train(cfg, reseeded, run, seed=0, progress=False)
    out = capsys.readouterr().out
    assert "written with other parameters, code or data" in out and "resuming" not in out


def test_non_finite_loss_stops_and_keeps_last_checkpoint(project, tiny_data, monkeypatch):
    cfg = _cfg(project, max_steps=6, checkpoint_every=2)
    model_cls = type(build_model(cfg["model"], 16))
    real_loss, calls = model_cls.loss, {"n": 0}

    def nan_at_third_step(self, video, out):
        losses = real_loss(self, video, out)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(model_cls, "loss", nan_at_third_step)
    run = project / "results" / "run"
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 2"):
        train(cfg, tiny_data, run, seed=0, progress=False)
    assert not (run / "model.pt").exists()
    assert [p.name for p in checkpoint.scratch_checkpoints(run / "_work")] == ["ckpt_00000002.pt"]


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(ValueError, match="cannot be loaded as a slotbench checkpoint"):
        checkpoint.load(path)


def test_mlflow_tracking_records_params_and_metrics(project, tiny_data):
    edit_yaml(project / "params" / "defaults.yaml", "tracking.enabled", True)
    cfg = _cfg(project, max_steps=4)
    train(cfg, tiny_data, project / "results" / "run", seed=0, progress=False)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'results' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["slotbench"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    data = runs[0].data
    assert data.params["model.num_slots"] == "3" and data.params["seed"] == "0"
    assert {"train/loss", "train/lr", "train/clips_per_s", "val/fg_ari"} <= set(data.metrics)
    assert loop.total_steps(cfg["train"], 100) == 4


def test_a_changed_training_opens_a_new_mlflow_run(project, tiny_data):
    """After a parameter change the new training gets its own MLflow run (the old one keeps the old
    parameters); the same training run again continues its run (tests/test_faults.py)."""
    import mlflow

    from slotbench.tracking import recorded_run

    edit_yaml(project / "params" / "defaults.yaml", "tracking.enabled", True)
    run = project / "results" / "run"
    train(_cfg(project, max_steps=3, checkpoint_every=3), tiny_data, run, seed=0, progress=False)
    train(_cfg(project, max_steps=4, checkpoint_every=3), tiny_data, run, seed=0, progress=False)
    mlflow.set_tracking_uri(f"sqlite:///{project / 'results' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["slotbench"], output_format="list", order_by=["start_time ASC"])
    assert [r.data.params["train.max_steps"] for r in runs] == ["3", "4"]
    assert recorded_run(run / "_work")[0] == runs[1].info.run_id


def _open_tracker(uri: str, work_dir: str) -> str:
    from slotbench.tracking import Tracker

    tracker = Tracker({"enabled": True, "uri": uri, "experiment": "slotbench"}, "run", {"a": 1}, work_dir, "f")
    tracker.log_metrics({"x": 1.0}, step=0)
    tracker.close()
    return "ok"


def test_parallel_jobs_create_a_new_mlflow_store_once(tmp_path):
    """Parallel Snakemake / DVC jobs opening a fresh SQLite store at once (each would create its tables)."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = [pool.apply_async(_open_tracker, (uri, str(tmp_path / f"work{i}"))) for i in range(3)]
        assert [r.get(timeout=120) for r in results] == ["ok"] * 3


def test_tokenizer_stage_feeds_steve(project, tiny_data):
    from slotbench.checkpoint import load_frozen_tokenizer, restore_model
    from slotbench.config import resolve_tokenizer

    tok_cfg = resolve_tokenizer("shapes", "dvae", project / "params")
    tok_dir = project / "results" / "shapes" / "dvae"
    summary = train(tok_cfg, tiny_data, tok_dir, seed=0, progress=False)
    assert summary["steps"] == 4 and set(summary["validation"]) == {"val/loss"}
    state = checkpoint.load(tok_dir / "model.pt")
    assert state["kind"] == "tokenizer" and not any(k.startswith("tokenizer.") for k in state["model"])
    tokenizer, cfg = load_frozen_tokenizer(tok_dir / "model.pt")
    assert cfg["vocab_size"] == 16

    steve_cfg = resolve("shapes", "steve", project / "params")
    with pytest.raises(ValueError, match="needs the checkpoint of its `tokenizer` stage"):
        train(steve_cfg, tiny_data, project / "results" / "x", seed=0, progress=False)
    with pytest.raises(FileNotFoundError, match="made by the `tokenizer` stage"):
        load_frozen_tokenizer(project / "missing.pt")
    run = project / "results" / "shapes" / "steve" / "seed0"
    train(steve_cfg, tiny_data, run, seed=0, progress=False, tokenizer_checkpoint=tok_dir / "model.pt")
    model = restore_model(checkpoint.load(run / "model.pt"))
    for key, value in tokenizer.state_dict().items():  # the frozen dVAE travels inside STEVE's checkpoint
        assert torch.equal(model.tokenizer.state_dict()[key], value)


def test_decoder_learning_rate_gets_its_own_group(project):
    from slotbench.training.tasks import param_groups

    cfg = resolve("shapes", "steve", project / "params")
    model = build_model(cfg["model"], 16, tokenizer=build_tokenizer({"name": "dvae", "vocab_size": 16,
                                                                    "hidden_channels": 8}))
    rest, decoder = param_groups(model, {**cfg["train"], "lr": 1e-3, "decoder_lr": 3e-3, "min_lr": 1e-5})
    assert decoder["max_lr"] == 3e-3 and decoder["min_lr"] == pytest.approx(3e-5)
    assert {id(p) for p in decoder["params"]} == {id(p) for p in model.decoder_parameters()}
    frozen = {id(p) for p in model.tokenizer.parameters()}
    assert not frozen & {id(p) for p in rest["params"] + decoder["params"]}


def test_savi_decoder_learning_rate_gets_its_own_group(project):
    """``decoder_lr`` is honoured by SAVi too (its spatial-broadcast decoder), not silently ignored."""
    from slotbench.training.tasks import param_groups

    cfg = resolve("shapes", "savi", project / "params")
    model = build_model(cfg["model"], 16)
    assert len(param_groups(model, cfg["train"])) == 1  # the reference: one group
    rest, decoder = param_groups(model, {**cfg["train"], "lr": 1e-3, "decoder_lr": 2e-3, "min_lr": 1e-5})
    assert decoder["max_lr"] == 2e-3 and decoder["min_lr"] == pytest.approx(2e-5)
    assert {id(p) for p in decoder["params"]} == {id(p) for p in model.decoder.parameters()}
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.trunk.parameters()}
    with pytest.raises(ValueError, match="train.decoder_lr is 0.002, but Linear has no separate decoder"):
        param_groups(torch.nn.Linear(2, 2), {**cfg["train"], "decoder_lr": 2e-3})


def test_vqvae_with_perceptual_loss_needs_lpips_weights(project, tiny_data, monkeypatch, tmp_path):
    from slotbench.config import resolve_tokenizer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SLOTBENCH_WEIGHTS", str(tmp_path / "weights"))
    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "per_tokenizer.vqvae.tokenizer.percept_loss_w", 1.0)
    cfg = resolve_tokenizer("shapes", "vqvae", project / "params")
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        train(cfg, tiny_data, project / "results" / "vq", seed=0, progress=False)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_checkpoints_and_the_next_run_resumes(project, tiny_data, workers):
    """What SLURM does before pre-emption: SIGTERM to every process of the job (DataLoader workers
    included), then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "train.max_steps", 200)
    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "train.checkpoint_every", 1000)
    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "train.num_workers", workers)
    cmd = [sys.executable, "-m", "slotbench", "train", "--dataset", "shapes", "--model", "savi", "--seed", "0",
           "--no-progress"]
    run = project / "results" / "shapes" / "savi" / "seed0"
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []  # the loop prints "training ..." when it starts; a library may print a line before it
    while not (seen and seen[-1].startswith("training ")) and len(seen) < 20:
        seen.append(proc.stdout.readline())
    assert seen[-1].startswith("training shapes/savi/seed0: steps 0..200"), seen
    time.sleep(1.0)  # a few training steps
    os.killpg(proc.pid, signal.SIGTERM)  # the process and its workers, as slurmstepd signals a job step
    out = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "SIGTERM received: checkpoint of step" in out, out
    saved = checkpoint.scratch_checkpoints(run / "_work")
    assert len(saved) == 1 and not (run / "model.pt").exists()
    step = int(saved[0].stem.split("_")[1])
    assert 0 < step < 200
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0 and f"resuming from step {step} of 200" in done.stdout, done.stdout + done.stderr
    assert checkpoint.load(run / "model.pt")["step"] == 200


def test_sigterm_through_the_workflow_log_pipe_checkpoints(project, tiny_data):
    """Snakemake's rules run ``<stage> 2>&1 | log_to LOG`` (jobs.SHELL_PREFIX) with progress bars on;
    SLURM's SIGTERM reaches the log copier too, which must outlive it so the checkpoint is written."""
    import os
    import shlex
    import signal
    import subprocess
    import sys
    import time

    from slotbench.jobs import SHELL_PREFIX

    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "train.max_steps", 2000)
    edit_yaml(project / "params" / "profiles" / "tiny.yaml", "train.checkpoint_every", 100000)
    log = project / "train.log"
    command = (f"{SHELL_PREFIX}{shlex.quote(sys.executable)} -m slotbench train --dataset shapes --model savi"
               f" --seed 0 2>&1 | log_to {shlex.quote(str(log))}")
    proc = subprocess.Popen(["bash", "-c", command], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while "training shapes/savi/seed0" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text() if log.exists() else ""
        time.sleep(0.2)
    time.sleep(1.0)  # a few training steps, each redrawing the progress bar
    os.killpg(proc.pid, signal.SIGTERM)  # bash, the training and the log copier
    proc.communicate(timeout=120)  # returns when the copier has seen the training's last output
    assert "SIGTERM received: checkpoint of step" in log.read_text(), log.read_text()[-2000:]
    assert len(checkpoint.scratch_checkpoints(project / "results/shapes/savi/seed0/_work")) == 1


def test_release_data_without_a_validation_split_validates_on_test(project, tmp_path):
    """MOVi-Solid/Tex exports hold train and test only; training validates on test, as the original."""
    from test_movi_export import release_cfg, write_release

    from slotbench.data.export import export

    write_release(tmp_path / "release")
    cfg = _cfg(project, max_steps=2, val_every=2, checkpoint_every=2)
    cfg["dataset"] = release_cfg(tmp_path / "release")
    data_root = project / "data" / "movi_solid"
    export(cfg["dataset"], data_root, progress=False)
    summary = train(cfg, data_root, project / "results" / "run", seed=0, progress=False)
    assert summary["steps"] == 2 and {"val/loss", "val/fg_ari"} <= set(summary["validation"])
