"""An exercise's check, run in a process of its own: the learner's file is untrusted code.

    outcome = check_in_own_process("mlp", Path("docs/exercises/mlp.py"), ProcessLimits(timeout_s=120))
    outcome.passed, outcome.lines    # the verdict and its report, as `tutorial.exercises.run` made them
    outcome.error                    # or one line: why the file could not be checked
    outcome.printed                  # what the learner's code printed, kept apart from the verdict

The child process runs `run` (the check and the learner's code together), in a session of its
own below a keeper that ends whatever it leaves behind (as `compare.engine.sandbox` does), under
resource limits (address space, CPU time, file size, no core files; the `compare.engine.sandbox`
limits and `compare.engine.confine.set_limits`), with a time limit on the check.
Whatever the learner's code prints goes to a file of its own; the verdict goes on the child's
original standard output as one JSON line carrying a token only the parent and the child know.
So a file that hangs, exits, crashes or allocates without bound ends in one line naming it, and
text printed by the exercise is never taken for the verdict. After the check the child compares
the checker's functions with what they were before the learner's file loaded, so a file that
rebinds or rewrites them does not pass. Code written to deceive the check (computing the
expected numbers itself, patching torch) is beyond what this can stop.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 90  # the child's own start (torch's import) before the check's time limit begins
CHECKER_PACKAGES = ("tutorial", "microgpt_scalar", "microgpt_torch")
PRINTED_LINES = 20  # the learner's printed output shown: its last lines,
PRINTED_WIDTH = 300  # each cut to this many characters
TAIL_BYTES = 64 << 10


@dataclass(frozen=True)
class ProcessLimits:
    """The time the check may take once the child has started, and the child's resources."""

    timeout_s: int = 120
    memory_mb: int = 4096  # address space: torch and the checks need under 1 GB
    file_mb: int = 64  # the largest file it may write, printed output included

    def sandbox_limits(self):
        from compare.engine.sandbox import SandboxLimits

        return SandboxLimits.for_run(self.timeout_s + STARTUP_S, phases=2, memory_mb=self.memory_mb,
                                     file_mb=self.file_mb)


@dataclass
class Outcome:
    passed: bool = False
    lines: list = field(default_factory=list)  # the report (empty when the file could not be checked)
    error: str = ""  # one line, without "error: "
    printed: list = field(default_factory=list)  # the last lines the learner's code printed


# --- the parent's side ---

def check_in_own_process(name: str, path: Path, limits: ProcessLimits) -> Outcome:
    from .exercises import shown_path

    shown = shown_path(path)
    with tempfile.TemporaryDirectory(prefix="exercise-") as folder:
        folder = Path(folder)
        work = folder / "work"
        work.mkdir()
        token = secrets.token_hex(16)
        config = {"name": name, "path": str(path), "token": token, "limits": asdict(limits),
                  "dump": str(folder / "traceback.txt")}
        environment = {**os.environ, "TMPDIR": str(work), "PYTHONDONTWRITEBYTECODE": "1"}  # its temporary files here
        boot = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tutorial.own_process import keeper; keeper()"
        with open(folder / "verdict", "wb") as verdict, open(folder / "printed", "wb") as printed:
            process = subprocess.Popen([sys.executable, "-B", "-c", boot], stdin=subprocess.PIPE, stdout=verdict,
                                       stderr=printed, env=environment, start_new_session=True, close_fds=True)
        timed_out = False
        try:
            try:
                process.stdin.write((json.dumps(config) + "\n").encode())
                process.stdin.close()
            except OSError:  # it ended before reading: its status says why
                pass
            try:
                process.wait(limits.timeout_s + STARTUP_S)
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            end_process_group(process)
        dump = read_text(folder / "traceback.txt")
        outcome = verdict_of(read_text(folder / "verdict"), token)
        if outcome is None:
            outcome = Outcome(error=why_it_ended(shown, path, process.returncode, timed_out, dump, limits))
        outcome.printed = last_lines(folder / "printed")
        return outcome


