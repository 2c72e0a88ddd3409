"""The report in a few lines of data: what a gradebook, a CI job or a learner's test reads.

    summary_of(report)               # after a check
    refusal_summary(error)           # an engine that lacks an operation (exit 2)
    failure_summary(error)           # an engine that crashed, exited or hung (exit 1)

Every summary has the same keys, the top level of `--json` (SUMMARY_KEYS):

    verdict        "AGREE", "DISAGREE", "MISSING" (the engine lacks an operation the model
                   needs), "REFUSED" (its file cannot be loaded as an engine) or "ERROR" (it
                   raised, exited, crashed or hung while it ran)
    agrees         true only for AGREE
    exit_code      what the command exits with: 0 AGREE, 1 DISAGREE or ERROR, 2 MISSING or
                   REFUSED
    probes         one entry per operator probed: {"operator", "status", "message"}; status
                   "ok", "fault" (wrong value or gradient), "missing", "absent" (optional
                   and not there) or "note"
    missing        the operations the engine lacks (empty unless MISSING)
    skipped_lines  the lines of the engine's file that were not run (a training script's
                   work at import), as the checker reports them
    cause          the checker's diagnosis in one line (null when the engine agrees)
    tensors        one entry per compared tensor: {"name", "kind" (loss, gradient,
                   parameter, adam_m, adam_v, final_parameter), "shape", "max_abs",
                   "max_abs_at", "max_rel", "max_rel_at", "excess", "agrees"}; excess
                   above 1 means past the tolerance
"""
from __future__ import annotations

import dataclasses

SUMMARY_KEYS = ("verdict", "agrees", "exit_code", "probes", "missing", "skipped_lines", "cause", "tensors")
TABLES = (("gradient", "gradients"), ("parameter", "parameters"), ("adam_m", "adam_m"), ("adam_v", "adam_v"),
          ("final_parameter", "final_parameters"))


def summary_of(report) -> dict:
    """The summary of a finished check (compare.report.Report)."""
    agrees = report.agrees
    return {
        "verdict": "AGREE" if agrees else "DISAGREE",
        "agrees": agrees,
        "exit_code": 0 if agrees else 1,
        "probes": probe_entries(report.probes),
        "missing": [],
        "skipped_lines": _plain(getattr(report, "skipped_lines", None) or []),
        "cause": None if agrees else cause_of(report),
        "tensors": tensor_entries(report),
    }


def refusal_summary(error) -> dict:
    """The summary of an engine refused before any step (compare.isolation.EngineRefused): it
    lacks operations the model needs (`found` holds the probes it could run), or its file
    cannot be loaded."""
    found = getattr(error, "found", None)
    probes = probe_entries(found.get("probes") if isinstance(found, dict) else found)
    missing = list(dict.fromkeys(name.strip() for entry in probes if entry["status"] == "missing"
                                 for name in entry["message"].removeprefix("needs ").split(",")))
    return {"verdict": "MISSING" if missing else "REFUSED", "agrees": False, "exit_code": 2, "probes": probes, "missing": missing,
            "skipped_lines": _plain(getattr(error, "skipped_lines", None) or []),
            "cause": _one_line(error), "tensors": []}


def failure_summary(error) -> dict:
    """The summary of an engine that raised, exited, crashed or hung (EngineFailure)."""
    return {"verdict": "ERROR", "agrees": False, "exit_code": 1, "probes": [], "missing": [],
            "skipped_lines": _plain(getattr(error, "skipped_lines", None) or []), "cause": _one_line(error),
            "tensors": []}


def cause_of(report) -> str:
    """The checker's own diagnosis where it names one, else the verdict's reason."""
    cause = getattr(report, "cause", None)
    if cause:
        for attribute in ("message", "text", "summary"):
            if isinstance(getattr(cause, attribute, None), str):
                return getattr(cause, attribute)
        return cause if isinstance(cause, str) else str(cause)
    from .render import verdict

    return verdict(report).split(": ", 1)[-1].rstrip(".")


def probe_entries(probes) -> list:
    """One entry per operator: its status is the worst of its probes'."""
    if probes is None:
        return []
    results = probes.results if hasattr(probes, "results") else probes
    worst = {"fault": 0, "missing": 1, "note": 2, "absent": 3, "ok": 4}
    by_operator: dict = {}
    for result in results:
        result = result if isinstance(result, dict) else dataclasses.asdict(result)
        kept = by_operator.get(result["operator"])
        if kept is None or worst.get(result["status"], 0) < worst.get(kept["status"], 0):
            by_operator[result["operator"]] = {"operator": result["operator"], "status": result["status"],
                                               "message": result.get("message", "")}
    return list(by_operator.values())


def tensor_entries(report) -> list:
    entries = [_tensor("loss", report.loss)]
    for kind, attribute in TABLES:
        entries += [_tensor(kind, diff) for diff in getattr(report, attribute)]
    return entries


def worst_tensor(summary: dict) -> dict | None:
    """The entry furthest past (or nearest to) its tolerance."""
    return max(summary["tensors"], key=lambda entry: entry["excess"], default=None)


def _tensor(kind: str, diff) -> dict:
    return {"name": diff.name, "kind": kind, "shape": list(diff.shape), "max_abs": diff.max_abs,
            "max_abs_at": list(diff.max_abs_at), "max_rel": diff.max_rel, "max_rel_at": list(diff.max_rel_at),
            "excess": diff.excess, "agrees": diff.agrees}


def _plain(items: list) -> list:
    return [dataclasses.asdict(item) if dataclasses.is_dataclass(item) else item for item in items]


def _one_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
