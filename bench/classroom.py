"""Section `classroom`: a whole class checked at once against each engine checked alone.

A class of `--class-engines` engines is written into a temporary folder: right ones in
several styles, wrong ones (one local gradient changed), one without log and exp, and four
that misbehave (allocate without bound, fork, sleep forever, write outside their folder).
`scripts/certify.py --engines FOLDER --jobs J` checks them all; then each engine is checked
alone by the same command (`--engines FILE --jobs 1`); then the class again. The figure is
the class's wall time (the median of its two runs) over the sum of the single-engine wall
times: the target is at most 0.6 on 2 cores. The peak memory is the largest resident memory
of any engine's process (every one runs under --max-memory), and of the command's own process.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from microgpt_scalar.cli import int_from, seconds

from .common import REPO, SCRIPTS, run_process

TARGET_RATIO = 0.6
ENGINES = REPO / "tests" / "engines"
BACKWARD = "    def backward(self):\n"
WRONG_EDITS = {"exp": ("(math.exp(self.data),))", "(1.0,))"), "mul": ("(other.data, self.data))", "(self.data, other.data))"),
               "relu": ("(float(self.data > 0),))", "(1.0,))"), "log": ("(1 / self.data,))", "(self.data,))")}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("classroom section")
    group.add_argument("--class-engines", type=int_from(9, 1000), default=20, help="engines in the class (at least 9)")
    group.add_argument("--class-jobs", type=int_from(1, 256), default=2, help="--jobs of the class run")
    group.add_argument("--class-steps", type=int_from(1, 1000), default=1,
                       help="--steps of the golden trace checked per engine")
    group.add_argument("--class-timeout", type=seconds, default=20, help="--timeout of every run (the sleeping engine's)")


def write_class(folder: Path, count: int) -> dict:
    """The engines, as files in `folder`; returns name -> the verdict expected."""
    base = (ENGINES / "local_gradients.py").read_text()
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    misbehaving = {
        "hog": "        hoard = []\n        while True:\n            hoard.append(bytearray(64 * 2**20))\n",
        "forks": "        import os, time\n        if os.fork() == 0:\n            time.sleep(10**6)\n",
        "sleeps": "        import time\n        time.sleep(10**6)\n",
        "writer": f"        open({str(outside / 'written.txt')!r}, 'w').write('x')\n",
    }
    expected = {}
    for name, body in misbehaving.items():
        (folder / f"bad_{name}.py").write_text(base.replace(BACKWARD, BACKWARD + body))
        expected[f"bad_{name}"] = "ERROR"  # refused by the sandbox, or past its limits
    (folder / "missing.py").write_text((ENGINES / "without_log_exp.py").read_text())
    expected["missing"] = "MISSING"
    for name, (old, new) in WRONG_EDITS.items():
        (folder / f"wrong_{name}.py").write_text(base.replace(old, new))
        expected[f"wrong_{name}"] = "DISAGREE"
    styles = [REPO / "tests" / "fixtures" / "learner_engine.py", ENGINES / "closures.py", ENGINES / "dict_graph.py",
              ENGINES / "local_gradients.py"]
    for i in range(count - len(expected)):
        (folder / f"right_{i:02d}.py").write_text(styles[i % len(styles)].read_text())
        expected[f"right_{i:02d}"] = "AGREE"
    return expected


def certify_command(engines: str, jobs: int, args, out: Path) -> list:
    return [sys.executable, str(SCRIPTS / "certify.py"), "--engines", engines, "--jobs", str(jobs), "--steps",
            str(args.class_steps), "--timeout", str(args.class_timeout), "--out", str(out), "-q"]


def run(args) -> dict:
    if args.class_engines < 9:
        raise ValueError("--class-engines must be at least 9 (the four misbehaving, four wrong, one missing)")
    with tempfile.TemporaryDirectory(prefix="bench-class-") as directory:
        folder = Path(directory) / "class"
        folder.mkdir()
        expected = write_class(folder, args.class_engines)
        runs, rows = [], {}
        single_walls = {}

        def class_run():
            out = Path(directory) / f"out{len(runs)}"
            finished = run_process(certify_command(str(folder), args.class_jobs, args, out))
            runs.append(finished)
            got = json.loads((out / "class.json").read_text())["engines"]
            rows.update({row["engine"]: row for row in got})

        class_run()
        for name in sorted(expected):
            finished = run_process(certify_command(str(folder / f"{name}.py"), 1, args, Path(directory) / "single"))
            single_walls[name] = finished.wall_s
        class_run()
    wrong_rows = {name: (rows[name]["verdict"], want) for name, want in expected.items() if rows[name]["verdict"] != want}
    class_wall = statistics.median(run.wall_s for run in runs)
    ratio = class_wall / sum(single_walls.values())
    return {
        "what": f"certify --engines on a class of {args.class_engines} engines with --jobs {args.class_jobs}, against "
                f"the sum of each engine checked alone by the same command (class, singles, class, in turn)",
        "engines": args.class_engines, "jobs": args.class_jobs, "steps": args.class_steps,
        "class_wall_s": [run.wall_s for run in runs], "class_median_s": class_wall,
        "single_wall_s": single_walls, "single_sum_s": sum(single_walls.values()),
        "ratio": ratio,
        "engine_peak_mib": max((row.get("engine_peak_mib") or 0) for row in rows.values()),
        "command_peak_mib": max(run.max_rss_mib for run in runs),
        "rows_as_expected": not wrong_rows, "rows_not_as_expected": wrong_rows,
        "target": {"ratio_at_most": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
    }


def table(figures: dict) -> str:
    return "\n".join([
        f"classroom: {figures['engines']} engines, --jobs {figures['jobs']}: the class took "
        f"{figures['class_median_s']:.1f} s, each alone {figures['single_sum_s']:.1f} s in all: "
        f"{figures['ratio']:.2f}x (target <= {TARGET_RATIO})",
        f"  peak resident memory: an engine's process {figures['engine_peak_mib']:.0f} MiB, the command's "
        f"{figures['command_peak_mib']:.0f} MiB; every row as expected: {figures['rows_as_expected']}",
    ])


def targets_missed(figures: dict) -> list:
    return [] if figures["target"]["met"] else [f"classroom ratio {figures['ratio']:.2f} > {TARGET_RATIO}"]
