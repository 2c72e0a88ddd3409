"""The installed training command: `microgpt-train [torch|scalar] FLAGS`.

    microgpt-train --steps 2                  # the torch trainer (microgpt_torch/train_command.py)
    microgpt-train scalar --steps 2           # the scalar engine (microgpt_scalar/train_command.py)

The first word picks the engine (torch when it is left out); the rest are that trainer's
flags, exactly as scripts/train_torch.py and scripts/train_scalar.py take them. The scalar
trainer never imports torch.
"""
from __future__ import annotations

import os
import sys

ENGINES = ("torch", "scalar")


def train(argv: list[str] | None = None) -> int:
    """Run the trainer the first word names on the rest of `argv` (sys.argv[1:] if None)."""
    args = sys.argv[1:] if argv is None else list(argv)
    engine = args.pop(0) if args and args[0] in ENGINES else "torch"
    if argv is None:  # the name argparse shows in usage lines and errors
        sys.argv[0] = f"{os.path.basename(sys.argv[0]) or 'microgpt-train'} {engine}"
    if engine == "scalar":
        from microgpt_scalar.train_command import main
    else:
        from microgpt_torch.train_command import main
    return main(args)
