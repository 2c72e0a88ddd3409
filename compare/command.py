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
import textwrap

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts: the tensors are tiny, extra threads only wait

from compare.engine.faults import FAULTS  # noqa: E402
from compare.engine.process import DEFAULT_TIMEOUT, EngineFailure, EngineProcess, EngineRefused  # noqa: E402
from compare.engine.sandbox import add_limit_flags, limits_from  # noqa: E402
from compare.report.plot import plot_gradients, require_matplotlib  # noqa: E402
from compare.report.render import cause_block, early_block, fault_list, render, verdict  # noqa: E402
from compare.report.saved import FORMAT, VERSION, save_report  # noqa: E402
from compare.report.summary import failure_summary, refusal_summary  # noqa: E402
from compare.request import CompareRequest  # noqa: E402
from microgpt_scalar.cli import (OneLineParser, UsageError, add_quiet_flag, add_size_flags,  # noqa: E402
                                 check_scalar_model_fits, command, non_negative_int, print_error, seconds,
                                 seed_number, step_count)
from microgpt_scalar.files import check_input, claim_output, write_atomically  # noqa: E402
from microgpt_torch.device_names import DEVICE_NAMES, parse_device  # noqa: E402


EPILOG = ("--engine FILE runs every top-level statement of FILE, one at a time, in a process of its own; "
          "a statement that reaches the network, starts a process, writes a file, waits for input, runs "
          "for more than a second or fails is skipped, and every skipped line is listed with its reason. "
          "Every operation the class defines that torch has (in-place and reflected forms, 2.0 ** a, tanh, "
          "sqrt, ...) is probed on its own, and the table is printed before the step starts; an operation "
          "it lacks is named as not checked. A wrong engine gets its likely cause and the line to look at. "
          "A step is stopped once it takes 20 times what the engine's speed on the probes predicts "
          "(--timeout is a hard limit). Exit 0: everything agrees; 1: anything disagrees, or the engine "
          "fails, exits, crashes or hangs; 2: bad usage or input, or the engine lacks an operation the "
          "model needs.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, epilog=textwrap.fill(EPILOG, 100))
    parser.add_argument("--preset", default="microgpt", help="microgpt (default) or microgpt-v2")
    parser.add_argument("--weights", default="dense",
                        help="dense: every matrix drawn, none zero (default); reference: microgpt's own "
                             "initialisation (attn_wo and mlp_fc2 zero); or PATH to a checkpoint of either engine")
    parser.add_argument("--doc", action="append", help="a document to train on (repeat for more); "
                                                       "default: six built-in names")
    parser.add_argument("--data", help="a data file instead: one document per step, in the reference program's order")
    parser.add_argument("--seed", type=seed_number, default=42, help="seed of the weights and the document order (default 42)")
    parser.add_argument("--steps", type=step_count, default=1, help="train both engines in lockstep this many steps")
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
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"hard limit on the time the engine under test may take to load and for each step (default "
                             f"{DEFAULT_TIMEOUT:g}); a step is stopped sooner, at 20x what its measured speed predicts")
    add_limit_flags(parser)
    add_quiet_flag(parser, "only the verdict's line on stdout")
    return parser.parse_args(argv)


def engine_file(spec: str | None) -> str | None:
    """The file of --engine FILE[:CLASS]."""
    if spec is None:
        return None
    head, sep, tail = spec.rpartition(":")
    return head if sep and tail.isidentifier() and head else spec


def check_inputs(args) -> None:
    """The files the run reads are regular files (a FIFO would hang the run, a device never ends)."""
    for what, path in (("--data", args.data), ("--engine", engine_file(args.engine))):
        if path is not None:
            check_input(path, what)
    if args.weights not in ("dense", "reference"):
        check_input(args.weights, "--weights")


def claim_outputs(args) -> None:
    """Before the run: claim --json and --plot, which replace neither an input of the run (its
    engine, data or weights) nor anything but a regular file (an earlier report is replaced)."""
    inputs = [args.data, args.weights, engine_file(args.engine)]
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        claim_output(path, flag, inputs=inputs, overwrite=True)


def check_early(args) -> CompareRequest:
    """The request of the flags, and the mistakes in them that need no engine: found before
    one is started."""
    if args.doc is not None and any(not doc.strip() for doc in args.doc):
        raise UsageError("--doc: a document needs at least one character other than spaces")
    request = CompareRequest.from_args(args)  # ValueError for a wrong combination, a bad preset or fault
    parse_device(args.device)
    check_scalar_model_fits(request.config)  # a model too big for the scalar engine
    check_inputs(args)
    if args.plot:
        require_matplotlib(args.plot)
    claim_outputs(args)
    return request


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_faults:
        print(fault_list(FAULTS), end="")
        return 0
    try:
        request = check_early(args)
        limits = limits_from(args, phases=args.steps + 3)
        with EngineProcess(args.engine, args.inject, args.timeout, limits) as engine_process:  # starts while torch loads
            from compare.check import compare_step  # imports torch

            def show_early(probes, skipped, notes):  # before the step starts: nothing is lost if it fails
                if not args.quiet:
                    print(early_block(probes, skipped, notes), end="", flush=True)

            report = compare_step(request, engine_process=engine_process, on_probes=show_early)
    except EngineFailure as error:
        if error.probes is not None and error.found is None and not args.quiet:  # it failed while probing
            print(early_block(error.probes, [], []), end="")
        causes = cause_block(getattr(error, "causes", None) or [])
        if causes:
            print(f"\n{causes}", flush=True)
        print_error(error)
        return save_summary(args.json, failure_summary(error), 1)
    except EngineRefused as error:
        if not args.quiet:
            print(early_block(error.found if not isinstance(error.found, dict) else None, error.skipped, []), end="")
        print_error(error)
        return save_summary(args.json, refusal_summary(error), 2)
    except ValueError as error:
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print_error("interrupted; nothing written")
        return 130
    print(verdict(report) if args.quiet else "\n" + render(report, early_shown=True), end="\n" if args.quiet else "")
    try:
        if args.json:
            save_report(args.json, report, values=args.json_values)
        if args.plot:
            plot_gradients(report, args.plot)
    except ValueError as error:  # a full disk, or another program wrote the file meanwhile
        print_error(error)
        return 2
    return 0 if report.agrees else 1


def save_summary(path, summary: dict, code: int) -> int:
    """--json for an engine that ended without a report: the summary alone; returns `code`."""
    if path:
        try:
            write_atomically(path, (json.dumps({"format": FORMAT, "version": VERSION, **summary}, indent=1)
                                    + "\n").encode("utf-8"))
        except ValueError as error:  # a full disk, or another program wrote the file meanwhile
            print_error(error)
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
