"""Section `scalar`: the project's scalar engines against the plain engine (`bench.plain`).

(a) One training step in this process, all three engines training from the same start:
    seconds, graph nodes and traced memory per step, and the speed-ups over `plain`. Steps
    are taken a few at a time by each engine in turn, so a change in the machine's load
    falls on every engine alike; speed-ups are in this process's CPU time, which other
    processes do not inflate the way they do wall-clock time (both are recorded).
(b) The whole job, as a user runs it: `--job-steps` training steps and 20 samples, each
    engine a process of its own (scripts/train_scalar.py; `python -m bench.plain` for the
    baseline), the engines in turn for `--job-rounds` rounds. Wall time of the whole
    process, the fastest round per engine; the ratio to plain's is the speed-up.

Every engine's log must be identical (the losses to the last bit in (a), the printed step
and sample lines in (b)), or the section fails.
"""
from __future__ import annotations

import gc
import sys
import tracemalloc

from microgpt_scalar.cli import MAX_SAMPLES, MAX_STEPS, int_from
from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value, topological_order
from microgpt_scalar.fused import FusedValue
from microgpt_scalar.train import forward_loss, start_run, train_step

from .common import (MIB, SEED, CheckFailed, Clock, check_logs_identical, default_data, log_line, max_rss_mib,
                     read_docs, run_process, train_scalar_command)
from .plain import PlainLoop, PlainValue

ENGINES = {  # name -> (value class, makes the function that takes one training step)
    "plain": (PlainValue, PlainLoop),
    "per-op": (Value, lambda: train_step),
    "fused": (FusedValue, lambda: train_step),
}
STEP_TARGETS = {"per-op": 3.0, "fused": 15.0}  # least speed-up of one step over plain, in CPU time
JOB_TARGETS = {"per-op": 3.0, "fused": 25.0}  # least speed-up of the whole job over plain, wall time
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
        loss = forward_loss(self.model, self.tokens(len(self.losses)))
        return len(topological_order(loss))


def check_runs_agree(runs: dict) -> None:
    """The printed logs, and the losses to the last bit, are the same for every engine."""
    check_logs_identical({name: run.log for name, run in runs.items()})
    check_logs_identical({name: [loss.hex() for loss in run.losses] for name, run in runs.items()})


def time_runs(runs: dict, steps: int) -> dict:
    """Take `steps` steps of every run, BLOCK at a time in turn. Returns name -> [wall, cpu].

    A full collection (untimed) starts each block, so no engine pays for another's garbage;
    it also spares `plain` the collection of its last step's graph, which only lowers the
    speed-ups.
    """
    totals = {name: [0.0, 0.0] for name in runs}
    for start in range(0, steps, BLOCK):
        for name, run in runs.items():
            gc.collect()
            clock = Clock()
            for _ in range(min(BLOCK, steps - start)):
                run.advance()
            wall, cpu = clock.read()
            totals[name][0] += wall
            totals[name][1] += cpu
    return totals


def profile_run(run: Run, steps: int) -> dict:
    """Nodes and traced memory of each of the run's next `steps` steps (untimed: tracemalloc
    slows every allocation). `step_peak_mib` is the most a step held at any moment, counted
    from just before the first profiled step; `retained_mib` what is still held after each
    step, flat when no step keeps anything of its graph."""
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
    return {"nodes_per_step": sum(nodes) / len(nodes), "step_peak_mib": max(peaks) / MIB,
            "retained_mib": [r / MIB for r in retained], "drift_mib": (retained[-1] - retained[0]) / MIB}


def bench_step(docs: list[str], preset: str, steps: int, memory_steps: int) -> dict:
    """(a) on one preset: time, then profile, the three engines; CheckFailed on a log mismatch."""
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
        "steps": steps, "memory_steps": memory_steps,
        "logs_identical": True,  # check_runs_agree raised otherwise
        "log_tail": runs["fused"].log[-3:],
        "engines": engines,
        "targets": {name: {"speedup_cpu_at_least": target, "met": engines[name]["speedup_cpu"] >= target}
                    for name, target in STEP_TARGETS.items()},
    }


# (b) the whole job, process by process

def job_command(engine: str, data: str, steps: int, samples: int) -> list:
    if engine == "plain":
        return [sys.executable, "-m", "bench.plain", "--data", data, "--steps", str(steps), "--samples", str(samples)]
    return train_scalar_command(engine, data, steps, samples)


def job_log(stdout: str) -> list[str]:
    """The lines a run must print alike on every engine: each step's and each sample's."""
    return [line for line in stdout.splitlines() if line.startswith(("step ", "sample "))]


