"""The C library, called directly: what a determined engine uses to go around Python's audit
hooks. What it does then must still fail: the operating system refuses it."""
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)


def write_file(path: str, data: bytes, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """Write `data` to `path` with open(2) and write(2); -errno on failure."""
    fd = libc.open(path.encode(), flags, 0o644)
    if fd < 0:
        return -ctypes.get_errno()
    written = libc.write(fd, data, len(data))
    libc.close(fd)
    return written if written >= 0 else -ctypes.get_errno()
