"""The verdict on the finite differences of `compare.fd`: each estimate against the scalar
engine's own gradient at the same entry, within compare.tolerances.FD_TOLERANCE.

    check = check_finite_differences(estimates, grads)   # estimates: a protocol.FiniteDiffs
    check.agrees, check.entries
"""
from __future__ import annotations

from .protocol import FiniteDiffs
from .report import FiniteDifference, FiniteDifferenceCheck
from .tolerances import FD_TOLERANCE, fd_agrees


def check_finite_differences(estimates: FiniteDiffs, grads: dict) -> FiniteDifferenceCheck:
    """Every estimate against `grads` (name -> rows: the engine's gradients at the weights the
    estimates were taken at)."""
    entries = []
    for entry in estimates.entries:
        row, col = entry["index"]
        autograd = grads[entry["name"]][row][col]
        entries.append(FiniteDifference(entry["name"], [row, col], autograd, entry["estimate"],
                                        fd_agrees(autograd, entry["estimate"])))
    return FiniteDifferenceCheck(estimates.step_size, FD_TOLERANCE, entries)
