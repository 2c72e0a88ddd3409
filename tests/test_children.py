"""The `children` fixture (tests/helpers.py's Children): a process a test starts does not
outlive the test, nor do the processes it starts, in its process group or in sessions of
their own; and a child dies with the process that started it. The oracle is /proc.

    pytest tests/test_children.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from helpers import Children

# Starts a grandchild in the same process group and one in a session of its own (as torchrun
# starts its workers), prints their process ids, then spins.
SPAWNER = """
import subprocess, sys
spin = [sys.executable, "-c", "while True: pass"]
same_group = subprocess.Popen(spin)
own_session = subprocess.Popen(spin, start_new_session=True)
print(same_group.pid, own_session.pid, flush=True)
while True:
    pass
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs: it exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def gone_within(pids, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_end_all_kills_and_reaps_a_child_and_all_it_started():
    children = Children()
    child = children.start([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
    grandchildren = [int(pid) for pid in child.stdout.readline().split()]
    assert all(alive(pid) for pid in [child.pid, *grandchildren])
    children.end_all()
    assert child.returncode is not None and child.stdout.closed  # reaped, its pipe closed
    assert gone_within([child.pid, *grandchildren])


def test_a_child_dies_when_the_process_that_started_it_is_killed():
    """pytest itself killed mid-test (by a timeout, say): the finalizers never run, and the
    kernel kills the child (its parent-death signal)."""
    starter = ("import sys; sys.path.insert(0, sys.argv[1]); from helpers import Children\n"
               "child = Children().start([sys.executable, '-c', 'while True: pass'])\n"
               "print(child.pid, flush=True)\nwhile True:\n    pass\n")
    children = Children()
    parent = children.start([sys.executable, "-c", starter, os.path.dirname(__file__)], stdout=subprocess.PIPE,
                            text=True)
    orphan = int(parent.stdout.readline())
    assert alive(orphan)
    os.kill(parent.pid, 9)
    parent.wait()
    assert gone_within([orphan])
    children.end_all()


def test_without_the_fixture_such_a_child_would_outlive_its_parent():
    """The check above can fail: a child started plainly keeps spinning after its parent dies
    (it is killed here by its process id)."""
    starter = ("import subprocess, sys\n"
               "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
               "print(child.pid, flush=True)\nwhile True:\n    pass\n")
    children = Children()
    parent = children.start([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    orphan = int(parent.stdout.readline())
    os.kill(parent.pid, 9)
    parent.wait()
    try:
        assert not gone_within([orphan], seconds=1)
    finally:
        os.kill(orphan, 9)
    children.end_all()


def test_the_end_of_a_run_ends_multiprocessing_resource_tracker():
    """conftest asks the tracker a process pool starts to end, as the interpreter would at its
    exit, so that it is not reported as a process a test left running."""
    import multiprocessing.resource_tracker as resource_tracker

    from conftest import stop_resource_tracker

    resource_tracker.ensure_running()
    tracker = resource_tracker._resource_tracker._pid
    assert tracker is not None and os.path.exists(f"/proc/{tracker}")
    stop_resource_tracker()
    assert not os.path.exists(f"/proc/{tracker}")  # ended and reaped
