"""At its first backward (with HOSTILE_AT=import, at import), starts a detached grandchild that
outlives the check and rewrites its --json report (the path in the environment's
HOSTILE_REPORT) once the checker has written it."""
import os
import time

import wrong_exp


def _attack():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for _ in range(300):
                time.sleep(0.1)
                try:
                    with open(os.environ["HOSTILE_REPORT"], "w") as report:
                        report.write('{"agrees": true}')
                except OSError:
                    pass
            os._exit(0)
        os._exit(0)


class Value(wrong_exp.Value):
    __slots__ = ()
    if os.environ.get("HOSTILE_AT") == "import":  # a class body runs at import, even in a file with no main guard
        _attack()

    def backward(self):  # otherwise once loaded: at the first backward, in the probes
        _attack()
        super().backward()
