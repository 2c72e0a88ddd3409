"""The most likely cause of what the checker found, in a learner's words, with the line of the
engine's own code to look at: read from the pattern of the operator probes (which were
chosen to tell the causes apart) and of the training step.

    facts = engine_facts(Value)                     # in the engine's process: lines, data type
    causes = diagnose(probe_check, facts, step)     # most likely first
    causes[0].key, causes[0].text, causes[0].where

The causes, and the probes that tell them apart:
    accumulation       a node used twice (a + a, a * a) is wrong, the same operator on two nodes is right
    topological-order  one operator alone is right, a chain of them is not (or a short and a long path)
    seed               every gradient is 0 (or all off by one factor): backward's own grad = 1
    visited-set        y = y + y ten times gives more than 1,024: the walk takes every path
    graph-identity     two nodes holding equal numbers merge (__eq__/__hash__ by value), a node made
                       without children reaches others (a shared `children=[]`), closures made in a
                       loop see its last value, a visited set kept between calls
    local-gradient     one operator's value is right and its gradient is not (with its derivative)
    forward            one operator computes the wrong number
    in-place           c += b is wrong where c + b is right: __iadd__ changes the node in place
    precision          every difference is tiny, as float32 rounding makes it
    reset              the first step agrees, a later one does not: a gradient carried over
    recursion-depth    backward recurses once per node, and the model is deeper than the limit
    slow-backward      the step takes far longer than the engine's speed predicts
    memory             a graph of a few nodes raises MemoryError, or grows the process by many MB before
                       it is stopped: something allocates without bound
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from .tolerances import PROBE_TOLERANCE, close

STRUCTURE = ("same node twice", "two paths", "chain", "many paths", "equal values", "backward twice", "fresh node")
IN_PLACE = {"+=": ("__iadd__", "+", "__add__"), "-=": ("__isub__", "-", "__sub__"),
            "*=": ("__imul__", "*", "__mul__"), "/=": ("__itruediv__", "/", "__truediv__")}
# what a method's source shows when it is built on another operator (a / b as a * b ** -1)
BUILT_ON = {"*": (r"\*(?!\*)", "__mul__"), "**": (r"\*\*", "__pow__", r"pow\("), "neg": (r"-self", r"-other", "__neg__"),
            "+": (r"\+(?!=)", "__add__"), "exp": (r"\.exp\(",), "log": (r"\.log\(",)}
DERIVATIVE_OF = {"+": "d(a + b)/da = 1, d(a + b)/db = 1", "-": "d(a - b)/da = 1, d(a - b)/db = -1",
                 "*": "d(a * b)/da = b, d(a * b)/db = a", "/": "d(a / b)/da = 1 / b, d(a / b)/db = -a / b**2",
                 "neg": "d(-a)/da = -1", "**": "d(a ** n)/da = n * a ** (n - 1)", "log": "d log(a)/da = 1 / a",
                 "exp": "d exp(a)/da = exp(a)", "relu": "d relu(a)/da = 1 if a > 0 else 0",
                 "tanh": "d tanh(a)/da = 1 - tanh(a)**2", "sigmoid": "d sigmoid(a)/da = sigmoid(a) * (1 - sigmoid(a))",
                 "sqrt": "d sqrt(a)/da = 0.5 / sqrt(a)", "sin": "d sin(a)/da = cos(a)", "cos": "d cos(a)/da = -sin(a)",
                 "abs": "d |a|/da = sign(a)", "2.0 ** a": "d (2.0 ** a)/da = log(2.0) * 2.0 ** a",
                 "a ** b": "d(a ** b)/da = b * a ** (b - 1), d(a ** b)/db = log(a) * a ** b"}


TITLES = {"accumulation": "accumulation", "topological-order": "topological order", "seed": "the seed grad = 1",
          "visited-set": "no visited set", "graph-identity": "graph identity", "local-gradient": "the local gradient of {op}",
          "forward": "the forward of {op}", "in-place": "in-place {op}", "precision": "precision",
          "reset": "the gradient reset", "recursion-depth": "recursion depth", "slow-backward": "a slow backward",
          "memory": "memory without bound"}


def title(name: str) -> str:
    """"local-gradient *" -> "the local gradient of *": a cause's name as the report prints it."""
    key, _, operator = name.partition(" ")
    return TITLES.get(key, key).format(op=operator)


