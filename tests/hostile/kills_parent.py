"""At its first backward (with HOSTILE_AT=import, at import), kills the checker that runs it: its
parent, and its parent's process group."""
import os
import signal

import wrong_exp


def _attack():
    os.kill(os.getppid(), signal.SIGKILL)


class Value(wrong_exp.Value):
    __slots__ = ()
    if os.environ.get("HOSTILE_AT") == "import":  # a class body runs at import, even in a file with no main guard
        _attack()

    def backward(self):  # otherwise once loaded: at the first backward, in the probes
        _attack()
        super().backward()
