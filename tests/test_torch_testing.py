"""assert_close, the comparison every other test relies on, fed wrong inputs."""
from __future__ import annotations

import math

import pytest
import torch

from microgpt_torch.testing import assert_close


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
