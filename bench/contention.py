"""Section `contention`: batched training while another process holds a core.

scripts/train_torch.py in batched mode, as a user runs it, three ways in turn for
`--contention-rounds` rounds: on one thread with the machine otherwise idle (the quiet
single-thread figure); with its default thread settings and the machine idle; and with its
default thread settings while a busy process (a Python loop) is pinned to the last core.
The target: contended at least 0.9x the quiet single-thread figure (OpenMP threads that
spin while waiting for a busy core otherwise slow a step down many times).

Steps per second come from the moments the trainer's progress lines arrive (one every
`--contention-every` steps, with a tiny validation set, so evaluating costs little): the
rate between the first and the last line, start-up left out. Tokens per second multiply
it by the mean non-padding targets of the batches in that stretch, drawn again here in
the trainer's order. The fastest round counts (other processes only ever slow a run down).
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys

from microgpt_scalar.cli import MAX_BATCH, MAX_STEPS, int_from, seconds

from .common import (SEED, CheckFailed, child_env, default_data, read_docs, run_process, torch_start,
                     train_torch_batched_command)

TARGET_RATIO = 0.9  # contended, default settings, against quiet, one thread
VAL_FRACTION = 0.002  # a validation set of ~60 names: evaluating it costs a fraction of a step
STEP_LINE = re.compile(r"step\s+(\d+)\s*/")


@contextlib.contextmanager
def busy_core(cpu: int):
    """A process spinning on `cpu` for the duration."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(process.pid, {cpu})
        yield process.pid
    finally:
        process.kill()
        process.wait()


def steps_per_second(lines: list, stopped_after_s: float | None = None) -> tuple[float, int, int]:
    """(rate, first step, last step) between the first and the last progress line. A run
    stopped before its second line is rated from its start (start-up counted as training)."""
    stamped = [(t, int(m.group(1))) for t, line in lines if (m := STEP_LINE.match(line))]
    if len(stamped) < 2 and stopped_after_s is not None:
        done = stamped[-1][1] if stamped else 0
        return done / stopped_after_s, 0, max(done, 1)
    if len(stamped) < 2:
        raise CheckFailed(f"the trainer printed {len(stamped)} progress line(s); two are needed for a rate")
    (t0, first), (t1, last) = stamped[0], stamped[-1]
    return (last - first) / (t1 - t0), first, last


def tokens_per_step(docs: list[str], preset: str, batch_size: int, first: int, last: int) -> float:
    """Mean non-padding targets of the batches of steps first+1 .. last, in the trainer's order."""
    import torch

    from microgpt_torch.train import batch_order

    config, _, train_tokens, _, _, _ = torch_start(docs, preset, SEED, val_fraction=VAL_FRACTION)
    lengths = [min(config.block_size, len(tokens) - 1) for tokens in train_tokens]
    order = batch_order(len(train_tokens), batch_size, torch.Generator().manual_seed(SEED))
    counts = [sum(lengths[i] for i in next(order)) for _ in range(last)]
    return sum(counts[first:last]) / (last - first)


def measure(args, data: str, setting: str) -> dict:
    """One trainer run in `setting`: "quiet, 1 thread", "quiet, default" or "contended, default"."""
    flags = ["--val-fraction", str(VAL_FRACTION), "--preset", args.preset[0]]
    if setting.endswith("1 thread"):
        flags += ["--threads", "1"]
    command = train_torch_batched_command(data, args.contention_batch_size, args.contention_steps,
                                                  args.contention_every, *flags)
    env = child_env(PYTHONUNBUFFERED="1")  # each progress line leaves as it is printed
    with busy_core((os.cpu_count() or 1) - 1) if setting.startswith("contended") else contextlib.nullcontext():
        done = run_process(command, timeout=args.contention_timeout, env=env)
    if done.stopped is None:
        done.check()
    rate, first, last = steps_per_second(done.lines, done.wall_s if done.stopped else None)
    return {"steps_per_s": rate, "first_step": first, "last_step": last, "wall_s": done.wall_s,
            "stopped": done.stopped}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("contention section (preset: the first --preset)")
    group.add_argument("--contention-batch-size", type=int_from(1, MAX_BATCH), default=256)
    group.add_argument("--contention-steps", type=int_from(1, MAX_STEPS), default=300, help="training steps per run")
    group.add_argument("--contention-every", type=int_from(1, MAX_STEPS), default=50, help="steps between the trainer's progress lines")
    group.add_argument("--contention-rounds", type=int_from(1, 1000), default=2, help="runs of each setting, in turn")
    group.add_argument("--contention-timeout", type=seconds, default=120.0,
                       help="seconds after which a run is stopped (its rate is then taken from the lines so far)")