@dataclass
class Cause:
    key: str  # one of the causes above
    text: str  # what is wrong and what to write, in the learner's words
    where: str = ""  # "engine.py, line 42: self.grad = out.grad"
    operator: str = ""  # the operator it concerns, if one
    score: int = 0  # how well the evidence fits (higher first)

    @property
    def name(self) -> str:
        """"accumulation", "local-gradient exp": what the fault catalogue's `cause` says."""
        return f"{self.key} {self.operator}".strip()


@dataclass
class StepOutcome:
    """What the model step showed, for the diagnosis."""

    ran: bool = False  # a step came back
    agrees: bool = True  # ... and agreed with torch
    failure: str = ""  # "error", "recursion", "timeout", "exit", "crash" when it did not come back
    message: str = ""  # the failure's line
    first_step_agreed_later_not: bool = False
    depth_limited: bool = False  # backward survived shorter chains than the model's graph
    extra: dict = field(default_factory=dict)


# --- the diagnosis ----------------------------------------------------------------------------


def diagnose(probes, facts: dict | None = None, step: StepOutcome | None = None) -> list[Cause]:
    """The causes that fit, most likely first (an empty list when nothing is wrong)."""
    facts, step = facts or {}, step or StepOutcome()
    results = list(probes.results) if probes is not None else []
    causes = _memory(_Evidence(results, facts))
    # a probe that ran out of memory says nothing of the operator it tried: the others are judged without it
    evidence = _Evidence([replace(r, status="not run") if r.error.startswith("MemoryError") else r
                          for r in results], facts)
    for rule in (_seed, _precision, _accumulation, _topological_order, _visited_set, _graph_identity, _in_place,
                 _operators):
        causes += rule(evidence)
    causes += _from_step(evidence, step, causes)
    if any(c.key == "precision" for c in causes):  # rounding makes every probe look a little wrong
        causes = [c for c in causes if c.key == "precision" or c.key in ("slow-backward", "recursion-depth")]
    if any(c.key == "seed" for c in causes):  # one cause makes every operator look wrong
        causes = [c for c in causes if c.key == "seed" or c.score >= 90]
    best = {}
    for cause in sorted(causes, key=lambda c: -c.score):
        best.setdefault((cause.key, cause.operator), cause)
    return list(best.values())


class _Evidence:
    def __init__(self, results: list, facts: dict):
        self.results, self.facts = results, facts
        self.faults = [r for r in results if r.status == "fault"]
        self.by_operator = {}
        for r in results:
            self.by_operator.setdefault(r.operator, []).append(r)

    def find(self, prefix: str):
        return next((r for r in self.results if r.expression.startswith(prefix)), None)

    def failed(self, prefix: str) -> bool:
        r = self.find(prefix)
        return r is not None and r.status == "fault"

    def passed(self, prefix: str) -> bool:
        r = self.find(prefix)
        return r is not None and r.status in ("ok", "note")

    def method(self, name: str) -> dict:
        return self.facts.get("methods", {}).get(name) or {}

    def where(self, name: str, pattern: str | None = None) -> str:
        """"file, line N: text" of the first line of method `name` matching `pattern` (or its
        first line); "" when the source is not known."""
        method = self.method(name)
        if not method:
            return ""
        lines = method["lines"]
        index = 0
        if pattern is not None:
            index = next((i for i, line in enumerate(lines) if re.search(pattern, line)), 0)
        return f"{_short_file(method['file'])}, line {method['line'] + index}: {lines[index].strip()}"

    def where_first(self, name: str, patterns: tuple) -> str:
        """where() of the first of `patterns` that a line of method `name` (after its def) matches."""
        lines = self.method(name).get("lines", [])[1:]
        for pattern in patterns:
            if any(re.search(pattern, line) for line in lines):
                method = self.method(name)
                index = 1 + next(i for i, line in enumerate(lines) if re.search(pattern, line))
                return f"{_short_file(method['file'])}, line {method['line'] + index}: {method['lines'][index].strip()}"
        return ""

    def backward_where(self, pattern: str | None = None) -> str:
        """The line in backward or the sort it calls."""
        names = ["backward"] + [name for name in self.facts.get("methods", {}) if name.endswith("(called by backward)")]
        if pattern is not None:
            for name in names:
                method = self.method(name)
                if method and any(re.search(pattern, line) for line in method["lines"]):
                    return self.where(name, pattern)
        return self.where("backward", pattern)


