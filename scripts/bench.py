"""Benchmarks, section by section: figures go to a JSON file, a table to stdout.

    python scripts/bench.py --data names.txt                 # every section (~5 minutes)
    python scripts/bench.py --only scalar --scalar-steps 10
    python scripts/bench.py --only torch --no-compile --batch-sizes 512
    python scripts/bench.py --preset microgpt-v2 --out /tmp/bench.json

Sections (`--only` picks some; the JSON file keeps the figures of the sections not run):

  scalar   one training step on the scalar engines, all three training from the same start:
           `plain`, the seeds' engine as the reference program runs it (kept in this file as
           the baseline); `per-op`, `microgpt_scalar.engine.Value` through `train_step`; and
           `fused`, `microgpt_scalar.fused.FusedValue` through the same `train_step`. Seconds,
           graph nodes and traced memory per step, and the speed-ups over `plain`. The three
           training logs must be identical, or the benchmark fails. Speed-ups are taken in
           this process's CPU time, which other processes on a shared machine do not inflate
           the way they do wall-clock time; both are recorded.

  torch    microgpt_torch on the CPU, on the first --preset. (a) The faithful run (float64,
           one thread, as scripts/train_torch.py runs it) against the same run on the per-op
           and fused engines, run in full, and on `plain`, extrapolated from a sample of
           steps; the printed logs must be identical. (b) Batched training throughput in
           float32 per batch size, thread count, eager and torch.compile'd, on shuffled
           batches and on batches grouped by length: tokens are non-padding targets, and
           padded positions are reported beside them; the best of several windows after
           warm-up, compile time apart (from an empty Inductor cache).
           Several threads need idle cores: while another process is busy, OpenMP's
           spinning threads slow down many times (OMP_WAIT_POLICY=PASSIVE resists that, at
           a cost to small batches).
           (c) The validation loss after --train-seconds of batched training, in the fastest
           setting (b) found for its batch size on shuffled batches, against the loss of the
           scalar engine's weights after its full run, on the same held-out documents.

  compare  the wall time of `python scripts/compare_step.py` (its defaults) as a subprocess,
           median of a few runs, and how one run splits between importing torch, the scalar
           and the torch side's setup and step, and the rest, timed in a fresh interpreter.

Data: --data FILE, else what the scripts use (./input.txt, else the names file, downloaded
once). Exit status: 0; 1 when a section's correctness check fails (or, with --strict, a speed
target is missed); 2 on bad input.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from microgpt_scalar.config import PRESETS, get_config  # noqa: E402
from microgpt_scalar.data import DataError, default_data_path, load_docs  # noqa: E402
from microgpt_scalar.engine import Value, topological_order  # noqa: E402
from microgpt_scalar.fused import FusedValue  # noqa: E402
from microgpt_scalar.optim import learning_rate_at  # noqa: E402
from microgpt_scalar.train import forward_loss, start_run, train_step  # noqa: E402

DEFAULT_OUT = REPO / "docs" / "bench.json"
SEED = 42  # the reference program's
MIB = 2**20


class CheckFailed(Exception):
    """A benchmark's correctness check failed; the message says where."""


# --- sections ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One named part of the benchmark: its own flags, its run and its table."""

    name: str
    add_arguments: Callable  # (argparse parser) -> None
    run: Callable  # (args) -> dict of JSON-ready figures; raises CheckFailed
    table: Callable  # (figures) -> str for stdout
    targets_missed: Callable = lambda figures: []  # (figures) -> the speed targets missed, named


# --- scalar: the seeds' plain engine, kept here as the baseline ----------------------------

