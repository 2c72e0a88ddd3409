"""A learner's file run one top-level statement at a time, each under a guard, so that a right
engine loads whatever else the file does at import.

Which statements run is decided by what each one does when it runs, not by what it looks
like: every statement runs, and one that reaches the network, starts a process or a thread,
writes, deletes or renames a file, waits for keyboard input, or runs past its time budget
is stopped there and skipped; so is one that fails. The guard is a PEP 578 audit hook (it
sees every open, socket, subprocess and file-system call the interpreter makes, from any
library) and a timer. A skipped statement's names are taken back out of the module, and
every skipped line is listed with its reason:

    skipped = run_statements(tree, path, module.__dict__)
    [SkippedLine(9, 'fetch(url, "input.txt")', "reaches the network (socket.getaddrinfo)", [])]

The statements are compiled with the file's own `from __future__` imports only.
"""
from __future__ import annotations

import __future__
import ast
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, field

from .usage import Stopwatch, resident_megabytes

STATEMENT_BUDGET = 1.0  # seconds one statement may run: a definition takes microseconds, training takes minutes
IMPORT_BUDGET = 30.0  # an import may load a big library (torch takes seconds)
TICK = 0.05  # seconds between two looks at a block's own time, from when its wall-clock time reaches the budget
WALL_LIMIT = 10  # a block is stopped after this many times its budget in wall-clock time, however busy the machine


@dataclass
class SkippedLine:
    line: int  # where the statement starts
    text: str  # its first line, as written
    reason: str  # what it tried, or how it failed
    names: list = field(default_factory=list)  # the names it would have defined
    raised_at: int | None = None  # the line it raised at, when it failed (a class body's line, say)

    def describe(self) -> str:
        return f"line {self.line}: {self.text}  ({self.reason})"


class Refused(PermissionError):
    """An action the guard does not allow while a file loads. A PermissionError, so that
    library code that expects one (the import system writing bytecode) carries on."""


class Overran(BaseException):
    """A statement ran past its time budget. Not an Exception: a learner's `except Exception`
    must not swallow it."""


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "os.startfile", "pty.spawn", "os.kill", "os.killpg"}
_FILE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate",
                "os.chmod", "os.chown", "os.utime", "os.mkfifo", "os.mknod", "shutil.copyfile", "shutil.copytree",
                "shutil.rmtree", "shutil.move", "shutil.make_archive", "shutil.unpack_archive", "tempfile.mkstemp",
                "tempfile.mkdtemp", "sqlite3.connect"}


def refusal(event: str, args: tuple) -> str | None:
    """Why the guard stops audit event `event`, or None to let it happen."""
    if event.startswith("socket."):  # every download opens a socket
        return f"reaches the network ({event})"
    if event in _PROCESS_EVENTS:
        return f"starts or signals a process ({event})"
    if event == "_thread.start_new_thread":
        return "starts a thread"
    if event == "builtins.input":
        return "waits for keyboard input"
    if event in _FILE_EVENTS:
        return f"changes files ({event} {_short(args[0]) if args else ''})".replace(" )", ")")
    if event == "open" and _opens_for_writing(args):
        return f"writes a file ({_short(args[0])})"
    return None


def _opens_for_writing(args: tuple) -> bool:
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        return bool(set(mode) & set("wax+"))
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _short(value) -> str:
    text = os.fspath(value) if isinstance(value, (str, bytes, os.PathLike)) else repr(value)
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    return text if len(text) <= 60 else "..." + text[-57:]


class _Guard:
    """The audit hook and the timer. The hook is added once per process (audit hooks cannot
    be removed) and acts only while a statement runs under the guard."""

    def __init__(self):
        self.active = self.auditing = False
        self.refused: list = []  # what the running statement tried
        self.watch = None  # the running block's budget, while a timer looks at it
        self.installed = False

    def hook(self, event: str, args: tuple) -> None:
        if not (self.active and self.auditing):
            return
        reason = refusal(event, args)
        if reason is not None:
            self.refused.append(reason)
            raise Refused(f"not allowed while the checker loads an engine: {reason}")

    def install(self) -> None:
        if not self.installed:
            sys.addaudithook(self.hook)
            self.installed = True


_GUARD = _Guard()


def install_guard() -> None:
    """Add the guard's audit hook now. Audit hooks run in the order they were added and the
    first to raise stops the rest, so one added before another process-wide hook (the
    sandbox's tripwire) refuses a loading statement's action before that hook sees it."""
    _GUARD.install()


def _on_tick(signum, frame):
    if _GUARD.active and _GUARD.watch is not None and _GUARD.watch.overran():
        raise Overran()


class _BudgetWatch:
    """A block's budget in its own time (compare.engine.usage): queued time behind other
    processes does not count, up to WALL_LIMIT times the budget in wall-clock time. Once it
    has run out, `grown_mb` is what the process's memory had grown by since the block began."""

    def __init__(self, budget: float):
        self.budget, self.stopwatch, self.reading = budget, Stopwatch(), False
        self.resident_mb, self.grown_mb = resident_megabytes(), None

    def overran(self) -> bool:
        if self.reading:  # a tick that came while the last one still reads (a handler runs between bytecodes)
            return False
        self.reading = True
        try:
            watch = self.stopwatch
            over = watch.own_seconds() >= self.budget or watch.wall_seconds() >= WALL_LIMIT * self.budget
            if over and self.resident_mb is not None:
                now = resident_megabytes()
                self.grown_mb = None if now is None else now - self.resident_mb
            return over
        finally:
            self.reading = False


