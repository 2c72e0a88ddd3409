"""The time budgets of an engine's code (a top-level statement, a probe) count the time it
takes of its own, not the time it stands queued behind other processes; and a probe that
runs out of memory, or is stopped after growing the process by many MB, is diagnosed as an
allocation without bound, with its line.

Oracles: the scheduler (a block run at the lowest priority on a CPU a busy loop holds, whose
wall-clock time is measured beside it), the engines' own allocations, and the probes' own
graphs (a few nodes: a few kilobytes).

    pytest tests/test_engine_budgets.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, edited_copy

from compare.engine.loader import load_engine_file
from compare.engine.probes import MEMORY_NOTED_MB, run_probes
from compare.engine.statements import WALL_LIMIT
from compare.engine.usage import queued_seconds, resident_megabytes
from compare.judge.diagnosis import diagnose, title
from compare.judge.probe_check import check_probes, unfinished_message

ENGINES = REPO / "tests" / "engines"
BACKWARD = "    def backward(self):\n"


HAS_SCHEDSTAT = queued_seconds() is not None
HAS_STATM = resident_megabytes() is not None


STARVED = textwrap.dedent("""
    import json, os, sys, time
    from compare.engine.statements import Overran, guarded

    os.sched_setaffinity(0, {int(sys.argv[1])})
    os.nice(19)  # beside a busy loop at priority 0 on the same CPU: about 1.5% of it

    def spin(cpu_seconds):
        start = time.process_time()
        while time.process_time() - start < cpu_seconds:
            pass

    found = {}
    for name, work, budget in (("computes briefly", lambda: spin(0.008), 0.2), ("sleeps", lambda: time.sleep(30), 0.2),
                               ("computes for ever", lambda: spin(100), 0.05)):
        start = time.monotonic()
        try:
            with guarded(budget, audit=False):
                work()
            finished = True
        except Overran:
            finished = False
        found[name] = [finished, time.monotonic() - start]
    print(json.dumps(found))
