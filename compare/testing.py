"""Assertions for your own tests: your engine against torch, as a test that passes or fails.

A whole test file (`test_engine.py`, beside your `engine.py`):

    from compare.testing import assert_engine_agrees
    def test_engine(): assert_engine_agrees("engine.py")

or with the pytest plugin, which the package installs, a path relative to the test file:

    def test_engine(engine_agrees):
        engine_agrees("engine.py")

`engine` is a path ("engine.py", "engine.py:MyValue") or the Value class itself; the options
are compare.compare_step's (steps=3, weights="reference", fd=20, overrides={"n_layer": 2}, ...).
A file runs in a process of its own, with a time limit; a class runs in the test's process.
On a wrong engine the AssertionError says, in at most 40 lines, the verdict, the operator
probes, where the engines part and the worst tensors; on a right one the report is returned.
"""
from __future__ import annotations

import os

from .engine.process import EngineFailure, EngineRefused
from .report.render import cause_block, parting_block, probe_table, skipped_block, verdict
from .report.report import Report

MAX_LINES = 40
WORST_TENSORS = 5


def assert_engine_agrees(engine, **options) -> Report:
    """Raise AssertionError unless `engine` agrees with torch on the checked training step(s)
    and every operator probe; return the report. Bad options raise ValueError as compare_step does."""
    from .check import compare_step  # imports torch

    if isinstance(engine, os.PathLike):
        engine = os.fspath(engine)
    try:
        report = compare_step(engine=engine, **options)
    except EngineRefused as error:
        raise AssertionError(refusal_message(error)) from None
    except EngineFailure as error:
        raise AssertionError(error_message(error)) from None
    if not report.agrees:
        raise AssertionError(failure_message(report))
    return report


def failure_message(report: Report) -> str:
    """The verdict, the probes, the cause, where the engines part and the worst tensors, in at
    most MAX_LINES lines."""
    lines = [verdict(report)]
    lines += probe_table(report.probes).splitlines()
    lines += cause_block(report.causes).splitlines()
    lines += parting_block(report).splitlines()
    lines += worst_tensor_lines(report)
    return fit(lines, f"  (the whole report: microgpt-compare --engine {report.settings.engine})")


def error_message(error: EngineFailure) -> str:
    """An engine that raised, exited, crashed or hung: the line, the likely cause, and the
    probes that had ended before it failed."""
    lines = [f"ERROR: {error}", *cause_block(getattr(error, "causes", None) or []).splitlines()]
    if error.probes is not None:
        lines += probe_table(error.probes).splitlines()
    return fit(lines, "")


def refusal_message(error: EngineRefused) -> str:
    """An engine that lacks an operation (MISSING) or cannot be loaded (REFUSED): the line,
    the lines of its file the loader skipped, the probes it could run."""
    from .report.summary import missing_names

    lines = skipped_block(error.skipped).splitlines()
    if hasattr(error.found, "results"):  # the probes the engine could run
        lines += probe_table(error.found).splitlines()
    return fit([f"{'MISSING' if missing_names(str(error)) else 'REFUSED'}: {error}", *lines], "")


def worst_tensor_lines(report: Report) -> list:
    focus = report.focus
    tables = [("gradient", focus.gradients), ("parameter", focus.parameters), ("Adam m", focus.adam_m),
              ("Adam v", focus.adam_v)]
    wrong = sorted(((kind, d) for kind, diffs in tables for d in diffs if not d.agrees), key=lambda pair: -pair[1].excess)
    if not wrong:
        return []
    lines = [f"  worst tensors ({min(len(wrong), WORST_TENSORS)} of {len(wrong)} that differ, furthest past "
             f"the tolerance first)"]
    for kind, d in wrong[:WORST_TENSORS]:
        lines.append(f"    {kind:<9} {d.name:<16} max |diff| {d.max_abs:.3g} at {list(d.max_abs_at)}, "
                     f"max rel {d.max_rel:.3g}, {d.excess:.3g}x the tolerance")
    return lines


def fit(lines: list, last: str) -> str:
    """`lines` and then `last`, cut to MAX_LINES lines with a line saying how many were left out."""
    lines = [line for line in lines if line is not None]
    tail = [last] if last else []
    if len(lines) + len(tail) > MAX_LINES:
        keep = MAX_LINES - len(tail) - 1
        lines = lines[:keep] + [f"  ... {len(lines) - keep} more lines"]
    return "\n".join(lines + tail)
