"""The files a run reads and writes, so that nothing already saved is lost or half-written.

Every file the project writes goes through `claim_output` and `Output.write` (or
`write_atomically`, which claims the file for the length of one write):

    output = claim_output(args.save, "--save", inputs=[data_file], may_replace=[args.load])
    ...                                       # the run's work
    output.write(checkpoint_bytes)            # as often as it likes; the last write wins

- A claim is an exclusive lock (flock) on the output's path, taken at the start of the run and
  held until it ends: a second run aiming at the same file is refused at its start, in one line.
  The locks live in a folder of the system's temporary directory, never beside the file.
- What a run must never replace is refused at the claim and again at each write: a link, a
  directory, a device, a FIFO or any other file that is not a regular file; a file this run
  reads (its data, its engine, its golden trace, the checkpoint it goes on from); an existing
  file, unless the run was told it may replace it; and a file another program wrote after the
  claim.
- A write goes to a nameless temporary file in the target's folder (O_TMPFILE), which is given a
  name only for the moment of the rename over the target; where the file system has no nameless
  files, to a named one. Either name carries the writer's id (host and process id), and a writer
  removes only leftovers of its own id (an earlier run that had this process id and crashed)
  or of a process of this host that no longer exists.

Standard library only.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import hashlib
import os
import re
import secrets
import socket
import stat
import tempfile
from pathlib import Path

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.(?P<host>[A-Za-z0-9_-]*)-(?P<pid>[0-9]+)-[0-9a-f]{8}\.(?:tmp|probe)$")
_claims: dict = {}  # resolved path -> the Output this process holds for it


class FileError(ValueError):
    """A file a run must not read or write, or could not; the message is one line."""


def shown(path) -> str:
    """A path as one line of text: control characters (newlines, escapes) written as \\n, \\x1b, ..."""
    return escape_controls(os.fspath(path)) if path is not None else "(none)"


def escape_controls(text: str) -> str:
    """`text` with every control character (and any character not printable in UTF-8) escaped,
    so what reaches a terminal is one line of plain text."""
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7f <= code < 0xa0 or 0xd800 <= code < 0xe000 or ch in "\u2028\u2029":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}" if code < 0x100
                                                                    else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


# --- the writer's id ---

def writer_id() -> str:
    """This process's id in the names of its temporary files: host and process id."""
    return f"{_host()}-{os.getpid()}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]


def _short_name(name: str) -> str:
    """The target's name as it appears in its temporary files' names (shortened if long, so the
    temporary name stays within NAME_MAX)."""
    if len(name.encode("utf-8", "surrogateescape")) <= 120:
        return name
    return name[:40] + "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _temp_name(target: Path, suffix: str = "tmp") -> str:
    return f".{_short_name(target.name)}.{writer_id()}-{secrets.token_hex(4)}.{suffix}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or a number we cannot ask about: assume it lives
    return True


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files of writes to `target` that were cut short: those of this
    process's id (an earlier process with the same id, which crashed) and those of a process
    of this host that no longer exists. Another live writer's files are left alone."""
    removed = []
    stem, host = _short_name(target.name), _host()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or match["stem"] != stem or match["host"] != host:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or not _process_exists(pid):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
            except OSError:
                pass  # not ours to remove after all (permissions): leave it
    return removed


# --- paths given on the command line ---

