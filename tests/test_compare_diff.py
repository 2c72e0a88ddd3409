"""The comparison's arithmetic: worst differences and where, and the first traced stage that differs.

Oracle: inputs made by hand, with the answer known, and the same inputs made wrong on purpose.
"""
from __future__ import annotations

import math

import pytest

from compare.diff import compare_tensor
from compare.tolerances import TOLERANCES, Tolerance
from compare.trace import first_divergence

TIGHT = Tolerance(atol=1e-12, rtol=1e-9)


def test_identical_tensors_agree_and_count_their_non_zero_entries():
    rows = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.0]]
    d = compare_tensor("w", rows, [row[:] for row in rows], TIGHT)
    assert d.agrees and (d.shape, d.checked, d.nonzero, d.max_abs, d.excess) == ([3, 2], 6, 4, 0.0, 0.0)


def test_a_wrong_entry_is_found_with_its_index_and_sizes():
    scalar = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.0]]
    torch_rows = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.001]]
    d = compare_tensor("w", scalar, torch_rows, TIGHT)
    assert not d.agrees
    assert d.max_abs_at == [2, 1] and math.isclose(d.max_abs, 0.001, rel_tol=1e-9)
    assert math.isclose(d.max_rel, 0.001 / 4.001, rel_tol=1e-9) and d.max_rel_at == [2, 1]


def test_relative_and_absolute_worst_can_sit_at_different_entries():
    d = compare_tensor("w", [1e-20, 10.0], [2e-20, 10.0 + 1e-12], TIGHT)
    assert d.max_rel_at == [0] and d.max_abs_at == [1] and d.agrees  # 1e-20 apart is within atol


def test_zero_against_non_zero_counts_as_checked_and_non_zero():
    d = compare_tensor("w", [0.0, 0.0], [0.0, 1e-3], TIGHT)
    assert d.nonzero == 1 and not d.agrees and d.max_rel == 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_never_agrees(bad):
    assert not compare_tensor("loss", bad, 1.0, TIGHT).agrees
    assert not compare_tensor("loss", bad, bad, TIGHT).agrees


def test_a_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compare_tensor("w", [[1.0, 2.0]], [[1.0], [2.0]], TIGHT)


def test_tolerance_is_met_at_its_edge_and_not_past_it():
    tol = Tolerance(atol=1e-3, rtol=0.0)
    assert compare_tensor("x", 1.0, 1.0 + 0.999e-3, tol).agrees
    assert not compare_tensor("x", 1.0, 1.0 + 1.001e-3, tol).agrees


def test_float32_tolerances_are_wider_than_float64():
    for kind in ("values", "gradients"):
        wide, tight = getattr(TOLERANCES["float32"], kind), getattr(TOLERANCES["float64"], kind)
        assert wide.atol > tight.atol and wide.rtol > tight.rtol


def trace(positions=3):
    """A two-stage trace: 'a' has 2 numbers per position, 'b' has position + 1 (like attention)."""
    return {"a": [[p, p + 0.5] for p in range(positions)], "b": [[0.25] * (p + 1) for p in range(positions)]}


def test_identical_traces_do_not_part():
    assert first_divergence([trace(), trace()], [trace(), trace()], ["a", "b"], TIGHT) is None


def test_traces_part_at_the_first_position_then_stage_in_computing_order():
    theirs = trace()
    theirs["b"][1][1] = 0.26  # position 1, stage b, entry 1
    theirs["a"][2][0] = 9.0  # later: position 2
    d = first_divergence([trace()], [theirs], ["a", "b"], TIGHT)
    assert (d.document, d.stage, d.position, d.index, d.scalar, d.torch) == (0, "b", 1, 1, 0.25, 0.26)


def test_traces_of_another_layout_are_an_error_not_a_difference():
    theirs = trace()
    theirs["a"][1].append(0.0)
    with pytest.raises(RuntimeError, match="2 numbers against 3"):
        first_divergence([trace()], [theirs], ["a", "b"], TIGHT)


def test_a_later_document_is_reported_with_its_index():
    theirs = trace()
    theirs["a"][0][1] = 0.75
    d = first_divergence([trace(), trace()], [trace(), theirs], ["a", "b"], TIGHT)
    assert (d.document, d.stage, d.position, d.index) == (1, "a", 0, 1)