class PlainValue:
    """The seeds' `Value` as the reference program has it, minus `__slots__`: the recursive
    topological sort, and nothing done about memory or the garbage collector. (The nested
    `build_topo` refers to itself, a cycle that keeps the walk's list of every node alive
    until the collector comes across it.)"""

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return PlainValue(self.data**other, (self,), (other * self.data**(other - 1),))

    def log(self):
        return PlainValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return PlainValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return PlainValue(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def backward(self):
        topo = []
        visited = set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


class PlainLoop:
    """The reference program's loop body: forward, backward, Adam; no `graph_scope`.

    The reference runs its loop at module level, so `loss` is a global: each step's graph
    stays alive until the next step's forward pass is done and `loss` is rebound.
    """

    def __init__(self):
        self.loss = None

    def __call__(self, model, optimizer, tokens, step):
        loss = forward_loss(model, tokens)
        self.loss = loss  # only now does the previous step's graph go
        loss.backward()
        optimizer.step(learning_rate_at(model.config, step), step)
        return loss.data


ENGINES = {  # name -> (value class, makes the function that takes one training step)
    "plain": (PlainValue, PlainLoop),
    "per-op": (Value, lambda: train_step),
    "fused": (FusedValue, lambda: train_step),
}
TARGETS = {"per-op": 3.0, "fused": 15.0}  # least speed-up over plain, in CPU time
BLOCK = 5  # steps an engine takes in one go before the next engine's turn


class Run:
    """One engine training from the reference start (seed 42); `advance()` takes a step."""

    def __init__(self, engine: str, docs: list[str], config):
        value_cls, make_step = ENGINES[engine]
        self.step_fn = make_step()
        self.docs, self.tokenizer, self.model, self.optimizer, _ = start_run(docs, config, SEED, value_cls)
        self.log, self.losses = [], []

    def tokens(self, step: int) -> list[int]:
        return self.tokenizer.encode(self.docs[step % len(self.docs)])

    def advance(self) -> None:
        step = len(self.losses)
        loss = self.step_fn(self.model, self.optimizer, self.tokens(step), step)
        self.losses.append(loss)
        self.log.append(log_line(step, self.model.config.num_steps, loss))

    def count_nodes(self) -> int:
        """Nodes in the graph of the next step (built and dropped; nothing is trained)."""
        return len(topological_order(forward_loss(self.model, self.tokens(len(self.losses)))))


def log_line(step: int, num_steps: int, loss: float) -> str:
    """The reference program's line for 0-based `step`."""
    return f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}"


def check_logs_identical(logs: dict) -> None:
    """Raise CheckFailed unless every engine's log has the same lines as the first's."""
    (first, reference), *others = logs.items()
    for name, log in others:
        if len(log) != len(reference):
            raise CheckFailed(f"{name} logged {len(log)} lines, {first} {len(reference)}")
        for i, (line, expected) in enumerate(zip(log, reference)):
            if line != expected:
                raise CheckFailed(f"{name}'s log differs from {first}'s at line {i + 1}: {line!r} != {expected!r}")


def check_runs_agree(runs: dict) -> None:
    """The printed logs, and the losses to the last bit, are the same for every engine."""
    check_logs_identical({name: run.log for name, run in runs.items()})
    check_logs_identical({name: [loss.hex() for loss in run.losses] for name, run in runs.items()})


def time_runs(runs: dict, steps: int) -> dict:
    """Take `steps` steps of every run, BLOCK at a time in turn, so that a change in the
    machine's load falls on every engine alike. Returns name -> (wall, cpu) seconds.

    A full collection (untimed) starts each block, so no engine pays for another's garbage;
    it also spares `plain` the collection of its last step's graph, which only lowers the
    speed-ups.
    """
    totals = {name: [0.0, 0.0] for name in runs}
    for start in range(0, steps, BLOCK):
        for name, run in runs.items():
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(min(BLOCK, steps - start)):
                run.advance()
            totals[name][0] += time.perf_counter() - wall
            totals[name][1] += time.process_time() - cpu
    return totals


def profile_run(run: Run, steps: int) -> dict:
    """Nodes and traced memory of each of the run's next `steps` steps.

    tracemalloc slows every allocation, so this pass is not timed. Memory is counted from
    just before the first profiled step (the parameters were made earlier): `step_peak_mib`
    is the most a step held at any moment (its graph and the walk over it, and whatever an
    earlier step left alive); `retained_mib` is what is still held after each step, flat
    when no step keeps anything of its graph.
    """
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        nodes, peaks, retained = [], [], []
        for _ in range(steps):
            nodes.append(run.count_nodes())
            tracemalloc.reset_peak()
            run.advance()
            current, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - start)
            retained.append(current - start)
    finally:
        tracemalloc.stop()
    return {
        "nodes_per_step": sum(nodes) / len(nodes),
        "step_peak_mib": max(peaks) / MIB,
        "retained_mib": [r / MIB for r in retained],
        "drift_mib": (retained[-1] - retained[0]) / MIB,
    }


