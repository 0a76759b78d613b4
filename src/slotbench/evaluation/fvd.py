"""The ``fvd`` stage: FVD between the ground-truth frames and the reconstructed or composed ones.

With ``fvd.stylegan_v_checkout`` set, StyleGAN-V's own ``calc_metrics_for_dataset.py`` runs as a
subprocess; otherwise slotbench's implementation of the same ``fvd2048_16f`` protocol, with the
same I3D TorchScript detector. When the protocol cannot run (no detector file, or one that is not
the known copy nor pinned by ``fvd.detector_sha256``, videos shorter
than its 16-frame clips, frames not saved) the record says why and ``FVD`` is ``null``: never a
number from another network under the FVD name. A computed FVD also goes to the MLflow run that
the evaluation record names (``eval/fvd_recon`` or ``eval/fvd_comp``, :mod:`.tracking`).
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..io import read_json, write_record
from ..metrics import fvd as fvd_metric
from ..weights import MissingWeightsError
from .reconstruction import COMP_DIR, GT_DIR, RECON_DIR
from .tracking import log_evaluation

KINDS = {"recon": RECON_DIR, "comp": COMP_DIR}


def run_fvd(fvd_cfg: dict, kind: str, eval_record: str | Path, out_json: str | Path, progress: bool = True, *,
            tracking: dict | None = None) -> dict:
    """Compute FVD (``kind``: ``recon`` or ``comp``) for the videos of an evaluation record.

    Args:
        fvd_cfg: the ``fvd`` params section.
        eval_record: ``recon.json`` or ``comp_gen.json`` (gives the video folder and frame count,
            the checkpoint's training step and its MLflow run).
        tracking: the ``tracking`` params section: log ``eval/fvd_{kind}`` to the record's MLflow
            run at the checkpoint's step, named in the output's ``mlflow_run_id``; ``None`` does not.
    Returns:
        the record written to ``out_json``: ``FVD`` (or ``null`` with ``reason``) and the details.
    """
    record = read_json(eval_record)
    root = Path(record["video_root"])
    real, fake = root / GT_DIR, root / KINDS[kind]
    base = {"kind": kind, "metric": fvd_metric.METRIC, "real_dir": str(real), "fake_dir": str(fake),
            "num_videos": record["num_videos"], "frames_per_video": record["frames"],
            "slotbench_version": __version__}
    reason = None
    if not record.get("videos_saved", True) or not fake.is_dir():
        reason = f"no frames in {fake} (eval.save_videos is false?)"
    elif record["frames"] < fvd_metric.NUM_FRAMES:
        reason = f"the protocol uses {fvd_metric.NUM_FRAMES}-frame clips; these videos have {record['frames']} frames"
    if reason is None:
        try:
            if fvd_cfg["stylegan_v_checkout"]:
                result = fvd_metric.run_stylegan_v(fvd_cfg["stylegan_v_checkout"], real, fake,
                                                   detector_path=fvd_cfg["detector_path"],
                                                   detector_sha256=fvd_cfg["detector_sha256"])
                result["implementation"] = "stylegan-v (calc_metrics_for_dataset.py, subprocess)"
            else:
                result = fvd_metric.compute_fvd(real, fake, detector_path=fvd_cfg["detector_path"],
                                                detector_sha256=fvd_cfg["detector_sha256"],
                                                seed=fvd_cfg["seed"], progress=progress)
            out = {"FVD": round(float(result.pop("fvd")), 4), **base, **result}
        except (MissingWeightsError, fvd_metric.UnverifiedDetectorError) as err:
            reason = str(err)
    if reason is not None:
        print(f"FVD ({kind}) not computed: {reason}")
        out = {"FVD": None, "reason": reason, **base}
    run = (record.get("mlflow_run_id"), f"{eval_record} names no MLflow run")
    step = record.get("train_steps", 0)  # a record that names a run has it
    out["mlflow_run_id"] = log_evaluation(tracking, run, {f"fvd_{kind}": out["FVD"]}, step)
    write_record(out_json, out)
    return out
