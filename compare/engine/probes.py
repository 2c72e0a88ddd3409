"""Each operation of a `Value` class on its own: forward value and every input's gradient,
at points chosen so that the classic mistakes show, against torch in float64.

A probe is one small expression, written once and run on both engines (the same Python
works on a `Value` and on a torch tensor). The engine's side (`run_probes`) needs no torch
and returns plain numbers; the verdict (`compare.judge.probe_check`) is reached elsewhere.

    raw = run_probes(Value)          # {expression: {"value": .., "grads": [..]} or {"error": ..}}

The points: a = 1.5 and b = -2.5 differ in sign and size, so a swapped or sign-flipped
local gradient, a reflected operator computed the wrong way round (`2.0 - a` as `a - 2.0`,
`2.0 / a` as `a / 2.0`) and a dropped factor (`n * a ** (n - 1)` without the n) all change
a number. relu is probed below, at and above 0, on its own and squared; the same object
used twice (`a * a`) catches `child.grad = ...` written for `+=`.
"""
from __future__ import annotations

import contextlib
import gc
import os
import traceback
from dataclasses import dataclass
from typing import Callable

A, B = 1.5, -2.5  # the usual inputs: different signs and sizes


@dataclass(frozen=True)
class Probe:
    operator: str  # the line of the table it belongs to: "+", "/", "relu", "same node twice"
    expression: str  # as the table prints it, in terms of a (and b)
    inputs: tuple  # the values of a (and b)
    function: Callable  # the expression, for Values and torch tensors alike
    uses: tuple  # the methods of Value it calls
    derivatives: tuple  # per input, the derivative it should have, in words
    optional: bool = False  # an operation the model does not need (tanh, sigmoid): absent is fine
    convention: bool = False  # relu at exactly 0: a different derivative is a note, not a fault
    extension: bool = False  # beyond what the operation must take (a Value exponent): raising is "not supported"


def _two_paths(a, b):
    c = a * b  # c feeds the result through two paths, a through three
    return c * a + c.exp()


def _short_and_long(a):
    x = a * 2.0  # reached from the result directly and through x * 3.0: a walk that is not
    return x + x * 3.0  # topological (breadth-first, say) passes x on before x * 3.0 adds to it


def _sigmoid(a):
    return a.sigmoid()


def _in_place(operation):
    """c = a * 1.0, then c += b (or -=, *=, /=): the in-place operator on a node of a graph,
    as a training loop's `loss += ...` uses it. Without __iadd__ Python falls back to +."""
    def run(a, b=2.0):
        c = a * 1.0
        if operation == "+=":
            c += b
        elif operation == "-=":
            c -= b
        elif operation == "*=":
            c *= b
        else:
            c /= b
        return c
    return run


def _chain(a):
    return ((a * 2.0) * 3.0) * 4.0  # each node's gradient must be complete before it is passed on


def _many_paths(a):
    y = a
    for _ in range(10):
        y = y + y  # 1,024 paths from y to a: a walk without a visited set takes each of them
    return y


def _equal_values(a, b):
    u, w = a * 2.0, b * 3.0  # two different nodes that hold the same number, 3.0
    return u + w


