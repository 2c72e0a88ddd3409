"""backward forks through the C library (around the audit hook) until fork(2) fails; every
child sleeps. It then raises, saying how many forks succeeded."""
import time

from libc import libc

import wrong_exp


class Value(wrong_exp.Value):
    __slots__ = ()

    def backward(self):
        forks = 0
        while forks < 200:  # a cap of its own, should the limit not hold
            pid = libc.fork()
            if pid == 0:
                time.sleep(60)
                libc._exit(0)
            if pid < 0:
                break
            forks += 1
        raise RuntimeError(f"fork bomb: {forks} forks")
