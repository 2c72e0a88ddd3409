"""How two lists of numbers, one from each engine, are compared: the worst differences and where.

The rule is torch.testing's, with the scalar engine as the expected value: an entry agrees
when |got - expected| <= atol + rtol * |expected|, got from torch and expected from the
scalar engine. Its relative difference is |got - expected| / |expected| (0 when both are 0,
inf when only `expected` is). An entry that is exactly 0 in both engines checks nothing, so
each comparison also counts the non-zero ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .tolerances import Tolerance


@dataclass
class TensorDiff:
    name: str  # "loss" or a parameter name like "layer0.mlp_fc1"
    shape: list  # [] for a single number, [n_out, n_in] for a matrix
    checked: int  # entries compared
    nonzero: int  # entries that are not exactly 0 in at least one engine
    max_abs: float  # largest |got - expected|
    max_abs_at: list  # its index ([row, col] for a matrix)
    max_rel: float  # largest |got - expected| / |expected|
    max_rel_at: list
    excess: float  # largest |got - expected| / (atol + rtol * |expected|); above 1 it disagrees

    @property
    def agrees(self) -> bool:
        return self.excess <= 1


def compare_tensor(name: str, got, expected, tolerance: Tolerance) -> TensorDiff:
    """Compare a number, a list, or a list of rows (all rows the same length): torch's `got`
    against the scalar engine's `expected`."""
    shape, flat_expected = _shape_and_flat(expected)
    got_shape, flat_got = _shape_and_flat(got)
    if shape != got_shape:
        raise ValueError(f"{name}: shape {shape} in the scalar engine but {got_shape} in torch")
    diff = TensorDiff(name, shape, len(flat_expected), 0, 0.0, [], 0.0, [], 0.0)
    for i, (a, b) in enumerate(zip(flat_got, flat_expected)):
        a, b = float(a), float(b)
        diff.nonzero += a != 0 or b != 0
        gap, relative, excess = entry_difference(a, b, tolerance)
        if gap > diff.max_abs or not diff.max_abs_at:
            diff.max_abs, diff.max_abs_at = gap, _index(i, shape)
        if relative > diff.max_rel or not diff.max_rel_at:
            diff.max_rel, diff.max_rel_at = relative, _index(i, shape)
        diff.excess = max(diff.excess, excess)
    return diff


def entry_difference(got: float, expected: float, tolerance: Tolerance) -> tuple[float, float, float]:
    """|got - expected|, the relative difference and the multiple of the tolerance it uses up."""
    gap = abs(got - expected)
    if gap == 0:
        return 0.0, 0.0, 0.0
    if not math.isfinite(gap):  # an inf or a nan in either engine agrees with nothing
        return math.inf, math.inf, math.inf
    relative = gap / abs(expected) if expected else math.inf
    return gap, relative, gap / tolerance.allowed(abs(expected))


def _shape_and_flat(values) -> tuple[list, list]:
    if not isinstance(values, (list, tuple)):
        return [], [values]
    if values and isinstance(values[0], (list, tuple)):
        widths = {len(row) for row in values}
        if len(widths) != 1:
            raise ValueError(f"rows of different lengths {sorted(widths)}")
        return [len(values), widths.pop()], [x for row in values for x in row]
    return [len(values)], list(values)


def _index(flat_index: int, shape: list) -> list:
    if len(shape) == 2:
        return list(divmod(flat_index, shape[1]))
    return [flat_index] if shape else []
