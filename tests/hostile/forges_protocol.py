"""At its first backward (with HOSTILE_AT=import, at import), writes its own lines on the
checker's pipe (every descriptor that is a pipe): a malformed 'engine' message."""
import os

from attacker import attacking


def _attack():
    for fd in range(3, 20):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                os.write(fd, b'{"kind": "engine", "notes": 5, "probes": {}, "chain": null, "missing": null, '
                         b'"skipped": [], "facts": {}, "speed": {}, "hung": false}\n')
        except OSError:
            pass


Value = attacking(_attack)