def _short_file(path: str) -> str:
    return path


def _single_operator_probes(evidence) -> list:
    return [r for r in evidence.results if r.operator not in STRUCTURE and r.operator not in IN_PLACE and r.got]


def _seed(evidence) -> list:
    ran = [r for r in _single_operator_probes(evidence) if r.status != "absent"]
    grads = [(want, have) for r in ran for want, have in zip(r.expected[1:], r.got[1:]) if want != 0]
    values_right = all(_close(r.got[0], r.expected[0]) for r in ran)
    if len(grads) < 5 or not values_right:
        return []
    where = evidence.backward_where(r"\.grad\s*=\s*1") or evidence.where("backward")
    if all(have == 0 for _, have in grads):
        return [Cause("seed", "every gradient comes out 0 while every value is right: backward never sets the "
                              "output's own gradient to 1 before it walks the graph (d out / d out = 1 starts the "
                              "chain rule): write self.grad = 1 first", where, score=100)]
    ratios = {round(have / want, 9) for want, have in grads}
    if len(ratios) == 1 and ratios != {1.0}:
        (ratio,) = ratios
        return [Cause("seed", f"every gradient is {ratio:g} times what it should be while every value is right: "
                              f"backward starts from a gradient of {ratio:g} instead of 1", where, score=98)]
    return []


def _precision(evidence) -> list:
    wrong = [r for r in evidence.faults if r.got and r.expected]
    if len(wrong) < 3:
        return []
    worst = max(_relative(have, want) for r in wrong for want, have in zip(r.expected, r.got))
    if worst > 1e-4:
        return []
    kind = evidence.facts.get("data_type", "")
    said = f" (its numbers are {kind})" if kind and kind != "float" else ""
    return [Cause("precision", f"every difference is tiny (at most {worst:.1g} relative) and they are everywhere: "
                               f"the engine computes in lower precision{said}, float32 keeps about 7 digits. "
                               f"Keep Python floats (float64)", evidence.where("__init__", r"data"),
                  score=97 if "32" in kind or "16" in kind else 90)]


def _accumulation(evidence) -> list:
    twice = {"a + a": ("a + b", "__add__"), "a * a": ("a * b", "__mul__"), "a - a": ("a - b", "__sub__"),
             "a / a": ("a / b", "__truediv__")}
    shared = [(expr, method) for expr, (alone, method) in twice.items()
              if evidence.failed(expr) and evidence.passed(alone)]
    if not shared:
        return []
    methods = [method for _, method in shared]
    keyed = [m for m in methods if any(re.search(r"\{\s*self\s*:", line) for line in evidence.method(m).get("lines", []))]
    if keyed:  # local gradients in a dict keyed by child: x * x keeps one entry
        return [Cause("graph-identity", f"{_op_name(keyed[0])} keeps its local gradients in a dict keyed by child, "
                                        f"so x * x (the same node twice) keeps one entry and loses the other: keep "
                                        f"them in a tuple, one per child, or add the entries up",
                      evidence.where(keyed[0], r"\{\s*self\s*:"), score=93)]
    overwrite = r"\.grad\s*=(?!=)(?!.*\.grad\s*\+)"
    for name in methods + ["backward"] + [n for n in evidence.facts.get("methods", {}) if "called by backward" in n]:
        lines = evidence.method(name).get("lines", [])
        if any(re.search(overwrite, line) and not re.search(r"\.grad\s*=\s*(0|1|0\.0|1\.0)\s*(#.*)?$", line)
               for line in lines):
            where = evidence.where(name, r"\.grad\s*=(?!=)(?!.*\.grad\s*\+)(?!\s*(0|1|0\.0|1\.0)\s*(#.*)?$)")
            break
    else:
        where = evidence.backward_where()
    exprs = ", ".join(expr for expr, _ in shared)
    return [Cause("accumulation", f"a gradient is overwritten where it must be added: {exprs} (one node used twice) "
                                  f"is wrong while the same operator on two different nodes is right, so a node "
                                  f"keeps only the last path's share. Write child.grad += ... where it says child.grad = ...",
                  where, score=92)]


