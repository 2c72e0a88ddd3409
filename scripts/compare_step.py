"""Train the same step in the scalar engine and in torch and compare every number: the
command `microgpt-compare` (`python -m compare`), run from a clone. The code is in
compare/command.py; `--help` lists the flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

from compare.command import run  # noqa: E402

if __name__ == "__main__":
    run()
