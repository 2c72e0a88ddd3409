"""Resource limits for the engine's process: memory, CPU time, and the whole process group.

    limits = ResourceLimits(memory_bytes=2 * 2**30, cpu_seconds=600)
    EngineProcess("engine.py", limits=limits)   # the child sets them on itself before it starts

Set in the child between fork and exec (subprocess's preexec_fn), so everything the engine
starts inherits them: an allocation past `memory_bytes` raises MemoryError in the engine, and
past `cpu_seconds` of CPU the kernel ends the process with SIGXCPU (then SIGKILL). The wall
clock is EngineProcess's own `timeout`.
"""
from __future__ import annotations

import resource
from dataclasses import dataclass

CPU_GRACE_SECONDS = 5  # between SIGXCPU (the soft limit) and SIGKILL (the hard one)


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int | None = None  # address space of each process (RLIMIT_AS)
    cpu_seconds: int | None = None  # CPU time of each process (RLIMIT_CPU)

    def apply(self) -> None:
        """Lower this process's limits (never raise them): runs in the child before exec."""
        if self.memory_bytes is not None:
            _lower(resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes)
        if self.cpu_seconds is not None:
            _lower(resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + CPU_GRACE_SECONDS)

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"{self.memory_bytes / 2**20:,.0f} MiB of memory")
        if self.cpu_seconds is not None:
            parts.append(f"{self.cpu_seconds:g} s of CPU time")
        return " and ".join(parts) or "no limits"


def _lower(which: int, soft: int, hard: int) -> None:
    old_soft, old_hard = resource.getrlimit(which)
    if old_hard != resource.RLIM_INFINITY:
        hard = min(hard, old_hard)
    soft = min(soft, hard)
    if old_soft != resource.RLIM_INFINITY:
        soft = min(soft, old_soft)
    resource.setrlimit(which, (soft, hard))