def bench_preset(docs: list[str], preset: str, steps: int, memory_steps: int) -> dict:
    """Time, then profile, the three engines on one preset; raise CheckFailed on a log mismatch."""
    config = get_config(preset)
    runs = {name: Run(name, docs, config) for name in ENGINES}
    totals = time_runs(runs, steps)
    check_runs_agree(runs)
    engines = {name: {"wall_s_per_step": wall / steps, "cpu_s_per_step": cpu / steps}
               for name, (wall, cpu) in totals.items()}
    fresh = {name: Run(name, docs, config) for name in ENGINES}  # the profile pass starts over
    for name, run in fresh.items():
        engines[name].update(profile_run(run, memory_steps))
    check_runs_agree(fresh)
    plain = engines["plain"]
    for figures in engines.values():
        figures["speedup_cpu"] = plain["cpu_s_per_step"] / figures["cpu_s_per_step"]
        figures["speedup_wall"] = plain["wall_s_per_step"] / figures["wall_s_per_step"]
    return {
        "steps": steps,
        "memory_steps": memory_steps,
        "logs_identical": True,  # check_runs_agree raised otherwise
        "log_tail": runs["fused"].log[-3:],
        "engines": engines,
        "targets": {name: {"speedup_cpu_at_least": target, "met": engines[name]["speedup_cpu"] >= target}
                    for name, target in TARGETS.items()},
    }


def add_scalar_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scalar section")
    group.add_argument("--scalar-steps", type=int, default=40, help="timed training steps per engine and preset")
    group.add_argument("--scalar-memory-steps", type=int, default=3,
                       help="steps per engine profiled for nodes and memory (untimed)")


def run_scalar(args) -> dict:
    if args.scalar_steps < 1 or args.scalar_memory_steps < 1:
        raise ValueError("--scalar-steps and --scalar-memory-steps must be at least 1")
    docs = read_docs(args)
    presets = {preset: bench_preset(docs, preset, args.scalar_steps, args.scalar_memory_steps)
               for preset in args.preset}
    return {
        "what": "one scalar training step (forward, backward, Adam) per engine; speed-ups over plain",
        "presets": presets,
        "process_max_rss_mib": max_rss_mib(),
    }


def scalar_table(figures: dict) -> str:
    lines = []
    for preset, result in figures["presets"].items():
        lines.append(f"scalar training step, {preset}: {result['steps']} steps timed, "
                     f"{result['memory_steps']} profiled; training logs identical: yes")
        lines.append(f"  {'engine':<7} {'cpu s/step':>10} {'wall s/step':>11} {'x plain':>8} {'target':>7} "
                     f"{'nodes/step':>10} {'step peak MiB':>13} {'drift MiB':>9}  retained MiB after each step")
        for name, e in result["engines"].items():
            target = result["targets"].get(name)
            target_text = f">={target['speedup_cpu_at_least']:g}" + ("" if target["met"] else "!") if target else "-"
            retained = " ".join(f"{r:.2f}" for r in e["retained_mib"])
            lines.append(f"  {name:<7} {e['cpu_s_per_step']:>10.4f} {e['wall_s_per_step']:>11.4f} "
                         f"{e['speedup_cpu']:>8.1f} {target_text:>7} {e['nodes_per_step']:>10,.0f} "
                         f"{e['step_peak_mib']:>13.2f} {e['drift_mib']:>9.2f}  {retained}")
    lines.append(f"  (x plain is in CPU time; a target marked ! was missed; process max RSS "
                 f"{figures['process_max_rss_mib']:.0f} MiB)")
    return "\n".join(lines)


def read_docs(args) -> list[str]:
    """The documents of --data, or of the file the scripts default to (./input.txt, else
    the names file, downloaded once)."""
    return load_docs(args.data if args.data else default_data_path())


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MIB if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def scalar_targets_missed(figures: dict) -> list[str]:
    return [f"{preset} {name}" for preset, result in figures["presets"].items()
            for name, target in result["targets"].items() if not target["met"]]


# --- torch: the same model on tensors ---------------------------------------------------
# torch is imported inside the functions that use it, never at the top of this file: the
# compare section times `import torch` in a fresh interpreter that imports this module.

FAITHFUL_TARGET = 300.0  # least speed-up of the faithful torch run over each scalar engine's run
TOKENS_TARGET = 1_000_000  # non-padding target tokens per second, batched, float32, on the CPU
FAITHFUL_REPEATS = 3  # faithful torch runs (under a second each) before, between and after the scalar runs
WARMUP_STEPS = 8  # batched steps before any timing (grouped by length, the second width recompiles)
ENDLESS = 10**9  # num_steps for timing runs: the schedule's end is never reached


