"""The engine under test runs in a child process (`compare.worker`) with a time limit, and
sends back numbers; an exit, a crash, a hang or a change to the checker's own code there
reaches this side only as one line, and the verdict is reached here.

    with EngineProcess(engine="my_engine.py", timeout=300) as scalar:   # starts it at once
        found = scalar.engine()                   # label, notes, probes, missing operations
        scalar.start_training(weights, batches, fd=0, seed=42)
        for _ in batches: result = scalar.next_step()

Starting it imports no torch, so a script can start it before importing torch itself.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .limits import ResourceLimits

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 300.0  # seconds the engine may take for any one thing: loading, a step
_START = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from compare.worker import main; main()"


class EngineFailure(RuntimeError):
    """The scalar engine under test failed while it ran (raised, exited, crashed or hung);
    the message is one line. `recursion` says whether it was a RecursionError."""

    def __init__(self, message: str, recursion: bool = False):
        super().__init__(message)
        self.recursion = recursion


class EngineRefused(ValueError):
    """The engine could not be loaded, or lacks what the model needs; the message is one line.
    `found` holds what the engine process reported (its probes), when it got that far."""

    def __init__(self, message: str, found: dict | None = None):
        super().__init__(message)
        self.found = found


class EngineProcess:
    def __init__(self, engine: str | None = None, inject: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 limits: ResourceLimits | None = None):
        """`limits`: memory and CPU time the process (and all it starts) may use; it runs in a
        process group of its own, which close() ends whole."""
        self.label = engine or (f"microgpt_scalar with fault {inject}" if inject else "microgpt_scalar.engine.Value")
        self.timeout = timeout
        self.phase = "loading and probing its operations"
        self._messages: queue.Queue = queue.Queue()
        self._stderr: list = []
        self._process = subprocess.Popen([sys.executable, "-c", _START], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         start_new_session=True, preexec_fn=limits.apply if limits else None)
        threading.Thread(target=self._read_messages, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._send({"engine": engine, "inject": inject})
        self._found = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the process if it still runs, and any process it started (its process group,
        by the group's id)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)  # what the engine forked, if it lingers
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone: nothing lingers
        try:
            self._process.stdin.close()
        except OSError:
            pass  # the process is gone; its end of the pipe with it

    def engine(self) -> dict:
        """What the process found: {"label", "notes", "probes", "chain", "missing"}.
        EngineRefused if the file cannot be loaded, EngineFailure if the process fails."""
        if self._found is None:
            message = self._receive()
            if message["kind"] == "error":
                raise EngineRefused(message["message"])
            self._found = message
        return self._found

    def start_training(self, weights: dict, batches: list, fd: int, seed: int) -> None:
        """Send the steps to take; the process answers with the model's graph depth, then
        one message per step (`next_message`)."""
        limited = bool(self._found and self._found["chain"] and self._found["chain"][1] is not None)
        self._send({"weights": weights, "batches": batches, "fd": fd, "seed": seed, "limited": limited})

    def start_certify(self, docs: list, steps: int, num_samples: int, config_fields: dict, seed: int) -> None:
        """Have the engine train the published run's first `steps` steps (compare.certify)."""
        self._send({"certify": {"docs": docs, "steps": steps, "num_samples": num_samples, "config": config_fields,
                                "seed": seed}})

    def record_run(self, check) -> tuple[list, list]:
        """The records of the steps started by start_certify, each handed to `check` as it
        comes (False stops the run); then the sampled names. As compare.certify.record_run."""
        from .certify import StepRecord

        records = []
        while True:
            message = self.next_message(f"training step {len(records) + 1}")
            if message["kind"] == "samples":
                return records, message["names"]
            records.append(StepRecord(**message["record"]))
            if check(records[-1]) is False:
                self.close()
                return records, []

    def next_message(self, phase: str) -> dict:
        self.phase = phase
        return self._receive()

    def _send(self, message: dict) -> None:
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process ended; _receive says how

    def _receive(self) -> dict:
        try:
            message = self._messages.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise EngineFailure(f"the scalar engine ({self.label}) did not finish {self.phase} within "
                                f"{self.timeout:g} s and was stopped (an endless loop? --timeout sets the limit)") from None
        if message is None:
            raise EngineFailure(self._ended())
        if message["kind"] == "failure":
            detail = f": {message['detail']}" if message.get("detail") else ""
            raise EngineFailure(f"the scalar engine ({self.label}) {message['message']} while {self.phase}{detail}",
                                message.get("recursion", False))
        return message

    def _ended(self) -> str:
        """One line saying how the process ended without finishing."""
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.close()
            code = self._process.returncode
        where = f"the scalar engine ({self.label}) ended its process while {self.phase}"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
            return f"{where}: it crashed with {name}{_SIGNAL_MEANING.get(name, '')}"
        last = next((line for line in reversed(self._stderr) if line.strip()), "")
        said = f"; its last words: {last.strip()}" if last else ""
        return f"{where}: it exited with code {code} (sys.exit or os._exit in the engine's code?){said}"

    def _read_messages(self) -> None:
        for line in self._process.stdout:
            try:
                self._messages.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self._messages.put(None)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr = (self._stderr + [line])[-20:]


_SIGNAL_MEANING = {
    "SIGSEGV": " (a segmentation fault: memory the process may not touch, e.g. C code recursing too deep)",
    "SIGABRT": " (the interpreter aborted)",
    "SIGKILL": " (killed, perhaps for using too much memory or CPU time)",
    "SIGXCPU": " (it used up its CPU-time limit)",
    "SIGFPE": " (a floating-point exception in C code)",
}
