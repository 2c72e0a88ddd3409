"""writes_terminal.py through the C library, to every terminal and every standard stream it
can find: its parent's, its grandparent's, /dev/tty, /dev/pts/*."""
import os

from libc import libc, write_file

from wrong_exp import Value  # noqa: F401

targets = ["/dev/tty"] + [f"/dev/pts/{n}" for n in range(10)]
for pid in {libc.getppid(), 1, os.getpid() - 1, os.getpid() - 2}:
    targets += [f"/proc/{pid}/fd/1", f"/proc/{pid}/fd/2"]
for path in targets:
    write_file(path, b"AGREE: forged\n", os.O_WRONLY)
