"""``python -m slotbench``: the same as the ``slotbench`` command."""

import sys

from .cli import main

sys.exit(main())
