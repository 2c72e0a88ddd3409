"""The engine under test runs in a child process (`compare.engine.worker`) inside a sandbox
(`compare.engine.sandbox`), with a time limit and resource limits, and sends back numbers
(`compare.engine.protocol`); an exit, a crash, a hang, a malformed message or an attempt on the
checker there reaches this side only as one line, and the verdict is reached here.

    with EngineProcess(engine="my_engine.py", timeout=300) as scalar:   # starts it at once
        found = scalar.engine()                   # label, notes, probes, missing operations
        scalar.sandbox                            # one line: what confines it
        scalar.start_training(weights, batches, fd=0, seed=42)
        message = scalar.next_message("training step 1", Step)
        scalar.check_own_files()                  # before the verdict: the checker's files as they were

Before the process starts, this process reads its own files (`compare.engine.own_files`) and
imports them from that copy from then on. Starting it imports no torch, so a script can
start it before importing torch itself. Every string that comes back is shown with its
control characters escaped.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import protocol
from .depth import depth_limited
from .own_files import OwnFiles
from .protocol import (CertifyRequest, EngineFacts, EngineFound, Failure, LoadError, LoadRequest, ProbeResult,
                       ProtocolError, Record, Samples, SandboxReport, Stop, TrainRequest, shown)
from .sandbox import SandboxLimits, end_engine_process, start_engine_process

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 300.0  # seconds the engine may take for any one thing: loading, a step


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
    `skipped` the lines of its file the loader skipped (dicts of compare.engine.statements.SkippedLine)."""

    def __init__(self, message: str, found=None, skipped: list | None = None):
        super().__init__(message)
        self.found = found
        self.skipped = list(skipped or [])


