"""``slotbench <stage> --set KEY=VALUE``: one-off parameter overrides, checked like a params file."""

from __future__ import annotations

import json

import pytest

from slotbench import cli
from slotbench.config import ParamsError, parse_overrides, resolve, resolve_dataset, resolve_tokenizer


def test_values_are_read_as_yaml():
    assert parse_overrides(["train.max_steps=7", "train.lr=1e-3", "train.decoder_lr=null",
                            "model.encoder.strides=[1, 2]", "dataset.name=shapes"]) == {
        "train.max_steps": 7, "train.lr": 1e-3, "train.decoder_lr": None, "model.encoder.strides": [1, 2],
        "dataset.name": "shapes"}
    # only true / false are booleans on the command line (YAML 1.1 would read off, no, on, yes as ones)
    assert parse_overrides(["train.cpu_amp=off", "runtime.compile=true", "a.b=no", "a.c=False", "a.d={x: on}"]) == {
        "train.cpu_amp": "off", "runtime.compile": True, "a.b": "no", "a.c": False, "a.d": {"x": "on"}}
    for bad in ("max_steps=3", "train.max_steps", "=3", "train.lr=[1"):
        with pytest.raises(ParamsError, match="--set"):
            parse_overrides([bad])


def test_an_override_wins_over_every_file_and_is_validated(project):
    params = project / "params"
    base = resolve("shapes", "savi", params)
    cfg = resolve("shapes", "savi", params, parse_overrides(["train.max_steps=11", "model.num_slots=2",
                                                             "dataset.splits.train=5"]))
    assert (cfg["train"]["max_steps"], cfg["model"]["num_slots"], cfg["dataset"]["splits"]["train"]) == (11, 2, 5)
    assert {k: v for k, v in cfg["train"].items() if k != "max_steps"} == \
           {k: v for k, v in base["train"].items() if k != "max_steps"}
    assert resolve_dataset("shapes", params, parse_overrides(["dataset.splits.train=5", "train.lr=1"])) == \
           cfg["dataset"]
    tok = resolve_tokenizer("shapes", "dvae", params, parse_overrides(["tokenizer.vocab_size=16"]))
    assert tok["tokenizer"]["vocab_size"] == 16
    with pytest.raises(ParamsError, match=r"--set: train.bogus: unknown key"):
        resolve("shapes", "savi", params, {"train.bogus": 1})
    with pytest.raises(ParamsError, match=r"--set: train.max_steps: expected an integer"):
        resolve("shapes", "savi", params, {"train.max_steps": "many"})
    with pytest.raises(ParamsError, match=r"--set: grid: unknown key"):
        resolve("shapes", "savi", params, {"grid.seeds": [1]})
    with pytest.raises(ParamsError, match=r"model.decoder.broadcast_resolution"):  # the merged checks still run
        resolve("shapes", "savi", params, {"model.decoder.broadcast_resolution": 3})


def test_the_stage_runs_with_the_override_and_params_stay_untouched(project, tiny_data, capsys):
    before = {p: p.read_bytes() for p in (project / "params").rglob("*.yaml")}
    args = ["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]
    assert cli.main([*args, "--set", "train.max_steps=2"]) == 0
    record = json.loads((project / "results/shapes/savi/seed0/train.json").read_text())
    assert record["steps"] == 2
    assert {p: p.read_bytes() for p in (project / "params").rglob("*.yaml")} == before
    capsys.readouterr()
    assert cli.main([*args, "--set", "train.max_steps=two"]) == 2
    assert "--set: train.max_steps: expected an integer" in capsys.readouterr().err
