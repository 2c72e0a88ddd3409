"""Certify a learner's scalar engine: train microgpt on it and check the log against ours.

    python scripts/certify.py --engine my_engine.py               # the class named Value
    python scripts/certify.py --engine my_engine.py:Scalar --steps 5

The run is the published one (preset microgpt, seed 42, the names file shipped with the
package unless --data names another): the first --steps steps,
then, for the default 20, three sampled names. Each step's loss, its printed form and every
tensor's gradient norm must match the golden trace (compare/golden/microgpt.json). Prints
the log, then PASS or the first step and tensor that differ. Exit 0 on PASS, 1 on a
difference, 2 on bad usage or input (an engine that lacks an operation, the wrong data).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compare.certify import (GOLDEN_PATH, GRAD_NORM_TOLERANCE, LOSS_TOLERANCE, GoldenError,  # noqa: E402
                             certify, load_golden)
from compare.engines import EngineError, load_engine  # noqa: E402
from microgpt_scalar.cli import OneLineParser, data_path, positive_int  # noqa: E402
from microgpt_scalar.data import DataError, load_docs  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, help="FILE[:CLASS], the class defaulting to Value")
    parser.add_argument("--steps", type=positive_int, default=20, help="training steps to check (default: 20)")
    parser.add_argument("--data", help="the names file (default: the one shipped with the package)")
    parser.add_argument("--golden", default=str(GOLDEN_PATH), help="the golden trace to check against")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        value_cls = load_engine(args.engine)
        golden = load_golden(args.golden)
        docs = load_docs(data_path(args.data))
        num_steps = golden["num_steps"]

        def show(record):
            print(f"step {record.step:4d} / {num_steps:4d} | loss {record.printed}", flush=True)

        certificate = certify(value_cls, docs, golden, args.steps, on_step=show)
    except (EngineError, GoldenError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not certificate.passed:
        print(f"FAIL: {certificate.difference.message}")
        return 1
    samples = ", then the sampled names" if certificate.samples_compared else ""
    print(f"PASS: {args.engine} matches the golden trace for {args.steps} steps: each loss within "
          f"{LOSS_TOLERANCE.rtol:g} relative and as printed, each tensor's gradient norm within "
          f"{GRAD_NORM_TOLERANCE.rtol:g} relative{samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
