"""Helpers the test files share: loading a script as a module, editing a copy of a source file,
checking a one-line error, starting processes that never outlive their test."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LEARNER_ENGINE = REPO / "tests" / "fixtures" / "learner_engine.py"  # a correct engine, micrograd's style


COMMAND_MODULES = {  # scripts/{name}.py is a thin wrapper over the package module that holds its code
    "compare_step": "compare.command",
    "certify": "compare.certify_command",
    "train_scalar": "microgpt_scalar.train_command",
    "train_torch": "microgpt_torch.train_command",
    "sample": "microgpt_torch.sample_command",
}


def load_script(name: str):
    """The code of scripts/{name}.py as a module, to call its functions in this process: the
    package module a command's wrapper runs, or the script itself."""
    if name in COMMAND_MODULES:
        return importlib.import_module(COMMAND_MODULES[name])
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def replace_once(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced by `new`; fails unless `old` occurs exactly once, so an edit
    that no longer applies cannot leave a test checking the unedited code."""
    assert text.count(old) == 1, f"expected exactly one {old!r}, found {text.count(old)}"
    return text.replace(old, new)


def edited_copy(source: Path, target: Path, old: str, new: str) -> Path:
    """Write `source` to `target` with one edit; returns `target`."""
    target.write_text(replace_once(source.read_text(encoding="utf-8"), old, new), encoding="utf-8")
    return target


def assert_one_line_error(error_type, call, words) -> None:
    """`call()` raises `error_type` with a one-line message containing every one of `words`."""
    with pytest.raises(error_type) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def verdict_of(out: str) -> str:
    """The verdict line of a report (the probe table and the skipped lines come before it)."""
    return next((line for line in out.splitlines() if line.startswith(("AGREE", "DISAGREE"))), "")


class Children:
    """The processes a test starts: `start(args, **popen_arguments)` is subprocess.Popen, each
    child leading a process group of its own; `end_all()` kills every child with everything
    it started and reaps it (the `children` fixture calls it when the test ends, passed or
    failed). Each child is also killed by the kernel if the thread that started it ends first
    (pytest killed mid-test): start children from the test's own thread."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, args, **popen_arguments) -> subprocess.Popen:
        child = subprocess.Popen(args, start_new_session=True, preexec_fn=dies_with(os.getpid()),
                                 **popen_arguments)
        self.started.append(child)
        return child

    def end_all(self) -> None:
        for child in self.started:
            # Found while the child still runs (once it ends they belong to init): processes
            # it started in sessions of their own, as torchrun does its workers.
            started_by_it = descendants(child.pid) if child.poll() is None else []
            for pid in [child.pid, *started_by_it]:
                _kill(os.kill, pid)
            _kill(os.killpg, child.pid)  # its process group: what it started and did not move
        for child in self.started:
            child.wait()
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, in turn (from /proc: Linux)."""
    children_of: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()  # after the name, which may hold spaces
            except OSError:  # ended meanwhile
                continue
            children_of.setdefault(int(fields[1]), []).append(int(entry))
    found, waiting = [], [pid]
    while waiting:
        started = children_of.get(waiting.pop(), [])
        found += started
        waiting += started
    return found


def _kill(kill, pid: int) -> None:
    try:
        kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # ended already
        pass


def dies_with(parent: int):
    """What a child runs between fork and exec: the kernel sends it SIGKILL when its parent
    ends (Linux's PR_SET_PDEATHSIG), and it ends at once if the parent has already."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)

    def set_up():
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return set_up


PR_SET_PDEATHSIG = 1
