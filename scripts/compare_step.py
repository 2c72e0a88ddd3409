"""Train the same step in the scalar engine and in torch and compare every number: the
command `microgpt-compare` (`python -m compare`), run from a clone. The code is in
compare/command.py; `--help` lists the flags.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.command import run  # noqa: E402

if __name__ == "__main__":
    run()
