"""A catalogue of mistakes learners make in a scalar autograd engine, to prove the check finds them.

Each fault is one edit to the project's own source, written as the line the project has and
the line a learner writes instead; `faulty_engine(name)` applies it to a fresh copy of
`microgpt_scalar/engine.py` (or `optim.py`) and returns the broken `Value` and `Adam`. The
catalogue also says where the comparison should point: the first forward stage that
differs, or, when the forward is right, which gradients must differ and which must not.

    engine = faulty_engine("grad-assign")      # engine.value_cls, engine.adam_cls
    report = compare_step(inject="grad-assign")  # the same, run by the checker

Some faults the model's step cannot see: it never computes `2.0 - x` or `2.0 / x`, and under
relu(x) ** 2 a relu gradient of 1 for x < 0 is multiplied by relu(x) = 0. The operator probes
(compare.engine.probes) find those. A recursive topological sort is not wrong, only limited: it is
caught on a model deep enough to pass Python's recursion limit.

Not here, on purpose: relu's gradient at exactly 0 (a convention: torch takes 0, some engines
1; the probe at 0 reports it as a note) and a softmax without the max shift (a model fault,
not an engine's).
"""
from __future__ import annotations

import inspect
import linecache
import types
from dataclasses import dataclass

from microgpt_scalar import engine, optim
from microgpt_scalar.config import get_config, param_shapes

ALL_TENSORS = tuple(name for name, _ in param_shapes(get_config()))  # the default one-layer model's


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str  # one line: what the learner wrote
    why: str  # why it is wrong and what it breaks
    module: str  # "engine" or "optim": the microgpt_scalar file the edit applies to
    correct: str  # a line of the project's code (the only line of that file that reads so)
    faulty: str  # what the learner wrote instead (one line or more)
    helper: str = ""  # code the faulty version calls, appended to the file
    min_steps: int = 1  # steps the comparison needs before the fault can show
    # Where the comparison must point, for the default preset and weights:
    forward_stage: str | None = None  # the first trace stage whose values differ (None: forward agrees)
    forward_position: int | None = None  # ... and its position
    gradients_differ: tuple = ()  # with the forward right, these gradients must differ
    gradients_agree: tuple = ()  # ... and these must agree
    probes: tuple = ()  # the operator probes that fail (the lines of the probe table)
    flags: tuple = ()  # what the check needs beyond the default to catch it, e.g. a deeper model
    cause: str = ""  # the cause the diagnosis must name first: "accumulation", "local-gradient *", ...


