"""Section `torch`: microgpt_torch on the CPU, on the first --preset.

(a) The faithful run (float64, one thread, as scripts/train_torch.py runs it) against the
    same run on the per-op and fused engines, run in full, and on `plain`, extrapolated from
    a sample of steps; the printed logs must be identical.
(b) Batched training throughput in float32 per batch size, thread count, eager and
    torch.compile'd, on shuffled batches and on batches grouped by length: tokens are
    non-padding targets, and padded positions are reported beside them; the best of several
    windows after warm-up, compile time apart (from an empty Inductor cache). Several
    threads need idle cores (the `contention` section measures what happens without).
(c) The validation loss after --train-seconds of batched training, in the fastest setting
    (b) found for its batch size on shuffled batches, against the loss of the scalar
    engine's weights after its full run, on the same held-out documents.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import statistics
import tempfile
from contextlib import contextmanager

from microgpt_scalar.cli import MAX_BATCH, MAX_STEPS, int_from, seconds
from microgpt_scalar.config import get_config

from .common import SEED, Clock, check_logs_identical, log_line, max_rss_mib, read_docs, torch_start
from .scalar import Run

FAITHFUL_TARGET = 300.0  # least speed-up of the faithful torch run over each scalar engine's run
TOKENS_TARGET = 1_000_000  # non-padding target tokens per second, batched, float32, on the CPU
FAITHFUL_REPEATS = 3  # faithful torch runs (under a second each) before, between and after the scalar runs
WARMUP_STEPS = 8  # batched steps before any timing (grouped by length, the second width recompiles)
ENDLESS = 10**9  # num_steps for timing runs: the schedule's end is never reached


def torch_threads(n: int):
    """microgpt_torch.device.torch_threads, imported when first used (this module loads without torch)."""
    from microgpt_torch.device import torch_threads as threads

    return threads(n)


@contextmanager
def fresh_compile_cache():
    """An empty Inductor cache for the duration, so compile times are a first run's (a
    second run of the benchmark would otherwise find every kernel compiled already)."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    with tempfile.TemporaryDirectory(prefix="bench-inductor-") as directory, temporary_cache_dir(directory):
        yield


# (a) the faithful run against the scalar engines

def time_scalar_run(engine: str, docs: list[str], config) -> tuple[Run, dict]:
    """Every step of the run on a scalar engine, timed; returns the run (log, weights)."""
    run = Run(engine, docs, config)
    gc.collect()
    clock = Clock()
    for _ in range(config.num_steps):
        run.advance()
    wall, cpu = clock.read()
    return run, {"wall_s": wall, "cpu_s": cpu, "measured": "every step run"}


