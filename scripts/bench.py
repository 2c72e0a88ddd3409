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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
