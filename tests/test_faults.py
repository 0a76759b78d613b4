"""Fault injection: nothing lost, nothing trusted blindly (issue 10).

Every case injects one fault into a real stage of the tiny profile and checks that nothing is
lost or trusted: a SIGKILL at a seeded random point of a ``python -m slotbench`` subprocess (the
same command run again resumes and ends exactly as an uninterrupted run), a corrupted file (named,
and the stage refuses it), a NaN/Inf (a clear stop, or a counted skip, never a NaN ``model.pt``),
bad input (refused before any compute, naming the key or file), a secret in the tracking URI (never
written), and two workflow runs on one directory (the second refused by Snakemake's lock).

Kill points (``tests/fault_hooks.py``): the events of an uninterrupted reference run of the stage are
counted in-process (batches, the moment before and after each atomic rename, FVD's video reads), one
is drawn with ``random.Random(case)``, and the subprocess is sent SIGKILL by its own hook at that
event. :data:`KILL_CASES` lists the cases; docs/robustness.md quotes their number.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import fault_hooks
import numpy as np
import pytest
import torch
from conftest import REPO, copy_params, edit_yaml, install_standin_fvd_detector

from slotbench import checkpoint, cli

HOOK_DIR = REPO / "tests" / "faultinject"
RUN = "results/shapes/savi/seed0"
SAVI = ["--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]
EXPORT = ["export", "--dataset", "shapes", "--no-progress"]
#: (stage, its command line, case number): one SIGKILL case each, at a seeded random event.
KILL_CASES = [
    ("export", EXPORT, 0),
    ("export", EXPORT, 1),
    ("tokenizer", ["tokenizer", "--dataset", "shapes", "--tokenizer", "dvae", "--no-progress"], 0),
    ("tokenizer:vqvae", ["tokenizer", "--dataset", "shapes", "--tokenizer", "vqvae", "--no-progress"], 0),
    ("train", ["train", *SAVI], 0),
    ("train", ["train", *SAVI], 1),
    ("train", ["train", *SAVI], 3),
    ("train+mlflow", ["train", *SAVI], 2),
    ("train:steve", ["train", "--dataset", "shapes", "--model", "steve", "--seed", "0", "--no-progress"], 1),
    ("train:slotdiffusion", ["train", "--dataset", "shapes", "--model", "slotdiffusion", "--seed", "0",
                             "--no-progress"], 1),
    ("eval-seg", ["eval-seg", *SAVI], 0),
    ("eval-recon", ["eval-recon", *SAVI], 0),
    ("eval-recon", ["eval-recon", *SAVI], 1),
    ("eval-comp-gen", ["eval-comp-gen", *SAVI], 0),
    ("eval-comp-gen", ["eval-comp-gen", *SAVI], 1),
    ("fvd", ["fvd", *SAVI, "--kind", "recon"], 0),
    ("fvd", ["fvd", *SAVI, "--kind", "recon"], 1),
]
#: Outputs compared after the resumed run, per stage (relative to the project).
OUTPUTS = {
    "export": ["data/shapes"],
    "tokenizer": ["results/shapes/dvae/model.pt", "results/shapes/dvae/train.json"],
    "tokenizer:vqvae": ["results/shapes/vqvae/model.pt", "results/shapes/vqvae/train.json"],
    "train": [f"{RUN}/model.pt", f"{RUN}/train.json"],
    "train:steve": ["results/shapes/steve/seed0/model.pt", "results/shapes/steve/seed0/train.json"],
    "train:slotdiffusion": ["results/shapes/slotdiffusion/seed0/model.pt",
                            "results/shapes/slotdiffusion/seed0/train.json"],
    "eval-seg": [f"{RUN}/seg.json"],
    "eval-recon": [f"{RUN}/recon.json", f"{RUN}/eval", f"{RUN}/vis"],
    "eval-comp-gen": [f"{RUN}/comp_gen.json", f"{RUN}/eval", f"{RUN}/vis"],
    "fvd": [f"{RUN}/fvd_recon.json"],
}
TIMING_KEYS = {"wall_time_s", "clips_per_s", "record_sha256"}


# ---------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _stage(cwd: Path, args: list[str]) -> int:
    """The stage in this process (what `python -m slotbench ARGS` runs), in ``cwd``, on one torch
    thread like the killed subprocesses (``OMP_NUM_THREADS=1``): float sums split over another
    number of threads can differ in the last bit, and runs are compared bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _cwd(cwd):
            return cli.main(args)
    finally:
        torch.set_num_threads(threads)


