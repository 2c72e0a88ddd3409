"""Section `race`: the project's batched step against a nanoGPT-style trainer and against
the project's previous batched step, on the same batches, taking turns.

    python scripts/bench.py --only race

The trainers (microgpt preset sizes, float32, each its own model and optimizer):
  project    `batched_train_step` on `BatchedGPT`, what `train_torch.py --mode batched` runs
  nanoGPT    `bench/nanogpt.py`: LayerNorm, GELU, a fused c_attn, SDPA, AdamW, weights tied
  previous   `bench/previous_step.py`: the project's batched step before its batched kernels

For each cell (batch size x torch threads x eager or torch.compile'd) the three take turns
in windows of at least --race-window-seconds, --race-rounds rounds, the order rotating from
round to round, on one list of ready batches drawn in the training order. A window's
tokens/s counts non-padding targets. A ratio is the median over the rounds of the ratio of
two trainers' windows in that round: a change in the machine's load between rounds falls on
both sides. The load average is recorded beside each cell.

The best modes: for each of the project and the previous step, the cell where it was
fastest, and, with --race-processes N above 1, the trainer on N data-parallel processes of
one thread each, for each batch size B of the one-thread cells (each process training on its
share of batches of N * B what the trainer's fastest one-thread cell at B trains: the
project's summing gradients in shared memory, the previous step's in DistributedDataParallel
over gloo, as each trainer's --processes runs it). All take turns (--race-rounds rounds);
the speed-up is the median over the rounds of the project's fastest mode in that round over
the previous step's fastest. Each runs in processes of its own (`python -m bench.race`,
driven over pipes), one window at a time while the others wait for their turn: in one
process, a compiled trainer's OpenMP threads and an eager one's slowed each other down. The
project's processes keep freed memory mapped, as its trainer does
(`microgpt_torch/allocator.py`); the previous step's run on the C library's own settings, as
it did. (The cells share one process, on the C library's settings.)

Attention alone: torch's scaled_dot_product_attention against the block-diagonal product
(`microgpt_torch/kernels.py`), forward and backward, taking turns, at each batch size and
block length: the measurements behind the table that picks the method by shape.

A step's work: FLOPs per token as nanoGPT estimates them (6 per parameter, plus 12 * layers *
block * n_embd for attention), against the machine's FP32 peak from /proc/cpuinfo (the
clock, the widest vector unit its flags name, and two fused multiply-adds a cycle per core).

The check: before timing, the project's model and the previous step's, given the same
weights (drawn at random, so no sublayer starts at zero and hides its error), compute the
loss and every gradient of the first batch, which must agree within float32 rounding.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from microgpt_scalar.cli import MAX_BATCH, int_from, seconds

from .common import SEED, CheckFailed, child_env, read_docs, torch_start
from .torch_cpu import torch_threads

TRAINERS = ("project", "nanoGPT", "previous")
MODES = ("eager", "compiled")
READY_BATCHES = 16  # ready batches each cell cycles through
WARMUP_STEPS = 3  # steps of each trainer before the windows (compiling, if compiled)
# The project's and the previous step's loss and gradients, float32, from the same weights:
# rounding apart (kernels that add in another order). A 1% error in any kernel is far outside.
SAME_RTOL, SAME_ATOL = 1e-4, 1e-6
ATTENTION_BLOCKS = (8, 16)  # the presets' block sizes


# --- the machine's arithmetic --------------------------------------------------------------

def flops_per_token(config) -> int:
    """nanoGPT's estimate of a training step's FLOPs per token: 6 per parameter (forward and
    backward) and 12 * n_layer * block_size * n_embd for attention's two products."""
    from microgpt_scalar.config import num_params

    return 6 * num_params(config) + 12 * config.n_layer * config.block_size * config.n_embd


