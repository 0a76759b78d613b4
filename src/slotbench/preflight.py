"""Check a subcommand's input files before it starts, so a missing one is one sentence plus the fix.

Each input is paired with the command that makes it; Snakemake and DVC always run that command
first, so these errors are met only when stages are run by hand out of order. The dataset export
must also be current: made from the dataset params as they are now
(:func:`slotbench.data.dataset.check_current`); Snakemake and DVC re-export when those change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import paths


class MissingInputError(FileNotFoundError):
    """An input file of a stage does not exist yet."""


#: The command that writes each record of a run (keys as in :func:`slotbench.table.run_files`).
MAKERS = {
    "seg": "slotbench eval-seg --dataset {dataset} --model {model} --seed {seed}",
    "recon": "slotbench eval-recon --dataset {dataset} --model {model} --seed {seed}",
    "comp": "slotbench eval-comp-gen --dataset {dataset} --model {model} --seed {seed}",
    "fvd_recon": "slotbench fvd --dataset {dataset} --model {model} --seed {seed} --kind recon",
    "fvd_comp": "slotbench fvd --dataset {dataset} --model {model} --seed {seed} --kind comp",
}


def _export(d: str) -> list[tuple[str, str]]:
    return [(paths.DATA_META.format(dataset=d), f"slotbench export --dataset {d}")]


def _train(fmt: dict) -> list[tuple[str, str]]:
    return [(paths.CHECKPOINT.format(**fmt), "slotbench train --dataset {dataset} --model {model} --seed {seed}"
             .format(**fmt))]


def _overrides(args: argparse.Namespace) -> dict:
    """The command line's ``--set`` values (commands without the option have none)."""
    from .config import parse_overrides

    return parse_overrides(getattr(args, "set", None))


def _runs(args: argparse.Namespace, models: list[str]) -> list[dict]:
    from .config import load_grid

    seeds = load_grid(args.params_dir)["seeds"]
    return [{"dataset": args.dataset, "model": m, "seed": s} for m in models for s in seeds]


def required_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(path, command that makes it)`` for every input file of the parsed command line."""
    from .config import load_grid, resolve, resolve_tokenizer

    command, d = args.command, getattr(args, "dataset", None)
    fmt = {"dataset": d, "model": getattr(args, "model", None), "seed": getattr(args, "seed", None)}
    if command == "tokenizer":
        init = resolve_tokenizer(d, args.tokenizer, args.params_dir, _overrides(args))["tokenizer"]["init"]
        return [] if init else _export(d)  # an imported original checkpoint: its own missing-file error
    if command == "train":
        model = resolve(d, args.model, args.params_dir, _overrides(args))["model"]
        if model["init"]:
            return []
        tokenizer = model.get("tokenizer")
        return _export(d) + ([(paths.TOKENIZER_CHECKPOINT.format(dataset=d, tokenizer=tokenizer),
                               f"slotbench tokenizer --dataset {d} --tokenizer {tokenizer}")] if tokenizer else [])
    if command in ("eval-seg", "eval-recon"):
        return _export(d) + _train(fmt)
    if command == "eval-comp-gen":
        return _export(d) + _train(fmt) + [(paths.RECON_METRICS.format(**fmt), MAKERS["recon"].format(**fmt))]
    if command == "fvd":
        record = paths.RECON_METRICS if args.kind == "recon" else paths.COMP_GEN_RECORD
        return [(record.format(**fmt), MAKERS[args.kind].format(**fmt))]
    if command == "table" and args.model:
        from .table import run_files

        return [(path, MAKERS[kind].format(**run)) for run in _runs(args, [args.model])
                for kind, path in run_files(run).items()]
    if command == "table":
        return [(paths.MODEL_TABLE.format(dataset=d, model=m), f"slotbench table --dataset {d} --model {m}")
                for m in load_grid(args.params_dir)["models"]]
    if command == "report":
        return ([(paths.DATASET_TABLE.format(dataset=d), f"slotbench table --dataset {d}")] + _export(d)
                + [item for run in _runs(args, load_grid(args.params_dir)["models"]) for item in _train(run)])
    return []


def check_inputs(args: argparse.Namespace) -> None:
    """Check the dataset and model names, then raise :class:`MissingInputError` naming the first
    missing input and the command that makes it, or :class:`~slotbench.data.storage.DataError`
    when the stage would read a dataset export that is not current."""
    from .config import resolve, resolve_dataset

    dataset = getattr(args, "dataset", None)
    dataset_cfg = resolve_dataset(dataset, args.params_dir, _overrides(args)) if dataset else None
    if getattr(args, "model", None) and args.command != "import-original":  # which may name a tokenizer
        resolve(args.dataset, args.model, args.params_dir, _overrides(args))
    inputs = required_inputs(args)
    export = _export(args.dataset)[0] if dataset_cfg else None
    for path, make in inputs:
        if not Path(path).exists():  # Snakemake makes the export as its receipt (paths.EXPORT_RECEIPT)
            target = paths.EXPORT_RECEIPT.format(dataset=args.dataset) if (path, make) == export else path
            raise MissingInputError(f"{path} does not exist; make it first with `{make}` "
                                    f"(or let `snakemake --cores N {target}` run every stage it needs)")
    if export in inputs:  # the stage reads the exported data
        from .data.dataset import check_current

        check_current(paths.DATA_DIR.format(dataset=args.dataset), dataset_cfg)
