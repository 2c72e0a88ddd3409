"""Benchmarks, section by section: figures go to docs/bench.json, a table to stdout.

    python scripts/bench.py                                  # every section (several minutes)
    python scripts/bench.py --only scalar --scalar-steps 10 --job-rounds 1
    python scripts/bench.py --only compare contention memory
    python scripts/bench.py --only torch --no-compile --batch-sizes 512
    python scripts/bench.py --help                           # every section's flags

The sections live in the `bench` package (one module each; see its docstring). Exit
status: 0; 1 when a correctness check fails (or, with --strict, a speed target is
missed); 2 on bad input, with a one-line error.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
