"""At import, looks at the process it runs in and refuses to load, with what it saw as the
one-line reason (JSON): who it runs as, its process ids, its limits, and what the operating
system does when it writes a file of the checker, a file in its private folder (TMPDIR), and
connects to the network, all through the C library (around the audit hook)."""
import ctypes
import json
import os
import resource
import socket
import struct

import compare
from libc import libc, write_file

import wrong_exp


def _attack():
    seen = {
        "uid": os.getuid(), "euid": os.geteuid(), "pid": os.getpid(), "ppid": os.getppid(),
        "pgid_is_own": os.getpgid(0) == os.getpid(), "cwd": os.getcwd(),
        "limits": {name: resource.getrlimit(getattr(resource, name))
                   for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE")},
        "write_checker": write_file(os.path.join(os.path.dirname(compare.__file__), "step", "torch_side.py"), b"#"),
        "work": os.environ["TMPDIR"],
        "write_work": write_file(os.path.join(os.environ["TMPDIR"], "scratch.txt"), b"ok", os.O_WRONLY | os.O_CREAT),
        "processes_seen": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "tty": write_file("/dev/tty", b"x", os.O_WRONLY),
    }
    sock = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    address = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 53) + socket.inet_aton("1.1.1.1") + bytes(8)
    seen["connect"] = libc.connect(sock, address, len(address))
    seen["connect_errno"] = ctypes.get_errno()
    raise RuntimeError(json.dumps(seen))


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