def check_path_text(path, flag: str) -> Path:
    """`path` as a Path, or FileError if no file can have this name: empty, a NUL character, a
    component longer than NAME_MAX bytes or a whole path longer than PATH_MAX."""
    text = os.fspath(path)
    if not text:
        raise FileError(f"{flag}: the path is empty")
    if "\0" in text:
        raise FileError(f"{flag} {shown(text)}: a path cannot hold a NUL character")
    encoded = os.fsencode(text) if not _has_surrogates(text) else text.encode("utf-8", "surrogateescape")
    if len(encoded) > PATH_MAX:
        raise FileError(f"{flag} {shown(text)[:80]}...: the path is longer than {PATH_MAX} bytes")
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            raise FileError(f"{flag}: a part of the path is longer than {NAME_MAX} bytes "
                            f"({shown(os.fsdecode(part))[:40]}...)")
    return Path(text)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lstat(path: Path, flag: str):
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise FileError(f"{flag} {shown(path)}: {error.strerror}") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def _identity(status) -> tuple | None:
    return None if status is None else (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _same_file(path: Path, other) -> bool:
    if not other:
        return False
    try:
        return os.path.samefile(path, other)
    except (OSError, ValueError):
        return False


# --- reading ---

def open_input(path, what: str):
    """A regular file opened for reading in binary, or FileError in one line: missing, a
    directory, a FIFO or a device (opened without waiting, so a FIFO never hangs the run),
    unreadable, or a name no file can have."""
    path = check_path_text(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileError(f"{what} not found: {shown(path)}") from None
    except OSError as error:
        raise FileError(f"cannot read {what} {shown(path)}: {error.strerror}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise FileError(f"{what} {shown(path)} is {_kind(status.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path, what: str) -> bytes:
    """The bytes of a regular file (see `open_input`)."""
    with open_input(path, what) as file:
        try:
            return file.read()
        except OSError as error:
            raise FileError(f"cannot read {what} {shown(path)}: {error.strerror}") from None


def check_input(path, what: str) -> Path:
    """FileError unless `path` names a regular file (followed through links) that can be opened."""
    path = check_path_text(path, what)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise FileError(f"{what} not found: {shown(path)}") from None
    except OSError as error:
        raise FileError(f"cannot read {what} {shown(path)}: {error.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise FileError(f"{what} {shown(path)} is {_kind(status.st_mode)}, not a regular file")
    return path


# --- claiming and writing ---

class Output:
    """A file this run has claimed and may write (see the module's docstring)."""

    def __init__(self, path: Path, flag: str, lock_fd: int, identity):
        self.path = path
        self.flag = flag
        self._lock_fd = lock_fd
        self._identity = identity  # the file as the claim found it or the last write left it (None: absent)

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def write(self, data: bytes) -> None:
        """Replace the file with `data`, all or nothing; FileError (one line) if it cannot be."""
        if not self.held:
            raise FileError(f"{self.flag} {shown(self.path)}: this run no longer holds the file")
        label = f"{self.flag} {shown(self.path)}" if self.flag else shown(self.path)
        status = _lstat(self.path, self.flag or "output")
        if status is not None and not stat.S_ISREG(status.st_mode):
            raise FileError(f"{label}: is {_kind(status.st_mode)} now; not replacing it")
        if status is not None and _identity(status) != self._identity:
            raise FileError(f"{label}: another program wrote it after this run began; not replacing it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.path)
            _replace_with(self.path, data)
            self._identity = _identity(os.lstat(self.path))
        except OSError as error:
            raise FileError(f"cannot write {label}: {error.strerror or error}") from None

    def release(self) -> None:
        if self._lock_fd is not None:
            _claims.pop(self._key(), None)
            os.close(self._lock_fd)  # closing the only descriptor drops the flock
            self._lock_fd = None

    def _key(self) -> str:
        return _resolved(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def claim_output(path, flag: str, inputs=(), may_replace=(), overwrite: bool = False) -> Output | None:
    """Claim `path` for this run (None if `path` is empty or None); FileError in one line if
    the run may not write it (see the module's docstring). Held until `release()` or exit."""
    if path is None:
        return None
    path = check_path_text(path, flag)
    key = _resolved(path)
    if key in _claims:
        raise FileError(f"{flag} {shown(path)}: this run already writes it as {_claims[key].flag or 'another output'}")
    _refuse_unwritable_kind(path, flag)
    for other in inputs:
        if _same_file(path, other):
            raise FileError(f"{flag} {shown(path)}: is an input of this run; not overwriting it")
    lock_fd = _lock(key, flag, path)
    try:
        status = _refuse_unwritable_kind(path, flag)  # again, now that no other run of ours can change it
        if status is not None and not (overwrite or any(_same_file(path, other) for other in may_replace)):
            raise FileError(f"{flag} {shown(path)}: exists and is not the file this run continues from; "
                            f"give --overwrite to replace it")
        _check_directory(path, flag)
    except BaseException:
        os.close(lock_fd)
        raise
    output = Output(path, flag, lock_fd, _identity(status))
    _claims[key] = output
    return output


def _refuse_unwritable_kind(path: Path, flag: str):
    status = _lstat(path, flag)
    if status is not None and stat.S_ISLNK(status.st_mode):
        raise FileError(f"{flag} {shown(path)}: is a link; name the file itself")
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise FileError(f"{flag} {shown(path)}: is not a regular file ({_kind(status.st_mode)}); not replacing it")
    return status


def _check_directory(path: Path, flag: str) -> None:
    """The folder the file goes in exists or can be made, and a file can be created in it."""
    directory = path.parent
    while True:
        status = _lstat(directory, flag)
        if status is not None:
            break
        if directory == directory.parent:
            break
        directory = directory.parent
    if not directory.is_dir():
        raise FileError(f"{flag} {shown(path)}: {shown(directory)} is not a directory")
    try:
        _probe(directory)
    except OSError as error:
        raise FileError(f"{flag} {shown(path)}: cannot write in {shown(directory)} ({error.strerror})") from None


def _probe(directory: Path) -> None:
    """Create a file in `directory` and remove it: a nameless one where the file system allows."""
    try:
        os.close(os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600))
        return
    except AttributeError:
        pass  # no O_TMPFILE on this platform
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    probe = directory / _temp_name(directory / "probe", "probe")
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    os.unlink(probe)


def _replace_with(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file in `path`'s folder, flush it to disk and rename it over `path`."""
    fd, temp = _open_temp(path)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        if temp is None:  # nameless: give it a name of ours for the rename
            temp = _name_nameless(fd, path)
        os.replace(temp, path)
        temp = None
    finally:
        os.close(fd)
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
    _sync_directory(path.parent)


def _name_nameless(fd: int, path: Path) -> Path:
    """Link the nameless file `fd` into `path`'s folder under a temporary name of ours
    (linkat following /proc/self/fd/N); if the system refuses, copy it to a named file."""
    temp = path.parent / _temp_name(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", temp.name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=True)
        return temp
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EACCES, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(folder)
    copy = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        source = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
        try:
            while block := os.read(source, 1 << 20):
                os.write(copy, block)
        finally:
            os.close(source)
        os.fsync(copy)
    except BaseException:
        os.unlink(temp)
        raise
    finally:
        os.close(copy)
    return temp


def _open_temp(path: Path):
    """(descriptor, name or None for a nameless file) of a new file in `path`'s folder, with the
    mode a file open() makes would have."""
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o666), None
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    temp = path.parent / _temp_name(path)
    return os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), temp


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path, data: bytes, flag: str = "") -> None:
    """Replace `path` with `data`, all or nothing, through this process's claim on it if it
    holds one, else through a claim held for this write only (which may replace an existing
    regular file, never a link, directory or device). FileError in one line if it cannot."""
    path = check_path_text(path, flag or "output")
    held = _claims.get(_resolved(path))
    if held is not None:
        held.write(data)
        return
    with claim_output(path, flag, overwrite=True) as output:
        output.write(data)


# --- the locks ---

def _resolved(path: Path) -> str:
    path = Path(os.path.abspath(path))
    return os.path.join(os.path.realpath(path.parent), path.name)


def _lock_directory() -> Path:
    """A folder of this user's, in the system's temporary directory, for the lock files."""
    folder = Path(tempfile.gettempdir()) / f"microgpt-locks-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise FileError(f"cannot make the lock folder {shown(folder)}: {error.strerror}") from None
    status = os.lstat(folder)
    if not stat.S_ISDIR(status.st_mode) or (hasattr(os, "getuid") and status.st_uid != os.getuid()):
        raise FileError(f"the lock folder {shown(folder)} is not a folder of this user's")
    return folder


def _lock(key: str, flag: str, path: Path) -> int:
    """An open descriptor holding an exclusive flock for `key`; FileError if another process holds it."""
    lock_path = _lock_directory() / (hashlib.sha256(os.fsencode(key) if not _has_surrogates(key)
                                                    else key.encode("utf-8", "surrogateescape")).hexdigest()[:40]
                                     + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as error:
        raise FileError(f"cannot lock {flag} {shown(path)}: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _holder(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FileError(f"{flag} {shown(path)}: another run{holder} is writing it; "
                            f"wait for it to finish or choose another file") from None
        raise FileError(f"cannot lock {flag} {shown(path)}: {error.strerror}") from None
    os.set_inheritable(fd, False)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {_host()} {shown(path)}\n".encode("utf-8", "replace"), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        pid, host = os.pread(fd, 200, 0).decode("utf-8", "replace").split()[:2]
        return f" (process {int(pid)} on {host})"
    except (OSError, ValueError):
        return ""


@atexit.register
def release_all() -> None:
    """Let go of every claim this process holds (`microgpt_scalar.cli.command` does so as a
    command's main() returns)."""
    for output in list(_claims.values()):
        output.release()


def _forget_claims_after_fork() -> None:
    """A forked child holds no claim of its parent's (the lock stays the parent's)."""
    for output in list(_claims.values()):
        try:
            os.close(output._lock_fd)  # the child's copy of the descriptor; the parent's lock stays
        except OSError:
            pass
        output._lock_fd = None
    _claims.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_claims_after_fork)

__all__ = ["FileError", "Output", "check_input", "check_path_text", "claim_output", "escape_controls",
           "open_input", "read_input", "release_all", "remove_leftovers", "shown", "write_atomically", "writer_id"]
