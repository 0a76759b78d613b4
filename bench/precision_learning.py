"""Same learning in bf16: the learning benchmark twice, float32 and with ``train.cpu_amp: bf16``.

Runs ``bench/learning_shapes.py`` (the real stages on the embedded ``shapes`` data, resumable) for the
given models once in float32 and once under CPU bf16 autocast (``--set train.cpu_amp=bf16``, the
tokenizers too), each in its own scratch root (``bench/scratch/precision_learning/{fp32,bf16}``), and
writes side by side what each learned: the validation curves (loss, FG-ARI, mBO on 3-frame clips at
every validation step), the test FG-ARI / mIoU / mBO / MSE on the full videos, the tokenizers' last
validation, steps and CPU hours. Seeds, data and schedule are the same; only the arithmetic differs.

``--parallel`` runs the two precisions as two processes side by side (one core each). ``--seeds 0 1``
adds runs of other training seeds (``{fp32,bf16}_seed1``): the spread between seeds of one precision is
the yardstick for the difference between the precisions.

Writes ``bench/results/precision_learning.json`` and ``.md`` (each run's own results under
``bench/results/precision_learning/{fp32,bf16}/``). Usage: ``python bench/precision_learning.py
[--models savi steve slotdiffusion] [--steps 3000] [--tokenizer-steps 600] [--val-every 250]
[--parallel] [--report-only]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "bench" / "scratch" / "precision_learning"
RESULTS = ROOT / "bench" / "results"
PRECISIONS = {"fp32": [], "bf16": ["--set", "train.cpu_amp=bf16"]}
MODELS = ("savi", "steve", "slotdiffusion")


def run_name(precision: str, seed: int) -> str:
    return precision if seed == 0 else f"{precision}_seed{seed}"


def run(args) -> None:
    """Both precisions (and seeds) through ``learning_shapes.py`` (resumable: a finished stage is skipped)."""
    procs = []
    for seed, (precision, extra) in itertools.product(args.seeds, PRECISIONS.items()):
        name = run_name(precision, seed)
        cmd = [sys.executable, str(ROOT / "bench" / "learning_shapes.py"), "--models", *args.models,
               "--steps", str(args.steps), "--tokenizer-steps", str(args.tokenizer_steps),
               "--val-every", str(args.val_every), "--threads", str(args.threads), "--seed", str(seed),
               "--scratch", str(SCRATCH / name), "--out", str(RESULTS / "precision_learning" / name), *extra]
        if args.report_only:
            cmd.append("--report-only")
        procs.append(subprocess.Popen(cmd))
        if not args.parallel:
            procs[-1].wait()
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(proc.args)} failed (exit {proc.returncode}); re-run to resume")


def _curves(name: str, model: str) -> pd.DataFrame | None:
    path = RESULTS / "precision_learning" / name / "learning_shapes" / f"{model}_val.csv"
    return pd.read_csv(path).set_index("step") if path.is_file() else None


def compare() -> dict:
    """Per model: each run's test scores (and its tokenizer's last validation) and the validation
    curves of every run at the steps they share; every model and seed that has results."""
    def order(path: Path) -> tuple[int, int]:  # seed, then float32 before bf16
        precision, _, seed = path.parent.name.partition("_seed")
        return int(seed or 0), list(PRECISIONS).index(precision)

    paths = sorted((RESULTS / "precision_learning").glob("*/learning_shapes.json"), key=order)
    results = {path.parent.name: json.loads(path.read_text()) for path in paths}
    out = {"benchmark": "same learning in float32 and with bf16 autocast (bench/learning_shapes.py twice)",
           "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "runs": list(results), "models": {}}
    for model in MODELS:
        runs = [name for name, r in results.items() if model in r]
        if not runs:
            continue
        test = {}
        for name in runs:
            r = results[name][model]
            test[name] = {k: r[k] for k in ("fg_ari", "miou", "mbo", "mse", "psnr", "steps", "cpu_hours")}
            if "tokenizer" in r:
                test[name]["tokenizer_validation"] = r["tokenizer"]["validation"]
        curves = {name: frame for name in runs if (frame := _curves(name, model)) is not None}
        steps = sorted(set.intersection(*(set(f.index) for f in curves.values()))) if curves else []
        val = [{"step": int(step), **{f"{c}_{name}": round(float(frame.loc[step, c]), 4)
                                      for name, frame in curves.items() for c in ("loss", "fg_ari", "mbo")}}
               for step in steps]
        out["models"][model] = {"test": test, "validation": val, "curves": list(curves)}
    return out


def markdown(result: dict) -> str:
    lines = ["# Same learning in float32 and with bf16 autocast", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Written {result['date']} "
             "by `bench/precision_learning.py`: `bench/learning_shapes.py` on the embedded `shapes` data, same "
             "data and schedule, float32 against `train.cpu_amp: bf16` (tokenizers included); `_seedN` runs "
             "use another training seed (initialisation, clip order).", ""]
    for model, rec in result["models"].items():
        lines += [f"## {model}", "", "Test split, full 24-frame videos, x100 (MSE on 0-255 pixels):", "",
                  "| run | steps | FG-ARI | mIoU | mBO | MSE | PSNR | CPU h |", "|---|---|---|---|---|---|---|---|"]
        for name, t in rec["test"].items():
            lines.append(f"| {name} | {t['steps']} | {t['fg_ari']:.1f} | {t['miou']:.1f} | {t['mbo']:.1f} | "
                         f"{t['mse']:.1f} | {t['psnr']:.2f} | {t['cpu_hours']:.2f} |")
        if rec["validation"]:
            runs = " / ".join(rec["curves"])
            lines += ["", f"Validation on 3-frame clips (loss; FG-ARI and mBO x100), {runs}:", "",
                      "| step | loss | FG-ARI | mBO |", "|---|---|---|---|"]
            for v in rec["validation"]:
                cells = [" / ".join(f"{v[f'{c}_{name}']:{fmt}}" for name in rec["curves"])
                         for c, fmt in (("loss", ".4f"), ("fg_ari", ".1f"), ("mbo", ".1f"))]
                lines.append(f"| {v['step']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["savi"], choices=MODELS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tokenizer-steps", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (0: the plain runs)")
    parser.add_argument("--parallel", action="store_true", help="the runs side by side, one process each")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    run(args)
    result = compare()
    (RESULTS / "precision_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "precision_learning.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
