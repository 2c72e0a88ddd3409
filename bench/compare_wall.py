"""Section `compare`: the checker's default run against a process that only imports torch.

The target: `python scripts/compare_step.py` (its defaults) within 1.3x the wall time of
`python -c "import torch"`. The two commands run alternately, `--compare-runs` times each,
so that a change in the machine's load falls on both alike; the ratio is of the medians.

One more run of the checker, under `python -X importtime`, shows where its time goes,
without touching the library: the interpreter's start (a bare `python -c pass`), every
top-level import (torch, the project, and torch._dynamo if anything imports it, with
the cumulative microseconds `-X importtime` reports), the run itself, and the exit: the
time from the report's last line reaching the pipe to the process being gone, which is
chiefly torch being torn down.
"""
from __future__ import annotations

import re
import statistics
import sys

from microgpt_scalar.cli import int_from

from .common import compare_step_command, run_process

TARGET_RATIO = 1.3  # at most this many times the wall time of `python -c "import torch"`
DYNAMO = "torch._dynamo"
IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def imports_of(stderr: str) -> list[tuple[int, str, float]]:
    """(depth, module, cumulative seconds) of every import `-X importtime` reported; depth 0
    is an import that no other import started (the program's own, lazy ones included)."""
    return [(len(indent) // 2, name, int(cumulative) / 1e6)
            for _, cumulative, indent, name in IMPORT_LINE.findall(stderr)]


def add_arguments(parser) -> None:
    group = parser.add_argument_group("compare section")
    group.add_argument("--compare-runs", type=int_from(1, 1000), default=5,
                       help="runs of scripts/compare_step.py and of `python -c 'import torch'`, alternately")


def run(args) -> dict:
    if args.compare_runs < 1:
        raise ValueError("--compare-runs must be at least 1")
    compare_walls, torch_walls = [], []
    for _ in range(args.compare_runs):
        compare_walls.append(run_process(compare_step_command()).check().wall_s)
        torch_walls.append(run_process([sys.executable, "-c", "import torch"]).check().wall_s)
    ratio = statistics.median(compare_walls) / statistics.median(torch_walls)
    return {
        "what": "wall time of `python scripts/compare_step.py` (defaults) against `python -c 'import torch'`, "
                "run alternately; and where one run of the checker's time goes",
        "runs": args.compare_runs,
        "compare_step_wall_s": compare_walls,
        "import_torch_wall_s": torch_walls,
        "compare_step_median_s": statistics.median(compare_walls),
        "import_torch_median_s": statistics.median(torch_walls),
        "ratio": ratio,
        "target": {"ratio_at_most": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
        "pieces": split_a_run(),
    }


def split_a_run() -> dict:
    """Seconds of each piece of one checker run, and whether torch._dynamo was imported."""
    interpreter_own = {name for depth, name, _ in imports_of(run_process([sys.executable, "-X", "importtime", "-c",
                                                                          "pass"]).check().stderr) if depth == 0}
    startup = statistics.median(run_process([sys.executable, "-c", "pass"]).check().wall_s for _ in range(3))
    done = run_process([sys.executable, "-X", "importtime", *compare_step_command()[1:]])
    imports = imports_of(done.stderr)
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    done.check()
    top = [(name, s) for depth, name, s in imports if depth == 0 and name not in interpreter_own]
    torch_s = next((s for _, name, s in imports if name == "torch"), 0.0)  # counted once, wherever it came in
    lazy_dynamo_s = sum(s for name, s in top if name == DYNAMO)
    seconds = {"interpreter start and exit (bare `python -c pass`)": startup, "import torch": torch_s}
    if lazy_dynamo_s:
        seconds[f"import {DYNAMO} (lazily, while running)"] = lazy_dynamo_s
    seconds["every other import"] = sum(s for _, s in top) - torch_s - lazy_dynamo_s
    last_line_s = done.lines[-1][0]
    seconds["the run (weights, both sides' steps, comparison, report)"] = last_line_s - sum(seconds.values())
    seconds["exit after the report (tearing down)"] = done.wall_s - last_line_s
    dynamo = [s for _, name, s in imports if name == DYNAMO]
    return {
        "wall_s": done.wall_s,
        "seconds": seconds,
        "dynamo_imported": bool(dynamo),
        "dynamo_import_s": dynamo[0] if dynamo else None,
        "how": "one more run under `python -X importtime`: the imports no other import started (less a bare "
               "interpreter's), torch wherever it came in; the run is the time to the report's last line less "
               "the start and the imports; the exit is from that line to the process being gone",
    }


def table(figures: dict) -> str:
    target = figures["target"]
    lines = [f"compare: `python scripts/compare_step.py` against `python -c 'import torch'`, {figures['runs']} runs "
             f"each, alternately: medians {figures['compare_step_median_s']:.2f} s and "
             f"{figures['import_torch_median_s']:.2f} s, ratio {figures['ratio']:.2f} "
             f"(target <= {target['ratio_at_most']:g}: {'met' if target['met'] else 'missed'})",
             f"  compare_step runs (s): {' '.join(f'{w:.2f}' for w in figures['compare_step_wall_s'])}",
             f"  import torch runs (s): {' '.join(f'{w:.2f}' for w in figures['import_torch_wall_s'])}",
             f"  where one run's {figures['pieces']['wall_s']:.2f} s go (torch._dynamo imported: "
             f"{'yes, %.2f s' % figures['pieces']['dynamo_import_s'] if figures['pieces']['dynamo_imported'] else 'no'}):"]
    for label, seconds in figures["pieces"]["seconds"].items():
        lines.append(f"    {label:<60} {seconds:>6.2f} s")
    return "\n".join(lines)


def targets_missed(figures: dict) -> list[str]:
    return [] if figures["target"]["met"] else [f"compare_step within {TARGET_RATIO:g}x of import torch"]
