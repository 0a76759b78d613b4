"""The ``slotbench`` command: one subcommand per pipeline stage, plus a few utilities.

The stage subcommands, their options and their help come from the stage declarations
(:mod:`slotbench.pipeline`); Snakemake rules and DVC stages are thin calls of them, run from the
project root. Each subcommand's work is one handler function of :data:`HANDLERS`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import paths
from .interop import original_keys
from .pipeline import FVD_KINDS, WILDCARD_HELP, by_command, stage_of

UTILITIES_HELP = """\
utilities:
  import-original  convert an original SlotDiffusion / nerv checkpoint into model.pt (or set `init` in params)
  params      print the resolved parameters of a (dataset, model) pair
  dvc-yaml    write dvc.yaml from params/ (the same stages as the Snakefile)
"""


def _stages_help() -> str:
    """The epilog of ``slotbench --help``: every stage command and what it does."""
    lines = ["stages (each reads params/ and writes the files named; run in this order):"]
    for command, stages in by_command().items():
        lines += [f"  {command:<14}{stages[0].summary}"] + [f"  {'':<14}{s.summary}" for s in stages[1:]]
    return "\n".join(lines) + "\n" + UTILITIES_HELP


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _add_options(p: argparse.ArgumentParser, settable: bool = True) -> None:
    p.add_argument("--params-dir", default=paths.PARAMS_DIR, help="parameter folder (default: %(default)s)")
    if settable:
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="override one parameter for this stage only, e.g. --set train.max_steps=100 "
                            "(repeatable; the value is read as YAML; it wins over every params file)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_stage_command(sub: argparse._SubParsersAction, command: str, stages: list) -> argparse.ArgumentParser:
    """The subcommand of ``stages`` (one, or ``table``'s two): one ``--flag`` per wildcard, required
    when every stage of the command has it."""
    main_stage = max(stages, key=lambda s: len(s.wildcards))
    p = sub.add_parser(command, help=main_stage.summary, description=main_stage.description,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for w in main_stage.wildcards:
        required = all(w in s.wildcards for s in stages)
        extra = {"type": int} if w == "seed" else {"choices": list(FVD_KINDS)} if w == "kind" else {}
        others = [s.summary for s in stages if w not in s.wildcards]
        p.add_argument(f"--{w}", required=required, **extra,
                       help=WILDCARD_HELP[w] + ("" if required else f"; without it: {others[0]}"))
    _add_options(p, settable=main_stage.settable)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slotbench", description=__doc__.splitlines()[0],
                                     epilog=_stages_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command, stages in by_command().items():
        p = _add_stage_command(sub, command, stages)
        if command == "report":
            p.add_argument("--videos", type=_positive_int, default=3,
                           help="evaluation videos shown (default: %(default)s)")
    p = sub.add_parser("params", help="print the resolved parameters (YAML)")
    p.add_argument("--dataset", required=True, help=WILDCARD_HELP["dataset"])
    _add_options(p)
    p.add_argument("--model", help="resolve a (dataset, model) pair; without it, the dataset section only")
    p.add_argument("--tokenizer", help="resolve a (dataset, tokenizer) pair")
    p = sub.add_parser("import-original", help="convert a checkpoint of the original SlotDiffusion code -> model.pt")
    p.add_argument("--model", required=True, choices=original_keys.NETWORKS,
                   help="the network the checkpoint holds (STEVE / SlotDiffusion files include their tokenizer)")
    p.add_argument("--dataset", required=True, help="the dataset whose params describe the checkpoint (movi_d, movi_e, "
                   "movi_solid, movi_tex: the reference configurations)")
    p.add_argument("--params-dir", default=paths.PARAMS_DIR, help="parameter folder (default: %(default)s)")
    p.add_argument("src", help="the original checkpoint: a nerv training checkpoint or a bare state dict")
    p.add_argument("out", help="the slotbench checkpoint to write (the format of the tokenizer / train stages)")
    p = sub.add_parser("dvc-yaml", help="write dvc.yaml for the grid in params/defaults.yaml")
    p.add_argument("--params-dir", default=paths.PARAMS_DIR)
    p.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date instead of writing")
    p.add_argument("--profile", help="write runs/PROFILE/dvc.yaml instead: every dataset on that profile, every "
                   "output under runs/PROFILE/ (a smoke run: dvc repro runs/PROFILE/dvc.yaml)")
    from .cli_help import describe

    describe(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .runtime import DeviceError

    try:
        from .preflight import check_inputs

        check_inputs(args)
        return _dispatch(args)
    except (ValueError, DeviceError, FileNotFoundError, NotImplementedError, FloatingPointError) as err:
        # ParamsError, DataError and corrupt files are ValueErrors, a NaN/Inf loss a FloatingPointError;
        # SLOTBENCH_DEBUG=1 shows the traceback
        if os.environ.get("SLOTBENCH_DEBUG"):
            raise
        print(f"slotbench {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from . import config

    overrides = config.parse_overrides(getattr(args, "set", None))  # --set KEY=VALUE
    if hasattr(args, "set") and args.command in by_command() and os.environ.get(paths.SET_ENV):
        # a job of `snakemake --config set=[...]`; its own --set wins
        stage = stage_of(args.command, {w for w, v in vars(args).items() if v is not None})
        given = config.workflow_overrides(stage.name, getattr(args, "params_dir", paths.PARAMS_DIR))
        if given:
            print(f"slotbench {args.command}: ${paths.SET_ENV}: {', '.join(f'{k}={v}' for k, v in given.items())}",
                  file=sys.stderr)
        overrides = {**given, **overrides}
    return HANDLERS[args.command](args, overrides, not getattr(args, "no_progress", False)) or 0


def _pair(args: argparse.Namespace) -> dict:
    return {"dataset": args.dataset, "model": args.model, "seed": args.seed}


def _export(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config
    from .data.export import export
    from .io import write_record

    ds = config.resolve_dataset(args.dataset, args.params_dir, overrides)
    meta = export(ds, paths.DATA_DIR.format(dataset=args.dataset), progress=progress)
    # the receipt next to the data: the output Snakemake's rule and DVC's stage track (git keeps
    # it, so a clone that pulls the data has it too)
    write_record(paths.EXPORT_RECEIPT.format(dataset=args.dataset), meta)


def _tokenizer(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config

    cfg = config.resolve_tokenizer(args.dataset, args.tokenizer, args.params_dir, overrides)
    out = paths.TOKENIZER_DIR.format(dataset=args.dataset, tokenizer=args.tokenizer)
    if cfg["tokenizer"]["init"]:  # import the original's checkpoint instead of training
        from .interop.stage import import_stage

        import_stage(args.tokenizer, args.dataset, cfg["tokenizer"]["init"], out, args.params_dir)
        return
    from .training.loop import train

    _print_summary(train(cfg, paths.DATA_DIR.format(dataset=args.dataset), out, seed=0, progress=progress))


def _train(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config

    cfg = config.resolve(args.dataset, args.model, args.params_dir, overrides)
    out = paths.RUN_DIR.format(**_pair(args))
    if cfg["model"]["init"]:  # import the original's checkpoint (tokenizer included) instead of training
        from .interop.stage import import_stage

        import_stage(args.model, args.dataset, cfg["model"]["init"], out, args.params_dir)
        return
    from .training.loop import train

    tokenizer = cfg["model"].get("tokenizer")
    summary = train(cfg, paths.DATA_DIR.format(dataset=args.dataset), out, args.seed, progress=progress,
                    tokenizer_checkpoint=tokenizer and paths.TOKENIZER_CHECKPOINT.format(
                        dataset=args.dataset, tokenizer=tokenizer))
    _print_summary(summary)


def _eval_seg(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config
    from .evaluation.segmentation import run_eval_seg

    cfg, fmt = config.resolve(args.dataset, args.model, args.params_dir, overrides), _pair(args)
    result = run_eval_seg(cfg["eval"], cfg["runtime"], paths.CHECKPOINT.format(**fmt),
                          paths.DATA_DIR.format(dataset=args.dataset), paths.SEG_METRICS.format(**fmt), progress,
                          run=fmt, tracking=cfg["tracking"])
    print({k: result[k] for k in ("FG-ARI", "mIoU", "mBO", "num_videos")})


def _eval_decode(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    """``eval-recon`` and ``eval-comp-gen``: decode slots into videos."""
    from . import config
    from .evaluation.reconstruction import run_eval_comp_gen, run_eval_recon

    cfg, fmt = config.resolve(args.dataset, args.model, args.params_dir, overrides), _pair(args)
    recon = args.command == "eval-recon"
    result = (run_eval_recon if recon else run_eval_comp_gen)(
        cfg["eval"], cfg["runtime"], paths.CHECKPOINT.format(**fmt), paths.DATA_DIR.format(dataset=args.dataset),
        (paths.RECON_METRICS if recon else paths.COMP_GEN_RECORD).format(**fmt), paths.VIDEO_ROOT.format(**fmt),
        progress, run=fmt, tracking=cfg["tracking"])
    print({k: result[k] for k in ("MSE", "PSNR", "SSIM", "LPIPS", "num_videos") if k in result})


def _fvd(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config
    from .evaluation.fvd import run_fvd

    cfg, fmt = config.resolve(args.dataset, args.model, args.params_dir, overrides), _pair(args)
    record = (paths.RECON_METRICS if args.kind == "recon" else paths.COMP_GEN_RECORD).format(**fmt)
    result = run_fvd(cfg["fvd"], args.kind, record, paths.FVD_METRICS.format(kind=args.kind, **fmt), progress,
                     tracking=cfg["tracking"])
    print({"FVD": result["FVD"], "kind": args.kind})


def _report(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    import time

    from .report import build_report

    start = time.perf_counter()
    built = build_report(args.dataset, args.params_dir, args.videos, progress)
    print(f"wrote {built['report']} ({built['bytes'] / 1e6:.2f} MB; "
          f"{built['runs']} runs, {built['videos']} videos) in {time.perf_counter() - start:.1f} s")


def _params(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    import yaml

    from . import config
    from .tracking import redact_config

    if args.model:
        resolved = config.resolve(args.dataset, args.model, args.params_dir, overrides)
    elif args.tokenizer:
        resolved = config.resolve_tokenizer(args.dataset, args.tokenizer, args.params_dir, overrides)
    else:
        resolved = {"dataset": config.resolve_dataset(args.dataset, args.params_dir, overrides)}
    print(yaml.safe_dump(redact_config(resolved), sort_keys=False), end="")


def _import_original(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from .interop.original import import_original

    origin = import_original(args.model, args.dataset, args.src, args.out, args.params_dir)
    print(f"wrote {args.out}: {origin['tensors']} in {origin['import_time_s']} s")


def _dvc_yaml(args: argparse.Namespace, overrides: dict, progress: bool) -> int:
    from .workflow_dvc import render_dvc_yaml

    if args.profile and os.environ.get(paths.PROFILE_ENV) != args.profile:  # output paths follow the profile
        env = {**os.environ, paths.PROFILE_ENV: args.profile}
        again = ["dvc-yaml", "--params-dir", str(args.params_dir), "--profile", args.profile,
                 *(["--check"] * args.check)]
        return subprocess.run([sys.executable, "-m", "slotbench", *again], env=env).returncode
    text, target = render_dvc_yaml(args.params_dir), Path(paths.ROOT) / "dvc.yaml"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print("dvc.yaml is out of date: run `slotbench dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    from .io import write_text

    write_text(target, text)
    return 0


def _print_summary(summary: dict) -> None:
    """The end of a training stage, printed once (by rank 0 under torchrun)."""
    from .training.distributed import from_environment

    if from_environment().is_main:
        print(f"trained {summary['steps']} steps in {summary['wall_time_s']} s; validation: {summary['validation']}")


def _table(args: argparse.Namespace, overrides: dict, progress: bool) -> None:
    from . import config
    from .table import dataset_table, model_table, run_files, write_table

    config.resolve_dataset(args.dataset, args.params_dir)  # a clear error for an unknown dataset
    grid = config.load_grid(args.params_dir)
    if args.model:
        runs = {s: {"dataset": args.dataset, "model": args.model, "seed": s} for s in grid["seeds"]}
        frame = model_table(args.dataset, args.model, {s: run_files(fmt) for s, fmt in runs.items()})
        out = paths.MODEL_TABLE.format(dataset=args.dataset, model=args.model)
    else:
        frame = dataset_table([paths.MODEL_TABLE.format(dataset=args.dataset, model=m) for m in grid["models"]])
        out = paths.DATASET_TABLE.format(dataset=args.dataset)
    write_table(frame, out)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


#: What each subcommand runs: handler(args, overrides from --set, progress bars on) -> exit status or None.
HANDLERS = {"export": _export, "tokenizer": _tokenizer, "train": _train, "eval-seg": _eval_seg,
            "eval-recon": _eval_decode, "eval-comp-gen": _eval_decode, "fvd": _fvd, "table": _table,
            "report": _report, "params": _params, "import-original": _import_original, "dvc-yaml": _dvc_yaml}


if __name__ == "__main__":
    sys.exit(main())
