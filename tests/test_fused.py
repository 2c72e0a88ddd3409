"""The fused engine against the per-op engine, the oracle: on real training steps the loss and
every parameter gradient agree bit for bit, and the training logs and samples are the same;
and the comparison does catch a fused backward that is wrong by a single rounding.

    pytest tests/test_fused.py
"""
from __future__ import annotations

import math
import random
import struct

import pytest

from microgpt_scalar.config import get_config, num_params
from microgpt_scalar.data import load_docs
from microgpt_scalar.engine import Value, topological_order
from microgpt_scalar.fused import (FusedDot, FusedGPT, FusedValue, LinearInput, LinearRow, Product, Quotient,
                                   ReluSquared, ShiftedExp, Sum2, SumOf, Unary)
from microgpt_scalar.model import GPT
from microgpt_scalar.optim import learning_rate_at
from microgpt_scalar.train import forward_loss, sample, start_run, train_step

PER_OP, FUSED = (Value, GPT), (FusedValue, FusedGPT)  # an engine: its value class and the model's pieces
CONFIGS = {
    "microgpt": get_config("microgpt"),
    "microgpt-v2": get_config("microgpt-v2"),
    "microgpt-n_layer2": get_config("microgpt", n_layer=2),  # layer 1 attends over layer 0's outputs
}
# Under the microgpt preset attn_wo and mlp_fc2 start at zero, so at step 0 the gradients of
# attn_wq/wk/wv and mlp_fc1 are zero in any engine; from step 1 on they are not (two steps
# cover both, and the optimizer's update between them).
STEPS = 2
LOG_STEPS = 5
SAMPLES = 3


@pytest.fixture(scope="module")
def docs(names_path):
    return load_docs(names_path)


def same_bits(x, y) -> bool:
    """Equal as doubles, down to the sign of a zero (== alone calls 0.0 and -0.0 equal)."""
    return struct.pack("<d", x) == struct.pack("<d", y)


def gradient_mismatches(reference, candidate) -> list[str]:
    """'name[r][c]: reference != candidate' for every parameter whose gradient differs."""
    found = []
    for name, matrix in reference.state_dict.items():
        for r, (row, other_row) in enumerate(zip(matrix, candidate.state_dict[name])):
            for c, (p, q) in enumerate(zip(row, other_row)):
                if not same_bits(p.grad, q.grad):
                    found.append(f"{name}[{r}][{c}]: {p.grad!r} != {q.grad!r}")
    return found


def compare_training(docs, config, steps: int) -> dict:
    """Train the per-op and the fused engine side by side from the reference start, asserting
    after each backward that the losses and all gradients agree bit for bit.

    Returns, per parameter matrix, how many non-zero gradients were compared over all steps.
    """
    per_op = start_run(docs, config, 42, Value)
    fused = start_run(docs, config, 42, FusedValue)
    nonzero = {name: 0 for name in per_op[2].state_dict}
    for step in range(steps):
        losses = []
        for run_docs, tokenizer, model, _, _ in (per_op, fused):
            loss = forward_loss(model, tokenizer.encode(run_docs[step]))
            loss.backward()
            losses.append(loss.data)
        assert same_bits(*losses), f"step {step}: loss {losses[0]!r} (per-op) != {losses[1]!r} (fused)"
        mismatches = gradient_mismatches(per_op[2], fused[2])
        assert not mismatches, (f"step {step}: {len(mismatches)} gradient(s) differ (per-op != fused), "
                                f"first: {mismatches[:3]}")
        for name, matrix in per_op[2].state_dict.items():
            nonzero[name] += sum(p.grad != 0 for row in matrix for p in row)
        for _, _, model, optimizer, _ in (per_op, fused):
            optimizer.step(learning_rate_at(step, config), step)
    return nonzero


@pytest.mark.parametrize("config_name", CONFIGS)
def test_gradients_equal_per_op_engine_bit_for_bit(docs, config_name):
    config = CONFIGS[config_name]
    nonzero = compare_training(docs, config, STEPS)
    # Equal zeros prove nothing: every matrix must have had non-zero gradients to compare,
    # and most gradients were (measured: 70% to 89% over these steps).
    assert all(count > 0 for count in nonzero.values()), nonzero
    assert sum(nonzero.values()) > 0.5 * STEPS * num_params(config), nonzero


