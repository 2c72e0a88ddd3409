"""The process the engine under test runs in: started, limited, and ended as a whole.

    limits = SandboxLimits.for_run(timeout=300, phases=3)    # or SandboxLimits(memory_mb=...)
    process = start_engine_process(limits, work_folder)      # a Popen speaking compare.engine.protocol
    end_engine_process(process)                              # it and everything it started

The parent starts a keeper (`python -c`, in a session of its own); the keeper forks the
engine's process and waits for it. Where the platform allows (Linux, as root), the keeper
gives that process its own PID namespace: it is PID 1 there, everything it starts lives in
the namespace, and when it ends, or the keeper ends (it dies with the keeper), the kernel
ends every process in it. Elsewhere the keeper is a "subreaper": whatever the engine's
process leaves behind, even a detached daemon, becomes the keeper's, and the keeper ends it.
`compare.engine.confine` does the rest inside; the first message on the pipe says what held.

Setting MICROGPT_SANDBOX=no-namespaces in the environment shows the fallback where
namespaces would be available.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_UID_BASE = 100_000  # a user id of the engine's own: base + the keeper's pid (no such user exists)
EXIT_SETUP_FAILED = 121


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of the engine's process, far above what an engine checking the model
    needs (about 300 MB and one process), and the flags that set them."""

    memory_mb: int = 4096  # address space
    cpu_seconds: int = 3600  # CPU time of the whole run
    processes: int = 256  # processes and threads (RLIMIT_NPROC: of its own user)
    file_mb: int = 256  # the largest file it may write (in its private folder)

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb << 20

    @property
    def file_bytes(self) -> int:
        return self.file_mb << 20

    @classmethod
    def for_run(cls, timeout: float, phases: int, **given) -> "SandboxLimits":
        """The defaults, with CPU time enough for every phase (loading, each step) to take its
        whole `timeout` twice over; `given` sets any field (None: the default)."""
        fields = {name: value for name, value in given.items() if value is not None}
        fields.setdefault("cpu_seconds", int(min(2 * timeout * max(phases, 1) + 60, 10**7)))
        return cls(**fields)

    def describe(self) -> str:
        return (f"limits {self.memory_mb:,} MB memory, {self.cpu_seconds:,} s CPU, {self.processes} processes, "
                f"{self.file_mb:,} MB files")


def add_limit_flags(parser) -> None:
    """--max-memory, --max-cpu, --max-processes, --max-file-size for a script that runs an engine."""
    from microgpt_scalar.cli import int_from

    default = SandboxLimits()
    parser.add_argument("--max-memory", type=int_from(64, 1 << 24), metavar="MB",
                        help=f"memory (address space) the engine's process may use (default {default.memory_mb})")
    parser.add_argument("--max-cpu", type=int_from(1, 10**7), metavar="SECONDS",
                        help="CPU time the engine's process may use (default: twice --timeout per step, and more)")
    parser.add_argument("--max-processes", type=int_from(1, 1 << 20), metavar="N",
                        help=f"processes and threads the engine's process may run (default {default.processes})")
    parser.add_argument("--max-file-size", type=int_from(1, 1 << 24), metavar="MB",
                        help=f"largest file the engine may write in its private folder (default {default.file_mb})")


def limits_from(args, phases: int) -> SandboxLimits:
    return SandboxLimits.for_run(args.timeout, phases, memory_mb=args.max_memory, cpu_seconds=args.max_cpu,
                                 processes=args.max_processes, file_mb=args.max_file_size)


# --- the parent's side ---

def start_engine_process(limits: SandboxLimits, work: str, reads: list) -> subprocess.Popen:
    """The keeper, its standard streams pipes (never the parent's terminal), in its own session.
    `reads`: the files and folders of the engine (its file, its folder, its package's root)."""
    config = {"limits": asdict(limits), "work": work, "reads": [os.path.abspath(path) for path in reads] + [os.getcwd()],
              "namespaces": os.environ.get("MICROGPT_SANDBOX") != "no-namespaces"}
    boot = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from compare.engine.sandbox import keep; "
            f"keep({json.dumps(config)!r})")
    environment = {**os.environ, "TMPDIR": work, "HOME": work, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-B", "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=work, env=environment, start_new_session=True,
                            close_fds=True)