FAULTS = {fault.name: fault for fault in (
    Fault(
        "grad-assign",
        "backward writes child.grad = ... instead of child.grad += ...",
        "A node used in several places (every weight, every activation) keeps only the gradient "
        "of the last path backward walks; the other paths' contributions are lost.",
        "engine", "child.grad += local_grad * node.grad", "child.grad = local_grad * node.grad",
        gradients_differ=ALL_TENSORS,
        probes=("same node twice", "two paths", "many paths", "backward twice"),
        cause="accumulation",
    ),
    Fault(
        "no-topological-order",
        "backward visits the nodes breadth-first from the loss instead of in topological order",
        "A node can hand its gradient to its children before all of its own parents have handed "
        "theirs to it; what arrives later never travels further down.",
        "engine", "for node in reversed(topological_order(self)):", "for node in breadth_first_order(self):",
        helper='''
def breadth_first_order(root):
    order, seen = [root], {root}
    for node in order:  # the list grows while it is walked: a queue
        for child in node._children:
            if child not in seen:
                seen.add(child)
                order.append(child)
    return order
''',
        gradients_differ=ALL_TENSORS,
        probes=("two paths",),
        cause="topological-order",
    ),
    Fault(
        "no-seed",
        "backward never sets the loss's own gradient to 1",
        "d loss / d loss = 1 starts the chain rule; left at 0, every gradient comes out 0.",
        "engine", "self.grad = 1", "pass  # the seed self.grad = 1 is missing",
        gradients_differ=ALL_TENSORS,
        probes=("+", "-", "*", "/", "neg", "**", "log", "exp", "relu", "+=", "-=", "*=", "/=", "same node twice",
                "two paths", "chain", "many paths", "equal values", "backward twice", "fresh node"),
        cause="seed",
    ),
    Fault(
        "mul-grad",
        "mul's local gradients swapped: d(a*b)/da written as a instead of b",
        "Each factor's gradient must be the other factor; with them swapped every product "
        "(every weight times its input) sends the wrong gradient.",
        "engine", "return Value(self.data * other.data, (self, other), (other.data, self.data))",
        "return Value(self.data * other.data, (self, other), (self.data, other.data))",
        gradients_differ=ALL_TENSORS,
        probes=("-", "*", "/", "neg", "+=", "-=", "*=", "/=", "same node twice", "two paths", "chain", "equal values",
                "backward twice"),
        cause="local-gradient *",
    ),
    Fault(
        "pow-grad",
        "pow's local gradient drops the factor n: x ** (n - 1) instead of n * x ** (n - 1)",
        "Division is multiplication by x ** -1, so softmax's denominator gets its gradient with "
        "the wrong sign, and rmsnorm's x ** -0.5 and the MLP's relu(x) ** 2 are off too.",
        "engine", "return Value(self.data**other, (self,), (other * self.data ** (other - 1),))",
        "return Value(self.data**other, (self,), (self.data ** (other - 1),))",
        gradients_differ=ALL_TENSORS,
        probes=("/", "**", "relu", "/=", "same node twice"),
        cause="local-gradient **",
    ),
    Fault(
        "exp-grad",
        "exp's local gradient written as x instead of exp(x)",
        "The derivative of e^x is e^x itself; x is its argument. Every softmax (attention and "
        "output) passes the wrong gradient back.",
        "engine", "return Value(math.exp(self.data), (self,), (math.exp(self.data),))",
        "return Value(math.exp(self.data), (self,), (self.data,))",
        gradients_differ=ALL_TENSORS,
        probes=("exp", "two paths"),
        cause="local-gradient exp",
    ),
    Fault(
        "exp-forward",
        "exp computed as 2.718 ** x instead of math.exp(x)",
        "e is 2.71828...; 2.718 ** x is e ** (0.99989 x), off by about 1e-4 x relatively. "
        "Attention at position 0 sees only itself, where exp(0) = 1 either way, so the first "
        "number to differ is the output softmax at position 0.",
        "engine", "return Value(math.exp(self.data), (self,), (math.exp(self.data),))",
        "return Value(2.718 ** self.data, (self,), (2.718 ** self.data,))",
        forward_stage="probs", forward_position=0,
        probes=("exp", "two paths"),
        cause="forward exp",
    ),
    Fault(
        "log-grad",
        "log's local gradient written as -1 / x ** 2 (the derivative of 1 / x) instead of 1 / x",
        "log appears only in the loss, -log(p[target]), so every gradient starts out wrong.",
        "engine", "return Value(math.log(self.data), (self,), (1 / self.data,))",
        "return Value(math.log(self.data), (self,), (-1 / self.data**2,))",
        gradients_differ=ALL_TENSORS,
        probes=("log",),
        cause="local-gradient log",
    ),
    Fault(
        "relu-grad",
        "relu's local gradient written as relu(x) instead of 1 if x > 0 else 0",
        "The pattern of exp (the derivative is the function) does not carry over. The MLP's "
        "output weights and lm_head sit after the activation and still get right gradients; "
        "mlp_fc1 and everything before it do not.",
        "engine", "return Value(max(0, self.data), (self,), (float(self.data > 0),))",
        "return Value(max(0, self.data), (self,), (max(0, self.data),))",
        gradients_differ=("wte", "wpe", "layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv",
                          "layer0.attn_wo", "layer0.mlp_fc1"),
        gradients_agree=("lm_head", "layer0.mlp_fc2"),
        probes=("relu",),
        cause="local-gradient relu",
    ),
    Fault(
        "div-grad",
        "division as its own node, with the quotient rule's minus sign dropped for the divisor",
        "d(a/b)/db = -a / b ** 2. Written without the minus, softmax's denominator pushes the "
        "wrong way, so every softmax passes the wrong gradient back.",
        "engine", "return self * other**-1",
        "other = other if isinstance(other, Value) else Value(other)\n"
        "return Value(self.data / other.data, (self, other), (1 / other.data, self.data / other.data**2))",
        gradients_differ=ALL_TENSORS,
        probes=("/", "/=", "same node twice"),
        cause="local-gradient /",
    ),
    Fault(
        "grad-not-reset",
        "the optimizer never resets p.grad = 0 after the update",
        "backward adds to .grad, so the second step's gradient is the sum of both steps'. The "
        "first step starts from zero either way, so this shows from the second step on.",
        "optim", "p.grad = 0", "pass  # p.grad = 0 is missing",
        min_steps=2, gradients_differ=ALL_TENSORS,
        cause="reset",
    ),
    Fault(
        "rsub",
        "__rsub__ computes x - c for c - x (the operands of the reflected form swapped)",
        "2.0 - x calls x.__rsub__(2.0), whose other is the left operand; written as self - other "
        "it gives x - 2.0. The model never subtracts a Value from a plain number, so only the "
        "probe of 2.0 - a can see it.",
        "engine", "return other + (-self)", "return self - other",
        probes=("-",),
        cause="forward -",
    ),
    Fault(
        "rtruediv",
        "__rtruediv__ computes x / c for c / x (the operands of the reflected form swapped)",
        "1 / x calls x.__rtruediv__(1); written as self / other it gives x / 1. The model never "
        "divides a plain number by a Value, so only the probe of 2.0 / a can see it.",
        "engine", "return other * self**-1", "return self / other",
        probes=("/",),
        cause="forward /",
    ),
    Fault(
        "relu-grad-one",
        "relu's local gradient always 1, also where x < 0",
        "relu is flat for x < 0, so its derivative there is 0. Under the MLP's relu(x) ** 2 the "
        "gradient 2 * relu(x) * relu'(x) is 0 wherever relu' matters, so the model step agrees "
        "exactly; the probe of relu alone at a < 0 sees it.",
        "engine", "return Value(max(0, self.data), (self,), (float(self.data > 0),))",
        "return Value(max(0, self.data), (self,), (1.0,))",
        probes=("relu",),
        cause="local-gradient relu",
    ),
    Fault(
        "mul-dict",
        "mul keeps its local gradients in a dict keyed by child, so x * x keeps one of them",
        "{self: other.data, other: self.data} has one key when self is other: x * x sends x "
        "instead of 2 * x back. rmsnorm squares every activation this way, so every gradient "
        "that flows back through an rmsnorm (the one before the MLP and those before it) is "
        "wrong; lm_head and the MLP's weights, nearer the loss, are still right.",
        "engine", "return Value(self.data * other.data, (self, other), (other.data, self.data))",
        "local_grads = {self: other.data, other: self.data}  # one entry when self is other\n"
        "return Value(self.data * other.data, tuple(local_grads), tuple(local_grads.values()))",
        gradients_differ=("wte", "wpe", "layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv", "layer0.attn_wo"),
        gradients_agree=("lm_head", "layer0.mlp_fc1", "layer0.mlp_fc2"), probes=("same node twice", "backward twice"),
        cause="graph-identity",
    ),
    Fault(
        "recursive-sort",
        "backward's topological sort is a recursive function (micrograd's build_topo)",
        "Right, but each node of the longest path takes a Python frame, and past the recursion "
        "limit (1,000) backward fails with RecursionError. The default model's graph is about "
        "260 nodes deep; eight layers make it about 1,600.",
        "engine", "for node in reversed(topological_order(self)):",
        "for node in reversed(recursive_topological_order(self)):",
        helper='''
def recursive_topological_order(root):
    topo, visited = [], set()

    def build(node):
        if node not in visited:
            visited.add(node)
            for child in node._children:
                build(child)
            topo.append(node)
    build(root)
    return topo
''',
        flags=("--n-layer", "8"),
        cause="recursion-depth",
    ),
)}