def _events(cwd: Path, args: list[str]) -> list[str]:
    """Run a stage uninterrupted in-process and return its fault-injection events."""
    events: list[str] = []
    uninstall = fault_hooks.install(events.append)
    try:
        assert _stage(cwd, args) == 0
    finally:
        uninstall()
    return events


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK_DIR), env.get("PYTHONPATH")) if p)
    return env


def _killed(cwd: Path, args: list[str], at: int) -> str:
    """``python -m slotbench ARGS`` in a subprocess that SIGKILLs itself at event ``at``."""
    proc = subprocess.run([sys.executable, "-m", "slotbench", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=_env(**{fault_hooks.KILL_ENV: str(at)}))
    out = proc.stdout + proc.stderr
    assert proc.returncode == -signal.SIGKILL, f"not killed at event {at} (rc {proc.returncode}):\n{out[-3000:]}"
    return out


def _new_project(root: Path, data: bool = True) -> Path:
    root.mkdir(parents=True)
    copy_params(root)
    if data:
        from slotbench.config import resolve_dataset
        from slotbench.data.export import export

        export(resolve_dataset("shapes", root / "params"), root / "data" / "shapes", progress=False)
    return root


def _tree(path: Path) -> dict[str, bytes]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): p.read_bytes() for p in files}


def _same_checkpoint(a: Path, b: Path, tracking: bool = True) -> None:
    sa, sb = checkpoint.load(a), checkpoint.load(b)
    if not tracking:  # one run tracked with MLflow, the other not: the rest must agree
        for state in (sa, sb):
            state["config"].pop("tracking")
            state.pop(checkpoint.DIGEST_KEY)
    assert sa.keys() == sb.keys()
    for key in sa:
        if key == "model":
            assert sa[key].keys() == sb[key].keys()
            for name in sa[key]:
                assert torch.equal(sa[key][name], sb[key][name]), f"{a.name}: {name} differs"
        else:
            assert sa[key] == sb[key], f"{a.name}: {key} differs"


