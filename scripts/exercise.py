"""Check one exercise of the tutorial (docs/bridge.md) against the scalar engine.

    python scripts/exercise.py --list
    python scripts/exercise.py mlp                                        # your docs/exercises/mlp.py
    python scripts/exercise.py mlp --file docs/exercises/answers/mlp.py   # ours

The check runs your file in a process of its own (--timeout, --max-memory set its limits).
Exit status 0 when your piece agrees with the scalar engine, 1 with what differs, 2 with one
line on stderr when it cannot be checked: a bad command line, a missing or empty file, a file
that does not parse, raises or exits while it loads, hangs, or runs out of memory.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

from microgpt_scalar.cli import command  # noqa: E402
from tutorial.exercise_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(command(main)())
