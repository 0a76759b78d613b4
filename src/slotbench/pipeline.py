"""The pipeline's stages, each declared once.

A :class:`Stage` says what a stage is called, which ``slotbench`` subcommand runs it and with which
wildcards, which files it reads (as Snakemake tracks them and as DVC does), which params it reads,
what it writes, the source files whose change re-runs it, which ``resources`` entry sizes its jobs,
and its help text. Everything else follows from these declarations:

* the Snakemake rules' inputs, outputs, params, resources, logs and commands
  (``workflow/rules/common.smk``; the rules themselves stay in ``workflow/rules/*.smk``);
* ``dvc.yaml`` (:mod:`slotbench.workflow_dvc`);
* the command line's subcommands, their help and their input checks (:mod:`slotbench.cli`,
  :mod:`slotbench.preflight`);
* what a training checkpoint must share to be resumed (:func:`code_digest`, ``config.stage_params``).

Declarations are data: input functions take a *run* (the stage's wildcards, e.g. ``{"dataset":
"shapes", "model": "savi", "seed": 0}``) and a resolver of parameters (:class:`Configs`, implemented
by ``slotbench.config.RunConfigs``), so this module imports nothing but :mod:`slotbench.paths`.
docs/extending.md says how to add a stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import paths

#: The values a wildcard takes in the command line (``--seed 0``) and in file names.
WILDCARD_HELP = {
    "dataset": "dataset name (a file in params/datasets/)",
    "model": "model name (a file in params/models/)",
    "seed": "training seed (model init and data order)",
    "tokenizer": "tokenizer name (a file in params/tokenizers/)",
    "kind": "which videos: recon (reconstructed) or comp (composed)",
}
#: The FVD's two kinds of generated videos.
FVD_KINDS = ("recon", "comp")


class Configs(Protocol):
    """What input functions may ask about the parameters (``slotbench.config.RunConfigs``)."""

    def model(self, dataset: str, model: str) -> dict:
        """The resolved ``model`` section of a (dataset, model) pair."""

    def tokenizer(self, dataset: str, tokenizer: str) -> dict:
        """The resolved ``tokenizer`` section of a (dataset, tokenizer) pair."""

    @property
    def grid(self) -> dict:
        """``grid`` of params/defaults.yaml: ``datasets``, ``models``, ``seeds``."""


@dataclass(frozen=True)
class Input:
    """One file a stage reads.

    Attributes:
        name: the Snakemake input name (inputs of one name form a list).
        path: the file Snakemake tracks (a receipt or record that the producer writes last).
        dvc: what ``dvc.yaml`` tracks for it (folders included); ``()``: ``path`` itself.
        maker: the stage that writes it, and that stage's run (``None`` for a file the user
            provides, e.g. an original checkpoint to import): the command the preflight names.
        check: the file whose existence the command line checks before the stage starts
            (``""``: ``path``).
    """

    name: str
    path: str
    dvc: tuple[str, ...] = ()
    maker: tuple[str, dict] | None = None
    check: str = ""

    @property
    def dvc_paths(self) -> tuple[str, ...]:
        return self.dvc or (self.path,)

    def make_command(self) -> str:
        """The command line that makes it (its ``maker``'s), e.g. ``slotbench export --dataset shapes``."""
        stage, run = self.maker
        return STAGES[stage].cli(run)


@dataclass(frozen=True)
class Output:
    """One file or folder a stage writes.

    Attributes:
        name: the Snakemake output name.
        pattern: a path pattern of :mod:`slotbench.paths` (wildcards of the stage, plus ``over``).
        dvc: how ``dvc.yaml`` keeps it: ``"out"`` (in DVC's cache), ``"metric"`` (a metrics file
            git keeps), ``"record"`` (an out git keeps) or ``"persist"`` (in the cache, replaced
            by the command itself).
        snakemake: whether Snakemake tracks it (folders are DVC's only; Snakemake tracks the
            record the stage writes after them).
        over: grid lists it is expanded over (``("models", "seeds")``: one per run of the grid).
    """

    name: str
    pattern: str
    dvc: str = "out"
    snakemake: bool = True
    over: tuple[str, ...] = ()


InputFunction = Callable[[dict, Configs], list[Input]]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (module docstring).

    Attributes:
        name: the Snakemake rule, the DVC stage prefix, the log folder and the key of every
            per-stage table (``eval_seg``).
        command: the ``slotbench`` subcommand that runs it (``eval-seg``).
        wildcards: what one job is for, in order; each is a ``--flag`` of the command.
        summary: one line for ``slotbench --help``; description: ``slotbench <command> --help``.
        inputs: the files one job reads (``Input``s), from its run and the parameters.
        outputs: what it writes.
        sections: the params sections (or ``section.key``s) it reads; ``config.stage_keys``
            narrows ``train`` to the keys that change a result.
        sampling: the keys it reads only for a model whose decoder samples (a diffusion decoder).
        code: source globs relative to the package: a change re-runs the stage.
        resources: the ``resources`` entry of params/defaults.yaml that sizes one job (``None``:
            runs on the submitting machine, Snakemake ``localrules``).
        grid: the grid lists the stage collects over (its params in Snakemake).
        settable: whether the command takes ``--set KEY=VALUE``.
    """

    name: str
    command: str
    wildcards: tuple[str, ...]
    summary: str
    description: str
    inputs: InputFunction
    outputs: tuple[Output, ...]
    sections: tuple[str, ...] = ()
    sampling: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    resources: str | None = None
    grid: tuple[str, ...] = ()
    settable: bool = True

    def cli(self, run: dict) -> str:
        """The command line of one job, e.g. ``slotbench train --dataset shapes --model savi --seed 0``."""
        return " ".join(["slotbench", self.command, *(f"--{w} {run[w]}" for w in self.wildcards)])

    def job_id(self, run: dict) -> str:
        """``{name}_{wildcard values}`` (``train_shapes_savi_seed0``): a DVC stage's name."""
        return "_".join([self.name, *(_part(w, run[w]) for w in self.wildcards)])

    def log(self) -> str:
        """The Snakemake log pattern: ``logs/{name}/{dataset}_{model}_seed{seed}.log``."""
        return f"{paths.ROOT}logs/{self.name}/" + "_".join(_part(w, "{" + w + "}") for w in self.wildcards) + ".log"


def _part(wildcard: str, value) -> str:
    return f"seed{value}" if wildcard == "seed" else str(value)


def expand_runs(run: dict, grid: dict, over: tuple[str, ...]) -> list[dict]:
    """``run`` once for every combination of the grid lists ``over`` (``models`` -> ``model``)."""
    runs = [dict(run)]
    for key in over:
        runs = [{**r, key[:-1]: value} for r in runs for value in grid[key]]
    return runs


# --------------------------------------------------------------------------- files between stages


def _data(run: dict) -> Input:
    """The exported dataset: the receipt the export writes last (Snakemake), the folder (DVC)."""
    d = run["dataset"]
    return Input("export", paths.EXPORT_RECEIPT.format(dataset=d), (paths.DATA_DIR.format(dataset=d),),
                 ("export", {"dataset": d}), check=paths.DATA_META.format(dataset=d))


def _pair(run: dict) -> dict:
    return {"dataset": run["dataset"], "model": run["model"], "seed": run["seed"]}


def _checkpoint(run: dict, name: str = "checkpoint") -> Input:
    return Input(name, paths.CHECKPOINT.format(**_pair(run)), maker=("train", _pair(run)))


def _gt_frames(run: dict) -> Input:
    """The ground-truth frames, written by eval-recon before its record."""
    return Input("gt_frames", paths.RECON_METRICS.format(**_pair(run)), (paths.GT_VIDEOS.format(**_pair(run)),),
                 ("eval_recon", _pair(run)))


def _recon_record(run: dict, name: str) -> Input:
    fmt = _pair(run)
    return Input(name, paths.RECON_METRICS.format(**fmt),
                 (paths.RECON_METRICS.format(**fmt), paths.RECON_VIDEOS.format(**fmt)), ("eval_recon", fmt))


def _comp_record(run: dict, name: str) -> Input:
    fmt = _pair(run)
    return Input(name, paths.COMP_GEN_RECORD.format(**fmt),
                 (paths.COMP_GEN_RECORD.format(**fmt), paths.COMP_VIDEOS.format(**fmt)), ("eval_comp_gen", fmt))


def _decoded_videos(run: dict) -> Input:
    """The reconstructed and composed frame folders the report shows: the comp-gen record, written
    last, for Snakemake; both folders for DVC."""
    fmt = _pair(run)
    return Input("comp_frames", paths.COMP_GEN_RECORD.format(**fmt),
                 (paths.RECON_VIDEOS.format(**fmt), paths.COMP_VIDEOS.format(**fmt)), ("eval_comp_gen", fmt))


def _original(path: str) -> list[Input]:
    """An original checkpoint that ``init: {from: original, path}`` imports instead of training."""
    return [Input("init", path)]


# --------------------------------------------------------------------------- input functions


def _export_inputs(run: dict, configs: Configs) -> list[Input]:
    return []


def _tokenizer_inputs(run: dict, configs: Configs) -> list[Input]:
    init = configs.tokenizer(run["dataset"], run["tokenizer"])["init"]
    return _original(init["path"]) if init else [_data(run)]


def _train_inputs(run: dict, configs: Configs) -> list[Input]:
    """The data, plus the trained tokenizer for a two-step model; or only the original checkpoint
    (tokenizer included) that ``init`` imports instead of training."""
    model = configs.model(run["dataset"], run["model"])
    if model["init"]:
        return _original(model["init"]["path"])
    tokenizer = model.get("tokenizer")
    if not tokenizer:
        return [_data(run)]
    tok = {"dataset": run["dataset"], "tokenizer": tokenizer}
    return [_data(run), Input("tokenizer", paths.TOKENIZER_CHECKPOINT.format(**tok), maker=("tokenizer", tok))]


def _eval_inputs(run: dict, configs: Configs) -> list[Input]:
    return [_checkpoint(run), _data(run)]


def _comp_gen_inputs(run: dict, configs: Configs) -> list[Input]:
    return [_checkpoint(run), _data(run), _gt_frames(run)]


def _fvd_inputs(run: dict, configs: Configs) -> list[Input]:
    record = _recon_record(run, "record") if run["kind"] == "recon" else _comp_record(run, "record")
    return [record, _gt_frames(run)]


def _table_model_inputs(run: dict, configs: Configs) -> list[Input]:
    inputs = []
    for r in expand_runs(run, configs.grid, ("seeds",)):
        inputs += [Input("seg", paths.SEG_METRICS.format(**r), maker=("eval_seg", r)),
                   Input("recon", paths.RECON_METRICS.format(**r), maker=("eval_recon", r))]
        inputs += [Input("fvd", paths.FVD_METRICS.format(kind=k, **r), maker=("fvd", {**r, "kind": k}))
                   for k in FVD_KINDS]
    return inputs


def _table_dataset_inputs(run: dict, configs: Configs) -> list[Input]:
    return [Input("tables", paths.MODEL_TABLE.format(**r), maker=("table_model", r))
            for r in expand_runs(run, configs.grid, ("models",))]


def _report_inputs(run: dict, configs: Configs) -> list[Input]:
    d = run["dataset"]
    inputs = [Input("table", paths.DATASET_TABLE.format(dataset=d), maker=("table_dataset", {"dataset": d})),
              _data(run)]
    for r in expand_runs(run, configs.grid, ("models", "seeds")):
        inputs += [_checkpoint(r, "checkpoints"),
                   Input("summaries", paths.TRAIN_SUMMARY.format(**r), maker=("train", r)),
                   _decoded_videos(r)]
    return inputs


# --------------------------------------------------------------------------- source files

#: What the segmentation metrics import (``metrics/__init__.py`` loads the Frechet distance too).
_SEGMENTATION_METRICS = ("metrics/__init__.py", "metrics/segmentation.py", "metrics/frechet.py")
#: The modules the training stages import (``training/loop.py``, ``interop/stage.py`` for ``init``, and
#: LPIPS with ``weights.py`` for a VQ-VAE's perceptual loss); never the FVD or reconstruction metrics.
_TRAINING_CODE = ("io.py", "runtime.py", "weights.py", "checkpoint.py", "tracking.py", "config/*.py",
                  "data/dataset.py", "data/storage.py", "models/*.py", "training/*.py", "evaluation/segmentation.py",
                  *_SEGMENTATION_METRICS, "metrics/lpips.py", "interop/*.py")
#: What reading the exported data imports: the loaders, and the params fingerprint the export is checked against.
_DATA_CODE = ("config/*.py", "data/dataset.py", "data/storage.py")
#: What the evaluation stages import to log their metrics to the training's MLflow run.
_EVAL_TRACKING = ("evaluation/tracking.py", "tracking.py")
_RECON_CODE = ("io.py", "runtime.py", "weights.py", "visualize.py", *_DATA_CODE, "models/*.py", "checkpoint.py",
               "evaluation/reconstruction.py", "evaluation/videos.py", "metrics/*.py", *_EVAL_TRACKING)

RUN = "results/{dataset}/{model}/seed{S}"

# --------------------------------------------------------------------------- the stages

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage(
        name="export", command="export", wildcards=("dataset",),
        summary="generate or convert a dataset -> data/{dataset}/",
        description="""\
Write a dataset in slotbench's storage format (the first stage of the pipeline).

reads:  params/datasets/{dataset}.yaml (source: synthetic generator, TFDS MOVi-D/E, or a
        MOVi-Solid/Tex release folder) and its profile
writes: data/{dataset}/meta.json and one array folder per split (train, validation, test), then
        the receipt data/{dataset}.export.json (what the workflows track)
example: slotbench export --dataset shapes""",
        inputs=_export_inputs,
        # the receipt, not data/{dataset}/: Snakemake deletes a job's output before the job and after
        # a failure; the command replaces data/{dataset}/ only once the new export is complete
        # (slotbench.data.publish), and DVC must not delete it first either (persist)
        outputs=(Output("data", paths.DATA_DIR, "persist", snakemake=False),
                 Output("receipt", paths.EXPORT_RECEIPT, "record")),
        sections=("dataset",),
        code=("io.py", "config/*.py", "data/export.py", "data/publish.py", "data/storage.py",
              "data/subset.py", "data/synthetic.py", "data/movi_*.py"),
        resources="export",
    ),
    Stage(
        name="tokenizer", command="tokenizer", wildcards=("dataset", "tokenizer"),
        summary="train the dVAE (STEVE) or VQ-VAE (SlotDiffusion) on single frames -> model.pt",
        description="""\
Train the frame tokenizer that STEVE (dVAE) or SlotDiffusion (VQ-VAE) decodes into.

reads:  data/{dataset}/, params/tokenizers/{tokenizer}.yaml
writes: results/{dataset}/{tokenizer}/model.pt and train.json (MLflow run in results/mlflow.db)
example: slotbench tokenizer --dataset shapes --tokenizer dvae""",
        inputs=_tokenizer_inputs,
        outputs=(Output("checkpoint", paths.TOKENIZER_CHECKPOINT),
                 Output("summary", paths.TOKENIZER_SUMMARY, "metric")),
        sections=("dataset", "tokenizer", "train"),
        code=_TRAINING_CODE,
        resources="tokenizer",
    ),
    Stage(
        name="train", command="train", wildcards=("dataset", "model", "seed"),
        summary="train a slot model; resumes from results/.../_work/ after an interruption",
        description=f"""\
Train a slot model (SAVi, STEVE or SlotDiffusion); an interrupted run resumes from {RUN}/_work/.

reads:  data/{{dataset}}/, params/models/{{model}}.yaml; STEVE and SlotDiffusion also read their
        tokenizer's results/{{dataset}}/{{tokenizer}}/model.pt
writes: {RUN}/model.pt and train.json; loss, learning rate and validation metrics go to MLflow
        (results/mlflow.db unless tracking.uri says otherwise)
example: slotbench train --dataset shapes --model savi --seed 0""",
        inputs=_train_inputs,
        outputs=(Output("checkpoint", paths.CHECKPOINT), Output("summary", paths.TRAIN_SUMMARY, "metric")),
        sections=("dataset", "model", "train"),
        code=_TRAINING_CODE,
        resources="train",
    ),
    Stage(
        name="eval_seg", command="eval-seg", wildcards=("dataset", "model", "seed"),
        summary="FG-ARI / mIoU / mBO of a trained model on full videos -> seg.json",
        description=f"""\
Segmentation metrics (FG-ARI, mIoU, mBO, in percent) of a trained model on full-length videos.

reads:  {RUN}/model.pt, data/{{dataset}}/ (split eval.split), {RUN}/_work/mlflow_run_id
writes: {RUN}/seg.json; FG-ARI, mIoU and mBO also go to the training's MLflow run (eval/*)
example: slotbench eval-seg --dataset shapes --model savi --seed 0""",
        inputs=_eval_inputs,
        outputs=(Output("seg", paths.SEG_METRICS, "metric"),),
        sections=("eval.split", "eval.num_videos", "eval.batch_size", "eval.chunk_len"),
        code=("io.py", "runtime.py", *_DATA_CODE, "models/*.py", "checkpoint.py", "evaluation/segmentation.py",
              *_SEGMENTATION_METRICS, *_EVAL_TRACKING),
        resources="eval",
    ),
    Stage(
        name="eval_recon", command="eval-recon", wildcards=("dataset", "model", "seed"),
        summary="decode slots back to videos: MSE, PSNR, SSIM, LPIPS; MP4s to watch -> recon.json",
        description=f"""\
Reconstruct the evaluation videos from their slots: MSE, PSNR, SSIM and LPIPS, plus the frames.

reads:  {RUN}/model.pt, data/{{dataset}}/; LPIPS weights (missing -> LPIPS null, with the reason)
writes: {RUN}/recon.json, {RUN}/eval/gt_vids/ and eval/recon_vids/ (PNG frame folders),
        {RUN}/vis/{{idx}}_recon.mp4 for the first eval.vis_videos videos (input, reconstruction,
        segmentation, slots); the metrics also go to the training's MLflow run (eval/*)
example: slotbench eval-recon --dataset shapes --model savi --seed 0""",
        inputs=_eval_inputs,
        outputs=(Output("gt_vids", paths.GT_VIDEOS, snakemake=False),
                 Output("recon_vids", paths.RECON_VIDEOS, snakemake=False),
                 Output("record", paths.RECON_METRICS, "metric")),
        # seed and save_videos are written into every record; vis_videos: how many MP4s go to vis/
        sections=("eval.split", "eval.num_videos", "eval.chunk_len", "eval.recon_batch_size", "eval.seed",
                  "eval.save_videos", "eval.lpips", "eval.vis_videos"),
        sampling=("eval.sampler", "eval.sampler_steps"),
        code=_RECON_CODE,
        resources="eval",
    ),
    Stage(
        name="eval_comp_gen", command="eval-comp-gen", wildcards=("dataset", "model", "seed"),
        summary="decode slots composed across videos -> comp_gen.json, eval/comp_vids/",
        description=f"""\
Compositional generation: decode videos whose slots are swapped across a batch.

reads:  {RUN}/model.pt, data/{{dataset}}/, {RUN}/eval/gt_vids/ (made by eval-recon)
writes: {RUN}/comp_gen.json, {RUN}/eval/comp_vids/, {RUN}/vis/{{idx}}_comp.mp4 for the first
        eval.vis_videos videos; the number of composed videos goes to the MLflow run
example: slotbench eval-comp-gen --dataset shapes --model savi --seed 0""",
        inputs=_comp_gen_inputs,
        outputs=(Output("comp_vids", paths.COMP_VIDEOS, snakemake=False),
                 Output("record", paths.COMP_GEN_RECORD, "record")),
        sections=("eval.split", "eval.num_videos", "eval.chunk_len", "eval.comp_batch_size", "eval.seed",
                  "eval.save_videos", "eval.vis_videos"),
        sampling=("eval.sampler", "eval.sampler_steps"),
        code=_RECON_CODE,
        resources="eval",
    ),
    Stage(
        name="fvd", command="fvd", wildcards=("dataset", "model", "seed", "kind"),
        summary="FVD of the reconstructed (--kind recon) or composed (--kind comp) videos -> fvd_{kind}.json",
        description=f"""\
FVD (StyleGAN-V's fvd2048_16f) of the reconstructed (--kind recon) or composed (--kind comp) videos.

reads:  {RUN}/recon.json or comp_gen.json and the frame folders; the I3D detector weights
        (missing, or videos shorter than 16 frames -> FVD null, with the reason)
writes: {RUN}/fvd_recon.json or fvd_comp.json; the FVD also goes to the MLflow run that the
        record names (eval/fvd_recon, eval/fvd_comp)
example: slotbench fvd --dataset shapes --model savi --seed 0 --kind recon""",
        inputs=_fvd_inputs,
        outputs=(Output("fvd", paths.FVD_METRICS, "metric"),),
        sections=("fvd",),
        code=("io.py", "weights.py", "evaluation/fvd.py", "metrics/fvd.py", "metrics/frechet.py", *_EVAL_TRACKING),
        resources="fvd",
    ),
    Stage(
        name="table_model", command="table", wildcards=("dataset", "model"),
        summary="CSV table of one model, one row per seed -> results/{dataset}/{model}/table.csv",
        description=f"""\
Collect the metrics into CSV tables (one row per seed, then mean and std).

reads:  with --model: {RUN}/seg.json, recon.json, fvd_recon.json, fvd_comp.json of every grid seed;
        without: results/{{dataset}}/{{model}}/table.csv of every grid model
writes: results/{{dataset}}/{{model}}/table.csv, or results/{{dataset}}/table.csv (column
        mlflow_run: the MLflow run each row's metrics were logged to)
example: slotbench table --dataset shapes --model savi && slotbench table --dataset shapes""",
        inputs=_table_model_inputs,
        outputs=(Output("table", paths.MODEL_TABLE, "record"),),
        code=("io.py", "table.py"),
        grid=("seeds",),
        settable=False,
    ),
    Stage(
        name="table_dataset", command="table", wildcards=("dataset",),
        summary="CSV table of a dataset, one row per model -> results/{dataset}/table.csv",
        description="",  # the command's help is table_model's
        inputs=_table_dataset_inputs,
        outputs=(Output("table", paths.DATASET_TABLE, "record"),),
        code=("io.py", "table.py"),
        grid=("models",),
        settable=False,
    ),
    Stage(
        name="report", command="report", wildcards=("dataset",),
        summary="HTML page of a dataset: table, videos, slots, curves -> results/{dataset}/report.html",
        description=f"""\
Build the dataset's HTML report: the table; for a few evaluation videos, animated input, ground
truth, each model's segmentation (colours matched to the ground truth), reconstruction and per-slot
decomposition; compositional-generation samples; training curves from MLflow; the parameters and
package versions behind it. One self-contained file (images embedded), open it in any browser.

reads:  results/{{dataset}}/table.csv, data/{{dataset}}/, and for every grid model and seed
        {RUN}/model.pt, train.json, eval/{{recon,comp}}_vids/, and the MLflow run; links {RUN}/vis/*.mp4
writes: results/{{dataset}}/report.html, {RUN}/curves/train.csv and curves/val.csv
        (the training curves; `dvc plots show` renders them)
example: slotbench report --dataset shapes""",
        inputs=_report_inputs,
        # the page (images inlined, ~1 MB) in DVC's cache and remote; the curves in git, for `dvc plots diff`
        outputs=(Output("report", paths.REPORT),
                 Output("train_curves", paths.CURVES_TRAIN, "record", over=("models", "seeds")),
                 Output("val_curves", paths.CURVES_VAL, "record", over=("models", "seeds"))),
        code=("io.py", "runtime.py", "visualize.py", *_DATA_CODE, "models/*.py", "checkpoint.py", "tracking.py",
              "report/*.py"),
        resources="eval",
        grid=("models", "seeds"),
        settable=False,
    ),
)}


def by_command() -> dict[str, list[Stage]]:
    """Subcommand -> its stages (``table`` runs ``table_model`` with ``--model``, else ``table_dataset``)."""
    out: dict[str, list[Stage]] = {}
    for stage in STAGES.values():
        out.setdefault(stage.command, []).append(stage)
    return out


def stage_of(command: str, given: set[str]) -> Stage:
    """The stage that ``slotbench <command>`` runs: of that command's stages, the one with the most
    wildcards, all of them among ``given`` (``table --model M`` runs ``table_model``)."""
    return max((s for s in by_command()[command] if set(s.wildcards) <= given), key=lambda s: len(s.wildcards))


def stage_code(stage: str, root: str | Path | None = None) -> list[str]:
    """Sorted source files of ``stage``, relative to ``root`` (default: as absolute paths)."""
    files = sorted({p for pattern in STAGES[stage].code for p in paths.PACKAGE_DIR.glob(pattern)})
    if root is None:
        return [str(p) for p in files]
    return [str(p.relative_to(Path(root).resolve())) for p in files]


def code_digest(stage: str) -> str:
    """SHA-256 over the contents of ``stage``'s source files (resume only with the same code)."""
    digest = hashlib.sha256()
    for path in stage_code(stage):
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()
