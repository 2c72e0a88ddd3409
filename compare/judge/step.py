"""The verdict on one training step: every number the torch side computed against the scalar
engine's (the expected values), and where the two forward passes part.

    comparison = compare_results(scalar_result, torch_result, tolerances, stages)
    comparison.agrees, comparison.gradients, comparison.divergence, comparison.coverage
"""
from __future__ import annotations

from dataclasses import dataclass

from .diff import TensorDiff, compare_tensor, entry_difference
from .tolerances import Tolerance, Tolerances
from ..step.scalar import StepResult


@dataclass
class Coverage:
    """How many gradients the comparison checked that are not exactly zero in both engines."""

    total: int
    nonzero: int
    zero_tensors: list  # tensors whose gradient is exactly 0 everywhere: their check proves nothing


@dataclass
class Divergence:
    document: int  # index of the document in the batch
    stage: str  # trace stage name, e.g. "layer0.attn_weights"
    position: int  # token position in the document
    index: int  # entry within the stage's numbers at that position
    scalar: float
    torch: float


def first_divergence(scalar_traces: list, torch_traces: list, stages: list, tolerance: Tolerance) -> Divergence | None:
    """The earliest (document, position, stage, entry) outside the tolerance, or None. The
    scalar model computes position by position and stage by stage, so walking documents, then
    positions, then stages in that order finds the earliest computation that went wrong;
    everything after it inherits the error."""
    if len(scalar_traces) != len(torch_traces):  # both come from the project's models: never a learner's doing
        raise RuntimeError(f"the traces differ in layout: {len(scalar_traces)} documents against {len(torch_traces)}")
    for document, (scalar_trace, torch_trace) in enumerate(zip(scalar_traces, torch_traces)):
        for stage in stages:
            if len(scalar_trace.get(stage, ())) != len(torch_trace[stage]):
                raise RuntimeError(f"the traces differ in layout: stage {stage} of document {document} has "
                                   f"{len(scalar_trace.get(stage, ()))} positions against {len(torch_trace[stage])}")
        for position in range(len(torch_trace[stages[0]])):
            for stage in stages:
                found = _first_entry(scalar_trace[stage][position], torch_trace[stage][position], tolerance)
                if found is not None:
                    return Divergence(document, stage, position, *found)
    return None


def _first_entry(scalar_values: list, torch_values: list, tolerance: Tolerance):
    if len(scalar_values) != len(torch_values):  # both traces come from the project's models
        raise RuntimeError(f"the traces differ in layout: {len(scalar_values)} numbers against {len(torch_values)}")
    for index, (expected, got) in enumerate(zip(scalar_values, torch_values)):
        if entry_difference(float(got), float(expected), tolerance)[2] > 1:
            return index, float(expected), float(got)
    return None


@dataclass
class StepComparison:
    """One step of the two engines, number by number: torch's against the scalar engine's."""

    loss: TensorDiff
    gradients: list  # TensorDiff per parameter tensor, before the update
    parameters: list  # ... after the update
    adam_m: list
    adam_v: list
    divergence: Divergence | None  # where the forward passes part, if they do

    @property
    def agrees(self) -> bool:
        tables = [self.loss, *self.gradients, *self.parameters, *self.adam_m, *self.adam_v]
        return all(d.agrees for d in tables) and self.divergence is None

    @property
    def coverage(self) -> Coverage:
        return Coverage(total=sum(d.checked for d in self.gradients), nonzero=sum(d.nonzero for d in self.gradients),
                        zero_tensors=[d.name for d in self.gradients if d.nonzero == 0])


def compare_results(scalar: StepResult, torch_result: StepResult, tolerances: Tolerances,
                    stages: list) -> StepComparison:
    """Every number of the torch step against the scalar one (the expected values)."""
    def tables(what: str, tolerance):
        scalar_tensors, torch_tensors = getattr(scalar, what), getattr(torch_result, what)
        return [compare_tensor(name, torch_tensors[name], scalar_tensors[name], tolerance) for name in scalar_tensors]

    return StepComparison(
        loss=compare_tensor("loss", torch_result.loss, scalar.loss, tolerances.values),
        gradients=tables("grads", tolerances.gradients),
        parameters=tables("params", tolerances.values),
        adam_m=tables("adam_m", tolerances.values),
        adam_v=tables("adam_v", tolerances.values),
        divergence=first_divergence(scalar.traces, torch_result.traces, stages, tolerances.values),
    )