def _same_outputs(stage: str, ref: Path, resumed: Path) -> None:
    for rel in OUTPUTS[stage.split("+")[0]]:
        a, b = ref / rel, resumed / rel
        assert b.exists(), f"{rel} missing after the resumed run"
        if rel.endswith(".pt"):
            _same_checkpoint(a, b, tracking="mlflow" not in stage)
        elif rel.endswith("train.json"):
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            assert {k: v for k, v in ja.items() if k not in TIMING_KEYS} == \
                   {k: v for k, v in jb.items() if k not in TIMING_KEYS}
        else:  # evaluation records and frames: byte-identical
            assert _tree(a) == _tree(b), f"{rel} differs from the uninterrupted run"
    if stage.startswith(("train", "tokenizer")):  # the optimizer too: state-identical
        work = Path(OUTPUTS[stage.split("+")[0]][0]).parent / "_work"
        last_a, last_b = (checkpoint.scratch_checkpoints(d / work)[-1] for d in (ref, resumed))
        assert last_a.name == last_b.name
        oa, ob = checkpoint.load(last_a)["optimizer"], checkpoint.load(last_b)["optimizer"]
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
    leftovers = [p for p in resumed.rglob(".tmp-*") if {"results", "data"} & set(p.parts)]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A project with data, a trained tiny SAVi and every evaluation record (made in-process)."""
    root = _new_project(tmp_path_factory.mktemp("faults") / "base")
    for args in (["train", *SAVI], ["eval-seg", *SAVI], ["eval-recon", *SAVI], ["eval-comp-gen", *SAVI],
                 ["fvd", *SAVI, "--kind", "recon"], ["fvd", *SAVI, "--kind", "comp"]):
        assert _stage(root, args) == 0, args
    return root


def _fvd_inputs(root: Path) -> None:
    """16-frame videos and a stand-in detector, so that the fvd stage computes a number."""
    from slotbench.io import write_record
    from slotbench.metrics.fvd import write_video_folder

    rng = np.random.default_rng(0)
    video_root = root / RUN / "eval"
    for sub in ("gt_vids", "recon_vids"):
        shutil.rmtree(video_root / sub, ignore_errors=True)
        write_video_folder(video_root / sub, {i: rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8) for i in range(3)})
    write_record(root / RUN / "recon.json", {"video_root": f"{RUN}/eval", "num_videos": 3, "frames": 16,
                                             "videos_saved": True})
    install_standin_fvd_detector(root)


# ---------------------------------------------------------------------------- 1. SIGKILL at any moment
@pytest.mark.parametrize("stage,args,case", KILL_CASES, ids=[f"{s}-{c}" for s, _, c in KILL_CASES])
def test_sigkill_then_rerun_ends_as_an_uninterrupted_run(stage, args, case, tmp_path, evaluated):
    if stage == "export":
        ref = _new_project(tmp_path / "ref", data=False)
    elif stage.startswith(("tokenizer", "train")):
        ref = _new_project(tmp_path / "ref")
        tokenizer = {"train:steve": "dvae", "train:slotdiffusion": "vqvae"}.get(stage)
        if tokenizer:  # the frozen tokenizer these models train on, made before the copy
            assert _stage(ref, ["tokenizer", "--dataset", "shapes", "--tokenizer", tokenizer, "--no-progress"]) == 0
    else:
        ref = tmp_path / "ref"
        shutil.copytree(evaluated, ref)
        if stage == "fvd":
            _fvd_inputs(ref)
    killed = tmp_path / "killed"
    shutil.copytree(ref, killed)  # the same inputs, before the stage ran
    killed_args = [*args, "--set", "tracking.enabled=true"] if stage == "train+mlflow" else args

    events = _events(ref, args)
    if stage == "fvd":  # a real number from the stand-in detector, not a null with a reason
        assert isinstance(json.loads((ref / RUN / "fvd_recon.json").read_text())["FVD"], float)
    at = random.Random(f"{stage}-{case}").randint(1, len(events))
    out = _killed(killed, killed_args, at)
    print(f"{stage}-{case}: SIGKILL at event {at} of {len(events)}: {events[at - 1]}")
    assert f"SIGKILL at event {at} ({events[at - 1]})" in out
    for rel in OUTPUTS[stage.split("+")[0]]:  # whatever exists after the kill is complete
        path = killed / rel
        if path.is_file() and path.suffix == ".pt":
            checkpoint.load(path)
        elif path.is_file() and path.suffix == ".json":
            json.loads(path.read_text())

    assert _stage(killed, killed_args) == 0  # the same command again
    _same_outputs(stage, ref, killed)
    if stage == "train+mlflow":  # the run left open by the kill is resumed and closed, not duplicated
        import mlflow

        from slotbench.tracking import recorded_run

        client = mlflow.tracking.MlflowClient(f"sqlite:///{killed / 'results' / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert [r.info.status for r in runs] == ["FINISHED"]
        assert runs[0].info.run_id == recorded_run(killed / RUN / "_work")[0]


#: The five networks slotbench trains: (stage key of OUTPUTS, command line).
NETWORKS = [
    ("tokenizer", ["tokenizer", "--dataset", "shapes", "--tokenizer", "dvae", "--no-progress"]),
    ("tokenizer:vqvae", ["tokenizer", "--dataset", "shapes", "--tokenizer", "vqvae", "--no-progress"]),
    ("train", ["train", *SAVI]),
    ("train:steve", ["train", "--dataset", "shapes", "--model", "steve", "--seed", "0", "--no-progress"]),
    ("train:slotdiffusion", ["train", "--dataset", "shapes", "--model", "slotdiffusion", "--seed", "0",
                             "--no-progress"]),
]


@pytest.mark.parametrize("stage,args", NETWORKS, ids=[s for s, _ in NETWORKS])
def test_sigterm_then_rerun_ends_bit_identical(stage, args, tmp_path):
    """SLURM's pre-emption notice mid-run (after a regular checkpoint and a validation), the same
    command again: weights, optimizer state and the record equal an uninterrupted run's bit for bit."""
    ref = _new_project(tmp_path / "ref")
    tokenizer = {"train:steve": "dvae", "train:slotdiffusion": "vqvae"}.get(stage)
    if tokenizer:
        assert _stage(ref, ["tokenizer", "--dataset", "shapes", "--tokenizer", tokenizer, "--no-progress"]) == 0
    stopped = tmp_path / "stopped"
    shutil.copytree(ref, stopped)
    events = _events(ref, args)
    # the first training batch after the first regular checkpoint (step k, after a validation):
    # the signal arrives during step k + 1, which ends with its own checkpoint
    first = next(i for i, e in enumerate(events) if e.startswith("after-rename ckpt_"))
    k = int(events[first].removeprefix("after-rename ckpt_").removesuffix(".pt"))
    at = next(i for i, e in enumerate(events) if e == "batch" and i > first) + 1
    proc = subprocess.run([sys.executable, "-m", "slotbench", *args], check=False, cwd=stopped, capture_output=True,
                          text=True, timeout=300, env=_env(**{fault_hooks.KILL_ENV: str(at),
                                                              fault_hooks.SIGNAL_ENV: "TERM"}))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and f"SIGTERM received: checkpoint of step {k + 1}" in out, out[-3000:]
    work = stopped / Path(OUTPUTS[stage][0]).parent / "_work"
    assert [p.name for p in checkpoint.scratch_checkpoints(work)] == [f"ckpt_{k:08d}.pt", f"ckpt_{k + 1:08d}.pt"]
    assert not (stopped / OUTPUTS[stage][0]).exists()
    assert _stage(stopped, args) == 0  # the same command again resumes from step 5
    _same_outputs(stage, ref, stopped)