@contextmanager
def torch_threads(n: int):
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextmanager
def fresh_compile_cache():
    """An empty Inductor cache for the duration, so compile times are a first run's (a
    second run of the benchmark would otherwise find every kernel compiled already)."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    with tempfile.TemporaryDirectory(prefix="bench-inductor-") as directory, temporary_cache_dir(directory):
        yield


class Clock:
    """Wall-clock and CPU seconds since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def torch_start(docs: list[str], preset: str, **overrides):
    """The reference start on the torch side, and the held-out split of the shuffled
    documents: (config, params, train tokens, validation tokens, shuffled docs, tokenizer)."""
    from microgpt_torch.train import reference_start, split_docs

    docs, tokenizer, config, params, _ = reference_start(docs, SEED, preset, **overrides)
    train_docs, val_docs = split_docs(docs)
    train_tokens = [tokenizer.encode(doc) for doc in train_docs]
    val_tokens = [tokenizer.encode(doc) for doc in val_docs]
    return config, params, train_tokens, val_tokens, docs, tokenizer


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
    from microgpt_torch.model import GPT
    from microgpt_torch.optim import make_optimizer, make_scheduler
    from microgpt_torch.train import faithful_steps, reference_start

    runs = []
    for _ in range(FAITHFUL_REPEATS):
        shuffled, tokenizer, config, params, _ = reference_start(docs, SEED, preset, num_steps=steps)
        model = GPT.from_scalar_params(config, params)  # float64: the scalar engine's initial weights
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config)
        gc.collect()
        clock = Clock()
        with torch_threads(1):
            losses = [loss for _, loss in faithful_steps(model, optimizer, scheduler, shuffled, tokenizer)]
            log = [log_line(step, steps, loss) for step, loss in enumerate(losses)]
        wall, cpu = clock.read()
        runs.append((cpu, wall, losses, log, model))
    return runs


def val_loss_of(config, params: dict, val_tokens: list) -> float:
    """Validation loss of scalar-layout weights, evaluated in float64."""
    from microgpt_torch.model import GPT
    from microgpt_torch.train import evaluate

    return evaluate(GPT.from_scalar_params(config, params), val_tokens)


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
    torch_config, _, _, val_tokens, _, _ = torch_start(docs, preset, num_steps=steps)
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

    from microgpt_torch.model import GPT
    from microgpt_torch.optim import make_optimizer, make_scheduler
    from microgpt_torch.train import batched_steps

    model = GPT.from_scalar_params(config, params, dtype=torch.float32)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    if compiled:
        torch._dynamo.reset()  # each measurement compiles from nothing (the disk cache aside)
    step_model = torch.compile(model, dynamic=None if grouped else False) if compiled else model
    generator = torch.Generator().manual_seed(SEED)
    return model, step_model, batched_steps(step_model, optimizer, scheduler, train_tokens, batch_size, generator,
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
    config, params, train_tokens, _, _, _ = torch_start(docs, preset, num_steps=ENDLESS)
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
    _, loss = step_model(idx, targets, fused=True)
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

    config, params, train_tokens, val_tokens, _, _ = torch_start(docs, preset, num_steps=ENDLESS)
    step_s = calibrate_step(config, params, train_tokens, batch_size, compiled)
    num_steps = max(1, int(seconds / step_s))
    config, params, _, _, _, _ = torch_start(docs, preset, num_steps=num_steps)
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

def add_torch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("torch section (preset: the first --preset, default microgpt)")
    group.add_argument("--faithful-steps", type=int, help="steps of the faithful comparison (default: the preset's)")
    group.add_argument("--plain-sample", type=int, default=20,
                       help="steps of the plain engine timed and extrapolated to the whole run (0: skip it)")
    group.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512, 2048], metavar="B",
                       help="batch sizes of the throughput figures")
    group.add_argument("--no-compile", action="store_true",
                       help="skip torch.compile (10-20 s to compile per batch size and thread count)")
    group.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}), metavar="N",
                       help="torch thread counts of the throughput figures (default: 1 and every CPU)")
    group.add_argument("--windows", type=int, default=5, help="timed windows per throughput figure")
    group.add_argument("--window-seconds", type=float, default=0.5, help="least length of a timed window")
    group.add_argument("--train-seconds", type=float, default=10.0, help="wall time of the time-budgeted run")
    group.add_argument("--train-batch-size", type=int, default=128,
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


def run_torch(args) -> dict:
    preset = args.preset[0]
    steps = check_torch_args(args, get_config(preset))
    docs = read_docs(args)
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


def torch_table(figures: dict) -> str:
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
        f"validation loss (held-out last 10% of the shuffled documents, loss per target):",
        f"  batched, {b['wall_s']:.1f} s of training (batch {b['batch_size']}, "
        f"{'compiled' if b['compiled'] else 'eager'}, {b['threads']} thread(s), {b['steps']} of {b['planned_steps']} "
        f"planned steps): "
        f"{b['val_loss']:.4f}",
        f"  the scalar engine's weights after its {f['steps']}-step run ({b['scalar_fused_run_s']:.1f} s on the fused "
        f"engine; last log line '{f['final_train_loss_line']}', a one-document loss): "
        f"{b['val_loss_scalar_weights']:.4f} (the faithful torch run's weights: {f['val_loss_torch_weights']:.4f})",
    ]


