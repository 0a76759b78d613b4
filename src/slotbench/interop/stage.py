"""The ``tokenizer`` / ``train`` stage when the params say ``init: {from: original, path: FILE}``.

Instead of training, the stage imports ``FILE`` (:func:`slotbench.interop.original.import_original`)
into the stage's usual ``model.pt`` and writes a ``train.json`` that records the import, so every
evaluation stage after it runs unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ..io import remove_stale_temporaries, write_json
from .original import import_original


def import_stage(network: str, dataset: str, init: dict, run_dir: str | Path, params_dir: str | Path) -> dict:
    """Write ``run_dir/model.pt`` and ``run_dir/train.json`` from the original checkpoint ``init["path"]``.

    Returns:
        the ``train.json`` summary: ``imported_from`` (the origin record) and ``steps`` (the
        original's iteration counter when the file is a full training checkpoint, else null).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    origin = import_original(network, dataset, init["path"], run_dir / "model.pt", params_dir)
    summary = {"steps": origin["iteration"], "imported_from": origin, "validation": {}}
    write_json(run_dir / "train.json", summary)
    print(f"imported {network} for {dataset} from {origin['path']} ({origin['format']}; "
          f"{origin['tensors']['copied']} tensors copied, {origin['tensors']['checked_constants']} constants checked, "
          f"{origin['tensors']['dropped']} dropped) in {origin['import_time_s']} s")
    return summary
