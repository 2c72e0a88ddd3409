"""kills_parent.py through the C library: SIGKILL to its parent, its group, and every
process it may signal (kill(-1))."""
import os

from libc import libc

from wrong_exp import Value  # noqa: F401

for pid in (libc.getppid(), os.getpid() - 1, os.getpid() - 2, 0, -1):
    if pid not in (os.getpid(), 1) or pid in (0, -1):
        libc.kill(pid, 9)
