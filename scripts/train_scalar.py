"""Train microgpt on the scalar engine and sample names from it: the command
`microgpt-train scalar`, run from a clone. The code is in microgpt_scalar/train_command.py;
`--help` lists the flags.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microgpt_scalar.train_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
