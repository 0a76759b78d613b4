"""Write an export beside its folder, then swap it in: a failed re-export never harms the last good one.

Three folders per dataset, side by side in ``data/``::

    data/{dataset}/             the published export: complete and trusted when it holds meta.json
    data/.{dataset}.staging/    the export being written; a resumable MOVi export keeps its
                                progress records and temporary arrays here between runs
    data/.{dataset}.previous/   the export being replaced, for the moment of the swap

The export stage writes every split and ``meta.json`` into the staging folder. Until that is
complete and verified (:func:`publish`), the published folder is not touched: a re-export that
fails on a params mistake, on an unreadable source or on a kill leaves the previous export
readable and trusted (the stages that read it check it against the current params; see
:func:`slotbench.data.dataset.check_current`). :func:`publish` then replaces it by renaming
folders; :func:`recover` repairs a swap that a crash interrupted, at the start of the next export.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .storage import DataError, clear_progress, open_split, read_meta

log = logging.getLogger(__name__)


def staging_dir(root: str | os.PathLike) -> Path:
    """Where the export of ``root`` (``data/{dataset}``) is written before it is published."""
    root = Path(root)
    return root.parent / f".{root.name}.staging"


def _previous_dir(root: Path) -> Path:
    return root.parent / f".{root.name}.previous"


def is_staged(root: str | os.PathLike, params_fingerprint: str) -> bool:
    """Whether an interrupted run left a complete export of these params in the staging folder
    (it stopped after the staged ``meta.json`` was written, before the swap): then the export
    stage publishes it without reading the source again (:func:`publish` verifies it first)."""
    staging = staging_dir(root)
    if not (staging / "meta.json").is_file():
        return False
    try:
        staged = read_meta(staging)["params_fingerprint"]
    except (DataError, KeyError) as err:
        log.warning("%s: the staged meta.json is not used (%s)", staging, err)
        return False
    if staged == params_fingerprint:
        log.warning("%s: an interrupted run staged a complete export of these params; publishing it", staging)
    return staged == params_fingerprint


def publish(root: str | os.PathLike) -> dict:
    """Verify the export in :func:`staging_dir` and swap it in for the one at ``root``; return its metadata.

    The steps, and what a crash (kill, power loss) right after each leaves:

    1. every file ``meta.json`` lists is checked: present, of the recorded size, shape, dtype
       and SHA-256 (one full read). A bad file raises :class:`DataError` naming it, and the
       staged ``meta.json`` is removed, so that the next run rewrites what is damaged (splits
       whose progress records say complete, and whose files still match, are reused). Nothing
       was published.
    2. the staging folder's progress records are removed. The published export is untouched;
       the next run finds the staged export complete (:func:`is_staged`) and publishes it.
    3. ``root`` is renamed to ``.{dataset}.previous`` (when there is one). For this instant there
       is no ``root``: a stage started now stops with "meta.json not found", it never reads a
       mix of two exports. The next export run renames the previous export back
       (:func:`recover`), then publishes the staged one.
    4. the staging folder is renamed to ``root``: the new export is published.
    5. ``.{dataset}.previous`` is deleted (the next export run deletes what is left of it).

    POSIX renames one folder atomically, but has no call that exchanges two non-empty folders
    (Linux's ``renameat2(RENAME_EXCHANGE)`` is neither in Python nor on every filesystem), hence
    two renames; the parent folder is synced after each so that their order survives a power loss.
    """
    root = Path(root)
    staging, previous = staging_dir(root), _previous_dir(root)
    try:
        meta = read_meta(staging)
        for split in meta["splits"]:
            open_split(staging, split, verify_checksums=True)
    except DataError:
        (staging / "meta.json").unlink(missing_ok=True)
        raise
    for split in meta["splits"]:
        clear_progress(staging, split)
    if root.exists():
        os.replace(root, previous)
        _sync(root.parent)
    os.replace(staging, root)
    _sync(root.parent)
    shutil.rmtree(previous, ignore_errors=True)
    return meta


def recover(root: str | os.PathLike) -> None:
    """Repair a swap of :func:`publish` that a crash interrupted: with no ``root``, the previous
    export goes back in place (after step 3); beside a published ``root``, what is left of the
    previous one is deleted (after step 4)."""
    root = Path(root)
    previous = _previous_dir(root)
    if not previous.exists():
        return
    if root.exists():
        shutil.rmtree(previous)
    else:
        log.warning("%s: an interrupted export left the previous export here; putting it back", previous)
        os.replace(previous, root)
        _sync(root.parent)


def _sync(folder: Path) -> None:
    """Make the renames inside ``folder`` durable (fsync of the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
