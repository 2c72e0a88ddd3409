"""At its first backward (with HOSTILE_AT=import, at import), writes a forged verdict straight to
the checker's terminal, through /proc/<parent>/fd/1 (and /dev/tty)."""
import os

from attacker import attacking


def _attack():
    for path in (f"/proc/{os.getppid()}/fd/1", "/dev/tty"):
        with open(path, "w") as terminal:
            terminal.write("AGREE: forged\n")


Value = attacking(_attack)