""")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not HAS_SCHEDSTAT,
                    reason="needs Linux's per-thread schedstat (/proc/thread-self/schedstat) and CPU affinity")
def test_a_budget_counts_the_blocks_own_time_not_the_time_it_waited_for_a_cpu():
    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
                             "end = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"])
    try:
        run = subprocess.run([sys.executable, "-c", STARVED, str(cpu)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        busy.kill()
        busy.wait()
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    finished, seconds = found["computes briefly"]  # about 0.5 s: 8 ms of work at some 1.5% of a CPU
    assert finished, f"8 ms of work stopped after {seconds:.2f} s for the time it stood queued"
    assert seconds > 0.2, "the busy loop did not slow the block past its budget: the test shows nothing"
    # waiting counts: stopped at its budget, busy machine or not (the time after, to stop, is a starved one's)
    finished, seconds = found["sleeps"]
    assert not finished and 0.2 <= seconds < 0.2 + 3, seconds
    finished, seconds = found["computes for ever"]  # starved so it never reaches its budget: the wall-clock limit
    assert not finished and WALL_LIMIT * 0.05 <= seconds < WALL_LIMIT * 0.05 + 3, seconds


def engine_whose_backward_starts(tmp_path, name: str, prelude: str):
    path = edited_copy(ENGINES / "local_gradients.py", tmp_path / f"{name}.py", BACKWARD, BACKWARD + prelude)
    return load_engine_file(str(path)).value_cls


@pytest.mark.skipif(not HAS_STATM, reason="needs the process's resident memory (/proc/self/statm)")
def test_a_probe_stopped_after_its_memory_grew_names_the_growth_and_the_line(tmp_path):
    hoards = engine_whose_backward_starts(tmp_path, "hoards", "        type(self).kept = bytearray(96 * 2**20)\n"
                                                             "        while True:\n            pass\n")
    try:
        raw = run_probes(hoards, budget=0.3)
    finally:
        hoards.kept = None
    stuck = raw["0:a + b"]
    assert stuck["overran"] and stuck["grown_mb"] >= MEMORY_NOTED_MB
    assert stuck["where"]["file"].endswith("hoards.py") and stuck["where"]["text"] in ("while True:", "pass")
    probes = check_probes(raw)
    causes = diagnose(probes)
    assert causes[0].key == "memory" and f"grown by {stuck['grown_mb']:,} MB" in causes[0].text
    assert causes[0].where.startswith(str(tmp_path / "hoards.py") + ", line ")
    assert f"(its memory grew by {stuck['grown_mb']:,} MB meanwhile)" in unfinished_message("e", probes, "x was")


def test_a_probe_stopped_without_growing_is_not_taken_for_a_memory_fault(tmp_path):
    spins = engine_whose_backward_starts(tmp_path, "spins", "        while True:\n            pass\n")
    raw = run_probes(spins, budget=0.3)
    assert raw["0:a + b"]["overran"] and "grown_mb" not in raw["0:a + b"]
    probes = check_probes(raw)
    causes = diagnose(probes)
    assert all(cause.key != "memory" for cause in causes)
    assert "memory" not in unfinished_message("e", probes, "x was")
    stopped = next(cause for cause in causes if cause.key == "local-gradient")  # stopped by the timer, not raised
    assert stopped.text.startswith("a + b at a = 1.5, b = -2.5 did not finish within 0.3 s"), stopped.text
    assert stopped.where.endswith(("while True:", "pass"))


def test_a_graph_of_a_few_nodes_out_of_memory_is_the_first_cause_not_graph_identity(tmp_path):
    """Once memory runs out every probe fails, the fresh-node probe too: its error is not a
    sign that nodes share their children."""
    runs_out = engine_whose_backward_starts(tmp_path, "runs_out", "        raise MemoryError()\n")
    probes = check_probes(run_probes(runs_out))
    fresh = next(r for r in probes.results if r.operator == "fresh node")
    assert fresh.status == "fault" and fresh.error.startswith("MemoryError")
    causes = diagnose(probes)
    assert [cause.key for cause in causes] == ["memory"], [(c.key, c.score) for c in causes]
    assert causes[0].text.startswith("a + b at a = 1.5, b = -2.5 raised MemoryError")
    assert causes[0].where.endswith("raise MemoryError()")
    assert title("memory") == "memory without bound"


def test_a_backward_that_raises_on_every_graph_is_not_taken_for_shared_children(tmp_path):
    """The fresh-node probe fails by raising, as every other probe does: the error is the
    cause, not a graph whose nodes reach each other."""
    raises = engine_whose_backward_starts(tmp_path, "raises", "        raise RuntimeError('not written yet')\n")
    causes = diagnose(check_probes(run_probes(raises)))
    assert causes and all(cause.key != "graph-identity" for cause in causes), [(c.key, c.text) for c in causes]
    assert causes[0].text.endswith("raised RuntimeError: not written yet")


def test_a_probe_out_of_memory_leaves_the_other_operators_judged_on_their_own(tmp_path):
    """relu runs out of memory and * has a wrong local gradient: both are named."""
    source = (ENGINES / "local_gradients.py").read_text()
    for old, new in (("(other.data, self.data))", "(self.data, other.data))"),  # d(a*b)/da given as a
                     ("        return Value(max(0, self.data)", "        raise MemoryError()\n        return Value(max(0, self.data)")):
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    (tmp_path / "two_faults.py").write_text(source)
    causes = diagnose(check_probes(run_probes(load_engine_file(str(tmp_path / "two_faults.py")).value_cls)))
    names = [cause.name for cause in causes]
    assert names[0] == "memory" and "local-gradient *" in names, names
    assert "local-gradient relu" not in names  # its probes ran out of memory: they say nothing of relu's gradient


def test_a_cycle_through_one_shared_children_list_is_still_graph_identity(tmp_path):
    """Nodes made without children share one module-level list that every operator appends to;
    the walk, without a visited set, recurses for ever even on a + b. The fresh-node probe
    raising RecursionError is a sign of that cycle, not an error like any other."""
    source = (ENGINES / "closures.py").read_text()
    for old, new in (("import math\n", "import math\n\n_SHARED = []  # what a node made without children gets\n"),
                     ("self._prev = set(_children)", "self._prev = list(_children) if _children else _SHARED"),
                     ('        out = Value(self.data + other.data, (self, other), "+")\n',
                      '        out = Value(self.data + other.data, _op="+")\n        out._prev.append(self)\n'
                      '        out._prev.append(other)\n'),
                     ("            if v not in visited:\n                visited.add(v)\n"
                      "                for child in v._prev:\n                    build_topo(child)\n"
                      "                topo.append(v)\n",
                      "            for child in v._prev:\n                build_topo(child)\n            topo.append(v)\n")):
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    (tmp_path / "shared_list.py").write_text(source)
    probes = check_probes(run_probes(load_engine_file(str(tmp_path / "shared_list.py")).value_cls))
    fresh = next(r for r in probes.results if r.operator == "fresh node")
    assert fresh.error.startswith("RecursionError")
    assert diagnose(probes)[0].key == "graph-identity"
