"""The command line explains itself: every stage's help names its inputs and outputs, and the
common mistakes end in one sentence with the fix (exit status 2), never a traceback."""

from __future__ import annotations

import pytest

from slotbench.cli import build_parser, main

STAGES = ("export", "tokenizer", "train", "eval-seg", "eval-recon", "eval-comp-gen", "fvd", "table", "report")


def _subparsers() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_top_level_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in _subparsers():
        assert f"\n  {name} " in text, f"{name} missing from `slotbench --help`"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_names_inputs_outputs_and_an_example(stage, capsys):
    with pytest.raises(SystemExit):
        main([stage, "--help"])
    text = capsys.readouterr().out
    assert "reads:" in text and "writes:" in text and f"example: slotbench {stage}" in text


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, f"not one line: {err!r}"
    return err


def test_wrong_dataset_name(project, capsys):
    err = _error(["eval-seg", "--dataset", "shapez", "--model", "savi", "--seed", "0"], capsys)
    assert "no such dataset 'shapez'" in err and "shapes" in err


def test_missing_data_names_the_export_command(project, capsys):
    err = _error(["train", "--dataset", "shapes", "--model", "savi", "--seed", "0"], capsys)
    assert "data/shapes/meta.json does not exist" in err and "`slotbench export --dataset shapes`" in err


def test_missing_weights_name_the_stage_that_makes_them(tiny_data, capsys):
    err = _error(["train", "--dataset", "shapes", "--model", "steve", "--seed", "0"], capsys)
    assert "results/shapes/dvae/model.pt does not exist" in err
    assert "`slotbench tokenizer --dataset shapes --tokenizer dvae`" in err
    err = _error(["eval-seg", "--dataset", "shapes", "--model", "savi", "--seed", "0"], capsys)
    assert "results/shapes/savi/seed0/model.pt does not exist" in err and "`slotbench train --dataset shapes" in err
    err = _error(["report", "--dataset", "shapes"], capsys)
    assert "results/shapes/table.csv does not exist" in err and "`slotbench table --dataset shapes`" in err


def test_cuda_asked_without_a_gpu(tiny_data, capsys):
    err = _error(["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress",
                  "--set", "runtime.device=cuda"], capsys)
    assert "no CUDA GPU is visible" in err and "runtime.device: auto or cpu" in err


@pytest.mark.parametrize("videos", ["0", "-1", "x"])
def test_report_refuses_a_video_count_below_one(videos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--dataset", "shapes", "--videos", videos])
    assert exit_info.value.code == 2 and "expected an integer >= 1" in capsys.readouterr().err


def test_a_checkpoint_in_another_runs_folder_is_refused(tiny_data, capsys):
    """A model.pt copied or imported into the wrong results folder is not evaluated as that run."""
    import shutil

    assert main(["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress",
                 "--set", "train.max_steps=1"]) == 0
    for model, seed in (("steve", 0), ("savi", 1)):
        wrong = tiny_data.parents[1] / f"results/shapes/{model}/seed{seed}/model.pt"
        wrong.parent.mkdir(parents=True)
        shutil.copy(tiny_data.parents[1] / "results/shapes/savi/seed0/model.pt", wrong)
        for stage in ("eval-seg", "eval-recon"):
            err = _error([stage, "--dataset", "shapes", "--model", model, "--seed", str(seed), "--no-progress"], capsys)
            assert "it is in the wrong run folder" in err and (f"model 'savi', not '{model}'" if model != "savi"
                                                               else "seed 0, not 1") in err
    assert main(["eval-seg", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]) == 0