class EngineProcess:
    def __init__(self, engine: str | None = None, inject: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 limits: SandboxLimits | None = None):
        self.label = shown(engine) if engine else (f"microgpt_scalar with fault {inject}" if inject
                                                   else "microgpt_scalar.engine.Value")
        self.timeout = timeout
        self.limits = limits or SandboxLimits.for_run(timeout, phases=3)
        self.phase = "loading and probing its operations"
        self.sandbox = None  # one line: what confined the engine's process (its first message)
        self.shapes = None  # tensor name -> (rows, columns), once the model is known
        self._messages: queue.Queue = queue.Queue()
        self._stderr: list = []
        self._found = None
        self.own_files = OwnFiles.read()  # before the engine's code can run: imports come from this copy
        if os.geteuid() != 0:  # without namespaces the engine runs as this user: hide this process's files
            from .confine import PR_SET_DUMPABLE, SetupError, prctl

            try:
                prctl(PR_SET_DUMPABLE, 0)
            except SetupError:
                pass
        self._work = tempfile.mkdtemp(prefix="microgpt-engine-")
        os.chmod(self._work, 0o700)
        self._process = start_engine_process(self.limits, self._work, _engine_reads(engine))
        threading.Thread(target=self._read_messages, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._send(LoadRequest(engine, inject, os.getcwd()))
        self.probes_so_far: dict = {}  # the probe results streamed as each ends: kept if the process then fails
        self.facts: dict = {}  # what the engine's code looks like (compare.engine.loader.engine_facts), once loaded

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """End the engine's process and everything it started; remove its private folder."""
        end_engine_process(self._process)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            try:
                stream.close()
            except OSError:
                pass  # the process is gone; its end of the pipe with it
        shutil.rmtree(self._work, ignore_errors=True)

    def engine(self) -> dict:
        """What the process found: "label" and the fields of protocol.EngineFound.
        EngineRefused if the file cannot be loaded, EngineFailure if the process fails."""
        if self._found is None:
            if self.sandbox is None:
                self.sandbox = self._receive(SandboxReport).level
            message = self._receive(EngineFound, LoadError)
            if isinstance(message, LoadError):
                raise EngineRefused(message.message, skipped=message.skipped)
            self._found = {"label": self.label, **vars(message)}  # every field of EngineFound
        return self._found

    def start_training(self, weights: dict, batches: list, fd: int, seed: int) -> None:
        """Send the steps to take; the process answers with the model's graph depth, then
        one message per step (`next_message`)."""
        from microgpt_scalar.config import GPTConfig, param_shapes

        self.shapes = dict(param_shapes(GPTConfig.from_dict(weights["config"])))
        self._send(TrainRequest(weights, batches, fd, seed, depth_limited(self._found and self._found["chain"])))

    def start_certify(self, docs: list, steps: int, num_samples: int, config_fields: dict, seed: int) -> None:
        """Have the engine train the published run's first `steps` steps (compare.certify)."""
        from microgpt_scalar.config import GPTConfig, param_shapes

        self.shapes = dict(param_shapes(GPTConfig.from_dict(config_fields)))
        self._certify_steps = steps
        self._send(CertifyRequest(docs, steps, num_samples, config_fields, seed))

    def record_run(self, check) -> tuple[list, list]:
        """The records of the steps started by start_certify, each handed to `check` as it
        comes (False stops the run); then the sampled names. As compare.certify.record_run;
        the printed losses and gradient norms are worked out here from the raw numbers."""
        from .runner import step_record

        records = []
        while True:
            message = self.next_message(f"training step {len(records) + 1}", Record, Samples)
            if isinstance(message, Samples):
                if len(records) != self._certify_steps:
                    self.protocol_failure(ProtocolError(f"names after {len(records)} of {self._certify_steps} steps"))
                return records, message.names
            if message.step != len(records) + 1:
                self.protocol_failure(ProtocolError(f"step {message.step} where step {len(records) + 1} was due"))
            records.append(step_record(message.step, message.loss, message.grads))
            if check(records[-1]) is False:
                self.close()
                return records, []

    def next_message(self, phase: str, *expected, timeout: float | None = None, why: str = "",
                     predicted: float | None = None) -> protocol.Message:
        """The next message, one of the `expected` classes, waiting at most `timeout` seconds
        (default: the process's own limit); `why` explains a limit set for this phase, in the
        message if it passes. `predicted`: the seconds the phase should take; a phase still
        running after 2 s shows a progress bar on stderr (tqdm, on a terminal) against it."""
        self.phase = phase
        return self._receive(*expected, timeout=timeout, why=why, predicted=predicted)

    def stop(self) -> None:
        self._send(Stop())

    def check_own_files(self) -> None:
        """EngineFailure if a file of the checker differs on disk from what was read at the start."""
        changed = self.own_files.changed()
        if changed:
            raise EngineFailure(f"the checker's own files changed on disk while the scalar engine ({self.label}) ran: "
                                f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}; no verdict (run "
                                f"again from a clean copy of the project)")

    def _send(self, message: protocol.Message) -> None:
        try:
            self._process.stdin.write(protocol.encode(message).encode("utf-8"))
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the process ended; _receive says how

    def _receive(self, *expected, timeout: float | None = None, why: str = "",
                 predicted: float | None = None) -> protocol.Message:
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        deadline = time.monotonic() + limit
        streamed = (EngineFacts, ProbeResult) if self._found is None else ()  # only while it loads and probes
        try:
            with _progress(self.phase, predicted) as tick:
                while True:
                    line = self._next(deadline, tick)
                    if line is None:
                        break
                    message = self._decoded(line, *expected, *streamed)
                    if isinstance(message, EngineFacts):  # kept as they come, for a failure later
                        self.facts = message.facts
                    elif isinstance(message, ProbeResult):
                        self.probes_so_far[message.key] = message.result
                    else:
                        break
        except queue.Empty:
            self.close()
            because = why if why and limit < self.timeout else "an endless loop? --timeout sets the limit"
            raise EngineFailure(f"the scalar engine ({self.label}) did not finish {self.phase} within "
                                f"{limit:.3g} s and was stopped ({because})", kind="timeout") from None
        if line is None:
            ended = self._ended()
            raise EngineFailure(ended, kind="crash" if "crashed" in ended else "exit")
        if isinstance(message, Failure):
            self.close()
            detail = f": {message.detail}" if message.detail else ""
            kind = "exit" if message.message.startswith("called sys.exit") else ""
            raise EngineFailure(f"the scalar engine ({self.label}) {message.message} while {self.phase}{detail}",
                                message.recursion, kind, message.where)
        return message

    def _decoded(self, line: str, *expected) -> protocol.Message:
        """The message on `line`: one of `expected`, or a Failure; anything else ends the run."""
        try:
            return protocol.decode(line, *expected, Failure, shapes=self.shapes)
        except ProtocolError as error:
            self.protocol_failure(error)

    def _next(self, deadline: float, tick):
        """The next line before `deadline` (None: the process closed its end), calling tick()
        twice a second meanwhile; queue.Empty at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise queue.Empty
            try:
                return self._messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                tick()

    def protocol_failure(self, error: ProtocolError):
        self.close()
        raise EngineFailure(f"the scalar engine's process ({self.label}) sent {error} while {self.phase}; "
                            f"only the checker's own messages belong on its pipe") from None

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
        said = f"; its last words: {shown(last.strip(), 300)}" if last else ""
        return f"{where}: it exited with code {code} (sys.exit or os._exit in the engine's code?){said}"

    def _read_messages(self) -> None:
        stream = self._process.stdout
        try:
            while True:
                line = stream.readline(protocol.MAX_LINE)
                if not line:
                    break
                self._messages.put(line.decode("utf-8", errors="replace"))
        except (OSError, ValueError):
            pass
        self._messages.put(None)

    def _read_stderr(self) -> None:
        try:
            for line in self._process.stderr:
                self._stderr = (self._stderr + [line.decode("utf-8", errors="replace")])[-20:]
        except (OSError, ValueError):
            pass


def _engine_reads(engine: str | None) -> list:
    """The engine's file and folder, and its package's root: what its process must read."""
    if not engine:
        return []
    from .loader import package_of, parse_engine_spec

    path = parse_engine_spec(engine)[0]
    try:
        root, _ = package_of(path)
        return [path, path.resolve().parent] + ([root] if root else [])
    except (OSError, ValueError):
        return [path]


_SIGNAL_MEANING = {
    "SIGSEGV": " (a segmentation fault: memory the process may not touch, e.g. C code recursing too deep)",
    "SIGABRT": " (the interpreter aborted)",
    "SIGKILL": " (killed, perhaps for using too much memory)",
    "SIGXCPU": " (its CPU time ran out: --max-cpu sets the limit)",
    "SIGXFSZ": " (it wrote a file larger than --max-file-size allows)",
    "SIGFPE": " (a floating-point exception in C code)",
}


@contextlib.contextmanager
def _progress(phase: str, predicted: float | None):
    """tick() -> a bar of the seconds spent against `predicted`, shown on stderr once the phase
    has run 2 s and when stderr is a terminal (tqdm's disable=None); a no-op without `predicted`."""
    if not predicted:
        yield lambda: None
        return
    from tqdm import tqdm

    start, bars = time.monotonic(), []

    def tick():
        spent = time.monotonic() - start
        if spent < 2:
            return
        if not bars:
            bars.append(tqdm(total=max(round(predicted), 1), desc=phase, disable=None, file=sys.stderr,
                             bar_format="{desc}: {n:.0f} s of about {total:.0f} s expected |{bar}|"))
        bars[0].n = min(round(spent, 1), bars[0].total)
        bars[0].refresh()

    try:
        yield tick
    finally:
        for bar in bars:
            bar.close()