SETTINGS = ("quiet, 1 thread", "quiet, default", "contended, default")


def run(args) -> dict:
    if min(args.contention_batch_size, args.contention_every, args.contention_rounds) < 1 \
            or args.contention_steps < 2 * args.contention_every or args.contention_timeout <= 0:
        raise ValueError("--contention-* must be positive, and --contention-steps at least twice --contention-every")
    data = args.data or default_data()
    runs = {setting: [] for setting in SETTINGS}
    for _ in range(args.contention_rounds):
        for setting in SETTINGS:
            runs[setting].append(measure(args, data, setting))
    docs = read_docs(data)
    rows = {}
    for setting, measured in runs.items():
        best = max(measured, key=lambda m: m["steps_per_s"])
        tokens = tokens_per_step(docs, args.preset[0], args.contention_batch_size, best["first_step"], best["last_step"])
        rows[setting] = {"tokens_per_s": best["steps_per_s"] * tokens, "steps_per_s": best["steps_per_s"],
                         "steps_per_s_runs": [m["steps_per_s"] for m in measured],
                         "stopped": [m["stopped"] for m in measured if m["stopped"]]}
    quiet = rows["quiet, 1 thread"]["tokens_per_s"]
    for row in rows.values():
        row["x_quiet_1_thread"] = row["tokens_per_s"] / quiet
    ratio = rows["contended, default"]["x_quiet_1_thread"]
    return {
        "what": "batched training (scripts/train_torch.py) quiet and with a busy process on the other core",
        "preset": args.preset[0], "batch_size": args.contention_batch_size, "rounds": args.contention_rounds,
        "busy_cpu": (os.cpu_count() or 1) - 1,
        "rows": rows,
        "target": {"contended_x_quiet_1_thread_at_least": TARGET_RATIO, "met": ratio >= TARGET_RATIO},
    }


def table(figures: dict) -> str:
    target = figures["target"]
    lines = [f"contention: batched training, {figures['preset']}, batch {figures['batch_size']}, fastest of "
             f"{figures['rounds']} runs; the busy process on CPU {figures['busy_cpu']}",
             f"  {'setting':<20} {'tokens/s':>11} {'steps/s':>8} {'x quiet 1 thread':>16}  steps/s of every run"]
    for setting, row in figures["rows"].items():
        runs = " ".join(f"{r:.1f}" for r in row["steps_per_s_runs"])
        stopped = f" ({len(row['stopped'])} stopped early)" if row["stopped"] else ""
        lines.append(f"  {setting:<20} {row['tokens_per_s']:>11,.0f} {row['steps_per_s']:>8.1f} "
                     f"{row['x_quiet_1_thread']:>16.2f}  {runs}{stopped}")
    lines.append(f"  target: contended, default >= {target['contended_x_quiet_1_thread_at_least']:g}x quiet, 1 thread: "
                 f"{'met' if target['met'] else 'missed'}")
    return "\n".join(lines)


def targets_missed(figures: dict) -> list[str]:
    return [] if figures["target"]["met"] else [f"contended >= {TARGET_RATIO:g}x quiet single-thread"]