def end_process_group(process: subprocess.Popen) -> None:
    """Ask the keeper to end everything below it, then end its session's process group by force
    and reap it."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.kill()
    process.wait()


def read_text(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(TAIL_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


def last_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - TAIL_BYTES))
            lines = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    lines = [line if len(line) <= PRINTED_WIDTH else line[:PRINTED_WIDTH] + " ..." for line in lines]
    if len(lines) > PRINTED_LINES or size > TAIL_BYTES:
        return [f"(its last {PRINTED_LINES} lines)"] + lines[-PRINTED_LINES:]
    return lines


def verdict_of(text: str, token: str) -> Outcome | None:
    """The child's one JSON line, if that is all its verdict channel holds and it carries the token."""
    if not text:
        return None
    try:
        message = json.loads(text) if text.count("\n") == 1 and text.endswith("\n") else None
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("token") != token:
        return Outcome(error="the checker's verdict channel holds something else than the check's verdict: "
                             "the exercise wrote into it, so no verdict can be given")
    if message.get("error"):
        return Outcome(error=str(message["error"]))
    return Outcome(passed=message.get("passed") is True, lines=[str(line) for line in message.get("lines", [])])


def why_it_ended(shown: str, path: Path, status: int, timed_out: bool, dump: str, limits: ProcessLimits) -> str:
    """One line for a child that ended without a verdict."""
    at = learner_line(dump, path)
    if timed_out or dump.startswith("Timeout"):
        return (f"{shown} did not finish within {limits.timeout_s} s" + (f", still running {at}" if at else "")
                + ": an endless loop? (--timeout sets the limit)")
    if status is not None and status < 0:
        number = -status
        if number == signal.SIGXCPU:
            return f"{shown} used up the CPU time its check may use ({limits.sandbox_limits().cpu_seconds} s)"
        if number == signal.SIGXFSZ:
            return f"{shown} wrote more than {limits.file_mb} MB (a file, or its printed output) while being checked"
        kind = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return (f"the check of {shown} was ended by {kind}" + (f" at {at}" if at else "")
                + (f" (its process may use {limits.memory_mb:,} MB: --max-memory)" if number in (
                    signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT) else ""))
    return (f"{shown} ended the check's process (exit status {status}) before the check was done: "
            "an os._exit() in it? A checked file must return, not end the program")


def learner_line(dump: str, path: Path) -> str:
    """'line 3: while True: pass' for the innermost frame of the learner's file in a faulthandler dump."""
    for match in re.finditer(r'^\s*File "(?P<file>.+)", line (?P<line>\d+)', dump, re.M):
        if Path(match["file"]).resolve() == Path(path).resolve():
            number = int(match["line"])
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[number - 1].strip()
            except (OSError, IndexError):
                text = ""
            return f"line {number}" + (f": {text}" if text else "")
    return ""


# --- the keeper: the parent's child, the check's parent ---

def keeper() -> None:
    """Fork the check's process and wait for it; then end whatever it left behind (a process it
    started that left the session comes to the keeper, its "subreaper", as an orphan), and exit
    as the check's process exited. SIGTERM (from the parent, or when the parent dies) ends all."""
    import resource

    from compare.engine import confine

    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGTERM)
    except confine.SetupError:
        pass
    confine.become_subreaper()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the job's pipe and the output files are the check's alone
        os.dup2(devnull, fd)

    def stop(signum, frame):
        end_descendants()
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    _, status = os.waitpid(pid, 0)
    end_descendants()
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def end_descendants() -> None:
    """SIGKILL every process below this one, again until none is left, reaping them."""
    for _ in range(100):
        below = descendants(os.getpid())
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not below:
            return


def descendants(root: int) -> list:
    """The processes below `root`, from each process's parent in /proc."""
    parent_of = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parent_of[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parent_of.items() if ppid == parent and pid not in found]
        found += children
        frontier += children
    return found


# --- the check's process ---

