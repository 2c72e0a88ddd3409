"""The command that checks one exercise: `python scripts/exercise.py NAME`.

It runs the check (`tutorial.exercises.run`) on the learner's file in a process of its own
(`tutorial.own_process`), under a time and a memory limit, and prints its report.
"""
from __future__ import annotations

from .exercises import BY_NAME, DEFAULT_TIMEOUT_S, REPO, STEPS, shown_path


def listing() -> list[str]:
    return [f"{step.number:2d}  {step.name:11} {step.title}   ({step.stub})" for step in STEPS]


def main(argv=None) -> int:
    from microgpt_scalar.cli import OneLineParser, int_from, print_error
    from microgpt_scalar.files import FileError, check_input, escape_controls

    from .own_process import ProcessLimits, check_in_own_process

    names = ", ".join(step.name for step in STEPS)
    parser = OneLineParser(description="Check one exercise of the tutorial against the scalar engine, in a process "
                                       "of its own. Exit 0: it agrees; 1: it differs (the report says where); "
                                       "2: it could not be checked (one line on stderr says why).")
    parser.add_argument("name", nargs="?", choices=[step.name for step in STEPS], metavar="NAME",
                        help="the exercise: " + names)
    parser.add_argument("--file", help="check this file instead of docs/exercises/NAME.py")
    parser.add_argument("--list", action="store_true", help="list the exercises")
    parser.add_argument("--timeout", type=int_from(1, 24 * 3600), default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"time the check of your file may take (default {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--max-memory", type=int_from(256, 1 << 24), default=ProcessLimits().memory_mb, metavar="MB",
                        help=f"memory (address space) the check's process may use (default {ProcessLimits().memory_mb})")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(listing()))
        return 0
    if args.name is None:
        print_error(f"name the exercise to check, one of: {names} (python scripts/exercise.py --list)")
        return 2
    step = BY_NAME[args.name]
    try:
        path = check_input(args.file if args.file is not None else REPO / step.stub,
                           "--file" if args.file is not None else "the exercise file")
    except FileError as error:  # no such file, a directory, a FIFO, a name no file can have
        print_error(error)
        return 2
    outcome = check_in_own_process(args.name, path.resolve(), ProcessLimits(args.timeout, args.max_memory))
    if outcome.lines:
        print("\n".join(escape_controls(line) for line in outcome.lines))
    if outcome.printed:
        print(f"what {shown_path(path)} printed (its own output, not the check's):")
        print("\n".join(f"  | {escape_controls(line)}" for line in outcome.printed))
    if outcome.error:
        print_error(outcome.error)
        return 2
    return 0 if outcome.passed else 1