PROBES = (
    Probe("+", "a + b", (A, B), lambda a, b: a + b, ("__add__",), ("1", "1")),
    Probe("+", "a + 2.0", (A,), lambda a: a + 2.0, ("__add__",), ("1",)),
    Probe("+", "2.0 + a", (A,), lambda a: 2.0 + a, ("__radd__",), ("1",)),
    Probe("-", "a - b", (A, B), lambda a, b: a - b, ("__sub__",), ("1", "-1")),
    Probe("-", "a - 2.0", (A,), lambda a: a - 2.0, ("__sub__",), ("1",)),
    Probe("-", "2.0 - a", (A,), lambda a: 2.0 - a, ("__rsub__",), ("-1",)),
    Probe("*", "a * b", (A, B), lambda a, b: a * b, ("__mul__",), ("b", "a")),
    Probe("*", "a * 2.0", (A,), lambda a: a * 2.0, ("__mul__",), ("2.0",)),
    Probe("*", "2.0 * a", (A,), lambda a: 2.0 * a, ("__rmul__",), ("2.0",)),
    Probe("/", "a / b", (A, B), lambda a, b: a / b, ("__truediv__",), ("1 / b", "-a / b**2")),
    Probe("/", "a / 2.0", (A,), lambda a: a / 2.0, ("__truediv__",), ("1 / 2.0",)),
    Probe("/", "2.0 / a", (A,), lambda a: 2.0 / a, ("__rtruediv__",), ("-2.0 / a**2",)),
    Probe("neg", "-a", (A,), lambda a: -a, ("__neg__",), ("-1",)),
    Probe("**", "a ** 2", (1.7,), lambda a: a ** 2, ("__pow__",), ("2 * a",)),
    Probe("**", "a ** 3", (-1.7,), lambda a: a ** 3, ("__pow__",), ("3 * a**2",)),
    Probe("**", "a ** 2", (-1.7,), lambda a: a ** 2, ("__pow__",), ("2 * a",)),  # a negative base, an even power
    Probe("**", "a ** -1", (1.7,), lambda a: a ** -1, ("__pow__",), ("-1 / a**2",)),
    Probe("**", "a ** -2", (-1.7,), lambda a: a ** -2, ("__pow__",), ("-2 / a**3",)),
    Probe("**", "a ** -0.5", (2.3,), lambda a: a ** -0.5, ("__pow__",), ("-0.5 * a**-1.5",)),
    Probe("**", "a ** 0.5", (2.3,), lambda a: a ** 0.5, ("__pow__",), ("0.5 * a**-0.5",)),
    Probe("log", "log(a)", (2.5,), lambda a: a.log(), ("log",), ("1 / a",)),
    Probe("exp", "exp(a)", (0.7,), lambda a: a.exp(), ("exp",), ("exp(a)",)),
    Probe("exp", "exp(a)", (-1.2,), lambda a: a.exp(), ("exp",), ("exp(a)",)),
    Probe("relu", "relu(a)", (-1.3,), lambda a: a.relu(), ("relu",), ("0 for a < 0",)),
    Probe("relu", "relu(a)", (2.1,), lambda a: a.relu(), ("relu",), ("1 for a > 0",)),
    Probe("relu", "relu(a)", (0.0,), lambda a: a.relu(), ("relu",), ("0 at a = 0, as torch takes it",),
          convention=True),
    Probe("relu", "relu(a) ** 2", (-1.3,), lambda a: a.relu() ** 2, ("relu", "__pow__"), ("0 for a < 0",)),
    Probe("relu", "relu(a) ** 2", (2.1,), lambda a: a.relu() ** 2, ("relu", "__pow__"), ("2 * a for a > 0",)),
    Probe("+=", "c += b, c = a * 1.0", (A, B), _in_place("+="), ("__add__",), ("1", "1")),
    Probe("+=", "c += 2.0, c = a * 1.0", (A,), _in_place("+="), ("__add__",), ("1",)),
    Probe("-=", "c -= b, c = a * 1.0", (A, B), _in_place("-="), ("__sub__",), ("1", "-1")),
    Probe("*=", "c *= b, c = a * 1.0", (A, B), _in_place("*="), ("__mul__",), ("b", "a")),
    Probe("/=", "c /= b, c = a * 1.0", (A, B), _in_place("/="), ("__truediv__",), ("1 / b", "-a / b**2")),
    Probe("same node twice", "a * a", (A,), lambda a: a * a, ("__mul__",), ("2 * a",)),
    Probe("same node twice", "a + a", (A,), lambda a: a + a, ("__add__",), ("2",)),
    Probe("same node twice", "a / a", (A,), lambda a: a / a, ("__truediv__",), ("0",)),
    Probe("same node twice", "a - a", (A,), lambda a: a - a, ("__sub__",), ("0",)),
    Probe("two paths", "c * a + exp(c), c = a * b", (0.6, -0.9), _two_paths, ("__mul__", "__add__", "exp"),
          ("2 * a * b + b * exp(a * b)", "a**2 + a * exp(a * b)")),
    Probe("two paths", "x + x * 3.0, x = a * 2.0", (A,), _short_and_long, ("__mul__", "__add__"), ("8",)),
    Probe("chain", "a * 2.0 * 3.0 * 4.0", (A,), _chain, ("__mul__",), ("24",)),
    Probe("many paths", "y = y + y ten times, from y = a", (A,), _many_paths, ("__add__",), ("1024",)),
    Probe("equal values", "u + w, u = a * 2.0, w = b * 3.0 (both 3.0)", (A, 1.0), _equal_values,
          ("__mul__", "__add__"), ("2", "3")),
    Probe("tanh", "tanh(a)", (0.8,), lambda a: a.tanh(), ("tanh",), ("1 - tanh(a)**2",), optional=True),
    Probe("sigmoid", "sigmoid(a)", (0.8,), _sigmoid, ("sigmoid",), ("sigmoid(a) * (1 - sigmoid(a))",),
          optional=True),
    Probe("sqrt", "sqrt(a)", (2.3,), lambda a: a.sqrt(), ("sqrt",), ("0.5 / sqrt(a)",), optional=True),
    Probe("sin", "sin(a)", (0.7,), lambda a: a.sin(), ("sin",), ("cos(a)",), optional=True),
    Probe("cos", "cos(a)", (0.7,), lambda a: a.cos(), ("cos",), ("-sin(a)",), optional=True),
    Probe("abs", "abs(a)", (-1.3,), lambda a: abs(a), ("__abs__",), ("-1 for a < 0",), optional=True),
    Probe("abs", "abs(a)", (2.1,), lambda a: abs(a), ("__abs__",), ("1 for a > 0",), optional=True),
    Probe("2.0 ** a", "2.0 ** a", (1.7,), lambda a: 2.0 ** a, ("__rpow__",), ("log(2.0) * 2.0**a",),
          optional=True),
    Probe("a ** b", "a ** b", (1.7, 0.6), lambda a, b: a ** b, ("__pow__",), ("b * a**(b - 1)", "log(a) * a**b"),
          optional=True, extension=True),
)

