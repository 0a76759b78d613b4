"""The ``slotbench`` command: one subcommand per pipeline stage.

Snakemake rules and DVC stages are thin calls of these subcommands, run from the project root.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import paths

STAGES_HELP = """\
stages (each reads params/ and writes the files named):
  export      generate or convert a dataset            -> data/{dataset}/meta.json + split arrays
  tokenizer   train a dVAE / VQ-VAE on single frames   -> results/{dataset}/{tokenizer}/model.pt, train.json
  train       train a slot model (resumes by itself)   -> results/{dataset}/{model}/seed{S}/model.pt, train.json
              (STEVE and SlotDiffusion read their tokenizer's model.pt)
  eval-seg    FG-ARI / mIoU / mBO on full videos        -> results/{dataset}/{model}/seed{S}/seg.json
  eval-recon  decode slots back to videos: MSE, PSNR,   -> .../recon.json, .../eval/{gt,recon}_vids/
              SSIM, LPIPS; MP4s to watch                   .../vis/{idx}_recon.mp4
  eval-comp-gen  decode slots composed across videos    -> .../comp_gen.json, .../eval/comp_vids/
                                                           .../vis/{idx}_comp.mp4
  fvd         FVD of the reconstructed / composed videos -> .../fvd_recon.json, .../fvd_comp.json
              (the eval-* stages and fvd also log their metrics to the training's MLflow run)
  table       collect metrics into CSV tables          -> results/{dataset}/{model}/table.csv,
                                                           results/{dataset}/table.csv
  report      HTML page: table, videos, slots, curves  -> results/{dataset}/report.html, .../seed{S}/curves/*.csv
utilities:
  import-original  convert an original SlotDiffusion / nerv checkpoint into model.pt (or set `init` in params)
  params      print the resolved parameters of a (dataset, model) pair
  dvc-yaml    write dvc.yaml from params/ (the same stages as the Snakefile)
"""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _add_common(p: argparse.ArgumentParser, model: bool = False, seed: bool = False, settable: bool = True) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (a file in params/datasets/)")
    if model:
        p.add_argument("--model", required=True, help="model name (a file in params/models/)")
    if seed:
        p.add_argument("--seed", type=int, required=True, help="training seed (model init and data order)")
    p.add_argument("--params-dir", default=paths.PARAMS_DIR, help="parameter folder (default: %(default)s)")
    if settable:
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="override one parameter for this stage only, e.g. --set train.max_steps=100 "
                            "(repeatable; the value is read as YAML; it wins over every params file)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slotbench", description=__doc__.splitlines()[0],
                                     epilog=STAGES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("export", help="write data/{dataset}/ in the storage format")
    _add_common(p)
    p = sub.add_parser("tokenizer", help="train the dVAE (STEVE) or VQ-VAE (SlotDiffusion) tokenizer")
    _add_common(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer name (a file in params/tokenizers/)")
    p = sub.add_parser("train", help="train a model; resumes from results/.../_work/ after an interruption")
    _add_common(p, model=True, seed=True)
    p = sub.add_parser("eval-seg", help="segmentation metrics of a trained model -> seg.json")
    _add_common(p, model=True, seed=True)
    p = sub.add_parser("eval-recon", help="reconstruction metrics and videos of a trained model -> recon.json")
    _add_common(p, model=True, seed=True)
    p = sub.add_parser("eval-comp-gen", help="videos from slots composed across a batch -> comp_gen.json")
    _add_common(p, model=True, seed=True)
    p = sub.add_parser("fvd", help="FVD of reconstructed (--kind recon) or composed (--kind comp) videos")
    _add_common(p, model=True, seed=True)
    p.add_argument("--kind", required=True, choices=["recon", "comp"])
    p = sub.add_parser("table", help="CSV table of one model (all seeds) or of a dataset (all models)")
    _add_common(p, settable=False)
    p.add_argument("--model", help="one model's table; without it, the dataset's table of every grid model")
    p = sub.add_parser("report", help="HTML report of a dataset: table, videos, slots, curves, versions")
    _add_common(p, settable=False)
    p.add_argument("--videos", type=_positive_int, default=3, help="evaluation videos shown (default: %(default)s)")
    p = sub.add_parser("params", help="print the resolved parameters (YAML)")
    _add_common(p)
    p.add_argument("--model", help="resolve a (dataset, model) pair; without it, the dataset section only")
    p.add_argument("--tokenizer", help="resolve a (dataset, tokenizer) pair")
    p = sub.add_parser("import-original", help="convert a checkpoint of the original SlotDiffusion code -> model.pt")
    p.add_argument("--model", required=True, choices=["savi", "steve", "slotdiffusion", "vqvae", "dvae"],
                   help="the network the checkpoint holds (STEVE / SlotDiffusion files include their tokenizer)")
    p.add_argument("--dataset", required=True, help="the dataset whose params describe the checkpoint (movi_d, movi_e, "
                   "movi_solid, movi_tex: the reference configurations)")
    p.add_argument("--params-dir", default=paths.PARAMS_DIR, help="parameter folder (default: %(default)s)")
    p.add_argument("src", help="the original checkpoint: a nerv training checkpoint or a bare state dict")
    p.add_argument("out", help="the slotbench checkpoint to write (the format of the tokenizer / train stages)")
    p = sub.add_parser("dvc-yaml", help="write dvc.yaml for the grid in params/defaults.yaml")
    p.add_argument("--params-dir", default=paths.PARAMS_DIR)
    p.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date instead of writing")
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

    progress = not getattr(args, "no_progress", False)
    overrides = config.parse_overrides(getattr(args, "set", None))  # --set KEY=VALUE
    if args.command == "export":
        from .data.export import export
        from .io import write_record

        ds = config.resolve_dataset(args.dataset, args.params_dir, overrides)
        meta = export(ds, paths.DATA_DIR.format(dataset=args.dataset), progress=progress)
        # the receipt next to the data: the output Snakemake's rule and DVC's stage track (git keeps
        # it, so a clone that pulls the data has it too)
        write_record(paths.EXPORT_RECEIPT.format(dataset=args.dataset), meta)
    elif args.command == "tokenizer":
        from .training.loop import train

        cfg = config.resolve_tokenizer(args.dataset, args.tokenizer, args.params_dir, overrides)
        if cfg["tokenizer"]["init"]:  # import the original's checkpoint instead of training
            from .interop.stage import import_stage

            import_stage(args.tokenizer, args.dataset, cfg["tokenizer"]["init"],
                         paths.TOKENIZER_DIR.format(dataset=args.dataset, tokenizer=args.tokenizer), args.params_dir)
            return 0
        summary = train(cfg, paths.DATA_DIR.format(dataset=args.dataset),
                        paths.TOKENIZER_DIR.format(dataset=args.dataset, tokenizer=args.tokenizer),
                        seed=0, progress=progress)
        _print_summary(summary)
    elif args.command == "train":
        from .training.loop import train

        cfg = config.resolve(args.dataset, args.model, args.params_dir, overrides)
        if cfg["model"]["init"]:  # import the original's checkpoint (tokenizer included) instead of training
            from .interop.stage import import_stage

            import_stage(args.model, args.dataset, cfg["model"]["init"],
                         paths.RUN_DIR.format(dataset=args.dataset, model=args.model, seed=args.seed), args.params_dir)
            return 0
        tokenizer = cfg["model"].get("tokenizer")
        summary = train(cfg, paths.DATA_DIR.format(dataset=args.dataset),
                        paths.RUN_DIR.format(dataset=args.dataset, model=args.model, seed=args.seed),
                        args.seed, progress=progress,
                        tokenizer_checkpoint=tokenizer and paths.TOKENIZER_CHECKPOINT.format(
                            dataset=args.dataset, tokenizer=tokenizer))
        _print_summary(summary)
    elif args.command == "eval-seg":
        from .evaluation.segmentation import run_eval_seg

        cfg = config.resolve(args.dataset, args.model, args.params_dir, overrides)
        fmt = {"dataset": args.dataset, "model": args.model, "seed": args.seed}
        result = run_eval_seg(cfg["eval"], cfg["runtime"], paths.CHECKPOINT.format(**fmt),
                              paths.DATA_DIR.format(dataset=args.dataset), paths.SEG_METRICS.format(**fmt), progress,
                              run=fmt, tracking=cfg["tracking"])
        print({k: result[k] for k in ("FG-ARI", "mIoU", "mBO", "num_videos")})
    elif args.command in ("eval-recon", "eval-comp-gen"):
        from .evaluation.reconstruction import run_eval_comp_gen, run_eval_recon

        cfg = config.resolve(args.dataset, args.model, args.params_dir, overrides)
        fmt = {"dataset": args.dataset, "model": args.model, "seed": args.seed}
        recon = args.command == "eval-recon"
        result = (run_eval_recon if recon else run_eval_comp_gen)(
            cfg["eval"], cfg["runtime"], paths.CHECKPOINT.format(**fmt), paths.DATA_DIR.format(dataset=args.dataset),
            (paths.RECON_METRICS if recon else paths.COMP_GEN_RECORD).format(**fmt), paths.VIDEO_ROOT.format(**fmt),
            progress, run=fmt, tracking=cfg["tracking"])
        print({k: result[k] for k in ("MSE", "PSNR", "SSIM", "LPIPS", "num_videos") if k in result})
    elif args.command == "fvd":
        from .evaluation.fvd import run_fvd

        cfg = config.resolve(args.dataset, args.model, args.params_dir, overrides)
        fmt = {"dataset": args.dataset, "model": args.model, "seed": args.seed}
        record = (paths.RECON_METRICS if args.kind == "recon" else paths.COMP_GEN_RECORD).format(**fmt)
        result = run_fvd(cfg["fvd"], args.kind, record, paths.FVD_METRICS.format(kind=args.kind, **fmt), progress,
                         tracking=cfg["tracking"])
        print({"FVD": result["FVD"], "kind": args.kind})
    elif args.command == "table":
        _table(args)
    elif args.command == "report":
        import time

        from .report import build_report

        start = time.perf_counter()
        built = build_report(args.dataset, args.params_dir, args.videos, progress)
        print(f"wrote {built['report']} ({built['bytes'] / 1e6:.2f} MB; "
              f"{built['runs']} runs, {built['videos']} videos) in {time.perf_counter() - start:.1f} s")
    elif args.command == "params":
        import yaml

        if args.model:
            resolved = config.resolve(args.dataset, args.model, args.params_dir, overrides)
        elif args.tokenizer:
            resolved = config.resolve_tokenizer(args.dataset, args.tokenizer, args.params_dir, overrides)
        else:
            resolved = {"dataset": config.resolve_dataset(args.dataset, args.params_dir, overrides)}
        from .tracking import redact_config

        print(yaml.safe_dump(redact_config(resolved), sort_keys=False), end="")
    elif args.command == "import-original":
        from .interop.original import import_original

        origin = import_original(args.model, args.dataset, args.src, args.out, args.params_dir)
        print(f"wrote {args.out}: {origin['tensors']} in {origin['import_time_s']} s")
    elif args.command == "dvc-yaml":
        from .workflow_dvc import render_dvc_yaml

        text, target = render_dvc_yaml(args.params_dir), Path("dvc.yaml")
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


def _table(args: argparse.Namespace) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
