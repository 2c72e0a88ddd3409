"""assert_close, the comparison every other test relies on, fed wrong inputs."""
from __future__ import annotations

import math

import pytest
import torch

from microgpt_scalar.config import get_config
from microgpt_torch.model import GPT
from microgpt_torch.testing import assert_close, assert_results_close, forward_backward


def test_equal_values_pass_including_nan_and_inf():
    assert_close("same", [[1.0, math.nan], [math.inf, -2.0]], [[1.0, math.nan], [math.inf, -2.0]], 0.0, 0.0)
    assert_close("within", torch.tensor([1.0 + 1e-13]), [1.0], 1e-12, 0.0)


def test_failure_names_the_tensor_shape_worst_difference_and_index():
    expected = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    got = [[0.0, 1.0, 2.0], [3.0, 4.5, 5.0]]
    with pytest.raises(AssertionError, match=r"^layer0.q \(shape \[2, 3\]\): worst \|diff\| 0.5 \(relative 0.125\) "
                                             r"at index \[1, 1\]: got 4.5, expected 4.0"):
        assert_close("layer0.q", got, expected, 1e-12, 1e-12)


@pytest.mark.parametrize("got, expected, message", [
    ([1.0, 2.0], [1.0, 2.0, 3.0], r"shape \[2\], expected \[3\]"),
    ([math.nan], [1.0], r"worst \|diff\| inf"),
    ([1.0], [math.nan], r"worst \|diff\| inf"),
    ([math.inf], [-math.inf], r"worst \|diff\| inf"),
    ([[1.0], [1.0, 2.0]], [[1.0]], r"2 rows, expected 1"),
    ([[1.0], [1.0, 2.5]], [[1.0], [1.0, 2.0]], r"^x\[1\] \(shape \[2\]\)"),
])
def test_wrong_inputs_fail(got, expected, message):
    with pytest.raises(AssertionError, match=message):
        assert_close("x", got, expected, 1e-6, 1e-6)


def test_relative_tolerance_scales_with_the_expected_value():
    assert_close("big", [1e6 + 0.5], [1e6], 0.0, 1e-6)
    with pytest.raises(AssertionError, match="relative 5e-07"):
        assert_close("big", [1e6 + 0.5], [1e6], 0.0, 1e-7)


def test_results_comparison_names_the_gradient_that_differs():
    """One weight moved: the logits differ, and with the logits and loss put back, a gradient."""
    config = get_config("microgpt", vocab_size=5)
    model = GPT(config).double()
    idx, targets = torch.tensor([[4, 1, 2]]), torch.tensor([[1, 2, 4]])
    same = forward_backward(model, idx, targets)
    assert_results_close("again", forward_backward(model, idx, targets), same, 0.0, 0.0)
    with torch.no_grad():
        model.layers[0].mlp_fc2.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="moved logits"):
        assert_results_close("moved", forward_backward(model, idx, targets), same, 1e-12, 0.0)
    moved = forward_backward(model, idx, targets)
    with pytest.raises(AssertionError, match=r"moved \S+ grad"):
        assert_results_close("moved", (same[0], same[1], moved[2]), same, 1e-12, 0.0)
