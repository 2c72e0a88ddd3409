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

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 300.0  # seconds the engine may take for any one thing: loading, a step
_START = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from compare.worker import main; main()"


class EngineFailure(RuntimeError):
    """The scalar engine under test failed while it ran (raised, exited, crashed or hung);
    the message is one line. `recursion` says whether it was a RecursionError; `kind` is
    "error", "recursion", "timeout", "exit" or "crash"; `where` the engine's line it raised
    at ({"file", "line", "text"}), if known. The checker attaches what it had found before
    the failure (`found`, `probes`) so that it can still be shown."""

    def __init__(self, message: str, recursion: bool = False, kind: str = "", where: dict | None = None):
        super().__init__(message)
        self.recursion = recursion
        self.kind = kind or ("recursion" if recursion else "error")
        self.where = where or {}
        self.found, self.probes = None, None


class EngineRefused(ValueError):
    """The engine could not be loaded, or lacks what the model needs; the message is one line.
    `found` holds what the engine process reported (its probes), when it got that far;
    `skipped` the lines of its file the loader skipped (dicts of compare.statements.SkippedLine)."""

    def __init__(self, message: str, found=None, skipped: list | None = None):
        super().__init__(message)
        self.found = found
        self.skipped = list(skipped or [])


class EngineProcess:
    def __init__(self, engine: str | None = None, inject: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.label = engine or (f"microgpt_scalar with fault {inject}" if inject else "microgpt_scalar.engine.Value")
        self.timeout = timeout
        self.phase = "loading and probing its operations"
        self._messages: queue.Queue = queue.Queue()
        self._stderr: list = []
        self._process = subprocess.Popen([sys.executable, "-c", _START], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_messages, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._send({"engine": engine, "inject": inject})
        self._found = None
        self.probes_so_far: dict = {}  # the probe results streamed as each ends: kept if the process then fails
        self.facts: dict = {}  # what the engine's code looks like (compare.diagnosis.engine_facts), once loaded

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the process if it still runs (only this one, by its id)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
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
                raise EngineRefused(message["message"], skipped=message.get("skipped", []))
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

    def next_message(self, phase: str, timeout: float | None = None, why: str = "",
                     expected: float | None = None) -> dict:
        """The next message, waiting at most `timeout` seconds (default: the process's own
        limit); `why` explains a limit set for this phase, in the message if it passes.
        `expected`: the seconds the phase should take; a phase still running after 2 s shows
        a progress bar on stderr (tqdm, on a terminal) against it."""
        self.phase = phase
        return self._receive(timeout, why, expected)

    def _send(self, message: dict) -> None:
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the process ended; _receive says how

    def _receive(self, timeout: float | None = None, why: str = "", expected: float | None = None) -> dict:
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        deadline = time.monotonic() + limit
        try:
            with _progress(self.phase, expected) as tick:
                message = self._next(deadline, tick)
                while message is not None and message.get("kind") in ("probe", "facts"):  # kept as they come
                    if message["kind"] == "facts":
                        self.facts = message["facts"]
                    else:
                        self.probes_so_far[message["key"]] = message["result"]
                    message = self._next(deadline, tick)
        except queue.Empty:
            self.close()
            because = why if why and limit < self.timeout else "an endless loop? --timeout sets the limit"
            raise EngineFailure(f"the scalar engine ({self.label}) did not finish {self.phase} within "
                                f"{limit:.3g} s and was stopped ({because})", kind="timeout") from None
        if message is None:
            ended = self._ended()
            raise EngineFailure(ended, kind="crash" if "crashed" in ended else "exit")
        if message["kind"] == "failure":
            detail = f": {message['detail']}" if message.get("detail") else ""
            kind = "exit" if message["message"].startswith("called sys.exit") else ""
            raise EngineFailure(f"the scalar engine ({self.label}) {message['message']} while {self.phase}{detail}",
                                message.get("recursion", False), kind, message.get("where"))
        return message

    def _next(self, deadline: float, tick):
        """The next message before `deadline`, calling tick() twice a second meanwhile."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise queue.Empty
            try:
                return self._messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                tick()

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
    "SIGKILL": " (killed, perhaps for using too much memory)",
    "SIGFPE": " (a floating-point exception in C code)",
}


@contextlib.contextmanager
def _progress(phase: str, expected: float | None):
    """tick() -> a bar of the seconds spent against `expected`, shown on stderr once the phase
    has run 2 s and when stderr is a terminal (tqdm's disable=None); a no-op without `expected`."""
    if not expected:
        yield lambda: None
        return
    from tqdm import tqdm

    start, bars = time.monotonic(), []

    def tick():
        spent = time.monotonic() - start
        if spent < 2:
            return
        if not bars:
            bars.append(tqdm(total=max(round(expected), 1), desc=phase, disable=None, file=sys.stderr,
                             bar_format="{desc}: {n:.0f} s of about {total:.0f} s expected |{bar}|"))
        bars[0].n = min(round(spent, 1), bars[0].total)
        bars[0].refresh()

    try:
        yield tick
    finally:
        for bar in bars:
            bar.close()
