"""One engine checked in this process (a class handed in by code) and in a process of its own
(a file, in the sandbox) gives the same report: the same code measures it in both, and the
child only carries the numbers back.

Oracle: each run against the other, number for number. The engine keeps its graph in tuples,
so its sums are added in the same order in any process (an engine that keeps a node's
children in a set walks them in an order set by memory addresses, which differ between
processes, and rounds differently in the last bit).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO

from compare.check import compare_step
from compare.engine.loader import load_engine
from compare.engine.process import EngineProcess
from compare.engine.reader import InProcessEngine, ScalarReader
from compare.report.saved import to_dict
from compare.step.documents import ALPHABET, given_documents
from compare.step.weights import dense_weights
from microgpt_scalar.config import get_config

ENGINE = REPO / "tests" / "engines" / "local_gradients.py"
DOCS = ["emma", "olivia"]  # two documents: a batch, as deep a graph as the built-in ones, a shorter step


def without_where_it_ran(report) -> dict:
    found = to_dict(report, values=True)
    found["report"].pop("sandbox")  # the child's own sandbox, or "" here
    found["report"]["settings"].pop("engine")  # the file's path, or the class's name
    return found


@pytest.fixture
def default_recursion_limit():
    """This process's recursion limit as the engine's fresh process has it (code an earlier
    test ran, torch.compile's among it, may have raised it here)."""
    fresh = subprocess.run([sys.executable, "-c", "import sys; print(sys.getrecursionlimit())"], capture_output=True,
                           text=True, check=True, timeout=60)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(int(fresh.stdout))
    yield
    sys.setrecursionlimit(before)


def test_the_same_engine_in_this_process_and_in_its_own_gives_the_same_report(default_recursion_limit):
    here = compare_step(engine=load_engine(str(ENGINE)), docs=DOCS, steps=2, fd=3)
    there = compare_step(engine=str(ENGINE), docs=DOCS, steps=2, fd=3)
    assert here.sandbox == "" and there.sandbox != ""
    assert here.depth is not None and here.depth.failed is not None  # measured here too: it recurses
    assert without_where_it_ran(here) == without_where_it_ran(there)


def test_the_comparison_of_the_two_sees_a_different_engine():
    """Not vacuous: one gradient a little off in the class run here makes the reports differ."""
    source = ENGINE.read_text().replace("(1 / self.data,)", "(1.0000001 / self.data,)")
    assert "1.0000001" in source
    namespace = {}
    exec(compile(source, str(ENGINE), "exec"), namespace)
    here = compare_step(engine=namespace["Value"], docs=DOCS, steps=1)
    there = compare_step(engine=str(ENGINE), docs=DOCS, steps=1)
    assert without_where_it_ran(here) != without_where_it_ran(there)


def scalar_results(source, start, batches, fd: int) -> tuple:
    """What the checker reads of the scalar side from `source` (the engine's process, or the
    runner here): the probes and chain found, the depth, every step's results (loss, every
    gradient, parameter and Adam moment, the traces) and the finite differences' estimates."""
    found = source.engine()
    reader = ScalarReader(source, found)
    depth = reader.begin(start, batches, fd, seed=7)
    steps = [reader.step(batches[0], start.step, depth)]
    estimates = reader.finite_differences(fd)
    steps += [reader.step(batch, start.step + i, depth) for i, batch in enumerate(batches[1:], 1)]
    return found["probes"], found["chain"], depth, steps, estimates


def test_one_engine_here_and_in_its_own_process_gives_identical_result_objects(default_recursion_limit):
    start = dense_weights(get_config(), ALPHABET, seed=3)
    batches = [given_documents(DOCS).batch(step) for step in range(2)]
    with EngineProcess(str(ENGINE)) as process:
        there = scalar_results(process, start, batches, fd=4)
    here = scalar_results(InProcessEngine(load_engine(str(ENGINE))), start, batches, fd=4)
    probes, chain, depth, steps, estimates = here
    assert chain[1] is not None and depth.graph and depth.per_layer  # it recurses: the depth is measured in full
    assert len(steps) == 2 and steps[0].grads and steps[1].adam_v and len(estimates.entries) == 4
    assert here == there
