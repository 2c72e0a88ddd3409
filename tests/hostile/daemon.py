"""At its first backward (with HOSTILE_AT=import, at import), starts a detached grandchild that
outlives the check and rewrites its --json report (the path in the environment's
HOSTILE_REPORT) once the checker has written it."""
import os
import time

from attacker import attacking


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


Value = attacking(_attack)
