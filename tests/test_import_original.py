"""Importing checkpoints of the original implementation, without a copy of the original.

``tests/data/original_small_keys.json`` lists the tensor names, shapes and dtypes of every
original network built at a small configuration (16x16 frames), with the matching slotbench
configuration; it was written by ``bench/parity_original.py --small-keys`` from the original
code. Fake original checkpoints are made from it here (random values under the original names).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, edit_yaml

from slotbench import checkpoint
from slotbench.checkpoint import restore_model
from slotbench.config import ParamsError, resolve
from slotbench.interop.original import (
    OriginalCheckpointError,
    convert_state,
    load_original,
    schedule_constants,
)
from slotbench.interop.original_keys import target
from slotbench.models import build_model, build_tokenizer, with_later_model_keys

KEYS = json.loads((Path(__file__).parent / "data" / "original_small_keys.json").read_text())["networks"]


def build_slotbench(entry: dict) -> torch.nn.Module:
    """The slotbench module of a small-config entry (configs recorded before later model keys existed)."""
    if entry["network"] in ("dvae", "vqvae"):
        return build_tokenizer(entry["slotbench_config"])
    tok = build_tokenizer(entry["tokenizer_config"]) if entry["tokenizer_config"] else None
    return build_model(with_later_model_keys(entry["slotbench_config"]), entry["resolution"], tokenizer=tok)


def fake_original(entry: dict, model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """An original state dict of ``entry``: random trained tensors, constants as the original stores them."""
    gen = torch.Generator().manual_seed(seed)
    buffers = dict(model.named_buffers())
    schedule = schedule_constants(model.schedule) if hasattr(model, "schedule") else {}
    state = {}
    for name, shape, dtype in entry["original_state"]:
        tgt = target(entry["network"], name)
        if tgt.kind == "buffer":
            state[name] = buffers[tgt.name].clone()
        elif tgt.kind == "schedule":
            state[name] = schedule[tgt.name].float()
        else:
            state[name] = torch.randn(shape, generator=gen).to(getattr(torch, dtype))
    return state


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_mapping_both_directions(name):
    """Every original tensor has a place; the parameters cover slotbench's state dict exactly."""
    entry = KEYS[name]
    model = build_slotbench(entry)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    buffers = {k: list(v.shape) for k, v in model.named_buffers()}
    mapped: dict[str, str] = {}
    for orig, shape, _ in entry["original_state"]:
        tgt = target(entry["network"], orig)
        assert tgt is not None, f"{name}: no rule for original {orig}"
        if tgt.kind == "param":
            assert tgt.name not in mapped, f"{orig} and {mapped.get(tgt.name)} both map to {tgt.name}"
            assert expected.get(tgt.name) == shape, f"{orig} {shape} -> {tgt.name} {expected.get(tgt.name)}"
            mapped[tgt.name] = orig
        elif tgt.kind == "buffer":
            assert buffers[tgt.name] == shape, f"{orig} {shape} vs slotbench buffer {tgt.name} {buffers[tgt.name]}"
        elif tgt.kind == "schedule":
            assert shape == [model.schedule.num_timesteps]
        else:
            assert orig.startswith(("loss.", "dm_decoder.vae.vqvae.loss.")), orig
    assert set(mapped) == set(expected), f"slotbench entries without an original: {sorted(set(expected) - set(mapped))}"


@pytest.mark.parametrize("name", sorted(KEYS))
def test_convert_state_copies_every_tensor(name):
    entry = KEYS[name]
    model = build_slotbench(entry)
    original = fake_original(entry, model)
    state, counts = convert_state(entry["network"], original, model)
    model.load_state_dict(state, strict=True)
    for orig, tensor in original.items():
        tgt = target(entry["network"], orig)
        if tgt.kind == "param":
            assert torch.equal(state[tgt.name], tensor), orig
    assert counts["copied"] == len(state)


def test_conversion_errors_name_the_tensor():
    entry = KEYS["steve"]
    model = build_slotbench(entry)
    original = fake_original(entry, model)
    bad = dict(original, **{"trans_decoder.extra.weight": torch.zeros(2)})
    with pytest.raises(OriginalCheckpointError, match=r"'trans_decoder\.extra\.weight' \[2\] has no place"):
        convert_state("steve", bad, model)
    bad = dict(original, **{"trans_decoder.head.weight": torch.zeros(5, 16)})
    with pytest.raises(OriginalCheckpointError,
                       match=r"'trans_decoder\.head\.weight' has shape \[5, 16\] but "
                             r"slotbench's 'trans_decoder\.head\.weight' has shape \[16, 16\]"):
        convert_state("steve", bad, model)
    bad = {k: v for k, v in original.items() if k != "init_latents"}
    with pytest.raises(OriginalCheckpointError, match=r"'trunk\.init_latents' \[1, 3, 16\] is not set"):
        convert_state("steve", bad, model)
    mask = next(k for k in original if k.endswith("self_attn_mask"))
    bad = dict(original, **{mask: torch.zeros_like(original[mask])})
    with pytest.raises(OriginalCheckpointError, match="differs from slotbench's 'trans_decoder.causal_mask'"):
        convert_state("steve", bad, model)


def test_schedule_constants_are_checked():
    entry = KEYS["slotdiffusion"]
    model = build_slotbench(entry)
    original = fake_original(entry, model)
    original["dm_decoder.betas"] = original["dm_decoder.betas"] * 2
    with pytest.raises(OriginalCheckpointError, match=r"'dm_decoder\.betas' differs .* diffusion schedule"):
        convert_state("slotdiffusion", original, model)


class _Payload:
    def __reduce__(self):
        return (os.mkdir, ("pwned-by-pickle",))


