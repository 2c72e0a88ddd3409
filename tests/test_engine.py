"""The scalar autograd engine against the seeds' worked examples, central finite differences,
torch in float64 (as micrograd's tests do) and the seeds' own recursive engine.

    pytest tests/test_engine.py
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
from contextlib import contextmanager

import pytest
import torch

from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value, topological_order
from microgpt_scalar.model import GPT
from microgpt_scalar.train import forward_loss

# Value computes a / b as a * b**-1, torch divides directly: the two may differ in the last
# bit or two of a double (measured: 1 ulp on these expressions, rel 2e-16). 1e-13 leaves room
# for a few such roundings to compound through an expression and nothing more.
TORCH_FORWARD_RTOL = 1e-13
# Gradients go through the same chain-rule products in both engines; measured worst rel
# difference 2e-15 here. 1e-12 still fails on any wrong local derivative by a factor of 1e12.
TORCH_GRAD_RTOL = 1e-12
TORCH_GRAD_ATOL = 1e-14  # for gradients that should be exactly zero (relu off, unused paths)
# Central differences with step H: truncation error ~ H**2 * |f'''| / 6 ~ 1e-12, rounding
# error ~ eps * |f| / H ~ 1e-10 for these O(1) expressions; measured worst rel 6e-10.
FD_STEP = 1e-6
FD_RTOL = 1e-6
FD_ATOL = 1e-8


# --- the seeds' engine, verbatim from chapter 3 (the oracle for order and accumulation) ---

class SeedValue:
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, SeedValue) else SeedValue(other)
        return SeedValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, SeedValue) else SeedValue(other)
        return SeedValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return SeedValue(self.data**other, (self,), (other * self.data**(other - 1),))

    def log(self):
        return SeedValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return SeedValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return SeedValue(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other**-1
    def __rtruediv__(self, other): return other * self**-1

    def backward(self):
        topo = seed_build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


def seed_build_topo(root) -> list:
    """The seeds' recursive depth-first `build_topo`, for any node with `_children`."""
    topo = []
    visited = set()

    def build_topo(v):
        if v not in visited:
            visited.add(v)
            for child in v._children:
                build_topo(child)
            topo.append(v)

    build_topo(root)
    return topo


@contextmanager
def recursion_limit(limit: int):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


# --- the seeds' worked examples ---

def test_seed_L_equals_d_times_f_walkthrough_all_grads():
    """Seed 003: e = a * b, d = e + c, L = d * f, every intermediate value and gradient."""
    a, b, c, f = Value(2.0), Value(-3.0), Value(10.0), Value(-2.0)
    e = a * b
    d = e + c
    L = d * f
    assert (e.data, d.data, L.data) == (-6.0, 4.0, -8.0)
    L.backward()
    grads = {"a": a.grad, "b": b.grad, "c": c.grad, "e": e.grad, "d": d.grad, "f": f.grad, "L": L.grad}
    assert grads == {"a": 6.0, "b": -4.0, "c": -2.0, "e": -2.0, "d": -2.0, "f": 4.0, "L": 1.0}


def test_seed_L_walkthrough_interpretation_matches_nudges():
    """Seed 003's interpretation: nudging a, b, c, f by 0.01 moves L by ~0.06, -0.04, -0.02, 0.04."""
    def L(a, b, c, f):
        return (a * b + c) * f

    base = L(2.0, -3.0, 10.0, -2.0)
    nudged = [L(2.01, -3.0, 10.0, -2.0), L(2.0, -2.99, 10.0, -2.0), L(2.0, -3.0, 10.01, -2.0), L(2.0, -3.0, 10.0, -1.99)]
    assert [n - base for n in nudged] == pytest.approx([0.06, -0.04, -0.02, 0.04], abs=1e-3)


