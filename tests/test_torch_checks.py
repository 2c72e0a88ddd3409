"""The comparisons the tests of both engines rely on (tests/torch_checks.py), fed right and wrong inputs."""
from __future__ import annotations

import math

import pytest
import torch
from torch_checks import assert_float64_close, assert_results_close, forward_backward

from microgpt_scalar.config import get_config
from microgpt_torch.model import GPT


def test_the_absolute_tolerance_passes_what_is_inside_it_and_fails_what_is_just_outside():
    assert_float64_close("within", torch.tensor([1.0 + 1e-13, math.inf], dtype=torch.float64), [1.0, math.inf],
                         1e-12, 0.0)
    with pytest.raises(AssertionError, match=r"^outside: (.|\n)*at index \(0,\)"):
        assert_float64_close("outside", [1.0 + 2e-12, math.inf], [1.0, math.inf], 1e-12, 0.0)
    with pytest.raises(AssertionError, match=r"^float32: "):  # compared in float64: float32's rounding shows
        assert_float64_close("float32", torch.tensor([0.1], dtype=torch.float32), [0.1], 1e-12, 0.0)


def test_failure_names_the_tensor_the_worst_difference_and_its_index():
    expected = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    got = [[0.0, 1.0, 2.0], [3.0, 4.5, 5.0]]
    with pytest.raises(AssertionError, match=r"^layer0.q: Tensor-likes are not close!(.|\n)*"
                                             r"Greatest absolute difference: 0.5 at index \(1, 1\)"):
        assert_float64_close("layer0.q", got, expected, 1e-12, 1e-12)


@pytest.mark.parametrize("got, expected, message", [
    ([1.0, 2.0], [1.0, 2.0, 3.0], r"^x: (.|\n)*shape"),
    ([math.nan], [1.0], r"^x: (.|\n)*Mismatched elements: 1 / 1"),
    ([1.0], [math.nan], r"^x: (.|\n)*Mismatched elements: 1 / 1"),
    ([math.inf], [-math.inf], r"^x: (.|\n)*Mismatched elements: 1 / 1"),
])
def test_wrong_inputs_fail(got, expected, message):
    with pytest.raises(AssertionError, match=message):
        assert_float64_close("x", got, expected, 1e-6, 1e-6)


def test_relative_tolerance_scales_with_the_expected_value_alone():
    """|got - expected| <= atol + rtol * |expected|: the rule compare and certify use too."""
    assert_float64_close("big", [1e6 + 0.5], [1e6], 0.0, 5e-7)
    with pytest.raises(AssertionError, match="big"):
        assert_float64_close("big", [1e6 + 0.5], [1e6], 0.0, 4.9e-7)
    with pytest.raises(AssertionError, match="small"):  # against |expected|, not the larger of the two
        assert_float64_close("small", [1.0], [0.5], 0.0, 0.99)


def test_results_comparison_names_the_gradient_that_differs():
    """One weight moved: the logits differ, and with the logits and loss put back, a gradient."""
    config = get_config("microgpt", vocab_size=5)
    model = GPT(config).double()
    idx, targets = torch.tensor([[4, 1, 2]]), torch.tensor([[1, 2, 4]])
    same = forward_backward(model, idx, targets)
    assert_results_close("again", forward_backward(model, idx, targets), same, 0.0, 0.0)
    with torch.no_grad():
        model.layers[0].mlp.fc2.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="moved logits"):
        assert_results_close("moved", forward_backward(model, idx, targets), same, 1e-12, 0.0)
    moved = forward_backward(model, idx, targets)
    with pytest.raises(AssertionError, match=r"moved \S+ grad"):
        assert_results_close("moved", (same[0], same[1], moved[2]), same, 1e-12, 0.0)
