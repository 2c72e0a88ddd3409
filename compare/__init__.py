"""Check a scalar autograd engine against torch, one training step at a time.

    from compare import compare_step
    report = compare_step()          # raises on bad input, never prints
    report.agrees                    # scripts/compare_step.py prints compare.render.render(report)
"""
from .check import DeviceError, EngineFailure, compare_step
from .engines import EngineError, load_engine
from .faults import FAULTS, faulty_engine
from .report import Report, load_report, save_report

__all__ = ["compare_step", "Report", "load_report", "save_report", "load_engine", "faulty_engine", "FAULTS",
           "DeviceError", "EngineError", "EngineFailure"]
