"""The verdict on the probes of `compare.engine.probes`: each engine number against torch
float64 (imported when a probe is judged, so that the report's classes load without it).

    check = check_probes(raw)        # raw: what run_probes returned, maybe from another process
    check.agrees, check.faults, check.notes, check.missing
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .diff import entry_difference
from .tolerances import PROBE_TOLERANCE
from ..engine.probes import (FRESH_GRAPH, FRESH_NODE, PROBES, PROBE_BUDGET, fresh_graph_rounds, fresh_graph_sequence,
                             probe_key)


@dataclass
class ProbeResult:
    operator: str  # the table's line: "+", "/", "relu", ...
    expression: str  # e.g. "2.0 / a at a = 1.5"
    status: str  # "ok", "fault", "note", "missing" (an operation a learner may call is absent), "absent"
    #              (optional), "not run" (an earlier probe never finished)
    message: str = ""  # for anything but ok: expected and got, and the derivative it should have
    expected: list = field(default_factory=list)  # torch's [value, d/da, d/db ...] (a probe that ran)
    got: list = field(default_factory=list)  # the engine's, in the same order
    error: str = ""  # what the engine raised, if it did ("ZeroDivisionError: float division by zero")
    where: dict = field(default_factory=dict)  # {"line": N, "text": "..."}: the engine's line it raised at
    uses: list = field(default_factory=list)  # the methods of the engine it calls ("__rtruediv__")
    grown_mb: int = 0  # a probe stopped unfinished: how far its process's memory had grown, in MB (if noted)


@dataclass
class ProbeCheck:
    """Each operation of the engine on its own against torch (compare.engine.probes)."""

    results: list = field(default_factory=list)  # of ProbeResult

    def __repr__(self) -> str:
        ok = sum(r.status == "ok" for r in self.results)
        return f"<ProbeCheck {len(self.results)} probes: {ok} ok, {len(self.faults)} wrong, {len(self.notes)} notes>"

    @property
    def faults(self) -> list:
        return [r for r in self.results if r.status == "fault"]

    @property
    def notes(self) -> list:
        return [r for r in self.results if r.status == "note"]

    @property
    def missing(self) -> list:
        """Probes of operations the engine lacks that a learner's own code may well call
        (2.0 - a, 2.0 / a): not checked, and said so."""
        return [r for r in self.results if r.status == "missing"]

    @property
    def absent(self) -> list:
        """Probes of optional operations the engine does not have or take (tanh, a ** b)."""
        return [r for r in self.results if r.status == "absent"]

    @property
    def not_run(self) -> list:
        """Probes not run because an earlier one never finished."""
        return [r for r in self.results if r.status == "not run"]

    @property
    def agrees(self) -> bool:
        return not self.faults and not self.not_run


NO_RESULT = {"error": "gave no result (nothing came back from the engine's process)"}
# How an engine says an operation does not take an input (micrograd's `assert isinstance(other, (int, float))`)
UNSUPPORTED = ("TypeError", "AssertionError", "NotImplementedError", "AttributeError")


def check_probes(raw: dict) -> ProbeCheck:
    """Every probe's numbers from the engine under test, judged against torch float64."""
    results = [_check_one(number, probe, raw.get(probe_key(number), NO_RESULT))
               for number, probe in enumerate(PROBES)]
    results.append(_check_fresh_graph(raw.get(FRESH_GRAPH, NO_RESULT)))
    results.append(_check_fresh_node(raw.get(FRESH_NODE, NO_RESULT)))
    return ProbeCheck(results)


def _check_one(number: int, probe, got: dict) -> ProbeResult:
    result = _judge_one(probe, got)
    result.uses = list(probe.uses)
    return result


def _judge_one(probe, got: dict) -> ProbeResult:
    names = "ab"[: len(probe.inputs)]
    where = ", ".join(f"{name} = {x:g}" for name, x in zip(names, probe.inputs))
    expression = f"{probe.expression} at {where}"
    if "missing" in got:
        return ProbeResult(probe.operator, expression, "absent" if probe.optional else "missing",
                           f"needs {', '.join(got['missing'])}")
    if "not_run" in got:
        return ProbeResult(probe.operator, expression, "not run", f"not run: {got['not_run']}")
    if "error" in got and probe.extension and got.get("type") in UNSUPPORTED:
        return ProbeResult(probe.operator, expression, "absent", f"not supported: {got['error']}")
    if "error" in got:
        return _raised(probe.operator, expression, got)
    value, grads = _expected(probe)
    numbers = {"expected": [value, *grads], "got": [got["value"], *got["grads"]]}
    if not _close(got["value"], value):
        return ProbeResult(probe.operator, expression, "fault",
                           f"{expression}: value expected {value!r}, got {got['value']!r}", **numbers)
    for name, want, have, derivative in zip(names, grads, got["grads"], probe.derivatives):
        if not _close(have, want):
            status = "note" if probe.convention else "fault"
            return ProbeResult(probe.operator, expression, status,
                               f"{expression}: d/d{name} expected {want!r}, got {have!r} "
                               f"(d({probe.expression})/d{name} = {derivative})", **numbers)
    return ProbeResult(probe.operator, expression, "ok", **numbers)


def _raised(operator: str, expression: str, got: dict) -> ProbeResult:
    """A probe that raised or was stopped: what, where in the engine, and how far memory grew."""
    return ProbeResult(operator, expression, "fault", f"{expression} {got['error']}",
                       error=got["error"].replace("raised ", "", 1), where=got.get("where") or {},
                       grown_mb=got.get("grown_mb", 0))