def end_engine_process(process: subprocess.Popen) -> None:
    """Ask the keeper to end everything it keeps, then end its whole session by force."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=3)
        except (subprocess.TimeoutExpired, OSError):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the keeper's session: it, and in the fallback its children
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.kill()
    process.wait()


# --- the keeper ---

def keep(config_text: str) -> None:
    """Run in the keeper: fork the engine's process (in a PID namespace of its own where
    possible), wait for it, end whatever it left behind, and exit as it exited."""
    from . import confine

    config = json.loads(config_text)
    limits = SandboxLimits(**config["limits"])
    try:
        confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGTERM)  # the parent killed: end everything (below)
    except confine.SetupError:
        pass
    namespaces = config["namespaces"] and confine.can_use_namespaces()
    why_not = "" if namespaces else ("MICROGPT_SANDBOX=no-namespaces" if not config["namespaces"] else
                                     "not run as root" if os.geteuid() != 0 else "no permission to make namespaces")
    if namespaces:
        try:
            confine.unshare(confine.CLONE_NEWPID)
        except confine.SetupError as error:
            namespaces, why_not = False, str(error)
    if not namespaces:
        confine.become_subreaper()
    resource_core_off()
    uid = SANDBOX_UID_BASE + os.getpid() % 800_000
    child = os.fork()
    if child == 0:
        _engine_process(config["work"], config["reads"], limits, namespaces, why_not, uid)
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # only the engine's process holds the pipes: they close when it ends
        os.dup2(devnull, fd)

    def stop(signum, frame):
        _end_descendants(child)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    _, status = os.waitpid(child, 0)
    _end_descendants(None)
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def resource_core_off() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _engine_process(work: str, reads: list, limits: SandboxLimits, namespaces: bool, why_not: str,
                    uid: int) -> None:
    from . import confine

    confine.die_with_parent()
    os.setsid()  # a session of its own: its kill(0) reaches only what it started
    try:
        if namespaces:
            own_user = confine.read_only_world(work, limits.file_bytes, uid, needed_folders(reads))
            if not own_user:
                os.chown(work, 0, 0)
            confine.give_up_root(uid, own_user)
            os.chdir(work)
            who = ("a user of its own without privileges" if own_user else
                   "root's file access without any capability (what it must read is readable only by root)")
            level = f"namespaces: its own processes, no network, files read-only but a private folder; {who}"
            extra = 0
        else:
            confine.no_new_privileges()
            level = (f"no namespaces ({why_not}): its own session, ended as a whole; an audit hook refuses "
                     f"writes outside a private folder, processes, signals and the network"
                     + ("; no process limit as root" if os.geteuid() == 0 else ""))
            extra = confine.processes_of(os.getuid()) if os.geteuid() != 0 else 0
        confine.set_limits(limits, extra)
    except (OSError, ValueError) as error:
        os.write(2, f"the sandbox could not be set up: {error}\n".encode())
        os._exit(EXIT_SETUP_FAILED)
    from .worker import main

    main(f"{level}; {limits.describe()}", work)


def needed_folders(reads: list) -> list:
    """What the engine's process must read: the project, Python and its path, and the
    engine's own folders and files (`reads`)."""
    python = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return [str(ROOT), *python, *(p for p in sys.path if p and os.path.isdir(p)), *reads]


def _end_descendants(child: int | None) -> None:
    """SIGKILL to `child` and to every process below the keeper, until none is left (orphans
    come to the keeper as their subreaper); then reap them."""
    if child is not None:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    me = os.getpid()
    for _ in range(100):
        below = _descendants(me)
        if not below:
            break
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.01)
    _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _descendants(root: int) -> list:
    parents = {}
    for entry in (os.listdir("/proc") if os.path.isdir("/proc") else ()):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.append(pid)
                frontier.append(pid)
    return found
