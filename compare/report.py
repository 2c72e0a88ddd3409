"""The report of a comparison: plain dataclasses that go to JSON and come back unchanged.

    report = compare_step()
    save_report("report.json", report, values=True); load_report("report.json") == report

The JSON file's top level is the summary (compare.summary: verdict, agrees, exit_code,
probes, missing, skipped_lines, cause, tensors); the whole report is under "report". Every
gradient's value in both engines (for a plot) is kept only with values=True (--json-values).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from microgpt_scalar.checkpoint import write_atomically

from .diagnosis import Cause
from .diff import TensorDiff
from .tolerances import Tolerance, Tolerances
from .trace import Divergence

FORMAT = "microgpt-compare-report"
VERSION = 3  # 1: the report's fields at the top level, no summary; 2: the focus step's tables there too


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
class Coverage:
    """How many gradients the comparison checked that are not exactly zero in both engines."""

    total: int
    nonzero: int
    zero_tensors: list  # tensors whose gradient is exactly 0 everywhere: their check proves nothing


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


@dataclass
class ProbeResult:
    operator: str  # the table's line: "+", "/", "relu", ...
    expression: str  # e.g. "2.0 / a at a = 1.5"
    status: str  # "ok", "fault", "note", "missing" (an operation a learner may call is absent), "absent"
    #              (optional), "not run" (an earlier probe never finished)
    message: str = ""  # for anything but ok: expected and got, and the derivative it should have
    expected: list = field(default_factory=list)  # torch's [value, d/da, d/db ...] (a probe that ran)
    got: list = field(default_factory=list)  # the engine's, in the same order
    error: str = ""  # what the engine raised, if it did ("ZeroDivisionError: float division by zero")
    where: dict = field(default_factory=dict)  # {"line": N, "text": "..."}: the engine's line it raised at
    uses: list = field(default_factory=list)  # the methods of the engine it calls ("__rtruediv__")


@dataclass
class ProbeCheck:
    """Each operation of the engine on its own against torch (compare.probes)."""

    results: list = field(default_factory=list)  # of ProbeResult

    def __repr__(self) -> str:
        ok = sum(r.status == "ok" for r in self.results)
        return f"<ProbeCheck {len(self.results)} probes: {ok} ok, {len(self.faults)} wrong, {len(self.notes)} notes>"

    @property
    def faults(self) -> list:
        return [r for r in self.results if r.status == "fault"]

    @property
    def notes(self) -> list:
        return [r for r in self.results if r.status == "note"]

    @property
    def missing(self) -> list:
        """Probes of operations the engine lacks that a learner's own code may well call
        (2.0 - a, 2.0 / a): not checked, and said so."""
        return [r for r in self.results if r.status == "missing"]

    @property
    def absent(self) -> list:
        """Probes of optional operations the engine does not have or take (tanh, a ** b)."""
        return [r for r in self.results if r.status == "absent"]

    @property
    def not_run(self) -> list:
        """Probes not run because an earlier one never finished."""
        return [r for r in self.results if r.status == "not run"]

    @property
    def agrees(self) -> bool:
        return not self.faults and not self.not_run


@dataclass
class DepthCheck:
    """How deep a graph the engine's backward walks, against how deep the checked model's is."""

    survived: int | None  # the longest chain backward survived (None: not measured)
    failed: int | None  # the shortest chain it failed on with RecursionError (None: none it tried)
    graph: int | None  # the longest path from a parameter to the loss in the checked model
    per_layer: int | None  # how much one more layer adds to it
    n_layer: int  # the checked model's layers


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
    causes: list = field(default_factory=list)  # compare.diagnosis.Cause, most likely first

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


def to_dict(report: Report, values: bool = False) -> dict:
    """The summary, then the whole report; every gradient's value only if `values`."""
    from .summary import summary_of

    whole = dataclasses.asdict(report)
    if not values:
        whole["gradient_values"] = {}
    return {"format": FORMAT, "version": VERSION, **summary_of(report), "report": whole}


def from_dict(data: dict) -> Report:
    """The report of a file of any version: 1 and 2 held the focus step's tables (and their
    coverage) at the report's top level."""
    version = data.get("version")
    if data.get("format") != FORMAT or version not in (1, 2, VERSION):
        raise ValueError(f"not a {FORMAT} of version {VERSION}")
    if version != 1:
        if "report" not in data:  # the summary alone: the engine was refused or failed before a report
            raise ValueError(f"holds no report, only the summary of an engine that ended {data.get('verdict')}: "
                             f"{data.get('cause')}")
        data = data["report"]
    focus = data["focus"] if version == VERSION else data

    def tables(key: str, source: dict) -> list:
        return [TensorDiff(**d) for d in source[key]]

    fd = data["finite_differences"]
    if fd is not None:
        fd = FiniteDifferenceCheck(fd["step_size"], Tolerance(**fd["tolerance"]),
                                   [FiniteDifference(**entry) for entry in fd["entries"]])
    return Report(
        settings=Settings(**data["settings"]),
        tolerances=Tolerances(Tolerance(**data["tolerances"]["values"]), Tolerance(**data["tolerances"]["gradients"])),
        losses=[StepLoss(**step) for step in data["losses"]],
        focus_step=data["focus_step"],
        focus=StepComparison(
            loss=TensorDiff(**focus["loss"]),
            gradients=tables("gradients", focus), parameters=tables("parameters", focus),
            adam_m=tables("adam_m", focus), adam_v=tables("adam_v", focus),
            divergence=Divergence(**focus["divergence"]) if focus["divergence"] is not None else None),
        final_parameters=tables("final_parameters", data),
        trace_stages=data["trace_stages"],
        finite_differences=fd,
        gradient_values=data["gradient_values"],
        probes=ProbeCheck([ProbeResult(**r) for r in data["probes"]["results"]]) if data.get("probes") else None,
        depth=DepthCheck(**data["depth"]) if data.get("depth") else None,
        notes=data.get("notes", []),
        sandbox=data.get("sandbox", ""),
        skipped_lines=data.get("skipped_lines", []),
        causes=[Cause(**cause) for cause in data.get("causes", [])],
    )


def save_report(path, report: Report, values: bool = False) -> None:
    """Write the report as JSON, atomically: a failed write leaves any earlier file whole.
    `values`: keep every gradient's value in both engines (a few hundred KB)."""
    write_atomically(path, (json.dumps(to_dict(report, values), indent=1) + "\n").encode("utf-8"))


def load_report(path) -> Report:
    return from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
