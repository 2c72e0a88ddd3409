"""Certify a learner's scalar engine: train microgpt on it and check the log against ours.

    python scripts/certify.py --engine my_engine.py               # the class named Value
    python scripts/certify.py --engine my_engine.py:Scalar --steps 5
    python scripts/certify.py --engine my_engine.py --n-layer 8 --steps 3   # a deeper model

The run is the published one (preset microgpt, seed 42, the names file shipped with the
package unless --data names another): the first --steps steps,
then, for the default 20, three sampled names. Each step's loss, its printed form and every
tensor's gradient norm must match the golden trace (compare/golden/microgpt.json); with
--n-layer, --n-embd, --n-head or --block-size the golden trace is the project's own engine's,
trained here on the same model. Every operation of the engine is also probed on its own
against torch. Prints the log, then PASS or the first step and tensor that differ.

--engine runs the code of the file it is given (in a separate process, with a time limit).
Exit 0 on PASS, 1 on a difference (or an engine that fails, exits, crashes or hangs), 2 on
bad usage or input (an engine that lacks an operation, the wrong data).
"""
from __future__ import annotations

import argparse
import sys

from compare.certify import (
    GOLDEN_PATH, GRAD_NORM_TOLERANCE, LOSS_TOLERANCE, GoldenError, check_fit, golden_config, judge_run, load_golden,
    make_golden, wanted_samples,
)
from compare.isolation import DEFAULT_TIMEOUT, EngineFailure, EngineProcess, EngineRefused
from compare.sandbox import add_limit_flags, limits_from
from microgpt_scalar.cli import (OneLineParser, add_data_flag, add_size_flags, check_scalar_model_fits, command,
                                 print_error, seconds, size_overrides, step_count)
from microgpt_scalar.config import get_config
from microgpt_scalar.data import DataError, load_docs
from microgpt_scalar.files import check_input


def engine_file(spec: str) -> str:
    """The file of --engine FILE[:CLASS]."""
    head, sep, tail = spec.rpartition(":")
    return head if sep and tail.isidentifier() and head else spec


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, help="FILE[:CLASS], the class defaulting to Value")
    parser.add_argument("--steps", type=step_count, default=20, help="training steps to check (default: 20)")
    add_data_flag(parser)
    parser.add_argument("--golden", default=str(GOLDEN_PATH), help="the golden trace to check against")
    add_size_flags(parser, "the golden trace is then made here, by the project's engine")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time the engine may take to load and for each step (default {DEFAULT_TIMEOUT:g})")
    add_limit_flags(parser)
    return parser.parse_args(argv)


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = size_overrides(args)
    try:
        check_scalar_model_fits(get_config("microgpt", **overrides))  # a bad model size is bad usage
        docs = load_docs(args.data)
        golden = None if overrides else load_golden(args.golden)
        if golden is not None:
            check_fit(golden, docs, args.steps)
        elif isinstance(args.steps, bool) or args.steps < 1:
            raise GoldenError(f"steps must be a positive whole number, got {args.steps!r}")
        check_input(engine_file(args.engine), "--engine")
        with EngineProcess(args.engine, timeout=args.timeout, limits=limits_from(args, args.steps + 3)) as engine:
            found = engine.engine()  # the process started at once, while the rest loads
            if found["missing"]:
                raise EngineRefused(found["missing"], skipped=found.get("skipped", []))
            certificate, probes = run(engine, found, docs, golden, args.steps, overrides)
            engine.check_own_files()
            print(f"sandbox: {engine.sandbox}")
    except EngineFailure as error:
        print_error(error)
        return 1
    except EngineRefused as error:
        from compare.render import skipped_block

        if error.skipped:
            print(skipped_block(error.skipped))
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print_error("interrupted; nothing certified")
        return 130
    except (EngineRefused, GoldenError, DataError, ValueError) as error:
        print_error(error)
        return 2
    return verdict(certificate, probes, args)


def run(engine: EngineProcess, found: dict, docs: list, golden, steps: int, overrides: dict):
    """Train the engine in its process; meanwhile make the golden trace if it is made here."""
    num_samples = len(wanted_samples(golden, steps)) if golden is not None else 3
    config = golden_config(golden) if golden is not None else get_config("microgpt", **overrides)
    engine.start_certify(docs, steps, num_samples, config.to_dict(), golden["seed"] if golden else 42)
    if golden is None:
        print(f"making the golden trace of this model ({', '.join(f'{k} {v}' for k, v in overrides.items())}) "
              f"with the project's engine", file=sys.stderr)
        golden = make_golden(docs, steps, num_samples, "microgpt", 42, overrides)
    from compare.probe_check import check_probes, unfinished_message  # torch: the oracle of the probes
    from compare.render import early_block

    probes = check_probes(found["probes"])
    print(early_block(probes, found.get("skipped", []), found["notes"]), flush=True)  # before training: kept if it fails
    if found.get("hung"):
        raise EngineFailure(unfinished_message(found["label"], probes, "the training steps were"), kind="timeout")
    print(f"the first {steps} of the run's {golden['num_steps']} steps (its learning-rate schedule):", flush=True)

    def show(record):
        print(f"step {record.step:4d} / {steps:4d} | loss {record.printed}", flush=True)

    return judge_run(engine.record_run, golden, steps, on_step=show, passthrough=(EngineFailure,)), probes


def verdict(certificate, probes, args) -> int:
    """The last line: PASS only if the log matches and no probe fails; what was not probed
    (an operation the engine lacks) is named, never counted as agreeing."""
    from compare.render import not_checked_text

    missing = not_checked_text(probes)
    not_checked = f"; not checked: {missing}" if missing else ""
    if not certificate.passed:
        print(f"FAIL: {certificate.difference.message}")
        return 1
    if not probes.agrees:
        counts = {}
        for r in probes.faults + probes.not_run:
            counts[r.operator] = counts.get(r.operator, 0) + 1
        n = sum(counts.values())
        wrong = "; ".join(r.message for r in probes.faults + probes.not_run[:1])
        print(f"FAIL: the training log matches, but {n} operator probe{'s' * (n > 1)} fail{'s' * (n == 1)} "
              f"({', '.join(counts)}): {wrong}{not_checked}")
        return 1
    samples = ", then the sampled names" if certificate.samples_compared else ""
    probed = "every operator probe of what it has agrees with torch" if missing else \
        "every operator probe agrees with torch"
    print(f"PASS: {args.engine} matches the golden trace for {args.steps} steps: each loss within "
          f"{LOSS_TOLERANCE.rtol:g} relative and as printed, each tensor's gradient norm within "
          f"{GRAD_NORM_TOLERANCE.rtol:g} relative{samples}; {probed}{not_checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