def _topological_order(evidence) -> list:
    if evidence.failed("a * 2.0 * 3.0 * 4.0") and evidence.passed("a * 2.0"):
        return [Cause("topological-order", "one product alone is right but a chain of them, a * 2.0 * 3.0 * 4.0, "
                                           "is not: backward passes a node's gradient on before it has all of it. "
                                           "Walk the nodes in reverse topological order (each node after every "
                                           "node that uses it: append a node after its children, then reverse)",
                      evidence.backward_where(r"append|reversed|topo"), score=91)]
    if evidence.failed("x + x * 3.0") and evidence.passed("a * 2.0 * 3.0 * 4.0") and evidence.passed("a + a") \
            and not _many_paths_high(evidence):
        return [Cause("topological-order", "x + x * 3.0 (x reached by a short and a long path) is wrong while "
                                           "chains and single operators are right: backward visits the nodes in an "
                                           "order that is not topological (breadth-first, say), so x passes its "
                                           "gradient on before x * 3.0 adds to it. Sort the nodes topologically "
                                           "(depth-first, append after the children) and walk them reversed",
                      evidence.backward_where(r"append|reversed|queue|pop\(0\)|popleft"), score=88)]
    return []


def _many_paths_high(evidence) -> bool:
    r = evidence.find("y = y + y")
    if r is None or r.status != "fault":
        return False
    if r.got:
        return abs(r.got[1]) > abs(r.expected[1]) * 1.01
    return "did not finish" in r.message


def _visited_set(evidence) -> list:
    if not _many_paths_high(evidence):
        return []
    r = evidence.find("y = y + y")
    got = f"gave {r.got[1]:g} where torch gives 1024" if r.got else "did not finish"
    return [Cause("visited-set", f"y = y + y ten times (1,024 paths from y to a) {got}: backward walks every path "
                                 f"instead of every node once, so a node shared by many paths is visited (and adds "
                                 f"its gradient) many times, and the model's graph takes for ever. Keep a visited "
                                 f"set in the topological sort and skip a node already in it",
                  evidence.backward_where(r"def build|topo"), score=94)]


def _graph_identity(evidence) -> list:
    causes = []
    equal = evidence.find("u + w")
    if equal is not None and equal.status == "fault" and evidence.passed("a + b") and evidence.passed("a * 2.0") \
            and (evidence.facts.get("eq") or evidence.passed("a * 2.0 * 3.0 * 4.0")):
        if evidence.facts.get("eq") or not evidence.facts:
            where = evidence.where("__eq__") or evidence.where("__hash__")
            causes.append(Cause("graph-identity", "two different nodes that hold the same number (u = a * 2.0 and "
                                                  "w = b * 3.0, both 3.0) are taken for one: __eq__/__hash__ compare "
                                                  "by value, so a set or dict of nodes (children, visited) merges "
                                                  "them. Leave __eq__ and __hash__ out (identity), or keep nodes "
                                                  "by id", where, score=95))
        else:
            causes.append(Cause("graph-identity", "two different nodes that hold the same number are taken for one: "
                                                  "something keys the nodes by their value", evidence.backward_where(),
                                score=85))
    fresh = evidence.find("backward on y = a * b + a, then on a new node")
    recursion_on_tiny = [r for r in evidence.faults if "RecursionError" in r.error]
    shared = [d for d in evidence.facts.get("mutable_defaults", []) if d.get("filled")]
    if (fresh is not None and fresh.status == "fault") or recursion_on_tiny or (shared and evidence.faults):
        if shared or evidence.facts.get("mutable_defaults"):
            name = (shared or evidence.facts["mutable_defaults"])[0]["name"]
            causes.append(Cause("graph-identity", f"a node made without children reaches other nodes: the default "
                                                  f"{name}=[] of __init__ is one list shared by every node, and "
                                                  f"appending to it gives every node the same children (a cycle: "
                                                  f"RecursionError on a graph of three nodes). Default to () or "
                                                  f"None and make a new list in __init__",
                                evidence.where("__init__", rf"{name}\s*=\s*(\[|\{{|set\()"), score=96))
        elif fresh is not None and fresh.status == "fault" and (not fresh.error or "RecursionError" in fresh.error):
            causes.append(Cause("graph-identity", "backward on a node made afterwards changed the gradients of "
                                                  "earlier nodes: nodes share their list of children",
                                evidence.where("__init__"), score=84))
    late = _late_bound(evidence)
    if late:
        causes.append(late)
    stale = evidence.find("a * a + a, then a * 3.0")
    kept = [c for c in evidence.facts.get("class_containers", []) if c.get("size")]
    structure_fails = any(r.operator in STRUCTURE for r in evidence.faults)
    if kept and structure_fails:
        causes.append(Cause("graph-identity", f"backward remembers nodes between calls: {kept[0]['name']}, kept on "
                                              f"the class, still holds {kept[0]['size']:,} entries after the probes, so "
                                              f"a later graph (whose nodes may reuse a freed node's id) is walked only "
                                              f"in part. Make the visited set a local variable of backward",
                            evidence.backward_where(kept[0]["name"]) or evidence.where("backward"), score=97))
    elif stale is not None and stale.status == "fault" and "remembers nodes" in stale.message:
        said = f" ({kept[0]['name']}, kept on the class)" if kept else ""
        causes.append(Cause("graph-identity", f"backward remembers nodes of an earlier graph{said}: a later graph "
                                              f"whose nodes reuse freed ids is walked only in part. Make the "
                                              f"visited set a local variable of backward",
                            evidence.backward_where(kept[0]["name"] if kept else r"visited"), score=93))
    unhashable = [r for r in evidence.faults if "unhashable" in r.message]
    if unhashable:
        causes.append(Cause("graph-identity", "nodes cannot go in a set: defining __eq__ removes the inherited "
                                              "__hash__. Leave __eq__ out, or define __hash__ = object.__hash__",
                            evidence.where("__eq__"), score=95))
    return causes


