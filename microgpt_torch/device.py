"""Which device a run uses, and the setup data parallelism needs on it.

    device = pick_device("auto", local_rank, keep_on_cpu=mode == "faithful")
    init_distributed(device)                # one process per device, started by torchrun
    with float32_precision("ieee"): ...     # float32 matrix products without TensorFloat-32
"""
from __future__ import annotations

import contextlib
import os
import time

import torch
import torch.distributed as dist

from microgpt_scalar.cli import int_from
from microgpt_torch.device_names import DeviceError, parse_device


def pick_device(name: str, local_rank: int = 0, keep_on_cpu: bool = False) -> torch.device:
    """The device for `--device name` ("auto", "cpu", "cuda" or "cuda:N") in the process of
    `local_rank`; "cuda" is the process's own GPU, number `local_rank`.

    "auto" takes CUDA when there is one, except with `keep_on_cpu`: one-document steps in
    float64 are quicker on the CPU, where the tests and the reference figures were made too.
    "cuda" is GPU `local_rank` (one per process under torchrun); "cuda:N" is GPU N.
    """
    kind, number = parse_device(name)
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: CUDA is not available on this machine (try --device cpu)")
    if kind == "cpu" or not torch.cuda.is_available() or (kind == "auto" and keep_on_cpu):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if number is not None:
        if number >= count:
            raise DeviceError(f"--device {name}: this machine has {count} CUDA device(s), numbered from 0")
        return torch.device("cuda", number)
    if local_rank >= count:
        raise DeviceError(f"LOCAL_RANK {local_rank} needs CUDA device {local_rank}, but this machine has {count} "
                          f"(start at most {count} process(es) per machine, or use --device cpu)")
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL bound to this process's GPU, else gloo.

    The GPU is made the process's current device first, so that calls without a device
    (a barrier, a synchronize) land on it and not on GPU 0.
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")


def any_process(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true in any process of the group (every process must call this)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    # NCCL reduces tensors on the GPU only; gloo on the CPU.
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    votes = torch.tensor([int(flag)], device=where)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


# The TensorFloat-32 switches, set through the fp32_precision API only: a process that has
# used it (or set_float32_matmul_precision) gets a RuntimeError from the legacy allow_tf32 flags.
_PRECISION_SWITCHES = (
    (torch.backends.cuda.matmul, "fp32_precision"),
    (torch.backends.cudnn, "fp32_precision"),
    (torch.backends.cudnn.conv, "fp32_precision"),
    (torch.backends.cudnn.rnn, "fp32_precision"),
)


@contextlib.contextmanager
def float32_precision(precision: str):
    """Run with every float32 matrix product and convolution at `precision` ("ieee": full
    float32; "tf32": inputs rounded to TensorFloat-32's 10-bit mantissa), then restore."""
    saved = [getattr(owner, name) for owner, name in _PRECISION_SWITCHES]
    for owner, name in _PRECISION_SWITCHES:
        setattr(owner, name, precision)
    try:
        yield
    finally:
        for (owner, name), value in zip(_PRECISION_SWITCHES, saved):  # parent first, then its children
            setattr(owner, name, value)


def idle_cpus(seconds: float = 0.2) -> tuple[int, int] | None:
    """(CPUs this process may use that sat mostly idle over `seconds`, CPUs it may use), read
    from /proc/stat; None where there is no /proc/stat (not Linux)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = _cpu_times()
    idle = 0
    for cpu in allowed:
        if cpu in before and cpu in after:
            total = sum(after[cpu]) - sum(before[cpu])
            idle_time = (after[cpu][3] + after[cpu][4]) - (before[cpu][3] + before[cpu][4])  # idle + iowait
            idle += total > 0 and idle_time / total >= 0.5
    return idle, len(allowed)


def _cpu_times() -> dict | None:
    """cpu number -> its jiffies (user, nice, system, idle, iowait, ...) from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    return {int(fields[0][3:]): [int(value) for value in fields[1:]] for fields in lines}


def cpu_threads(text: str) -> int:
    """--threads: from 1 to the cores this process may run on."""
    return int_from(1, available_cores())(text)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# On the CPU a step on a small batch runs faster on one thread: each of its many small
# operations waits for a second thread to wake (with OMP_WAIT_POLICY=PASSIVE, the trainer's,
# some 60 microseconds each). Measured on this project's 2-core machine, two threads against
# one, batches of 8 positions a row: 0.6x at 512 rows and 0.75x at 1,024 eager (compiled:
# 0.5x and 1.0x); 1.1x eager at 2,048 (compiled 1.0x). So below this many rows a batched step
# runs on one thread, whatever torch's thread count; from it on, on torch's threads.
ONE_THREAD_BELOW_ROWS = {"cpu": 2048}


@contextlib.contextmanager
def torch_threads(count: int):
    """Run torch on `count` threads, and give it back its own count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_for_rows(rows: int, device: torch.device):
    """Run a batched step of `rows` rows on `device` on the threads that pay (see above)."""
    below = ONE_THREAD_BELOW_ROWS.get(device.type)
    if below is None or rows >= below or torch.get_num_threads() == 1:
        return contextlib.nullcontext()
    return torch_threads(1)


def cpu_threads_for_batches() -> tuple[int | None, str]:
    """How many torch threads batched training on the CPU should use, and why: one per CPU
    that is idle as it starts. A thread on a core another process keeps busy makes every
    step wait for it (a step is one parallel region after another), so two threads on a
    half-busy machine run slower than one. None: leave torch's own choice."""
    seen = idle_cpus()
    if seen is None:
        return None, "torch's default (no /proc/stat to see which cores are free)"
    idle, allowed = seen
    if idle >= allowed:
        return allowed, f"all {allowed} cores idle at the start"
    return max(1, idle), f"{allowed - idle} of {allowed} cores busy with other work at the start"