@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_training_log_and_samples_equal_per_op_engine(docs, preset):
    outputs = []
    for value_cls in (Value, FusedValue):
        run_docs, tokenizer, model, optimizer, rng = start_run(docs, get_config(preset), 42, value_cls)
        log = []
        for step in range(LOG_STEPS):
            loss = train_step(model, optimizer, tokenizer.encode(run_docs[step]), step)
            log.append(f"step {step + 1:4d} / {model.config.num_steps:4d} | loss {loss:.4f} ({loss.hex()})")
        names = [sample(model, tokenizer, rng) for _ in range(SAMPLES)]
        outputs.append((log, names))
    assert outputs[0] == outputs[1]


def off_by_one_rounding(self):
    """A FusedDot backward that is right except that the first term's contribution to a[0]
    is one unit in the last place too large."""
    grad = 0 + self.grad
    a, b = self._local_grads
    for j in range(len(a) - 1, -1, -1):
        contribution = b[j].data * grad
        a[j].grad += math.nextafter(contribution, math.inf) if j == 0 else contribution
        b[j].grad += a[j].data * grad


def test_comparison_catches_a_backward_off_by_one_rounding(docs, monkeypatch):
    monkeypatch.setattr(FusedDot, "_backward", off_by_one_rounding)  # LinearRow's too
    with pytest.raises(AssertionError, match=r"gradient\(s\) differ"):
        compare_training(docs, CONFIGS["microgpt-v2"], 1)


def nudged(backward, target_of):
    """`backward`, then the gradient of one child made one unit in the last place larger."""
    def wrong_backward(self):
        backward(self)
        target = target_of(self)
        target.grad = math.nextafter(target.grad, math.inf)
    return wrong_backward


NODE_KINDS = {  # each kind of node with a backward of its own -> the child whose gradient is nudged
    Unary: lambda node: node._children[0],
    Sum2: lambda node: node._children[1],
    Product: lambda node: node._children[1],
    FusedDot: lambda node: node._local_grads[1][0],
    LinearRow: lambda node: node._local_grads[0][0],  # a weight: the row's only child is LinearInput
    ReluSquared: lambda node: node._children[0],
    ShiftedExp: lambda node: node._children[0],
    SumOf: lambda node: node._children[0],
    Quotient: lambda node: node._children[1],
}


@pytest.mark.parametrize("kind", NODE_KINDS, ids=lambda kind: kind.__name__)
def test_comparison_catches_an_off_by_one_rounding_in_any_kind_of_node(docs, monkeypatch, kind):
    monkeypatch.setattr(kind, "_backward", nudged(kind._backward, NODE_KINDS[kind]))
    config = CONFIGS["microgpt" if kind is ReluSquared else "microgpt-v2"]  # v2's activation is relu
    with pytest.raises(AssertionError, match=r"gradient\(s\) differ"):
        compare_training(docs, config, 2)


# --- small graphs: repeated entries, the one place the order of the terms shows ---

def repeated_entries_graph(engine, seed: int):
    """Two Values repeated across a dot product's entries and also used elsewhere, so their
    gradients sum many terms whose order changes the rounding."""
    value_cls, dot = engine[0], engine[1].dot
    rng = random.Random(seed)
    x, y = value_cls(rng.uniform(-1, 1)), value_cls(rng.uniform(-1, 1))
    b = [value_cls(rng.uniform(-1, 1)) for _ in range(12)]
    a = [x, y, x, x, y, x, y, y, x, x, y, x]
    out = (x * 3.7 + y * 0.3) * dot(a, b) + dot(b, a).exp() + dot([x, y], [x, y])
    out.backward()
    return out.data, [v.grad for v in [x, y, *b]]


@pytest.mark.parametrize("seed", range(5))
def test_repeated_entries_equal_per_op_engine_bit_for_bit(seed):
    value, grads = repeated_entries_graph(PER_OP, seed)
    fused_value, fused_grads = repeated_entries_graph(FUSED, seed)
    assert same_bits(value, fused_value)
    assert all(same_bits(g, h) for g, h in zip(grads, fused_grads)), (grads, fused_grads)


def first_term_first(self):
    """A FusedDot backward in the wrong order: the per-op chain reaches the last term first."""
    grad = 0 + self.grad
    a, b = self._local_grads
    for a_j, b_j in zip(a, b):
        a_j.grad += b_j.data * grad
        b_j.grad += a_j.data * grad


