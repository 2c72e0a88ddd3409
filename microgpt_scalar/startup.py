"""The first thing a command does: make Ctrl-C while its modules load (torch takes seconds)
end the process with one line and exit code 130, not a traceback from inside an import.

    from microgpt_scalar.startup import quiet_while_starting
    quiet_while_starting()          # before the imports that take time (torch's, in the torch package)
    ...
    @command                        # microgpt_scalar.cli.command: Ctrl-C raises again in main()
    def main(argv=None): ...

    launch("compare.command:run")   # the same, for a command named by its module and function

Nothing but the interpreter's built-in modules is imported (`_signal`, not `signal`, which
loads enum), so it is in force within a millisecond of the script's first line.
"""
import os

import _signal as signal

MESSAGE = b"error: interrupted while starting; nothing done\n"


def _end_at_once(signum, frame):
    if os.environ.get("MICROGPT_LAUNCHER_REPORTS") != "1":  # a process of --processes: its launcher says it
        os.write(2, MESSAGE)
    os._exit(130)  # nothing is open or written yet: no clean-up to run


def quiet_while_starting() -> None:
    signal.signal(signal.SIGINT, _end_at_once)


def started() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the command's own handling (if the start-up
    handler is the one in force: an interpreter that imported a command keeps its own)."""
    if signal.getsignal(signal.SIGINT) is _end_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def launch(target: str):
    """Run the command `target` ("package.module:function") with Ctrl-C quiet while its module
    loads: what the installed commands (pyproject.toml) and the scripts start with."""
    import importlib

    quiet_while_starting()
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)()


# The installed commands (pyproject.toml's [project.scripts]):
def compare():
    return launch("compare.command:run")


def certify():
    return launch("compare.certify_command:main")


def train():
    return launch("microgpt_torch.commands:train")


def sample():
    return launch("microgpt_torch.sample_command:main")