def cpu_peak(cpuinfo: str) -> dict | None:
    """FP32 FLOPs a second a core can do, from /proc/cpuinfo's text: its clock (the largest
    "cpu MHz") times the lanes of its widest vector unit (AVX-512: 16 floats, AVX2 or AVX: 8,
    else SSE's 4) times 2 FMA units times 2 FLOPs an FMA. None without a clock or flags.
    (Some cores run AVX-512 on 256-bit units, at half this figure.)"""
    mhz = [float(line.split(":")[1]) for line in cpuinfo.splitlines() if line.startswith("cpu MHz")]
    flag_lines = [line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")]
    if not mhz or not flag_lines:
        return None
    flags = set(flag_lines[0])
    vector, lanes = next(((name, width) for name, width in (("avx512f", 16), ("avx2", 8), ("avx", 8))
                          if name in flags), ("sse", 4))
    ghz = max(mhz) / 1000
    per_cycle = lanes * 2 * 2
    return {"ghz": ghz, "vector": vector, "flops_per_cycle": per_cycle, "flops_per_s_per_core": ghz * 1e9 * per_cycle}


def read_cpu_peak() -> dict | None:
    try:
        return cpu_peak(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def share_of_peak(tokens_per_s: float, flops: int, peak: dict | None, cores: int) -> float | None:
    """The fraction of `cores` cores' FP32 peak that `tokens_per_s` tokens of `flops` FLOPs use."""
    return tokens_per_s * flops / (peak["flops_per_s_per_core"] * cores) if peak else None


# --- trainers ------------------------------------------------------------------------------

class Trainer:
    """One trainer's model, optimizer and step count; `step(batch)` trains on a ready batch.

    With `world_size` > 1 it is one process of a data-parallel group (the process group
    already joined), training on rows rank, rank + world_size, ... of each global batch as its
    trainer does under --processes: the project's sums the gradients in shared memory
    (microgpt_torch/shared_memory.py), with the loss and the vote on stopping; the previous
    step's is the model in DistributedDataParallel over gloo, compiled after wrapping, as
    the code before did."""

    def __init__(self, name: str, config, params: dict, compiled: bool, rank: int = 0, world_size: int = 1):
        import torch

        from microgpt_torch.fast import BatchedGPT
        from microgpt_torch.optim import make_optimizer
        from microgpt_torch.shared_memory import SharedMemoryGroup

        from . import nanogpt, previous_step

        self.name, self.steps, self.rank, self.world_size, self.shared = name, 0, rank, world_size, None
        if name == "nanoGPT":
            model = nanogpt.NanoGPT(config, seed=SEED)
            self.optimizer = nanogpt.adamw(model)
        else:
            project = BatchedGPT.from_scalar_params(config, params, dtype=torch.float32)
            if name == "previous":
                model = previous_step.PreviousGPT(config)
                model.load_state_dict(project.state_dict())  # the same names and weights
            else:
                model = project
            self.optimizer = make_optimizer(model, config)
        if world_size > 1 and name == "project":
            self.shared = SharedMemoryGroup.for_model(model)
        elif world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
        self.model = torch.compile(model) if compiled else model

    def step(self, batch) -> float:
        from microgpt_torch.train import batched_train_step

        from . import nanogpt, previous_step

        idx, targets, num_targets = batch
        idx, targets = idx[self.rank::self.world_size], targets[self.rank::self.world_size]
        if self.name == "nanoGPT":
            loss = nanogpt.train_step(self.model, self.optimizer, idx, targets, self.steps)
        elif self.name == "previous":
            loss = previous_step.train_step(self.model, self.optimizer, idx, targets, num_targets, self.steps,
                                            self.world_size)
        else:
            loss = batched_train_step(self.model, self.optimizer, idx, targets, num_targets, self.steps,
                                      self.world_size, shared=self.shared)
        self.steps += 1
        return loss


def ready_batches(train_tokens: list, block_size: int, batch_size: int, count: int) -> list:
    """The first `count` batches of the training order of the seed, as (idx, targets, num_targets)."""
    import torch

    from microgpt_torch.train import PackedDocuments, batch_order

    packed = PackedDocuments.of(train_tokens, block_size)
    order = batch_order(len(packed), batch_size, torch.Generator().manual_seed(SEED))
    return [packed.batch(next(order)) for _ in range(count)]


def check_same_gradients(config, batch) -> None:
    """The project's batched model and the previous step's, holding the same random weights,
    give the same loss and gradients on `batch` within float32 rounding; CheckFailed otherwise."""
    import torch

    from microgpt_torch.fast import BatchedGPT

    from .previous_step import PreviousGPT

    project, previous = BatchedGPT(config), PreviousGPT(config)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for p in project.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    previous.load_state_dict(project.state_dict())
    idx, targets, _ = batch
    results = []
    for model in (project, previous):
        _, loss = model(idx, targets)
        loss.backward()
        results.append([("loss", loss.detach())] + [(name, p.grad) for name, p in model.named_parameters()])
    for (name, got), (_, expected) in zip(*results):
        if not torch.allclose(got, expected, rtol=SAME_RTOL, atol=SAME_ATOL):
            worst = (got - expected).abs().max().item()
            raise CheckFailed(f"the project's step computes another {name} than the previous step's "
                              f"(largest difference {worst:.2e})")


def window(trainer: Trainer, batches: list, seconds: float, threads: int, steps: int | None = None) -> float:
    """Steps for at least `seconds` (and 2 steps), or exactly `steps` steps; tokens per second."""
    with torch_threads(threads):
        start, tokens, n = time.perf_counter(), 0, 0
        while n < 2 or (n < steps if steps else time.perf_counter() - start < seconds):
            batch = batches[trainer.steps % len(batches)]
            trainer.step(batch)
            tokens, n = tokens + batch[2], n + 1
        return tokens / (time.perf_counter() - start)


def take_turns(contestants: dict, rounds: int, seconds: float, run_window=None) -> dict:
    """name -> tokens/s of each round's window; contestants: name -> (trainer, batches,
    threads), or whatever `run_window(contestant, seconds)` takes to run one window and
    return its tokens/s. The order rotates each round, so no one always follows the same other."""
    run_window = run_window or (lambda contestant, seconds: window(*contestant[:2], seconds, contestant[2]))
    names, rates = list(contestants), {name: [] for name in contestants}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rates[name].append(run_window(contestants[name], seconds))
    return rates


def median_ratio(rates: dict, over: str, under: str) -> float:
    """The median over rounds of rates[over][r] / rates[under][r]."""
    return statistics.median(a / b for a, b in zip(rates[over], rates[under]))


def ready_trainers(names, config, params, batches: list, threads: int, compiled: bool) -> dict:
    """name -> Trainer, each past its warm-up steps (compiled, if compiled, at `threads`
    threads, from an empty cache: the compiled kernels are built for the thread count)."""
    import torch

    if compiled:
        torch._dynamo.reset()
    with torch_threads(threads):
        trainers = {name: Trainer(name, config, params, compiled) for name in names}
        for trainer in trainers.values():
            while trainer.steps < WARMUP_STEPS:
                trainer.step(batches[trainer.steps % len(batches)])
    return trainers


def race_cell(config, params, batches: list, threads: int, compiled: bool, rounds: int, seconds: float) -> dict:
    """The three trainers in one cell: the check, the warm-up, then the windows in turn."""
    load_before = os.getloadavg()
    with torch_threads(threads):
        check_same_gradients(config, batches[0])
    trainers = ready_trainers(TRAINERS, config, params, batches, threads, compiled)
    rates = take_turns({name: (t, batches, threads) for name, t in trainers.items()}, rounds, seconds)
    return {
        "batch_size": len(batches[0][0]), "threads": threads, "mode": "compiled" if compiled else "eager",
        "tokens_per_s": {name: max(r) for name, r in rates.items()},
        "rounds": rates,
        "project_over_nanogpt": median_ratio(rates, "project", "nanoGPT"),
        "project_over_previous": median_ratio(rates, "project", "previous"),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
    }


def best_modes(cells: list, config, params, batches_for, rounds: int, seconds: float, processes: int,
               rendezvous_folder: str) -> dict:
    """The modes of each of the project and the previous step, run in turns: the trainer's
    fastest cell, built afresh in a process of its own (TrainerProcess), and, with
    `processes` > 1, for each batch size of the one-thread cells, the trainer on that many
    processes of one thread each (TrainerGroup), each training on its share of batches
    `processes` times as large what the trainer's fastest one-thread cell of that batch size
    trains (eager or compiled). `batches_for(batch_size)` gives the ready batches."""
    best = {name: max(cells, key=lambda cell: cell["tokens_per_s"][name]) for name in ("project", "previous")}
    specs = {name: (name, cell["batch_size"], cell["threads"], cell["mode"], 1) for name, cell in best.items()}
    one_thread = [cell for cell in cells if cell["threads"] == 1]
    for name in ("project", "previous") if processes > 1 else ():
        for batch_size in sorted({cell["batch_size"] for cell in one_thread}):
            cell = max((c for c in one_thread if c["batch_size"] == batch_size), key=lambda c: c["tokens_per_s"][name])
            specs[f"{name}_processes_{batch_size}"] = (name, processes * batch_size, 1, cell["mode"], processes)
    with contextlib.ExitStack() as stack:
        contestants = {}
        for key, (name, batch_size, threads, mode, world_size) in specs.items():  # each warms up alone
            contestants[key] = stack.enter_context(TrainerGroup(
                name, config, params, batches_for(batch_size), threads, mode == "compiled", world_size,
                os.path.join(rendezvous_folder, f"{key}.rendezvous")))
        rates = take_turns(contestants, rounds, seconds, lambda group, seconds: group.window(seconds))
    modes = {key: {"batch_size": batch_size, "threads": threads, "mode": mode, "processes": world_size,
                   "tokens_per_s": max(rates[key]), "rounds": rates[key],
                   "pids": contestants[key].pids, "windows": contestants[key].windows}
             for key, (_, batch_size, threads, mode, world_size) in specs.items()}
    of = {name: [key for key in specs if specs[key][0] == name] for name in ("project", "previous")}
    round_best = {name: [max(rates[key][r] for key in keys) for r in range(rounds)] for name, keys in of.items()}
    return modes | {
        "best": {name: max(keys, key=lambda key: modes[key]["tokens_per_s"]) for name, keys in of.items()},
        "project_over_previous": median_ratio(round_best, "project", "previous"),
        "one_process_project_over_previous": median_ratio(rates, "project", "previous"),
        "load_average_after": list(os.getloadavg()),
    }


class TrainerGroup:
    """A trainer in `world_size` processes of its own (TrainerProcess), one data-parallel
    group meeting at a rendezvous file, or in one process. `window(seconds)` runs one window
    in every process: alone, for `seconds`; in a group, the same number of steps in each
    process (they meet every step), as many as take about `seconds` by the warm-up's pace.
    Its tokens/s count the global batches' targets; `windows` holds each window's (start,
    end), from the first process's start to the last one's end."""

    def __init__(self, name: str, config, params: dict, batches: list, threads: int, compiled: bool,
                 world_size: int, rendezvous: str):
        self.world_size, self.windows, self.processes = world_size, [], []
        try:
            for rank in range(world_size):  # started together: they meet while warming up
                self.processes.append(TrainerProcess(name, config, params, batches, threads, compiled, rank,
                                                     world_size, rendezvous, wait_until_ready=False))
            ready = [process.ready() for process in self.processes]
        except BaseException:
            self.__exit__()
            raise
        self.pids = [pid for pid, _ in ready]
        self.seconds_per_step = max(seconds for _, seconds in ready)

    def window(self, seconds: float) -> float:
        steps = None if self.world_size == 1 else max(2, round(seconds / self.seconds_per_step))
        for process in self.processes:
            process.ask(seconds, steps)
        replies = [process.answer() for process in self.processes]
        self.windows.append((min(start for _, start, _ in replies), max(end for _, _, end in replies)))
        return replies[0][0]

    def __enter__(self) -> "TrainerGroup":
        return self

    def __exit__(self, *exc_info) -> None:
        for process in self.processes:
            process.__exit__()


class TrainerProcess:
    """A Trainer in a process of its own (a fresh interpreter: no thread pool, compiled code
    or memory of this one's), warmed up, then driven over a pair of pipes: each
    `window(seconds)` asks the process for one window and waits for its tokens/s, so only
    one process trains at a time. `windows` holds the (start, end) of each window on the
    monotonic clock, which every process of the machine shares; `pid` is the process's own
    report of its id. As process `rank` of `world_size` > 1, it joins a gloo group at the
    `rendezvous` file first."""

    def __init__(self, name: str, config, params: dict, batches: list, threads: int, compiled: bool,
                 rank: int = 0, world_size: int = 1, rendezvous: str = "", wait_until_ready: bool = True):
        from multiprocessing.connection import Connection

        self.name, self.windows = name, []
        to_child, from_parent = os.pipe()[::-1]  # (write end, read end)
        from_child, to_parent = os.pipe()
        self.process = subprocess.Popen([sys.executable, "-m", "bench.race", str(from_parent), str(to_parent)],
                                        pass_fds=(from_parent, to_parent), env=child_env())
        os.close(from_parent)
        os.close(to_parent)  # so a process that dies ends recv() here with EOFError
        self.requests, self.replies = Connection(to_child, readable=False), Connection(from_child, writable=False)
        # The batches' tensors by value (plain pickle), not as handles to shared memory.
        self.requests.send_bytes(pickle.dumps((name, config, params, batches, threads, compiled, rank, world_size,
                                               rendezvous)))
        if wait_until_ready:
            self.ready()

    def ready(self) -> tuple:
        """(pid, seconds a step took in the warm-up), once the process has warmed up."""
        try:
            self.pid, seconds_per_step = self._reply()
        except BaseException:
            self.__exit__()
            raise
        return self.pid, seconds_per_step

    def ask(self, seconds: float, steps: int | None = None) -> None:
        self.requests.send((seconds, steps))

    def answer(self) -> tuple:
        """(tokens/s, start, end) of the window asked for."""
        rate, start, end = self._reply()
        self.windows.append((start, end))
        return rate, start, end

    def window(self, seconds: float) -> float:
        self.ask(seconds)
        return self.answer()[0]

    def _reply(self):
        try:
            status, value = self.replies.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} trainer's process ended (exit code {self.process.wait()})") from None
        if status == "failed":
            raise RuntimeError(f"the {self.name} trainer's process failed: {value}")
        return value

    def __enter__(self) -> "TrainerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        """Ask the process to end, and end it if it does not."""
        with contextlib.suppress(OSError):
            self.requests.send(None)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.requests.close()
        self.replies.close()


def serve_windows(requests, replies) -> None:
    """A TrainerProcess's side: read the trainer's spec, join its group if it has one, build
    it at its thread count, warm it up, send ("ready", (pid, seconds a warm-up step took)),
    then for each (seconds, steps) received run one window and send ("rate", (tokens/s,
    start, end)); None ends it. An error is sent as ("failed", text)."""
    import traceback

    try:
        import torch
        import torch.distributed as dist

        from microgpt_torch.allocator import keep_freed_memory

        name, config, params, batches, threads, compiled, rank, world_size, rendezvous = \
            pickle.loads(requests.recv_bytes())
        if name == "project":  # as scripts/train_torch.py --mode batched runs it
            keep_freed_memory()
        torch.set_num_threads(threads)
        if world_size > 1:
            dist.init_process_group("gloo", init_method="file://" + rendezvous, rank=rank, world_size=world_size)
        trainer = Trainer(name, config, params, compiled, rank, world_size)
        while trainer.steps < WARMUP_STEPS:
            trainer.step(batches[trainer.steps % len(batches)])
        start = time.perf_counter()
        trainer.step(batches[trainer.steps % len(batches)])
        replies.send(("ready", (os.getpid(), time.perf_counter() - start)))
        while (request := requests.recv()) is not None:
            seconds, steps = request
            start = time.monotonic()
            rate = window(trainer, batches, seconds, threads, steps)
            replies.send(("rate", (rate, start, time.monotonic())))
    except EOFError:  # the parent has gone: nothing to report to
        pass
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):
            replies.send(("failed", traceback.format_exc(limit=-3)))


# --- attention alone -----------------------------------------------------------------------

def attention_timings(batch_sizes: list, modes: list, rounds: int, seconds: float, n_embd: int = 16,
                      n_head: int = 4) -> list[dict]:
    """Forward and backward of each attention method on (B, T, n_embd) float32 q, k, v, one
    thread, taking turns: ms per call, the least of the rounds."""
    import torch

    from microgpt_torch import kernels

    rows = []
    with torch_threads(1):
        for compiled in (mode == "compiled" for mode in modes):
            torch._dynamo.reset()
            for batch_size in batch_sizes:
                for T in ATTENTION_BLOCKS:
                    qkv = torch.randn(batch_size, T, 3 * n_embd, requires_grad=True)
                    grad = torch.randn(batch_size, T, n_embd)
                    calls = {}
                    for name, method in kernels.ATTENTION.items():
                        method = torch.compile(method) if compiled else method

                        def call(method=method):
                            q, k, v = qkv.split(n_embd, dim=-1)
                            method(q, k, v, n_head).backward(grad)
                        call()
                        calls[name] = call
                    best = {name: float("inf") for name in calls}
                    for r in range(rounds):
                        for name, call in calls.items():
                            start, n = time.perf_counter(), 0
                            while n < 2 or time.perf_counter() - start < seconds / 4:
                                call()
                                n += 1
                            best[name] = min(best[name], (time.perf_counter() - start) / n)
                    q = qkv[..., :n_embd]
                    rows.append({"batch_size": batch_size, "block": T, "head_dim": n_embd // n_head,
                                 "mode": "compiled" if compiled else "eager",
                                 "ms": {name: 1000 * s for name, s in best.items()},
                                 "block_diagonal_speedup": best["sdpa"] / best["block-diagonal"],
                                 "table_picks": kernels.attention_method(q, n_head)})
    return rows


# --- the section ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("race section (the project's batched step, a nanoGPT-style one, the previous one)")
    group.add_argument("--race-batch-sizes", type=int_from(1, MAX_BATCH), nargs="+", default=[512, 2048], metavar="B")
    group.add_argument("--race-threads", type=int_from(1, os.cpu_count() or 1), nargs="+", default=sorted({1, os.cpu_count() or 1}), metavar="N")
    group.add_argument("--race-modes", nargs="+", choices=MODES, default=list(MODES))
    group.add_argument("--race-rounds", type=int_from(1, 1000), default=5, help="windows of each trainer per cell")
    group.add_argument("--race-window-seconds", type=seconds, default=0.5, help="least length of a window")
    group.add_argument("--race-processes", type=int_from(1, 64), default=os.cpu_count() or 1, metavar="N",
                       help="the best modes include each trainer on N data-parallel processes (1: none)")


def run(args) -> dict:
    if (min(args.race_batch_sizes) < 1 or min(args.race_threads) < 1 or args.race_rounds < 1
            or args.race_window_seconds <= 0):
        raise ValueError("--race-batch-sizes, --race-threads and --race-rounds must be at least 1, "
                         "--race-window-seconds above 0")
    preset = args.preset[0]
    docs = read_docs(args.data)
    config, params, train_tokens, _, _, _ = torch_start(docs, preset, SEED, num_steps=10**9)
    batches_of = {}

    def batches_for(batch_size: int) -> list:
        if batch_size not in batches_of:
            batches_of[batch_size] = ready_batches(train_tokens, config.block_size, batch_size, READY_BATCHES)
        return batches_of[batch_size]

    cells = [race_cell(config, params, batches_for(b), n, mode == "compiled", args.race_rounds,
                       args.race_window_seconds)
             for mode in args.race_modes for n in args.race_threads for b in args.race_batch_sizes]
    with tempfile.TemporaryDirectory(prefix="race-") as rendezvous_folder:
        best = best_modes(cells, config, params, batches_for, args.race_rounds, args.race_window_seconds,
                          args.race_processes, rendezvous_folder)
    attention = attention_timings(args.race_batch_sizes, args.race_modes, args.race_rounds, args.race_window_seconds)
    flops, peak = flops_per_token(config), read_cpu_peak()
    for cell in cells:
        cell["share_of_peak"] = {name: share_of_peak(rate, flops, peak, cell["threads"])
                                 for name, rate in cell["tokens_per_s"].items()}
    cores = os.cpu_count() or 1
    return {
        "what": "the project's batched step against a nanoGPT-style trainer and its previous batched step, "
                "float32, on the same batches, taking turns",
        "preset": preset,
        "cells": cells,
        "best_modes": best,
        "attention": attention,
        "flops_per_token": flops,
        "cpu_peak": peak,
        "machine_peak_flops_per_s": peak["flops_per_s_per_core"] * cores if peak else None,
        "best_share_of_machine_peak": share_of_peak(best[best["best"]["project"]]["tokens_per_s"], flops, peak, cores),
        "targets": {"project_over_nanogpt_above": 1.0, "best_mode_over_previous_at_least": 1.5},
    }


def table(figures: dict) -> str:
    lines = [f"race, {figures['preset']}: the project's batched step against a nanoGPT-style trainer and its "
             f"previous step (float32, the same batches, taking turns; ratios: medians of each round's)",
             f"  {'batch':>6} {'threads':>7} {'mode':>8} {'project tok/s':>13} {'nanoGPT':>10} {'previous':>10} "
             f"{'x nanoGPT':>9} {'x previous':>10} {'% peak':>6}  load average before, after"]
    for c in figures["cells"]:
        share = c["share_of_peak"]["project"]
        share_text = f"{100 * share:.1f}" if share is not None else "-"
        rates = c["tokens_per_s"]
        lines.append(f"  {c['batch_size']:>6} {c['threads']:>7} {c['mode']:>8} {rates['project']:>13,.0f} "
                     f"{rates['nanoGPT']:>10,.0f} {rates['previous']:>10,.0f} {c['project_over_nanogpt']:>8.2f}x "
                     f"{c['project_over_previous']:>9.2f}x {share_text:>6}  "
                     f"{c['load_average_before'][0]:.2f}, {c['load_average_after'][0]:.2f}")
    best = figures["best_modes"]
    lines.append("  best modes, in turns, each in processes of its own (tokens/s: the best window; ratios: medians "
                 "of each round's):")
    for key in [key for key in best if isinstance(best[key], dict) and "rounds" in best[key]]:
        b = best[key]
        chosen = " <- best" if key in best["best"].values() else ""
        lines.append(f"    {key:<19} batch {b['batch_size']:>5}, {b['processes']} process(es) x {b['threads']} "
                     f"thread(s), {b['mode']:>8}: {b['tokens_per_s']:>11,.0f}{chosen}")
    lines.append(f"    best mode over best mode, project / previous: {best['project_over_previous']:.2f}x "
                 f"(one process each: {best['one_process_project_over_previous']:.2f}x)")
    peak = figures["cpu_peak"]
    if peak:
        lines.append(f"  {figures['flops_per_token']:,} FLOPs a token; FP32 peak {peak['ghz']:.2f} GHz x "
                     f"{peak['flops_per_cycle']} FLOPs a cycle ({peak['vector']}) = "
                     f"{peak['flops_per_s_per_core'] / 1e9:.0f} GFLOP/s a core; the project's best mode uses "
                     f"{100 * figures['best_share_of_machine_peak']:.1f}% of the machine's "
                     f"{figures['machine_peak_flops_per_s'] / 1e9:.0f} GFLOP/s")
    lines.append("  attention alone, forward and backward, one thread (ms): "
                 f"{'batch':>6} {'block':>5} {'mode':>8} {'sdpa':>8} {'block-diag':>10} {'speed-up':>8}  table picks")
    for a in figures["attention"]:
        lines.append(f"  {'':>55}{a['batch_size']:>6} {a['block']:>5} {a['mode']:>8} {a['ms']['sdpa']:>8.2f} "
                     f"{a['ms']['block-diagonal']:>10.2f} {a['block_diagonal_speedup']:>7.2f}x  {a['table_picks']}")
    return "\n".join(lines)


def targets_missed(figures: dict) -> list[str]:
    missed = [f"project > nanoGPT at batch {c['batch_size']}, {c['threads']} thread(s), {c['mode']}"
              for c in figures["cells"] if c["project_over_nanogpt"] <= 1.0]
    if figures["best_modes"]["project_over_previous"] < 1.5:
        missed.append("best mode >= 1.5x the previous step's best mode")
    return missed


if __name__ == "__main__":  # a TrainerProcess: python -m bench.race REQUESTS_FD REPLIES_FD
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends this process
    serve_windows(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
