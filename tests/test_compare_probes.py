"""The operator probes: each operation of an engine on its own against torch float64.

Oracles: torch's float64 autograd (inside check_probes), and engines written by hand in the
styles learners use (tests/engines/), right ones and wrong ones.
"""
from __future__ import annotations

import gc
import math
import sys
import weakref

import pytest
from helpers import LEARNER_ENGINE, REPO, edited_copy

from compare.engine.depth import chain_survives, deepest_chain, graph_depth
from compare.engine.faults import FAULTS, faulty_engine
from compare.engine.loader import load_engine_file
from compare.engine.probes import PROBES, only_new_objects_collected, run_probes
from compare.judge.probe_check import check_probes
from compare.judge.tolerances import PROBE_TOLERANCE
from compare.step.documents import ALPHABET, BUILTIN_DOCS, given_documents
from compare.step.weights import dense_weights
from microgpt_scalar import train as scalar_train
from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value, topological_order
from microgpt_scalar.model import GPT

ENGINES = REPO / "tests" / "engines"
CORRECT = ["closures.py", "local_gradients.py", "dict_graph.py", "numpy_scalars.py", "training_script.py",
           "argparse_at_import.py", "sibling/engine.py", "lowers_limit/engine.py"]


def probe(value_cls):
    return check_probes(run_probes(value_cls))


@pytest.mark.parametrize("name", CORRECT)
def test_correct_engines_in_every_style_pass_every_probe(name):
    check = probe(load_engine_file(str(ENGINES / name)).value_cls)
    assert check.agrees, [r.message for r in check.faults]
    assert not [r for r in check.results if r.status == "missing"]


def test_the_project_engine_and_micrograds_style_pass_every_probe():
    for value_cls in (Value, load_engine_file(str(LEARNER_ENGINE)).value_cls):
        check = probe(value_cls)
        assert check.agrees and not check.notes


def test_optional_operations_are_probed_when_present_and_never_required():
    closures = load_engine_file(str(ENGINES / "closures.py")).value_cls  # has tanh and sigmoid
    assert {r.operator: r.status for r in probe(closures).results if r.operator in ("tanh", "sigmoid")} == \
        {"tanh": "ok", "sigmoid": "ok"}
    assert {r.status for r in probe(Value).results if r.operator in ("tanh", "sigmoid")} == {"absent"}

    class WrongTanh(closures):
        def tanh(self):
            out = super().tanh()
            out._backward = lambda: setattr(self, "grad", self.grad + out.grad)  # forgets 1 - tanh**2
            return out

    (fault,) = probe(WrongTanh).faults
    assert fault.operator == "tanh" and "1 - tanh(a)**2" in fault.message


def test_relu_derivative_taken_as_1_at_exactly_0_is_a_note_not_a_fault():
    """docs/reference.md: a convention, as long as the derivative is right where relu is differentiable."""
    check = probe(load_engine_file(str(ENGINES / "closures.py")).value_cls)  # (self.data >= 0)
    assert check.agrees
    (note,) = check.notes
    assert note.operator == "relu" and "at a = 0" in note.expression


def test_backward_that_replaces_gradients_instead_of_adding_is_a_note(tmp_path):
    """The training step calls backward once and the optimizer resets every gradient, so an
    engine that zeroes all gradients at the start of backward trains exactly like torch."""
    path = edited_copy(ENGINES / "local_gradients.py", tmp_path / "engine.py", "        self.grad = 1\n",
                       "        for v in topo:\n            v.grad = 0\n        self.grad = 1\n")
    check = probe(load_engine_file(str(path)).value_cls)
    assert check.agrees and [note.operator for note in check.notes] == ["backward twice"]


@pytest.mark.parametrize("name", [name for name, fault in FAULTS.items() if fault.probes])
def test_each_fault_fails_exactly_the_probes_its_catalogue_entry_names(name):
    check = probe(faulty_engine(name).value_cls)
    assert tuple(dict.fromkeys(r.operator for r in check.faults)) == FAULTS[name].probes


def test_a_power_gradient_wrong_only_for_a_negative_base_fails_the_power_probe(tmp_path):
    """n * |a| ** (n - 1): right wherever the model raises to a power (relu(x) ** 2, ms ** -0.5)."""
    path = edited_copy(REPO / "microgpt_scalar" / "engine.py", tmp_path / "engine.py",
                       "(other * self.data ** (other - 1),)", "(other * abs(self.data) ** (other - 1),)")
    check = probe(load_engine_file(str(path)).value_cls)
    assert [r.expression for r in check.faults] == ["a ** 2 at a = -1.7", "a ** -2 at a = -1.7"]