def test_sigterm_and_sigkill_cases_are_counted():
    """docs/robustness.md quotes this number; SIGTERM's checkpoint-and-exit with a bit-identical end is
    test_sigterm_then_rerun_ends_bit_identical's (all five networks), through DataLoader workers and
    the workflow's log pipe tests/test_training.py's, over DDP tests/test_ddp.py's; a MOVi export
    killed mid-way tests/test_movi_export.py's and tests/test_movi_tfds_real.py's."""
    assert len(KILL_CASES) == 17 and {s.split("+")[0] for s, _, _ in KILL_CASES} == set(OUTPUTS)


# ---------------------------------------------------------------------------- 2. corruption
def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _error(cwd: Path, args: list[str], capsys) -> str:
    capsys.readouterr()
    assert _stage(cwd, args) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("split,name,how,stage", [
    ("train", "video.npy", "flip", "train"),
    ("validation", "seg.npy", "flip", "train"),
    ("test", "video.npy", "truncate", "eval-seg"),
    ("test", "seg.npy", "flip", "eval-recon"),
])
def test_corrupt_data_shard_is_named_and_refused(split, name, how, stage, tmp_path, evaluated, capsys):
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    if stage == "train":  # training from scratch
        shutil.rmtree(root / RUN)
    shard = root / "data" / "shapes" / split / name
    if how == "flip":
        _flip_bit(shard, shard.stat().st_size - 7)
    else:
        shard.write_bytes(shard.read_bytes()[:-100])
    before = {p: p.stat().st_mtime_ns for p in (root / RUN).glob("*.json")}
    err = _error(root, [stage, *SAVI], capsys)
    assert f"{split}/{name}" in err and ("SHA-256 differs" in err or "bytes, meta.json says" in err), err
    assert {p: p.stat().st_mtime_ns for p in (root / RUN).glob("*.json")} == before  # nothing rewritten
    if stage == "train":
        assert not (root / RUN / "model.pt").exists()


def _tensor_offset(path: Path) -> int:
    """The byte offset of a weight tensor's data inside a checkpoint file (stored uncompressed)."""
    state = torch.load(path, weights_only=True)
    weight = next(t for t in state["model"].values() if t.numel() >= 64)
    offset = path.read_bytes().find(weight.contiguous().numpy().tobytes())
    assert offset > 0
    return offset + 8


