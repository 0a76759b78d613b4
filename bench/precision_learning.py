"""Same learning in bf16: the learning benchmark twice, float32 and with ``train.cpu_amp: bf16``.

Runs ``bench/learning_shapes.py`` (the real stages on the embedded ``shapes`` data, resumable) for the
given models once in float32 and once under CPU bf16 autocast (``--set train.cpu_amp=bf16``, the
tokenizers too), each in its own scratch root (``bench/scratch/precision_learning/{fp32,bf16}``), and
writes side by side what each learned: the validation curves (loss, FG-ARI, mBO on 3-frame clips at
every validation step), the test FG-ARI / mIoU / mBO / MSE on the full videos, the tokenizers' last
validation, steps and CPU hours. Seeds, data and schedule are the same; only the arithmetic differs.

``--parallel`` runs the two precisions as two processes side by side (one core each).

Writes ``bench/results/precision_learning.json`` and ``.md`` (each run's own results under
``bench/results/precision_learning/{fp32,bf16}/``). Usage: ``python bench/precision_learning.py
[--models savi steve slotdiffusion] [--steps 3000] [--tokenizer-steps 600] [--val-every 250]
[--parallel] [--report-only]``
"""

from __future__ import annotations

import argparse
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


def run(args) -> None:
    """Both precisions through ``learning_shapes.py`` (resumable: a finished stage is skipped)."""
    procs = []
    for name, extra in PRECISIONS.items():
        cmd = [sys.executable, str(ROOT / "bench" / "learning_shapes.py"), "--models", *args.models,
               "--steps", str(args.steps), "--tokenizer-steps", str(args.tokenizer_steps),
               "--val-every", str(args.val_every), "--threads", str(args.threads),
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


def compare(models: list[str]) -> dict:
    results = {name: json.loads((RESULTS / "precision_learning" / name / "learning_shapes.json").read_text())
               for name in PRECISIONS}
    out = {"benchmark": "same learning in float32 and with bf16 autocast (bench/learning_shapes.py twice)",
           "date": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "models": {}}
    for model in models:
        if not all(model in r for r in results.values()):
            continue
        test = {name: {k: r[model][k] for k in ("fg_ari", "miou", "mbo", "mse", "psnr", "steps", "cpu_hours")}
                for name, r in results.items()}
        for name, r in results.items():
            if "tokenizer" in r[model]:
                test[name]["tokenizer_validation"] = r[model]["tokenizer"]["validation"]
        fp32, bf16 = _curves("fp32", model), _curves("bf16", model)
        val = []
        if fp32 is not None and bf16 is not None:
            for step in sorted(set(fp32.index) & set(bf16.index)):
                val.append({"step": int(step), **{f"{c}_{name}": round(float(frame.loc[step, c]), 4)
                                                  for c in ("loss", "fg_ari", "mbo")
                                                  for name, frame in (("fp32", fp32), ("bf16", bf16))}})
        out["models"][model] = {"test": test, "validation": val}
    return out


def markdown(result: dict) -> str:
    lines = ["# Same learning in float32 and with bf16 autocast", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Written {result['date']} "
             "by `bench/precision_learning.py`: `bench/learning_shapes.py` twice on the embedded `shapes` data, "
             "same seeds, data and schedule, float32 against `train.cpu_amp: bf16` (tokenizers included).", ""]
    for model, rec in result["models"].items():
        lines += [f"## {model}", "", "Test split, full 24-frame videos, x100 (MSE on 0-255 pixels):", "",
                  "| precision | steps | FG-ARI | mIoU | mBO | MSE | PSNR | CPU h |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, t in rec["test"].items():
            lines.append(f"| {name} | {t['steps']} | {t['fg_ari']:.1f} | {t['miou']:.1f} | {t['mbo']:.1f} | "
                         f"{t['mse']:.1f} | {t['psnr']:.2f} | {t['cpu_hours']:.2f} |")
        if rec["validation"]:
            lines += ["", "Validation on 3-frame clips (loss; FG-ARI and mBO x100), float32 / bf16:", "",
                      "| step | loss | FG-ARI | mBO |", "|---|---|---|---|"]
            for v in rec["validation"]:
                lines.append(f"| {v['step']} | {v['loss_fp32']:.4f} / {v['loss_bf16']:.4f} | "
                             f"{v['fg_ari_fp32']:.1f} / {v['fg_ari_bf16']:.1f} | "
                             f"{v['mbo_fp32']:.1f} / {v['mbo_bf16']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["savi"], choices=MODELS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--tokenizer-steps", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", action="store_true", help="the two precisions side by side")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    run(args)
    result = compare(args.models)
    (RESULTS / "precision_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "precision_learning.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
