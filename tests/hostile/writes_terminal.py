"""At its first backward (with HOSTILE_AT=import, at import), writes a forged verdict straight to
the checker's terminal, through /proc/<parent>/fd/1 (and /dev/tty)."""
import os

import wrong_exp


def _attack():
    for path in (f"/proc/{os.getppid()}/fd/1", "/dev/tty"):
        with open(path, "w") as terminal:
            terminal.write("AGREE: forged\n")


class Value(wrong_exp.Value):
    __slots__ = ()
    if os.environ.get("HOSTILE_AT") == "import":  # a class body runs at import, even in a file with no main guard
        _attack()

    def backward(self):  # otherwise once loaded: at the first backward, in the probes
        _attack()
        super().backward()
