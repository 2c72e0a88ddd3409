"""What a block of an engine's code has used: the time it has taken of its own (the
wall-clock time since it started, less the time its thread stood in the run queue behind
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

The queued time is Linux's schedstat of the thread that runs the block (a thread the block
starts, or a library's pool, waits on its own account and is not subtracted); where it
cannot be read, a block's own time is its wall-clock time. The memory is
/proc/self/statm's resident pages; None where it cannot be read.
"""
from __future__ import annotations

import os
import time

QUEUED = "/proc/thread-self/schedstat"  # the calling thread's: its second number is the time it waited to run
STATM = "/proc/self/statm"


def resident_megabytes() -> float | None:
    """The memory this process holds in RAM now, in MB (2**20 bytes); None where unknown."""
    try:
        with open(STATM, "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def queued_seconds() -> float | None:
    """The seconds the calling thread has waited in the run queue since it started; None
    where schedstat cannot be read."""
    try:
        with open(QUEUED, "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """Started when made, for the thread that makes it and reads it (a timer's handler runs on
    the main thread, as the block does). Its own time never exceeds its wall-clock time."""

    def __init__(self):
        self.started, self.queued_before = time.monotonic(), queued_seconds()

    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    def own_seconds(self) -> float:
        queued_now = queued_seconds()
        if queued_now is None or self.queued_before is None:
            return self.wall_seconds()
        return self.wall_seconds() - max(0.0, queued_now - self.queued_before)
