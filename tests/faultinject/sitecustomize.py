"""Loaded by a test subprocess's interpreter (``PYTHONPATH=tests/faultinject``): installs the
fault-injection hooks of ``tests/fault_hooks.py`` in slotbench processes only (``python -m slotbench``
as Snakemake's rules start it, or the ``slotbench`` script as DVC's stages do; not in Snakemake's or
DVC's own), when ``SLOTBENCH_FAULT_KILL_AT`` or ``SLOTBENCH_FAULT_HOLD`` is set."""

import os
import sys

_SLOTBENCH = sys.orig_argv[1:3] == ["-m", "slotbench"] or \
    (len(sys.orig_argv) > 1 and os.path.basename(sys.orig_argv[1]) == "slotbench")
if (os.environ.get("SLOTBENCH_FAULT_KILL_AT") or os.environ.get("SLOTBENCH_FAULT_HOLD")) and _SLOTBENCH:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fault_hooks

    fault_hooks.install_from_env()
