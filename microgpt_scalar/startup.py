"""The first thing a command does: make Ctrl-C while its modules load (torch takes seconds)
end the process with one line and exit code 130, not a traceback from inside an import.

    from microgpt_scalar.startup import quiet_while_starting
    quiet_while_starting()          # before the imports that take time
    import torch
    ...
    def main(): ...                 # `microgpt_scalar.cli.command` makes Ctrl-C raise again

Standard library only, and nothing else imported, so it is in force within milliseconds.
"""
import os
import signal

MESSAGE = b"error: interrupted while starting; nothing done\n"


def _end_at_once(signum, frame):
    os.write(2, MESSAGE)
    os._exit(130)  # nothing is open or written yet: no clean-up to run


def quiet_while_starting() -> None:
    signal.signal(signal.SIGINT, _end_at_once)


def started() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the command's own handling (if the start-up
    handler is the one in force: an interpreter that imported a command keeps its own)."""
    if signal.getsignal(signal.SIGINT) is _end_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)
