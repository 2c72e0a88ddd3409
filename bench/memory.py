"""Section `memory`: peak memory and time to the first step on a large data file.

A names file of `--memory-file-mb` megabytes is generated (the data file repeated, so
the vocabulary stays the same) and each program runs one step on it as a process of its
own: the batched trainer (scripts/train_torch.py --mode batched), the scalar trainer
(scripts/train_scalar.py) and the checker (scripts/compare_step.py --data). For each: the
peak resident memory of that process (os.wait4's ru_maxrss) and its wall time, which for
a one-step run is the time to the first step (plus exiting). Beside them, two footprints
that hold no data: a process that only imports torch, and the batched trainer itself on a
file of 1,000 names (torch's kernels, autograd, optimizer and threads at work). The target
for the batched trainer is at most 3x the file's size above the second; the first is shown
too. A run is stopped above `--memory-limit-mib` or after
`--memory-timeout` seconds, so that a runaway cannot take the machine; it then counts as
over its target.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from microgpt_scalar.cli import real_from, seconds

from .common import (MIB, compare_step_command, default_data, read_docs, run_process, train_scalar_command,
                     train_torch_batched_command)

FILE_FACTOR = 3.0  # the batched trainer's peak above torch's own footprint, at most this many times the file


def generate_names_file(source: str, path: Path, megabytes: float) -> int:
    """`path` filled with the lines of `source`, repeated to at least `megabytes` MB; its size."""
    text = Path(source).read_bytes().strip() + b"\n"
    copies = max(1, -(-int(megabytes * 1e6) // len(text)))  # ceiling division
    with open(path, "wb") as out:
        for _ in range(copies):
            out.write(text)
    return path.stat().st_size


SMALL_FILE_LINES = 1000  # the data of the trainer's own footprint


def programs(data: str, small: str) -> dict:
    """name -> command of one step on `data` (and the footprints, on `small` or no data)."""
    return {
        "batched trainer": train_torch_batched_command(data, 32, 1, 0),
        "batched trainer, 1,000 names (footprint)": train_torch_batched_command(small, 32, 1, 0),
        "scalar trainer": train_scalar_command("fused", data, 1, samples=0),
        "checker": compare_step_command("--data", data),
        "import torch": [sys.executable, "-c", "import torch"],
    }


def add_arguments(parser) -> None:
    group = parser.add_argument_group("memory section")
    group.add_argument("--memory-file-mb", type=real_from(0.001, 1e6), default=50.0, help="size of the generated names file")
    group.add_argument("--memory-limit-mib", type=real_from(1, 1e9), default=8000.0, help="a run is stopped above this")
    group.add_argument("--memory-timeout", type=seconds, default=300.0, help="a run is stopped after this many seconds")


def run(args) -> dict:
    if args.memory_file_mb <= 0 or args.memory_limit_mib <= 0 or args.memory_timeout <= 0:
        raise ValueError("--memory-file-mb, --memory-limit-mib and --memory-timeout must be positive")
    source = args.data or default_data()
    read_docs(source)  # a clear error for a bad --data before anything is generated
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as directory:
        data = Path(directory) / "names-large.txt"
        size = generate_names_file(source, data, args.memory_file_mb)
        small = Path(directory) / "names-small.txt"
        small.write_bytes(b"".join(Path(source).read_bytes().splitlines(keepends=True)[:SMALL_FILE_LINES]))
        runs = {}
        for name, command in programs(str(data), str(small)).items():
            done = run_process(command, timeout=args.memory_timeout, rss_limit_mib=args.memory_limit_mib)
            if done.stopped is None:
                done.check()
            runs[name] = {"peak_rss_mib": done.max_rss_mib, "wall_s": done.wall_s, "stopped": done.stopped}
    footprint = runs["batched trainer, 1,000 names (footprint)"]["peak_rss_mib"]
    file_mib = size / MIB
    batched = runs["batched trainer"]
    above = batched["peak_rss_mib"] - footprint
    return {
        "what": "peak RSS and wall time of a one-step run of each program on a generated names file",
        "file_mib": file_mib,
        "file": f"{Path(source).name} repeated to {args.memory_file_mb:g} MB",
        "runs": runs,
        "batched_above_footprint_mib": above,
        "batched_above_import_torch_mib": batched["peak_rss_mib"] - runs["import torch"]["peak_rss_mib"],
        "target": {"batched_above_footprint_at_most_file_times": FILE_FACTOR,
                   "met": batched["stopped"] is None and above <= FILE_FACTOR * file_mib},
    }


def table(figures: dict) -> str:
    target = figures["target"]
    lines = [f"memory: one step on {figures['file']} ({figures['file_mib']:.1f} MiB), each program a process",
             f"  {'program':<30} {'peak RSS MiB':>12} {'x file':>7} {'wall s':>8}"]
    for name, run in figures["runs"].items():
        stopped = f"  ({run['stopped']})" if run["stopped"] else ""
        lines.append(f"  {name:<30} {run['peak_rss_mib']:>12,.0f} {run['peak_rss_mib'] / figures['file_mib']:>7.1f} "
                     f"{run['wall_s']:>8.1f}{stopped}")
    lines.append(f"  batched trainer above its own footprint on 1,000 names: {figures['batched_above_footprint_mib']:,.0f} MiB, "
                 f"{figures['batched_above_footprint_mib'] / figures['file_mib']:.1f}x the file "
                 f"(target <= {target['batched_above_footprint_at_most_file_times']:g}x: "
                 f"{'met' if target['met'] else 'missed'}); above a bare import torch: "
                 f"{figures.get('batched_above_import_torch_mib', float('nan')):,.0f} MiB")
    return "\n".join(lines)


def targets_missed(figures: dict) -> list[str]:
    return [] if figures["target"]["met"] else [f"batched trainer's peak RSS <= {FILE_FACTOR:g}x the file + torch"]
