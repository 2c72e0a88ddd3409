"""Certify a learner's scalar engine: train microgpt on it and check the log against ours.

    python scripts/certify.py --engine my_engine.py               # the class named Value
    python scripts/certify.py --engine my_engine.py:Scalar --steps 5
    python scripts/certify.py --engine my_engine.py --n-layer 8 --steps 3   # a deeper model
    python scripts/certify.py --engines submissions/ --jobs 2 --out results/   # a whole class

The run is the published one (preset microgpt, seed 42, the names file shipped with the
package unless --data names another): the first --steps steps,
then, for the default 20, three sampled names. Each step's loss, its printed form and every
tensor's gradient norm must match the golden trace (compare/golden/microgpt.json); with
--n-layer, --n-embd, --n-head or --block-size the golden trace is the project's own engine's,
trained here on the same model. Every operation of the engine is also probed on its own
against torch. Prints the log, then PASS or the first step and tensor that differ.

--engines checks many engines (files, globs, or a folder of submissions: one engine file each,
or one folder each with engine.py), --jobs at a time: each is compared with torch on one
step (probes, worst tensor, gradient plot), then certified as above. It prints one row per
engine and writes class.csv, class.json, index.html (the table, each report, each plot) and
reports/*.txt into --out.

--engine runs the code of the file it is given (in a separate process, with a time limit,
--memory and --cpu-time). Exit 0 on PASS (every engine's, with --engines), 1 on a
difference (or an engine that fails, exits, crashes or hangs), 2 on bad usage or input (an
engine that lacks an operation, the wrong data).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from compare.certify import (
    GOLDEN_PATH, GRAD_NORM_TOLERANCE, LOSS_TOLERANCE, GoldenError, check_fit, golden_config, judge_run, load_golden,
    make_golden, wanted_samples,
)
from compare.isolation import DEFAULT_TIMEOUT, EngineFailure, EngineProcess, EngineRefused
from microgpt_scalar.cli import (OneLineParser, UsageError, add_data_flag, add_quiet_flag, add_size_flags,
                                 check_output_path, data_path, int_from, positive_int,
                                 positive_real, size_overrides)
from microgpt_scalar.config import get_config
from microgpt_scalar.data import DataError, load_docs


DEFAULT_MEMORY_MB = 2048  # two engines at a time stay well under a few GB
DEFAULT_CPU_SECONDS = 900


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--engine", help="FILE[:CLASS], the class defaulting to Value")
    add_quiet_flag(parser, "only the PASS or FAIL line (with --engines: only the table)")
    which.add_argument("--engines", nargs="+", metavar="PATH",
                        help="many engines: files (FILE[:CLASS]), globs, or folders of submissions")
    parser.add_argument("--jobs", type=int_from(1, 256), default=available_cores(),
                        help=f"engines checked at a time (default: the cores, here {available_cores()})")
    parser.add_argument("--out", default="certify-class", metavar="DIR",
                        help="where --engines writes class.csv, class.json, index.html (default: certify-class)")
    parser.add_argument("--memory", type=positive_int, default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"memory each engine's process may use (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--cpu-time", type=positive_int, default=DEFAULT_CPU_SECONDS, metavar="SECONDS",
                        help=f"CPU time each engine's process may use (default {DEFAULT_CPU_SECONDS})")
    parser.add_argument("--steps", type=positive_int, default=20, help="training steps to check (default: 20)")
    add_data_flag(parser)
    parser.add_argument("--golden", default=str(GOLDEN_PATH), help="the golden trace to check against")
    add_size_flags(parser, "the golden trace is then made here, by the project's engine")
    parser.add_argument("--timeout", type=positive_real, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time the engine may take to load and for each step (default {DEFAULT_TIMEOUT:g})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.engines is not None:
        return check_class_command(args)
    overrides = size_overrides(args)
    try:
        get_config("microgpt", **overrides)  # a bad model size is bad usage
        docs = load_docs(args.data)
        golden = None if overrides else load_golden(args.golden)
        if golden is not None:
            check_fit(golden, docs, args.steps)
        elif isinstance(args.steps, bool) or args.steps < 1:
            raise GoldenError(f"steps must be a positive whole number, got {args.steps!r}")
        with EngineProcess(args.engine, timeout=args.timeout, limits=limits_of(args)) as engine:  # starts at once
            found = engine.engine()
            if found["missing"]:
                raise EngineRefused(found["missing"])
            certificate, probes = run(engine, found, docs, golden, args.steps, overrides, args.quiet)
    except EngineFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing certified", file=sys.stderr)
        return 130
    except (EngineRefused, GoldenError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return verdict(certificate, probes, args)


def limits_of(args) -> ResourceLimits:
    return ResourceLimits(memory_bytes=args.memory * 2**20, cpu_seconds=args.cpu_time)


def check_class_command(args) -> int:
    """--engines: every engine, --jobs at a time; one table, the files in --out."""
    from compare.class_report import counts_line, table_text, write_class_files
    from compare.classroom import ClassOptions, SubmissionError, check_class, find_submissions

    try:
        if size_overrides(args) or args.data or args.golden != str(GOLDEN_PATH):
            raise UsageError("--engines checks against the shipped golden trace and names file; "
                             "--data, --golden and the model-size flags need --engine")
        check_fit(load_golden(), load_docs(data_path(None)), args.steps)
        submissions = find_submissions(args.engines)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: not a folder")
        for name in ("class.csv", "class.json", "index.html"):
            check_output_path(str(out / name), "--out", overwrite=True)
    except (SubmissionError, GoldenError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = ClassOptions(steps=args.steps, timeout=args.timeout, limits=limits_of(args), jobs=args.jobs)
    if not args.quiet:
        print(f"checking {len(submissions)} engines, {args.jobs} at a time, each with {options.limits.describe()} "
              f"and {args.timeout:g} s for any one step", file=sys.stderr)
    from tqdm import tqdm

    progress = tqdm(total=len(submissions), file=sys.stderr, unit="engine", disable=True if args.quiet else None)
    try:
        rows = check_class(submissions, options, out, on_row=lambda row: progress.update())
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        progress.close()
    meta = {"steps": args.steps, "jobs": args.jobs, "memory_mb": args.memory, "cpu_seconds": args.cpu_time,
            "timeout": args.timeout}
    print(table_text(rows), end="")
    print(counts_line(rows))
    try:
        files = write_class_files(out, rows, meta)
    except OSError as error:
        print(f"error: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {files['csv']}, {files['json']} and {files['html']}", file=sys.stderr)
    return 0 if all(row["agrees"] for row in rows) else 1


def run(engine: EngineProcess, found: dict, docs: list, golden, steps: int, overrides: dict, quiet: bool = False):
    """Train the engine in its process; meanwhile make the golden trace if it is made here."""
    num_samples = len(wanted_samples(golden, steps)) if golden is not None else 3
    config = golden_config(golden) if golden is not None else get_config("microgpt", **overrides)
    engine.start_certify(docs, steps, num_samples, config.to_dict(), golden["seed"] if golden else 42)
    if golden is None:
        print(f"making the golden trace of this model ({', '.join(f'{k} {v}' for k, v in overrides.items())}) "
              f"with the project's engine", file=sys.stderr)
        golden = make_golden(docs, steps, num_samples, "microgpt", 42, overrides)
    num_steps = golden["num_steps"]

    def show(record):
        if not quiet:
            print(f"step {record.step:4d} / {num_steps:4d} | loss {record.printed}", flush=True)

    from compare.probe_check import check_probes  # torch: the oracle of the probes

    probes = check_probes(found["probes"])
    return judge_run(engine.record_run, golden, steps, on_step=show, passthrough=(EngineFailure,)), probes


def verdict(certificate, probes, args) -> int:
    from compare.render import probe_table

    if (not probes.agrees or probes.notes) and not args.quiet:
        print(probe_table(probes), end="")
    if not certificate.passed:
        print(f"FAIL: {certificate.difference.message}")
        return 1
    if not probes.agrees:
        wrong = "; ".join(r.message for r in probes.faults)
        print(f"FAIL: the training log matches, but {len(probes.faults)} operator probe(s) fail: {wrong}")
        return 1
    samples = ", then the sampled names" if certificate.samples_compared else ""
    print(f"PASS: {args.engine} matches the golden trace for {args.steps} steps: each loss within "
          f"{LOSS_TOLERANCE.rtol:g} relative and as printed, each tensor's gradient norm within "
          f"{GRAD_NORM_TOLERANCE.rtol:g} relative{samples}; every operator probe agrees with torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