@pytest.mark.parametrize("how", ["truncate", "flip-weights", "flip-anywhere"])
def test_corrupt_model_checkpoint_is_named_and_refused(how, tmp_path, evaluated, capsys):
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    ckpt = root / RUN / "model.pt"
    if how == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif how == "flip-weights":
        _flip_bit(ckpt, _tensor_offset(ckpt))
    else:  # a seeded random byte: the pickle, a tensor or the zip structure
        _flip_bit(ckpt, random.Random(7).randrange(ckpt.stat().st_size))
    seg = (root / RUN / "seg.json").read_bytes()
    err = _error(root, ["eval-seg", *SAVI], capsys)
    assert f"{RUN}/model.pt" in err, err
    if how == "flip-weights":
        assert "does not match its embedded SHA-256" in err
    assert (root / RUN / "seg.json").read_bytes() == seg


def test_corrupt_scratch_checkpoint_is_skipped_and_training_ends_identical(tmp_path, capsys):
    ref = _new_project(tmp_path / "ref")
    assert _stage(ref, ["train", *SAVI]) == 0
    other = tmp_path / "other"
    shutil.copytree(ref, other)
    for name in ("model.pt", "train.json"):
        (other / RUN / name).unlink()
    newest = checkpoint.scratch_checkpoints(other / RUN / "_work")[-1]
    _flip_bit(newest, _tensor_offset(newest))
    capsys.readouterr()
    assert _stage(other, ["train", *SAVI]) == 0
    out = capsys.readouterr().out
    assert f"skipping {RUN}/_work/{newest.name}: content does not match its embedded SHA-256" in out
    assert "resuming from step 3 of 6" in out
    _same_outputs("train", ref, other)


def test_corrupt_tokenizer_checkpoint_is_named(tmp_path, capsys):
    root = _new_project(tmp_path / "p")
    assert _stage(root, ["tokenizer", "--dataset", "shapes", "--tokenizer", "dvae", "--no-progress"]) == 0
    tok = root / "results" / "shapes" / "dvae" / "model.pt"
    _flip_bit(tok, _tensor_offset(tok))
    err = _error(root, ["train", "--dataset", "shapes", "--model", "steve", "--seed", "0", "--no-progress"], capsys)
    assert "results/shapes/dvae/model.pt" in err and "embedded SHA-256" in err
    assert not list((root / "results").glob("shapes/steve/**/*.pt"))


