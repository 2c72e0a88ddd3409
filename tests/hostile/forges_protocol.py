"""At import, writes its own lines on the checker's pipe (every descriptor that is a pipe):
a malformed 'engine' message."""
import os

from wrong_exp import Value  # noqa: F401

for fd in range(3, 20):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            os.write(fd, b'{"kind": "engine", "notes": 5, "probes": [], "chain": null, "missing": null}\n')
    except OSError:
        pass