def bench_job(data: str, steps: int, samples: int, rounds: int) -> dict:
    """(b): every engine's whole process, in turn, `rounds` times; the fastest run counts
    (another process on the machine only ever slows a run down)."""
    walls, logs = {name: [] for name in ENGINES}, {}
    for _ in range(rounds):
        for name in ENGINES:
            done = run_process(job_command(name, data, steps, samples)).check()
            walls[name].append(done.wall_s)
            logs[name] = job_log(done.stdout)
    if len(logs["plain"]) != steps + samples:
        raise CheckFailed(f"plain printed {len(logs['plain'])} step and sample lines, not {steps + samples}")
    check_logs_identical(logs)
    engines = {name: {"wall_s": min(w), "wall_s_runs": w} for name, w in walls.items()}
    for figures in engines.values():
        figures["speedup"] = engines["plain"]["wall_s"] / figures["wall_s"]
    return {
        "steps": steps, "samples": samples, "rounds": rounds, "logs_identical": True,
        "log_tail": logs["fused"][steps - 2:steps] if steps >= 2 else logs["fused"][:1],
        "engines": engines,
        "targets": {name: {"speedup_at_least": target, "met": engines[name]["speedup"] >= target}
                    for name, target in JOB_TARGETS.items()},
    }


def add_arguments(parser) -> None:
    group = parser.add_argument_group("scalar section")
    group.add_argument("--scalar-steps", type=int_from(1, MAX_STEPS), default=40, help="timed training steps per engine and preset")
    group.add_argument("--scalar-memory-steps", type=int_from(1, MAX_STEPS), default=3,
                       help="steps per engine profiled for nodes and memory (untimed)")
    group.add_argument("--job-steps", type=int_from(1, MAX_STEPS), default=100, help="training steps of the whole-process job")
    group.add_argument("--job-samples", type=int_from(0, MAX_SAMPLES), default=20, help="names the whole-process job samples")
    group.add_argument("--job-rounds", type=int_from(1, 1000), default=2, help="runs of each engine's whole process")


def run(args) -> dict:
    if min(args.scalar_steps, args.scalar_memory_steps, args.job_steps, args.job_rounds) < 1 or args.job_samples < 0:
        raise ValueError("--scalar-steps, --scalar-memory-steps, --job-steps and --job-rounds must be at least 1, "
                         "--job-samples at least 0")
    data = args.data or default_data()
    docs = read_docs(data)
    presets = {preset: bench_step(docs, preset, args.scalar_steps, args.scalar_memory_steps) for preset in args.preset}
    return {
        "what": "the scalar engines against the plain one: one training step (forward, backward, Adam) in-process, "
                "and the whole job as a process",
        "presets": presets,
        "job": {"preset": "microgpt", **bench_job(data, args.job_steps, args.job_samples, args.job_rounds)},
        "process_max_rss_mib": max_rss_mib(),
    }


def table(figures: dict) -> str:
    lines = []
    for preset, result in figures["presets"].items():
        lines.append(f"scalar training step, {preset}: {result['steps']} steps timed, "
                     f"{result['memory_steps']} profiled; training logs identical: yes")
        lines.append(f"  {'engine':<7} {'cpu s/step':>10} {'wall s/step':>11} {'x plain':>8} {'target':>7} "
                     f"{'nodes/step':>10} {'step peak MiB':>13} {'drift MiB':>9}  retained MiB after each step")
        for name, e in result["engines"].items():
            target = target_text(result["targets"].get(name), "speedup_cpu_at_least")
            retained = " ".join(f"{r:.2f}" for r in e["retained_mib"])
            lines.append(f"  {name:<7} {e['cpu_s_per_step']:>10.4f} {e['wall_s_per_step']:>11.4f} "
                         f"{e['speedup_cpu']:>8.1f} {target:>7} {e['nodes_per_step']:>10,.0f} "
                         f"{e['step_peak_mib']:>13.2f} {e['drift_mib']:>9.2f}  {retained}")
    job = figures["job"]
    lines.append(f"whole job, {job['preset']}: {job['steps']} steps and {job['samples']} samples, one process per run, "
                 f"fastest of {job['rounds']}; step and sample lines identical: yes")
    lines.append(f"  {'engine':<7} {'wall s':>8} {'x plain':>8} {'target':>7}  every run (s)")
    for name, e in job["engines"].items():
        target = target_text(job["targets"].get(name), "speedup_at_least")
        runs = " ".join(f"{w:.2f}" for w in e["wall_s_runs"])
        lines.append(f"  {name:<7} {e['wall_s']:>8.2f} {e['speedup']:>8.1f} {target:>7}  {runs}")
    lines.append(f"  (step x plain is in CPU time, the job's in wall time; a target marked ! was missed; "
                 f"process max RSS {figures['process_max_rss_mib']:.0f} MiB)")
    return "\n".join(lines)


def target_text(target: dict | None, key: str) -> str:
    if target is None:
        return "-"
    return f">={target[key]:g}" + ("" if target["met"] else "!")


def targets_missed(figures: dict) -> list[str]:
    missed = [f"{preset} step {name}" for preset, result in figures["presets"].items()
              for name, target in result["targets"].items() if not target["met"]]
    return missed + [f"job {name}" for name, target in figures["job"]["targets"].items() if not target["met"]]
