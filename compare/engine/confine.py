"""Inside the engine's process, before the engine's code runs: shut it in.

`compare.engine.sandbox` starts a keeper process; the keeper gives the engine's process (its child)
its own PID namespace when the platform allows it, and this module does the rest from the
inside, as strongly as it can, and says in one line what held:

- namespaces (Linux, run as root): its own mount namespace in which every file system is
  read-only (and without devices or set-user-id programs), a fresh /proc that shows only its
  own processes, a /dev with null, zero, full, random and urandom only, a private temporary
  folder (in memory) as its working folder; its own network namespace (no network at all);
  then it gives up root: a separate user id of its own, or, when the engine's file can be
  read only by root, root's file access without any capability (no mount, no device, no
  signal outside); no new privileges ever (set-user-id programs do not raise them);
- everywhere: resource limits (`SandboxLimits`) and a tripwire (`install_tripwire`): an audit
  hook that ends the run, in one line, at the first attempt to write outside the private
  folder, start a process, send a signal, reach the network, or swap the code of the
  checker's functions. Without namespaces it is the only guard of files, network and
  processes, and code that calls the C library directly (ctypes) goes around it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import stat
import sys
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 28, 36, 38
# keep root's uid from granting capabilities, and lock that: SECBIT_NOROOT, NO_SETUID_FIXUP,
# KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE, each with its lock
SECUREBITS_NO_ROOT = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
SYS_MOUNT_SETATTR = 442  # the same number on every architecture Linux added it for
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9)}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class SetupError(OSError):
    """A step of the confinement the platform refused."""


def _call(name: str, *args) -> int:
    function = getattr(_libc, name, None)
    if function is None:  # not Linux
        raise SetupError(38, f"{name}: not on this platform")
    result = function(*args)
    if result < 0:
        code = ctypes.get_errno()
        raise SetupError(code, f"{name}: {os.strerror(code)}")
    return result


def _path(text) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def prctl(option: int, value: int) -> None:
    _call("prctl", ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
          ctypes.c_ulong(0))


def mount(source, target, fstype, flags: int, data=None) -> None:
    _call("mount", _path(source), _path(target), _path(fstype), ctypes.c_ulong(flags), _path(data))


def die_with_parent() -> None:
    try:
        prctl(PR_SET_PDEATHSIG, 9)  # SIGKILL when the keeper ends, however it ends
    except SetupError:
        pass


# --- the keeper's side ---

def can_use_namespaces() -> bool:
    """Root with the capability to make namespaces (a container may lack it)."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("CapEff:"))
        return bool(int(line.split()[1], 16) & (1 << 21))  # CAP_SYS_ADMIN
    except (OSError, StopIteration, ValueError):
        return False


def become_subreaper() -> None:
    """Orphans of the engine's process become the keeper's children, so it can end them."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except SetupError:
        pass


# --- the engine's process: the file systems ---

def read_only_world(work: str, file_bytes: int, uid: int, needed: list = ()) -> bool:
    """In a new mount namespace: every mount read-only, fresh /proc and /dev, `work` a private
    writable folder in memory, and the `needed` folders reachable by any user (`open_paths`).
    Call as PID 1 of a new PID namespace, as root. Returns whether every needed folder is
    now readable by any user."""
    unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the machine's mounts
    _all_read_only()
    reachable = open_paths(needed)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)
    os.symlink("/proc/self/fd", "/dev/fd")
    mount(None, "/dev", None, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_RDONLY, "size=64k,mode=755")
    size = max(16 << 20, 2 * file_bytes)
    mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700,uid={uid},gid={uid}")
    return reachable


def open_paths(needed: list) -> bool:
    """Make each folder of `needed` reachable by any user, in this mount namespace: a folder
    above it that only its owner may enter (/root, pytest's temporary folders) is covered by
    an empty read-only folder in memory that holds just the needed folders, each bound
    read-only from the original. Returns whether every needed folder is readable by all."""
    covers = {}  # blocked folder -> the needed folders below it
    folders = sorted({os.path.realpath(p) for p in needed if os.path.isdir(p)})
    for path in folders:
        blocked = next((a for a in reversed(Path(path).parents) if not os.stat(a).st_mode & 0o001), None)
        if blocked is not None and not any(Path(path).is_relative_to(other) for other in covers.get(blocked, ())):
            covers.setdefault(blocked, []).append(path)
    for blocked, paths in covers.items():
        if any(blocked.is_relative_to(path) for path in folders):
            continue  # a needed folder holds it: covering it would hide the rest of that folder
        original = os.open(blocked, os.O_PATH | os.O_DIRECTORY)
        mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for path in paths:
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{original}/{os.path.relpath(path, blocked)}", path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(original)
        mount(None, blocked, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    return all(_readable_by_all(Path(os.path.realpath(p))) for p in needed if os.path.exists(p))


def _readable_by_all(path: Path) -> bool:
    mode = os.stat(path).st_mode
    wanted = 0o005 if stat.S_ISDIR(mode) else 0o004
    return mode & wanted == wanted and all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


def _all_read_only() -> None:
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    if _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(AT_RECURSIVE),
                     attr, ctypes.c_size_t(ctypes.sizeof(attr))) == 0:
        return
    for target in reversed(_mount_points()):  # an older kernel: each mount on its own, deepest first
        try:
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        except SetupError:
            _call("umount2", _path(target), ctypes.c_int(MNT_DETACH))  # what cannot be made read-only goes


def _mount_points() -> list:
    with open("/proc/self/mountinfo", "rb") as info:
        points = [os.fsdecode(line.split()[4]) for line in info]
    return [point.encode("latin-1").decode("unicode_escape") for point in points]


# --- the engine's process: who it runs as ---

def give_up_root(uid: int, own_user: bool) -> None:
    """Run on as user `uid` (own_user), or keep root's file access (real uid `uid`, for the
    process limit) without any capability. Either way no privilege can come back."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    if own_user:
        os.setresuid(uid, uid, uid)  # every capability goes with root
    else:
        prctl(PR_SET_SECUREBITS, SECUREBITS_NO_ROOT)
        with open("/proc/sys/kernel/cap_last_cap") as last:
            last_cap = int(last.read())
        for cap in range(last_cap + 1):
            prctl(PR_CAPBSET_DROP, cap)
        os.setresuid(uid, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: none, both words
        _call("capset", header, data)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def no_new_privileges() -> None:
    try:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    except SetupError:
        pass


def set_limits(limits, extra_processes: int = 0) -> None:
    """The resource limits, hard as well as soft: the engine cannot raise them again."""
    for name, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                        (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_NPROC, limits.processes + extra_processes)):
        value = int(value)
        soft, hard = resource.getrlimit(name)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(name, (value, value))


