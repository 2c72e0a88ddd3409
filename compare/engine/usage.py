"""What a block of an engine's code has used: the time it has taken of its own (the
wall-clock time since it started, less the time its threads stood in the run queue behind
other processes), and the memory its process holds.

A busy machine (a class checked several engines at a time, another job beside the checker)
slows a block down without the block doing anything more; a budget counted in wall-clock
time would then stop a right engine, or stop a wrong one before it shows what is wrong with
it. Time spent computing, and time spent waiting for something (a sleep, a lock, a read),
both count: an endless loop and an engine that sleeps for ever are stopped alike.

    watch = Stopwatch()
    ...
    watch.own_seconds()  # wall-clock seconds so far, less the time spent queued
    resident_megabytes()  # the memory the process holds now

The queued time is Linux's per-thread schedstat (/proc/self/task/*/schedstat, its second
number); where it cannot be read, a block's own time is its wall-clock time. The memory is
/proc/self/statm's resident pages; None where it cannot be read.
"""
from __future__ import annotations

import os
import time

TASKS = "/proc/self/task"
STATM = "/proc/self/statm"


def resident_megabytes() -> float | None:
    """The memory this process holds in RAM now, in MB (2**20 bytes); None where unknown."""
    try:
        with open(STATM, "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def queued_nanoseconds() -> dict | None:
    """{thread id: nanoseconds it has waited in the run queue}, for this process's threads
    now; None where schedstat cannot be read."""
    try:
        queued = {}
        for task in os.listdir(TASKS):
            try:
                with open(f"{TASKS}/{task}/schedstat", "rb") as stat:
                    queued[task] = int(stat.read().split()[1])
            except FileNotFoundError:  # the thread ended since the folder was listed
                continue
        return queued
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """Started when made. `read()` takes the queued time so far; a thread that ends between
    two readings loses what it queued since the last one (Linux keeps no count for it)."""

    def __init__(self):
        self.started = time.monotonic()
        self.seen = queued_nanoseconds()  # what each thread had queued before the block
        self.queued = 0  # nanoseconds the block's threads have queued so far

    def read(self) -> None:
        now = queued_nanoseconds()
        if now is None or self.seen is None:
            self.seen = None
            return
        for task, nanoseconds in now.items():
            self.queued += nanoseconds - self.seen.get(task, 0)  # a thread started since counts from 0
        self.seen = now

    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    def own_seconds(self) -> float:
        self.read()
        return self.wall_seconds() - self.queued / 1e9
