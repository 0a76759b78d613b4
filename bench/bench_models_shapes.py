"""STEVE and SlotDiffusion on the embedded `shapes` data, next to SAVi (a benchmark, not a test).

Runs the real stages (``slotbench export / tokenizer / train / eval-seg / eval-recon``) of each
model in its own scratch project ``bench/scratch/models_shapes/<model>/`` whose params are a copy
of ``params/`` (the `shapes` profile as shipped unless ``--steps`` / ``--tokenizer-steps`` change
its run lengths; ``--threads`` sets ``runtime.threads``): STEVE after its dVAE, SlotDiffusion
after its VQ-VAE (SAVi needs no tokenizer). Each model's numbers go to
``<scratch>/<model>/record.json``; then every record found, and SAVi's row from
``bench/results/savi_shapes.json`` (``bench/bench_savi_shapes.py``, a longer run) when present,
are collected into ``bench/results/models_shapes.json`` / ``.md``: FG-ARI, mIoU, mBO (x100),
MSE, PSNR, SSIM per model and the wall time of every stage.

The chains of different models are independent, so two can run side by side as two processes
(``--model steve`` and ``--model slotdiffusion``); whichever finishes last writes the full
table, and ``--report-only`` rewrites it from the records.

Usage: ``python bench/bench_models_shapes.py --model steve slotdiffusion [--threads 1]
[--steps N] [--tokenizer-steps N] [--evaluate-only | --report-only]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "bench" / "scratch" / "models_shapes"
TOKENIZER = {"savi": None, "steve": "dvae", "slotdiffusion": "vqvae"}
LABEL = {"savi": "SAVi", "steve": "STEVE", "slotdiffusion": "SlotDiffusion", "savi_long": "SAVi (savi_shapes.json)"}


def _code(scratch: Path, rev: str | None) -> dict:
    """Which slotbench the stages run: the working tree (``rev`` None), or ``src/`` and
    ``params/`` of the commit ``rev`` extracted with ``git archive`` into ``<scratch>/code/`` and
    put first on ``PYTHONPATH``, so that edits made to the working tree while a long run goes
    cannot change the code or the parameter schema under it."""
    head = subprocess.run(["git", "rev-parse", rev or "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    if rev is None:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "params"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.splitlines()
        return {"src": None, "params": ROOT / "params",
                "code": f"working tree on {head[:10]}" + (f" ({len(dirty)} changed files in src/ and params/)" if dirty else "")}
    target = scratch / "code"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", head, "src", "params"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return {"src": target / "src", "params": target / "params", "code": f"commit {head[:10]} (git archive of src/, params/)"}


def _env(code: dict) -> dict:
    env = dict(os.environ)
    if code["src"] is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code["src"]), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _stage(scratch: Path, log, times: dict, name: str, *args: str, env: dict | None = None) -> None:
    """Run one ``slotbench`` stage in ``scratch``; its wall time (s) goes to ``times[name]`` and
    ``<scratch>/stage_times.json``."""
    start = time.perf_counter()
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] slotbench {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "slotbench", *args, "--no-progress"], cwd=scratch, check=True,
                   stdout=log, stderr=subprocess.STDOUT, env=env)
    times[name] = round(time.perf_counter() - start, 1)
    (scratch / "stage_times.json").write_text(json.dumps(times, indent=2) + "\n")


def _edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _prepare_params(scratch: Path, model: str, dataset: str, args, source: Path) -> dict:
    """Copy ``source`` (a ``params/`` folder) into the scratch project and apply the overrides;
    returns them."""
    shutil.rmtree(scratch / "params", ignore_errors=True)
    shutil.copytree(source, scratch / "params")
    overrides: dict = {}
    profile_name = yaml.safe_load((scratch / "params" / "datasets" / f"{dataset}.yaml").read_text())["profile"]
    profile_file = scratch / "params" / "profiles" / f"{profile_name}.yaml"
    if args.steps:
        def edit(p):
            p["train"].update(max_steps=args.steps, val_every=min(p["train"]["val_every"], args.steps),
                              checkpoint_every=min(p["train"]["checkpoint_every"], args.steps))
        _edit_yaml(profile_file, edit)
        overrides["train.max_steps"] = args.steps
    tokenizer = TOKENIZER[model]
    if args.tokenizer_steps and tokenizer:
        def edit(p):
            t = p["per_tokenizer"][tokenizer]["train"]
            t.update(max_steps=args.tokenizer_steps, val_every=min(t["val_every"], args.tokenizer_steps),
                     checkpoint_every=min(t["checkpoint_every"], args.tokenizer_steps))
        _edit_yaml(profile_file, edit)
        overrides[f"{tokenizer}.train.max_steps"] = args.tokenizer_steps

    def edit_defaults(d):
        d["grid"].update(datasets=[dataset], models=[model], seeds=[0])
        if args.threads:
            d["runtime"]["threads"] = args.threads
        if args.eval_videos:
            d["eval"]["num_videos"] = args.eval_videos
    _edit_yaml(scratch / "params" / "defaults.yaml", edit_defaults)
    if args.threads:
        overrides["runtime.threads"] = args.threads
    if args.eval_videos:
        overrides["eval.num_videos"] = args.eval_videos
    return overrides


def run_model(model: str, args) -> dict:
    """The stages of one model in its scratch project; writes and returns its record."""
    scratch = args.scratch / model
    if not (args.evaluate_only or args.report_only):
        shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    code = _code(scratch, args.rev)
    env = _env(code)
    overrides = _prepare_params(scratch, model, args.dataset, args, code["params"])
    tokenizer = TOKENIZER[model]
    ds = args.dataset
    run = scratch / "results" / ds / model / "seed0"
    record_file = scratch / "record.json"
    times_file = scratch / "stage_times.json"  # kept after every stage, so that --evaluate-only keeps the earlier ones
    times = json.loads(times_file.read_text()) if args.evaluate_only and times_file.is_file() else {}
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(scratch / "stages.log", "a") as log:
        if not args.evaluate_only:
            _stage(scratch, log, times, "export", "export", "--dataset", ds, env=env)
            if tokenizer:
                _stage(scratch, log, times, "tokenizer", "tokenizer", "--dataset", ds, "--tokenizer", tokenizer, env=env)
            _stage(scratch, log, times, "train", "train", "--dataset", ds, "--model", model, "--seed", "0", env=env)
        _stage(scratch, log, times, "eval_seg", "eval-seg", "--dataset", ds, "--model", model, "--seed", "0", env=env)
        _stage(scratch, log, times, "eval_recon", "eval-recon", "--dataset", ds, "--model", model, "--seed", "0", env=env)
    resolved = yaml.safe_load(subprocess.run(
        [sys.executable, "-m", "slotbench", "params", "--dataset", ds, "--model", model],
        cwd=scratch, check=True, capture_output=True, text=True, env=env).stdout)
    seg = json.loads((run / "seg.json").read_text())
    recon = json.loads((run / "recon.json").read_text())
    train = json.loads((run / "train.json").read_text())
    record = {
        "model": model,
        "tokenizer": tokenizer,
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "overrides": overrides,
        "evaluated_again": bool(args.evaluate_only),
        "code": code["code"],
        "profile_as_shipped": not any(k.endswith("max_steps") for k in overrides),
        "train_steps": train["steps"], "batch_size": resolved["train"]["batch_size"],
        "train_wall_s": train["wall_time_s"], "clips_per_s": train["clips_per_s"],
        "train_loss": train["train_loss"], "validation": train["validation"],
        "FG-ARI": seg["FG-ARI"], "mIoU": seg["mIoU"], "mBO": seg["mBO"], "num_videos": seg["num_videos"],
        "MSE": recon["MSE"], "PSNR": recon["PSNR"], "SSIM": recon["SSIM"], "LPIPS": recon["LPIPS"],
        "recon_decoding": recon["decoding"], "recon_frames": recon["num_frames_total"],
        "stage_wall_s": times,
        "scratch": os.path.relpath(scratch, ROOT),
    }
    if tokenizer:
        tok = json.loads((scratch / "results" / ds / tokenizer / "train.json").read_text())
        record["tokenizer_run"] = {"steps": tok["steps"], "wall_s": tok["wall_time_s"], "validation": tok["validation"],
                                   "train_loss": tok["train_loss"],
                                   **({"perceptual_loss": tok["perceptual_loss"]} if "perceptual_loss" in tok else {})}
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("model", "FG-ARI", "mIoU", "mBO", "MSE", "PSNR", "SSIM", "stage_wall_s")}),
          flush=True)
    return record


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _savi_params_differences(dataset: str) -> list[str]:
    """Keys of SAVi's `shapes` profile section where the params of the savi_shapes scratch run
    (when its folder is still there) differ from the current ``params/``."""
    old_file = ROOT / "bench" / "scratch" / f"savi_{dataset}" / "params" / "profiles" / f"{dataset}.yaml"
    if not old_file.is_file():
        return []
    old = _flat(yaml.safe_load(old_file.read_text())["per_model"]["savi"])
    new = _flat(yaml.safe_load((ROOT / "params" / "profiles" / f"{dataset}.yaml").read_text())["per_model"]["savi"])
    return [f"`{k}` {old.get(k)} (now {new.get(k)})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _savi_from_bench(dataset: str) -> dict | None:
    """SAVi's row from ``bench/bench_savi_shapes.py``'s json, with where it came from."""
    path = RESULTS / f"savi_{dataset}.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    diffs = _savi_params_differences(dataset)
    return {"model": "savi", "tokenizer": None, "train_steps": r["steps"], "batch_size": r["batch_size"],
            "FG-ARI": r["FG-ARI"], "mIoU": r["mIoU"], "mBO": r["mBO"], "num_videos": r["num_videos"],
            "MSE": None, "PSNR": None, "SSIM": None, "LPIPS": None,
            "train_wall_s": r["train_wall_s"], "clips_per_s": r["clips_per_s"],
            "stage_wall_s": {"train": r["train_wall_s"], **({"eval_seg": r["eval_seg_s"]} if "eval_seg_s" in r else {})},
            "source": f"{path.relative_to(ROOT)} (bench/bench_savi_shapes.py, {r['steps']} steps, run of {r['date']}; "
                      f"that script evaluates segmentation only, so no reconstruction numbers"
                      + (f"; its params differ from the current profile: {', '.join(diffs)}" if diffs else "") + ")"}


def _fmt(v, digits=2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def report(dataset: str, scratch: Path = SCRATCH, out: Path = RESULTS) -> dict:
    records = {}
    for model in ("savi", "steve", "slotdiffusion"):
        f = scratch / model / "record.json"
        if f.is_file():
            records[model] = {**json.loads(f.read_text()),
                              "source": f"{os.path.relpath(scratch / model, ROOT)} (this script, run of {json.loads(f.read_text())['finished']})"}
    savi = _savi_from_bench(dataset)
    rows = {**({"savi_long": savi} if savi else {}),
            **{m: records[m] for m in ("savi", "steve", "slotdiffusion") if m in records}}
    result = {
        "benchmark": "SAVi, STEVE and SlotDiffusion on the embedded shapes data (shapes profile)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "dataset": dataset,
        "models": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"models_{dataset}.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [f"# SAVi, STEVE and SlotDiffusion on `{dataset}`", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {torch.__version__} (CPU). "
             f"Written {result['date']} by `bench/bench_models_shapes.py`.", "",
             "Segmentation (x100) on every test video at full length; reconstruction MSE is the per-frame sum of "
             "squared errors over 3x32x32 values in [0, 1] (the reference's definition), PSNR in dB. "
             "STEVE decodes greedily with the KV cache, SlotDiffusion with DPM-Solver++ (20 U-Net evaluations, "
             "one seeded noise per batch of 4 videos).", "",
             "| model | tokenizer | train steps | FG-ARI | mIoU | mBO | MSE | PSNR | SSIM | test videos |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        tok = r.get("tokenizer_run")
        tok_text = f"{r['tokenizer']} ({tok['steps']} steps)" if tok else "none"
        lines.append(f"| {LABEL[m]} | {tok_text} | {r['train_steps']} | {_fmt(r['FG-ARI'])} | {_fmt(r['mIoU'])} | "
                     f"{_fmt(r['mBO'])} | {_fmt(r['MSE'], 1)} | {_fmt(r['PSNR'])} | {_fmt(r['SSIM'], 3)} | "
                     f"{r['num_videos']} |")
    lines += ["", "Wall time per stage (minutes; `train` and `tokenizer` are the training loops' own wall time, "
              "the other stages the whole command):", "",
              "| model | export | tokenizer | train | clips/s | eval-seg | eval-recon | threads | load (1 min avg, start / end) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        st = r.get("stage_wall_s", {})
        tok = r.get("tokenizer_run")
        mins = lambda s: "" if s is None else f"{s / 60:.1f}"
        load = r.get("load_avg_1min")
        load_text = f"{load['start']} / {load['end']}" if load else ""
        threads = r.get("overrides", {}).get("runtime.threads", "")
        lines.append(f"| {LABEL[m]} | {mins(st.get('export'))} | {mins(tok['wall_s']) if tok else ''} | "
                     f"{mins(r['train_wall_s'])} | {r['clips_per_s']} | {mins(st.get('eval_seg'))} | "
                     f"{mins(st.get('eval_recon'))} | {threads} | {load_text} |")
    lines += ["", "Where each row comes from:", ""]
    for m, r in rows.items():
        notes = []
        if isinstance(r.get("code"), dict):  # training and evaluation ran on different code (filled in by hand)
            notes.append("code: " + "; ".join(f"{k}: {v}" for k, v in r["code"].items()))
        elif r.get("code"):
            notes.append(f"code: {r['code']}" + (" (evaluation run again)" if r.get("evaluated_again") else ""))
        if r.get("overrides"):
            notes.append("overrides: " + ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items()))
        if "profile_as_shipped" in r:
            notes.append("run lengths of the profile as shipped" if r["profile_as_shipped"]
                         else "**run lengths reduced from the shipped profile**")
        if r.get("tokenizer_run"):
            tv = r["tokenizer_run"]["validation"]
            notes.append(f"{r['tokenizer']} validation: " + ", ".join(f"{k} {v:.4g}" for k, v in tv.items()))
        if r.get("validation"):
            notes.append(f"validation at step {r['train_steps']}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in r["validation"].items() if not k.endswith("num_videos")))
        lines.append(f"- {LABEL[m]}: {r['source']}" + ("; " + "; ".join(notes) if notes else "") + ".")
    (out / f"models_{dataset}.md").write_text("\n".join(lines) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["steve", "slotdiffusion"], choices=list(TOKENIZER))
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.threads)")
    parser.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the profile's)")
    parser.add_argument("--tokenizer-steps", type=int, default=None, help="the tokenizer's train.max_steps")
    parser.add_argument("--eval-videos", type=int, default=None, help="eval.num_videos (default: every test video)")
    parser.add_argument("--evaluate-only", action="store_true", help="reuse the trained scratch runs: evaluate, report")
    parser.add_argument("--report-only", action="store_true", help="only collect the records into the table")
    parser.add_argument("--rev", default=None, help="run the stages on src/ and params/ of this git commit "
                        "(git archive into <scratch>/<model>/code/) instead of the working tree")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="scratch root (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the json/md go (default: %(default)s)")
    args = parser.parse_args()
    args.scratch, args.out = args.scratch.resolve(), args.out.resolve()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("SLOTBENCH_OFFLINE", "1")  # LPIPS stays empty (no weights here) instead of downloading
    if not args.report_only:
        for model in args.model:
            run_model(model, args)
    report(args.dataset, args.scratch, args.out)
    print((args.out / f"models_{args.dataset}.md").read_text())


if __name__ == "__main__":
    main()