def child() -> None:
    """Read the job from stdin, shut the process in, run the check, send the verdict, end."""
    config = json.loads(sys.stdin.readline())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # input() in the learner's code ends at once
    verdict_fd = os.dup(1)
    os.dup2(2, 1)  # all the learner prints goes to the printed file, never to the verdict
    sys.stdout = sys.stderr
    write, leave = os.write, os._exit  # held here: the learner's code may rebind the os module's
    limits = ProcessLimits(**config["limits"])

    def send(message: dict) -> None:
        data = (json.dumps({**message, "token": config["token"]}) + "\n").encode()
        while data:
            data = data[write(verdict_fd, data):]

    try:
        from compare.engine import confine

        confine.die_with_parent()
        confine.set_limits(limits.sandbox_limits(), confine.processes_of(os.getuid()) if os.geteuid() != 0 else 0)
        dump = open(config["dump"], "w")
        import faulthandler

        faulthandler.enable(dump)  # a crash: where it was
        from . import exercises, model_steps, training_steps, verdict  # noqa: F401  (torch too, before the clock)
    except (Exception, MemoryError) as error:
        send({"error": f"the check's process could not start: {type(error).__name__}: {error} "
                       f"(it may use {limits.memory_mb:,} MB: --max-memory)"})
        leave(0)
    before, rewritten = checker_code(), watch_code_changes()
    changed = changed_since
    faulthandler.dump_traceback_later(limits.timeout_s, exit=True, file=dump)
    message = checked(config["name"], Path(config["path"]), exercises, verdict, before, changed)
    if rewritten and "error" not in message:
        message = {"error": f"{exercises.shown_path(Path(config['path']))} changed the checker's own code "
                            f"({rewritten[0]}), so no verdict can be given"}
    send(message)
    leave(0)


def watch_code_changes() -> list:
    """A list that an audit hook fills with the name of any function of the checker whose code,
    defaults or keyword defaults are replaced from now on (a hook cannot be removed)."""
    seen = []
    attributes = {"__code__", "__defaults__", "__kwdefaults__"}

    def hook(event: str, args: tuple) -> None:
        if event == "object.__setattr__" and len(args) >= 2 and args[1] in attributes:
            module = getattr(args[0], "__module__", None) or ""
            if module.split(".")[0] in CHECKER_PACKAGES:
                seen.append(f"{module}.{getattr(args[0], '__qualname__', '?')}.{args[1]}")

    sys.addaudithook(hook)
    return seen


def checked(name, path, exercises, verdict, before, changed) -> dict:
    """The verdict message: {passed, lines} or {error}."""
    shown = exercises.shown_path(path)
    try:
        passed, lines = exercises.run(name, path)
    except exercises.Unusable as error:
        return {"error": str(error)}
    except verdict.OutOfMemory as error:
        return {"error": f"{error} (its process may use the memory --max-memory sets)"}
    except MemoryError:
        return {"error": f"the check of {shown} ran out of memory (its process may use the memory --max-memory sets)"}
    except SystemExit as exit:
        at = learner_frame(exit, path)
        return {"error": f"{shown} called sys.exit({exit.code!r}) while being checked"
                         + (f", at {at}" if at else "") + ": a checked file must return, not end the program"}
    except Exception as error:  # the learner's code, called by the check outside Learner.call
        at = learner_frame(error, path)
        return {"error": f"checking {shown} raised {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                         + (f" (at {at})" if at else "")}
    what = changed(before)
    if what is not None:
        return {"error": f"{shown} changed the checker's own code ({what}), so no verdict can be given"}
    return {"passed": passed, "lines": lines}


def learner_frame(error: BaseException, path: Path) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"line {frames[-1].lineno}: {(frames[-1].line or '').strip()}" if frames else ""


def checker_code() -> dict:
    """'module.name' (and 'module.Class.attr') -> (object, code, defaults, keyword defaults) for
    every module of the checker's packages loaded now: what the learner's code must leave alone."""
    found = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in CHECKER_PACKAGES:
            continue
        for name, obj in list(vars(module).items()):
            found[f"{module_name}.{name}"] = parts(obj)
            if isinstance(obj, type) and obj.__module__ == module_name:
                for attr, value in list(vars(obj).items()):
                    found[f"{module_name}.{name}.{attr}"] = parts(value)
    return found


def parts(obj) -> tuple:
    return (obj, getattr(obj, "__code__", None), getattr(obj, "__defaults__", None),
            getattr(obj, "__kwdefaults__", None))


def changed_since(before: dict) -> str | None:
    """The first name of `before` now bound to another object, code or defaults; None if none."""
    now = checker_code()
    for name, was in before.items():
        if any(a is not b for a, b in zip(was, now.get(name, ()))) or name not in now:
            return name
    return None