def test_seed_relu_walkthrough_table():
    """Seed 001: f = relu(a * b + d) with a = 2, b = -3, d = 10; the table of every .grad."""
    a, b, d = Value(2.0), Value(-3.0), Value(10.0)
    c = a * b
    e = c + d
    f = e.relu()
    assert e.data == 4.0 and f.data == 4.0
    f.backward()
    table = {"a": a.grad, "b": b.grad, "c": c.grad, "d": d.grad, "e": e.grad, "f": f.grad}
    assert table == {"a": -3.0, "b": 2.0, "c": 1.0, "d": 1.0, "e": 1.0, "f": 1.0}


def test_seed_relu_walkthrough_finite_difference_verification():
    """Seed 001's check: f(a=2.001) = 3.997, so (3.997 - 4.0) / 0.001 = -3.0 = a.grad."""
    def f(a):
        return (Value(a) * Value(-3.0) + Value(10.0)).relu().data

    assert f(2.0) == 4.0
    assert f(2.001) == pytest.approx(3.997, abs=1e-12)
    slope = (f(2.001) - f(2.0)) / 0.001
    a = Value(2.0)
    (a * -3.0 + 10.0).relu().backward()
    assert slope == pytest.approx(-3.0, abs=1e-9)
    assert a.grad == pytest.approx(slope, abs=1e-9)


def test_seed_a_plus_a_gradient_is_two():
    """Seed 001: b = a + a with a = 3 gives b = 6 and db/da = 1 + 1 = 2 (a = 4 gives b = 8)."""
    a = Value(3.0)
    b = a + a
    b.backward()
    assert b.data == 6.0
    assert a.grad == 2
    assert (Value(4.0) + Value(4.0)).data - b.data == a.grad  # rate of change 8 - 6 = 2


def test_seed_chapter3_miniature_d_equals_c_plus_a():
    """Seed 004: c = a * b (6.0), d = c + a (8.0); d records (c, a), c records (a, b); the
    gradients of d.backward() are the central differences of d(a, b) = a * b + a."""
    a, b = Value(2.0), Value(3.0)
    c = a * b
    d = c + a
    assert (c.data, d.data) == (6.0, 8.0)
    assert d._children == (c, a) and d._local_grads == (1, 1)
    assert c._children == (a, b) and c._local_grads == (3.0, 2.0)
    d.backward()
    h = 1e-3  # d is bilinear, so the central difference is exact up to rounding
    dd_da = ((2.0 + h) * 3.0 + (2.0 + h) - ((2.0 - h) * 3.0 + (2.0 - h))) / (2 * h)
    dd_db = (2.0 * (3.0 + h) + 2.0 - (2.0 * (3.0 - h) + 2.0)) / (2 * h)
    assert a.grad == pytest.approx(dd_da, abs=1e-9)
    assert b.grad == pytest.approx(dd_db, abs=1e-9)


def test_seed_chapter3_multiplication_nudge():
    """Seed 004: a = 3, b = 5 gives 15; a nudged to 3.001 gives 15.005, a change of 0.001 * b,
    so the local gradient with respect to a is b."""
    a, b = Value(3.0), Value(5.0)
    c = a * b
    c.backward()
    assert c.data == 15.0
    assert (Value(3.001) * b).data == pytest.approx(15.005, abs=1e-12)
    assert a.grad == b.data == pytest.approx(((Value(3.001) * b).data - c.data) / 0.001, abs=1e-9)
    assert b.grad == a.data


def test_gradients_leak_into_the_next_step_unless_reset():
    """Seed 000: backward adds to .grad, so a second step's gradients land on the first's.
    Two forward passes from the same leaves without a reset give exactly twice the gradient;
    with `p.grad = 0` between them, the second is the first again."""
    def step(a, b, c, f):
        ((a * b + c) * f).backward()
        return [a.grad, b.grad, c.grad, f.grad]

    leaves = [Value(2.0), Value(-3.0), Value(10.0), Value(-2.0)]
    once = step(*leaves)
    leaked = step(*leaves)
    assert leaked == [2 * g for g in once]
    assert leaked != once
    for p in leaves:
        p.grad = 0  # the reference's reset
    assert step(*leaves) == once


