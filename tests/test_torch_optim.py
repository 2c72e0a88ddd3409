"""torch.optim.Adam and set_learning_rate against the scalar Adam and learning_rate_at."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch_checks import assert_float64_close

from microgpt_scalar.config import get_config
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam, adam_moments, learning_rate_at, set_adam_moments
from microgpt_torch.model import GPT
from microgpt_torch.optim import adam_moments as torch_adam_moments
from microgpt_torch.optim import make_optimizer, set_adam_moments as torch_set_adam_moments, set_learning_rate

PRESETS = ["microgpt", "microgpt-v2"]
# torch's Adam computes (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) where the scalar code has
# lr * (m / bc1) / ((v / bc2) ** 0.5 + eps), and updates m by lerp: each step may differ in
# the last bit. Measured over 20 steps on weights near 0.1: worst 1.1e-16 (one ulp of 0.1 is
# 1.4e-17). A real error (a wrong beta, a missed bias correction) moves weights by 1e-4 or more.
ADAM_ATOL, ADAM_RTOL = 1e-14, 0.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


@pytest.mark.parametrize("preset", PRESETS)
def test_learning_rate_is_set_from_learning_rate_at_every_step(preset):
    config = get_config(preset)
    optimizer = make_optimizer(GPT(config), config)
    assert optimizer.param_groups[0]["lr"] == learning_rate_at(0, config)
    for step in (config.num_steps - 1, 137, 0, 1):  # any order: the rate depends on the step alone
        assert set_learning_rate(optimizer, step, config) == learning_rate_at(step, config)
        assert optimizer.param_groups[0]["lr"] == learning_rate_at(step, config), f"step {step}"
    assert learning_rate_at(137, config) != learning_rate_at(0, config)  # not vacuous


def test_learning_rate_held_as_a_tensor_is_filled_in_place():
    config = get_config()
    optimizer = torch.optim.Adam(GPT(config).parameters(), lr=torch.tensor(0.0, dtype=torch.float64))
    rate = optimizer.param_groups[0]["lr"]
    set_learning_rate(optimizer, 137, config)
    assert optimizer.param_groups[0]["lr"] is rate and rate.item() == learning_rate_at(137, config)


def test_schedule_matches_the_reference_formulas():
    """docs/reference.md: cosine lr * 0.5 * (1 + cos(pi * s / N)) for microgpt, linear lr * (1 - s / N) for v2."""
    assert learning_rate_at(250, get_config("microgpt")) == pytest.approx(0.5e-2, rel=1e-15)
    assert learning_rate_at(0, get_config("microgpt")) == 1e-2
    assert learning_rate_at(250, get_config("microgpt-v2")) == pytest.approx(0.75e-2, rel=1e-15)


@pytest.mark.parametrize("preset", PRESETS)
def test_adam_hyperparameters_come_from_the_config(preset):
    config = get_config(preset)
    group = make_optimizer(GPT(config), config).param_groups[0]
    assert (group["betas"], group["eps"]) == ((config.beta1, config.beta2), config.eps_adam)


def run_both_adams(config, torch_config, steps=20):
    """Feed both optimizers the same random gradients; return (torch params, scalar params)."""
    scalar = ScalarGPT(config, random.Random(0))
    init = random.Random(2)
    for p in scalar.parameters():  # no zeros: the microgpt preset starts two matrices at 0
        p.data = init.gauss(0, 0.1)
    model = GPT.from_scalar_params(config, scalar.params_as_floats())
    optimizer = make_optimizer(model, torch_config)
    scalar_adam = Adam(scalar.parameters(), config)
    rng = random.Random(1)
    for step in range(steps):
        grads = [rng.gauss(0, 0.01) if rng.random() < 0.8 else 0.0 for _ in scalar.parameters()]
        for p, g in zip(scalar.parameters(), grads):
            p.grad = g
        scalar_adam.step(learning_rate_at(step, config), step)
        flat = torch.tensor(grads, dtype=torch.float64)
        for p in model.parameters():
            p.grad, flat = flat[:p.numel()].view_as(p).clone(), flat[p.numel():]
        set_learning_rate(optimizer, step, torch_config)
        optimizer.step()
    return model.scalar_params(), scalar.params_as_floats()


@pytest.mark.parametrize("preset", PRESETS)
def test_adam_updates_match_scalar_adam_float64(preset):
    config = get_config(preset)
    got, expected = run_both_adams(config, config)
    for name in expected:
        assert_float64_close(f"{name} after Adam", got[name], expected[name], ADAM_ATOL, ADAM_RTOL)


def test_adam_comparison_fails_with_a_wrong_beta2():
    config = get_config("microgpt")
    got, expected = run_both_adams(config, dataclasses.replace(config, beta2=0.99), steps=5)
    with pytest.raises(AssertionError, match="wte after Adam"):
        assert_float64_close("wte after Adam", got["wte"], expected["wte"], ADAM_ATOL, ADAM_RTOL)


def test_scalar_adam_moments_round_trip_and_refuse_a_wrong_length():
    config = get_config()
    params = ScalarGPT(config, random.Random(0)).parameters()
    adam = Adam(params, config)
    m, v = [0.5] * len(params), [0.25] * len(params)
    set_adam_moments(adam, m, v)
    assert adam_moments(adam) == (m, v) and adam_moments(adam)[0] is not adam.m  # copies
    with pytest.raises(ValueError, match="moments for 4064 parameters"):
        set_adam_moments(adam, m[:-1], v)


def test_torch_adam_moments_restored_continue_exactly_as_an_unbroken_run():
    """Three steps, the state read out and loaded into a fresh optimizer, a fourth step: the
    same weights, bit for bit, as four steps in one optimizer (load_state_dict, no private state)."""
    config = get_config()
    torch.manual_seed(0)
    grads = [[torch.randn(p.shape, dtype=torch.float64) for p in GPT(config).parameters()] for _ in range(4)]

    def steps(model, optimizer, which):
        for step in which:
            for p, g in zip(model.parameters(), grads[step]):
                p.grad = g.clone()
            set_learning_rate(optimizer, step, config)
            optimizer.step()

    straight = GPT(config).double()
    straight_optimizer = make_optimizer(straight, config)
    assert torch_adam_moments(straight_optimizer) is None  # nothing before the first step
    steps(straight, straight_optimizer, range(3))
    step_count, m, v = torch_adam_moments(straight_optimizer)
    after_three = {name: t.clone() for name, t in straight.state_dict().items()}
    resumed = GPT(config).double()
    resumed.load_state_dict(after_three)
    resumed_optimizer = make_optimizer(resumed, config)
    torch_set_adam_moments(resumed_optimizer, step_count, m, v)
    steps(straight, straight_optimizer, [3])
    steps(resumed, resumed_optimizer, [3])
    assert step_count == 3
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    wrong = GPT(config).double()  # the check can fail: a step count off by one changes the bias correction
    wrong.load_state_dict(after_three)
    wrong_optimizer = make_optimizer(wrong, config)
    torch_set_adam_moments(wrong_optimizer, 2, m, v)
    steps(wrong, wrong_optimizer, [3])
    assert not torch.equal(wrong.lm_head.weight, resumed.lm_head.weight)
