"""A process that imports a training command once (the torch one by default, with torch; or
the scalar one), then forks a fresh worker process per request, each running `main(argv)` of
scripts/train_torch.py (or scripts/train_scalar.py) in the environment it is given (for the
torch trainer, the one torchrun gives its workers). Tests that start the same worker many
times pay for the imports (seconds each for torch and torch._dynamo, a tenth of a second for
the interpreter and the scalar command) once, not once per worker.

    workers = PreloadedWorkers(children, env)       # children: the conftest fixture
    workers = PreloadedWorkers(children, env, "scalar")   # workers of the scalar trainer
    pid = workers.start(argv, {"RANK": "0", ...}, out_prefix)   # stdout, stderr: out_prefix.out/.err
    workers.running(pid)                            # True until it ends
    code = workers.wait(pid, seconds=60)            # exit code; -N if killed by signal N

Run as a script, it is the server: one JSON request a line on stdin, one JSON answer a line
on stdout. A worker is forked before any torch operation has started a thread, writes to its
own two files, and reads nothing from stdin; the server and its workers share one process
group, which the `children` fixture kills when the test ends.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from helpers import dies_with

TRAINERS = {"torch": "microgpt_torch.train_command", "scalar": "microgpt_scalar.train_command"}


class PreloadedWorkers:
    """The client: starts the server and sends it requests."""

    def __init__(self, children, env: dict, trainer: str = "torch", start_seconds: float = 120):
        assert trainer in TRAINERS, trainer
        self.server = children.start([sys.executable, __file__, trainer], stdin=-1, stdout=-1, text=True, env=env)
        assert self._answer(start_seconds) == {"ready": True}

    def start(self, argv: list, env: dict, out_prefix) -> int:
        return self._ask({"start": [str(arg) for arg in argv], "env": env, "out": str(out_prefix)})["pid"]

    def running(self, pid: int) -> bool:
        return self._ask({"poll": pid})["running"]

    def wait(self, pid: int, seconds: float) -> int | None:
        """The exit code of worker `pid`; None if it did not end in `seconds` (it is then killed)."""
        return self._ask({"wait": pid, "seconds": seconds}, seconds + 30)["code"]

    def _ask(self, request: dict, seconds: float = 30) -> dict:
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        return self._answer(seconds)

    def _answer(self, seconds: float) -> dict:
        ready, _, _ = select.select([self.server.stdout], [], [], seconds)
        line = self.server.stdout.readline() if ready else ""
        assert line, f"the worker server gave no answer in {seconds} s (exit {self.server.poll()})"
        return json.loads(line)


def serve(trainer: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import importlib

    if trainer == "torch":
        import torch._dynamo  # noqa: F401  (DistributedDataParallel imports it as it is built: seconds)
    command = importlib.import_module(TRAINERS[trainer])  # and all the command needs (torch, for torch's)

    answer({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            answer({"pid": fork_worker(command.main, f"train_{trainer}.py", request["start"], request["env"],
                                       request["out"])})
        elif "poll" in request:  # a worker that ended stays a zombie until its wait
            answer({"running": os.waitid(os.P_PID, request["poll"], os.WEXITED | os.WNOHANG | os.WNOWAIT) is None})
        else:
            answer({"code": wait_for(request["wait"], request["seconds"])})


def answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def fork_worker(main, script: str, argv: list, env: dict, out: str) -> int:
    """A worker running main(argv) as scripts/`script` would, its stdout and stderr in out.out
    and out.err. From the fork on, a Ctrl-C is handled as the script's first lines handle it
    (one line, exit 130), until main() takes it over; it waits, blocked, until that handler is
    in place."""
    from microgpt_scalar.startup import quiet_while_starting

    server = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return pid
    code = 1
    try:
        dies_with(server)()  # pytest killed: the server dies with it, and its workers with the server
        os.environ.update(env)
        for fd, suffix in ((0, None), (1, ".out"), (2, ".err")):
            target = os.open(os.devnull if suffix is None else out + suffix,
                             os.O_RDONLY if suffix is None else os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        quiet_while_starting()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        sys.argv = [script, *argv]
        code = main(argv)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait_for(pid: int, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGABRT)  # its stack, on its stderr (faulthandler), before it goes
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


if __name__ == "__main__":
    serve(sys.argv[1])
