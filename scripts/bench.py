"""Benchmarks, section by section: figures go to a JSON file, a table to stdout.

    python scripts/bench.py                                  # every section (~1 minute idle)
    python scripts/bench.py --only scalar --scalar-steps 10
    python scripts/bench.py --preset microgpt-v2 --out /tmp/bench.json

Sections (`--only` picks some; the JSON file keeps the figures of the sections not run):

  scalar  one training step on the scalar engines, all three training from the same start:
          `plain`, the seeds' engine as the reference program runs it (kept in this file as
          the baseline); `per-op`, `microgpt_scalar.engine.Value` through `train_step`; and
          `fused`, `microgpt_scalar.fused.FusedValue` through the same `train_step`. Seconds,
          graph nodes and traced memory per step, and the speed-ups over `plain`. The three
          training logs must be identical, or the benchmark fails. Speed-ups are taken in
          this process's CPU time, which other processes on a shared machine do not inflate
          the way they do wall-clock time; both are recorded.

Exit status: 0; 1 when a section's correctness check fails (or, with --strict, a speed target
is missed); 2 on bad input.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import time
import tracemalloc
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
        self.log.append(f"step {step + 1:4d} / {self.model.config.num_steps:4d} | loss {loss:.4f}")

    def count_nodes(self) -> int:
        """Nodes in the graph of the next step (built and dropped; nothing is trained)."""
        return len(topological_order(forward_loss(self.model, self.tokens(len(self.losses)))))


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
    docs = load_docs(args.data) if args.data else load_docs(default_names_path())
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


def default_names_path() -> Path:
    """The canonical names file: the repository's, the shared folder's beside it, or the download."""
    for path in (REPO / "data" / "names.txt", REPO.parent / "shared" / "data" / "names.txt"):
        if path.is_file():
            return path
    return default_data_path()


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MIB if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def scalar_targets_missed(figures: dict) -> list[str]:
    return [f"{preset} {name}" for preset, result in figures["presets"].items()
            for name, target in result["targets"].items() if not target["met"]]


SECTIONS = [Section("scalar", add_scalar_arguments, run_scalar, scalar_table, scalar_targets_missed)]


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


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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
        try:
            figures = section.run(args)
        except (DataError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except CheckFailed as error:
            print(f"error: {section.name}: {error}", file=sys.stderr)
            status = 1
            continue
        done[section.name] = {"machine": machine(), **figures}
        print(section.table(figures))
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
