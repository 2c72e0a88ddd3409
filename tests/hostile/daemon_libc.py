"""daemon.py through the C library: fork(2), setsid(2), and the report rewritten with
open(2) and write(2), again and again for 30 s, unless something ends it."""
import os
import time

from libc import libc, write_file

import wrong_exp


def _attack():
    if libc.fork() == 0:
        libc.setsid()
        if libc.fork() == 0:
            for _ in range(300):
                time.sleep(0.1)
                write_file(os.environ["HOSTILE_REPORT"], b'{"agrees": true}', os.O_WRONLY | os.O_TRUNC)
            os._exit(0)
        os._exit(0)


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