@pytest.mark.parametrize("record,how,stage", [
    ("seg.json", "truncate", ["table", "--dataset", "shapes", "--model", "savi"]),
    ("seg.json", "digit", ["table", "--dataset", "shapes", "--model", "savi"]),
    ("recon.json", "digit", ["fvd", *SAVI, "--kind", "recon"]),
])
def test_corrupt_metrics_record_is_named_and_refused(record, how, stage, tmp_path, evaluated, capsys):
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    path = root / RUN / record
    text = path.read_text()
    if how == "truncate":
        path.write_text(text[: len(text) // 2])
    else:  # still valid JSON: one digit of a number changed
        key = "FG-ARI" if record == "seg.json" else "num_frames_total"
        start = text.index(f'"{key}": ') + len(key) + 4
        digit = text[start]
        path.write_text(text[:start] + str((int(digit) + 1) % 10) + text[start + 1:])
        json.loads(path.read_text())
    outputs = [root / "results/shapes/savi/table.csv", root / RUN / "fvd_recon.json"]
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in outputs}
    err = _error(root, stage, capsys)
    assert f"{RUN}/{record}" in err and ("not valid JSON" in err or "does not match its record_sha256" in err), err
    assert {p: p.stat().st_mtime_ns if p.exists() else None for p in outputs} == before


def test_corrupt_dataset_meta_json_is_named_and_refused(tmp_path, evaluated, capsys):
    """One flipped bit in data/shapes/meta.json (here in a recorded SHA-256 of a shard, which would
    otherwise make every later check compare against a wrong digest) is caught by its own digest."""
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    meta = root / "data" / "shapes" / "meta.json"
    text = meta.read_text()
    at = text.index('"sha256": "') + len('"sha256": "')
    meta.write_text(text[:at] + chr(ord(text[at]) ^ 0x01) + text[at + 1:])
    seg = (root / RUN / "seg.json").read_bytes()
    err = _error(root, ["eval-seg", *SAVI], capsys)
    assert "data/shapes/meta.json" in err and "does not match its record_sha256" in err, err
    assert (root / RUN / "seg.json").read_bytes() == seg


# ---------------------------------------------------------------------------- 3. NaN / Inf
def _poison(monkeypatch, cfg_model: str, at_call: int, kind: str):
    """Make the training loss (or only its gradient) non-finite at the ``at_call``-th training forward."""
    from slotbench.config import resolve
    from slotbench.models import build_model

    model_cls = type(build_model(resolve("shapes", cfg_model)["model"], 16))
    real_loss, calls = model_cls.loss, {"n": 0}

    def loss(self, video, out):
        losses = real_loss(self, video, out)
        if self.training:
            calls["n"] += 1
            if calls["n"] == at_call:
                if kind == "grad":  # finite value, NaN gradient: 0 * d sqrt(x)/dx at 0
                    param = next(self.parameters())
                    losses["loss"] = losses["loss"] + torch.sqrt(param.sum() * 0.0)
                else:
                    losses["loss"] = losses["loss"] * float(kind)
        return losses

    monkeypatch.setattr(model_cls, "loss", loss)


@pytest.mark.parametrize("kind,message", [("nan", "loss is nan at step 3"), ("inf", "loss is inf at step 3"),
                                          ("grad", "gradient norm is nan at step 3")])
def test_non_finite_stops_clearly_and_keeps_the_last_good_checkpoint(kind, message, project, tiny_data, monkeypatch,
                                                                     capsys):
    _poison(monkeypatch, "savi", 4, kind)
    err = _error(project, ["train", *SAVI], capsys)
    assert err.startswith("slotbench train: error: ") and message in err and "no model.pt is written" in err, err
    work = project / RUN / "_work"
    assert [p.name for p in checkpoint.scratch_checkpoints(work)] == ["ckpt_00000003.pt"]
    assert not (project / RUN / "model.pt").exists()
    state = checkpoint.load(work / "ckpt_00000003.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.parametrize("kind", ["nan", "grad"])
def test_non_finite_skip_mode_counts_and_finishes_finite(kind, project, tiny_data, monkeypatch):
    _poison(monkeypatch, "savi", 2, kind)
    assert _stage(project, ["train", *SAVI, "--set", "train.nonfinite=skip"]) == 0
    summary = json.loads((project / RUN / "train.json").read_text())
    assert summary["nonfinite_skipped"] == 1 and summary["steps"] == 6
    assert np.isfinite(summary["train_loss"])  # the skipped step's loss is not averaged in
    state = checkpoint.load(project / RUN / "model.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values())


# ---------------------------------------------------------------------------- 4. bad input
@pytest.mark.parametrize("file,key,value,message", [
    ("models/savi.yaml", "model.num_slotz", 3, "models/savi.yaml: model.num_slotz: unknown key"),
    ("profiles/tiny.yaml", "train.lr", "fast", "profiles/tiny.yaml: train.lr: expected a number"),
    ("defaults.yaml", "train.nonfinite", "ignore", "defaults.yaml: train.nonfinite: expected one of ['stop', 'skip']"),
    ("profiles/tiny.yaml", "per_model.savi.model.encoder.strides", [2, 3],
     "dataset.resolution: 16 is not divisible by 6, the encoder's down-sampling"),
    ("profiles/tiny.yaml", "per_model.savi.model.num_slots", 300,
     "model.num_slots: 300 slots but the encoder gives only 16x16 = 256 feature positions"),
    ("profiles/tiny.yaml", "per_model.savi.model.decoder.broadcast_resolution", 3,
     "model.decoder.broadcast_resolution: 3 with 2 decoder layers reaches [3, 6, 12], not dataset.resolution 16"),
    ("profiles/tiny.yaml", "per_tokenizer.vqvae.tokenizer.channel_mult", [1, 2, 2, 2, 2, 2],
     "dataset.resolution: 16 is not divisible by 32"),
])
def test_bad_params_are_refused_before_any_compute(file, key, value, message, tmp_path, capsys):
    root = _new_project(tmp_path / "p", data=False)
    edit_yaml(root / "params" / file, key, value)
    args = (["tokenizer", "--dataset", "shapes", "--tokenizer", "vqvae"] if "tokenizer" in key
            else ["train", *SAVI])
    err = _error(root, args, capsys)
    assert message in err, err
    assert not (root / "results").exists() and not (root / "data").exists()


@pytest.mark.parametrize("key,value,expected", [("video_len", 8, "dataset.video_len: 6 -> 8"),
                                                 ("resolution", 32, "dataset.resolution: 16 -> 32")])
def test_dataset_of_another_shape_is_refused_at_load(key, value, expected, project, tiny_data, capsys):
    sets = ["--set", f"dataset.{key}={value}"]
    if key == "resolution":
        sets += ["--set", "model.decoder.broadcast_resolution=8"]
    err = _error(project, ["train", *SAVI, *sets], capsys)
    assert "data/shapes/meta.json: stale export" in err and expected in err, err
    assert "re-export with `slotbench export --dataset shapes`" in err, err
    assert not (project / RUN / "model.pt").exists()


# ---------------------------------------------------------------------------- 5. security
@pytest.mark.parametrize("pin", [None, "0" * 64])
def test_an_unverified_fvd_detector_is_not_loaded(pin, tmp_path, evaluated, capsys):
    """The stand-in detector without its pinned SHA-256 (or with another one): the fvd stage leaves
    the cell empty with the reason and the line to add, and never loads the TorchScript file."""
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    _fvd_inputs(root)
    edit_yaml(root / "params" / "defaults.yaml", "fvd.detector_sha256", pin)
    real_load, loads = torch.jit.load, []
    torch.jit.load = lambda *a, **k: loads.append(a) or real_load(*a, **k)
    try:
        assert _stage(root, ["fvd", *SAVI, "--kind", "recon"]) == 0
    finally:
        torch.jit.load = real_load
    record = json.loads((root / RUN / "fvd_recon.json").read_text())
    assert record["FVD"] is None and "weights/i3d.pt" in record["reason"] and not loads
    assert ("fvd.detector_sha256: " if pin is None else "differs from fvd.detector_sha256") in record["reason"]
    assert "FVD (recon) not computed" in capsys.readouterr().out


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path, evaluated, capsys):
    root = tmp_path / "p"
    shutil.copytree(evaluated, root)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload(), "content_sha256": "0" * 64}, root / RUN / "model.pt")
    err = _error(root, ["eval-seg", *SAVI], capsys)
    assert f"{RUN}/model.pt: cannot be loaded as a slotbench checkpoint" in err, err
    assert not marker.exists()