def estimate_plain_run(docs: list[str], config, sample: int) -> dict:
    """The plain engine's time for the whole run, from `sample` steps on the documents of
    steps 0, k, 2k, ... (k = num_steps / sample). A step's cost depends on its document's
    length, not on the weights, so the sample is timed from the start weights."""
    run = Run("plain", docs, config)
    steps = [i * config.num_steps // sample for i in range(sample)]
    gc.collect()
    clock = Clock()
    for step in steps:
        run.step_fn(run.model, run.optimizer, run.tokens(step), step)
    wall, cpu = clock.read()
    scale = config.num_steps / len(steps)
    return {"wall_s": wall * scale, "cpu_s": cpu * scale,
            "measured": f"extrapolated from {len(steps)} of {config.num_steps} steps"}


def time_torch_faithful(docs: list[str], preset: str, steps: int) -> list[tuple]:
    """The faithful run (float64, one thread, as scripts/train_torch.py runs it), timed
    FAITHFUL_REPEATS times: a list of (cpu s, wall s, losses, log, model)."""
    from microgpt_torch.fast import FusedGPT
    from microgpt_torch.optim import make_optimizer
    from microgpt_torch.train import faithful_steps

    runs = []
    for _ in range(FAITHFUL_REPEATS):
        config, params, _, _, shuffled, tokenizer = torch_start(docs, preset, SEED, num_steps=steps)
        model = FusedGPT.from_scalar_params(config, params)  # float64: the scalar engine's initial weights
        optimizer = make_optimizer(model, config)
        gc.collect()
        clock = Clock()
        with torch_threads(1):
            losses = [loss for _, loss in faithful_steps(model, optimizer, shuffled, tokenizer)]
            log = [log_line(step, steps, loss) for step, loss in enumerate(losses)]
        wall, cpu = clock.read()
        runs.append((cpu, wall, losses, log, model))
    return runs


def val_loss_of(config, params: dict, val_tokens: list) -> float:
    """Validation loss of scalar-layout weights, evaluated in float64."""
    from microgpt_torch.fast import FusedGPT
    from microgpt_torch.train import evaluate

    return evaluate(FusedGPT.from_scalar_params(config, params), val_tokens)


def bench_faithful(docs: list[str], preset: str, steps: int, plain_sample: int) -> dict:
    """The faithful torch run against the scalar engines' runs of the same steps; the
    printed logs must be identical. Also the final weights' validation loss.

    The torch runs are timed before, between and after the scalar ones and the median is
    compared: this machine's speed drifts over the minute the scalar runs take, and a
    ratio of two moments would carry that drift.
    """
    config = get_config(preset, num_steps=steps)
    scalar_runs, engines = {}, {}
    torch_runs = time_torch_faithful(docs, preset, steps)
    for name in ("per-op", "fused"):
        scalar_runs[name], engines[name] = time_scalar_run(name, docs, config)
        torch_runs += time_torch_faithful(docs, preset, steps)
    cpu, wall, losses, log, torch_model = sorted(torch_runs, key=lambda run: run[0])[len(torch_runs) // 2]
    engines["torch"] = {"wall_s": wall, "cpu_s": cpu,
                        "measured": f"median of {len(torch_runs)} full runs, before, between and after the scalar runs"}
    check_logs_identical({**{name: run.log for name, run in scalar_runs.items()}, "torch": log})
    if plain_sample:
        engines["plain"] = estimate_plain_run(docs, config, plain_sample)
    torch_time = engines["torch"]
    for figures in engines.values():
        figures["torch_speedup_cpu"] = figures["cpu_s"] / torch_time["cpu_s"]
        figures["torch_speedup_wall"] = figures["wall_s"] / torch_time["wall_s"]
    torch_config, _, _, val_tokens, _, _ = torch_start(docs, preset, SEED, num_steps=steps)
    return {
        "steps": steps,
        "logs_identical": True,  # check_logs_identical raised otherwise
        # How closely torch's float64 losses follow the scalar engine's, step by step.
        "max_loss_diff_vs_scalar": max(abs(a - b) for a, b in zip(losses, scalar_runs["per-op"].losses)),
        "log_tail": log[-3:],
        "engines": engines,
        "final_train_loss_line": log[-1],
        "val_loss_scalar_weights": val_loss_of(torch_config, scalar_runs["fused"].model.params_as_floats(), val_tokens),
        "val_loss_torch_weights": val_loss_of(torch_config, torch_model.scalar_params(), val_tokens),
        "targets": {name: {"torch_speedup_cpu_at_least": FAITHFUL_TARGET,
                           "met": engines[name]["torch_speedup_cpu"] >= FAITHFUL_TARGET}
                    for name in ("per-op", "fused")},
    }


# (b) batched throughput

def new_batched_run(config, params, train_tokens: list, batch_size: int, compiled: bool, grouped: bool = False):
    """(model, the model that steps, compiled or not, and the step generator): fresh float32
    weights, Adam and the batch order of the seed, grouped by length or not. Grouped batches
    vary in width: their model compiles for the first width, then once for any width
    (torch.compile's default), instead of once per width."""
    import torch

    from microgpt_torch.fast import BatchedGPT
    from microgpt_torch.optim import make_optimizer
    from microgpt_torch.train import batched_steps

    model = BatchedGPT.from_scalar_params(config, params, dtype=torch.float32)
    optimizer = make_optimizer(model, config)
    if compiled:
        torch._dynamo.reset()  # each measurement compiles from nothing (the disk cache aside)
    step_model = torch.compile(model, dynamic=None if grouped else False) if compiled else model
    generator = torch.Generator().manual_seed(SEED)
    return model, step_model, batched_steps(step_model, optimizer, train_tokens, batch_size, generator,
                                            group_by_length=grouped)


def batch_shapes(train_tokens: list, block_size: int, batch_size: int, num_batches: int,
                 grouped: bool = False) -> list[tuple[int, int]]:
    """(non-padding targets, padded positions B * T) of the first `num_batches` batches
    `batched_steps` draws for the seed: the same order, drawn again."""
    import torch

    from microgpt_torch.train import batch_order

    lengths = [min(block_size, len(tokens) - 1) for tokens in train_tokens]
    order = batch_order(len(train_tokens), batch_size, torch.Generator().manual_seed(SEED),
                        torch.tensor(lengths) if grouped else None)
    shapes = []
    for _ in range(num_batches):
        batch_lengths = [lengths[i] for i in next(order)]
        shapes.append((sum(batch_lengths), batch_size * max(batch_lengths)))
    return shapes


def time_windows(steps, windows: int, window_seconds: float) -> list[dict]:
    """Take steps in `windows` windows of at least window_seconds (and 3 steps) each."""
    timed = []
    for _ in range(windows):
        clock, n = Clock(), 0
        while n < 3 or clock.read()[0] < window_seconds:
            next(steps)
            n += 1
        wall, cpu = clock.read()
        timed.append({"steps": n, "wall_s": wall, "cpu_s": cpu})
    return timed


def measure_throughput(config, params, train_tokens: list, batch_size: int, compiled: bool, grouped: bool,
                       threads: int, windows: int, window_seconds: float) -> dict:
    """Steady-state tokens per second of batched training at one batch size: the best and
    the median of the windows (other processes only ever slow a window down)."""
    with torch_threads(threads):
        _, _, steps = new_batched_run(config, params, train_tokens, batch_size, compiled, grouped)
        clock = Clock()
        for _ in range(1 + WARMUP_STEPS):
            next(steps)  # compiles, if compiled
        warmup_s = clock.read()[0]
        timed = time_windows(steps, windows, window_seconds)
    first = 1 + WARMUP_STEPS  # the batches taken before the windows
    shapes = batch_shapes(train_tokens, config.block_size, batch_size, first + sum(w["steps"] for w in timed), grouped)
    for window in timed:
        counted, first = shapes[first:first + window["steps"]], first + window["steps"]
        window["tokens_per_s"] = sum(tokens for tokens, _ in counted) / window["wall_s"]
        window["padded_per_s"] = sum(padded for _, padded in counted) / window["wall_s"]
    best = max(timed, key=lambda w: w["tokens_per_s"])
    median = sorted(timed, key=lambda w: w["tokens_per_s"])[len(timed) // 2]
    step_s = best["wall_s"] / best["steps"]
    return {
        "batch_size": batch_size,
        "compiled": compiled,
        "grouped_by_length": grouped,
        "threads": threads,
        "tokens_per_s": best["tokens_per_s"],
        "tokens_per_s_median": median["tokens_per_s"],
        "padded_positions_per_s": best["padded_per_s"],
        "ms_per_step": 1000 * step_s,
        "cpu_per_wall": best["cpu_s"] / best["wall_s"],
        "compile_s": warmup_s - (1 + WARMUP_STEPS) * step_s if compiled else None,
        "windows": timed,
    }


def bench_throughput(docs: list[str], preset: str, batch_sizes: list, modes: list, threads: list, windows: int,
                     window_seconds: float) -> list[dict]:
    """One row per batch size, mode (eager, compiled), batch order (shuffled, grouped by
    length) and thread count."""
    config, params, train_tokens, _, _, _ = torch_start(docs, preset, SEED, num_steps=ENDLESS)
    return [measure_throughput(config, params, train_tokens, batch_size, compiled, grouped, n, windows, window_seconds)
            for compiled in modes for grouped in (False, True) for n in threads for batch_size in batch_sizes]


def fastest_setting(rows: list[dict], batch_size: int, threads: list, compiled: bool) -> tuple[bool, int]:
    """(compiled, threads) of the fastest shuffled-batch row at `batch_size`; without one, the
    given defaults. (The time-budgeted run keeps shuffled batches, the default of training.)"""
    rows = [row for row in rows if row["batch_size"] == batch_size and not row["grouped_by_length"]]
    if not rows:
        return compiled, max(threads)
    best = max(rows, key=lambda row: row["tokens_per_s"])
    return best["compiled"], best["threads"]


# (c) what ten seconds of batched training reach

def calibrate_step(config, params, train_tokens: list, batch_size: int, compiled: bool) -> float:
    """Seconds per batched step, the median of three windows of a throwaway run (which also
    leaves the compiled kernels in the cache for the run that counts)."""
    _, _, steps = new_batched_run(config, params, train_tokens, batch_size, compiled)
    for _ in range(1 + WARMUP_STEPS):
        next(steps)
    return statistics.median(w["wall_s"] / w["steps"] for w in time_windows(steps, 3, 0.5))


def compile_without_training(model, step_model, train_tokens: list, batch_size: int) -> None:
    """Run the compiled forward and backward once on the run's first batch and drop the
    gradients: the kernels are built before the clock starts, and no weight moves."""
    import torch

    from microgpt_torch.train import PackedDocuments, batch_order

    rows = next(batch_order(len(train_tokens), batch_size, torch.Generator().manual_seed(SEED)))
    idx, targets, _ = PackedDocuments.of(train_tokens, model.config.block_size).batch(rows)
    _, loss = step_model(idx, targets)
    loss.backward()
    model.zero_grad(set_to_none=True)


def bench_time_budget(docs: list[str], preset: str, batch_size: int, compiled: bool, threads: int,
                      seconds: float) -> dict:
    """Batched training for `seconds` of wall time from the reference start; the schedule's
    num_steps is set to the steps that fit, from a calibration run. Then the validation loss."""
    with torch_threads(threads):
        figures = time_budget_run(docs, preset, batch_size, compiled, seconds)
    return {"seconds": seconds, "batch_size": batch_size, "compiled": compiled, "threads": threads, **figures}


def time_budget_run(docs: list[str], preset: str, batch_size: int, compiled: bool, seconds: float) -> dict:
    from microgpt_torch.train import evaluate

    config, params, train_tokens, val_tokens, _, _ = torch_start(docs, preset, SEED, num_steps=ENDLESS)
    step_s = calibrate_step(config, params, train_tokens, batch_size, compiled)
    num_steps = max(1, int(seconds / step_s))
    config, params, _, _, _, _ = torch_start(docs, preset, SEED, num_steps=num_steps)
    model, step_model, steps = new_batched_run(config, params, train_tokens, batch_size, compiled)
    if compiled:
        compile_without_training(model, step_model, train_tokens, batch_size)
    clock, done, loss = Clock(), 0, math.nan
    for step, loss in steps:
        done = step + 1
        if clock.read()[0] >= seconds:
            break
    wall = clock.read()[0]
    return {
        "planned_steps": num_steps, "steps": done, "wall_s": wall, "last_train_loss": loss,
        "val_loss": evaluate(model, val_tokens),
    }


# the section

def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("torch section (preset: the first --preset, default microgpt)")
    group.add_argument("--faithful-steps", type=int_from(1, MAX_STEPS), help="steps of the faithful comparison (default: the preset's)")
    group.add_argument("--plain-sample", type=int_from(0, MAX_STEPS), default=20,
                       help="steps of the plain engine timed and extrapolated to the whole run (0: skip it)")
    group.add_argument("--batch-sizes", type=int_from(1, MAX_BATCH), nargs="+", default=[32, 128, 512, 2048], metavar="B",
                       help="batch sizes of the throughput figures")
    group.add_argument("--no-compile", action="store_true",
                       help="skip torch.compile (10-20 s to compile per batch size and thread count)")
    group.add_argument("--threads", type=int_from(1, os.cpu_count() or 1), nargs="+", default=sorted({1, os.cpu_count() or 1}), metavar="N",
                       help="torch thread counts of the throughput figures (default: 1 and every CPU)")
    group.add_argument("--windows", type=int_from(1, 1000), default=5, help="timed windows per throughput figure")
    group.add_argument("--window-seconds", type=seconds, default=0.5, help="least length of a timed window")
    group.add_argument("--train-seconds", type=seconds, default=10.0, help="wall time of the time-budgeted run")
    group.add_argument("--train-batch-size", type=int_from(1, MAX_BATCH), default=128,
                       help="batch size of the time-budgeted run (128 reached the lowest loss in 10 s of 64 .. 2048)")


def check_torch_args(args, config) -> int:
    """The faithful steps, after checking every torch flag; raises ValueError."""
    steps = config.num_steps if args.faithful_steps is None else args.faithful_steps
    checks = {
        "--faithful-steps": steps >= 1, "--plain-sample": 0 <= args.plain_sample <= steps,
        "--batch-sizes": all(b >= 1 for b in args.batch_sizes), "--threads": all(n >= 1 for n in args.threads),
        "--windows": args.windows >= 1, "--window-seconds": args.window_seconds > 0,
        "--train-seconds": args.train_seconds > 0, "--train-batch-size": args.train_batch_size >= 1,
    }
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"out of range: {', '.join(bad)}")
    return steps


def run(args) -> dict:
    preset = args.preset[0]
    steps = check_torch_args(args, get_config(preset))
    docs = read_docs(args.data)
    faithful = bench_faithful(docs, preset, steps, args.plain_sample)
    modes = [False] if args.no_compile else [False, True]
    with fresh_compile_cache() if not args.no_compile else contextlib.nullcontext():
        throughput = bench_throughput(docs, preset, args.batch_sizes, modes, args.threads, args.windows,
                                      args.window_seconds)
        compiled, threads = fastest_setting(throughput, args.train_batch_size, args.threads, not args.no_compile)
        budget = bench_time_budget(docs, preset, args.train_batch_size, compiled, threads, args.train_seconds)
    best = max(throughput, key=lambda row: row["tokens_per_s"])
    return {
        "what": "torch on the CPU: the faithful run against the scalar engines; batched float32 throughput; "
                "the validation loss of a time-budgeted batched run against the scalar engine's weights",
        "preset": preset,
        # Spinning OpenMP threads (the default) give the best 2-thread figures while the other
        # core is free and collapse when another process holds it; PASSIVE makes them sleep.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP's default: spin, then sleep)"),
        "faithful": faithful,
        "throughput": {
            "tokens": "non-padding target tokens (padded positions are counted separately)",
            "rows": throughput,
            "target": {"tokens_per_s_at_least": TOKENS_TARGET, "met": best["tokens_per_s"] >= TOKENS_TARGET},
        },
        "time_budget": {**budget, "val_loss_scalar_weights": faithful["val_loss_scalar_weights"],
                        "scalar_fused_run_s": faithful["engines"]["fused"]["wall_s"]},
        "process_max_rss_mib": max_rss_mib(),
    }


def table(figures: dict) -> str:
    return "\n".join([*faithful_lines(figures), *throughput_lines(figures), *budget_lines(figures)])


def faithful_lines(figures: dict) -> list[str]:
    f = figures["faithful"]
    lines = [f"torch, {figures['preset']}: faithful run of {f['steps']} steps (float64, 1 thread) against the scalar "
             f"engines; printed logs identical: yes; largest loss difference {f['max_loss_diff_vs_scalar']:.1e}",
             f"  {'engine':<7} {'cpu s':>8} {'wall s':>8} {'torch x (cpu)':>13} {'(wall)':>7} {'target':>7}  measured"]
    for name, e in f["engines"].items():
        target = f["targets"].get(name)
        target_text = f">={target['torch_speedup_cpu_at_least']:g}" + ("" if target["met"] else "!") if target else "-"
        lines.append(f"  {name:<7} {e['cpu_s']:>8.2f} {e['wall_s']:>8.2f} {e['torch_speedup_cpu']:>13.1f} "
                     f"{e['torch_speedup_wall']:>7.1f} {target_text:>7}  {e['measured']}")
    return lines


def throughput_lines(figures: dict) -> list[str]:
    t = figures["throughput"]
    lines = ["torch batched training, float32: tokens/s count non-padding targets; best window (median in brackets); "
             f"OMP_WAIT_POLICY {figures['omp_wait_policy']}",
             f"  {'batch':>6} {'compiled':>8} {'grouped':>7} {'threads':>7} {'tokens/s':>11} {'(median)':>11} "
             f"{'padded pos/s':>12} "
             f"{'ms/step':>8} {'cpu/wall':>8} {'compile s':>9}"]
    for row in t["rows"]:
        compile_text = f"{row['compile_s']:.1f}" if row["compile_s"] is not None else "-"
        lines.append(f"  {row['batch_size']:>6} {'yes' if row['compiled'] else 'no':>8} "
                     f"{'yes' if row['grouped_by_length'] else 'no':>7} {row['threads']:>7} "
                     f"{row['tokens_per_s']:>11,.0f} "
                     f"{row['tokens_per_s_median']:>11,.0f} {row['padded_positions_per_s']:>12,.0f} "
                     f"{row['ms_per_step']:>8.2f} {row['cpu_per_wall']:>8.2f} {compile_text:>9}")
    target = t["target"]
    lines.append(f"  target >= {target['tokens_per_s_at_least']:,} tokens/s: {'met' if target['met'] else 'missed'}")
    return lines


def budget_lines(figures: dict) -> list[str]:
    b, f = figures["time_budget"], figures["faithful"]
    return [
        "validation loss (held-out last 10% of the shuffled documents, loss per target):",
        f"  batched, {b['wall_s']:.1f} s of training (batch {b['batch_size']}, "
        f"{'compiled' if b['compiled'] else 'eager'}, {b['threads']} thread(s), {b['steps']} of {b['planned_steps']} "
        f"planned steps): "
        f"{b['val_loss']:.4f}",
        f"  the scalar engine's weights after its {f['steps']}-step run ({b['scalar_fused_run_s']:.1f} s on the fused "
        f"engine; last log line '{f['final_train_loss_line']}', a one-document loss): "
        f"{b['val_loss_scalar_weights']:.4f} (the faithful torch run's weights: {f['val_loss_torch_weights']:.4f})",
    ]


def targets_missed(figures: dict) -> list[str]:
    missed = [f"faithful torch vs {name} x{target['torch_speedup_cpu_at_least']:g}"
              for name, target in figures["faithful"]["targets"].items() if not target["met"]]
    if not figures["throughput"]["target"]["met"]:
        missed.append(f"{TOKENS_TARGET:,} tokens/s")
    return missed
