"""Train microgpt with PyTorch: the command `microgpt-train` (`microgpt-train torch`), run from
a clone. The code is in microgpt_torch/train_command.py; `--help` lists the flags.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microgpt_torch.train_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