def test_comparison_catches_a_backward_in_the_wrong_order(monkeypatch):
    expected = [repeated_entries_graph(PER_OP, seed)[1] for seed in range(5)]
    monkeypatch.setattr(FusedDot, "_backward", first_term_first)
    got = [repeated_entries_graph(FUSED, seed)[1] for seed in range(5)]
    assert any(not all(same_bits(g, h) for g, h in zip(e, f)) for e, f in zip(expected, got))


# --- small graphs: linear layers and softmax used in ways the model does not ---

def layer_graph(engine, seed: int, computed_weights: bool):
    """x computed from two leaves (so x's entries share a graph), a linear layer whose rows
    are used out of order and one not at all, and a softmax whose outputs are used out of
    order, one twice and one not at all. With `computed_weights`, one weight is a node."""
    value_cls, linear, softmax = engine[0], engine[1].linear, engine[1].softmax
    rng = random.Random(seed)
    u, v = value_cls(rng.uniform(-1, 1)), value_cls(rng.uniform(-1, 1))
    x = [u * rng.uniform(-1, 1) + v * rng.uniform(-1, 1) for _ in range(5)]
    w = [[value_cls(rng.uniform(-1, 1)) for _ in range(5)] for _ in range(4)]
    if computed_weights:
        w[2][3] = u * v
    y = linear(x, w)
    probs = softmax(y[:3] + [x[0] * 0.5])
    out = probs[2] * y[3] + probs[0] * 1.5 + probs[2].log() + y[1] * y[0]
    out.backward()
    leaves = [u, v] + [p for row in w for p in row if not p._children]
    return out.data, [p.data for p in probs], [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("computed_weights", [False, True], ids=["weights-leaves", "a-weight-computed"])
@pytest.mark.parametrize("seed", range(5))
def test_linear_and_softmax_equal_per_op_engine_bit_for_bit(seed, computed_weights):
    value, probs, grads = layer_graph(PER_OP, seed, computed_weights)
    fused_value, fused_probs, fused_grads = layer_graph(FUSED, seed, computed_weights)
    assert same_bits(value, fused_value)
    assert all(same_bits(p, q) for p, q in zip(probs, fused_probs)), (probs, fused_probs)
    assert len(grads) == len(fused_grads) and sum(g != 0 for g in grads) > len(grads) // 2
    assert all(same_bits(g, h) for g, h in zip(grads, fused_grads)), (grads, fused_grads)


def test_a_computed_weight_takes_the_general_path():
    """A weight with a graph of its own must be walked: its layer is made of FusedDots, and
    the gradient reaches the leaf under the weight."""
    x, w = [FusedValue(1.0) + 1], [[FusedValue(2.0)], [FusedValue(3.0)]]
    assert {type(y) for y in FusedGPT.linear(x, w)} == {LinearRow}
    weight_leaf = FusedValue(3.0)
    (y,) = FusedGPT.linear(x, [[weight_leaf * 1]])
    assert type(y) is FusedDot
    y.backward()
    assert weight_leaf.grad == 2.0  # x[0] * 1


def test_comparison_catches_rows_that_hide_their_input(monkeypatch):
    """A layer whose rows leave x out of the walk: x's own graph never gets a gradient."""
    expected = [layer_graph(PER_OP, seed, False)[2] for seed in range(3)]
    original = LinearInput.__init__

    def without_children(self, x):
        original(self, x)
        self._children = ()

    monkeypatch.setattr(LinearInput, "__init__", without_children)
    got = [layer_graph(FUSED, seed, False)[2] for seed in range(3)]
    assert any(not all(same_bits(g, h) for g, h in zip(e, f)) for e, f in zip(expected, got))


def test_every_node_of_a_fused_step_is_fused(docs):
    run_docs, tokenizer, model, _, _ = start_run(docs, CONFIGS["microgpt"], 42, FusedValue)
    nodes = topological_order(forward_loss(model, tokenizer.encode(run_docs[0])))
    assert {type(node) for node in nodes if not node._children} == {FusedValue}  # the parameters
    assert {type(node) for node in nodes if node._children} == {
        Unary, Sum2, Product, FusedDot, LinearRow, LinearInput, ReluSquared, ShiftedExp, SumOf, Quotient}
    x, y = FusedValue(2.0), FusedValue(-3.0)
    results = [x + y, x + 1, 1 + x, x - y, 1 - x, x * y, 2 * x, x / y, 1 / x, -x, x**2, x.exp(), x.log(), y.relu()]
    assert all(isinstance(r, FusedValue) for r in results)
