"""`python -m compare`: the main job, as `microgpt-compare` and scripts/compare_step.py run it."""
import sys

from microgpt_scalar.startup import quiet_while_starting

quiet_while_starting()  # Ctrl-C while the modules load: one line and exit 130, not a traceback

from compare.command import run  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "python -m compare"  # what --help and the usage line call the command
    run()