def test_a_backward_that_remembers_nodes_between_calls_fails_the_fresh_graph_probe():
    """Its first backward of a process is right; after that, a graph whose nodes reuse freed
    ids is walked in part, so which later probes fail depends on the ids: the fresh-graph
    probe's six rounds make sure it shows."""
    value_cls = load_engine_file(str(ENGINES / "stale_visited.py")).value_cls
    check = probe(value_cls)
    assert "backward twice" in {r.operator for r in check.faults}


def test_the_fresh_graph_rounds_collect_their_own_cycles_and_give_the_heap_back_as_it_was():
    """Collections during the rounds look only at new objects (the heap before is frozen),
    which still frees a graph of closures; after, nothing is left frozen, and a heap frozen
    by someone else stays frozen."""

    class Node:
        pass

    with only_new_objects_collected():
        assert gc.get_freeze_count() > 0  # what was alive before is set aside
        node = Node()
        node.self = node  # a cycle: only a collection frees it
        freed = weakref.ref(node)
        del node
        gc.collect()
        assert freed() is None
    assert gc.get_freeze_count() == 0
    run_probes(Value)
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        run_probes(Value)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_failing_probe_names_the_expression_both_numbers_and_the_derivative():
    (fault,) = probe(faulty_engine("rtruediv").value_cls).faults
    assert fault.message == "2.0 / a at a = 1.5: value expected 1.3333333333333333, got 0.75"
    (fault,) = probe(faulty_engine("relu-grad-one").value_cls).faults
    assert fault.message == "relu(a) at a = -1.3: d/da expected 0.0, got 1.0 (d(relu(a))/da = 0 for a < 0)"


def test_results_that_do_not_come_back_are_faults_not_passes():
    """The verdict is the parent's: an engine process that sends nothing has not passed."""
    check = check_probes({})
    assert not check.agrees
    assert len(check.faults) == len(PROBES) + 2  # every probe, backward twice and the fresh node


def test_the_probe_tolerance_allows_rounding_and_nothing_more():
    x = 1.3333333333333333
    assert PROBE_TOLERANCE.allowed(x) > 4 * abs(math.nextafter(x, 2) - x)  # an ulp or two: a / b vs a * b**-1
    assert PROBE_TOLERANCE.allowed(x) < 1e-6 * x  # far below any fault (10% and more)


def test_an_operation_that_raises_is_a_fault_naming_the_error():
    class NoFloatPowers(Value):
        __slots__ = ()

        def __pow__(self, other):
            if not isinstance(other, int):
                raise TypeError("only whole powers")
            return super().__pow__(other)

    faults = probe(NoFloatPowers).faults
    assert {r.expression for r in faults} == {"a ** -0.5 at a = 2.3", "a ** 0.5 at a = 2.3"}
    assert all(r.message.endswith("raised TypeError: only whole powers") for r in faults)


# --- depth ------------------------------------------------------------------------------------

def test_a_recursive_backward_is_limited_near_the_recursion_limit_and_an_iterative_one_is_not():
    recursive = load_engine_file(str(ENGINES / "local_gradients.py")).value_cls
    survived, failed = deepest_chain(recursive)
    resolution = max(10, survived // 50)  # where the bisection stops
    assert sys.getrecursionlimit() // 2 < survived < failed <= sys.getrecursionlimit() + resolution  # a frame a node
    assert chain_survives(recursive, survived) and not chain_survives(recursive, failed)
    assert deepest_chain(Value) == (5_000, None)


def longest_path(root) -> int:
    """The longest chain of nodes from a leaf to `root` in the project's engine's graph."""
    depth = {}
    for node in topological_order(root):  # children first
        depth[node] = 1 + max((depth[child] for child in node._children), default=-1)
    return depth[root]


@pytest.mark.parametrize("n_layer, block_size", [(1, 8), (2, 4)])
def test_graph_depth_is_the_longest_path_of_the_real_graph(n_layer, block_size):
    config = get_config(n_layer=n_layer, block_size=block_size)
    weights = dense_weights(config, ALPHABET, 42)
    tokens = given_documents(BUILTIN_DOCS).batch(0)[0]
    loss = scalar_train.forward_loss(GPT(weights.config, params=weights.params), tokens)
    assert graph_depth(weights.config, weights.params, tokens) == longest_path(loss)