SECRET = "s3cr3t-Pa55word"


class _FakeMLflow(BaseHTTPRequestHandler):
    """The few MLflow REST calls a training run makes, recorded (with their Authorization header)."""

    calls: ClassVar[list] = []

    def _reply(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.calls.append((self.command, self.path, self.headers.get("Authorization"), body))
        info = {"run_id": "r1", "run_uuid": "r1", "experiment_id": "1", "status": "RUNNING", "start_time": 1,
                "lifecycle_stage": "active", "artifact_uri": "file:///nowhere"}
        experiment = {"experiment_id": "1", "name": "slotbench", "lifecycle_stage": "active",
                      "artifact_location": "file:///nowhere"}
        path = self.path.split("?")[0]
        if path.endswith(("/experiments/get-by-name", "/experiments/get")):
            self._reply({"experiment": experiment})
        elif path.endswith(("/runs/create", "/runs/get")):
            self._reply({"run": {"info": info, "data": {}}})
        elif path.endswith("/runs/update"):
            self._reply({"run_info": {**info, "status": "FINISHED"}})
        else:
            self._reply({})

    do_GET = do_POST = do_PATCH = _handle

    def log_message(self, *args) -> None:  # quiet
        pass


def test_tracking_credentials_are_used_but_never_written(project, tiny_data, capfd):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeMLflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeMLflow.calls = []
    uri = f"http://alice:{SECRET}@127.0.0.1:{server.server_address[1]}"
    tracking = ["--set", "tracking.enabled=true", "--set", f"tracking.uri={uri}"]
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    try:
        for args in (["train", *SAVI], ["eval-seg", *SAVI], ["params", "--dataset", "shapes", "--model", "savi"]):
            assert _stage(project, [*args, *tracking]) == 0, args
        # the stage as a subprocess too (what Snakemake runs): its stdout and stderr
        proc = subprocess.run([sys.executable, "-m", "slotbench", "eval-seg", *SAVI, *tracking], check=False,
                              cwd=project, capture_output=True, text=True, timeout=300, env=_env())
        assert proc.returncode == 0, proc.stderr
    finally:
        server.shutdown()
        for k, v in saved_env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    printed = capfd.readouterr()
    assert any(path.endswith("/runs/create") for _, path, _, _ in _FakeMLflow.calls)
    import base64

    expected_auth = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert all(auth == expected_auth for _, _, auth, _ in _FakeMLflow.calls)  # the credentials were used...
    assert not any(SECRET in body for _, _, _, body in _FakeMLflow.calls)  # ...but not logged as a param
    assert "alice:***@127.0.0.1" in printed.out  # `slotbench params` shows the URI redacted
    leaks = [p for p in project.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks, f"the tracking password was written to {leaks}"
    for text in (printed.out, printed.err, proc.stdout, proc.stderr):
        assert SECRET not in text
    assert checkpoint.load(project / RUN / "model.pt")["config"]["tracking"]["uri"].startswith("http://alice:***@")


# ---------------------------------------------------------------------------- 6. concurrency
def _second_run_refused(cmd: list[str], cwd: Path, env: dict, hold: Path, lock_messages: tuple[str, ...]) -> None:
    """Start ``cmd``; while its training job holds (at its first batch, until ``hold`` exists), run
    ``cmd`` again: it must fail with one of ``lock_messages`` and leave the first undisturbed; then
    release the first and check that it finishes."""
    first = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not Path(f"{hold}.held").exists():  # the export job is done, the training job is running
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended early"
            time.sleep(0.2)
        second = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
        said = second.stdout + second.stderr
        assert second.returncode != 0 and any(m in said for m in lock_messages), said[-2000:]
        assert first.poll() is None, "the second run disturbed the first"
    finally:
        hold.touch()
        out = first.communicate(timeout=240)[0]
    assert first.returncode == 0, out[-3000:]


def test_second_dvc_repro_on_the_same_directory_is_refused_by_the_lock(tmp_path):
    from test_workflow import _project

    (tmp_path / "p").mkdir()
    root = _project(tmp_path / "p")
    bin_dir = Path(sys.executable).parent
    env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dvc = [sys.executable, "-m", "dvc"]
    edit_yaml(root / "params" / "defaults.yaml", "grid.models", ["savi"])
    for args in ([sys.executable, "-m", "slotbench", "dvc-yaml"], [*dvc, "init", "--no-scm", "-q"]):
        subprocess.run(args, cwd=root, env=env, check=True, capture_output=True, timeout=120)
    hold = tmp_path / "release"  # the first repro's training stage waits at its first batch until this exists
    held_env = {**env, fault_hooks.HOLD_ENV: str(hold)}
    # DVC's repository lock, or its read/write lock on the stage's files
    _second_run_refused([*dvc, "repro", "train_shapes_savi_seed0"], root, held_env, hold,
                        ("Unable to acquire lock", "is busy, it is being blocked by"))
    assert checkpoint.load(root / RUN / "model.pt")["step"] == 6
    status = subprocess.run([*dvc, "status", "train_shapes_savi_seed0"], cwd=root, env=env, check=True,
                            capture_output=True, text=True, timeout=120).stdout
    assert "up to date" in status, status  # the lock was released and dvc.lock records the finished stage


def test_second_snakemake_on_the_same_directory_is_refused_by_the_lock(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    for name in ("Snakefile", "workflow"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    copy_params(root)
    hold = tmp_path / "release"  # the first run's training job waits at its first batch until this exists
    env = _env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               **{fault_hooks.HOLD_ENV: str(hold)})
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", f"{RUN}/model.pt"]
    _second_run_refused(cmd, root, env, hold, ("LockException",))
    assert checkpoint.load(root / RUN / "model.pt")["step"] == 6
    assert not list((root / ".snakemake" / "locks").glob("*")), "lock not released"
    from slotbench.data.storage import open_split

    for split in ("train", "validation", "test"):  # the data both runs saw is intact
        open_split(root / "data" / "shapes", split, verify_checksums=True)
