"""How deep a graph an engine's `backward` can walk, and how deep the model's graph is.

A recursive topological sort is not wrong, only limited: Python stops it with RecursionError
once the graph is deeper than the recursion limit (1,000 frames by default). The engine's
limit is measured on chains `a * 1.0 * 1.0 * ...`; the model's depth is the longest path
from a parameter to the loss, counted in the project's engine's nodes.

    survived, failed = deepest_chain(Value)   # (5000, None) for an iterative backward
    graph_depth(config, params, tokens)       # 263 for the default model on an 8-token name
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass

CHAIN_LENGTHS = (1_500, 5_000)  # tried in turn: past the recursion limit, then a model of about 25 layers

# What a step that raised RecursionError is told, with the two depths
RECURSION_ADVICE = ("the model's graph is {graph:,} nodes deep and this backward survives chains of about "
                    "{survived:,}: its topological sort recurses once per node, past Python's recursion limit. "
                    "Make it iterative (an explicit stack) to check this configuration")


@dataclass
class DepthCheck:
    """How deep a graph the engine's backward walks, against how deep the checked model's is."""

    survived: int | None  # the longest chain backward survived (None: not measured)
    failed: int | None  # the shortest chain it failed on with RecursionError (None: none it tried)
    graph: int | None  # the longest path from a parameter to the loss in the checked model
    per_layer: int | None  # how much one more layer adds to it
    n_layer: int  # the checked model's layers


def chain_survives(value_cls, length: int) -> bool:
    """Whether backward walks a chain of `length` nodes without RecursionError, measured in a
    thread of its own: Python counts recursion per thread, so the walk starts from an empty
    stack whoever asks (a test runner deep in its own calls, the engine's process). An error
    of the engine's other than RecursionError is raised here."""
    found = {}

    def walk():
        try:
            x = value_cls(0.5)
            y = x
            for _ in range(length):
                y = y * 1.0
            y.backward()
            found["survived"] = True
        except RecursionError:
            found["survived"] = False
        except BaseException as error:  # handed to the caller's thread
            found["error"] = error

    thread = threading.Thread(target=walk, name="chain", daemon=True)
    thread.start()
    thread.join()  # the engine's process bounds it with its timer (compare.engine.statements.guarded)
    if "error" in found:
        raise found["error"]
    return found["survived"]


def deepest_chain(value_cls) -> tuple[int, int | None]:
    """(the longest chain backward survived, the shortest it failed on or None): the same
    chains whatever the machine's speed."""
    survived = 0
    for length in CHAIN_LENGTHS:
        if not chain_survives(value_cls, length):
            return _bisect(value_cls, survived, length)
        survived = length
    return survived, None


def depth_limited(chain) -> bool:
    """Whether a chain measurement ([survived, failed] from deepest_chain, or None when it
    could not be made) found a depth at which the engine's backward fails."""
    return bool(chain and chain[1] is not None)


def _bisect(value_cls, good: int, bad: int) -> tuple[int, int]:
    while bad - good > max(10, good // 50):
        middle = (good + bad) // 2
        if chain_survives(value_cls, middle):
            good = middle
        else:
            bad = middle
    return good, bad


MADE = {"nodes": 0}


class DepthNode:
    """A number that knows the longest chain of operations behind it, built like the
    project's engine builds it (a - b is a + (-b), a / b is a * b ** -1). MADE counts the
    nodes made."""

    __slots__ = ("data", "grad", "depth")

    def __init__(self, data, depth: int = 0):
        self.data, self.grad, self.depth = data, 0, depth
        MADE["nodes"] += 1

    def _made(self, data, *others) -> "DepthNode":
        depths = [self.depth] + [o.depth for o in others if isinstance(o, DepthNode)]
        return DepthNode(data, 1 + max(depths))

    @staticmethod
    def _data(x):
        return x.data if isinstance(x, DepthNode) else x

    def __add__(self, other):
        return self._made(self.data + self._data(other), other)

    def __mul__(self, other):
        return self._made(self.data * self._data(other), other)

    def __pow__(self, n):
        return self._made(self.data ** n)

    def log(self):
        return self._made(math.log(self.data))

    def exp(self):
        return self._made(math.exp(self.data))

    def relu(self):
        return self._made(max(0, self.data))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other ** -1


def graph_depth(config, params: dict, tokens: list, counted: list | None = None) -> int:
    """The longest path from a parameter to the loss of one document, in nodes. `counted`,
    if given, gets the number of nodes the document's graph has (parameters included)."""
    from microgpt_scalar.model import GPT
    from microgpt_scalar.train import forward_loss

    before = MADE["nodes"]
    model = GPT(config, value_cls=DepthNode, params=params)
    depth = forward_loss(model, tokens).depth
    if counted is not None:
        counted.append(MADE["nodes"] - before)
    return depth


SPEED_SIZES = (500, 4_000)  # leaves of the two graphs timed: 3 nodes a leaf, about 12 deep


def backward_speed(value_cls, budget: float = 2.0) -> dict:
    """Seconds per node to build and walk back a shallow graph (a pairwise sum of products,
    so a recursive sort has no trouble), on a small and on a larger graph:
    {"per_node": s, "growth": per-node time on the larger / on the smaller, "nodes": n}.
    "growth" near 1 is a walk linear in the nodes; far above, a walk that slows as the graph
    grows (a visited list, not a set). A graph still running after `budget` seconds counts
    as slow. {} if the engine fails on it."""
    from .statements import Overran, guarded

    timings = []
    for leaves in SPEED_SIZES:
        try:
            with guarded(budget, audit=False):
                seconds = _time_tree(value_cls, leaves)
        except Overran:
            if not timings:
                return {}
            return {"per_node": timings[0], "growth": math.inf, "nodes": 3 * SPEED_SIZES[0]}
        except Exception:
            return {}
        timings.append(seconds / (3 * leaves))
    return {"per_node": timings[-1], "growth": timings[-1] / max(timings[0], 1e-12), "nodes": 3 * SPEED_SIZES[-1]}


def _time_tree(value_cls, leaves: int) -> float:
    start = time.perf_counter()
    level = [value_cls(0.001 * i) * 1.5 for i in range(leaves)]
    while len(level) > 1:
        level = [level[i] + level[i + 1] if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    level[0].backward()
    return time.perf_counter() - start


def model_depth(config, params: dict, batch: list, limited: bool) -> tuple:
    """(graph depth, what one more layer adds or None, about how many nodes a step's graph
    has) for the model: the depth of the longest document's graph; for an engine whose
    backward has a depth limit (`limited`), also what one more layer adds."""
    tokens, counted = max(batch, key=len), []
    depth = graph_depth(config, params, tokens, counted)
    nodes = round(counted[0] * sum(len(doc) for doc in batch) / len(tokens))  # about: the longest document's, scaled
    if not limited:
        return depth, None, nodes
    last = f"layer{config.n_layer - 1}."
    deeper_params = dict(params)
    for name in params:
        if name.startswith(last):  # the last layer's weights, again
            deeper_params[name.replace(last, f"layer{config.n_layer}.")] = params[name]
    deeper = dataclasses.replace(config, n_layer=config.n_layer + 1)
    return depth, graph_depth(deeper, deeper_params, tokens) - depth, nodes