def torch_targets_missed(figures: dict) -> list[str]:
    missed = [f"faithful torch vs {name} x{target['torch_speedup_cpu_at_least']:g}"
              for name, target in figures["faithful"]["targets"].items() if not target["met"]]
    if not figures["throughput"]["target"]["met"]:
        missed.append(f"{TOKENS_TARGET:,} tokens/s")
    return missed


# --- compare: the wall time of the main job ---------------------------------------------

COMPARE_SCRIPT = REPO / "scripts" / "compare_step.py"
COMPARE_MODULES = ("compare", "compare.check", "compare.faults", "compare.plot", "compare.render", "compare.report")
DYNAMO = "torch._dynamo"
PIECES_CHILD = ("import json, sys; sys.path.insert(0, {scripts!r}); import bench; "
                "print(json.dumps(bench.compare_pieces()))")


def run_command(command: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a command run to its end; CheckFailed unless it exits 0."""
    clock = Clock()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = clock.read()[0]
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
        raise CheckFailed(f"`{' '.join(str(part) for part in command[1:])}` exited with {done.returncode}: {said}")
    return wall, done.stdout


def timed_calls(pieces: dict, label: str, function):
    """`function`, adding the seconds of every call to pieces[label]."""
    @functools.wraps(function)
    def timed(*args, **kwargs):
        clock = Clock()
        try:
            return function(*args, **kwargs)
        finally:
            pieces[label] = pieces.get(label, 0.0) + clock.read()[0]
    return timed


def import_dynamo_first(pieces: dict, function):
    """`function`, importing torch._dynamo (timed on its own) before its first call if
    nothing has yet: constructing a torch.optim optimizer imports it lazily."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        if DYNAMO not in sys.modules:
            clock = Clock()
            importlib.import_module(DYNAMO)
            pieces[f"import {DYNAMO} (lazily, by the torch side's Adam)"] = clock.read()[0]
        return function(*args, **kwargs)
    return wrapped


def instrument_compare(pieces: dict) -> None:
    """Time the two sides' setup and steps, and the comparison, wherever compare calls them."""
    from compare import check, sides

    for side, label in ((check.ChildScalar, "scalar"), (sides.TorchSide, "torch")):  # scalar: its process, awaited
        side.__init__ = timed_calls(pieces, f"{label} side setup", side.__init__)
        side.step = timed_calls(pieces, f"{label} step", side.step)
    sides.TorchSide.__init__ = import_dynamo_first(pieces, sides.TorchSide.__init__)
    check.compare_results = timed_calls(pieces, "comparison of the results", check.compare_results)


def compare_pieces() -> dict:
    """The default compare_step.py run, timed piece by piece in this process: call it in a
    fresh interpreter, where nothing is imported yet. Seconds per piece, in run order."""
    pieces = {}
    clock = Clock()
    import torch  # noqa: F401  (the import being timed)
    pieces["import torch"] = clock.read()[0]
    clock = Clock()
    for name in COMPARE_MODULES:  # what compare_step.py imports
        importlib.import_module(name)
    pieces["import compare and the project"] = clock.read()[0]
    from compare import compare_step
    from compare.render import render

    instrument_compare(pieces)
    imports = set(pieces)
    clock = Clock()
    report = compare_step()
    total = clock.read()[0]
    if not report.agrees:
        raise CheckFailed("the default comparison disagrees")
    timed_inside = sum(seconds for label, seconds in pieces.items() if label not in imports)
    pieces["rest of compare_step (weights, documents, report)"] = total - timed_inside
    clock = Clock()
    render(report)
    pieces["render"] = clock.read()[0]
    return pieces


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compare section")
    group.add_argument("--compare-runs", type=int, default=3,
                       help="runs of scripts/compare_step.py (the median is kept)")


def run_compare(args) -> dict:
    if args.compare_runs < 1:
        raise ValueError("--compare-runs must be at least 1")
    walls = [run_command([sys.executable, str(COMPARE_SCRIPT)])[0] for _ in range(args.compare_runs)]
    startup = statistics.median(run_command([sys.executable, "-c", "pass"])[0] for _ in range(3))
    child_wall, out = run_command([sys.executable, "-c", PIECES_CHILD.format(scripts=str(REPO / "scripts"))])
    pieces = {"interpreter start and exit (bare)": startup, **json.loads(out.strip().splitlines()[-1])}
    # What the clocks inside cannot see: chiefly the interpreter's exit, which tears down torch.
    pieces["exit after torch (the rest of that run's wall time)"] = child_wall - sum(pieces.values())
    return {
        "what": "wall time of `python scripts/compare_step.py` (defaults), and where it goes",
        "runs": args.compare_runs,
        "wall_s_median": statistics.median(walls),
        "wall_s": walls,
        "pieces_s": pieces,
        "pieces_sum_s": sum(pieces.values()),
        "pieces_measured": "one more run in a fresh interpreter, the pieces timed in-process around compare's "
                           "own functions; bare interpreter start and exit: median of 3 runs of `python -c pass`; "
                           "exit after torch: that run's wall time less every other piece",
    }


def compare_table(figures: dict) -> str:
    walls = ", ".join(f"{w:.2f}" for w in figures["wall_s"])
    lines = [f"compare: `python scripts/compare_step.py`, {figures['runs']} runs: "
             f"median {figures['wall_s_median']:.2f} s ({walls}); the comparison agrees",
             "  where the time goes (one run in a fresh interpreter, timed in-process):"]
    for label, seconds in figures["pieces_s"].items():
        lines.append(f"    {label:<58} {seconds:>6.2f} s")
    lines.append(f"    {'sum: that run':<58} {figures['pieces_sum_s']:>6.2f} s")
    return "\n".join(lines)


SECTIONS = [
    Section("scalar", add_scalar_arguments, run_scalar, scalar_table, scalar_targets_missed),
    Section("torch", add_torch_arguments, run_torch, torch_table, torch_targets_missed),
    Section("compare", add_compare_arguments, run_compare, compare_table),
]


# --- the command line -------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [section.name for section in SECTIONS]
    parser.add_argument("--only", nargs="+", choices=names, default=names, metavar="SECTION",
                        help=f"sections to run, of: {', '.join(names)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON figures (default: {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="a preset to benchmark; repeat for several (default: all)")
    parser.add_argument("--data", help="one document per line (default: the canonical names file)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a speed target is missed")
    for section in SECTIONS:
        section.add_arguments(parser)
    args = parser.parse_args(argv)
    args.preset = args.preset or list(PRESETS)
    return args


def machine(load_before: tuple) -> dict:
    """The machine a section ran on, and how busy it was (1, 5 and 15-minute load averages
    before and after the section: other processes slow the wall-clock figures down)."""
    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__ if torch else None,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(m: dict) -> str:
    before, after = (" ".join(f"{x:.2f}" for x in m[key]) for key in ("load_average_before", "load_average_after"))
    torch = f", torch {m['torch']}" if m["torch"] else ""
    return (f"  (machine: {m['cpu_model']}, {m['cpu_count']} CPUs, Python {m['python']}{torch}; "
            f"load average {before} before, {after} after)")


def cpu_model() -> str | None:
    """The model name /proc/cpuinfo gives (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def write_results(path: Path, new_sections: dict) -> None:
    """Merge the sections just run into the JSON file, keeping the others' figures (each
    section records the machine and date of its own run)."""
    try:
        sections = json.loads(path.read_text())["sections"] if path.is_file() else {}
    except (json.JSONDecodeError, KeyError, TypeError):
        sections = {}  # not a file of this benchmark's: start afresh
    sections.update(new_sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"sections": sections}, indent=2) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    done, status = {}, 0
    for section in SECTIONS:
        if section.name not in args.only:
            continue
        load_before = os.getloadavg()
        try:
            figures = section.run(args)
        except (DataError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except CheckFailed as error:
            print(f"error: {section.name}: {error}", file=sys.stderr)
            status = 1
            continue
        done[section.name] = {"machine": machine(load_before), **figures}
        print(section.table(figures))
        print(machine_line(done[section.name]["machine"]))
        missed = section.targets_missed(figures)
        if args.strict and missed:
            print(f"error: {section.name}: speed target missed: {', '.join(missed)}", file=sys.stderr)
            status = 1
    if done:
        write_results(args.out, done)
        print(f"figures written to {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