def test_backward_twice_on_one_graph_accumulates_like_the_seed_engine():
    """Calling backward twice on the same graph, without reset, accumulates into every node,
    intermediates included, exactly as the seeds' engine does (leaf grads grow past double)."""
    def run(cls):
        a, b, c, f = cls(2.0), cls(-3.0), cls(10.0), cls(-2.0)
        L = (a * b + c) * f
        L.backward()
        first = [a.grad, b.grad, c.grad, f.grad]
        L.backward()
        return first, [a.grad, b.grad, c.grad, f.grad]

    (first, second), (seed_first, seed_second) = run(Value), run(SeedValue)
    assert first == seed_first
    assert second == seed_second
    assert all(abs(s) > abs(f) for s, f in zip(second, first))


# --- each operator against central differences and torch float64 ---

def log(x):
    return torch.log(x) if isinstance(x, torch.Tensor) else x.log() if hasattr(x, "log") else math.log(x)


def exp(x):
    return torch.exp(x) if isinstance(x, torch.Tensor) else x.exp() if hasattr(x, "exp") else math.exp(x)


def relu(x):
    return torch.relu(x) if isinstance(x, torch.Tensor) else x.relu() if hasattr(x, "relu") else max(0.0, x)


def micrograd_sanity(x):
    z = 2 * x + 2 + x
    q = relu(z) + z * x
    h = relu(z * z)
    return h + q + q * x


def micrograd_more_ops(a, b):
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + relu(b + a)
    d = d + 3 * d + relu(b - a)
    e = c - d
    f = e**2
    g = f / 2.0
    return g + 10.0 / f


OPERATOR_CASES = {  # name -> (expression, inputs); every input is a leaf whose gradient is checked
    "add": (lambda a, b: a + b, (1.3, -0.7)),
    "add_constant": (lambda a: a + 2.5, (1.3,)),
    "radd": (lambda a: 2.5 + a, (1.3,)),
    "sub": (lambda a, b: a - b, (1.3, -0.7)),
    "sub_constant": (lambda a: a - 2.5, (1.3,)),
    "rsub": (lambda a: 2.5 - a, (1.3,)),
    "mul": (lambda a, b: a * b, (1.3, -0.7)),
    "mul_constant": (lambda a: a * -1.5, (1.3,)),
    "rmul": (lambda a: -1.5 * a, (1.3,)),
    "truediv": (lambda a, b: a / b, (1.3, -0.7)),
    "truediv_constant": (lambda a: a / 4.0, (1.3,)),
    "rtruediv": (lambda a: 2.0 / a, (1.3,)),
    "neg": (lambda a: -a, (1.3,)),
    "pow_2": (lambda a: a**2, (-1.3,)),
    "pow_3": (lambda a: a**3, (-1.3,)),
    "pow_minus_1": (lambda a: a**-1, (-1.3,)),
    "pow_half": (lambda a: a**0.5, (1.3,)),
    "pow_minus_half": (lambda a: a**-0.5, (1.3,)),  # rmsnorm's scale
    "pow_1_5": (lambda a: a**1.5, (1.3,)),
    "log": (lambda a: log(a), (1.3,)),
    "exp": (lambda a: exp(a), (-0.7,)),
    "relu_positive": (lambda a: relu(a), (1.3,)),
    "relu_negative": (lambda a: relu(a), (-0.7,)),
    "relu_squared": (lambda a: relu(a) ** 2, (1.3,)),  # the microgpt activation
    "softmax_log": (lambda a, b: -log(exp(a - 0.5) / (exp(a - 0.5) + exp(b - 0.5))), (1.3, -0.7)),
    "same_leaf_twice": (lambda a: a * a + a / a, (1.3,)),
    "micrograd_sanity": (micrograd_sanity, (-4.0,)),
    "micrograd_more_ops": (micrograd_more_ops, (-4.0, 2.0)),
}


def engine_value_and_grads(fn, inputs):
    leaves = [Value(x) for x in inputs]
    out = fn(*leaves)
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


