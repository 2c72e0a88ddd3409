"""Finite differences as a third witness, needing no torch.

Oracles: torch's float64 autograd (for the step size and tolerance the module chose), and a
gradient made wrong on purpose (the check must fail on it).
"""
from __future__ import annotations

import random

import torch

from compare import compare_step
from compare.engine.runner import STEP_SIZE, finite_differences, sample_entries
from compare.judge.fd import check_finite_differences
from compare.judge.tolerances import FD_TOLERANCE as TOLERANCE
from compare.step.documents import ALPHABET, given_documents
from compare.step.scalar import ScalarSide
from compare.step.torch_side import TorchSide
from compare.step.weights import dense_weights
from microgpt_scalar.config import get_config, param_shapes
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam

DOCS = ["jacqueline", "fitzgerald"]


def setup():
    weights = dense_weights(get_config(), ALPHABET, seed=7)
    batch = given_documents(DOCS).batch(0)
    return weights, batch


def test_finite_differences_agree_with_the_scalar_engine_gradients():
    report = compare_step(docs=DOCS, fd=9)
    check = report.finite_differences
    assert check.agrees and len(check.entries) == 9
    assert {entry.name for entry in check.entries} == {name for name, _ in param_shapes(get_config())}


def test_finite_differences_match_torch_autograd_within_their_tolerance():
    """The measurement behind STEP_SIZE and TOLERANCE, repeated in small: the estimates of
    the scalar engine's loss against gradients torch computed on its own."""
    weights, batch = setup()
    torch_grads = TorchSide(weights, torch.float64, "cpu").step(batch, 0).grads
    check = check_finite_differences(finite_differences(ScalarSide(weights, Value, Adam), batch, 18, seed=3),
                                     torch_grads)
    worst = max(abs(e.estimate - e.autograd) for e in check.entries)
    assert check.agrees
    assert worst < TOLERANCE.atol / 10  # the margin the module's docstring claims
    assert STEP_SIZE == 1e-5


def test_finite_differences_fail_on_a_wrong_gradient():
    weights, batch = setup()
    side = ScalarSide(weights, Value, Adam)
    grads = side.step(batch, 0).grads
    entries = sample_entries({name: (len(rows), len(rows[0])) for name, rows in grads.items()}, 3, random.Random(0))
    name, r, c = entries[2]  # lm_head: a gradient of 1e-2 or so
    wrong = {n: [row[:] for row in rows] for n, rows in grads.items()}
    wrong[name][r][c] *= 1.001
    check = check_finite_differences(finite_differences(ScalarSide(weights, Value, Adam), batch, 3, seed=0), wrong)
    assert [entry.agrees for entry in check.entries] == [True, True, False]


def test_the_engines_side_sends_estimates_and_the_checker_judges_them():
    """The estimates carry no verdict and no gradient of the engine's: the checker judges each
    against the step's own gradients, so the same estimates pass or fail with them."""
    weights, batch = setup()
    grads = ScalarSide(weights, Value, Adam).step(batch, 0).grads
    estimates = finite_differences(ScalarSide(weights, Value, Adam), batch, 2, seed=0)
    assert all(set(entry) == {"name", "index", "estimate"} for entry in estimates.entries)
    assert check_finite_differences(estimates, grads).agrees
    name, (r, c) = estimates.entries[1]["name"], estimates.entries[1]["index"]
    grads[name][r][c] += 1e-6
    assert [entry.agrees for entry in check_finite_differences(estimates, grads).entries] == [True, False]


def test_finite_differences_catch_an_injected_fault_without_torch():
    report = compare_step(docs=DOCS, fd=3, inject="mul-grad")
    assert not report.finite_differences.agrees


def test_sampling_takes_every_tensor_in_turn():
    shapes = dict(param_shapes(get_config()))
    picks = sample_entries(shapes, 20, random.Random(1))
    assert [name for name, _, _ in picks[:9]] == list(shapes)
    assert len(set(picks)) == 20
