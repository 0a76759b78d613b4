"""The text of ``slotbench <command> --help`` for the utility commands (a stage's help is part of its
declaration, :mod:`slotbench.pipeline`)."""

from __future__ import annotations

import argparse

DESCRIPTIONS = {
    "params": """\
Print the resolved parameters (defaults -> dataset -> model -> profile) as YAML; writes nothing.
example: slotbench params --dataset shapes --model savi""",
    "dvc-yaml": """\
Write dvc.yaml (the same stages as the Snakefile) for the grid in params/defaults.yaml.
reads:  params/; writes: dvc.yaml (--check: only report whether it is up to date)
example: slotbench dvc-yaml && dvc repro""",
}


def describe(subparsers: argparse._SubParsersAction) -> None:
    """Give every subcommand of ``subparsers`` its description from :data:`DESCRIPTIONS`."""
    for name, parser in subparsers.choices.items():
        if name in DESCRIPTIONS:
            parser.description = DESCRIPTIONS[name]
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