def torch_value_and_grads(fn, inputs):
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    out = fn(*leaves)
    out.backward()
    return out.item(), [leaf.grad.item() for leaf in leaves]


def central_differences(fn, inputs, h=FD_STEP):
    grads = []
    for i in range(len(inputs)):
        up, down = list(inputs), list(inputs)
        up[i] += h
        down[i] -= h
        grads.append((fn(*up) - fn(*down)) / (2 * h))
    return grads


def assert_all_close(what: str, got, want, rtol: float, atol: float) -> None:
    """Fail naming `what`, the worst absolute and relative difference and its index."""
    assert len(got) == len(want), f"{what}: {len(got)} values, expected {len(want)}"
    worst, worst_i = -1.0, None
    for i, (g, w) in enumerate(zip(got, want)):
        excess = abs(g - w) - (atol + rtol * abs(w))
        if excess > worst or not math.isfinite(g):
            worst, worst_i = excess, i
    if worst_i is not None and (worst > 0 or not math.isfinite(got[worst_i])):
        g, w = got[worst_i], want[worst_i]
        raise AssertionError(
            f"{what}: worst at index {worst_i}: got {g!r}, expected {w!r}, "
            f"abs diff {abs(g - w):.3g}, rel diff {abs(g - w) / max(abs(w), 1e-300):.3g} "
            f"(rtol {rtol}, atol {atol})"
        )


@pytest.mark.parametrize("name", OPERATOR_CASES)
def test_operator_gradients_match_central_finite_differences(name):
    fn, inputs = OPERATOR_CASES[name]
    value, grads = engine_value_and_grads(fn, inputs)
    assert value == pytest.approx(fn(*inputs), rel=1e-12)
    assert_all_close(f"{name} gradient", grads, central_differences(fn, inputs), FD_RTOL, FD_ATOL)


@pytest.mark.parametrize("name", OPERATOR_CASES)
def test_operator_values_and_gradients_match_torch_float64(name):
    fn, inputs = OPERATOR_CASES[name]
    value, grads = engine_value_and_grads(fn, inputs)
    torch_value, torch_grads = torch_value_and_grads(fn, inputs)
    assert_all_close(f"{name} value", [value], [torch_value], TORCH_FORWARD_RTOL, 0.0)
    assert_all_close(f"{name} gradient", grads, torch_grads, TORCH_GRAD_RTOL, TORCH_GRAD_ATOL)


def test_operator_checks_catch_a_wrong_local_gradient():
    """The helpers above fail on an engine whose multiplication swaps its local gradients."""
    class SwappedMul(Value):
        __slots__ = ()

        def __mul__(self, other):
            other = other if isinstance(other, Value) else Value(other)
            return Value(self.data * other.data, (self, other), (self.data, other.data))

    fn, inputs = OPERATOR_CASES["mul"]
    leaves = [SwappedMul(x) for x in inputs]
    fn(*leaves).backward()
    wrong = [leaf.grad for leaf in leaves]
    with pytest.raises(AssertionError, match=r"mul gradient: worst at index 0"):
        assert_all_close("mul gradient", wrong, central_differences(fn, inputs), FD_RTOL, FD_ATOL)
    with pytest.raises(AssertionError, match=r"mul gradient"):
        assert_all_close("mul gradient", wrong, torch_value_and_grads(fn, inputs)[1], TORCH_GRAD_RTOL, TORCH_GRAD_ATOL)
    with pytest.raises(AssertionError, match="nan"):
        assert_all_close("log value", [float("nan")], [1.0], TORCH_FORWARD_RTOL, 0.0)


def test_relu_has_zero_gradient_below_zero_and_one_above():
    """relu's local gradient is the step function of the seeds (not a smoothed one)."""
    for x, slope in ((-0.5, 0.0), (0.5, 1.0), (-1e-300, 0.0), (1e-300, 1.0)):
        v = Value(x)
        v.relu().backward()
        assert v.grad == slope, x


# --- backward without recursion, in the seeds' order ---