def _expected(probe) -> tuple[float, list]:
    import torch

    inputs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in probe.inputs]
    out = probe.function(*inputs)
    out.backward()
    return out.item(), [x.grad.item() for x in inputs]


def _check_fresh_graph(got: dict) -> ProbeResult:
    import torch

    expression = f"a * a + a, then a * 3.0 after a.grad = 0, then a * 2.0, at a = {1.5:g}"
    if "not_run" in got:
        return ProbeResult(FRESH_GRAPH, expression, "not run", f"not run: {got['not_run']}")
    if "missing" in got:
        return ProbeResult(FRESH_GRAPH, expression, "missing", f"needs {', '.join(got['missing'])}")
    if "error" in got:
        return _raised(FRESH_GRAPH, expression, got)
    a = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    want = fresh_graph_sequence(a, lambda y: y.backward(), lambda x: x.grad.item(), lambda x: x.grad.zero_())
    have = got["grads"]
    if not _close(have[0], want[0]):
        return ProbeResult(FRESH_GRAPH, expression, "fault",
                           f"first backward: a.grad expected {want[0]!r}, got {have[0]!r}")
    if not _close(have[1], want[1]):
        return ProbeResult(FRESH_GRAPH, expression, "fault",
                           f"after a.grad = 0 (the optimizer's reset), a fresh backward gave a.grad {have[1]!r}, "
                           f"expected {want[1]!r}: the reset does not reach what backward uses")
    rounds = got.get("rounds", [])
    want_rounds = fresh_graph_rounds(
        lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True), lambda y: y.backward(),
        lambda x: x.grad.item(), collect=False)
    for i, (have_i, want_i) in enumerate(zip(rounds, want_rounds)):
        if not _close(have_i, want_i):
            return ProbeResult(FRESH_GRAPH, expression, "fault",
                               f"on the {_ordinal(i + 1)} of {len(want_rounds)} fresh graphs, each freed before "
                               f"the next, d y/d x came out {have_i!r}, expected {want_i!r}: backward remembers "
                               f"nodes of an earlier graph (e.g. a visited set kept between calls, by id)")
    if len(rounds) != len(want_rounds):
        return ProbeResult(FRESH_GRAPH, expression, "fault", f"{len(rounds)} of {len(want_rounds)} fresh graphs ran")
    if not _close(have[2], want[2]):
        return ProbeResult(FRESH_GRAPH, expression, "note",
                           f"a third backward left a.grad {have[2]!r} where torch adds up to {want[2]!r}: "
                           f"backward replaces gradients instead of adding; harmless here, the optimizer "
                           f"resets every gradient after each step")
    return ProbeResult(FRESH_GRAPH, expression, "ok")


def _check_fresh_node(got: dict) -> ProbeResult:
    expression = "backward on y = a * b + a, then on a new node c = Value(0.3)"
    if "not_run" in got:
        return ProbeResult(FRESH_NODE, expression, "not run", f"not run: {got['not_run']}")
    if "missing" in got:
        return ProbeResult(FRESH_NODE, expression, "missing", f"needs {', '.join(got['missing'])}")
    if "error" in got:
        return _raised(FRESH_NODE, expression, got)
    have = got["grads"]
    if len(have) != 5:
        return ProbeResult(FRESH_NODE, expression, "fault", f"{expression}: {len(have)} numbers came back, not 5")
    if not (_close(have[2], have[0]) and _close(have[3], have[1])):
        return ProbeResult(FRESH_NODE, expression, "fault",
                           f"backward on a new node changed the gradients of a and b, made before it (a.grad "
                           f"{have[0]!r} became {have[2]!r}, b.grad {have[1]!r} became {have[3]!r}): a node made "
                           f"without children reaches other nodes", expected=[0.0, *have[:2], 1.0], got=[0.0, *have[2:]])
    if not _close(have[4], 1.0):
        return ProbeResult(FRESH_NODE, expression, "fault",
                           f"{expression}: c.grad expected 1.0, got {have[4]!r} (d c / d c = 1)")
    return ProbeResult(FRESH_NODE, expression, "ok")


def _close(have: float, want: float) -> bool:
    return entry_difference(float(have), float(want), PROBE_TOLERANCE)[2] <= 1


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def unfinished_message(label: str, probes: ProbeCheck, what: str) -> str:
    """The one line for an engine whose probe never finished: `what` was not started."""
    stuck = next((r for r in probes.faults if "did not finish within" in r.message), None)
    expression = stuck.expression if stuck is not None else "a probe"
    grown = f" (its memory grew by {stuck.grown_mb:,} MB meanwhile)" if stuck is not None and stuck.grown_mb else ""
    return (f"the scalar engine ({label}) did not finish {expression} within {PROBE_BUDGET:g} s, a graph of a few "
            f"nodes{grown}, so {what} not started")


def walks_every_path(probes: ProbeCheck) -> bool:
    """Whether the probe of y = y + y ten times (1,024 paths) came out far above 1,024: a
    backward that walks every path, whose time on the model's graph grows without bound."""
    many = next((r for r in probes.results if r.operator == "many paths"), None)
    return bool(many and many.status == "fault" and many.got and abs(many.got[1]) > 10 * abs(many.expected[1]))