@dataclass(frozen=True)
class FaultyEngine:
    value_cls: type  # the broken (or intact) Value
    adam_cls: type  # the broken (or intact) Adam


def check_injection(name: str | None, engine=None) -> None:
    """ValueError unless `name` is None or a fault of the catalogue to write into the
    project's engine, with no learner's `engine` beside it."""
    if name is None:
        return
    if engine is not None:
        raise ValueError("--inject writes a fault into the project's engine; it cannot be combined with --engine")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; choose one of {', '.join(FAULTS)} (see --list-faults)")


def faulty_engine(name: str) -> FaultyEngine:
    """The project's Value and Adam with fault `name` written in."""
    check_injection(name)
    fault = FAULTS[name]
    patched = _patched_module(fault)
    if fault.module == "engine":
        return FaultyEngine(patched.Value, optim.Adam)
    return FaultyEngine(engine.Value, patched.Adam)


def _patched_module(fault: Fault) -> types.ModuleType:
    original = {"engine": engine, "optim": optim}[fault.module]
    source = _replace_line(inspect.getsource(original), fault) + fault.helper
    module = types.ModuleType(f"microgpt_scalar.{fault.module}_with_{fault.name.replace('-', '_')}")
    module.__package__ = "microgpt_scalar"  # optim.py imports .config
    filename = f"<microgpt_scalar/{fault.module}.py with fault {fault.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # its lines can be shown
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _replace_line(source: str, fault: Fault) -> str:
    """Replace the one line that reads `fault.correct` by `fault.faulty`, at its indentation."""
    lines = source.split("\n")
    found = [i for i, line in enumerate(lines) if line.strip() == fault.correct]
    if len(found) != 1:  # the project's code changed under the catalogue
        raise RuntimeError(f"fault {fault.name}: microgpt_scalar/{fault.module}.py has {len(found)} lines "
                           f"reading {fault.correct!r}, not one")
    line = lines[found[0]]
    indent = line[: len(line) - len(line.lstrip())]
    lines[found[0]] = "\n".join(indent + faulty_line for faulty_line in fault.faulty.split("\n"))
    return "\n".join(lines)
