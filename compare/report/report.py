"""The report of a comparison: what was asked (`Settings`), every step's loss, the focus step's
comparison whole (compare.judge.step.StepComparison), and the verdicts of the probes, the
depth and the finite differences, each as its judge made it. Plain dataclasses: they go to
JSON and come back unchanged (compare.report.saved).

    report = compare_step()
    report.agrees, report.focus.gradients, report.differing_gradients
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.depth import DepthCheck
from ..judge.fd import FiniteDifferenceCheck
from ..judge.probe_check import ProbeCheck
from ..judge.step import StepComparison
from ..judge.tolerances import Tolerances


@dataclass
class Settings:
    """What was compared, as the user chose it."""

    preset: str
    weights: str  # "reference", "dense" or a checkpoint path
    seed: int
    docs: list  # the documents the compared steps take, in their order (all of them, if every step takes all)
    chars: list  # the vocabulary: character i is token i, BOS is token len(chars)
    per_step: int  # documents per step
    start_step: int  # steps the weights had already taken (0 unless a checkpoint)
    steps: int  # steps compared
    dtype: str  # the torch side's dtype
    device: str  # the torch side's device
    engine: str  # the scalar side's Value: the project's, a learner's file, or a fault
    fault: str | None  # the injected fault's name
    num_params: int
    overrides: dict = field(default_factory=dict)  # config fields set on the command line (--n-layer ...)
    num_docs: int = 0  # documents in the data (0 in reports written before it was recorded: len(docs))


@dataclass
class StepLoss:
    step: int  # 0-based, counted from the run's start (start_step + i)
    scalar: float
    torch: float
    agrees: bool


@dataclass
class Report:
    settings: Settings
    tolerances: Tolerances
    losses: list  # StepLoss for every step
    focus_step: int  # the step `focus` describes: the first that disagrees, else the last
    focus: StepComparison
    final_parameters: list  # TensorDiff per tensor after the last step
    trace_stages: list  # the stage names, in forward order
    finite_differences: FiniteDifferenceCheck | None = None
    gradient_values: dict = field(default_factory=dict)  # name -> {"scalar": flat, "torch": flat}
    probes: ProbeCheck | None = None  # the engine's operations one by one (a failing probe disagrees)
    depth: DepthCheck | None = None
    notes: list = field(default_factory=list)  # one line each: how the engine's file was loaded
    sandbox: str = ""  # one line: what confined the engine's process ("" when it ran in this one)
    skipped_lines: list = field(default_factory=list)  # {"line", "text", "reason", "names"}: statements not run
    causes: list = field(default_factory=list)  # compare.judge.diagnosis.Cause, most likely first

    def __repr__(self) -> str:
        s = self.settings
        verdict = "AGREE" if self.agrees else f"DISAGREE ({len(self.differing_gradients)} gradient tensors differ)"
        return (f"<Report {verdict}: {s.engine} vs torch {s.dtype}, {s.steps} step{'s' * (s.steps != 1)}, "
                f"{s.num_params:,} parameters>")

    @property
    def agrees(self) -> bool:
        """Every number of every step agrees, and so does every operator probe."""
        return self.step_agrees and (self.probes is None or self.probes.agrees)

    @property
    def step_agrees(self) -> bool:
        """The model's training steps agree (the probes aside)."""
        return (all(step.agrees for step in self.losses) and self.focus.agrees
                and all(d.agrees for d in self.final_parameters)
                and (self.finite_differences is None or self.finite_differences.agrees))

    @property
    def differing_gradients(self) -> list:
        """Tensors whose gradients disagree, worst first (by how far past the tolerance)."""
        return [d.name for d in sorted(self.focus.gradients, key=lambda d: -d.excess) if not d.agrees]