def _late_bound(evidence) -> Cause | None:
    pairs = [r for r in evidence.faults if r.expression.split(" at ")[0] in ("a + b", "a - b", "a * b", "a / b")
             and r.got and _close(r.got[0], r.expected[0])]
    first_lost = [r for r in pairs if r.got[1] == 0 and r.expected[1] != 0 and r.got[2] != 0]
    if len(first_lost) >= 2:
        return Cause("graph-identity", f"in {', '.join(r.expression.split(' at ')[0] for r in first_lost)} the first "
                                       f"input gets no gradient and the second gets it all: the backward closures are "
                                       f"made in a loop and all see the loop's last child (Python binds a closure's "
                                       f"names late). Bind them when the closure is made: lambda child=child, "
                                       f"g=g: ...", _loop_closure_where(evidence), score=94)
    wrong_values = [r for r in evidence.faults if r.got and not _close(r.got[0], r.expected[0]) and len(r.got) == 3]
    same = {}
    for r in wrong_values:
        a, b = _inputs(r)
        for name, function in (("+", lambda: a + b), ("-", lambda: a - b), ("*", lambda: a * b),
                               ("/", lambda: a / b), ("**", lambda: a ** b if a > 0 else math.nan)):
            if _close(r.got[0], function()):
                same.setdefault(name, set()).add(r.operator)
    for name, operators in same.items():
        if len(operators) >= 2:
            return Cause("graph-identity", f"{', '.join(sorted(operators))} all compute {name}: the operators are "
                                           f"made in a loop over a table, and every one sees the table's last "
                                           f"entry (Python binds a closure's names late). Bind them when each is "
                                           f"made (a default argument, or a function that returns the method)",
                         _loop_closure_where(evidence), score=94)
    return None


def _loop_closure_where(evidence) -> str:
    for name, method in evidence.facts.get("methods", {}).items():
        lines = method.get("lines", [])
        for i, line in enumerate(lines):
            if re.search(r"lambda|def ", line) and any(re.match(r"\s*for ", earlier) for earlier in lines[1:i]):
                return f"{_short_file(method['file'])}, line {method['line'] + i}: {line.strip()}"
    return evidence.backward_where()


def _inputs(result) -> tuple:
    found = re.findall(r"([ab]) = (-?[\d.]+)", result.expression.split(" at ")[-1])
    values = {name: float(x) for name, x in found}
    return values.get("a", 1.5), values.get("b", -2.5)