def test_checkpoint_needing_code_execution_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Payload()}, path)
    with pytest.raises(OriginalCheckpointError, match="refused: loading it would execute code"):
        load_original(path)
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_load_original_reads_both_formats(tmp_path):
    state = {"w": torch.ones(2)}
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"state_dict": state, "opt_state_dict": {"state": {}, "param_groups": []}, "it": 7, "epoch": 1,
                "best_metric_dict": {"": 1e8}}, tmp_path / "full.pth")
    assert load_original(tmp_path / "bare.pth")[1]["format"] == "state dict"
    loaded, info = load_original(tmp_path / "full.pth")
    assert torch.equal(loaded["w"], state["w"]) and (info["iteration"], info["epoch"]) == (7, 1)


def _save_nerv(path: Path, state: dict) -> None:
    """As nerv's trainer saves a full training checkpoint."""
    torch.save({"state_dict": state, "opt_state_dict": {"state": {}, "param_groups": []}, "it": 11, "epoch": 1,
                "best_metric_dict": {"": 1e8}, "scheduler_method": "step"}, path)


def test_round_trip_through_the_train_and_eval_stages(tiny_data, project):
    """params `init: {from: original}` -> the train stage imports -> eval-seg runs unchanged."""
    from slotbench.cli import main

    entry = KEYS["savi_cnn"]  # the tiny profile's SAVi is this configuration
    cfg = resolve("shapes", "savi", project / "params")["model"]
    assert {k: cfg[k] for k in entry["slotbench_config"]} == entry["slotbench_config"]
    original = fake_original(entry, build_slotbench(entry))
    _save_nerv(project / "savi_orig.pth", original)
    edit_yaml(project / "params" / "models" / "savi.yaml", "model.init", {"from": "original", "path": "savi_orig.pth"})
    assert main(["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]) == 0
    state = checkpoint.load(project / "results/shapes/savi/seed0/model.pt")
    assert state["origin"]["format"] == "nerv training checkpoint" and state["step"] == 11
    assert torch.equal(state["model"]["trunk.slot_attention.norm_slots.weight"],
                       original["slot_attention.project_q.0.weight"])
    summary = json.loads((project / "results/shapes/savi/seed0/train.json").read_text())
    assert summary["imported_from"]["tensors"]["checked_constants"] == 2
    assert main(["eval-seg", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]) == 0
    seg = json.loads((project / "results/shapes/savi/seed0/seg.json").read_text())
    assert seg["num_videos"] == 3 and seg["train_steps"] == 11


def test_round_trip_slotdiffusion_sampling(project):
    """import-original -> model.pt -> restore -> slots and a DPM-Solver++ reconstruction of 16x16 frames."""
    from slotbench.cli import main

    entry = KEYS["slotdiffusion"]
    params = project / "params"
    profile = params / "profiles" / "tiny.yaml"
    prof = yaml.safe_load(profile.read_text())
    prof["per_model"]["slotdiffusion"]["model"] = {k: v for k, v in entry["slotbench_config"].items()
                                                   if k not in ("name", "tokenizer")}
    prof["per_tokenizer"]["vqvae"]["tokenizer"] = {k: v for k, v in entry["tokenizer_config"].items() if k != "name"}
    profile.write_text(yaml.safe_dump(prof, sort_keys=False))
    original = fake_original(entry, build_slotbench(entry))
    torch.save(original, project / "sd.pth")
    assert main(["import-original", "--model", "slotdiffusion", "--dataset", "shapes", str(project / "sd.pth"),
                 str(project / "sd.pt")]) == 0
    model = restore_model(checkpoint.load(project / "sd.pt")).eval()
    video = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        slots = model(video)["slots"]
        frames = model.reconstruct(slots, steps=6, generator=torch.Generator().manual_seed(0))
    assert slots.shape == (1, 2, 3, 16) and frames.shape == video.shape and torch.isfinite(frames).all()
    assert torch.equal(model.tokenizer.quantize.embedding.weight,
                       original["dm_decoder.vae.vqvae.quantize.embedding.weight"])


def test_init_params_are_validated_and_tracked(project):
    from slotbench.workflow_dvc import render_dvc_yaml

    model_file = project / "params" / "models" / "slotdiffusion.yaml"
    edit_yaml(model_file, "model.init", {"from": "elsewhere", "path": "x.pth"})
    with pytest.raises(ParamsError, match="model.init: from: expected 'original'"):
        resolve("shapes", "slotdiffusion", project / "params")
    edit_yaml(model_file, "model.init", {"from": "original", "path": "pretrained/sd.pth"})
    stages = yaml.safe_load(render_dvc_yaml(project / "params"))["stages"]
    assert stages["train_shapes_slotdiffusion_seed0"]["deps"][0] == "pretrained/sd.pth"
    assert "data/shapes" not in stages["train_shapes_slotdiffusion_seed0"]["deps"]
    assert "tokenizer_shapes_vqvae" not in stages  # the imported file carries its VQ-VAE


def test_snakemake_plans_the_import_instead_of_training(project):
    shutil.copy(REPO / "Snakefile", project / "Snakefile")
    shutil.copytree(REPO / "workflow", project / "workflow")
    (project / "sd.pth").write_bytes(b"")  # the plan only needs the file to exist
    edit_yaml(project / "params" / "models" / "slotdiffusion.yaml", "model.init",
              {"from": "original", "path": "sd.pth"})
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
                           "results/shapes/slotdiffusion/seed0/model.pt"], cwd=project, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    planned = {line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("rule ")}
    assert planned == {"train"}  # neither the export nor the VQ-VAE stage
