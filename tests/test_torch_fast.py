"""The trainer's models (microgpt_torch/fast.py) against the readable GPT they are built from:
the same parameters under the same names and in the same order, state_dicts that load across
the three, and the same loss and gradients within float64 rounding."""
from __future__ import annotations

import random

import pytest
import torch
from torch_checks import assert_results_close, forward_backward

from microgpt_scalar.config import get_config, num_params, param_shapes
from microgpt_scalar.data import Tokenizer, default_data_path, load_docs
from microgpt_torch.fast import BatchedGPT, FusedGPT
from microgpt_torch.model import GPT, scalar_name
from microgpt_torch.train import make_batch

FAST_MODELS = {"fused": FusedGPT, "batched": BatchedGPT}
CONFIGS = {
    "microgpt": get_config("microgpt"),  # relu², 8 positions: BatchedGPT's own MLP and block-diagonal attention
    "microgpt-v2": get_config("microgpt-v2"),  # plain relu, 16 positions: the readable MLP, torch's attention
    "deeper": get_config("microgpt", n_layer=3, n_head=2),
}
# Torch's fused kernels add and round in another order than the readable lines; measured on
# these weights and batches (logits up to |33|), the worst difference of a logit, the loss or
# a gradient was 3.4e-14, at most 1.9% of the budget atol + rtol * |expected|, which is still
# far below what a wrong piece (a missing mask, a wrong scale, a lost gradient) changes.
ATOL, RTOL = 1e-12, 1e-12


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def batch_of_names():
    """(tokenizer, 24 names of different lengths): padded batches, some longer than 8 positions."""
    docs = load_docs(default_data_path())
    return Tokenizer.from_docs(docs), docs[2000:2024]


def random_params(config, seed: int) -> dict:
    """gauss(0, 0.3) everywhere, so that no gradient is zero by construction."""
    rng = random.Random(seed)
    return {name: [[rng.gauss(0, 0.3) for _ in range(n_in)] for _ in range(n_out)]
            for name, (n_out, n_in) in param_shapes(config)}


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("kind", list(FAST_MODELS))
def test_the_parameters_are_the_readable_models_names_order_and_draws(kind, config_name):
    """Built from one seed, a fast model holds the readable model's parameters: the swapped
    pieces took over the readable ones' weights and made none of their own."""
    config = CONFIGS[config_name]
    readable = GPT(config, torch.Generator().manual_seed(4))
    fast = FAST_MODELS[kind](config, torch.Generator().manual_seed(4))
    names = [name for name, _ in fast.named_parameters()]
    assert names == [name for name, _ in readable.named_parameters()]
    assert [scalar_name(name) for name in names] == [name for name, _ in param_shapes(config)]  # the flat scalar order
    for (name, param), readable_param in zip(fast.named_parameters(), readable.parameters()):
        assert torch.equal(param, readable_param), name
    assert sum(p.numel() for p in fast.parameters()) == num_params(config)


@pytest.mark.parametrize("kind", list(FAST_MODELS))
def test_state_dicts_load_across_the_three_models(kind):
    config = CONFIGS["microgpt"]
    readable = GPT(config, torch.Generator().manual_seed(1)).double()
    fast = FAST_MODELS[kind](config, torch.Generator().manual_seed(2)).double()
    assert fast.scalar_params() != readable.scalar_params()  # other weights, until loaded
    fast.load_state_dict(readable.state_dict())  # strict: every name on both sides
    assert fast.scalar_params() == readable.scalar_params()
    other = FAST_MODELS["batched" if kind == "fused" else "fused"](config, torch.Generator().manual_seed(3)).double()
    other.load_state_dict(fast.state_dict())
    back = GPT(config, torch.Generator().manual_seed(5)).double()
    back.load_state_dict(other.state_dict())
    assert back.scalar_params() == readable.scalar_params()


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("kind", list(FAST_MODELS))
def test_loss_and_gradients_equal_the_readable_models_in_float64(batch_of_names, kind, config_name):
    config = CONFIGS[config_name]
    tokenizer, docs = batch_of_names
    params = random_params(config, seed=9)
    idx, targets = make_batch([tokenizer.encode(doc) for doc in docs], config.block_size)
    expected = forward_backward(GPT.from_scalar_params(config, params), idx, targets)
    got = forward_backward(FAST_MODELS[kind].from_scalar_params(config, params), idx, targets)
    assert_results_close(kind, got, expected, ATOL, RTOL)
    # The swapped pieces do run: the fast model's rounding is not the readable model's.
    assert not torch.equal(got[0], expected[0]) or got[2] != expected[2]