class guarded:
    """`with guarded(budget) as outcome:` runs the block under the audit hook (unless
    `audit` is False), stopped with Overran once it has run `budget` seconds of its own (on
    the main thread; elsewhere without a timer). Its own time is the wall-clock time less
    what it stood queued behind other processes: computing and waiting both count, a busy
    machine does not. `outcome.refused` lists what it tried that the guard refused;
    `outcome.grown_mb`, when it was stopped, the MB its process's memory had grown by."""

    def __init__(self, budget: float, audit: bool = True):
        self.budget, self.audit, self.refused, self.grown_mb = budget, audit, [], None

    def __enter__(self):
        if self.audit:
            _GUARD.install()
        self._timed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if self._timed:
            self._watch = _GUARD.watch = _BudgetWatch(self.budget)
            self._old_handler = signal.signal(signal.SIGALRM, _on_tick)
            # its own time is at most its wall-clock time: nothing to look at before; after, a look every
            # TICK, which also raises again if a learner's `except BaseException` swallowed the first
            signal.setitimer(signal.ITIMER_REAL, self.budget, TICK)
        _GUARD.refused, _GUARD.active, _GUARD.auditing = [], True, self.audit
        return self

    def __exit__(self, *exc):
        _GUARD.active = False
        self.refused = list(_GUARD.refused)
        if self._timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)
            self.grown_mb, _GUARD.watch = self._watch.grown_mb, None
        return False


def future_flags(tree: ast.Module) -> int:
    """The compiler flags of the file's own `from __future__ import ...` statements."""
    flags = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    return flags


def run_statements(tree: ast.Module, path, namespace: dict, budget: float = STATEMENT_BUDGET,
                   import_budget: float = IMPORT_BUDGET) -> list[SkippedLine]:
    """Run each top-level statement of `tree` in `namespace`, under the guard; the statements
    that were stopped or failed, in order (their names are taken back out of `namespace`)."""
    flags, lines, skipped = future_flags(tree), _source_lines(path), []
    for node in tree.body:
        code = compile(ast.Module([node], type_ignores=[]), str(path), "exec", flags=flags, dont_inherit=True)
        before = dict(namespace)
        reason, raised_at = _run_one(code, namespace, import_budget if _is_import(node) else budget, skipped, path)
        if reason is None:
            continue
        namespace.clear()
        namespace.update(before)  # a skipped statement defines nothing
        text = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ast.unparse(node).split("\n")[0]
        skipped.append(SkippedLine(node.lineno, text if len(text) <= 100 else text[:97] + "...", reason,
                                   bound_names(node), raised_at))
    return skipped


def _run_one(code, namespace: dict, budget: float, skipped: list, path) -> tuple:
    """(None, None) if the statement ran; else (why it was stopped or how it failed, the line
    of the file it raised at)."""
    outcome = guarded(budget)
    try:
        with outcome:
            exec(code, namespace)
    except Overran:
        return f"still running after {budget:g} s: training or sampling?", None
    except (Exception, SystemExit, KeyboardInterrupt) as error:
        at = _raised_at(error, path)
        if outcome.refused:
            return outcome.refused[0], at
        if isinstance(error, SystemExit):
            return f"calls sys.exit({error.code!r})", at
        return f"{type(error).__name__}: {_first_line(error)}{_skipped_name_hint(error, skipped)}", at
    if outcome.refused:  # it caught the refusal itself and carried on
        return outcome.refused[0], None
    return None, None


def _raised_at(error: BaseException, path) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == str(path):
            line = lineno
    return line


def _is_import(node) -> bool:
    return isinstance(node, (ast.Import, ast.ImportFrom))


def bound_names(node) -> list:
    """The module-level names a top-level statement binds: assignment targets, loop and with
    targets, imports, functions and classes (not names inside a function or class body)."""
    names = []

    def visit(inner, top: bool):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(inner.name)
            return
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
            names.extend((alias.asname or alias.name).split(".")[0] for alias in inner.names if alias.name != "*")
            return
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
            names.append(inner.id)
        if isinstance(inner, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return  # their own scope
        for child in ast.iter_child_nodes(inner):
            visit(child, False)

    visit(node, True)
    return list(dict.fromkeys(names))


def skipped_name(error_text: str, skipped: list) -> SkippedLine | None:
    """The skipped statement that defines the name a NameError ("name 'docs' is not defined")
    is about, if any."""
    marker = "name '"
    if marker not in error_text:
        return None
    name = error_text.split(marker, 1)[1].split("'", 1)[0]
    return next((line for line in skipped if name in line.names), None)


def explain_name_error(error_text: str, skipped: list) -> str:
    """`error_text` with, for a NameError about a name a skipped line defines, which line that is."""
    found = skipped_name(error_text, skipped) if "NameError" in error_text or "is not defined" in error_text else None
    if found is None:
        return error_text
    return f"{error_text} (line {found.line}, which defines it, was skipped while loading: {found.reason})"


def _skipped_name_hint(error: BaseException, skipped: list) -> str:
    if not isinstance(error, NameError):
        return ""
    found = skipped_name(str(error), skipped)
    return f", defined by line {found.line}, which was skipped" if found else ""


def _source_lines(path) -> list:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().splitlines()
    except OSError:
        return []


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
