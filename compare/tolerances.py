"""How close the two engines must come, per torch dtype: one tolerance for values (the loss,
the traced intermediates, parameters and Adam moments after the update) and one for gradients.

The scalar engine computes in Python floats (IEEE float64). Torch in float64 does the same
maths in another order (a matrix product adds its terms in blocks, the scalar model one by
one), so the two differ by rounding alone; float32 rounds 2 ** 29 times more coarsely.

The rule is torch.testing's, with the scalar engine as the expected value:
|torch - scalar| <= atol + rtol * |scalar|.

How they were chosen: both presets, reference and dense weights, seeds 1-3 on the built-in
documents (20 lockstep steps from seed 1, 3 from the others) and the published run's first
20 steps on names.txt: 144 steps, 594,432 gradients, 2.1 million traced numbers, each torch
step the training script's own (`train_step` on the fused kernels). Listed is the worst
|torch - scalar| measured, and the largest share of the tolerance any entry used.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float  # absolute part: for entries near 0, where a relative difference means nothing
    rtol: float  # relative part, times the magnitude of the expected (scalar engine's) entry

    def allowed(self, expected_magnitude: float) -> float:
        """The largest |got - expected| allowed: atol + rtol * |expected| (torch.testing's rule)."""
        return self.atol + self.rtol * expected_magnitude


@dataclass(frozen=True)
class Tolerances:
    values: Tolerance  # loss, trace, parameters and Adam moments
    gradients: Tolerance  # d loss / d parameter


TOLERANCES = {
    # float64, measured: traced values differ by at most 2.1e-13, parameters after 20 steps by
    # 2.6e-14, Adam's moments by 1e-15, the loss by 1.8e-15, gradients by 8.5e-15. The worst
    # entry used 19% of the values' tolerance (a parameter of 1.2e-4 after 20 steps, where the
    # absolute part decides) and 7.8% of the gradients': a margin of 5 for rounding, while the
    # faults in compare.faults move numbers by 1e-7 and more.
    "float64": Tolerances(values=Tolerance(atol=1e-13, rtol=1e-10), gradients=Tolerance(atol=1e-15, rtol=1e-9)),
    # float32, measured: trace values differ by up to 3.5e-5, parameters after 20 steps by
    # 7.6e-6 (Adam turns a gradient's rounding into a step of up to lr), gradients by 9.1e-7.
    # The worst entry used 7.3% of the values' tolerance and 4.3% of the gradients'. Adam's
    # second moments (about 1e-6) fall under the absolute part: float32 is a demonstration of
    # drift, not a check of an engine.
    "float32": Tolerances(values=Tolerance(atol=1e-4, rtol=1e-3), gradients=Tolerance(atol=1e-5, rtol=1e-3)),
}


def tolerances_for(dtype: str) -> Tolerances:
    if dtype not in TOLERANCES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(TOLERANCES)}")
    return TOLERANCES[dtype]
