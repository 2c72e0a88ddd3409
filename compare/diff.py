"""How two lists of numbers, one from each engine, are compared: the worst differences and where.

An entry agrees when |scalar - torch| <= atol + rtol * max(|scalar|, |torch|). Its relative
difference is |scalar - torch| / max(|scalar|, |torch|), 0 when both are 0. An entry that is
exactly 0 in both engines checks nothing, so each comparison also counts the non-zero ones.
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
    max_abs: float  # largest |scalar - torch|
    max_abs_at: list  # its index ([row, col] for a matrix)
    max_rel: float  # largest relative difference
    max_rel_at: list
    excess: float  # largest |scalar - torch| / (atol + rtol * max(|scalar|, |torch|)); above 1 it disagrees

    @property
    def agrees(self) -> bool:
        return self.excess <= 1


def compare_tensor(name: str, scalar, torch_values, tolerance: Tolerance) -> TensorDiff:
    """Compare a number, a list, or a list of rows (all rows the same length) from each engine."""
    shape, flat_scalar = _shape_and_flat(scalar)
    torch_shape, flat_torch = _shape_and_flat(torch_values)
    if shape != torch_shape:
        raise ValueError(f"{name}: shape {shape} in the scalar engine but {torch_shape} in torch")
    diff = TensorDiff(name, shape, len(flat_scalar), 0, 0.0, [], 0.0, [], 0.0)
    for i, (a, b) in enumerate(zip(flat_scalar, flat_torch)):
        a, b = float(a), float(b)
        diff.nonzero += a != 0 or b != 0
        gap, relative, excess = entry_difference(a, b, tolerance)
        if gap > diff.max_abs or not diff.max_abs_at:
            diff.max_abs, diff.max_abs_at = gap, _index(i, shape)
        if relative > diff.max_rel or not diff.max_rel_at:
            diff.max_rel, diff.max_rel_at = relative, _index(i, shape)
        diff.excess = max(diff.excess, excess)
    return diff


def entry_difference(a: float, b: float, tolerance: Tolerance) -> tuple[float, float, float]:
    """|a - b|, the relative difference and the multiple of the tolerance it uses up."""
    gap = abs(a - b)
    if gap == 0:
        return 0.0, 0.0, 0.0
    if not math.isfinite(gap):  # an inf or a nan in either engine agrees with nothing
        return math.inf, math.inf, math.inf
    scale = max(abs(a), abs(b))
    return gap, gap / scale, gap / tolerance.allowed(scale)


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
