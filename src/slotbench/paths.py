"""Every path pattern of the pipeline.

The stage declarations (:mod:`slotbench.pipeline`), and through them the Snakefile, ``dvc.yaml`` and
the command line, read these, so the workflows and the stages cannot disagree about where a file lives. Paths are
relative to the project root (the working directory of every stage).

With ``$SLOTBENCH_PROFILE`` set (``snakemake --config profile=tiny`` sets it), every dataset runs on
that profile and every path below lies under ``runs/{profile}/``: a smoke run never touches (nor is
mistaken for) the exports and results of the datasets' own profiles.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that replaces every dataset's profile (read by the params loader too).
PROFILE_ENV = "SLOTBENCH_PROFILE"
#: The environment variable with the workflow-wide ``--set`` values (a JSON list of ``KEY=VALUE``;
#: ``snakemake --config set=[...]`` sets it), read by the command line of every stage.
SET_ENV = "SLOTBENCH_SET"
#: Prefix of every output path: ``runs/{profile}/`` under a replaced profile, else nothing.
ROOT = f"runs/{os.environ[PROFILE_ENV]}/" if os.environ.get(PROFILE_ENV) else ""

PARAMS_DIR = "params"
DATA_DIR = ROOT + "data/{dataset}"
DATA_META = DATA_DIR + "/meta.json"
#: A copy of meta.json that Snakemake's export rule makes once data/{dataset}/ is published: the
#: rule's output, which the later rules depend on. Snakemake deletes a job's output before the job
#: and after a failure; that must never be the export itself (see slotbench.data.publish).
EXPORT_RECEIPT = ROOT + "data/{dataset}.export.json"
TOKENIZER_DIR = ROOT + "results/{dataset}/{tokenizer}"
TOKENIZER_CHECKPOINT = TOKENIZER_DIR + "/model.pt"
TOKENIZER_SUMMARY = TOKENIZER_DIR + "/train.json"
RUN_DIR = ROOT + "results/{dataset}/{model}/seed{seed}"
CHECKPOINT = RUN_DIR + "/model.pt"
TRAIN_SUMMARY = RUN_DIR + "/train.json"
SEG_METRICS = RUN_DIR + "/seg.json"
RECON_METRICS = RUN_DIR + "/recon.json"
COMP_GEN_RECORD = RUN_DIR + "/comp_gen.json"
VIDEO_ROOT = RUN_DIR + "/eval"          # gt_vids/, recon_vids/, comp_vids/ (StyleGAN-V frame folders)
GT_VIDEOS = VIDEO_ROOT + "/gt_vids"
RECON_VIDEOS = VIDEO_ROOT + "/recon_vids"
COMP_VIDEOS = VIDEO_ROOT + "/comp_vids"
VIS_DIR = RUN_DIR + "/vis"              # {idx}_recon.mp4, {idx}_comp.mp4: videos to watch (eval.vis_videos)
FVD_METRICS = RUN_DIR + "/fvd_{kind}.json"  # kind: recon | comp
MODEL_TABLE = ROOT + "results/{dataset}/{model}/table.csv"
DATASET_TABLE = ROOT + "results/{dataset}/table.csv"
CURVES_TRAIN = RUN_DIR + "/curves/train.csv"  # MLflow history, written by the report stage
CURVES_VAL = RUN_DIR + "/curves/val.csv"
REPORT = ROOT + "results/{dataset}/report.html"
MLFLOW_STORE = ROOT + "results/mlflow.db"  # the local tracking store (tracking.uri: null)

PACKAGE_DIR = Path(__file__).resolve().parent
