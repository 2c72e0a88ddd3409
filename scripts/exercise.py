"""Check one exercise of the tutorial (docs/bridge.md) against the scalar engine.

    python scripts/exercise.py --list
    python scripts/exercise.py mlp                                        # your docs/exercises/mlp.py
    python scripts/exercise.py mlp --file docs/exercises/answers/mlp.py   # ours

Exit status 0 when your piece agrees with the scalar engine, 1 with what differs, 2 on bad input.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tutorial.exercises import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
