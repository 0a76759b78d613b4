"""The text of ``slotbench <command> --help``: what each stage does, what it reads and what it writes."""

from __future__ import annotations

import argparse

RUN = "results/{dataset}/{model}/seed{S}"

DESCRIPTIONS = {
    "export": """\
Write a dataset in slotbench's storage format (the first stage of the pipeline).

reads:  params/datasets/{dataset}.yaml (source: synthetic generator, TFDS MOVi-D/E, or a
        MOVi-Solid/Tex release folder) and its profile
writes: data/{dataset}/meta.json and one array folder per split (train, validation, test)
example: slotbench export --dataset shapes""",
    "tokenizer": """\
Train the frame tokenizer that STEVE (dVAE) or SlotDiffusion (VQ-VAE) decodes into.

reads:  data/{dataset}/, params/tokenizers/{tokenizer}.yaml
writes: results/{dataset}/{tokenizer}/model.pt and train.json (MLflow run in results/mlflow.db)
example: slotbench tokenizer --dataset shapes --tokenizer dvae""",
    "train": f"""\
Train a slot model (SAVi, STEVE or SlotDiffusion); an interrupted run resumes from {RUN}/_work/.

reads:  data/{{dataset}}/, params/models/{{model}}.yaml; STEVE and SlotDiffusion also read their
        tokenizer's results/{{dataset}}/{{tokenizer}}/model.pt
writes: {RUN}/model.pt and train.json; loss, learning rate and validation metrics go to MLflow
        (results/mlflow.db unless tracking.uri says otherwise)
example: slotbench train --dataset shapes --model savi --seed 0""",
    "eval-seg": f"""\
Segmentation metrics (FG-ARI, mIoU, mBO, in percent) of a trained model on full-length videos.

reads:  {RUN}/model.pt, data/{{dataset}}/ (split eval.split), {RUN}/_work/mlflow_run_id
writes: {RUN}/seg.json; FG-ARI, mIoU and mBO also go to the training's MLflow run (eval/*)
example: slotbench eval-seg --dataset shapes --model savi --seed 0""",
    "eval-recon": f"""\
Reconstruct the evaluation videos from their slots: MSE, PSNR, SSIM and LPIPS, plus the frames.

reads:  {RUN}/model.pt, data/{{dataset}}/; LPIPS weights (missing -> LPIPS null, with the reason)
writes: {RUN}/recon.json, {RUN}/eval/gt_vids/ and eval/recon_vids/ (PNG frame folders),
        {RUN}/vis/{{idx}}_recon.mp4 for the first eval.vis_videos videos (input, reconstruction,
        segmentation, slots); the metrics also go to the training's MLflow run (eval/*)
example: slotbench eval-recon --dataset shapes --model savi --seed 0""",
    "eval-comp-gen": f"""\
Compositional generation: decode videos whose slots are swapped across a batch.

reads:  {RUN}/model.pt, data/{{dataset}}/, {RUN}/eval/gt_vids/ (made by eval-recon)
writes: {RUN}/comp_gen.json, {RUN}/eval/comp_vids/, {RUN}/vis/{{idx}}_comp.mp4 for the first
        eval.vis_videos videos; the number of composed videos goes to the MLflow run
example: slotbench eval-comp-gen --dataset shapes --model savi --seed 0""",
    "fvd": f"""\
FVD (StyleGAN-V's fvd2048_16f) of the reconstructed (--kind recon) or composed (--kind comp) videos.

reads:  {RUN}/recon.json or comp_gen.json and the frame folders; the I3D detector weights
        (missing, or videos shorter than 16 frames -> FVD null, with the reason)
writes: {RUN}/fvd_recon.json or fvd_comp.json; the FVD also goes to the MLflow run that the
        record names (eval/fvd_recon, eval/fvd_comp)
example: slotbench fvd --dataset shapes --model savi --seed 0 --kind recon""",
    "table": f"""\
Collect the metrics into CSV tables (one row per seed, then mean and std).

reads:  with --model: {RUN}/seg.json, recon.json, fvd_recon.json, fvd_comp.json of every grid seed;
        without: results/{{dataset}}/{{model}}/table.csv of every grid model
writes: results/{{dataset}}/{{model}}/table.csv, or results/{{dataset}}/table.csv (column
        mlflow_run: the MLflow run each row's metrics were logged to)
example: slotbench table --dataset shapes --model savi && slotbench table --dataset shapes""",
    "report": f"""\
Build the dataset's HTML report: the table; for a few evaluation videos, animated input, ground
truth, each model's segmentation (colours matched to the ground truth), reconstruction and per-slot
decomposition; compositional-generation samples; training curves from MLflow; the parameters and
package versions behind it. One self-contained file (images embedded), open it in any browser.

reads:  results/{{dataset}}/table.csv, data/{{dataset}}/, and for every grid model and seed
        {RUN}/model.pt, train.json, eval/{{recon,comp}}_vids/, and the MLflow run; links {RUN}/vis/*.mp4
writes: results/{{dataset}}/report.html, {RUN}/curves/train.csv and curves/val.csv
        (the training curves; `dvc plots show` renders them)
example: slotbench report --dataset shapes""",
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
