"""Check a subcommand's input files before it starts, so a missing one is one sentence plus the fix.

The inputs are the stage's declared ones (:mod:`slotbench.pipeline`), each paired with the command of
the stage that makes it; Snakemake and DVC always run that command first, so these errors are met
only when stages are run by hand out of order. The dataset export must also be current: made from
the dataset params as they are now (:func:`slotbench.data.dataset.check_current`); Snakemake and DVC
re-export when those change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import paths
from .pipeline import Input, by_command, stage_of


class MissingInputError(FileNotFoundError):
    """An input file of a stage does not exist yet."""


def _declared_inputs(args: argparse.Namespace) -> list[Input]:
    """The inputs of the stage the parsed command line runs (none for a utility command)."""
    from .config import RunConfigs, parse_overrides

    if args.command not in by_command():
        return []
    stage = stage_of(args.command, {w for w in vars(args) if getattr(args, w) is not None})
    run = {w: getattr(args, w) for w in stage.wildcards}
    return stage.inputs(run, RunConfigs(args.params_dir, parse_overrides(getattr(args, "set", None))))


def required_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(path, command that makes it)`` for every input file of the parsed command line that a stage
    makes (an original checkpoint to import has its own missing-file error)."""
    return [(i.check or i.path, i.make_command()) for i in _declared_inputs(args) if i.maker]


def check_inputs(args: argparse.Namespace) -> None:
    """Check the dataset and model names, then raise :class:`MissingInputError` naming the first
    missing input and the command that makes it, or :class:`~slotbench.data.storage.DataError`
    when the stage would read a dataset export that is not current."""
    from .config import parse_overrides, resolve, resolve_dataset

    overrides = parse_overrides(getattr(args, "set", None))
    dataset = getattr(args, "dataset", None)
    dataset_cfg = resolve_dataset(dataset, args.params_dir, overrides) if dataset else None
    if getattr(args, "model", None) and args.command != "import-original":  # which may name a tokenizer
        resolve(args.dataset, args.model, args.params_dir, overrides)
    inputs = [i for i in _declared_inputs(args) if i.maker]
    for item in inputs:
        path = item.check or item.path
        if not Path(path).exists():
            raise MissingInputError(f"{path} does not exist; make it first with `{item.make_command()}` "
                                    f"(or let `snakemake --cores N {item.path}` run every stage it needs)")
    if dataset_cfg and any(i.maker[0] == "export" for i in inputs):  # the stage reads the exported data
        from .data.dataset import check_current

        check_current(paths.DATA_DIR.format(dataset=args.dataset), dataset_cfg)