# backward on a fresh graph after another: what the training loop does every step
FRESH_GRAPH = "backward twice"


def fresh_graph_sequence(a, backward, read, reset):
    """The gradient of a after three backward passes on fresh graphs: the first, a second
    after resetting a's gradient to 0 (as the optimizer does), a third without a reset."""
    backward(a * a + a)
    first = read(a)  # 2a + 1
    reset(a)
    backward(a * 3.0)
    second = read(a)  # 3: the reset the optimizer relies on
    backward(a * 2.0)
    third = read(a)  # 3 + 2: backward adds to what is there
    return [first, second, third]


def fresh_graph_rounds(make_leaf, backward, read, rounds: int = 6, collect: bool = True) -> list:
    """d y / d x on `rounds` fresh graphs in turn, each freed (and collected) before the next
    is built: a backward that remembers nodes between calls (a visited set kept on the class,
    keyed by id, which a freed node's successor may reuse) skips nodes of the new graph.
    `collect=False` for the oracle, whose numbers do not depend on it."""
    grads = []
    with only_new_objects_collected(collect):
        for i in range(rounds):
            x = make_leaf(0.3 + 0.1 * i)
            y = x
            for _ in range(20):
                y = y * 0.9 + x * 0.2  # x reached through every link of the chain
            backward(y)
            grads.append(read(x))
            del x, y
            if collect:
                gc.collect()  # frees graphs held by reference cycles (closures) too
    return grads


@contextlib.contextmanager
def only_new_objects_collected(freeze: bool = True):
    """Inside, a collection looks only at objects made inside: everything alive before is
    set aside (gc.freeze). A full collection in a process that has loaded torch walks
    millions of objects, a fifth of a second each time; the rounds' graphs are all new.
    A heap someone else has frozen already is left as it is."""
    if not freeze or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# backward on a fresh leaf after a graph was built: it must touch nothing but the leaf
FRESH_NODE = "fresh node"
PROBE_BUDGET = 2.0  # seconds one probe may take in the engine's process: each is a graph of a few nodes
MEMORY_NOTED_MB = 64  # a probe still running that has grown the process by this much allocates without bound


def fresh_node_sequence(a, b, make_leaf, backward, read) -> list:
    """[a.grad, b.grad] after backward on y = a * b + a, then [a.grad, b.grad, c.grad] after
    backward on a new leaf c made afterwards: c's own gradient is 1 and a's and b's stay as
    they were. A node made without children that still reaches other nodes (a `children=[]`
    default shared by every node) walks them again."""
    backward(a * b + a)
    before = [read(a), read(b)]
    c = make_leaf(0.3)
    backward(c)
    return before + [read(a), read(b), read(c)]


