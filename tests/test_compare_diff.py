"""The comparison's arithmetic: worst differences and where, and the first traced stage that differs.

Oracle: inputs made by hand, with the answer known, and the same inputs made wrong on purpose.
"""
from __future__ import annotations

import math
import random

import pytest

from compare.judge.diff import compare_tensor
from compare.judge.step import first_divergence
from compare.judge.tolerances import TOLERANCES, Tolerance

TIGHT = Tolerance(atol=1e-12, rtol=1e-9)


def test_identical_tensors_agree_and_count_their_non_zero_entries():
    rows = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.0]]
    d = compare_tensor("w", rows, [row[:] for row in rows], TIGHT)
    assert d.agrees and (d.shape, d.checked, d.nonzero, d.max_abs, d.excess) == ([3, 2], 6, 4, 0.0, 0.0)


def test_a_wrong_entry_is_found_with_its_index_and_sizes():
    scalar = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.0]]
    torch_rows = [[0.0, 1.5], [-2.0, 0.0], [3.0, 4.001]]
    d = compare_tensor("w", torch_rows, scalar, TIGHT)  # got from torch, expected from the scalar engine
    assert not d.agrees
    assert d.max_abs_at == [2, 1] and math.isclose(d.max_abs, 0.001, rel_tol=1e-9)
    assert math.isclose(d.max_rel, 0.001 / 4.0, rel_tol=1e-9) and d.max_rel_at == [2, 1]  # relative to |expected|


def test_the_rule_is_torch_isclose_with_the_scalar_engine_expected():
    """The oracle: torch.isclose(got, expected, rtol, atol), on pairs spread around every edge."""
    torch = pytest.importorskip("torch")
    rng = random.Random(0)
    tolerance = Tolerance(atol=1e-6, rtol=1e-3)
    expected = [rng.choice([0.0, 1e-9, 1.0, -3.0, 1e3]) for _ in range(2000)]
    got = [e + rng.choice([-1, 1]) * rng.uniform(0, 2) * tolerance.allowed(abs(e)) for e in expected]
    oracle = torch.isclose(torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                           rtol=tolerance.rtol, atol=tolerance.atol).tolist()
    ours = [compare_tensor("x", g, e, tolerance).agrees for g, e in zip(got, expected)]
    assert ours == oracle and 500 < sum(ours) < 1500  # both sides of the edge are exercised
    # Not symmetric, as torch's rule is not: 1.0 against an expected 0.5 fails at rtol 0.99.
    assert compare_tensor("x", 0.5, 1.0, Tolerance(0.0, 0.99)).agrees
    assert not compare_tensor("x", 1.0, 0.5, Tolerance(0.0, 0.99)).agrees


def test_relative_and_absolute_worst_can_sit_at_different_entries():
    d = compare_tensor("w", [1e-20, 10.0], [2e-20, 10.0 + 1e-12], TIGHT)
    assert d.max_rel_at == [0] and d.max_abs_at == [1] and d.agrees  # 1e-20 apart is within atol


def test_zero_against_non_zero_counts_as_checked_and_non_zero():
    d = compare_tensor("w", [0.0, 0.0], [0.0, 1e-3], TIGHT)
    assert d.nonzero == 1 and not d.agrees and d.max_rel == 1.0
    d = compare_tensor("w", [0.0, 1e-3], [0.0, 0.0], TIGHT)  # an expected 0: every difference is infinitely relative
    assert d.nonzero == 1 and not d.agrees and d.max_rel == math.inf


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
    torch_trace = trace()
    torch_trace["b"][1][1] = 0.26  # position 1, stage b, entry 1
    torch_trace["a"][2][0] = 9.0  # later: position 2
    d = first_divergence([trace()], [torch_trace], ["a", "b"], TIGHT)
    assert (d.document, d.stage, d.position, d.index, d.scalar, d.torch) == (0, "b", 1, 1, 0.25, 0.26)


def test_traces_of_another_layout_are_an_error_not_a_difference():
    torch_trace = trace()
    torch_trace["a"][1].append(0.0)
    with pytest.raises(RuntimeError, match="2 numbers against 3"):
        first_divergence([trace()], [torch_trace], ["a", "b"], TIGHT)


def test_a_later_document_is_reported_with_its_index():
    torch_trace = trace()
    torch_trace["a"][0][1] = 0.75
    d = first_divergence([trace(), trace()], [trace(), torch_trace], ["a", "b"], TIGHT)
    assert (d.document, d.stage, d.position, d.index) == (1, "a", 0, 1)