def test_backward_of_a_100000_addition_chain_does_not_recurse():
    """A chain far deeper than the recursion limit: the recursive build_topo cannot walk it."""
    x = Value(1.0)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    with recursion_limit(1000):
        y.backward()
        with pytest.raises(RecursionError):  # the check is real: recursion would have failed
            seed_build_topo(y)
    assert y.data == 100_001.0
    assert x.grad == 1


def test_backward_of_a_deep_model_graph_does_not_recurse():
    """n_layer=8, block_size=16, n_embd=32: a step's graph is ~2,700 nodes deep even at one or
    two positions (the depth comes from the layers); two positions keep the cache in play."""
    config = get_config(n_layer=8, block_size=16, n_embd=32, proj_init_std=0.02)
    model = GPT(config, random.Random(0))
    loss = forward_loss(model, [26, 0, 1])
    with recursion_limit(1000):
        loss.backward()
        with pytest.raises(RecursionError):
            seed_build_topo(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(math.isfinite(g) for g in grads)
    assert sum(g != 0 for g in grads) > len(grads) // 4


def test_topological_order_equals_seed_build_topo_on_small_graphs():
    a, b, c = Value(2.0), Value(-3.0), Value(10.0)
    shared = a * b
    graphs = [a, a + a, (shared + c) * shared, ((a * b + c).relu() + a.exp()) / (b - c) ** 2]
    for root in graphs:
        assert [id(n) for n in topological_order(root)] == [id(n) for n in seed_build_topo(root)]


def test_topological_order_equals_seed_build_topo_on_a_model_step_graph():
    config = get_config(proj_init_std=0.02)
    model = GPT(config, random.Random(42))
    loss = forward_loss(model, [26, 4, 12, 12, 0, 26])  # "emma"
    iterative = topological_order(loss)
    with recursion_limit(100_000):
        recursive = seed_build_topo(loss)
    assert len(iterative) == len(recursive) > 20_000
    mismatch = next((i for i, (p, q) in enumerate(zip(iterative, recursive)) if p is not q), None)
    assert mismatch is None, f"orders differ first at node {mismatch} of {len(recursive)}"


def test_topological_order_check_catches_a_different_valid_order():
    """A valid topological order that is not the seeds' DFS order (children visited in
    reverse) is told apart: the comparison is by order, not by set or validity."""
    a, b, c = Value(2.0), Value(-3.0), Value(10.0)
    root = a * b + c
    reference = seed_build_topo(root)
    reversed_children = []
    seen = set()

    def visit(v):
        if v not in seen:
            seen.add(v)
            for child in reversed(v._children):
                visit(child)
            reversed_children.append(v)

    visit(root)
    assert set(map(id, reversed_children)) == set(map(id, reference))
    assert [id(n) for n in reversed_children] != [id(n) for n in reference]


def test_model_loss_and_gradients_bit_identical_to_the_seed_engine():
    """The same model, step graph and parameters on the seeds' recursive engine: the loss and
    every parameter gradient agree to the last bit (the order of the sums is the seeds')."""
    config = get_config("microgpt-v2", n_layer=2)
    tokens = [26, 9, 0, 2, 10, 18, 14, 13, 26]  # "jackson"
    ours = GPT(config, random.Random(7))
    seed = GPT(dataclasses.replace(config), random.Random(7), value_cls=SeedValue)
    loss = forward_loss(ours, tokens)
    seed_loss = forward_loss(seed, tokens)
    loss.backward()
    with recursion_limit(100_000):
        seed_loss.backward()
    assert loss.data == seed_loss.data
    grads = [p.grad for p in ours.parameters()]
    seed_grads = [p.grad for p in seed.parameters()]
    assert sum(g != 0 for g in seed_grads) > len(seed_grads) // 2  # the comparison checks real numbers
    differing = [i for i, (g, s) in enumerate(zip(grads, seed_grads)) if g != s]
    assert not differing, f"{len(differing)} gradients differ, first at flat index {differing[0]}"
