"""backward forks through the C library (around the audit hook) until fork(2) fails; every
child sleeps. It then raises, saying how many of its children are alive (every fork that
succeeded, in this backward and the ones before)."""
import time

from libc import libc

import wrong_exp


FORKS = [0]


def backward(self):
    while FORKS[0] < 200:  # a cap of its own, should the limit not hold
        pid = libc.fork()
        if pid == 0:
            time.sleep(60)
            libc._exit(0)
        if pid < 0:
            break
        FORKS[0] += 1
    raise RuntimeError(f"fork bomb: {FORKS[0]} children")


wrong_exp.Value.backward = backward  # every node's class, not only the leaves'
Value = wrong_exp.Value
