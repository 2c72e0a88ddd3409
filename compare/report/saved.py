"""The report as a JSON file: the summary first (compare.report.summary: verdict, agrees,
exit_code, probes, missing, skipped_lines, cause, tensors), the whole report under "report".

    save_report("report.json", report, values=True); load_report("report.json") == report

Every gradient's value in both engines (for a plot) is kept only with values=True
(--json-values). Files of earlier versions still load.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from microgpt_scalar.checkpoint import write_atomically

from .report import Report, Settings, StepLoss
from ..engine.depth import DepthCheck
from ..judge.diagnosis import Cause
from ..judge.diff import TensorDiff
from ..judge.fd import FiniteDifference, FiniteDifferenceCheck
from ..judge.probe_check import ProbeCheck, ProbeResult
from ..judge.step import Divergence, StepComparison
from ..judge.tolerances import Tolerance, Tolerances

FORMAT = "microgpt-compare-report"
VERSION = 3  # 1: the report's fields at the top level, no summary; 2: the focus step's tables there too


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
        raise ValueError(f"not a {FORMAT} of version 1 to {VERSION}")
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
