"""Write the golden trace that `scripts/certify.py` checks a learner's engine against.

    python scripts/make_golden.py                          # compare/golden/microgpt.json
    python scripts/make_golden.py --steps 50 --out /tmp/golden50.json --data names.txt

The trace comes from the project's scalar engine, which reproduces the published log of
microgpt (seed 42, names.txt) digit for digit. Bad input ends with a one-line error, exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.certify import GOLDEN_PATH, golden_text, make_golden  # noqa: E402
from microgpt_scalar.checkpoint import write_atomically  # noqa: E402
from microgpt_scalar.config import PRESETS  # noqa: E402
from microgpt_scalar.cli import (OneLineParser, UsageError, add_data_flag, check_output_path,  # noqa: E402
                                 non_negative_int, positive_int, seed_number)
from microgpt_scalar.data import DataError, load_docs  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    add_data_flag(parser)
    parser.add_argument("--steps", type=positive_int, default=20, help="training steps to record")
    parser.add_argument("--samples", type=non_negative_int, default=3, help="names to sample after the last step")
    parser.add_argument("--preset", default="microgpt", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=seed_number, default=42)
    parser.add_argument("--out", default=str(GOLDEN_PATH), help="where to write the trace")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_output_path(args.out, "--out", inputs=[args.data], overwrite=True)  # the trace it replaces
        docs = load_docs(args.data)
    except (DataError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    golden = make_golden(docs, args.steps, args.samples, args.preset, args.seed)
    try:
        write_atomically(args.out, golden_text(golden).encode("utf-8"))  # the old trace stays if this fails
    except OSError as error:
        print(f"error: could not write {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {args.steps} steps, samples {golden['samples']['names']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