def processes_of(uid: int) -> int:
    """How many processes (threads too) user `uid` runs now: RLIMIT_NPROC counts them all."""
    count = 0
    for entry in (os.listdir("/proc") if os.path.isdir("/proc") else ()):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    with open(f"/proc/{entry}/status") as status:
                        count += next((int(line.split()[1]) for line in status if line.startswith("Threads:")), 1)
            except (OSError, ValueError):
                continue
    return count


# --- the tripwire ---

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PATH_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime", "os.link",
               "os.symlink", "os.rename", "os.setxattr", "os.removexattr", "os.chflags", "os.mkfifo", "os.mknod",
               "shutil.rmtree", "shutil.copyfile", "shutil.move"}
PROCESS_EVENTS = {"os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
                  "subprocess.Popen", "os.startfile", "pty.spawn"}
NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyaddr", "ftplib.connect",
                  "smtplib.connect", "telnetlib.Telnet.open"}
CODE_ATTRIBUTES = {"__code__", "__defaults__", "__kwdefaults__"}


def install_tripwire(work: str, own_packages: tuple, fail) -> None:
    """An audit hook that calls `fail(what)` (which must end the process) at the first attempt
    to write outside `work`, start a process, signal another, reach the network, or replace a
    code object, defaults or keyword defaults of a function of `own_packages`."""
    work = os.path.realpath(work)
    allowed = (work + os.sep, "/dev/null")
    realpath, fspath, getpid, startswith = os.path.realpath, os.fspath, os.getpid, str.startswith

    def outside(path) -> str | None:
        if isinstance(path, int):
            return None  # a descriptor already open
        try:
            where = realpath(fspath(path) if not isinstance(path, bytes) else os.fsdecode(path))
        except (TypeError, ValueError):
            return repr(path)
        return None if where == work or where == "/dev/null" or startswith(where, allowed[0]) else where

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, flags = args[0], args[2]
            if isinstance(flags, int) and flags & WRITE_FLAGS and (where := outside(path)) is not None:
                fail(f"tried to write {where} (it may write only in its private temporary folder)")
        elif event in PATH_EVENTS:
            for path in (args[:2] if event in ("os.rename", "os.link", "os.symlink") else args[:1]):
                if (where := outside(path)) is not None:
                    fail(f"tried to change {where} ({event}; it may write only in its private temporary folder)")
        elif event in PROCESS_EVENTS:
            fail(f"tried to start a process ({event}); an engine's code runs in its own process alone")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if event != "os.kill" or args[0] != getpid():
                fail(f"tried to send a signal to process {args[0]} ({event})")
        elif event in NETWORK_EVENTS:
            fail(f"tried to reach the network ({event})")
        elif event == "object.__setattr__" and len(args) >= 2 and args[1] in CODE_ATTRIBUTES:
            module = getattr(args[0], "__module__", None) or ""
            if module.split(".")[0] in own_packages:
                fail(f"changed the checker's own code ({module}.{getattr(args[0], '__qualname__', '?')}.{args[1]})")

    sys.addaudithook(hook)
