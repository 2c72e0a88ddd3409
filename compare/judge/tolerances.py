"""Every limit of closeness the checker judges by, each with the measurement it came from,
and the one rule they are judged with (`close`): how close the two engines must come per
torch dtype (one tolerance for values: the loss, the traced intermediates, parameters and
Adam moments after the update; one for gradients), an operator probe against torch, a
finite-difference estimate against autograd, and a certificate's losses and gradient norms
against the golden trace.

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

import math
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
    # faults in compare.engine.faults move numbers by 1e-7 and more.
    "float64": Tolerances(values=Tolerance(atol=1e-13, rtol=1e-10), gradients=Tolerance(atol=1e-15, rtol=1e-9)),
    # float32, measured: trace values differ by up to 3.5e-5, parameters after 20 steps by
    # 7.6e-6 (Adam turns a gradient's rounding into a step of up to lr), gradients by 9.1e-7.
    # The worst entry used 7.3% of the values' tolerance and 4.3% of the gradients'. Adam's
    # second moments (about 1e-6) fall under the absolute part: float32 is a demonstration of
    # drift, not a check of an engine.
    "float32": Tolerances(values=Tolerance(atol=1e-4, rtol=1e-3), gradients=Tolerance(atol=1e-5, rtol=1e-3)),
}


# An operator probe is one or two operations on numbers near 1, so the engine and torch
# differ by an ulp or two at most (numpy's exp against math's, a / b against a * b ** -1:
# about 2e-16 relative). The mistakes the probes look for move a number by 10% or more.
PROBE_TOLERANCE = Tolerance(atol=1e-12, rtol=1e-9)

# A central finite difference with step h = 1e-5 (compare.engine.runner says how h was chosen) was off
# from torch's float64 autograd by at most 2.3e-10, absolutely, over 36 gradients of
# magnitudes 2e-8 .. 0.04 on the built-in documents with dense weights (up to 0.1% on the
# smallest): the tolerance is mostly absolute, 1e-8, a margin of 40 that still sees a
# gradient off by 1e-8.
FD_TOLERANCE = Tolerance(atol=1e-8, rtol=1e-6)

# A certificate (compare.certify): a learner's losses may differ from the project engine's
# in the last bits (another order of adding up gradients, a / b instead of a * b ** -1), and
# training carries the differences forward. Measured against tests/fixtures/learner_engine.py
# (micrograd's style) over 20 steps, four runs (its set of parents changes the order of the
# sums from run to run): losses differ by at most 6e-16 relative, gradient norms by at most
# 8e-15. The tolerances sit more than four orders of magnitude above that; tests/test_certify.py
# shows that a loss 1e-9 off and a local gradient 1e-6 off both fail. Losses (about 1 to 4)
# need no absolute part, and a norm that is zero in the golden trace must be exactly zero
# (those gradients are zero in any correct engine), so atol is 0 for both.
LOSS_TOLERANCE = Tolerance(atol=0.0, rtol=1e-11)
GRAD_NORM_TOLERANCE = Tolerance(atol=0.0, rtol=1e-10)


def close(got: float, expected: float, tolerance: Tolerance) -> bool:
    """|got - expected| <= atol + rtol * |expected|; False for a nan or an inf in either."""
    gap = abs(got - expected)
    return math.isfinite(gap) and gap <= tolerance.allowed(abs(expected))


def fd_agrees(autograd: float, estimate: float) -> bool:
    """A finite-difference estimate agrees with the engine's own gradient (the expected one)."""
    return close(estimate, autograd, FD_TOLERANCE)


def tolerances_for(dtype: str) -> Tolerances:
    if dtype not in TOLERANCES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(TOLERANCES)}")
    return TOLERANCES[dtype]
