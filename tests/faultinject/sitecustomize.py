"""Loaded by a test subprocess's interpreter (``PYTHONPATH=tests/faultinject``): installs the
fault-injection hooks of ``tests/fault_hooks.py`` in ``python -m slotbench`` processes only (not in
Snakemake's own), when ``SLOTBENCH_FAULT_KILL_AT`` or ``SLOTBENCH_FAULT_HOLD`` is set."""

import os
import sys

if (os.environ.get("SLOTBENCH_FAULT_KILL_AT") or os.environ.get("SLOTBENCH_FAULT_HOLD")) \
        and sys.orig_argv[1:3] == ["-m", "slotbench"]:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fault_hooks

    fault_hooks.install_from_env()
