"""torch.optim.Adam and LambdaLR against the scalar Adam and learning_rate_at."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from microgpt_scalar.config import get_config
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam, learning_rate_at
from microgpt_torch.model import GPT
from microgpt_torch.optim import make_optimizer, make_scheduler
from microgpt_torch.testing import assert_close, single_thread

PRESETS = ["microgpt", "microgpt-v2"]
# torch's Adam computes (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) where the scalar code has
# lr * (m / bc1) / ((v / bc2) ** 0.5 + eps), and updates m by lerp: each step may differ in
# the last bit. Measured over 20 steps on weights near 0.1: worst 1.1e-16 (one ulp of 0.1 is
# 1.4e-17). A real error (a wrong beta, a missed bias correction) moves weights by 1e-4 or more.
ADAM_ATOL, ADAM_RTOL = 1e-14, 0.0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    with single_thread():
        yield


@pytest.mark.parametrize("preset", PRESETS)
def test_learning_rate_equals_scalar_learning_rate_at_exactly(preset):
    config = get_config(preset)
    model = GPT(config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    for step in range(config.num_steps):
        assert optimizer.param_groups[0]["lr"] == learning_rate_at(step, config), f"step {step}"
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("preset", PRESETS)
def test_resumed_scheduler_starts_at_the_scalar_learning_rate(preset):
    config = get_config(preset)
    optimizer = make_optimizer(GPT(config), config)
    make_scheduler(optimizer, config, step=137)
    assert optimizer.param_groups[0]["lr"] == learning_rate_at(137, config)
    assert learning_rate_at(137, config) != learning_rate_at(0, config)  # not vacuous


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
    scheduler = make_scheduler(optimizer, torch_config)
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
        optimizer.step()
        scheduler.step()
    return model.scalar_params(), scalar.params_as_floats()


@pytest.mark.parametrize("preset", PRESETS)
def test_adam_updates_match_scalar_adam_float64(preset):
    config = get_config(preset)
    got, expected = run_both_adams(config, config)
    for name in expected:
        assert_close(f"{name} after Adam", got[name], expected[name], ADAM_ATOL, ADAM_RTOL)


def test_adam_comparison_fails_with_a_wrong_beta2():
    config = get_config("microgpt")
    got, expected = run_both_adams(config, dataclasses.replace(config, beta2=0.99), steps=5)
    with pytest.raises(AssertionError, match="wte after Adam"):
        assert_close("wte after Adam", got["wte"], expected["wte"], ADAM_ATOL, ADAM_RTOL)