def run_probes(value_cls, budget: float | None = None, on_result=None) -> dict:
    """expression key -> {"value": float, "grads": [float]} or {"error": "..."} or
    {"missing": [names]}, for every probe; plain numbers only. Never raises. With `budget`
    (seconds, in a process's main thread), a probe still running after it is stopped, and
    the probes after it are not run. `on_result(key, result)` sees each as it ends."""
    results, stopped = {}, None
    runs = [(probe_key(number), lambda probe=probe: _run_one(value_cls, probe)) for number, probe in enumerate(PROBES)]
    runs += [(FRESH_GRAPH, lambda: _run_fresh_graph(value_cls)), (FRESH_NODE, lambda: _run_fresh_node(value_cls))]
    for key, run in runs:
        if stopped is not None:
            results[key] = {"not_run": f"{stopped} did not finish"}
        else:
            results[key] = _timed(run, budget if key != FRESH_GRAPH or budget is None else 5 * budget)  # gc
            if results[key].get("overran"):
                stopped = key.split(":", 1)[-1]
        if on_result is not None:
            on_result(key, results[key])
    return results


def _timed(run, budget):
    if budget is None:
        return run()
    from .statements import Overran, guarded

    outcome = guarded(budget, audit=False)
    try:
        with outcome:
            return run()
    except Overran as stopped:
        found = {"error": f"did not finish within {budget:g} s (a graph of a few nodes: an endless loop, or a "
                          f"backward that walks far more nodes than the graph has)", "overran": True}
        if outcome.grown_mb is not None and outcome.grown_mb >= MEMORY_NOTED_MB:
            found["grown_mb"] = round(outcome.grown_mb)
        return found | _engine_line(stopped)


def probe_keys() -> list:
    """Every key run_probes returns, in order."""
    return [probe_key(number) for number in range(len(PROBES))] + [FRESH_GRAPH, FRESH_NODE]


def probe_key(number: int) -> str:
    return f"{number}:{PROBES[number].expression}"


def _run_one(value_cls, probe: Probe) -> dict:
    missing = [name for name in probe.uses if not callable(getattr(value_cls, name, None))]
    if missing:
        return {"missing": missing}
    try:
        inputs = [value_cls(x) for x in probe.inputs]
        out = probe.function(*inputs)
        out.backward()
        return {"value": float(out.data), "grads": [float(x.grad) for x in inputs]}
    except Exception as error:  # the engine under test may fail in any way
        return _error(error)


def _run_fresh_graph(value_cls) -> dict:
    if not all(callable(getattr(value_cls, name, None)) for name in ("__mul__", "__add__", "backward")):
        return {"missing": ["__mul__", "__add__", "backward"]}
    try:
        grads = fresh_graph_sequence(value_cls(A), lambda y: y.backward(), lambda x: float(x.grad),
                                     lambda x: setattr(x, "grad", 0))
        rounds = fresh_graph_rounds(value_cls, lambda y: y.backward(), lambda x: float(x.grad))
        return {"value": 0.0, "grads": grads, "rounds": rounds}
    except Exception as error:
        return _error(error)


def _run_fresh_node(value_cls) -> dict:
    if not all(callable(getattr(value_cls, name, None)) for name in ("__mul__", "__add__", "backward")):
        return {"missing": ["__mul__", "__add__", "backward"]}
    try:
        grads = fresh_node_sequence(value_cls(A), value_cls(B), value_cls, lambda y: y.backward(),
                                    lambda x: float(x.grad))
        return {"value": 0.0, "grads": grads}
    except Exception as error:
        return _error(error)


def _error(error: BaseException) -> dict:
    """What an engine raised, and the line of its own code it raised at."""
    return {"error": f"raised {type(error).__name__}: {_first_line(error)}", "type": type(error).__name__} \
        | _engine_line(error)


def _engine_line(error: BaseException) -> dict:
    """{"where": {"file", "line", "text"}} of the deepest frame of `error`'s traceback outside
    the checker's engine-side code (this file, the timer that stops a probe); {} if none."""
    ours = os.path.dirname(os.path.abspath(__file__))
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if os.path.dirname(os.path.abspath(frame.filename)) != ours]
    if not frames:
        return {}
    frame = frames[-1]
    return {"where": {"file": frame.filename, "line": frame.lineno, "text": (frame.line or "").strip()}}


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
