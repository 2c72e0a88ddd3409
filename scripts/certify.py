"""Certify a learner's scalar engine against the golden trace: the command `microgpt-certify`,
run from a clone. The code is in compare/certify_command.py; `--help` lists the flags.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.certify_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
