"""Every path pattern of the pipeline, and the code each stage depends on.

The Snakefile, the ``dvc.yaml`` generator and the command line all read these, so the two
workflow descriptions and the stages cannot disagree about where a file lives. Paths are
relative to the project root (the working directory of every stage).

With ``$SLOTBENCH_PROFILE`` set (``snakemake --config profile=tiny`` sets it), every dataset runs on
that profile and every path below lies under ``runs/{profile}/``: a smoke run never touches (nor is
mistaken for) the exports and results of the datasets' own profiles.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The environment variable that replaces every dataset's profile (read by the params loader too).
PROFILE_ENV = "SLOTBENCH_PROFILE"
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
VIS_DIR = RUN_DIR + "/vis"              # {idx}_recon.mp4, {idx}_comp.mp4: videos to watch (eval.vis_videos)
FVD_METRICS = RUN_DIR + "/fvd_{kind}.json"  # kind: recon | comp
MODEL_TABLE = ROOT + "results/{dataset}/{model}/table.csv"
DATASET_TABLE = ROOT + "results/{dataset}/table.csv"
CURVES_TRAIN = RUN_DIR + "/curves/train.csv"  # MLflow history, written by the report stage
CURVES_VAL = RUN_DIR + "/curves/val.csv"
REPORT = ROOT + "results/{dataset}/report.html"
MLFLOW_STORE = ROOT + "results/mlflow.db"  # the local tracking store (tracking.uri: null)

PACKAGE_DIR = Path(__file__).resolve().parent

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

#: Source files (globs relative to the package) whose change must re-run a stage.
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "export": ("io.py", "config/*.py", "data/export.py", "data/publish.py", "data/storage.py", "data/subset.py",
               "data/synthetic.py", "data/movi_*.py"),
    "tokenizer": _TRAINING_CODE,
    "train": _TRAINING_CODE,
    "eval_seg": ("io.py", "runtime.py", *_DATA_CODE, "models/*.py",
                 "checkpoint.py", "evaluation/segmentation.py", *_SEGMENTATION_METRICS,
                 *_EVAL_TRACKING),
    "eval_recon": ("io.py", "runtime.py", "weights.py", "visualize.py", *_DATA_CODE, "models/*.py",
                   "checkpoint.py", "evaluation/reconstruction.py",
                   "evaluation/videos.py", "metrics/*.py", *_EVAL_TRACKING),
    "fvd": ("io.py", "weights.py", "evaluation/fvd.py", "metrics/fvd.py", "metrics/frechet.py", *_EVAL_TRACKING),
    "table": ("io.py", "table.py"),
    "report": ("io.py", "runtime.py", "visualize.py", *_DATA_CODE, "models/*.py",
               "checkpoint.py", "tracking.py", "report/*.py"),
}


STAGE_CODE["eval_comp_gen"] = STAGE_CODE["eval_recon"]


def stage_code(stage: str, root: str | Path | None = None) -> list[str]:
    """Sorted source files of ``stage``, relative to ``root`` (default: as absolute paths)."""
    files = sorted({p for pattern in STAGE_CODE[stage] for p in PACKAGE_DIR.glob(pattern)})
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
