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
                   "ok", "fault" (wrong value or gradient), "missing" (not there, so not
                   checked), "absent" (optional and not there), "not run" (an earlier probe
                   never finished) or "note"; for an ERROR, the probes that had ended
    missing        the operations the engine lacks that the model needs (empty unless MISSING)
    skipped_lines  the top-level statements of the engine's file the loader did not run (a
                   training script's work at import): {"line", "text", "reason", "names", ...}
    cause          the checker's diagnosis in one line: the likeliest cause and the line of
                   the engine's code to look at (DISAGREE, or ERROR where the diagnosis
                   names one; else the failure's line), or why the engine was refused
                   (MISSING, REFUSED); null when the engine agrees
    tensors        one entry per compared tensor: {"name", "kind" (loss, gradient,
                   parameter, adam_m, adam_v, final_parameter), "shape", "max_abs",
                   "max_abs_at", "max_rel", "max_rel_at", "excess", "agrees"}; excess
                   above 1 means past the tolerance
"""
from __future__ import annotations

import dataclasses

SUMMARY_KEYS = ("verdict", "agrees", "exit_code", "probes", "missing", "skipped_lines", "cause", "tensors")
TABLES = (("gradient", "gradients"), ("parameter", "parameters"), ("adam_m", "adam_m"), ("adam_v", "adam_v"))


def summary_of(report) -> dict:
    """The summary of a finished check (compare.report.report.Report)."""
    agrees = report.agrees
    return {
        "verdict": "AGREE" if agrees else "DISAGREE",
        "agrees": agrees,
        "exit_code": 0 if agrees else 1,
        "probes": probe_entries(report.probes),
        "missing": [],
        "skipped_lines": _plain(report.skipped_lines),
        "cause": None if agrees else (cause_line(report.causes) or _reason(report)),
        "tensors": tensor_entries(report),
    }


def refusal_summary(error) -> dict:
    """The summary of an engine refused before any step (compare.engine.process.EngineRefused): it
    lacks operations the model needs (MISSING), or its file cannot be loaded as an engine
    (REFUSED). `found` holds the judged probes, when it got that far; `skipped` the lines
    of its file the loader skipped."""
    found = getattr(error, "found", None)
    missing = missing_names(str(error))
    return {"verdict": "MISSING" if missing else "REFUSED", "agrees": False, "exit_code": 2,
            "probes": probe_entries(found if not isinstance(found, dict) else None), "missing": missing,
            "skipped_lines": _plain(getattr(error, "skipped", None) or []), "cause": _one_line(error),
            "tensors": []}


def failure_summary(error) -> dict:
    """The summary of an engine that raised, exited, crashed or hung (EngineFailure): the
    probes that had ended before it failed, and the diagnosis's likeliest cause where it
    names one (else the failure's own line)."""
    found = getattr(error, "found", None)
    probes = getattr(error, "probes", None)
    skipped = found.get("skipped", []) if isinstance(found, dict) else []
    return {"verdict": "ERROR", "agrees": False, "exit_code": 1, "probes": probe_entries(probes), "missing": [],
            "skipped_lines": _plain(skipped or []),
            "cause": cause_line(getattr(error, "causes", None) or []) or _one_line(error), "tensors": []}


def cause_line(causes: list) -> str | None:
    """The likeliest cause (compare.judge.diagnosis.Cause) in one line, with the line of the
    engine's code to look at; None when the diagnosis names none."""
    if not causes:
        return None
    from ..judge.diagnosis import title

    cause = causes[0]
    text = cause.text.rstrip(".")
    return f"{title(cause.name)}: {text}" + (f"; look at {cause.where}" if cause.where else "")


def missing_names(message: str) -> list:
    """The operations named in an engine refusal's line as lacking (compare.engine.loader.missing_message)."""
    from ..engine.loader import REQUIRED_ATTRIBUTES, REQUIRED_METHODS

    _, colon, needs = message.partition("lacks what the transformer needs: ")
    if not colon:
        return []
    return [name for name in (*REQUIRED_METHODS, *REQUIRED_ATTRIBUTES)
            if needs.startswith(f"{name} (") or f"; {name} (" in needs]


def _reason(report) -> str:
    """The verdict's reason, where the diagnosis names no cause."""
    from .render import verdict

    return verdict(report).split(": ", 1)[-1].rstrip(".")


def probe_entries(probes) -> list:
    """One entry per operator: its status is the worst of its probes'."""
    if probes is None:
        return []
    results = probes.results if hasattr(probes, "results") else probes
    worst = {"fault": 0, "not run": 1, "missing": 2, "note": 3, "absent": 4, "ok": 5}
    by_operator: dict = {}
    for result in results:
        result = result if isinstance(result, dict) else dataclasses.asdict(result)
        kept = by_operator.get(result["operator"])
        if kept is None or worst.get(result["status"], 0) < worst.get(kept["status"], 0):
            by_operator[result["operator"]] = {"operator": result["operator"], "status": result["status"],
                                               "message": result.get("message", "")}
    return list(by_operator.values())


def tensor_entries(report) -> list:
    entries = [_tensor("loss", report.focus.loss)]
    for kind, attribute in TABLES:  # the focus step's
        entries += [_tensor(kind, diff) for diff in getattr(report.focus, attribute)]
    return entries + [_tensor("final_parameter", diff) for diff in report.final_parameters]


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
