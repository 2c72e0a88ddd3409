"""The verdict on the finite differences the engine's side estimated
(compare.engine.runner.finite_differences): each estimate against the scalar engine's own
gradient at the same entry, within compare.judge.tolerances.FD_TOLERANCE.

    check = check_finite_differences(estimates, grads)   # estimates: a protocol.FiniteDiffs
    check.agrees, check.entries
"""
from __future__ import annotations

from dataclasses import dataclass

from .tolerances import FD_TOLERANCE, Tolerance, fd_agrees
from ..engine.protocol import FiniteDiffs


@dataclass
class FiniteDifference:
    name: str  # parameter tensor
    index: list  # [row, col]
    autograd: float  # the scalar engine's gradient
    estimate: float  # (loss(p + h) - loss(p - h)) / 2h
    agrees: bool


@dataclass
class FiniteDifferenceCheck:
    step_size: float
    tolerance: Tolerance
    entries: list  # of FiniteDifference

    def __repr__(self) -> str:
        wrong = sum(not entry.agrees for entry in self.entries)
        return f"<FiniteDifferenceCheck {len(self.entries)} gradients, {wrong} disagree>"

    @property
    def agrees(self) -> bool:
        return all(entry.agrees for entry in self.entries)


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
