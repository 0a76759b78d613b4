"""Fault-injection points for tests/test_faults.py: count events in-process, or SIGKILL a subprocess at one.

Events (in the order a stage meets them):

* ``batch``: a DataLoader hands out a batch (every training step, every evaluation batch);
* ``before-rename NAME`` / ``after-rename NAME``: an atomic write (``slotbench.io.atomic_path``) is
  about to rename / has renamed its complete temporary file onto NAME (checkpoints, ``model.pt``,
  json records, every saved frame);
* ``read-video I``: the FVD stage reads the frames of video I.

``SLOTBENCH_FAULT_KILL_AT=k`` in a subprocess's environment (with ``tests/faultinject`` on its
``PYTHONPATH``, whose ``sitecustomize`` calls :func:`install_from_env`) sends the process SIGKILL at
its k-th event: a real, uncatchable kill at a reproducible point of the real command;
``SLOTBENCH_FAULT_SIGNAL=TERM`` sends SIGTERM there instead (SLURM's pre-emption notice, which the
training turns into a checkpoint and a clean exit).
``SLOTBENCH_FAULT_HOLD=FILE`` instead pauses the process at its first batch (after creating
``FILE.held``) until ``FILE`` exists: a job that deterministically holds its workflow's lock.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

KILL_ENV = "SLOTBENCH_FAULT_KILL_AT"
HOLD_ENV = "SLOTBENCH_FAULT_HOLD"
SIGNAL_ENV = "SLOTBENCH_FAULT_SIGNAL"


def install(on_event: Callable[[str], None]) -> Callable[[], None]:
    """Route every event to ``on_event``; return the function that removes the hooks."""
    import torch.utils.data.dataloader as dl

    from slotbench.metrics import fvd

    real_replace, real_next, real_load = os.replace, dl._BaseDataLoaderIter.__next__, fvd.VideoFolder.load

    def replace(src, dst, *args, **kwargs):
        on_event(f"before-rename {Path(dst).name}")
        real_replace(src, dst, *args, **kwargs)
        on_event(f"after-rename {Path(dst).name}")

    def next_batch(self):
        on_event("batch")
        return real_next(self)

    def load(self, index, frame_indices=None):
        on_event(f"read-video {index}")
        return real_load(self, index, frame_indices)

    os.replace, dl._BaseDataLoaderIter.__next__, fvd.VideoFolder.load = replace, next_batch, load

    def uninstall() -> None:
        os.replace, dl._BaseDataLoaderIter.__next__, fvd.VideoFolder.load = real_replace, real_next, real_load

    return uninstall


def install_from_env() -> None:
    """SIGKILL (or ``$SLOTBENCH_FAULT_SIGNAL``) this process at the event numbered
    ``$SLOTBENCH_FAULT_KILL_AT`` (1-based)."""
    import time

    kill_at, hold = int(os.environ.get(KILL_ENV, "0")), os.environ.get(HOLD_ENV)
    signame = os.environ.get(SIGNAL_ENV, "KILL")
    signum = getattr(signal, f"SIG{signame}")
    if kill_at <= 0 and not hold:
        return
    seen = {"n": 0}

    def on_event(name: str) -> None:
        seen["n"] += 1
        if hold and name == "batch" and not Path(hold + ".held").exists():
            Path(hold + ".held").touch()
            while not Path(hold).exists():
                time.sleep(0.1)
        if seen["n"] == kill_at:
            print(f"fault injection: SIG{signame} at event {kill_at} ({name})", flush=True)
            os.kill(os.getpid(), signum)

    install(on_event)