def _in_place(evidence) -> list:
    causes = []
    for operator, (method, plain, _) in IN_PLACE.items():
        results = evidence.by_operator.get(operator, [])
        if any(r.status == "fault" for r in results) and all(r.status in ("ok", "note")
                                                            for r in evidence.by_operator.get(plain, [])[:2]):
            if evidence.method(method):
                causes.append(Cause("in-place", f"c {operator} b is wrong where c {plain} b is right: {method} changes "
                                                f"c in place and records no node, so the graph loses b (torch makes a "
                                                f"new node). Return a new node from {method} (return self {plain} "
                                                f"other), or leave {method} out: Python then uses {_op_method(plain)}",
                                    evidence.where(method), operator, score=90))
    return causes


def _op_method(operator: str) -> str:
    return {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__"}[operator]


def _op_name(method: str) -> str:
    return {"__mul__": "mul", "__add__": "add", "__sub__": "sub", "__truediv__": "div"}.get(method, method)


def _operators(evidence) -> list:
    """One operator's own mistake: its value, its local gradient, or an error it raises."""
    causes = []
    failing = {}
    for r in evidence.faults:
        if r.operator in STRUCTURE or r.operator in IN_PLACE:
            continue
        failing.setdefault(r.operator, []).append(r)
    failing_methods = {m for wrong in failing.values() for r in wrong if len(r.uses) == 1 for m in r.uses}
    for operator, wrong in list(failing.items()):  # an error raised inside another operator's method is that one's
        raised_in = [_method_at(evidence, r.where) for r in wrong if r.error and r.where]
        owner = METHOD_OPERATOR.get(raised_in[0], "") if raised_in else ""
        if owner and owner != operator:
            failing.setdefault(owner, []).extend(wrong)
            del failing[operator]
    for operator, wrong in failing.items():
        if all(len(r.uses) > 1 for r in wrong) and any(set(r.uses) & failing_methods for r in wrong):
            continue  # relu(a) ** 2 fails for **'s sake; relu alone is right
        total = max(len(evidence.by_operator.get(operator, [])), len(wrong))
        first = wrong[0]
        method = next((m for m in first.uses if m not in ("__pow__",) or operator in ("**", "a ** b")), "") \
            if first.uses else ""
        method = _method_of(operator, first)
        built_on = _built_on(evidence, method, set(failing) - {operator})
        score = 70 + int(10 * len(wrong) / total) - (25 if built_on else 0)
        also = f" ({method} is written with {', '.join(built_on)}, which is wrong itself)" if built_on else ""
        if first.error:
            where = _where_raised(first) or evidence.where(method)
            stopped = first.error.startswith("did not finish")  # the timer's words, not an exception's
            text = f"{first.expression} {'' if stopped else 'raised '}{first.error}{also}"
            if "ZeroDivisionError" in first.error:
                text += (": the local gradient divides by a number that is 0 here (relu(x) = 0 feeds x ** 2 in "
                         "the model); write it without the division, e.g. n * a ** (n - 1)")
            causes.append(Cause("local-gradient", text, where, operator, score))
        elif first.got and not _close(first.got[0], first.expected[0]):
            causes.append(Cause("forward", f"{method or operator} computes the wrong number: {first.message}{also}",
                                evidence.where_first(method, (r"return", r"Value\(")) or evidence.where(method),
                                operator, score + 2))
        else:
            derivative = DERIVATIVE_OF.get(operator, "")
            should = f"it must be {derivative}; " if derivative else ""
            causes.append(Cause("local-gradient", f"{should}{first.message}{also}",
                                evidence.where_first(method, (r"\.grad\s*[-+]?=", r"Value\(.*\(", r"return"))
                                or evidence.where(method), operator, score))
    return causes


def _method_of(operator: str, result) -> str:
    uses = [m for m in result.uses if m != "relu" or operator == "relu"]
    if operator == "relu":
        return "relu"
    for method in uses:
        if method not in ("__pow__",) or operator in ("**", "a ** b"):
            return method
    return uses[0] if uses else ""


def _built_on(evidence, method: str, others: set) -> list:
    lines = evidence.method(method).get("lines", [])[1:]
    body = "\n".join(line.split("#")[0] for line in lines)
    found = []
    for operator in sorted(others):
        patterns = BUILT_ON.get(operator, ())
        if any(re.search(pattern, body) for pattern in patterns):
            found.append(operator)
    return found


METHOD_OPERATOR = {"__add__": "+", "__radd__": "+", "__sub__": "-", "__rsub__": "-", "__mul__": "*", "__rmul__": "*",
                   "__truediv__": "/", "__rtruediv__": "/", "__neg__": "neg", "__pow__": "**", "__rpow__": "2.0 ** a",
                   "log": "log", "exp": "exp", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "sqrt": "sqrt",
                   "sin": "sin", "cos": "cos", "__abs__": "abs", "__iadd__": "+=", "__isub__": "-=",
                   "__imul__": "*=", "__itruediv__": "/="}


def _method_at(evidence, where: dict) -> str:
    """The engine's method whose source holds the line an error was raised at, or ""."""
    for name, method in evidence.facts.get("methods", {}).items():
        if method.get("file") == where.get("file") and \
                method["line"] <= where.get("line", -1) < method["line"] + len(method["lines"]):
            return name
    return ""


def _where_raised(result) -> str:
    where = result.where or {}
    if not where.get("line"):
        return ""
    return f"{_short_file(where.get('file', ''))}, line {where['line']}: {where.get('text', '')}"


def _memory(evidence) -> list:
    """A graph of a few nodes needs a few kilobytes: one that runs out of memory, or has grown
    the process by many MB when it is stopped, points at an allocation without bound."""
    for r in evidence.faults:
        if r.error.startswith("MemoryError"):
            what = f"{r.expression} raised MemoryError"
        elif r.grown_mb:
            what = f"{r.expression} did not finish, and its process had grown by {r.grown_mb:,} MB when it was stopped"
        else:
            continue
        return [Cause("memory", f"{what}: a graph of a few nodes needs a few kilobytes, so something allocates "
                                f"without bound, e.g. a list or cache kept on the class or the module that every "
                                f"call adds to and nothing empties, or a loop that allocates and never ends. The "
                                f"engine's process may use the memory --max-memory sets",
                      _where_raised(r) or evidence.backward_where(), score=99)]
    return []


def _from_step(evidence, step: StepOutcome, found: list) -> list:
    causes = []
    if step.failure == "timeout":
        if not any(c.key == "visited-set" for c in found):
            causes.append(Cause("slow-backward", "the step ran far longer than this engine's speed on the probes "
                                                 "predicts: backward walks far more nodes than the graph has (a "
                                                 "topological sort with no visited set, or a visited list searched "
                                                 "from the start each time), or it never ends",
                                evidence.backward_where(r"visited|def build|topo"), score=80))
        else:
            for cause in found:
                if cause.key == "visited-set":
                    cause.score = 99
    if step.failure == "recursion":
        if step.depth_limited:
            causes.append(Cause("recursion-depth", "backward's topological sort recurses once per node, and the "
                                                   "model's graph is deeper than Python's recursion limit: make it "
                                                   "iterative (an explicit stack)",
                                evidence.backward_where(r"def build|build"), score=85))
        elif not any(c.key == "graph-identity" for c in found):
            causes.append(Cause("graph-identity", "RecursionError although backward survives chains deeper than the "
                                                  "model's graph: the graph has a cycle (a node among its own "
                                                  "children, e.g. a shared children list)",
                                evidence.where("__init__"), score=82))
    if step.first_step_agreed_later_not:
        causes.append(Cause("reset", "the first step agrees and a later one does not: a gradient carries over from "
                                     "one step to the next. After each update set every p.grad = 0", "", score=80))
    return causes


def _close(have: float, want: float) -> bool:
    return close(have, want, PROBE_TOLERANCE)  # as the probes are judged


def _relative(have: float, want: float) -> float:
    return abs(have - want) / max(abs(want), 1e-300)


def cause_lines(causes: list, width: int = 100) -> list:
    """The report's lines for the causes: the most likely first, then the others that fit."""
    import textwrap

    lines = []
    shown = [cause for i, cause in enumerate(causes) if i == 0 or cause.score >= 60][:3]
    for i, cause in enumerate(shown):
        label = "cause    " if i == 0 else "or       "
        rank = "most likely " if i == 0 and len(shown) > 1 else ""
        text = cause.text if cause.text.endswith(".") else cause.text + "."
        lines += textwrap.wrap(f"{rank}{title(cause.name)}: {text}", width, initial_indent=f"  {label}",
                               subsequent_indent=" " * 11)
        if cause.where:
            lines.append(f"{' ' * 11}look at {cause.where}")
    return lines
