"""`python -m compare`: the main job, as `microgpt-compare` and scripts/compare_step.py run it."""
import sys

from compare.command import run

if __name__ == "__main__":
    sys.argv[0] = "python -m compare"  # what --help and the usage line call the command
    run()
