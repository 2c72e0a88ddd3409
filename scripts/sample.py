"""Draw names from a checkpoint with either engine: the command `microgpt-sample`, run from a
clone. The code is in microgpt_torch/sample_command.py; `--help` lists the flags.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microgpt_torch.sample_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
