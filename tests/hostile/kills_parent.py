"""At its first backward (with HOSTILE_AT=import, at import), kills the checker that runs it: its
parent, and its parent's process group."""
import os
import signal

from attacker import attacking


def _attack():
    os.kill(os.getppid(), signal.SIGKILL)


Value = attacking(_attack)
