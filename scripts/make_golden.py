"""Write the golden trace that `scripts/certify.py` checks a learner's engine against.

    python scripts/make_golden.py                          # compare/golden/microgpt.json
    python scripts/make_golden.py --steps 50 --out /tmp/golden50.json --data names.txt

The trace comes from the project's scalar engine, which reproduces the published log of
microgpt (seed 42, names.txt) digit for digit. Bad input ends with a one-line error, exit 2.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

import argparse

from compare.certify import GOLDEN_PATH, golden_text, make_golden  # noqa: E402
from microgpt_scalar.cli import (OneLineParser, UsageError, add_data_flag, command, print_error,  # noqa: E402
                                 sample_count, seed_number, step_count)
from microgpt_scalar.config import PRESETS  # noqa: E402
from microgpt_scalar.data import DataError, load_docs  # noqa: E402
from microgpt_scalar.files import FileError, claim_output, shown  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    add_data_flag(parser)
    parser.add_argument("--steps", type=step_count, default=20, help="training steps to record")
    parser.add_argument("--samples", type=sample_count, default=3, help="names to sample after the last step")
    parser.add_argument("--preset", default="microgpt", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=seed_number, default=42)
    parser.add_argument("--out", default=str(GOLDEN_PATH), help="where to write the trace")
    return parser.parse_args(argv)


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = claim_output(args.out, "--out", inputs=[args.data], overwrite=True)  # the trace it replaces
        docs = load_docs(args.data)
    except (DataError, UsageError, FileError) as error:
        print_error(error)
        return 2
    golden = make_golden(docs, args.steps, args.samples, args.preset, args.seed)
    try:
        out.write(golden_text(golden).encode("utf-8"))  # the old trace stays if this fails
    except FileError as error:
        print_error(error)
        return 2
    print(f"wrote {shown(args.out)}: {args.steps} steps, samples {golden['samples']['names']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
