"""Train the same step in the scalar engine and in torch and compare every number.

    python scripts/compare_step.py                             # built-in documents, offline, seconds
    python scripts/compare_step.py --engine my_engine.py       # your own Value class
    python scripts/compare_step.py --inject grad-assign        # a known mistake: watch it get caught
    python scripts/compare_step.py --weights reference --steps 20 --fd 20 --json report.json
    python scripts/compare_step.py --engine my_engine.py --n-layer 8   # a deeper model
    python scripts/compare_step.py --list-faults
    microgpt-compare --engine my_engine.py -q --json report.json   # installed: the same command
    python -m compare --engine my_engine.py                        # the same again

--engine runs the code of the file it is given (in a separate process, with a time limit).

Exit codes: 0 everything agrees; 1 anything disagrees (or the engine under test fails,
exits, crashes or hangs); 2 bad usage or input (an engine that lacks an operation among
them), with a one-line error on stderr; 130 Ctrl-C. --json's "exit_code" is the same.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts: the tensors are tiny, extra threads only wait

from compare.faults import FAULTS, check_injection  # noqa: E402
from compare.isolation import DEFAULT_TIMEOUT, EngineFailure, EngineProcess, EngineRefused  # noqa: E402
from compare.plot import plot_gradients, require_matplotlib  # noqa: E402
from compare.render import fault_list, probe_table, render  # noqa: E402
from compare.report import FORMAT, VERSION, save_report  # noqa: E402
from compare.summary import failure_summary, refusal_summary  # noqa: E402
from microgpt_scalar.cli import (DEVICES, OneLineParser, UsageError, add_quiet_flag, add_size_flags,  # noqa: E402
                                 check_output_path, device_name,
                                 non_negative_int, positive_int, positive_real, seed_number, size_overrides)
from microgpt_scalar.checkpoint import write_atomically  # noqa: E402
from microgpt_scalar.config import get_config  # noqa: E402
from microgpt_torch.device_names import DEVICE_NAMES, parse_device  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--preset", default="microgpt", help="microgpt (default) or microgpt-v2")
    parser.add_argument("--weights", default="dense",
                        help="dense: every matrix drawn, none zero (default); reference: microgpt's own "
                             "initialisation (attn_wo and mlp_fc2 zero); or PATH to a checkpoint of either engine")
    parser.add_argument("--doc", action="append", help="a document to train on (repeat for more); "
                                                       "default: six built-in names")
    parser.add_argument("--data", help="a data file instead: one document per step, in the reference program's order")
    parser.add_argument("--seed", type=seed_number, default=42, help="seed of the weights and the document order (default 42)")
    parser.add_argument("--steps", type=positive_int, default=1, help="train both engines in lockstep this many steps")
    parser.add_argument("--device", default="cpu", help=f"the torch side's device: {DEVICE_NAMES} (default cpu)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="the torch side's dtype")
    parser.add_argument("--engine", metavar="FILE[:CLASS]", help="your own Value class (default class name Value)")
    parser.add_argument("--inject", metavar="FAULT", help="put a known fault into the scalar engine (see --list-faults)")
    parser.add_argument("--fd", type=non_negative_int, default=0, metavar="K",
                        help="also check K gradients against finite differences of the scalar engine's loss")
    parser.add_argument("--json", metavar="FILE",
                        help="write the report as JSON: verdict, agrees, exit_code, probes, missing, skipped_lines, "
                             "cause, tensors, and the whole report under \"report\" (also for an engine refused or "
                             "failing)")
    parser.add_argument("--json-values", action="store_true",
                        help="keep every gradient's value in both engines in the JSON (a few hundred KB)")
    parser.add_argument("--plot", metavar="FILE", help="scatter plot of scalar against torch gradients (needs matplotlib)")
    parser.add_argument("--list-faults", action="store_true", help="list the faults --inject knows, and exit")
    add_size_flags(parser, "a deeper model makes a deeper graph")
    parser.add_argument("--timeout", type=positive_real, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time the engine under test may take to load and for each step (default {DEFAULT_TIMEOUT:g})")
    add_quiet_flag(parser, "only the verdict's line on stdout")
    return parser.parse_args(argv)


def check_outputs(args) -> None:
    """Before the run: --json and --plot can be written, and replace neither an input nor
    anything but a regular file (an earlier report is replaced)."""
    inputs = [args.data, args.weights]
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        check_output_path(path, flag, inputs=inputs, overwrite=True)
    if args.json and args.plot and Path(args.json).resolve() == Path(args.plot).resolve():
        raise UsageError("--json and --plot name the same file")


def check_early(args, overrides: dict) -> None:
    """The mistakes in the flags that need no engine: found before one is started."""
    check_injection(args.inject, args.engine)
    parse_device(args.device)
    get_config(args.preset, **overrides)  # a bad preset or model size
    if args.plot:
        require_matplotlib(args.plot)
    check_outputs(args)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_faults:
        print(fault_list(FAULTS), end="")
        return 0
    overrides = size_overrides(args)
    try:
        check_early(args, overrides)
        with EngineProcess(args.engine, args.inject, args.timeout) as engine_process:  # starts while torch loads
            from compare.check import compare_step  # imports torch

            report = compare_step(preset=args.preset, weights=args.weights, docs=args.doc, data=args.data,
                                  seed=args.seed, steps=args.steps, dtype=args.dtype, device=args.device,
                                  engine=args.engine, inject=args.inject, fd=args.fd, overrides=overrides,
                                  timeout=args.timeout, engine_process=engine_process)
    except EngineFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return save_summary(args.json, failure_summary(error), 1)
    except EngineRefused as error:
        if error.found is not None:
            print(probe_table(error.found), end="")
        print(f"error: {error}", file=sys.stderr)
        return save_summary(args.json, refusal_summary(error), 2)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    print(render(report).splitlines()[0] if args.quiet else render(report), end="\n" if args.quiet else "")
    try:
        if args.json:
            save_report(args.json, report, values=args.json_values)
        if args.plot:
            plot_gradients(report, args.plot)
    except OSError as error:
        print(f"error: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    return 0 if report.agrees else 1


def save_summary(path, summary: dict, code: int) -> int:
    """--json for an engine that ended without a report: the summary alone; returns `code`."""
    if path:
        try:
            write_atomically(path, (json.dumps({"format": FORMAT, "version": VERSION, **summary}, indent=1)
                                    + "\n").encode("utf-8"))
        except OSError as error:
            print(f"error: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
            return 2
    return code


def run(argv=None) -> None:
    """The command: main(), then exit at once with its code."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the report is out: skip tearing torch down, which takes longer than the step


if __name__ == "__main__":
    run()
