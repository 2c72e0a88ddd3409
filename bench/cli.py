"""The benchmark's command line: `python scripts/bench.py [--only SECTION ...]`.

Each section writes its figures under its own name in the JSON file (the figures of the
sections not run are kept) and prints a table. Exit status: 0; 1 when a section's
correctness check fails (or, with --strict, a speed target is missed); 2 on bad input.
"""
from __future__ import annotations

import argparse
import os

from microgpt_scalar.cli import command, print_error
from microgpt_scalar.config import PRESETS
from microgpt_scalar.data import DataError
from microgpt_scalar.files import FileError, shown

from . import classroom, compare_wall, contention, kernels, memory, race, scalar, torch_cpu
from .common import REPO, CheckFailed, OneLineParser, Section, claim_out, machine, machine_line, write_results

DEFAULT_OUT = REPO / "docs" / "bench.json"

SECTIONS = [
    Section("scalar", scalar.add_arguments, scalar.run, scalar.table, scalar.targets_missed),
    Section("torch", torch_cpu.add_arguments, torch_cpu.run, torch_cpu.table, torch_cpu.targets_missed),
    Section("race", race.add_arguments, race.run, race.table, race.targets_missed),
    Section("compare", compare_wall.add_arguments, compare_wall.run, compare_wall.table, compare_wall.targets_missed),
    Section("contention", contention.add_arguments, contention.run, contention.table, contention.targets_missed),
    Section("memory", memory.add_arguments, memory.run, memory.table, memory.targets_missed),
    Section("kernels", kernels.add_arguments, kernels.run, kernels.table),
    Section("classroom", classroom.add_arguments, classroom.run, classroom.table, classroom.targets_missed),
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description="Benchmarks, section by section: figures go to a JSON file, a table to stdout.")
    names = [section.name for section in SECTIONS]
    parser.add_argument("--only", nargs="+", choices=names, default=names, metavar="SECTION",
                        help=f"sections to run, of: {', '.join(names)} (default: all)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"JSON figures (default: {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="a preset to benchmark; repeat for several (default: all)")
    parser.add_argument("--data", help="one document per line (default: the scripts' names file)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a speed target is missed")
    for section in SECTIONS:
        section.add_arguments(parser)
    args = parser.parse_args(argv)
    args.preset = args.preset or list(PRESETS)
    return args


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        claim_out(args.out)
    except FileError as error:
        print_error(error)
        return 2
    done, status = {}, 0
    for section in SECTIONS:
        if section.name not in args.only:
            continue
        load_before = os.getloadavg()
        try:
            figures = section.run(args)
        except (DataError, ValueError) as error:
            print_error(error)
            return 2
        except CheckFailed as error:
            print_error(f"{section.name}: {error}")
            status = 1
            continue
        done[section.name] = {"machine": machine(load_before), **figures}
        print(section.table(figures))
        print(machine_line(done[section.name]["machine"]), flush=True)
        missed = section.targets_missed(figures)
        if args.strict and missed:
            print_error(f"{section.name}: speed target missed: {', '.join(missed)}")
            status = 1
    if done:
        try:
            write_results(args.out, done)
        except FileError as error:
            print_error(error)
            return 2
        print(f"figures written to {shown(args.out)}")
    return status
